-- Core schema: master data, tariff catalog, reads, consumption, invoices, payments, portal.
-- Quantities are integer thousandths of the unit (Wh, litres); money is integer feninga;
-- rated amounts are integer nano-KM (quantity_milli × price_micro).

CREATE TABLE tariff_versions (
    tariff_code  text NOT NULL,
    valid_from   date NOT NULL,
    service      text NOT NULL CHECK (service IN ('electricity', 'water', 'waste')),
    document     jsonb NOT NULL,
    loaded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tariff_code, valid_from)
);

CREATE TABLE customers (
    customer_id    text PRIMARY KEY CHECK (customer_id ~ '^[0-9]{6,10}$'),
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind           text NOT NULL CHECK (kind IN ('household', 'business', 'public')),
    address        text,
    email          text,
    phone          text,
    password_hash  text,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE metering_points (
    metering_point_id  text PRIMARY KEY,
    address            text NOT NULL,
    latitude           numeric(9, 6) CHECK (latitude BETWEEN -90 AND 90),
    longitude          numeric(9, 6) CHECK (longitude BETWEEN -180 AND 180),
    household_members  integer CHECK (household_members >= 0),
    area_m2            numeric(10, 2) CHECK (area_m2 >= 0)
);

CREATE TABLE meters (
    meter_id    text PRIMARY KEY,
    service     text NOT NULL CHECK (service IN ('electricity', 'water')),
    digits      integer NOT NULL CHECK (digits BETWEEN 3 AND 12),
    multiplier  integer NOT NULL DEFAULT 1 CHECK (multiplier >= 1),
    registers   text[] NOT NULL CHECK (cardinality(registers) >= 1)
);

CREATE TABLE meter_installations (
    meter_id           text NOT NULL REFERENCES meters,
    metering_point_id  text NOT NULL REFERENCES metering_points,
    installed_at       timestamptz NOT NULL,
    removed_at         timestamptz CHECK (removed_at IS NULL OR removed_at > installed_at),
    PRIMARY KEY (meter_id, installed_at)
);
CREATE INDEX meter_installations_mp ON meter_installations (metering_point_id);

CREATE TABLE contracts (
    contract_id        text PRIMARY KEY,
    customer_id        text NOT NULL REFERENCES customers,
    metering_point_id  text NOT NULL REFERENCES metering_points,
    service            text NOT NULL CHECK (service IN ('electricity', 'water', 'waste')),
    tariff_code        text NOT NULL,
    valid_from         date NOT NULL,
    valid_to           date CHECK (valid_to IS NULL OR valid_to >= valid_from)  -- inclusive
);
CREATE INDEX contracts_customer ON contracts (customer_id);
CREATE INDEX contracts_mp ON contracts (metering_point_id, service);

CREATE TABLE readings (
    meter_id     text NOT NULL,
    register     text NOT NULL,
    read_at      timestamptz NOT NULL,
    value_milli  bigint NOT NULL CHECK (value_milli >= 0),
    unit         text NOT NULL,
    source       text NOT NULL CHECK (source IN ('amr', 'manual', 'self', 'estimate')),
    received_at  timestamptz NOT NULL,
    PRIMARY KEY (meter_id, register, read_at)
);

CREATE TABLE rejected_reads (
    rejected_id  bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL,
    channel      text NOT NULL,
    meter_id     text,
    register     text,
    read_at      text,
    reason       text NOT NULL,
    payload      text NOT NULL
);
CREATE INDEX rejected_reads_received ON rejected_reads (received_at);

CREATE TABLE meter_state (
    meter_id          text NOT NULL,
    register          text NOT NULL,
    last_read_at      timestamptz NOT NULL,
    last_value_milli  bigint NOT NULL,
    PRIMARY KEY (meter_id, register)
);

-- Consumption between consecutive accepted reads, split at local midnight and rated.
CREATE TABLE consumption_intervals (
    meter_id           text NOT NULL,
    register           text NOT NULL,
    start_at           timestamptz NOT NULL,
    end_at             timestamptz NOT NULL,
    local_day          date NOT NULL,
    metering_point_id  text NOT NULL,
    service            text NOT NULL,
    tariff_code        text,
    quantity_milli     bigint NOT NULL,
    price_micro        bigint NOT NULL,
    amount_nano        bigint NOT NULL,
    PRIMARY KEY (meter_id, register, end_at)
);
CREATE INDEX consumption_intervals_mp_day ON consumption_intervals (metering_point_id, local_day);

-- Daily rollup kept up to date by the sink (one name whether or not TimescaleDB exists).
CREATE TABLE daily_consumption (
    metering_point_id  text NOT NULL,
    service            text NOT NULL,
    register           text NOT NULL,
    local_day          date NOT NULL,
    quantity_milli     bigint NOT NULL,
    amount_nano        bigint NOT NULL,
    pieces             integer NOT NULL,
    PRIMARY KEY (metering_point_id, service, register, local_day)
);
CREATE INDEX daily_consumption_day ON daily_consumption (local_day);

CREATE TABLE invoice_counters (
    year      integer PRIMARY KEY,
    last_seq  integer NOT NULL
);

CREATE TABLE invoices (
    invoice_number     text PRIMARY KEY,
    year               integer NOT NULL,
    seq                integer NOT NULL,
    customer_id        text NOT NULL REFERENCES customers,
    period             text NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    kind               text NOT NULL DEFAULT 'invoice' CHECK (kind IN ('invoice')),
    issued_on          date NOT NULL,
    due_on             date NOT NULL,
    net_fen            bigint NOT NULL,
    vat_fen            bigint NOT NULL,
    total_fen          bigint NOT NULL CHECK (total_fen = net_fen + vat_fen),
    payment_reference  text NOT NULL UNIQUE,
    status             text NOT NULL DEFAULT 'finalized' CHECK (status IN ('finalized')),
    created_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (year, seq),
    UNIQUE (customer_id, period, kind)
);

CREATE TABLE invoice_lines (
    invoice_number     text NOT NULL REFERENCES invoices,
    line_no            integer NOT NULL,
    service            text NOT NULL,
    metering_point_id  text,
    component          text NOT NULL,
    register           text,
    description        text NOT NULL,
    quantity_milli     bigint NOT NULL,
    unit               text NOT NULL,
    unit_price_micro   bigint NOT NULL,
    amount_fen         bigint NOT NULL,
    vat_rate           numeric(5, 2) NOT NULL,
    PRIMARY KEY (invoice_number, line_no)
);

CREATE TABLE invoice_vat (
    invoice_number  text NOT NULL REFERENCES invoices,
    vat_rate        numeric(5, 2) NOT NULL,
    base_fen        bigint NOT NULL,
    vat_fen         bigint NOT NULL,
    PRIMARY KEY (invoice_number, vat_rate)
);

-- A finalized invoice never changes: the database itself refuses.
CREATE FUNCTION refuse_change_of_finalized() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'finalized invoices and their lines are immutable (% on %)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER invoices_immutable BEFORE UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION refuse_change_of_finalized();
CREATE TRIGGER invoice_lines_immutable BEFORE UPDATE OR DELETE ON invoice_lines
    FOR EACH ROW EXECUTE FUNCTION refuse_change_of_finalized();
CREATE TRIGGER invoice_vat_immutable BEFORE UPDATE OR DELETE ON invoice_vat
    FOR EACH ROW EXECUTE FUNCTION refuse_change_of_finalized();

CREATE TABLE payments (
    payment_id   text PRIMARY KEY,
    customer_id  text NOT NULL REFERENCES customers,
    paid_on      date NOT NULL,
    amount_fen   bigint NOT NULL CHECK (amount_fen > 0),
    reference    text,
    channel      text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_customer ON payments (customer_id, paid_on);

CREATE TABLE ingest_gateways (
    gateway_id    text PRIMARY KEY,
    token_sha256  text NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE portal_sessions (
    session_sha256  text PRIMARY KEY,
    customer_id     text NOT NULL REFERENCES customers,
    created_at      timestamptz NOT NULL,
    last_seen_at    timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL
);
