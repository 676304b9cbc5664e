"""The outbox publisher inside the worker role, on a real PostgreSQL and the real Kafka broker:
`billing worker` sends a pending event and stops cleanly on SIGTERM; `BILLING_PUBLISH_EVENTS`
turns it off; without Kafka there is nothing to publish to."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from confluent_kafka import Consumer

from app.roles import publishes_events, publishing
from app.settings import Settings
from schemas.contracts import PAYMENTS, validate

REPO = Path(__file__).resolve().parents[2]


def pending_payment(db_url: str) -> tuple[int, str, dict[str, Any]]:
    """One pending ``billing.payments.v1`` event with a payment id of its own."""
    pid = f"T-{uuid.uuid4().hex[:12]}"
    payload = {"payment_id": pid, "customer_id": "100001", "paid_on": "2026-04-10",
               "amount": "-12.50", "currency": "BAM", "reference": None, "channel": "bank",
               "status": "matched", "kind": "refund"}
    validate(PAYMENTS, payload)
    with psycopg.connect(db_url) as conn:
        row = conn.execute("INSERT INTO outbox_events (topic, key, payload) VALUES (%s, %s, %s)"
                           " RETURNING event_id", (PAYMENTS, "100001", orjson.dumps(payload)
                                                   .decode())).fetchone()
    assert row is not None
    return int(row[0]), pid, payload


def published_at(db_url: str, event_id: int) -> object:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT published_at FROM outbox_events WHERE event_id = %s",
                           (event_id,)).fetchone()
    assert row is not None
    return row[0]


def wait_published(db_url: str, event_id: int, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if published_at(db_url, event_id) is not None:
            return True
        time.sleep(0.3)
    return False


def sent_on_kafka(bootstrap: str, payment_id: str, timeout: float = 20.0
                  ) -> list[tuple[str, dict[str, Any]]]:
    """The messages of the (unprefixed) payments topic that carry `payment_id`."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([PAYMENTS])
    found: list[tuple[str, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                if found:
                    break
                continue
            value = orjson.loads(msg.value() or b"{}")
            if value.get("payment_id") == payment_id:
                found.append(((msg.key() or b"").decode(), value))
    finally:
        consumer.close()
    return found


def worker_env(db_url: str, bootstrap: str, **extra: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
    env.update({
        "BILLING_DATABASE_URL": db_url,
        "BILLING_KAFKA_BOOTSTRAP": bootstrap,
        "BILLING_WORKER_ENGINE": "aiokafka",
        "BILLING_KAFKA_READS_TOPIC": f"t-{tag}.reads",
        "BILLING_KAFKA_DLQ_TOPIC": f"t-{tag}.dlq",
        "BILLING_KAFKA_CONSUMER_GROUP": f"t-{tag}",
        **extra,
    })
    return env


def test_the_worker_role_publishes_a_pending_event_and_stops_cleanly(
        db_url: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    event_id, pid, payload = pending_payment(db_url)
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], cwd=REPO,
                                env=worker_env(db_url, kafka_bootstrap), stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            assert wait_published(db_url, event_id), log.read_text()[-3000:]
            assert proc.poll() is None  # the worker goes on consuming
            proc.send_signal(signal.SIGTERM)
            status = proc.wait(timeout=45)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text()
    assert status == 0, text[-3000:]
    assert "outbox publisher started" in text and "outbox publisher stopped" in text, text
    assert "Traceback" not in text, text
    assert sent_on_kafka(kafka_bootstrap, pid) == [("100001", payload)]


def test_publishing_can_be_turned_off_and_needs_kafka(db_url: str,
                                                      kafka_bootstrap: str) -> None:
    assert publishes_events(Settings(kafka_bootstrap=kafka_bootstrap))  # on by default
    assert publishes_events(Settings(kafka_bootstrap=kafka_bootstrap, publish_events=True))
    assert not publishes_events(Settings(kafka_bootstrap=kafka_bootstrap,
                                         publish_events=False))
    assert not publishes_events(Settings(kafka_bootstrap=None, publish_events=True))
    event_id, pid, _payload = pending_payment(db_url)
    off = Settings(kafka_bootstrap=kafka_bootstrap, publish_events=False)
    with publishing(off, db_url, idle_seconds=0.1) as thread:
        assert thread is None
        time.sleep(1.0)
    assert published_at(db_url, event_id) is None
    on = Settings(kafka_bootstrap=kafka_bootstrap)
    with publishing(on, db_url, idle_seconds=0.1) as thread:
        assert thread is not None and thread.is_alive()
        assert wait_published(db_url, event_id, timeout=30)
    assert not thread.is_alive()  # stopped and joined with the block
    assert len(sent_on_kafka(kafka_bootstrap, pid)) == 1


def test_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_PUBLISH_EVENTS", "false")
    monkeypatch.setenv("BILLING_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    assert Settings().publish_events is False and not publishes_events(Settings())
    monkeypatch.delenv("BILLING_PUBLISH_EVENTS")
    assert Settings().publish_events is None and publishes_events(Settings())
