-- depends: 0001.schema
-- Transactional outbox (issue #5): an outbound business event (invoice, payment, ledger
-- entry) is written in the SAME transaction as the fact it reports, so an event exists if
-- and only if the fact was committed. stream/outbox_publisher.py sends the rows that are
-- not yet published to Kafka (topic = the contract's name, key = its x-key) and stamps
-- published_at once Kafka acknowledged them; a payload that breaks its JSON Schema is never
-- sent: `error` says why and the row waits for a person.

CREATE TABLE outbox_events (
    event_id      bigserial PRIMARY KEY,
    topic         text NOT NULL CHECK (length(topic) BETWEEN 1 AND 200),
    key           text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz,
    error         text,
    CHECK (published_at IS NULL OR error IS NULL)
);
CREATE INDEX outbox_events_pending ON outbox_events (event_id)
    WHERE published_at IS NULL AND error IS NULL;
