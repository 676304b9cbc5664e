"""Meter anomaly alerts on the real PostgreSQL: through the pipeline, the sweep and the API."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool
from pydantic import SecretStr

from api.main import create_app
from app.metrics import METER_ALERTS_OPEN
from app.settings import Settings
from rating.calendar import LOCAL_TZ
from schemas.contracts import ALERTS, validate
from stream.alerts import publish, sweep_communication_loss
from stream.pipeline import process_reads

CATALOG = Path(__file__).resolve().parents[2] / "app" / "demo" / "catalog.json"


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    def produce(self, topic: str, value: bytes, key: str) -> None:
        self.sent.append((topic, key, orjson.loads(value)))


def seed(conn: psycopg.Connection) -> None:
    for doc in json.loads(CATALOG.read_text()):
        conn.execute(
            "INSERT INTO tariff_versions (tariff_code, valid_from, service, document)"
            " VALUES (%s, %s, %s, %s)",
            (doc["tariff_code"], doc["valid_from"], doc["service"], json.dumps(doc)),
        )
    conn.execute("INSERT INTO customers VALUES ('100001', 'Amra H.', 'household')")
    conn.execute("INSERT INTO metering_points (metering_point_id, address) VALUES"
                 " ('MPW', 'X 1'), ('MPE', 'X 2'), ('MPM', 'X 3')")  # fmt: skip
    conn.execute("INSERT INTO meters VALUES ('W1', 'water', 5, 1, '{8.0}'),"
                 " ('E1', 'electricity', 6, 1, '{1.8.1,1.8.2,2.8.0}'),"
                 " ('M1', 'water', 5, 1, '{8.0}')")  # fmt: skip
    conn.execute(
        "INSERT INTO meter_installations VALUES ('W1', 'MPW', '2025-01-01T00:00Z'),"
        " ('E1', 'MPE', '2025-01-01T00:00Z'), ('M1', 'MPM', '2025-01-01T00:00Z')"
    )
    conn.execute("INSERT INTO contracts VALUES"
                 " ('CW', '100001', 'MPW', 'water', 'W-HH', '2025-01-01', NULL),"
                 " ('CE', '100001', 'MPE', 'electricity', 'EL-HH', '2025-01-01', NULL),"
                 " ('CM', '100001', 'MPM', 'water', 'W-HH', '2025-01-01', NULL)")  # fmt: skip


@pytest.fixture
def conn(db_url: str):
    with psycopg.connect(db_url) as c:
        seed(c)
        c.commit()
        yield c


def local(d: date, hour: int = 0) -> datetime:
    return datetime(d.year, d.month, d.day, hour, tzinfo=LOCAL_TZ)


def read(meter: str, at: datetime, milli: int, register: str = "8.0", **extra: Any) -> dict:
    unit = "m3" if register == "8.0" else "kWh"
    return {"meter_id": meter, "register": register, "read_at": at.isoformat(),
            "value": f"{milli // 1000}.{milli % 1000:03d}", "unit": unit, "source": "amr",
            **extra}  # fmt: skip


def push(conn: psycopg.Connection, reads: list[dict], now: datetime) -> list[dict[str, Any]]:
    with conn.transaction():
        res = process_reads(conn, reads, channel="test", now=int(now.timestamp()))
    assert res.accepted == len(reads), [o.reason for o in res.outcomes if o.reason]
    for ev in res.alerts:
        validate(ALERTS, ev)
    return res.alerts


def alerts(conn: psycopg.Connection, kind: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT meter_id, state, closed_by, opened_at FROM meter_alerts WHERE kind = %s"
        " ORDER BY alert_id", (kind,)
    ).fetchall()  # fmt: skip


def test_leak_over_four_nights_opens_once_and_a_dry_night_closes(conn: psycopg.Connection) -> None:
    first = date(2026, 3, 10)
    total = 100_000  # litres
    reads = [read("W1", local(first), total)]
    push(conn, reads, local(first, 1))
    opened_after = []
    for n, wet in enumerate([True, True, True, True, False]):
        day = first + timedelta(days=n)
        batch = []
        for h in range(1, 25):
            at = local(day) + timedelta(hours=h)
            total += (10 if wet else 2) if (at.astimezone(LOCAL_TZ).hour - 1) % 24 < 6 else 30
            batch.append(read("W1", at, total))
        now = local(day + timedelta(days=1), 1)
        events = push(conn, batch, now)
        opened_after.append([(e["kind"], e["state"]) for e in events])
        with conn.transaction():  # a redelivered batch: duplicates, no new alert
            again = process_reads(conn, batch, channel="test", now=int(now.timestamp()))
        assert (again.duplicates, again.alerts) == (24, [])
    # nights 10, 11, 12 wet → opens with the third; the fourth refreshes; the dry fifth closes
    assert opened_after == [[], [], [("leak", "open")], [], [("leak", "closed")]]
    rows = alerts(conn, "leak")
    assert [(m, s, by) for m, s, by, _ in rows] == [("W1", "closed", "auto")]
    detail = conn.execute("SELECT detail, register, metering_point_id FROM meter_alerts").fetchone()
    assert detail is not None
    assert detail[0]["text"] == "minimum night flow 10.0, 10.0, 10.0 l/h (limit 5 l/h)"
    assert detail[0]["closed"] == "minimum night flow 10.0, 10.0, 2.0 l/h (limit 5 l/h)"
    assert detail[1:] == ("8.0", "MPW")
    last_seen = conn.execute("SELECT last_seen_at - opened_at FROM meter_alerts").fetchone()
    assert last_seen == (timedelta(days=1),)  # refreshed by the fourth night's batch


def daily_reads(
    conn: psycopg.Connection, first: date, per_day: list[int]
) -> list[list[dict[str, Any]]]:
    total, out = 1_000_000, list[list[dict[str, Any]]]()
    push(conn, [read("E1", local(first), total, "1.8.1")], local(first, 1))
    for n, qty in enumerate(per_day):
        total += qty
        at = local(first + timedelta(days=n + 1))
        out.append(push(conn, [read("E1", at, total, "1.8.1")], at + timedelta(hours=1)))
    return out


def test_spike_opens_high_consumption_and_a_normal_day_closes(conn: psycopg.Connection) -> None:
    normal = [10_000, 12_000, 9_000, 11_000] * 5  # 20 days around 10.5 kWh
    events = daily_reads(conn, date(2026, 2, 1), [*normal, 40_000, 11_000])
    assert all(e == [] for e in events[:20])
    assert [(e["kind"], e["state"], e["meter_id"]) for e in events[20]] == [
        ("high_consumption", "open", "E1")]  # fmt: skip
    assert [(e["kind"], e["state"]) for e in events[21]] == [("high_consumption", "closed")]
    assert "day 40 against a median of 10.5" in events[20][0]["detail"]
    assert METER_ALERTS_OPEN.labels("high_consumption")._value.get() == 0


def test_drop_to_zero_after_steady_use(conn: psycopg.Connection) -> None:
    events = daily_reads(conn, date(2026, 2, 1), [10_000] * 15 + [0, 0, 0, 5_000])
    assert [e for e in events[:17] if e] == []
    assert [(e["kind"], e["state"]) for e in events[17]] == [("zero_drop", "open")]
    assert METER_ALERTS_OPEN.labels("zero_drop")._value.get() == 0  # closed again next day
    assert [(e["kind"], e["state"]) for e in events[18]] == [("zero_drop", "closed")]


def test_reverse_energy_and_tamper_from_the_meter(conn: psycopg.Connection) -> None:
    d = date(2026, 3, 1)
    push(conn, [read("E1", local(d), 5_000, "2.8.0"), read("E1", local(d), 9_000, "1.8.1")],
         local(d, 1))  # fmt: skip
    events = push(conn, [read("E1", local(d, 12), 5_000, "2.8.0"),
                         read("E1", local(d, 12), 9_500, "1.8.1", flags=["tamper", "odd", 7])],
                  local(d, 13))  # fmt: skip
    assert [(e["kind"], e["state"], e["register"]) for e in events] == [
        ("tamper", "open", "1.8.1")]  # fmt: skip
    events = push(conn, [read("E1", local(d, 18), 5_800, "2.8.0")], local(d, 19))
    assert [(e["kind"], e["state"]) for e in events] == [("reverse_energy", "open")]
    assert METER_ALERTS_OPEN.labels("reverse_energy")._value.get() == 1
    events = push(conn, [read("E1", local(d, 23), 5_800, "2.8.0")], local(d, 23))
    assert [(e["kind"], e["state"]) for e in events] == [("reverse_energy", "closed")]
    # tamper needs a person: it stays open
    assert [r[1] for r in alerts(conn, "tamper")] == ["open"]


def test_communication_loss_by_sweep_and_a_new_read_closes(conn: psycopg.Connection) -> None:
    last = local(date(2026, 3, 1), 6)
    push(conn, [read("W1", last, 1_000), read("E1", last, 1_000, "1.8.1")], last)
    manual = read("M1", last, 1_000) | {"source": "manual"}
    push(conn, [manual], last)
    producer = FakeProducer()
    with conn.transaction():
        assert sweep_communication_loss(conn, int((last + timedelta(hours=47)).timestamp())) == []
        events = sweep_communication_loss(
            conn, int((last + timedelta(hours=49)).timestamp()), producer=producer
        )
    assert sorted((e["meter_id"], e["state"]) for e in events) == [("E1", "open"), ("W1", "open")]
    assert "no read for 49 h" in events[0]["detail"]
    assert sorted(key for _t, key, _v in producer.sent) == ["E1", "W1"]
    assert {t for t, _k, _v in producer.sent} == {ALERTS}
    assert METER_ALERTS_OPEN.labels("communication_loss")._value.get() == 2
    with conn.transaction():  # sweeping again changes nothing
        assert sweep_communication_loss(conn, int((last + timedelta(hours=50)).timestamp())) == []
    events = push(conn, [read("W1", last + timedelta(hours=50), 1_500)],
                  last + timedelta(hours=50))  # fmt: skip
    assert [(e["meter_id"], e["kind"], e["state"]) for e in events] == [
        ("W1", "communication_loss", "closed")]  # fmt: skip
    assert METER_ALERTS_OPEN.labels("communication_loss")._value.get() == 1
    publish(None, events)  # no producer: nothing, no error


def test_api_lists_filters_acknowledges_and_closes(db_url: str) -> None:
    with psycopg.connect(db_url) as c:
        c.execute("""INSERT INTO meter_alerts (meter_id, kind, opened_at, last_seen_at, detail)
                     VALUES ('W1', 'leak', '2026-03-01T03:00Z', '2026-03-01T03:00Z', '{}'),
                            ('E1', 'tamper', '2026-03-02T03:00Z', '2026-03-02T03:00Z', '{}'),
                            ('W2', 'leak', '2026-03-03T03:00Z', '2026-03-03T03:00Z', '{}')""")
    now = datetime(2026, 3, 5, 8, 0, tzinfo=UTC)
    op = {"Authorization": "Bearer op-secret"}
    settings = Settings().model_copy(update={"operator_token": SecretStr("op-secret")})
    with ConnectionPool(db_url, min_size=1, max_size=2, open=True) as pool:
        app = create_app(settings, pool, clock=lambda: now)
        with TestClient(app, base_url="https://testserver") as client:
            assert client.get("/api/v1/alerts").status_code == 401
            bad = {"Authorization": "Bearer nope"}
            assert client.get("/api/v1/alerts", headers=bad).status_code == 401
            assert client.post("/api/v1/alerts/1/acknowledge").status_code == 401
            listed = client.get("/api/v1/alerts", headers=op).json()["alerts"]
            assert [a["meter_id"] for a in listed] == ["W2", "E1", "W1"]  # newest first
            leaks = client.get("/api/v1/alerts?kind=leak&limit=1", headers=op).json()["alerts"]
            assert [a["meter_id"] for a in leaks] == ["W2"]
            w1 = client.get("/api/v1/alerts?meter_id=W1", headers=op).json()["alerts"]
            assert len(w1) == 1
            assert client.get("/api/v1/alerts?state=shut", headers=op).status_code == 422
            ident = w1[0]["alert_id"]
            ack = client.post(f"/api/v1/alerts/{ident}/acknowledge", headers=op,
                              json={"operator": "Emir K."})  # fmt: skip
            assert ack.status_code == 200, ack.text
            assert (ack.json()["state"], ack.json()["acknowledged_by"]) == (
                "acknowledged", "operator:Emir K.")  # fmt: skip
            assert ack.json()["acknowledged_at"].startswith("2026-03-05T08:00:00")
            state = client.get("/api/v1/alerts?state=acknowledged", headers=op).json()["alerts"]
            assert [a["alert_id"] for a in state] == [ident]
            assert (
                client.post(f"/api/v1/alerts/{ident}/close", headers=op, json={}).status_code == 422
            )  # a note is required
            done = client.post(f"/api/v1/alerts/{ident}/close", headers=op,
                               json={"note": "pipe under the sink repaired"})  # fmt: skip
            assert done.status_code == 200, done.text
            body = done.json()
            assert (body["state"], body["closed_by"], body["close_note"]) == (
                "closed", "operator", "pipe under the sink repaired")  # fmt: skip
            again = client.post(f"/api/v1/alerts/{ident}/close", headers=op, json={"note": "x"})
            assert again.status_code == 409
            assert client.post(f"/api/v1/alerts/{ident}/acknowledge", headers=op).status_code == 409
            assert client.post("/api/v1/alerts/999/acknowledge", headers=op).status_code == 404
        app = create_app(Settings().model_copy(update={"operator_token": None}), pool)
        with TestClient(app, base_url="https://testserver") as client:
            assert client.get("/api/v1/alerts", headers=op).status_code == 403
