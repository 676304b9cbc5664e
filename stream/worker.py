"""The Kafka → PostgreSQL worker process: ``python -m stream.worker`` (settings from env).

Each batch of Kafka messages becomes one PostgreSQL transaction: the reads go through
`stream.pipeline.process_reads` together with the consumed offsets, and everything refused
(bytes that are not JSON, oversized messages, reads that fail validation) goes to the
dead-letter topic before the transaction commits, and to ``rejected_reads`` inside it.
Delivery is at least once; the effect is exactly once (business keys, offsets stored with
the batch). Run as many processes as there are partitions; ``kill -9`` loses nothing.

A read may carry extra keys such as ``gateway_id``: `schemas.meter_reads.decode_read`
ignores keys it does not know, and ``rejected_reads`` keeps the whole object.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence

import faust
import orjson
from confluent_kafka.admin import AdminClient
from prometheus_client import start_http_server
from psycopg_pool import ConnectionPool

from app.bootstrap import bootstrap
from app.metrics import (
    BATCH_SIZE,
    DEAD_LETTERS,
    LAST_INGEST,
    READ_LATENCY,
    READS_ACCEPTED,
    READS_DUPLICATE,
    READS_RECEIVED,
    READS_REJECTED,
)
from app.settings import Settings
from stream.dead_letters import DeadLetter, DeadLetterProducer
from stream.faust_app import TRANSIENT, Record, create_app
from stream.pipeline import BatchResult, process_reads
from stream.sink_postgres import ConsumedOffset, RejectedRow
from stream.vee import ACCEPTED, REJECTED

log = logging.getLogger(__name__)

CHANNEL = "kafka"
MAX_MESSAGE_BYTES = 16 * 1024  # one read is ~150 bytes
DEFAULT_PARTITIONS = 4
# meter ids, registers, units out of metric labels: "unknown meter E1" → "unknown meter *"
_LABEL_NOISE = re.compile(r"\S*[A-Z0-9.]\S*")


class KafkaBatchStore:
    """Stores batches of raw Kafka messages; synchronous, called from a worker thread."""

    def __init__(
        self,
        pool: ConnectionPool,
        dead_letters: DeadLetterProducer,
        *,
        topic: str,
        consumer_group: str,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.pool = pool
        self.dead_letters = dead_letters
        self.topic = topic
        self.group = consumer_group
        self.max_message_bytes = max_message_bytes

    def stored_offsets(self, partitions: Iterable[int]) -> dict[int, int]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT partition, next_offset FROM stream_offsets"
                " WHERE consumer_group = %s AND topic = %s AND partition = ANY(%s)",
                (self.group, self.topic, list(partitions)),
            ).fetchall()
        return {int(p): int(o) for p, o in rows}

    def store(self, records: Sequence[Record], now: int) -> dict[int, int]:
        """One transaction for the whole batch. If it fails for a reason other than a
        lost connection, the batch is stored message by message and a message that still
        fails is dead-lettered, so one poison message cannot stop its partition."""
        READS_RECEIVED.labels(CHANNEL).inc(len(records))
        BATCH_SIZE.labels("worker").observe(len(records))
        try:
            return self._store(records, now)
        except TRANSIENT:
            raise
        except Exception:
            log.exception("batch of %d failed; storing its messages one by one", len(records))
        for record in records:
            try:
                self._store([record], now)
            except TRANSIENT:
                raise
            except Exception as exc:
                log.exception("message %s/%d failed; dead-lettered", record[0], record[1])
                self._refuse(record, f"processing failed: {type(exc).__name__}", now)
        return _next_offsets(records)

    def _store(self, records: Sequence[Record], now: int) -> dict[int, int]:
        payloads: list[object] = []
        origin: list[int] = []
        refused: list[RejectedRow] = []
        letters: list[DeadLetter] = []
        for index, (partition, offset, key, value) in enumerate(records):
            if not value:
                reason = "empty message"
            elif len(value) > self.max_message_bytes:
                reason = f"message too large: {len(value)} bytes, at most {self.max_message_bytes}"
            else:
                try:
                    payloads.append(orjson.loads(value))
                    origin.append(index)
                    continue
                except orjson.JSONDecodeError as exc:
                    reason = f"not JSON: {exc}"
            refused.append(RejectedRow(None, None, None, reason, _as_text(value)))
            letters.append(DeadLetter(self.topic, partition, offset, key, value, reason))
        next_offsets = _next_offsets(records)
        offsets = [ConsumedOffset(self.group, self.topic, p, o) for p, o in next_offsets.items()]
        with self.pool.connection() as conn, conn.transaction():
            result = process_reads(
                conn,
                payloads,
                channel=CHANNEL,
                now=now,
                offsets=offsets,
                rejected_before=refused,
            )
            for k, outcome in enumerate(result.outcomes):
                if outcome.status == REJECTED:
                    partition, offset, key, value = records[origin[k]]
                    letters.append(
                        DeadLetter(
                            self.topic, partition, offset, key, value, outcome.reason or "rejected"
                        )
                    )
            # before the commit: a crash after it must not lose a dead letter
            self.dead_letters.send(letters, rejected_at=now)
        _count(result, refused, letters, now)
        return next_offsets

    def _refuse(self, record: Record, reason: str, now: int) -> None:
        partition, offset, key, value = record
        offsets = [ConsumedOffset(self.group, self.topic, partition, offset + 1)]
        with self.pool.connection() as conn, conn.transaction():
            process_reads(
                conn,
                [],
                channel=CHANNEL,
                now=now,
                offsets=offsets,
                rejected_before=[RejectedRow(None, None, None, reason, _as_text(value))],
            )
            letter = DeadLetter(self.topic, partition, offset, key, value, reason)
            self.dead_letters.send([letter], rejected_at=now)
        READS_REJECTED.labels(CHANNEL, "processing failed").inc()
        DEAD_LETTERS.labels("worker").inc()


def _next_offsets(records: Sequence[Record]) -> dict[int, int]:
    next_offsets: dict[int, int] = {}
    for partition, offset, _key, _value in records:
        if offset >= next_offsets.get(partition, 0):
            next_offsets[partition] = offset + 1
    return next_offsets


def _as_text(value: bytes | None) -> str:
    """Refused bytes as text for ``rejected_reads`` (exact bytes are in the dead letter)."""
    kept = (value or b"")[:MAX_MESSAGE_BYTES]
    return kept.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")


def _count(
    result: BatchResult, refused: Sequence[RejectedRow], letters: Sequence[DeadLetter], now: int
) -> None:
    if result.accepted:
        READS_ACCEPTED.labels(CHANNEL).inc(result.accepted)
        observe = READ_LATENCY.observe
        for outcome in result.outcomes:
            if outcome.status == ACCEPTED and outcome.read_at is not None:
                observe(max(0, now - outcome.read_at))
        LAST_INGEST.set(now)
    if result.duplicates:
        READS_DUPLICATE.labels(CHANNEL).inc(result.duplicates)
    for reason, n in result.reasons.items():
        READS_REJECTED.labels(CHANNEL, _LABEL_NOISE.sub("*", reason)).inc(n)
    for row in refused:
        READS_REJECTED.labels(CHANNEL, row.reason.split(":")[0]).inc()
    if letters:
        DEAD_LETTERS.labels("worker").inc(len(letters))


def topic_partitions(bootstrap: str, topic: str) -> int:
    """Partitions of the reads topic (the broker's default if it does not exist yet)."""
    try:
        meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
        found = meta.topics.get(topic)
        if found is not None and found.error is None and found.partitions:
            return len(found.partitions)
    except Exception:
        log.warning("could not read the partitions of %s", topic, exc_info=True)
    return DEFAULT_PARTITIONS


def run_worker(settings: Settings) -> None:
    """Run one worker until SIGTERM/SIGINT (or until a batch cannot be stored)."""
    if not settings.kafka_bootstrap:
        raise SystemExit("BILLING_KAFKA_BOOTSTRAP is not set: the worker needs Kafka")
    if settings.metrics_port:
        start_http_server(settings.metrics_port)
    runtime = bootstrap(settings, pool_size=2)
    dead_letters = DeadLetterProducer(settings.kafka_bootstrap, settings.kafka_dlq_topic)
    store = KafkaBatchStore(
        runtime.pool,
        dead_letters,
        topic=settings.kafka_reads_topic,
        consumer_group=settings.kafka_consumer_group,
    )
    try:
        if settings.worker_engine == "faust":
            partitions = topic_partitions(settings.kafka_bootstrap, settings.kafka_reads_topic)
            app = create_app(settings, store, topic_partitions=partitions)
            worker = faust.Worker(app, loglevel="INFO", quiet=True, redirect_stdouts=False)
            worker.execute_from_commandline()
        else:
            from stream.kafka_loop import run_loop

            run_loop(settings, store)
    finally:
        dead_letters.close()
        runtime.close()


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    run_worker(Settings())


if __name__ == "__main__":
    main()
