-- depends: 0007.ledger 0016.money_corrections 0021.outbox
-- Ledger and outbox at utility scale (issue #5, speed).
--
-- 1. The balance of a journal entry is checked once per entry, set-based, instead of by a
--    deferred row trigger that fired once per entry AND once per line (~600,000 runs for a
--    close of 100,000 invoices, each summing its entry's lines at COMMIT). An entry's lines
--    are written FIRST and the entry row after them: writing the entry row posts it.
--    * journal_lines, per statement: a line whose entry is already posted is refused (no
--      line can be added to a posted entry), as is a line that claims another transaction.
--    * journal_entries, per statement: every new entry has ≥ 2 lines and debits = credits
--      (one grouped query over the new entries), else the statement is refused.
--    * a line whose entry never comes: the line → entry foreign key is deferred to COMMIT.
--      It includes `posted_xact`, the id of the transaction that wrote the row (default,
--      and checked by both triggers), so a line can only belong to an entry posted by its
--      own transaction: a line written while another transaction posts the same entry
--      number cannot attach itself to that entry when both have committed.
-- 2. Claim-check outbox: invoices, payments and journal entries are immutable, so an event
--    row may carry only the document's id (`document`) and the publisher builds the very
--    same payload when it sends (billing.outbox.build_payloads). Rows with a payload (older
--    rows) are sent as they are.

DROP TRIGGER journal_entries_balanced ON journal_entries;
DROP TRIGGER journal_lines_balanced ON journal_lines;
DROP FUNCTION check_entry_balanced();

-- Rows posted before this migration keep posted_xact 0 (no rewrite, no trigger fires).
ALTER TABLE journal_entries ADD COLUMN posted_xact xid8 NOT NULL DEFAULT '0';
ALTER TABLE journal_entries ALTER COLUMN posted_xact SET DEFAULT pg_current_xact_id();
ALTER TABLE journal_entries ADD CONSTRAINT journal_entries_posted_xact
    UNIQUE (entry_number, posted_xact);
ALTER TABLE journal_lines ADD COLUMN posted_xact xid8 NOT NULL DEFAULT '0';
ALTER TABLE journal_lines ALTER COLUMN posted_xact SET DEFAULT pg_current_xact_id();
ALTER TABLE journal_lines DROP CONSTRAINT journal_lines_entry_number_fkey;
ALTER TABLE journal_lines ADD CONSTRAINT journal_lines_entry_fkey
    FOREIGN KEY (entry_number, posted_xact) REFERENCES journal_entries (entry_number, posted_xact)
    DEFERRABLE INITIALLY DEFERRED;

-- Nested loops over the index of the other table: the work grows with the rows of the
-- statement, never with the size of the ledger (a hash join would read all of it).
CREATE FUNCTION refuse_line_of_posted_entry() RETURNS trigger LANGUAGE plpgsql
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    bad  text;
BEGIN
    SELECT n.entry_number INTO bad FROM new_lines n
     WHERE n.posted_xact <> pg_current_xact_id() LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal line of entry %: posted_xact must be the posting transaction''s own (leave it to its default)',
            bad USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    SELECT e.entry_number INTO bad
      FROM (SELECT DISTINCT entry_number FROM new_lines) n
      JOIN journal_entries e USING (entry_number) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry % is posted: no line can be added to it (post a reversal or another entry instead)',
            bad USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER journal_lines_before_entry AFTER INSERT ON journal_lines
    REFERENCING NEW TABLE AS new_lines
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_line_of_posted_entry();

CREATE FUNCTION check_entries_balanced() RETURNS trigger LANGUAGE plpgsql
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    bad  record;
BEGIN
    SELECT n.entry_number INTO bad FROM new_entries n
     WHERE n.posted_xact <> pg_current_xact_id() LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry %: posted_xact must be the posting transaction''s own (leave it to its default)',
            bad.entry_number USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    SELECT n.entry_number, coalesce(sum(l.debit_fen), 0) AS debits,
           coalesce(sum(l.credit_fen), 0) AS credits, count(l.line_no) AS lines
      INTO bad
      FROM new_entries n LEFT JOIN journal_lines l ON l.entry_number = n.entry_number
     GROUP BY n.entry_number
    HAVING count(l.line_no) < 2 OR coalesce(sum(l.debit_fen), 0) <> coalesce(sum(l.credit_fen), 0)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry % does not balance: debits % ≠ credits % (feninga, % lines; an entry needs at least two, written before it)',
            bad.entry_number, bad.debits, bad.credits, bad.lines
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER journal_entries_balanced AFTER INSERT ON journal_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION check_entries_balanced();

ALTER TABLE outbox_events ALTER COLUMN payload DROP NOT NULL;
ALTER TABLE outbox_events ADD COLUMN document text
    CHECK (document IS NULL OR length(document) BETWEEN 1 AND 200);
ALTER TABLE outbox_events ADD CONSTRAINT outbox_events_payload_or_document
    CHECK ((payload IS NULL) <> (document IS NULL));
