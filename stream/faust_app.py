"""The Faust-streaming app of the Kafka worker: topic ``meter.reads.v1`` → PostgreSQL.

One agent takes batches of events (``take_events``: it needs each message's partition and
offset), hands them to a `BatchStore` in a thread (the database work is synchronous
psycopg) and returns; Faust acks the events afterwards and commits their offsets to Kafka
on its interval. The batch's offsets are also stored in PostgreSQL in the batch's own
transaction, so PostgreSQL is always at least as far as Kafka's committed offsets.

When partitions are assigned, stored offsets that are ahead of Kafka's committed ones are
committed to Kafka just before Faust seeks to the committed offsets (the
``on_rebalance_complete`` signal is awaited right before that seek), so work already stored
is not fetched again. Redelivery would be harmless anyway: every read has a business key.

No Faust tables: Faust refuses table writes inside ``take()``, and the per-meter state
lives in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, Protocol, cast

import faust
import psycopg
from faust.transport.consumer import Consumer

from app.metrics import CONSUMER_LAG
from app.settings import Settings
from stream.dead_letters import DeadLetterError

log = logging.getLogger(__name__)

# (partition, offset, key, value) of one Kafka message
Record = tuple[int, int, bytes | None, bytes | None]

TRANSIENT: tuple[type[BaseException], ...] = (psycopg.OperationalError, DeadLetterError)
RETRIES = 8
EXIT_GAVE_UP = 3


class BatchStore(Protocol):
    def store(self, records: Sequence[Record], now: int) -> Mapping[int, int]:
        """Store one batch in one transaction; return the next offset of each partition."""
        ...

    def stored_offsets(self, partitions: Iterable[int]) -> Mapping[int, int]: ...


def broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


def create_app(
    settings: Settings, store: BatchStore, *, topic_partitions: int = 4
) -> faust.App:
    """The app, its agent and the rebalance hook; start it with `faust.Worker`."""
    if not settings.kafka_bootstrap:
        raise ValueError("kafka_bootstrap: the Kafka worker needs BILLING_KAFKA_BOOTSTRAP")
    group = settings.kafka_consumer_group
    datadir = Path(settings.var_dir) / "faust" / group  # Faust wants one; nothing is kept
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        group,
        broker=broker_urls(settings.kafka_bootstrap),
        web_enabled=False,
        topic_partitions=topic_partitions,
        datadir=str(datadir),
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        broker_commit_interval=1.0,
        producer_acks=-1,
    )
    topic = app.topic(settings.kafka_reads_topic, key_serializer="raw", value_serializer="raw")
    reads_topic = settings.kafka_reads_topic
    size, within = settings.worker_batch_size, settings.worker_batch_seconds

    @app.agent(topic, name="store-reads")
    async def store_reads(stream: Any) -> None:  # a faust.Stream
        async for events in stream.take_events(size, within=within):
            records: list[Record] = [
                (e.message.partition, e.message.offset, e.message.key, e.message.value)
                for e in events
            ]
            t0 = time.perf_counter()
            next_offsets = await store_with_retry(store, records)
            ms = (time.perf_counter() - t0) * 1e3
            log.debug("batch of %d stored in %.0f ms", len(records), ms)
            _report_lag(app, reads_topic, next_offsets)

    async def skip_stored(sender: Any, *_: Any, signal: Any = None, **__: Any) -> None:
        await _commit_stored_offsets(app, store, reads_topic)

    app.on_rebalance_complete.connect(cast(Any, skip_stored))  # mode's signal typing
    return app


async def store_with_retry(store: BatchStore, records: Sequence[Record]) -> Mapping[int, int]:
    """Store one batch; retry transient failures, and stop the process rather than skip.

    Skipping a batch while later ones are stored would lose reads for good (the stored
    offsets would pass them), so after the retries the process exits; PostgreSQL holds
    only whole batches, and the next start redelivers from the last stored offset."""
    delay = 0.5
    for attempt in range(1, RETRIES + 1):
        try:
            return await _in_thread(store, records)
        except TRANSIENT as exc:
            log.warning("batch of %d failed (attempt %d): %s", len(records), attempt, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 15.0)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.critical("batch of %d failed; exiting, nothing skipped", len(records),
                         exc_info=True)
            _exit()
    log.critical("batch of %d still failing after %d attempts; exiting", len(records), RETRIES)
    _exit()


async def _in_thread(store: BatchStore, records: Sequence[Record]) -> Mapping[int, int]:
    """Run `store.store` in a thread. ``take_events`` acks the batch even when the agent
    is cancelled (shutdown), so a cancelled batch must still be stored, or the process
    exits before Faust can commit it."""
    future = asyncio.ensure_future(asyncio.to_thread(store.store, records, int(time.time())))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        try:
            await future
        except BaseException:
            log.critical("batch of %d cut short by shutdown; exiting uncommitted", len(records))
            _exit()
        raise


def _exit() -> NoReturn:
    logging.shutdown()
    os._exit(EXIT_GAVE_UP)


async def _commit_stored_offsets(app: faust.App, store: BatchStore, topic: str) -> None:
    consumer = cast(Consumer, app.consumer)
    assigned = {tp.partition: tp for tp in consumer.assignment() if tp.topic == topic}
    if not assigned:
        return
    try:
        stored = await asyncio.to_thread(store.stored_offsets, list(assigned))
        committed = await consumer.seek_to_committed()
        ahead = {
            assigned[p]: offset
            for p, offset in stored.items()
            if p in assigned and offset > (committed.get(assigned[p]) or 0)
        }
        if ahead:
            log.info("skipping work already in PostgreSQL: %s",
                     {tp.partition: o for tp, o in ahead.items()})
            await consumer._commit(ahead)  # the thread delegate's low-level commit
    except Exception:  # only an optimisation: business keys make redelivery harmless
        log.warning("could not apply stored offsets; redelivered reads are ignored by key",
                    exc_info=True)


def _report_lag(app: faust.App, topic: str, next_offsets: Mapping[int, int]) -> None:
    consumer = app.consumer
    assigned = {tp.partition: tp for tp in consumer.assignment() if tp.topic == topic}
    for partition, next_offset in next_offsets.items():
        tp = assigned.get(partition)
        highwater = consumer.highwater(tp) if tp is not None else None
        if highwater is not None:
            CONSUMER_LAG.labels(topic, str(partition)).set(max(0, highwater - next_offset))
