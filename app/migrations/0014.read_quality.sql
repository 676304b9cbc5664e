-- depends: 0001.schema
-- Meter-data validation (issue #4): quality flags on stored reads, zero-run tracking per
-- register, and a quarantine for reads from the future (kept, not billed, releasable).

-- rollover, spike, zero_consumption, gap, initial, final (stream/vee_rules.py). On a
-- compressed TimescaleDB hypertable a NOT NULL column with a constant default needs 2.6+
-- (app/timescale.py already requires 2.15).
ALTER TABLE readings ADD COLUMN quality text[] NOT NULL DEFAULT '{}';

-- The read_at of the first read that showed the register's current value: a register
-- that has not moved since then for 30 days on an active contract is flagged.
ALTER TABLE meter_state ADD COLUMN value_since timestamptz;

CREATE TABLE quarantined_reads (
    quarantine_id   bigserial PRIMARY KEY,
    received_at     timestamptz NOT NULL,
    channel         text NOT NULL,
    meter_id        text NOT NULL,
    register        text NOT NULL,
    read_at         timestamptz NOT NULL,
    value_milli     bigint NOT NULL,
    reason          text NOT NULL,
    payload         jsonb NOT NULL,  -- the read as it came, re-fed on release
    released_at     timestamptz,
    released_by     text,
    release_status  text CHECK (release_status IN ('accepted', 'duplicate', 'rejected')),
    release_reason  text,
    CHECK ((released_at IS NULL) = (release_status IS NULL))
);
-- a redelivered future read is kept once while it waits
CREATE UNIQUE INDEX quarantined_reads_waiting
    ON quarantined_reads (meter_id, register, read_at, value_milli) WHERE released_at IS NULL;
CREATE INDEX quarantined_reads_received ON quarantined_reads (received_at);
