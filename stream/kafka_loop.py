"""The worker's default consumer: a plain batch loop on aiokafka (Faust's own client).

Measured here (bench/stream_throughput.py, docs/performance.md): Faust's agent machinery
costs ~125 µs of CPU per message — two tasks and an `asyncio.wait` each — which caps a
worker near 4,000 reads/s; the same `KafkaBatchStore` fed by `getmany` stores 6× more.
The delivery contract is the same as the Faust app's: a batch is stored (reads, state and
its offsets in one PostgreSQL transaction) before its offsets are committed to Kafka, and
on assignment a partition skips to the offset PostgreSQL already holds when that is ahead.
Selected with `BILLING_WORKER_ENGINE=aiokafka`; the default stays the Faust agent, the
design's choice and the path every streaming test covers. Known gap: after an operator
resets the group's offsets in Kafka, this loop seeks past the stored work but then stalls
before committing (seen in test_duplicates_and_redeliveries_change_nothing; not yet
understood) — so it is opt-in until that is fixed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from app.metrics import CONSUMER_LAG
from app.settings import Settings
from stream.faust_app import BatchStore, Record, store_with_retry

log = logging.getLogger(__name__)


class _SkipStored(ConsumerRebalanceListener):
    def __init__(self, consumer: AIOKafkaConsumer, store: BatchStore) -> None:
        self.consumer = consumer
        self.store = store
        self.pending: dict[TopicPartition, int] = {}  # stored offsets to commit to Kafka

    async def on_partitions_revoked(self, revoked: object) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if not assigned:
            return
        try:
            stored = await asyncio.to_thread(
                self.store.stored_offsets, [tp.partition for tp in assigned]
            )
            for tp in assigned:
                offset = stored.get(tp.partition)
                committed = await self.consumer.committed(tp)
                if offset is not None and offset > (committed or 0):
                    log.info(
                        "partition %d: skipping to %d, already in PostgreSQL", tp.partition, offset
                    )
                    self.consumer.seek(tp, offset)
        except Exception:  # only an optimisation: business keys make redelivery harmless
            log.warning("could not apply stored offsets", exc_info=True)


async def _take(consumer: AIOKafkaConsumer, size: int, within: float) -> list[Record]:
    """Up to `size` messages, waiting at most `within` seconds once the first arrived."""
    records: list[Record] = []
    deadline: float | None = None
    while len(records) < size:
        left = 1.0 if deadline is None else deadline - time.monotonic()
        if left <= 0:
            break
        batches = await consumer.getmany(timeout_ms=int(left * 1000), max_records=size)
        for tp, messages in batches.items():
            records.extend((tp.partition, m.offset, m.key, m.value) for m in messages)
        if records and deadline is None:
            deadline = time.monotonic() + within
        if not records:
            return records
    return records


async def consume(settings: Settings, store: BatchStore, stop: asyncio.Event) -> None:
    topic = settings.kafka_reads_topic
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.kafka_consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.worker_batch_size,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=2_000,
        max_poll_interval_ms=300_000,
    )
    listener = _SkipStored(consumer, store)
    consumer.subscribe([topic], listener=listener)
    await consumer.start()
    log.info("worker consuming %s as group %s", topic, settings.kafka_consumer_group)
    try:
        while not stop.is_set():
            if listener.pending:  # tell Kafka what PostgreSQL already holds
                pending, listener.pending = listener.pending, {}
                try:
                    await asyncio.wait_for(consumer.commit(pending), timeout=10)
                    log.info("committed the offsets PostgreSQL holds: %s", len(pending))
                except (CommitFailedError, KafkaError, TimeoutError) as exc:
                    log.warning("could not commit the stored offsets: %s", exc)
            records = await _take(
                consumer, settings.worker_batch_size, settings.worker_batch_seconds
            )
            if not records:
                continue
            next_offsets = await store_with_retry(store, records)
            try:
                await consumer.commit(
                    {TopicPartition(topic, p): o for p, o in next_offsets.items()}
                )
            except (CommitFailedError, KafkaError) as exc:  # PostgreSQL holds the offsets
                log.warning("offset commit failed (%s); stored offsets decide on restart", exc)
            for p, o in next_offsets.items():
                high = consumer.highwater(TopicPartition(topic, p))
                if high is not None:
                    CONSUMER_LAG.labels(topic, str(p)).set(max(0, high - o))
    finally:
        await consumer.stop()


def run_loop(settings: Settings, store: BatchStore) -> None:
    """Run until SIGTERM/SIGINT; a batch being stored is finished first."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await consume(settings, store, stop)

    asyncio.run(main())
