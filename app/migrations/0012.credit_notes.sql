-- Credit notes (knjižna odobrenja, storno): a full storno of one finalized invoice.
-- Numbers CN-YYYY-NNNNNN (year of issue) have no gaps: the year's counter row is locked and
-- advanced in the transaction that issues. Amounts are stored as CREDITED, with the sign of
-- the credited invoice (a credit note of an invoice of 81.49 KM has total_fen 8149); the
-- document reduces the customer's balance by its total. Lines and VAT rows mirror those of
-- the invoice. An invoice is credited at most once; a credit note never changes.
-- A credited invoice may be replaced by a corrected invoice of the same customer and period
-- (billing.credit_notes.reissue_invoice): one invoice per customer and period becomes
-- "at most one invoice per customer and period that is not credited", checked at commit.

CREATE TABLE credit_note_counters (
    year      integer PRIMARY KEY,
    last_seq  integer NOT NULL CHECK (last_seq >= 0)
);

CREATE TABLE credit_notes (
    credit_note_number  text PRIMARY KEY,
    year                integer NOT NULL,
    seq                 integer NOT NULL CHECK (seq BETWEEN 1 AND 999999),
    invoice_number      text NOT NULL UNIQUE REFERENCES invoices,
    customer_id         text NOT NULL REFERENCES customers,
    period              text NOT NULL,
    issued_on           date NOT NULL,
    net_fen             bigint NOT NULL,
    vat_fen             bigint NOT NULL,
    total_fen           bigint NOT NULL CHECK (total_fen = net_fen + vat_fen),
    reason              text NOT NULL CHECK (length(btrim(reason)) BETWEEN 1 AND 500),
    operator            text NOT NULL CHECK (length(btrim(operator)) BETWEEN 1 AND 100),
    created_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (year, seq),
    CHECK (credit_note_number = 'CN-' || year::text || '-' || lpad(seq::text, 6, '0')),
    CHECK (year = extract(year FROM issued_on))
);
CREATE INDEX credit_notes_customer ON credit_notes (customer_id);

CREATE TABLE credit_note_lines (
    credit_note_number  text NOT NULL REFERENCES credit_notes,
    line_no             integer NOT NULL,
    service             text NOT NULL,
    metering_point_id   text,
    component           text NOT NULL,
    register            text,
    description         text NOT NULL,
    quantity_milli      bigint NOT NULL,
    unit                text NOT NULL,
    unit_price_micro    bigint NOT NULL,
    amount_fen          bigint NOT NULL,
    vat_rate            numeric(5, 2) NOT NULL,
    PRIMARY KEY (credit_note_number, line_no)
);

CREATE TABLE credit_note_vat (
    credit_note_number  text NOT NULL REFERENCES credit_notes,
    vat_rate            numeric(5, 2) NOT NULL,
    base_fen            bigint NOT NULL,
    vat_fen             bigint NOT NULL,
    PRIMARY KEY (credit_note_number, vat_rate)
);

CREATE TRIGGER credit_notes_immutable BEFORE UPDATE OR DELETE ON credit_notes
    FOR EACH ROW EXECUTE FUNCTION refuse_change_of_finalized();
CREATE TRIGGER credit_note_lines_immutable BEFORE UPDATE OR DELETE ON credit_note_lines
    FOR EACH ROW EXECUTE FUNCTION refuse_change_of_finalized();
CREATE TRIGGER credit_note_vat_immutable BEFORE UPDATE OR DELETE ON credit_note_vat
    FOR EACH ROW EXECUTE FUNCTION refuse_change_of_finalized();
CREATE TRIGGER credit_notes_no_truncate BEFORE TRUNCATE ON credit_notes
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change_of_finalized();

-- One invoice per customer and period, unless the earlier ones are credited.
ALTER TABLE invoices DROP CONSTRAINT invoices_customer_id_period_kind_key;
CREATE INDEX invoices_customer_period ON invoices (customer_id, period, kind);

CREATE FUNCTION check_one_open_invoice() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n  integer;
BEGIN
    SELECT count(*) INTO n FROM invoices i
     WHERE i.customer_id = NEW.customer_id AND i.period = NEW.period AND i.kind = NEW.kind
       AND NOT EXISTS (SELECT 1 FROM credit_notes c WHERE c.invoice_number = i.invoice_number);
    IF n > 1 THEN
        RAISE EXCEPTION 'customer % has % invoices for period % that are not credited',
            NEW.customer_id, n, NEW.period
            USING ERRCODE = 'unique_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER invoices_one_open_per_period AFTER INSERT ON invoices
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION check_one_open_invoice();
