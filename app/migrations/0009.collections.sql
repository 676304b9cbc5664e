-- Collections (naplata potraživanja): the ladder state of each account, a trace row per
-- step, charges beyond invoices (late-payment interest, reconnection fees, court and lawyer
-- costs, write-offs), disconnection work orders, payment plans (reprogram) and legal cases.
-- Money is integer feninga. Letters are rendered on demand from the step row (its detail
-- keeps what the letter says), so a letter can be printed again identically.

CREATE TABLE collection_accounts (
    customer_id   text PRIMARY KEY REFERENCES customers,
    stage         text NOT NULL DEFAULT 'current'
                  CHECK (stage IN ('current', 'reminder', 'warning', 'disconnection', 'legal')),
    stage_on      date,
    disconnected  boolean NOT NULL DEFAULT false
);

CREATE TABLE collection_steps (
    step_id       bigserial PRIMARY KEY,
    customer_id   text NOT NULL REFERENCES customers,
    step          text NOT NULL CHECK (step IN (
                      'reminder', 'warning', 'disconnection', 'legal', 'cleared',
                      'plan_agreed', 'plan_completed', 'plan_breached', 'disconnected',
                      'reconnection')),
    step_on       date NOT NULL,
    overdue_fen   bigint NOT NULL DEFAULT 0,
    days_overdue  integer NOT NULL DEFAULT 0,
    interest_fen  bigint NOT NULL DEFAULT 0,   -- interest charged with this step's letter
    letter_ref    text UNIQUE,                 -- letters only (reminder, warning, disconnection)
    detail        jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (customer_id, step, step_on)        -- a rerun of the same day adds nothing
);
CREATE INDEX collection_steps_on ON collection_steps (step_on);

CREATE TABLE customer_charges (
    charge_id     text PRIMARY KEY CHECK (length(charge_id) BETWEEN 1 AND 100),
    customer_id   text NOT NULL REFERENCES customers,
    kind          text NOT NULL CHECK (kind IN (
                      'interest', 'reconnection_fee', 'court_fee', 'lawyer_fee', 'write_off')),
    charged_on    date NOT NULL,
    amount_fen    bigint NOT NULL CHECK (amount_fen <> 0),  -- write-offs are negative
    entry_number  text NOT NULL REFERENCES journal_entries,
    case_id       bigint,
    CHECK ((kind = 'write_off') = (amount_fen < 0))
);
CREATE INDEX customer_charges_customer ON customer_charges (customer_id, charged_on);

CREATE TABLE disconnection_orders (
    order_id           bigserial PRIMARY KEY,
    customer_id        text NOT NULL REFERENCES customers,
    step_id            bigint NOT NULL REFERENCES collection_steps,
    metering_point_id  text NOT NULL REFERENCES metering_points,
    meter_id           text REFERENCES meters,
    service            text NOT NULL,
    issued_on          date NOT NULL,
    status             text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done', 'cancelled')),
    done_on            date,
    CHECK ((status = 'open') = (done_on IS NULL))
);

CREATE TABLE legal_cases (
    case_id       bigserial PRIMARY KEY,
    customer_id   text NOT NULL REFERENCES customers,
    court         text NOT NULL CHECK (length(court) BETWEEN 1 AND 200),
    case_number   text CHECK (length(case_number) BETWEEN 1 AND 100),
    filed_on      date NOT NULL,
    state         text NOT NULL DEFAULT 'filed' CHECK (state IN (
                      'filed', 'judgment', 'enforcement', 'collected', 'settled', 'written_off')),
    state_on      date NOT NULL,
    principal_fen bigint NOT NULL CHECK (principal_fen >= 0),
    interest_fen  bigint NOT NULL CHECK (interest_fen >= 0),
    costs_fen     bigint NOT NULL DEFAULT 0 CHECK (costs_fen >= 0)
);
CREATE UNIQUE INDEX legal_cases_one_open ON legal_cases (customer_id)
    WHERE state IN ('filed', 'judgment', 'enforcement');

CREATE TABLE legal_case_events (
    case_id   bigint NOT NULL REFERENCES legal_cases,
    event_no  integer NOT NULL,
    state     text NOT NULL,
    event_on  date NOT NULL,
    note      text NOT NULL DEFAULT '' CHECK (length(note) <= 500),
    PRIMARY KEY (case_id, event_no)
);

CREATE TABLE payment_plans (
    plan_id    bigserial PRIMARY KEY,
    customer_id text NOT NULL REFERENCES customers,
    agreed_on  date NOT NULL,
    status     text NOT NULL DEFAULT 'active'
               CHECK (status IN ('active', 'completed', 'breached', 'cancelled')),
    status_on  date NOT NULL,
    total_fen  bigint NOT NULL CHECK (total_fen > 0),
    case_id    bigint REFERENCES legal_cases
);
CREATE UNIQUE INDEX payment_plans_one_active ON payment_plans (customer_id) WHERE status = 'active';

CREATE TABLE plan_instalments (
    plan_id     bigint NOT NULL REFERENCES payment_plans,
    no          integer NOT NULL CHECK (no >= 1),
    due_on      date NOT NULL,
    amount_fen  bigint NOT NULL CHECK (amount_fen > 0),
    PRIMARY KEY (plan_id, no)
);
