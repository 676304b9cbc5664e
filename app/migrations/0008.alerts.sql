-- depends: 0001.schema
-- Meter anomaly alerts (topic meter.alerts.v1): opened and auto-closed by stream/alerts.py,
-- acknowledged or closed by an operator through /api/v1/alerts.
-- At most one alert per (meter, kind) is active (open or acknowledged) at a time.

CREATE TABLE meter_alerts (
    alert_id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    meter_id           text NOT NULL,
    metering_point_id  text,
    register           text,
    kind               text NOT NULL CHECK (kind IN ('leak', 'reverse_energy', 'tamper',
                           'zero_drop', 'communication_loss', 'high_consumption')),
    opened_at          timestamptz NOT NULL,
    last_seen_at       timestamptz NOT NULL,
    state              text NOT NULL DEFAULT 'open'
                           CHECK (state IN ('open', 'acknowledged', 'closed')),
    acknowledged_at    timestamptz,
    acknowledged_by    text,
    closed_at          timestamptz,
    closed_by          text,  -- 'auto' or the operator
    close_note         text CHECK (length(close_note) <= 2000),
    detail             jsonb NOT NULL DEFAULT '{}',
    CHECK ((state = 'closed') = (closed_at IS NOT NULL AND closed_by IS NOT NULL)),
    CHECK (state <> 'acknowledged' OR acknowledged_at IS NOT NULL)
);

CREATE UNIQUE INDEX meter_alerts_one_active ON meter_alerts (meter_id, kind)
    WHERE state <> 'closed';
CREATE INDEX meter_alerts_opened ON meter_alerts (opened_at DESC, alert_id DESC);
