"""Idempotent Kafka producer for topic ``meter.reads.v1`` and its dead-letter topic.

Every record is keyed by meter id, so all reads of one meter land in one partition in
order. ``enable.idempotence`` (which implies ``acks=all``) lets librdkafka retry without
writing duplicates or reordering; a record that still fails after
``delivery_timeout_s`` is reported to the caller, who decides what to do (the MQTT
gateway then leaves the MQTT message unacknowledged, so the broker redelivers it).

Callbacks run inside ``poll()``/``flush()``, on the thread that calls them.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ingest import IngestError

log = logging.getLogger(__name__)

DeliveryCallback = Callable[[bool, str | None], None]

# Measured with the MQTT gateway draining 24,000 queued messages (161,280 reads) into
# the local broker, 3 rounds each on a busy 2-core machine: linger 20 ms gave 34-44k
# reads/s, 5 ms 24-34k, 0 ms 24k (more, smaller requests cost the GIL-bound gateway
# CPU). lz4, none and zstd were within the noise; lz4 is the cheap default for JSON.
DEFAULT_CONFIG: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 512 * 1024,
}
# A DLQ record keeps at most this much of the original payload (Kafka's default record
# limit is 1 MB and base64 adds a third); the record then says it was truncated.
DLQ_ORIGINAL_MAX = 512 * 1024


class _Batch:
    """Counts acknowledgements of one produce call; reports once."""

    __slots__ = ("remaining", "done", "on_delivered")

    def __init__(self, remaining: int, on_delivered: DeliveryCallback) -> None:
        self.remaining = remaining
        self.done = False
        self.on_delivered = on_delivered

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        if self.done:
            return
        if err is not None:
            self.done = True
            self.on_delivered(False, f"{err.name()}: {err.str()}")
            return
        self.remaining -= 1
        if self.remaining == 0:
            self.done = True
            self.on_delivered(True, None)


def dead_letter_record(
    original: bytes, *, source: str, reason: str, topic: str | None, received_at: float
) -> bytes:
    """The DLQ JSON: original bytes (base64), who sent it, where, why and when."""
    doc: dict[str, Any] = {
        "original_b64": base64.b64encode(original[:DLQ_ORIGINAL_MAX]).decode("ascii"),
        "source": source,
        "mqtt_topic": topic,
        "reason": reason,
        "received_at": datetime.fromtimestamp(received_at, UTC).isoformat().replace("+00:00", "Z"),
    }
    if len(original) > DLQ_ORIGINAL_MAX:
        doc["truncated"] = True
        doc["original_size"] = len(original)
    return orjson.dumps(doc)


class ReadProducer:
    def __init__(
        self,
        bootstrap: str,
        *,
        topic: str,
        dlq_topic: str,
        client_id: str,
        delivery_timeout_s: float = 120.0,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.topic = topic
        self.dlq_topic = dlq_topic
        self.delivery_timeout_s = delivery_timeout_s
        conf: dict[str, Any] = {
            **DEFAULT_CONFIG,
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "message.timeout.ms": int(delivery_timeout_s * 1000),
            "error_cb": self._on_error,
            "logger": log,  # librdkafka's own log lines go through logging, not stderr
            **(config or {}),
        }
        self._producer = Producer(conf)

    @staticmethod
    def _on_error(err: KafkaError) -> None:
        # librdkafka keeps retrying on its own; these are for the operator to see.
        if err.fatal():
            log.error("kafka producer fatal error: %s", err)
        else:
            log.warning("kafka producer: %s", err)

    def _produce(self, topic: str, key: str, value: bytes, cb: _Batch) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=cb)
                return
            except BufferError:  # local queue full: serve callbacks until there is room
                self._producer.poll(0.05)

    def produce_reads(
        self, reads: Sequence[tuple[str, bytes]], on_delivered: DeliveryCallback
    ) -> None:
        """Send (meter_id, value) records; ``on_delivered(ok, error)`` once for all of them."""
        batch = _Batch(len(reads), on_delivered)
        if not reads:
            batch.done = True
            on_delivered(True, None)
            return
        try:
            for key, value in reads:
                self._produce(self.topic, key, value, batch)
        except KafkaException as exc:
            if not batch.done:
                batch.done = True
                on_delivered(False, str(exc))

    def produce_dead_letter(
        self,
        original: bytes,
        *,
        source: str,
        reason: str,
        topic: str | None,
        on_delivered: DeliveryCallback | None = None,
        received_at: float | None = None,
    ) -> None:
        """Send one DLQ record keyed by ``source`` (e.g. the gateway id)."""
        value = dead_letter_record(
            original,
            source=source,
            reason=reason,
            topic=topic,
            received_at=time.time() if received_at is None else received_at,
        )
        batch = _Batch(1, on_delivered or _log_failure)
        try:
            self._produce(self.dlq_topic, source, value, batch)
        except KafkaException as exc:
            batch.done = True
            batch.on_delivered(False, str(exc))

    def produce_read_objects(self, objs: Sequence[Mapping[str, Any]]) -> int:
        """Send read objects (key = meter_id) and block until Kafka acknowledged them all.

        Raises IngestError when any record failed or the delivery timeout passed.
        """
        outcome: list[tuple[bool, str | None]] = []
        records = []
        for i, obj in enumerate(objs):
            meter_id = obj.get("meter_id")
            if not isinstance(meter_id, str) or not meter_id:
                raise IngestError(f"read[{i}].meter_id: required to key the Kafka record")
            records.append((meter_id, orjson.dumps(obj)))
        self.produce_reads(records, lambda ok, err: outcome.append((ok, err)))
        deadline = time.monotonic() + self.delivery_timeout_s + 5.0
        while not outcome:
            if time.monotonic() > deadline:
                raise IngestError("kafka: no acknowledgement before the delivery timeout")
            self._producer.poll(0.05)
        ok, err = outcome[0]
        if not ok:
            raise IngestError(f"kafka: reads not stored: {err}")
        return len(records)

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery callbacks; returns how many were served."""
        return int(self._producer.poll(timeout))

    def flush(self, timeout: float = 10.0) -> int:
        """Wait for outstanding records; returns how many are still not delivered."""
        return int(self._producer.flush(timeout))

    def close(self, timeout: float = 10.0) -> int:
        """Flush up to ``timeout`` s, purge the rest (their callbacks report failure), close.

        Returns how many records were left undelivered.
        """
        left = self.flush(timeout)
        if left:
            self._producer.purge()
            self._producer.poll(0)
        self._producer.close()
        return left

    def __len__(self) -> int:
        return len(self._producer)


def _log_failure(ok: bool, error: str | None) -> None:
    if not ok:
        log.error("kafka: dead letter not stored: %s", error)
