-- depends: 0012.credit_notes
-- Customer portal: notification preferences and problem reports (issue #6).

CREATE TABLE notification_preferences (
    customer_id  text NOT NULL REFERENCES customers,
    event        text NOT NULL CHECK (event IN ('invoice_issued', 'payment_received', 'reminder')),
    channel      text NOT NULL CHECK (channel IN ('email', 'sms')),
    enabled      boolean NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (customer_id, event, channel)
);

CREATE TABLE customer_reports (
    report_id          bigserial PRIMARY KEY,
    customer_id        text NOT NULL REFERENCES customers,
    category           text NOT NULL CHECK (category IN ('meter', 'invoice', 'supply', 'other')),
    body               text NOT NULL CHECK (length(body) BETWEEN 1 AND 2000),
    metering_point_id  text REFERENCES metering_points,
    status             text NOT NULL DEFAULT 'new'
                       CHECK (status IN ('new', 'in_progress', 'resolved')),
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    updated_by         text
);
CREATE INDEX customer_reports_customer ON customer_reports (customer_id, created_at DESC);
