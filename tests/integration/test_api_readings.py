"""HTTP ingest of reads and the operator bearer token, on a real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool
from pydantic import SecretStr

from api.main import create_app
from api.security import register_gateway
from app.settings import Settings

CATALOG = Path(__file__).resolve().parents[2] / "app" / "demo" / "catalog.json"
NOW = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)
SECURITY = {
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'",
    "referrer-policy": "same-origin",
}


def seed(conn: psycopg.Connection) -> None:
    for doc in json.loads(CATALOG.read_text()):
        conn.execute(
            "INSERT INTO tariff_versions (tariff_code, valid_from, service, document)"
            " VALUES (%s, %s, %s, %s)",
            (doc["tariff_code"], doc["valid_from"], doc["service"], json.dumps(doc)),
        )
    conn.execute("INSERT INTO customers VALUES ('100001', 'Amra H.', 'household')")
    conn.execute("INSERT INTO metering_points (metering_point_id, address) VALUES ('MP1', 'X 1')")
    conn.execute("INSERT INTO meters VALUES ('E1', 'electricity', 6, 1, '{1.8.1,1.8.2}')")
    conn.execute("INSERT INTO meter_installations VALUES ('E1', 'MP1', '2025-01-01T00:00Z')")
    conn.execute(
        "INSERT INTO contracts VALUES ('C1', '100001', 'MP1', 'electricity', 'EL-HH',"
        " '2025-01-01', NULL)"
    )


def read(value: str, at: str, register: str = "1.8.1") -> dict[str, str]:
    return {"meter_id": "E1", "register": register, "read_at": at, "value": value,
            "unit": "kWh", "source": "amr"}


@pytest.fixture
def pool(db_url: str) -> Iterator[ConnectionPool]:
    with psycopg.connect(db_url) as conn:
        seed(conn)
    with ConnectionPool(db_url, min_size=1, max_size=4, open=True) as p:
        yield p


@pytest.fixture
def token(pool: ConnectionPool) -> str:
    with pool.connection() as conn:
        return register_gateway(conn, "gw-north")


def client_for(pool: ConnectionPool, settings: Settings | None = None) -> TestClient:
    app = create_app(settings or Settings(), pool, clock=lambda: NOW)
    return TestClient(app, base_url="https://testserver")


def test_good_and_bad_reads_in_one_batch(pool: ConnectionPool, token: str) -> None:
    batch = [
        read("100.000", "2026-03-01T00:00:00+01:00"),
        {"meter_id": "NOPE", "register": "1.8.1", "read_at": "2026-03-02T00:00:00Z",
         "value": 1, "unit": "kWh"},
        read("abc", "2026-03-02T00:00:00+01:00"),
        read("130.500", "2026-03-03T12:00:00+01:00"),
        read("130.500", "2026-03-03T12:00:00+01:00"),
        "not an object",
    ]
    with client_for(pool) as client:
        resp = client.post("/api/v1/readings", json=batch,
                           headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 1, 3)
    assert [(r["index"], r["status"]) for r in body["results"]] == [
        (0, "accepted"), (1, "rejected"), (2, "rejected"), (3, "accepted"), (4, "duplicate"),
        (5, "rejected"),
    ]
    assert body["results"][1]["reason"] == "unknown meter NOPE"
    assert body["results"][2]["reason"].startswith("value:")
    assert body["results"][5]["reason"].startswith("read:")
    assert body["results"][0]["reason"] is None
    for name, value in SECURITY.items():
        assert resp.headers[name] == value
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (2,)
        rows = conn.execute(
            "SELECT channel, meter_id, reason, received_at FROM rejected_reads ORDER BY rejected_id"
        ).fetchall()
        assert {r[0] for r in rows} == {"http:gw-north"}
        reasons = {r[1]: r[2] for r in rows}
        assert set(reasons) == {"NOPE", "E1", None}
        assert reasons["NOPE"] == "unknown meter NOPE"
        assert reasons["E1"].startswith("value:")
        assert {r[3] for r in rows} == {NOW}  # the pinned clock, not the machine's
        qty = conn.execute("SELECT sum(quantity_milli) FROM consumption_intervals").fetchone()
        assert qty == (30500,)


def test_wrapped_form_is_accepted(pool: ConnectionPool, token: str) -> None:
    with client_for(pool) as client:
        resp = client.post("/api/v1/readings", headers={"Authorization": f"Bearer {token}"},
                           json={"reads": [read("100.000", "2026-03-01T00:00:00+01:00")]})
    assert resp.status_code == 200
    assert resp.json()["accepted"] == 1


def test_missing_or_wrong_token_is_401_and_stores_nothing(pool: ConnectionPool, token: str) -> None:
    batch = [read("100.000", "2026-03-01T00:00:00+01:00")]
    with client_for(pool) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token},
                        {"Authorization": "Basic " + token}):
            resp = client.post("/api/v1/readings", json=batch, headers=headers)
            assert resp.status_code == 401, headers
            assert resp.json() == {"detail": "missing or invalid gateway token"}
            assert resp.headers["www-authenticate"] == "Bearer"
            assert resp.headers["x-content-type-options"] == "nosniff"
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (0,)


def test_reregistering_a_gateway_revokes_the_old_token(pool: ConnectionPool, token: str) -> None:
    with pool.connection() as conn:
        new = register_gateway(conn, "gw-north")
    assert new != token
    with client_for(pool) as client:
        old = client.post("/api/v1/readings", json=[], headers={"Authorization": f"Bearer {token}"})
        ok = client.post("/api/v1/readings", json=[], headers={"Authorization": f"Bearer {new}"})
    assert old.status_code == 401
    assert ok.status_code == 200
    assert ok.json() == {"accepted": 0, "duplicates": 0, "rejected": 0, "results": []}
    with pool.connection() as conn, pytest.raises(ValueError, match="gateway_id"):
        register_gateway(conn, "bad id with spaces")


def test_oversize_batch_is_413(pool: ConnectionPool, token: str) -> None:
    batch = [read("100.000", "2026-03-01T00:00:00+01:00")] * 10_001
    with client_for(pool) as client:
        resp = client.post("/api/v1/readings", json=batch,
                           headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 413
        assert resp.json()["detail"].startswith("too many reads: 10001")
        big = b"[" + b" " * (9 * 1024 * 1024) + b"]"
        resp = client.post("/api/v1/readings", content=big,
                           headers={"Authorization": f"Bearer {token}",
                                    "Content-Type": "application/json"})
        assert resp.status_code == 413
        assert "larger than" in resp.json()["detail"]
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (0,)


def test_malformed_json_is_400(pool: ConnectionPool, token: str) -> None:
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with client_for(pool) as client:
        resp = client.post("/api/v1/readings", content=b'[{"meter_id": "E1",', headers=auth)
        assert resp.status_code == 400
        assert resp.json()["detail"].startswith("malformed JSON")
        resp = client.post("/api/v1/readings", content=b'{"meter_id": "E1"}', headers=auth)
        assert resp.status_code == 400
        assert resp.json()["detail"].startswith("body: must be a JSON array")


def test_healthz(pool: ConnectionPool) -> None:
    with client_for(pool) as client:
        resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}
    assert resp.headers["referrer-policy"] == "same-origin"


def test_healthz_unavailable_when_the_database_is_gone(db_url: str) -> None:
    dead = ConnectionPool(db_url + " port=1", min_size=0, max_size=1, open=False)
    with client_for(dead) as client:
        resp = client.get("/healthz")
    assert resp.status_code == 503
    assert resp.json() == {"status": "unavailable"}


# ---- operator bearer token (billing close) --------------------------------------------


def test_close_without_operator_token_configured_is_403(pool: ConnectionPool) -> None:
    with client_for(pool) as client:
        resp = client.post("/api/v1/billing/close", json={"period": "2026-03"},
                           headers={"Authorization": "Bearer anything"})
    assert resp.status_code == 403
    assert resp.json() == {"detail": "operator access not configured"}


def test_close_with_wrong_token_is_401_and_bad_period_422(pool: ConnectionPool) -> None:
    settings = Settings().model_copy(update={"operator_token": SecretStr("op-secret")})
    with client_for(pool, settings) as client:
        resp = client.post("/api/v1/billing/close", json={"period": "2026-03"},
                           headers={"Authorization": "Bearer nope"})
        assert resp.status_code == 401
        assert resp.json() == {"detail": "missing or invalid operator token"}
        resp = client.post("/api/v1/billing/close", json={"period": "2026-13"},
                           headers={"Authorization": "Bearer op-secret"})
        assert resp.status_code == 422
        assert resp.json()["detail"].startswith("period:")
        resp = client.post("/api/v1/billing/close", json={"period": "2026-03", "issued_on": "x"},
                           headers={"Authorization": "Bearer op-secret"})
        assert resp.status_code == 422
        assert resp.json()["detail"].startswith("issued_on:")


# ---- errors are JSON, never a stack trace ------------------------------------------------


def test_errors_are_json_with_security_headers(pool: ConnectionPool) -> None:
    app = create_app(Settings(), pool, clock=lambda: NOW)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    with TestClient(app, base_url="https://testserver") as client:
        crash = client.get("/boom")
        missing = client.get("/nowhere")
        wrong_method = client.get("/api/v1/readings")
    assert crash.status_code == 500
    assert crash.json() == {"detail": "internal error"}
    assert b"secret internals" not in crash.content and b"Traceback" not in crash.content
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})
    assert wrong_method.status_code == 405
    for resp in (crash, missing, wrong_method):
        for name, value in SECURITY.items():
            assert resp.headers[name] == value


def test_exhausted_pool_answers_503(db_url: str, token: str, pool: ConnectionPool) -> None:
    tiny = ConnectionPool(db_url, min_size=1, max_size=1, timeout=0.5, open=True)
    try:
        with tiny.connection(), client_for(tiny) as client:  # the only connection is taken
            resp = client.post("/api/v1/readings", json=[],
                               headers={"Authorization": f"Bearer {token}"})
    finally:
        tiny.close()
    assert resp.status_code == 503
    assert resp.json() == {"detail": "database unavailable, try again later"}
