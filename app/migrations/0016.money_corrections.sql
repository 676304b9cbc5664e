-- depends: 0012.credit_notes 0009.collections
-- Money corrections (issue #5): payment reversals and refunds, customer credit (account
-- 4310) applied to the next invoice, late-payment interest charged on the next invoice.
-- Money is integer feninga. Nothing here is ever edited: a correction is a new row.

-- A payment row is now one of: the payment itself (amount > 0), the reversal of a wrongly
-- matched payment (amount = −the payment's, `reverses` names it; at most one per payment)
-- or a refund of customer credit (amount < 0). Every sum over payments (balances, FIFO
-- coverage, aging, interest) therefore stays right without knowing about corrections.
ALTER TABLE payments DROP CONSTRAINT payments_amount_fen_check;
ALTER TABLE payments
    ADD COLUMN kind text NOT NULL DEFAULT 'payment'
        CHECK (kind IN ('payment', 'reversal', 'refund')),
    ADD COLUMN reverses text UNIQUE REFERENCES payments,
    ADD COLUMN reason text CHECK (reason IS NULL OR length(btrim(reason)) BETWEEN 1 AND 500),
    ADD COLUMN operator text CHECK (operator IS NULL OR length(btrim(operator)) BETWEEN 1 AND 100),
    ADD CONSTRAINT payments_sign CHECK ((kind = 'payment') = (amount_fen > 0) AND amount_fen <> 0),
    ADD CONSTRAINT payments_reverses CHECK ((kind = 'reversal') = (reverses IS NOT NULL)),
    ADD CONSTRAINT payments_why CHECK ((kind = 'payment') = (reason IS NULL));

CREATE FUNCTION refuse_change_of_payment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'recorded payments never change (% on payments): reverse it instead', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER payments_immutable BEFORE UPDATE OR DELETE ON payments
    FOR EACH ROW EXECUTE FUNCTION refuse_change_of_payment();

-- Movements of a customer's credit (account 4310): in (> 0) when their payments exceed what
-- they owe, out (< 0) when it is applied to an invoice (`invoice_number`), refunded, or
-- shrinks because a payment was reversed. The sum per customer is their open credit and
-- equals their 4310 balance in the ledger (each movement is one journal entry).
CREATE TABLE customer_credit_moves (
    move_id         bigserial PRIMARY KEY,
    customer_id     text NOT NULL REFERENCES customers,
    moved_on        date NOT NULL,
    amount_fen      bigint NOT NULL CHECK (amount_fen <> 0),
    cause           text NOT NULL CHECK (cause IN ('overpayment', 'applied', 'refund',
                                                   'reversal', 'correction')),
    invoice_number  text REFERENCES invoices,
    entry_number    text NOT NULL REFERENCES journal_entries,
    CHECK ((cause = 'applied') = (invoice_number IS NOT NULL)),
    CHECK (cause = 'overpayment' OR cause = 'correction' OR amount_fen < 0)
);
CREATE INDEX customer_credit_moves_customer ON customer_credit_moves (customer_id);
CREATE UNIQUE INDEX customer_credit_applied_once ON customer_credit_moves (invoice_number)
    WHERE invoice_number IS NOT NULL;
CREATE TRIGGER customer_credit_moves_immutable BEFORE UPDATE OR DELETE ON customer_credit_moves
    FOR EACH ROW EXECUTE FUNCTION refuse_change_of_payment();

-- Late-payment interest charged on an invoice: the line "Zatezna kamata" of `invoice_number`
-- charged `amount_fen`: the interest accrued up to and including `through_day` less all
-- interest charged before (on invoices or by collections letters), so none is charged twice.
CREATE TABLE interest_charges (
    invoice_number  text PRIMARY KEY REFERENCES invoices,
    customer_id     text NOT NULL REFERENCES customers,
    through_day     date NOT NULL,
    amount_fen      bigint NOT NULL CHECK (amount_fen > 0)
);
CREATE INDEX interest_charges_customer ON interest_charges (customer_id, through_day);

-- The utility's policy on interest charged with the monthly invoice (one row). Stored, not
-- an environment variable: every process (API, CLI, workers) closes with the same policy,
-- and a change is a visible decision. Default on: the law lets the utility charge it.
CREATE TABLE interest_policy (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    on_invoice      boolean NOT NULL DEFAULT true,
    min_charge_fen  bigint NOT NULL DEFAULT 0 CHECK (min_charge_fen >= 0)
);
INSERT INTO interest_policy DEFAULT VALUES;
