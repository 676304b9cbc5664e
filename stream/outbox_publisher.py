"""Publisher of the transactional outbox (`billing.outbox`): unpublished `outbox_events`
rows → Kafka, then stamped `published_at`.

One batch is one transaction: the rows are locked (``FOR UPDATE SKIP LOCKED``, so two
publishers never send the same batch), the payloads of claim-check rows (a document id,
no payload) are built from their immutable documents in bulk, every payload is checked
against its topic's JSON Schema, the valid ones are produced with an idempotent producer
(``acks=all``) keyed by the row's key, and only those Kafka acknowledged are stamped. A
payload that breaks its contract (or a claim check whose document is missing) is never
sent: the row gets `error` and waits for a person. If the process dies
between Kafka's acknowledgement and the commit, the batch is sent again on the next run
(at least once); consumers deduplicate by the business key in the payload (invoice number,
payment id, entry number), as every consumer of this platform does.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from confluent_kafka import KafkaError, Message, Producer

from billing.outbox import PAYLOADS, build_payloads
from ingest.kafka_producer import DEFAULT_CONFIG
from schemas import SchemaError
from schemas.contracts import validate

log = logging.getLogger(__name__)

_PENDING = """
SELECT event_id, topic, key, payload::text, document FROM outbox_events
WHERE published_at IS NULL AND error IS NULL
ORDER BY event_id LIMIT %s FOR UPDATE SKIP LOCKED
"""


@dataclass
class PublishReport:
    published: int = 0
    refused: int = 0  # payload breaks its contract: left with `error`
    failed: int = 0  # Kafka did not acknowledge: left unpublished, retried next time

    def __iadd__(self, other: PublishReport) -> PublishReport:
        self.published += other.published
        self.refused += other.refused
        self.failed += other.failed
        return self


class OutboxPublisher:
    """Sends outbox rows to Kafka. `topic_prefix` is put before every contract topic name
    (tests and benches use their own topics; production uses none)."""

    def __init__(self, bootstrap: str, *, topic_prefix: str = "",
                 client_id: str = "billing-outbox", delivery_timeout_s: float = 60.0,
                 config: Mapping[str, Any] | None = None) -> None:
        self.topic_prefix = topic_prefix
        self.delivery_timeout_s = delivery_timeout_s
        self._producer = Producer({
            **DEFAULT_CONFIG,
            "enable.idempotence": True,
            "acks": "all",
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "message.timeout.ms": int(delivery_timeout_s * 1000),
            "logger": log,
            **(config or {}),
        })

    def publish_batch(self, conn: psycopg.Connection, *, limit: int = 5000) -> PublishReport:
        """Send up to `limit` pending rows and commit their stamps; see the module docstring."""
        report = PublishReport()
        with conn.transaction():
            rows = conn.execute(_PENDING, (limit,)).fetchall()
            if not rows:
                return report
            acked: list[int] = []
            refused: list[tuple[int, str]] = []
            failures: list[str] = []
            texts = _payloads(conn, rows)
            for event_id, topic, key, *_ in rows:
                text = texts.get(event_id)
                if text is None:
                    refused.append((event_id, f"{topic}: no document to build the payload"
                                               f" from (document {_doc(rows, event_id)!r})"))
                    continue
                payload = orjson.loads(text)
                try:
                    validate(topic, payload)
                except SchemaError as exc:
                    refused.append((event_id, f"{topic}: {exc}"[:1000]))
                    continue
                self._send(self.topic_prefix + topic, key, orjson.dumps(payload),
                           _on_delivery(event_id, acked, failures))
            left = self._producer.flush(self.delivery_timeout_s + 5.0)
            if failures or left:
                log.warning("outbox: %d event(s) not acknowledged by Kafka (%s); retried later",
                            len(failures) + left, failures[0] if failures else "timeout")
            if acked:
                conn.execute("UPDATE outbox_events SET published_at = now()"
                             " WHERE event_id = ANY(%s)", (acked,))
            if refused:
                conn.execute("UPDATE outbox_events o SET error = r.error"
                             " FROM unnest(%s::bigint[], %s::text[]) AS r(event_id, error)"
                             " WHERE o.event_id = r.event_id",
                             ([e for e, _ in refused], [why for _, why in refused]))
                for event_id, why in refused:
                    log.error("outbox event %d refused: %s", event_id, why)
            report.published = len(acked)
            report.refused = len(refused)
            report.failed = len(rows) - len(acked) - len(refused)
        return report

    def publish_pending(self, conn: psycopg.Connection, *, limit: int = 5000) -> PublishReport:
        """Publish batches until nothing is pending (or Kafka stops acknowledging)."""
        total = PublishReport()
        while True:
            batch = self.publish_batch(conn, limit=limit)
            total += batch
            if batch.published + batch.refused == 0 or batch.failed:
                return total

    def _send(self, topic: str, key: str, value: bytes,
              cb: Callable[[KafkaError | None, Message], None]) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=cb)
                return
            except BufferError:  # local queue full: serve callbacks until there is room
                self._producer.poll(0.05)

    def close(self, timeout: float = 10.0) -> int:
        """Flush and close; return how many records were left undelivered."""
        left = int(self._producer.flush(timeout))
        if left:
            self._producer.purge()
            self._producer.poll(0)
        return left


def _payloads(conn: psycopg.Connection, rows: list[tuple[Any, ...]]) -> dict[int, str]:
    """event id → payload text: the row's own payload, or, for a claim check, the payload
    built from its document (one query per topic for the whole batch)."""
    out: dict[int, str] = {}
    claims: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for event_id, topic, _key, text, document in rows:
        if text is not None:
            out[event_id] = text
        elif topic in PAYLOADS:
            claims[topic].append((event_id, document))
    for topic, wanted in claims.items():
        built = build_payloads(conn, topic, sorted({doc for _, doc in wanted}))
        out.update((event_id, built[doc]) for event_id, doc in wanted if doc in built)
    return out


def _doc(rows: list[tuple[Any, ...]], event_id: int) -> str | None:
    return next((r[4] for r in rows if r[0] == event_id), None)


def _on_delivery(event_id: int, acked: list[int], failures: list[str]
                 ) -> Callable[[KafkaError | None, Message], None]:
    def cb(err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            acked.append(event_id)
        else:
            failures.append(f"event {event_id}: {err.name()}: {err.str()}")
    return cb


def run_publisher(connect: Callable[[], psycopg.Connection], publisher: OutboxPublisher,
                  stop: threading.Event, *, idle_seconds: float = 1.0) -> PublishReport:
    """Publish until `stop` is set, waiting `idle_seconds` whenever nothing is pending;
    a database or Kafka error is logged and retried after the wait."""
    total = PublishReport()
    while not stop.is_set():
        try:
            with connect() as conn:
                while not stop.is_set():
                    batch = publisher.publish_pending(conn)
                    total += batch
                    if batch.published:
                        log.info("outbox: published %d event(s)", batch.published)
                    stop.wait(idle_seconds)
        except psycopg.Error as exc:
            log.warning("outbox publisher: database: %s; retrying", exc)
            stop.wait(idle_seconds)
    return total


def publish_command(bootstrap: str, database_url: str, *, once: bool,
                    topic_prefix: str = "") -> int:
    """`billing publish-events`: publish what is pending (`once`) or keep publishing until
    interrupted. Returns the exit status (1 if Kafka left events unacknowledged)."""
    publisher = OutboxPublisher(bootstrap, topic_prefix=topic_prefix)
    stop = threading.Event()
    try:
        if once:
            with psycopg.connect(database_url) as conn:
                report = publisher.publish_pending(conn)
        else:
            try:
                report = run_publisher(lambda: psycopg.connect(database_url), publisher, stop)
            except KeyboardInterrupt:
                stop.set()
                return 0
    finally:
        publisher.close()
    print(f"outbox: published {report.published}, refused {report.refused},"
          f" not acknowledged {report.failed}")
    return 1 if report.failed else 0
