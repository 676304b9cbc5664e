-- depends: 0012.credit_notes
-- Rebilling (issue #4): estimates at close, reconciliation of closed periods whose data
-- changed (late reads, estimates now covered by actual reads, read edits) and tariff
-- corrections of closed periods. A finalized invoice never changes: every difference is
-- billed as an adjustment line on the customer's next invoice (billing.adjustments).

-- Every estimated quantity billed at a close: which register, for which period, on which
-- invoice and on what basis. invoice_number is set by the close's after-write step.
CREATE TABLE consumption_estimates (
    estimate_id        bigserial PRIMARY KEY,
    metering_point_id  text NOT NULL,
    service            text NOT NULL CHECK (service IN ('electricity', 'water')),
    register           text NOT NULL,
    period             text NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    customer_id        text NOT NULL REFERENCES customers,
    meter_id           text NOT NULL,
    estimated_from     timestamptz NOT NULL,  -- the last read, or the start of the period
    estimated_to       timestamptz NOT NULL,  -- the end of the period or of the contract
    quantity_milli     bigint NOT NULL CHECK (quantity_milli >= 0),
    basis              text NOT NULL CHECK (basis IN ('last_year_trend', 'recent_average',
                                                      'profile')),
    invoice_number     text REFERENCES invoices,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (estimated_to > estimated_from)
);
CREATE INDEX consumption_estimates_place ON consumption_estimates
    (metering_point_id, service, period);
-- estimates of the close being written (linked to their invoices by its after-write step)
CREATE INDEX consumption_estimates_unlinked ON consumption_estimates (period)
    WHERE invoice_number IS NULL;

-- (metering point, service, period) of an invoiced period whose data changed since, or
-- whose tariff was corrected: the next close of the customer bills the difference.
CREATE TABLE rebill_queue (
    metering_point_id  text NOT NULL,
    service            text NOT NULL,
    period             text NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    cause              text NOT NULL CHECK (cause IN ('data', 'tariff')),
    queued_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (metering_point_id, service, period)
);

-- Adjustment lines billed on a later invoice for an earlier period (the "target").
-- With the target's invoice lines they make up what was billed for that period.
CREATE TABLE rebill_adjustments (
    adjustment_id      bigserial PRIMARY KEY,
    customer_id        text NOT NULL REFERENCES customers,
    billed_in          text NOT NULL,  -- the period of the invoice that carries the line
    target_period      text NOT NULL CHECK (target_period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    service            text NOT NULL,
    metering_point_id  text NOT NULL,
    component          text NOT NULL,
    register           text,
    unit               text NOT NULL,
    unit_price_micro   bigint NOT NULL,
    vat_rate           numeric(5, 2) NOT NULL,
    quantity_milli     bigint NOT NULL,
    amount_fen         bigint NOT NULL,
    cause              text NOT NULL CHECK (cause IN ('data', 'tariff')),
    invoice_number     text REFERENCES invoices,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (target_period < billed_in)
);
CREATE INDEX rebill_adjustments_target ON rebill_adjustments (customer_id, target_period);
CREATE INDEX rebill_adjustments_unlinked ON rebill_adjustments (billed_in)
    WHERE invoice_number IS NULL;

-- A corrected tariff version for a closed date range. The original tariff_versions rows
-- stay as they were (the original invoices were made with them); re-rating a period in
-- the range uses the catalog with the latest correction laid over it.
CREATE TABLE tariff_corrections (
    correction_id  bigserial PRIMARY KEY,
    tariff_code    text NOT NULL,
    valid_from     date NOT NULL,
    valid_to       date NOT NULL CHECK (valid_to >= valid_from),  -- inclusive
    document       jsonb NOT NULL,
    reason         text NOT NULL CHECK (length(btrim(reason)) BETWEEN 1 AND 500),
    operator       text NOT NULL CHECK (length(btrim(operator)) BETWEEN 1 AND 100),
    recorded_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tariff_corrections_code ON tariff_corrections (tariff_code, valid_from);

-- "Is any invoice of this period written?" in the trigger below, cheaply.
CREATE INDEX invoices_period ON invoices (period);

-- Daily consumption of an invoiced period changed: queue (metering point, service,
-- period). Statement level with a transition table, so a batch costs one statement; a
-- period without any invoice (the month being streamed) costs one index probe. The shared
-- advisory lock pairs with the close's exclusive lock of the same period: a batch that
-- writes days of a period being closed (or being re-rated by a later close) waits for that
-- close, then sees its invoices and queue. Locks are taken latest period first, like the
-- close, so the two never wait on each other in a circle.
CREATE FUNCTION queue_rebill_of_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    p  text;
    invoiced  text[] := '{}';
BEGIN
    FOR p IN SELECT DISTINCT to_char(local_day, 'YYYY-MM') FROM changed ORDER BY 1 DESC LOOP
        PERFORM pg_advisory_xact_lock_shared(hashtextextended('billing.close:' || p, 0));
        IF EXISTS (SELECT 1 FROM invoices WHERE period = p) THEN
            invoiced := invoiced || p;
        END IF;
    END LOOP;
    IF cardinality(invoiced) = 0 THEN
        RETURN NULL;
    END IF;
    INSERT INTO rebill_queue (metering_point_id, service, period, cause)
    SELECT DISTINCT n.metering_point_id, n.service, to_char(n.local_day, 'YYYY-MM'), 'data'
    FROM changed n
    WHERE to_char(n.local_day, 'YYYY-MM') = ANY (invoiced)
      AND EXISTS (
          SELECT 1 FROM contracts c
          JOIN invoices i ON i.customer_id = c.customer_id AND i.kind = 'invoice'
               AND i.period = to_char(n.local_day, 'YYYY-MM')
          WHERE c.metering_point_id = n.metering_point_id AND c.service = n.service
            AND n.local_day >= c.valid_from
            AND (c.valid_to IS NULL OR n.local_day <= c.valid_to))
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

-- The same for one row (TimescaleDB hypertables do not take transition tables).
CREATE FUNCTION queue_rebill_of_changed_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r  record;
    p  text;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    p := to_char(r.local_day, 'YYYY-MM');
    PERFORM pg_advisory_xact_lock_shared(hashtextextended('billing.close:' || p, 0));
    IF EXISTS (SELECT 1 FROM contracts c
               JOIN invoices i ON i.customer_id = c.customer_id AND i.kind = 'invoice'
                    AND i.period = p
               WHERE c.metering_point_id = r.metering_point_id AND c.service = r.service
                 AND r.local_day >= c.valid_from
                 AND (c.valid_to IS NULL OR r.local_day <= c.valid_to)) THEN
        INSERT INTO rebill_queue (metering_point_id, service, period, cause)
        VALUES (r.metering_point_id, r.service, p, 'data') ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$;

DO $$
DECLARE
    hyper  boolean := false;
BEGIN
    IF to_regclass('timescaledb_information.hypertables') IS NOT NULL THEN
        EXECUTE $q$SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                                  WHERE hypertable_name = 'daily_consumption')$q$ INTO hyper;
    END IF;
    IF hyper THEN
        CREATE TRIGGER daily_consumption_rebill_row
            AFTER INSERT OR UPDATE OR DELETE ON daily_consumption
            FOR EACH ROW EXECUTE FUNCTION queue_rebill_of_changed_row();
    ELSE
        CREATE TRIGGER daily_consumption_rebill_insert AFTER INSERT ON daily_consumption
            REFERENCING NEW TABLE AS changed
            FOR EACH STATEMENT EXECUTE FUNCTION queue_rebill_of_changed();
        CREATE TRIGGER daily_consumption_rebill_update AFTER UPDATE ON daily_consumption
            REFERENCING NEW TABLE AS changed
            FOR EACH STATEMENT EXECUTE FUNCTION queue_rebill_of_changed();
        CREATE TRIGGER daily_consumption_rebill_delete AFTER DELETE ON daily_consumption
            REFERENCING OLD TABLE AS changed
            FOR EACH STATEMENT EXECUTE FUNCTION queue_rebill_of_changed();
    END IF;
END $$;
