"""Operator accounts on a real PostgreSQL: login with a bearer token, roles on the existing
operator routes (403 naming the missing role), admin calls, audit rows, break-glass token."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool
from pydantic import SecretStr

from api.main import create_app
from api.operators import create_operator, required_roles
from api.security import token_sha256
from app.settings import Settings

NOW = datetime(2026, 4, 20, 8, 0, tzinfo=UTC)
PW = "correct horse battery"
BREAK_GLASS = {"Authorization": "Bearer op-secret"}


@pytest.fixture
def pool(db_url: str) -> Iterator[ConnectionPool]:
    with psycopg.connect(db_url) as conn:
        for name, roles in (("ana", ["admin"]), ("bojan", ["billing"]), ("cica", ["clerk"]),
                            ("dino", ["legal", "clerk"])):
            create_operator(conn, name, PW, roles, now=NOW)
        conn.execute("""INSERT INTO meter_alerts (meter_id, kind, opened_at, last_seen_at)
                        VALUES ('W1', 'leak', '2026-04-19T03:00Z', '2026-04-19T03:00Z')""")
    with ConnectionPool(db_url, min_size=1, max_size=4, open=True) as p:
        yield p


@pytest.fixture
def client(pool: ConnectionPool) -> Iterator[TestClient]:
    settings = Settings().model_copy(update={"operator_token": SecretStr("op-secret")})
    with TestClient(create_app(settings, pool, clock=lambda: NOW),
                    base_url="https://testserver") as c:
        yield c


def login(client: TestClient, username: str, password: str = PW) -> dict[str, str]:
    resp = client.post("/api/v1/operators/login", json={"username": username,
                                                         "password": password})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


def test_login_me_logout_and_a_hashed_token(client: TestClient, pool: ConnectionPool) -> None:
    resp = client.post("/api/v1/operators/login", json={"username": "Bojan", "password": PW})
    assert resp.status_code == 200
    body = resp.json()
    assert (body["username"], body["roles"]) == ("bojan", ["billing"])
    assert body["expires_at"] == (NOW + timedelta(hours=12)).isoformat()
    auth = {"Authorization": f"Bearer {body['token']}"}
    assert client.get("/api/v1/operators/me", headers=auth).json() == {
        "username": "bojan", "roles": ["billing"]}
    with pool.connection() as conn:
        stored = conn.execute("SELECT token_sha256 FROM operator_sessions").fetchall()
    assert stored == [(token_sha256(body["token"]),)]
    wrong = client.post("/api/v1/operators/login", json={"username": "bojan", "password": "x"})
    unknown = client.post("/api/v1/operators/login", json={"username": "zz", "password": PW})
    assert (wrong.status_code, wrong.content) == (unknown.status_code, unknown.content)
    assert wrong.json() == {"detail": "wrong username or password"}
    assert client.post("/api/v1/operators/logout", headers=auth).status_code == 204
    assert client.get("/api/v1/operators/me", headers=auth).status_code == 401


def test_roles_allow_and_deny_on_existing_routes(client: TestClient) -> None:
    bojan, cica, dino = login(client, "bojan"), login(client, "cica"), login(client, "dino")
    denied = client.get("/api/v1/alerts", headers=bojan)
    assert denied.status_code == 403
    assert denied.json() == {"detail": "operator bojan lacks a role for GET /api/v1/alerts:"
                                       " needs one of admin, clerk"}
    assert client.get("/api/v1/alerts", headers=cica).status_code == 200
    assert client.get("/api/v1/ledger/trial-balance", headers=bojan).status_code == 200
    assert client.get("/api/v1/ledger/trial-balance", headers=cica).status_code == 403
    closing = client.post("/api/v1/billing/close", json={"period": "2026-03"}, headers=cica)
    assert closing.status_code == 403
    assert "needs one of admin, billing" in closing.json()["detail"]
    assert client.get("/api/v1/collections/cases", headers=dino).status_code == 200
    assert client.get("/api/v1/collections/cases", headers=bojan).status_code == 403
    assert client.post("/api/v1/operators", headers=bojan, json={
        "username": "eve", "password": PW, "roles": ["admin"]}).status_code == 403
    assert client.get("/api/v1/operators/audit", headers=dino).status_code == 403
    assert required_roles("POST", "/api/v1/collections/run") == {"billing", "legal", "admin"}
    assert required_roles("GET", "/api/v1/something-new") == {"admin"}  # fail closed
    # reads held in quarantine are meter data: billing staff release them, everyone sees them
    assert required_roles("POST", "/api/v1/ops/quarantine/7/release") == {"billing", "admin"}
    assert "clerk" in required_roles("GET", "/api/v1/ops/quarantine")


def test_audit_rows_for_a_close_and_an_alert_acknowledgement(client: TestClient) -> None:
    bojan, cica, ana = login(client, "bojan"), login(client, "cica"), login(client, "ana")
    closed = client.post("/api/v1/billing/close", json={"period": "2026-03"}, headers=bojan)
    assert closed.status_code == 200, closed.text
    ack = client.post("/api/v1/alerts/1/acknowledge", headers=cica, json={"operator": "Cica"})
    assert ack.status_code == 200, ack.text
    again = client.post("/api/v1/alerts/1/close", headers=cica, json={"note": "repaired"})
    assert again.status_code == 200
    assert client.post("/api/v1/alerts/1/close", headers=cica,
                       json={"note": "twice"}).status_code == 409
    client.get("/api/v1/alerts", headers=cica)  # reads are not audited
    rows = client.get("/api/v1/operators/audit?limit=10", headers=ana).json()["audit"]
    got = [(r["operator"], r["action"], r["target"], r["detail"]["status"], r["ip"])
           for r in rows if r["action"] != "login"]
    assert got == [
        ("cica", "POST /api/v1/alerts/{alert_id}/close", "alert_id=1", "refused", "testclient"),
        ("cica", "POST /api/v1/alerts/{alert_id}/close", "alert_id=1", "done", "testclient"),
        ("cica", "POST /api/v1/alerts/{alert_id}/acknowledge", "alert_id=1", "done",
         "testclient"),
        ("bojan", "POST /api/v1/billing/close", None, "done", "testclient"),
    ]
    close_row = next(r for r in rows if r["action"] == "POST /api/v1/billing/close")
    assert close_row["detail"]["body"] == {"period": "2026-03"}
    assert close_row["at"] == NOW.isoformat()
    assert rows[0]["detail"]["code"] == 409
    assert client.get("/api/v1/operators/audit?limit=0", headers=ana).status_code == 422


def test_admin_creates_operators_and_changes_roles(client: TestClient) -> None:
    ana = login(client, "ana")
    made = client.post("/api/v1/operators", headers=ana,
                       json={"username": "emir", "password": PW, "roles": ["clerk", "clerk"]})
    assert (made.status_code, made.json()) == (
        201, {"username": "emir", "roles": ["clerk"], "active": True})
    dup = client.post("/api/v1/operators", headers=ana,
                      json={"username": "emir", "password": PW, "roles": ["clerk"]})
    assert (dup.status_code, dup.json()) == (409, {"detail": "username: emir already exists"})
    bad = client.post("/api/v1/operators", headers=ana,
                      json={"username": "faruk", "password": PW, "roles": ["boss"]})
    assert bad.status_code == 422
    assert bad.json()["detail"].startswith("roles: unknown boss")
    emir = login(client, "emir")
    assert client.get("/api/v1/ledger/trial-balance", headers=emir).status_code == 403
    changed = client.post("/api/v1/operators/emir", headers=ana, json={"roles": ["billing"]})
    assert changed.json() == {"username": "emir", "roles": ["billing"], "active": True}
    assert client.get("/api/v1/operators/me", headers=emir).status_code == 401  # sessions ended
    emir = login(client, "emir")
    assert client.get("/api/v1/ledger/trial-balance", headers=emir).status_code == 200
    client.post("/api/v1/operators/emir", headers=ana, json={"active": False})
    gone = client.post("/api/v1/operators/login", json={"username": "emir", "password": PW})
    assert gone.status_code == 401
    assert client.post("/api/v1/operators/nobody", headers=ana,
                       json={"active": False}).status_code == 404
    actions = [(r["action"], r["target"], r["detail"]["body"])
               for r in client.get("/api/v1/operators/audit", headers=ana).json()["audit"]
               if r["action"].startswith("POST /api/v1/operators")]
    assert ("POST /api/v1/operators", None,
            {"username": "emir", "password": "***", "roles": ["clerk", "clerk"]}) in actions
    assert ("POST /api/v1/operators/{username}", "username=emir", {"roles": ["billing"]}) in actions


def test_operator_token_is_still_an_admin(client: TestClient) -> None:
    assert client.get("/api/v1/operators/me", headers=BREAK_GLASS).json() == {
        "username": "operator_token", "roles": ["admin", "billing", "clerk", "legal"]}
    assert client.get("/api/v1/alerts", headers=BREAK_GLASS).status_code == 200
    assert client.post("/api/v1/alerts/1/acknowledge", headers=BREAK_GLASS).status_code == 200
    rows = client.get("/api/v1/operators/audit", headers=BREAK_GLASS).json()["audit"]
    assert [(r["operator"], r["action"]) for r in rows] == [
        ("operator_token", "POST /api/v1/alerts/{alert_id}/acknowledge")]
    assert client.get("/api/v1/alerts", headers={"Authorization": "Bearer x"}).status_code == 401


def test_operator_logins_are_throttled(client: TestClient) -> None:
    codes = [client.post("/api/v1/operators/login", json={"username": "ana", "password": "x"}
                         ).status_code for _ in range(11)]
    assert codes == [401] * 10 + [429]
    locked = client.post("/api/v1/operators/login", json={"username": "ana", "password": PW})
    assert (locked.status_code, locked.headers["retry-after"]) == (429, "900")


def test_create_operator_checks_its_fields(pool: ConnectionPool) -> None:
    with pool.connection() as conn:
        for args, message in ((("Bad Name", PW, ["admin"]), "username:"),
                              (("ok", "short", ["admin"]), "password:"),
                              (("ok", PW, []), "roles:"), (("ana", PW, ["admin"]), "username:")):
            with pytest.raises(ValueError, match=message):
                create_operator(conn, *args)
        assert create_operator(conn, "zed", PW, "billing,legal") == ["billing", "legal"]


def test_a_clerk_moves_problem_reports_billing_may_not(client: TestClient,
                                                        pool: ConnectionPool) -> None:
    with pool.connection() as conn:
        conn.execute("INSERT INTO customers (customer_id, name, kind) VALUES"
                     " ('100001', 'Amra H.', 'household')")
        row = conn.execute(
            """INSERT INTO customer_reports (customer_id, category, body, created_at, updated_at)
               VALUES ('100001', 'meter', 'Brojilo stoji.', %s, %s) RETURNING report_id""",
            (NOW, NOW)).fetchone()
    assert row is not None
    report_id = row[0]
    url = f"/api/v1/ops/reports/{report_id}/status"
    bojan, cica, ana = login(client, "bojan"), login(client, "cica"), login(client, "ana")
    denied = client.post(url, json={"status": "in_progress"}, headers=bojan)
    assert denied.status_code == 403
    assert "needs one of admin, clerk" in denied.json()["detail"]
    moved = client.post(url, json={"status": "in_progress"}, headers=cica)
    assert moved.json() == {"report_id": report_id, "previous": "new", "status": "in_progress"}
    assert client.post(url, json={"status": "resolved"}, headers=ana).status_code == 200
    assert required_roles("POST", "/api/v1/ops/reports/{report_id}/status") == {"clerk", "admin"}
    with pool.connection() as conn:
        assert conn.execute("SELECT status, updated_by FROM customer_reports").fetchall() == [
            ("resolved", "ana")]
        audit = conn.execute("SELECT operator, detail->>'status' FROM operator_audit"
                             " WHERE action LIKE 'POST /api/v1/ops/reports/%%'"
                             " ORDER BY audit_id").fetchall()
    assert audit == [("cica", "done"), ("ana", "done")]  # a refused role is not audited
