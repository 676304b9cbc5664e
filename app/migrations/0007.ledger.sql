-- General ledger (glavna knjiga): chart of accounts, journal entries and lines, and the
-- queue of bank payments a clerk has to match by hand.
-- Money is integer feninga. Entries are numbered YYYY-NNNNNN without gaps per year (the
-- counter row is locked and advanced in the transaction that posts). Posted entries never
-- change: a mistake is corrected by a reversal entry. An entry whose debits differ from its
-- credits is refused when the transaction commits.

CREATE TABLE ledger_accounts (
    account  text PRIMARY KEY CHECK (account ~ '^[0-9]{3,10}$'),
    name     text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind     text NOT NULL CHECK (kind IN ('asset', 'liability', 'equity', 'revenue', 'expense'))
);

CREATE TABLE journal_counters (
    year      integer PRIMARY KEY,
    last_seq  integer NOT NULL CHECK (last_seq >= 0)
);

CREATE TABLE journal_entries (
    entry_number     text PRIMARY KEY,
    year             integer NOT NULL,
    seq              integer NOT NULL CHECK (seq BETWEEN 1 AND 999999),
    entry_date       date NOT NULL,
    kind             text NOT NULL
                     CHECK (kind IN ('invoice', 'payment', 'reversal', 'adjustment', 'opening')),
    source_document  text NOT NULL CHECK (length(source_document) BETWEEN 1 AND 100),
    description      text NOT NULL DEFAULT '' CHECK (length(description) <= 200),
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (year, seq),
    UNIQUE (kind, source_document),  -- a document is booked once
    CHECK (entry_number = year::text || '-' || lpad(seq::text, 6, '0')),
    CHECK (year = extract(year FROM entry_date))
);
CREATE INDEX journal_entries_date ON journal_entries (entry_date);

CREATE TABLE journal_lines (
    entry_number  text NOT NULL REFERENCES journal_entries,
    line_no       integer NOT NULL CHECK (line_no >= 1),
    account       text NOT NULL REFERENCES ledger_accounts,
    customer_id   text REFERENCES customers,
    debit_fen     bigint NOT NULL CHECK (debit_fen >= 0),
    credit_fen    bigint NOT NULL CHECK (credit_fen >= 0),
    CHECK ((debit_fen > 0) <> (credit_fen > 0)),  -- exactly one side
    PRIMARY KEY (entry_number, line_no)
);
CREATE INDEX journal_lines_account ON journal_lines (account);
CREATE INDEX journal_lines_customer ON journal_lines (customer_id) WHERE customer_id IS NOT NULL;

CREATE FUNCTION refuse_change_of_posted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'posted journal entries are immutable (% on %): post a reversal instead',
        TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER journal_entries_immutable BEFORE UPDATE OR DELETE ON journal_entries
    FOR EACH ROW EXECUTE FUNCTION refuse_change_of_posted();
CREATE TRIGGER journal_lines_immutable BEFORE UPDATE OR DELETE ON journal_lines
    FOR EACH ROW EXECUTE FUNCTION refuse_change_of_posted();
CREATE TRIGGER journal_entries_no_truncate BEFORE TRUNCATE ON journal_entries
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change_of_posted();
CREATE TRIGGER journal_lines_no_truncate BEFORE TRUNCATE ON journal_lines
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change_of_posted();

-- Checked at commit (lines may be written after their entry, in any order): the entry has
-- at least two lines and its debits equal its credits. Fires per entry and per line, so a
-- line added later to an old entry is checked too.
CREATE FUNCTION check_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    debits   bigint;
    credits  bigint;
    n        integer;
BEGIN
    SELECT coalesce(sum(debit_fen), 0), coalesce(sum(credit_fen), 0), count(*)
      INTO debits, credits, n
      FROM journal_lines WHERE entry_number = NEW.entry_number;
    IF n < 2 OR debits <> credits THEN
        RAISE EXCEPTION 'journal entry % does not balance: debits % ≠ credits % (feninga, % lines)',
            NEW.entry_number, debits, credits, n
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER journal_entries_balanced AFTER INSERT ON journal_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION check_entry_balanced();
CREATE CONSTRAINT TRIGGER journal_lines_balanced AFTER INSERT ON journal_lines
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION check_entry_balanced();

-- Bank payments no rule could match (or that contradict a recorded one): they wait here
-- for a clerk instead of being lost. Keyed by the id the payment would be recorded under.
CREATE TABLE unmatched_payments (
    payment_id     text PRIMARY KEY CHECK (length(payment_id) BETWEEN 1 AND 100),
    kind           text NOT NULL CHECK (kind IN ('unmatched', 'flagged')),
    source         text NOT NULL,
    statement_id   text,
    paid_on        date NOT NULL,
    amount_fen     bigint NOT NULL CHECK (amount_fen > 0),
    currency       text NOT NULL DEFAULT 'BAM',
    reference      text,           -- the payment reference found (or as written)
    remittance     text,           -- all remittance text of the payment, for the clerk
    customer_code  text,
    payer_name     text,
    reason         text NOT NULL,
    status         text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    received_at    timestamptz NOT NULL,
    resolved_at    timestamptz,
    resolution     text,
    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);
CREATE INDEX unmatched_payments_open ON unmatched_payments (received_at) WHERE status = 'open';
