-- depends: 0006.timescale 0015.rebilling
-- Month-to-date totals kept by the stream (issue #5 speed): the next level above the sink's
-- `daily_consumption`. One row per metering point, service, register and month (the first
-- local day of the month): the sum of the days, the first day with a row and how many days
-- have one. The close reads these instead of a month of day rows wherever a single
-- contract covers the whole month at one price (billing.close_inputs).
--
-- Kept exact by triggers on `daily_consumption` for every INSERT, UPDATE, DELETE and
-- TRUNCATE (the sink's upsert, read edits, corrections, anything): new rows and updated
-- quantities are added to the totals, any other change recomputes the keys it touched
-- from `daily_consumption` (their rows deleted, then inserted again grouped).
CREATE TABLE monthly_consumption (
    metering_point_id  text NOT NULL,
    service            text NOT NULL,
    register           text NOT NULL,
    month              date NOT NULL CHECK (extract(day FROM month) = 1),
    quantity_milli     bigint NOT NULL,
    first_day          date NOT NULL,
    days               integer NOT NULL CHECK (days BETWEEN 1 AND 31),
    PRIMARY KEY (metering_point_id, service, register, month),
    CHECK (first_day >= month AND first_day < month + 31)
);
CREATE INDEX monthly_consumption_month ON monthly_consumption (month);

-- The statements that recompute the keys given by `keys` (a query over the trigger's
-- transition tables giving metering_point_id, service, register, month), run by the
-- trigger function itself (transition tables are visible only there). Dynamic SQL: each
-- statement is planned for the size of its transition table (a stream batch: index
-- probes; a bulk COPY: hash joins). The totals of the keys are locked first (in key
-- order): a concurrent transaction adding to one of them commits before the recomputation,
-- whose statements then see its days (READ COMMITTED: a new snapshot per statement).
-- Upsert rather than plain insert: a key a concurrent transaction created meanwhile is
-- overwritten, not a unique violation.
CREATE FUNCTION monthly_consumption_sql(keys text) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $f$
SELECT ARRAY[format($q$
        SELECT 1 FROM monthly_consumption m
        JOIN (%s) k ON m.metering_point_id = k.metering_point_id AND m.service = k.service
         AND m.register = k.register AND m.month = k.month
        ORDER BY m.metering_point_id, m.service, m.register, m.month
        FOR UPDATE OF m$q$, keys),
    format($q$
        DELETE FROM monthly_consumption m
        USING (%s) k
        WHERE m.metering_point_id = k.metering_point_id AND m.service = k.service
          AND m.register = k.register AND m.month = k.month
          AND NOT EXISTS (
              SELECT 1 FROM daily_consumption d
              WHERE d.metering_point_id = k.metering_point_id AND d.service = k.service
                AND d.register = k.register AND d.local_day >= k.month
                AND d.local_day < (k.month + interval '1 month')::date)$q$, keys),
    format($q$
        INSERT INTO monthly_consumption AS m (metering_point_id, service, register, month,
                                              quantity_milli, first_day, days)
        SELECT d.metering_point_id, d.service, d.register, k.month,
               sum(d.quantity_milli)::bigint, min(d.local_day), count(*)::integer
        FROM (%s) k
        JOIN daily_consumption d
          ON d.metering_point_id = k.metering_point_id AND d.service = k.service
         AND d.register = k.register AND d.local_day >= k.month
         AND d.local_day < (k.month + interval '1 month')::date
        GROUP BY d.metering_point_id, d.service, d.register, k.month
        ON CONFLICT (metering_point_id, service, register, month) DO UPDATE
        SET quantity_milli = excluded.quantity_milli, first_day = excluded.first_day,
            days = excluded.days
        WHERE (m.quantity_milli, m.first_day, m.days)
              IS DISTINCT FROM (excluded.quantity_milli, excluded.first_day, excluded.days)
        $q$, keys)]
$f$;

-- Statement level with transition tables, one pass per statement. New rows (an INSERT,
-- the sink's upsert inserting) and updates that keep every row's key (the upsert adding
-- to a day, a read edit) are *added* to the totals: sum and count per key of the rows in
-- the transition tables, merged into the existing totals by an upsert that adds (safe
-- when two transactions write the same key: the second adds to what the first committed).
-- Anything else (a DELETE, an UPDATE that moves rows between days or metering points)
-- recomputes its keys from `daily_consumption`. Recomputing every upserted key instead
-- re-reads up to 31 day rows per key and batch: measured +40-50 % CPU of the stream late
-- in a month (docs/performance.md, "Month-to-date totals").
CREATE FUNCTION monthly_consumption_of_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    keys        text;
    q           text;
    same_keys   boolean;
BEGIN
    IF TG_OP = 'INSERT' THEN
        EXECUTE $q$
            INSERT INTO monthly_consumption AS m (metering_point_id, service, register, month,
                                                  quantity_milli, first_day, days)
            SELECT metering_point_id, service, register, date_trunc('month', local_day)::date,
                   sum(quantity_milli)::bigint, min(local_day), count(*)::integer
            FROM changed
            GROUP BY 1, 2, 3, 4
            ON CONFLICT (metering_point_id, service, register, month) DO UPDATE
            SET quantity_milli = m.quantity_milli + excluded.quantity_milli,
                first_day = least(m.first_day, excluded.first_day),
                days = m.days + excluded.days$q$;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        EXECUTE $q$
            SELECT (SELECT count(*) FROM old_rows) = (SELECT count(*) FROM new_rows)
               AND (SELECT count(*) FROM new_rows) = (
                   SELECT count(*) FROM old_rows o JOIN new_rows n
                   USING (metering_point_id, service, register, local_day))$q$
        INTO same_keys;
        IF same_keys THEN
            EXECUTE $q$
                UPDATE monthly_consumption m
                SET quantity_milli = m.quantity_milli + g.delta
                FROM (SELECT n.metering_point_id, n.service, n.register,
                             date_trunc('month', n.local_day)::date AS month,
                             sum(n.quantity_milli - o.quantity_milli)::bigint AS delta
                      FROM new_rows n JOIN old_rows o
                      USING (metering_point_id, service, register, local_day)
                      GROUP BY 1, 2, 3, 4) g
                WHERE m.metering_point_id = g.metering_point_id AND m.service = g.service
                  AND m.register = g.register AND m.month = g.month AND g.delta <> 0$q$;
            RETURN NULL;
        END IF;
        keys := (
            'SELECT metering_point_id, service, register,'
            ' date_trunc(''month'', local_day)::date AS month FROM old_rows'
            ' UNION SELECT metering_point_id, service, register,'
            ' date_trunc(''month'', local_day)::date FROM new_rows');
    ELSE
        keys := (
            'SELECT DISTINCT metering_point_id, service, register,'
            ' date_trunc(''month'', local_day)::date AS month FROM changed');
    END IF;
    FOREACH q IN ARRAY monthly_consumption_sql(keys) LOOP
        EXECUTE q;
    END LOOP;
    RETURN NULL;
END $$;

-- The same for one row (TimescaleDB hypertables do not take transition tables).
-- UNTESTED: no TimescaleDB server in the test environment; written like
-- queue_rebill_of_changed_row (0015).
CREATE FUNCTION monthly_consumption_of_changed_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    keys  text[] := '{}';
    k     text;
    q     text;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        keys := keys || format(
            'SELECT %L::text AS metering_point_id, %L::text AS service, %L::text AS register,'
            ' date_trunc(''month'', %L::date)::date AS month',
            OLD.metering_point_id, OLD.service, OLD.register, OLD.local_day);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        keys := keys || format(
            'SELECT %L::text AS metering_point_id, %L::text AS service, %L::text AS register,'
            ' date_trunc(''month'', %L::date)::date AS month',
            NEW.metering_point_id, NEW.service, NEW.register, NEW.local_day);
    END IF;
    FOREACH k IN ARRAY keys LOOP
        FOREACH q IN ARRAY monthly_consumption_sql(k) LOOP
            EXECUTE q;
        END LOOP;
    END LOOP;
    RETURN NULL;
END $$;

-- TRUNCATE fires no row or transition-table trigger: the totals go with the days.
CREATE FUNCTION monthly_consumption_emptied() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE monthly_consumption;
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
        CREATE TRIGGER daily_consumption_monthly_row
            AFTER INSERT OR UPDATE OR DELETE ON daily_consumption
            FOR EACH ROW EXECUTE FUNCTION monthly_consumption_of_changed_row();
    ELSE
        CREATE TRIGGER daily_consumption_monthly_insert AFTER INSERT ON daily_consumption
            REFERENCING NEW TABLE AS changed
            FOR EACH STATEMENT EXECUTE FUNCTION monthly_consumption_of_changed();
        CREATE TRIGGER daily_consumption_monthly_update AFTER UPDATE ON daily_consumption
            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION monthly_consumption_of_changed();
        CREATE TRIGGER daily_consumption_monthly_delete AFTER DELETE ON daily_consumption
            REFERENCING OLD TABLE AS changed
            FOR EACH STATEMENT EXECUTE FUNCTION monthly_consumption_of_changed();
        CREATE TRIGGER daily_consumption_monthly_truncate AFTER TRUNCATE ON daily_consumption
            FOR EACH STATEMENT EXECUTE FUNCTION monthly_consumption_emptied();
    END IF;
END $$;

-- Rows already there.
INSERT INTO monthly_consumption (metering_point_id, service, register, month,
                                 quantity_milli, first_day, days)
SELECT metering_point_id, service, register, date_trunc('month', local_day)::date,
       sum(quantity_milli)::bigint, min(local_day), count(*)::integer
FROM daily_consumption
GROUP BY 1, 2, 3, 4;
