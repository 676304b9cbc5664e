-- depends: 0001.schema 0012.credit_notes 0015.rebilling 0020.portal_indexes 0022.ledger_speed
-- Cheaper invoice and journal writes in the close (issue #5, speed). Every guarantee stays;
-- what was checked row by row is checked once per statement, set-based. Measured by
-- replaying the COPYs of a close of 20,000 invoices (backend CPU; docs/performance.md):
--
-- 1. Lines and VAT rows belong to an existing invoice. The foreign keys of invoice_lines and
--    invoice_vat ran one RI query per row (120,000 + 20,000: 0.45 + 0.09 s of 1.8 s); a
--    statement-level trigger checks the distinct invoice numbers of the statement instead,
--    at the same moment (end of the statement), with the same SQLSTATE (23503). The foreign
--    keys also locked the invoice (FOR KEY SHARE) against its deletion or a change of its
--    number: an invoice can never be deleted or changed (invoices_immutable) and now never
--    truncated either (below), so nothing is left for that lock to guard.
-- 2. One invoice per customer, period and kind that is not credited. A deferred row trigger
--    counted each new invoice's siblings at COMMIT (20,000 runs, 0.16 s); now each statement
--    that writes invoices leaves one row in `invoices_pending_periods` (its distinct
--    customer, period and kind) whose deferred constraint trigger checks them all at COMMIT
--    with one query. Still at COMMIT: a credit note may follow the reissued invoice in the
--    same transaction. That query probes invoices_customer_portal (customer_id, period):
--    without an index there it would scan the invoices once per customer.
-- 3. Indexes that say what another already says, kept up to date for nothing:
--    * invoices_customer_period (customer_id, period, kind): kind has one value (CHECK), and
--      invoices_customer_portal (customer_id, period) INCLUDE (invoice_number, total_fen)
--      answers every query that used it (EXPLAIN in tests/integration/test_write_guarantees).
--    * journal_entries UNIQUE (year, seq): entry_number is the primary key and its CHECK
--      makes it year || '-' || lpad(seq, 6) with 1 ≤ seq ≤ 999999, one number per pair.
-- 4. TRUNCATE of invoices, their lines and VAT rows is refused, like any other change.
-- Kept as they were: the invoices → customers foreign key (a statement-level check with the
-- same FOR KEY SHARE lock measured as dear: the lock is the cost), journal_lines_account
-- (~0.13 s per 20,000 invoices, but a rarely used account's general ledger would scan every
-- journal line without it) and journal_entries_date (~0.01 s).

ALTER TABLE invoice_lines DROP CONSTRAINT invoice_lines_invoice_number_fkey;
ALTER TABLE invoice_vat DROP CONSTRAINT invoice_vat_invoice_number_fkey;

-- Each check is a nested loop over the index of the other table (as in 0022): its work grows
-- with the rows of the statement, never with the number of invoices.
CREATE FUNCTION check_invoice_of_new_rows() RETURNS trigger LANGUAGE plpgsql
SET enable_hashjoin = off SET enable_mergejoin = off SET enable_seqscan = off AS $$
DECLARE
    bad  text;
BEGIN
    SELECT n.invoice_number INTO bad FROM (SELECT DISTINCT invoice_number FROM new_rows) n
     WHERE NOT EXISTS (SELECT 1 FROM invoices i WHERE i.invoice_number = n.invoice_number)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '%: invoice % does not exist (write the invoice before its rows)',
            TG_TABLE_NAME, bad USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER invoice_lines_of_invoice AFTER INSERT ON invoice_lines
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION check_invoice_of_new_rows();
CREATE TRIGGER invoice_vat_of_invoice AFTER INSERT ON invoice_vat
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION check_invoice_of_new_rows();
-- An UPDATE is refused by the immutability triggers before it could change a number.

CREATE TRIGGER invoices_no_truncate BEFORE TRUNCATE ON invoices
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change_of_finalized();
CREATE TRIGGER invoice_lines_no_truncate BEFORE TRUNCATE ON invoice_lines
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change_of_finalized();
CREATE TRIGGER invoice_vat_no_truncate BEFORE TRUNCATE ON invoice_vat
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change_of_finalized();

DROP TRIGGER invoices_one_open_per_period ON invoices;
DROP FUNCTION check_one_open_invoice();

-- One row per statement that wrote invoices, checked and removed at COMMIT. Unlogged: a row
-- never outlives its transaction.
CREATE UNLOGGED TABLE invoices_pending_periods (
    pending_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_ids  text[] NOT NULL,
    periods       text[] NOT NULL,
    kinds         text[] NOT NULL
);

CREATE FUNCTION queue_one_open_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO invoices_pending_periods (customer_ids, periods, kinds)
    SELECT array_agg(customer_id), array_agg(period), array_agg(kind)
      FROM (SELECT DISTINCT customer_id, period, kind FROM new_invoices) d
    HAVING count(*) > 0;
    RETURN NULL;
END $$;
CREATE TRIGGER invoices_one_open_per_period AFTER INSERT ON invoices
    REFERENCING NEW TABLE AS new_invoices
    FOR EACH STATEMENT EXECUTE FUNCTION queue_one_open_check();

CREATE FUNCTION check_one_open_invoices() RETURNS trigger LANGUAGE plpgsql
SET enable_hashjoin = off SET enable_mergejoin = off SET enable_seqscan = off AS $$
DECLARE
    bad  record;
BEGIN
    SELECT k.customer_id, k.period, count(*) AS n INTO bad
      FROM unnest(NEW.customer_ids, NEW.periods, NEW.kinds) AS k(customer_id, period, kind)
      JOIN invoices i ON i.customer_id = k.customer_id AND i.period = k.period
                     AND i.kind = k.kind
     WHERE NOT EXISTS (SELECT 1 FROM credit_notes c WHERE c.invoice_number = i.invoice_number)
     GROUP BY k.customer_id, k.period, k.kind
    HAVING count(*) > 1
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'customer % has % invoices for period % that are not credited',
            bad.customer_id, bad.n, bad.period
            USING ERRCODE = 'unique_violation';
    END IF;
    DELETE FROM invoices_pending_periods WHERE pending_id = NEW.pending_id;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER invoices_pending_periods_check AFTER INSERT ON invoices_pending_periods
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION check_one_open_invoices();

-- Only the check itself removes a pending row; nothing changes one.
CREATE FUNCTION refuse_change_of_pending_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND pg_trigger_depth() > 1 THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% is kept by the invoices'' triggers (% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER invoices_pending_periods_kept BEFORE UPDATE OR DELETE ON invoices_pending_periods
    FOR EACH ROW EXECUTE FUNCTION refuse_change_of_pending_check();
CREATE TRIGGER invoices_pending_periods_no_truncate BEFORE TRUNCATE ON invoices_pending_periods
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change_of_pending_check();

DROP INDEX invoices_customer_period;
ALTER TABLE journal_entries DROP CONSTRAINT journal_entries_year_seq_key;
