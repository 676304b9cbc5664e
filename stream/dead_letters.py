"""Dead letters of the Kafka worker: the original bytes, why they were refused, where from.

One dead letter is one JSON object on topic ``meter.reads.dlq.v1`` (contract:
``schemas/json/meter.reads.dlq.v1.schema.json``; key = the original key)::

    {"original_b64": "...", "truncated": false, "original_size": 17, "source": "worker",
     "kafka_topic": "meter.reads.v1", "kafka_partition": 2, "kafka_offset": 41,
     "key_b64": "RS0xMDAwMDE=", "reason": "not JSON: ...", "received_at": "2026-04-01T00:00:00Z"}

``original_b64`` holds the original value bytes exactly (base64), cut to ``MAX_KEPT_BYTES``
for oversized messages (``truncated`` says so, ``original_size`` keeps the length), so a
dead letter always fits the broker's message limit. The producer is idempotent with
``acks=all`` and `send` waits for every delivery: the worker sends before it commits the
batch to PostgreSQL, so a dead letter is never lost (it may repeat after a crash).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from confluent_kafka import KafkaError, Message, Producer

MAX_KEPT_BYTES = 64 * 1024


class DeadLetterError(RuntimeError):
    """The dead-letter topic did not acknowledge every letter."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str


def encode_dead_letter(letter: DeadLetter, *, rejected_at: int) -> bytes:
    value = letter.value or b""
    kept = value[:MAX_KEPT_BYTES]
    return orjson.dumps(
        {
            "original_b64": _b64(kept),
            "truncated": len(kept) < len(value),
            "original_size": len(value),
            "source": "worker",
            "kafka_topic": letter.topic,
            "kafka_partition": letter.partition,
            "kafka_offset": letter.offset,
            "key_b64": None if letter.key is None else _b64(letter.key[:MAX_KEPT_BYTES]),
            "reason": letter.reason[:2000],
            "received_at": datetime.fromtimestamp(rejected_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )


def decode_dead_letter(data: bytes) -> dict[str, object]:
    """The letter as a dict, with ``value``/``key`` restored to bytes (for tools and tests)."""
    obj = orjson.loads(data)
    obj["value"] = base64.b64decode(obj["original_b64"])
    key = obj.get("key_b64")
    obj["key"] = None if key is None else base64.b64decode(key)
    return dict(obj)


class DeadLetterProducer:
    """Synchronous, idempotent producer to the dead-letter topic (used from worker threads)."""

    def __init__(self, bootstrap: str, topic: str, *, timeout_s: float = 30.0) -> None:
        self.topic = topic
        self.timeout_s = timeout_s
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "client.id": "billing-worker-dlq",
            }
        )

    def send(self, letters: Sequence[DeadLetter], *, rejected_at: int) -> None:
        """Produce every letter and wait until the broker has them all; else raise."""
        if not letters:
            return
        errors: list[str] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(str(err))

        for letter in letters:
            self._producer.produce(
                self.topic,
                value=encode_dead_letter(letter, rejected_at=rejected_at),
                key=None if letter.key is None else letter.key[:MAX_KEPT_BYTES],
                on_delivery=on_delivery,
            )
            self._producer.poll(0)
        left = self._producer.flush(self.timeout_s)
        if left or errors:
            raise DeadLetterError(
                f"dead-letter topic {self.topic}: {left} undelivered, errors: {errors[:3]}"
            )

    def close(self) -> None:
        self._producer.flush(self.timeout_s)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
