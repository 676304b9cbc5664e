-- depends: 0001.schema
-- Operator read edits (issue #4): a wrong read corrected or removed, with an audit trail.
-- One row per edit that changed something: who, when, the value before and after (NULL
-- after = removed), why, and the intervals it replaced and wrote (JSON, as evidence).
-- The edit itself re-flows consumption_intervals, daily_consumption and meter_state in
-- the same transaction (stream/read_edits.py); invoices are never touched.

CREATE TABLE read_edits (
    edit_id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    meter_id            text NOT NULL,
    register            text NOT NULL,
    read_at             timestamptz NOT NULL,
    action              text NOT NULL CHECK (action IN ('correct', 'remove')),
    value_before_milli  bigint NOT NULL CHECK (value_before_milli >= 0),
    value_after_milli   bigint CHECK (value_after_milli >= 0),
    reason              text NOT NULL CHECK (length(btrim(reason)) BETWEEN 3 AND 500),
    edited_by           text NOT NULL CHECK (length(edited_by) BETWEEN 1 AND 100),
    edited_at           timestamptz NOT NULL,
    intervals_before    jsonb NOT NULL DEFAULT '[]',
    intervals_after     jsonb NOT NULL DEFAULT '[]',
    daily_changes       jsonb NOT NULL DEFAULT '[]',
    CHECK ((action = 'remove') = (value_after_milli IS NULL))
);
CREATE INDEX read_edits_read ON read_edits (meter_id, register, read_at);
CREATE INDEX read_edits_at ON read_edits (edited_at DESC);
