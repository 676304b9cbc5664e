"""HTTP ingest and `billing load` produce to the reads topic when Kafka is configured."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from confluent_kafka import Consumer
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool

from api.main import create_app
from api.security import register_gateway
from app.settings import Settings
from ingest.file_import import import_document
from ingest.kafka_producer import ReadProducer

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "import-example.json"


def drain(bootstrap: str, topic: str, expected: int, timeout: float = 30) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(msg)
    finally:
        consumer.close()
    return out


@pytest.fixture
def producer(kafka_bootstrap: str) -> Iterator[ReadProducer]:
    topic = f"reads-{uuid.uuid4().hex[:8]}"
    p = ReadProducer(kafka_bootstrap, topic=topic, dlq_topic=f"{topic}.dlq", client_id="test")
    yield p
    p.close(10)


def test_load_sends_readings_to_kafka_after_master_data(
    db_url: str, kafka_bootstrap: str, producer: ReadProducer
) -> None:
    doc = json.loads(EXAMPLE.read_text())
    doc["readings"].append(
        {
            "meter_id": "E-X",
            "register": "1.8.1",
            "read_at": "yesterday",
            "value": "1",
            "unit": "kWh",
        }
    )
    with psycopg.connect(db_url) as conn:
        report = import_document(conn, doc, now=int(time.time()), read_producer=producer)
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM meters").fetchone() == (4,)
    good = len(doc["readings"]) - 1
    assert report.sections["readings"].created == good
    assert report.sections["readings"].rejected == 1
    messages = drain(kafka_bootstrap, producer.topic, good)
    assert len(messages) == good
    sent = orjson.loads(messages[0].value())
    assert messages[0].key().decode() == sent["meter_id"]


def test_http_ingest_queues_valid_reads_on_kafka(
    db_url: str, kafka_bootstrap: str, producer: ReadProducer
) -> None:
    with ConnectionPool(db_url, min_size=1, max_size=2) as pool:
        with pool.connection() as conn:
            token = register_gateway(conn, "gw-k")
        app = create_app(Settings(), pool, read_producer=producer)
        reads = [
            {
                "meter_id": "E-1",
                "register": "1.8.1",
                "read_at": "2026-03-01T00:00:00+01:00",
                "value": "10.5",
                "unit": "kWh",
                "source": "amr",
            },
            {
                "meter_id": "E-1",
                "register": "1.8.1",
                "read_at": "2026-03-01",
                "value": "1",
                "unit": "kWh",
            },
        ]
        with TestClient(app, base_url="https://testserver") as client:
            res = client.post(
                "/api/v1/readings", json=reads, headers={"Authorization": f"Bearer {token}"}
            )
        assert res.status_code == 200
        body = res.json()
        assert [r["status"] for r in body["results"]] == ["queued", "rejected"]
        assert body["results"][1]["reason"].startswith("read_at:")
        with pool.connection() as conn:
            assert conn.execute("SELECT count(*) FROM rejected_reads").fetchone() == (1,)
    messages = drain(kafka_bootstrap, producer.topic, 1)
    value = orjson.loads(messages[0].value())
    assert value["gateway_id"] == "gw-k" and value["value"] == "10.5"
