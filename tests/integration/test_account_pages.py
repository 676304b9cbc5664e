"""Customer self-service (issue #6) on a real PostgreSQL: CSV export, password change,
notification preferences, problem reports with the operator's status changes.

Seed of ``test_api_portal``: customer A 100001 (invoices 2026-000001 and 2026-000003),
customer B 100002 (2026-000002, 2026-000004); here A has a contract at MP-A, B at MP-B.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool
from pydantic import SecretStr

from api.main import create_app
from api.portal_account import safe_cell
from app.settings import Settings
from tests.integration.test_api_portal import PW_A, PW_B, START, Clock, login, make_client, seed
from tests.integration.test_pages import assert_no_inline_code, hidden_csrf

NEW_PW = "Nova-lozinka-2026"


@pytest.fixture
def pool(db_url: str) -> Iterator[ConnectionPool]:
    with psycopg.connect(db_url) as conn:
        seed(conn)
        conn.execute("INSERT INTO contracts VALUES"
                     " ('C-A', '100001', 'MP-A', 'electricity', 'EL-HH', '2025-01-01', NULL),"
                     " ('C-B', '100002', 'MP-B', 'electricity', 'EL-HH', '2025-01-01', NULL)")
    with ConnectionPool(db_url, min_size=1, max_size=4, open=True) as p:
        yield p


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


def count(pool: ConnectionPool, sql: str, *args: object) -> int:
    with pool.connection() as conn:
        row = conn.execute(sql, args).fetchone()
    assert row is not None
    return int(row[0])


# ---- CSV export ----------------------------------------------------------------------


def test_safe_cell_defuses_formulas() -> None:
    assert [safe_cell(v) for v in ("=1+1", "+3", "-2", "@SUM(A1)", "\tx", "2026-000001")] == [
        "'=1+1", "'+3", "'-2", "'@SUM(A1)", "'\tx", "2026-000001"]


def test_export_csv_has_only_the_customers_data(pool: ConnectionPool, clock: Clock) -> None:
    with make_client(pool, clock) as client:
        assert client.get("/api/v1/portal/export.csv").status_code == 401
        login(client, "100001", PW_A)
        resp = client.get("/api/v1/portal/export.csv")
        page = client.get("/pregled")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in resp.headers["content-disposition"]
    assert resp.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(resp.content.decode("utf-8-sig")), delimiter=";"))
    invoices = {r[0]: r for r in rows if r and r[0].startswith("2026-0000")}
    assert set(invoices) == {"2026-000001", "2026-000003"}  # never B's 000002 / 000004
    assert invoices["2026-000003"][1] == "2026-03"
    assert "," in invoices["2026-000003"][4] and "." not in invoices["2026-000003"][4]
    usage = [r for r in rows if len(r) == 5 and r[0] in ("2026-02", "2026-03")]
    assert {r[0] for r in usage} == {"2026-02", "2026-03"}
    assert 'href="/api/v1/portal/export.csv"' in page.text


# ---- password ------------------------------------------------------------------------


def test_change_password_form(pool: ConnectionPool, clock: Clock) -> None:
    with make_client(pool, clock) as client, make_client(pool, clock) as other:
        login(client, "100001", PW_A)
        login(other, "100001", PW_A)  # a second device
        page = client.get("/lozinka")
        assert page.status_code == 200
        assert_no_inline_code(page.text)
        csrf = hidden_csrf(page.text)

        def send(**fields: str):  # noqa: ANN202
            data = {"csrf": csrf, "current": PW_A, "new": NEW_PW, "repeat": NEW_PW, **fields}
            return client.post("/lozinka", data=data, follow_redirects=False)

        assert send(csrf="forged").status_code == 403
        wrong = send(current="nije-ta-lozinka")
        assert wrong.status_code == 403
        assert "Trenutna lozinka nije tačna." in wrong.text
        assert count(pool, "SELECT failures FROM login_throttle WHERE scope = 'portal'"
                           " AND key = '100001'") == 1
        assert send(repeat=NEW_PW + "x").status_code == 400
        assert send(new="kratka", repeat="kratka").status_code == 400
        old_cookie = client.cookies["portal_session"]
        done = send()
        assert (done.status_code, done.headers["location"]) == (303, "/lozinka?ok=1")
        assert client.cookies["portal_session"] != old_cookie
        assert client.get("/lozinka?ok=1").status_code == 200  # the renewed session works
        assert other.get("/api/v1/portal/summary").status_code == 401  # the others ended
        assert count(pool, "SELECT count(*) FROM portal_sessions WHERE customer_id = '100001'"
                     ) == 1
        assert count(pool, "SELECT count(*) FROM login_throttle WHERE key = '100001'") == 0
    with make_client(pool, clock) as fresh:
        old = fresh.post("/api/v1/portal/login", json={"customer_id": "100001",
                                                       "password": PW_A})
        assert old.status_code == 401
        login(fresh, "100001", NEW_PW)
    with pool.connection() as conn:
        row = conn.execute("SELECT password_hash FROM customers WHERE customer_id = '100001'"
                           ).fetchone()
    assert row is not None and str(row[0]).startswith("$argon2id$")


def test_change_password_json(pool: ConnectionPool, clock: Clock) -> None:
    body = {"current_password": PW_B, "new_password": NEW_PW, "new_password_repeat": NEW_PW}
    with make_client(pool, clock) as client:
        assert client.post("/api/v1/portal/password", json=body).status_code == 401
        login(client, "100002", PW_B)
        wrong = client.post("/api/v1/portal/password",
                            json={**body, "current_password": "pogresna-lozinka"})
        assert wrong.status_code == 403
        mismatch = client.post("/api/v1/portal/password",
                               json={**body, "new_password_repeat": "nesto-drugo-12"})
        assert mismatch.status_code == 422
        assert "new_password_repeat" in mismatch.json()["detail"]
        assert client.post("/api/v1/portal/password", json=body).status_code == 204
        assert client.get("/api/v1/portal/summary").status_code == 200
    with make_client(pool, clock) as fresh:
        login(fresh, "100002", NEW_PW)


# ---- notification preferences -----------------------------------------------------------


def test_notification_preferences(pool: ConnectionPool, clock: Clock) -> None:
    with make_client(pool, clock) as client:
        assert client.get("/obavjestenja", follow_redirects=False).status_code == 303
        login(client, "100001", PW_A)
        page = client.get("/obavjestenja")
        assert 'name="invoice_issued:email" type="checkbox" checked' in page.text  # default
        assert 'name="invoice_issued:sms" type="checkbox">' in page.text
        assert_no_inline_code(page.text)
        csrf = hidden_csrf(page.text)
        forged = client.post("/obavjestenja", data={"csrf": "x", "reminder:sms": "on"})
        assert forged.status_code == 403
        assert count(pool, "SELECT count(*) FROM notification_preferences") == 0
        saved = client.post("/obavjestenja", data={"csrf": csrf, "reminder:sms": "on",
                                                   "payment_received:email": "on"},
                            follow_redirects=False)
        assert saved.status_code == 303
        shown = client.get(saved.headers["location"]).text
    assert 'name="reminder:sms" type="checkbox" checked' in shown
    assert 'name="payment_received:email" type="checkbox" checked' in shown
    assert 'name="invoice_issued:email" type="checkbox">' in shown  # now off
    assert 'id="prefs-saved"' in shown
    assert count(pool, "SELECT count(*) FROM notification_preferences WHERE enabled"
                       " AND customer_id = '100001'") == 2
    assert count(pool, "SELECT count(*) FROM notification_preferences"
                       " WHERE customer_id = '100001'") == 6


# ---- problem reports -------------------------------------------------------------------


def test_reports_isolation_and_operator_status(db_url: str, pool: ConnectionPool,
                                               clock: Clock) -> None:
    settings = Settings().model_copy(update={"operator_token": SecretStr("op-secret")})
    app = create_app(settings, pool, clock=clock)
    op = {"Authorization": "Bearer op-secret"}
    with TestClient(app, base_url="https://testserver") as a, \
            TestClient(app, base_url="https://testserver") as b:
        login(a, "100001", PW_A)
        login(b, "100002", PW_B)
        page = a.get("/prijave")
        assert '<option value="MP-A">' in page.text and "MP-B" not in page.text
        assert_no_inline_code(page.text)
        csrf = hidden_csrf(page.text)
        foreign = a.post("/prijave", data={"csrf": csrf, "category": "meter",
                                           "body": "Brojilo stoji.", "metering_point_id": "MP-B"})
        assert foreign.status_code == 400
        too_long = a.post("/prijave", data={"csrf": csrf, "category": "other",
                                            "body": "x" * 2001})
        assert too_long.status_code == 400
        bad_cat = a.post("/prijave", data={"csrf": csrf, "category": "x", "body": "y"})
        assert bad_cat.status_code == 400
        assert a.post("/prijave", data={"csrf": "forged", "category": "other",
                                        "body": "y"}).status_code == 403
        assert count(pool, "SELECT count(*) FROM customer_reports") == 0
        sent = a.post("/prijave", data={"csrf": csrf, "category": "meter",
                                        "body": "Brojilo <b>stoji</b>.",
                                        "metering_point_id": "MP-A"}, follow_redirects=False)
        assert sent.status_code == 303
        report_id = count(pool, "SELECT report_id FROM customer_reports")
        mine = a.get("/prijave").text
        assert f'id="report-{report_id}"' in mine
        assert "Brojilo &lt;b&gt;stoji&lt;/b&gt;." in mine  # escaped
        assert 'data-status="new"' in mine
        assert f'id="report-{report_id}"' not in b.get("/prijave").text

        url = f"/api/v1/ops/reports/{report_id}/status"
        assert a.post(url, json={"status": "resolved"}).status_code == 401  # not an operator
        moved = a.post(url, json={"status": "in_progress"}, headers=op)
        assert moved.status_code == 200, moved.text
        assert moved.json() == {"report_id": report_id, "previous": "new",
                                "status": "in_progress"}
        back = a.post(url, json={"status": "new"}, headers=op)
        assert back.status_code == 400 and "cannot go back" in back.json()["detail"]
        assert a.post(url, json={"status": "closed"}, headers=op).status_code == 400
        assert a.post("/api/v1/ops/reports/999999/status", json={"status": "resolved"},
                      headers=op).status_code == 404
        assert 'data-status="in_progress">U obradi' in a.get("/prijave").text
        assert a.post(url, json={"status": "resolved"}, headers=op).status_code == 200
    assert count(pool, "SELECT count(*) FROM customer_reports WHERE status = 'resolved'"
                       " AND updated_by IS NOT NULL") == 1
    assert count(pool, "SELECT count(*) FROM operator_audit WHERE action ="
                       " 'POST /api/v1/ops/reports/{report_id}/status'") == 5


def test_wrong_current_passwords_lock_the_account(pool: ConnectionPool, clock: Clock) -> None:
    from datetime import timedelta

    from api.throttle import Policy

    body = {"current_password": "pogresna-lozinka", "new_password": NEW_PW,
            "new_password_repeat": NEW_PW}
    with make_client(pool, clock) as client:
        client.app.state.login_policy = Policy(account_failures=2,  # type: ignore[attr-defined]
                                               window=timedelta(minutes=15))
        login(client, "100001", PW_A)
        codes = [client.post("/api/v1/portal/password", json=body).status_code
                 for _ in range(3)]
        right = client.post("/api/v1/portal/password", json={**body, "current_password": PW_A})
    assert codes == [403, 403, 429]
    assert right.status_code == 429 and int(right.headers["retry-after"]) > 0
    with make_client(pool, clock) as fresh:  # the old password still works after the lock
        clock.now = START + timedelta(minutes=16)
        login(fresh, "100001", PW_A)
