"""MQTT → gateway → Kafka → worker → PostgreSQL → invoices, on the real brokers.

A month of hourly reads for 100 meters is published over MQTT by the meter simulator
(some messages twice, a few garbage ones), the gateway runs in a thread and the worker as
its own process. The invoices of the month must equal, to the fening, those computed from
the same reads pushed straight through `stream.pipeline.process_reads` into a second
fresh database. Meter ids, topics and groups are unique: the brokers are shared.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
from pydantic import SecretStr

from app.settings import Settings
from ingest.mqtt_gateway import MqttGateway
from ingest.mqtt_publisher import MonthPlan, plan_messages, publish_month
from tests.integration.test_kafka_worker import (
    Streams,
    WorkerProcess,
    free_port,
    invoices,
    metric,
    other_db_url,  # noqa: F401 (fixture)
    reference_totals,
    scalar,
    start_worker,  # noqa: F401 (fixture)
    streams,  # noqa: F401 (fixture)
    totals,
    wait_for,
)
from tests.integration.test_mqtt_gateway import password, running

REPO = Path(__file__).resolve().parents[2]
CATALOG = json.loads((REPO / "app" / "demo" / "catalog.json").read_text())
MARCH = datetime.fromisoformat("2026-03-01T00:00:00+01:00")  # local midnight
GATEWAYS = ("gw-001", "gw-002")


def fleet(u: str, n: int = 100) -> dict[str, list[str]]:
    """n meters split over the two gateway users; every third a water meter (V-)."""
    ids = [f"{'V' if k % 3 == 2 else 'E'}-{u}-{k:03d}" for k in range(n)]
    half = n // 2
    return {GATEWAYS[0]: ids[:half], GATEWAYS[1]: ids[half:]}


def seed(conn: psycopg.Connection, meter_ids: Sequence[str]) -> None:
    for doc in CATALOG:
        conn.execute(
            "INSERT INTO tariff_versions (tariff_code, valid_from, service, document)"
            " VALUES (%s, %s, %s, %s)",
            (doc["tariff_code"], doc["valid_from"], doc["service"], json.dumps(doc)),
        )
    for i, meter in enumerate(meter_ids, 1):
        water = meter.startswith("V-")
        service = "water" if water else "electricity"
        conn.execute("INSERT INTO customers VALUES (%s, %s, 'household')",
                     (f"{300000 + i}", f"Kupac {i}"))
        conn.execute("INSERT INTO metering_points (metering_point_id, address) VALUES (%s, %s)",
                     (f"MP{i}", f"Ulica {i}"))
        conn.execute("INSERT INTO meters VALUES (%s, %s, 6, 1, %s)",
                     (meter, service, ["8.0"] if water else ["1.8.1", "1.8.2"]))
        conn.execute("INSERT INTO meter_installations VALUES (%s, %s, '2025-01-01T00:00Z')",
                     (meter, f"MP{i}"))
        conn.execute(
            "INSERT INTO contracts VALUES (%s, %s, %s, %s, %s, '2025-01-01', NULL)",
            (f"C{i}", f"{300000 + i}", f"MP{i}", service, "W-HH" if water else "EL-HH"),
        )
    conn.commit()


def distinct_reads(plan: MonthPlan) -> list[dict[str, Any]]:
    """Every valid read of the plan once, in publishing order (no repeats, no garbage)."""
    reads: list[dict[str, Any]] = []
    for gateway in GATEWAYS:
        for out in plan_messages(gateway, plan):
            if out.kind in ("reads", "late"):
                reads += orjson.loads(out.payload)
    return reads


def test_a_month_over_mqtt_gives_the_invoices_of_the_embedded_path(
    streams: Streams, db_url: str, other_db_url: str, tmp_path: Path,  # noqa: F811
    start_worker: Callable[..., WorkerProcess],  # noqa: F811
    mqtt_credentials: dict[str, str],
) -> None:
    u = uuid.uuid4().hex[:8]
    meters = fleet(u)
    everyone = [m for gw in GATEWAYS for m in meters[gw]]
    plan = MonthPlan(MARCH, days=31, read_minutes=60, reads_per_message=24,
                     duplicate_share=0.1, garbage_share=0.01, meters=meters, seed=11)
    reads = distinct_reads(plan)
    for url in (db_url, other_db_url):
        with psycopg.connect(url) as conn:
            seed(conn, everyone)

    port = free_port()
    worker = start_worker(streams.env(db_url, tmp_path, BILLING_METRICS_PORT=str(port)))
    settings = Settings(
        kafka_bootstrap=streams.bootstrap, kafka_reads_topic=streams.reads,
        kafka_dlq_topic=f"{streams.dlq}.gateway",
        mqtt_host=mqtt_credentials["BILLING_MQTT_HOST"],
        mqtt_port=int(mqtt_credentials["BILLING_MQTT_PORT"]),
        mqtt_username="ingest", mqtt_password=SecretStr(password(mqtt_credentials, "ingest")),
    )
    gateway = MqttGateway(settings, topics=[f"amr/{gw}/{m}" for gw in GATEWAYS
                                            for m in meters[gw]],
                          client_id=f"t-e2e-{u}", session_expiry_s=60)
    with running(gateway):
        started = time.monotonic()
        sent = publish_month(
            mqtt_credentials["BILLING_MQTT_HOST"], int(mqtt_credentials["BILLING_MQTT_PORT"]),
            {gw: password(mqtt_credentials, gw) for gw in GATEWAYS}, plan,
        )
        deadline = time.monotonic() + 60
        while gateway.stats.acked < sent.messages:  # Kafka acknowledged every message
            assert time.monotonic() < deadline and worker.alive(), (gateway.stats, worker.tail())
            time.sleep(0.05)
        stats = gateway.stats
    assert sent.distinct_reads == len(reads) and sent.duplicates > 0 and sent.garbage > 0
    assert stats.reads == sent.reads and stats.dead_letters == sent.garbage, stats
    took = wait_for(db_url, "SELECT count(*) FROM readings", len(reads), [worker])
    wait_for(db_url, "SELECT sum(next_offset) FROM stream_offsets", sent.reads, [worker])
    print(f"\n{sent.messages} MQTT messages, {sent.reads} reads ({sent.duplicate_reads} sent "
          f"twice); stored {time.monotonic() - started:.1f}s after the first publish "
          f"(last {took:.1f}s after the gateway's last PUBACK)")

    expected = reference_totals(other_db_url, reads)
    assert expected[0] == len(reads) and expected[8] == 0  # every read, nothing rejected
    assert totals(db_url) == expected  # reads, rated pieces, daily rollup; no rejects
    assert metric(port, 'billing_reads_accepted_total{channel="kafka"}') == len(reads)
    assert metric(port, 'billing_reads_duplicate_total{channel="kafka"}') == sent.duplicate_reads
    assert scalar(db_url, "SELECT count(DISTINCT meter_id) FROM readings") == len(everyone)
    worker.stop()

    heads, lines = invoices(db_url)
    assert (heads, lines) == invoices(other_db_url)
    assert len(heads) == len(everyone)  # one customer per meter, each invoiced
    assert all(total > 0 for *_, total, _ref in heads)
