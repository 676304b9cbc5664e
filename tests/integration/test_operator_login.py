"""Operator login for the browser on a real PostgreSQL: /ops/prijava, the ops_session
cookie (HttpOnly, SameSite=Strict, Secure), CSRF on every state-changing request made
with it, throttling, one message for unknown user and wrong password, idle and absolute
timeouts, logout, audit rows, and the /ops pages sending a browser to the login."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool

from api.main import create_app
from api.operators import create_operator
from api.security import token_sha256
from app.settings import Settings
from tests.integration.test_pages import assert_no_inline_code, hidden_csrf

NOW = datetime(2026, 4, 20, 8, 0, tzinfo=UTC)
PW = "correct horse battery"
HTML = {"Accept": "text/html,application/xhtml+xml"}


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def pool(db_url: str) -> Iterator[ConnectionPool]:
    with psycopg.connect(db_url) as conn:
        for name, roles in (("ana", ["admin"]), ("bojan", ["billing"]), ("cica", ["clerk"])):
            create_operator(conn, name, PW, roles, now=NOW)
        conn.execute("""INSERT INTO meter_alerts (meter_id, kind, opened_at, last_seen_at)
                        VALUES ('W1', 'leak', '2026-04-19T03:00Z', '2026-04-19T03:00Z'),
                               ('E7', 'tamper', '2026-04-19T04:00Z', '2026-04-19T04:00Z')""")
    with ConnectionPool(db_url, min_size=1, max_size=4, open=True) as p:
        yield p


@pytest.fixture
def clock() -> Clock:
    return Clock()


def client_for(pool: ConnectionPool, clock: Clock, **settings: object) -> TestClient:
    app = create_app(Settings(**settings), pool, clock=clock)  # type: ignore[arg-type]
    return TestClient(app, base_url="https://testserver", follow_redirects=False)


def browser_login(client: TestClient, username: str, password: str = PW,
                  next_url: str | None = None) -> tuple[int, str]:
    """(status, Location or page) of a login through the form, as a browser does it."""
    form_page = client.get("/ops/prijava", headers=HTML)
    assert form_page.status_code == 200
    data = {"csrf": hidden_csrf(form_page.text), "username": username, "password": password}
    if next_url is not None:
        data["next"] = next_url
    resp = client.post("/ops/prijava", data=data, headers=HTML)
    return resp.status_code, resp.headers.get("location", resp.text)


def rows(pool: ConnectionPool, sql: str, *args: object) -> list[tuple]:
    with pool.connection() as conn:
        return conn.execute(sql, args).fetchall()


def set_cookie_of(resp: object, name: str) -> str:
    cookies = [c for c in resp.headers.get_list("set-cookie")  # type: ignore[attr-defined]
               if c.startswith(f"{name}=")]
    assert len(cookies) == 1, cookies
    return cookies[0]


def test_pages_send_a_browser_to_the_login_and_api_clients_get_401(
        pool: ConnectionPool, clock: Clock) -> None:
    with client_for(pool, clock) as c:
        for path in ("/ops", "/ops/map", "/ops/customers?q=a", "/ops/alerts"):
            resp = c.get(path, headers=HTML)
            assert resp.status_code == 303, path
            assert resp.headers["location"].startswith("/ops/prijava?next=/ops"), path
            assert c.get(path).status_code == 401, path  # no text/html: an API client
        page = c.get("/ops/prijava", headers=HTML)
    assert page.status_code == 200
    assert 'name="username"' in page.text and 'autocomplete="current-password"' in page.text
    assert 'action="/ops/odjava"' not in page.text  # no menu, no logout before the login
    assert_no_inline_code(page.text)
    cookie = set_cookie_of(page, "ops_login_csrf").lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie


def test_login_sets_a_strict_cookie_session_that_is_no_bearer_token(
        pool: ConnectionPool, clock: Clock) -> None:
    with client_for(pool, clock) as c:
        status, where = browser_login(c, "Cica", next_url="/ops/alerts")
        assert (status, where) == (303, "/ops/alerts")
        token = c.cookies["ops_session"]
        dashboard = c.get("/ops", headers=HTML)
        assert dashboard.status_code == 200
        assert re.search(r'<span id="operator-name">cica</span>', dashboard.text)
        assert 'href="/ops/alerts"' in dashboard.text  # a clerk sees the alerts
        assert_no_inline_code(dashboard.text)
        assert c.get("/api/v1/operators/me").json() == {"username": "cica", "roles": ["clerk"]}
        as_bearer = c.get("/api/v1/operators/me", cookies={"ops_session": ""},
                          headers={"Authorization": f"Bearer {token}"})
        assert as_bearer.status_code == 401  # a cookie session is no bearer token
        api_token = c.post("/api/v1/operators/login",
                           json={"username": "ana", "password": PW}).json()["token"]
        c.cookies.clear()
        assert c.get("/ops", headers=HTML, cookies={"ops_session": api_token}
                     ).status_code == 303  # and a bearer token is no cookie
    stored = rows(pool, "SELECT token_sha256, username, via, expires_at FROM operator_sessions"
                        " WHERE via = 'cookie' ORDER BY created_at")
    assert (token_sha256(token), "cica", "cookie", NOW + timedelta(hours=12)) in stored
    audit = rows(pool, "SELECT operator, action, detail->>'via' FROM operator_audit"
                       " WHERE action = 'login' ORDER BY audit_id")
    assert audit[0] == ("cica", "login", "cookie")


def test_the_cookie_flags(pool: ConnectionPool, clock: Clock) -> None:
    with client_for(pool, clock) as c:
        form = c.get("/ops/prijava", headers=HTML)
        resp = c.post("/ops/prijava", data={"csrf": hidden_csrf(form.text),
                                             "username": "ana", "password": PW})
    cookie = set_cookie_of(resp, "ops_session").lower()
    for flag in ("httponly", "samesite=strict", "secure", "path=/", "max-age=43200"):
        assert flag in cookie, flag
    with client_for(pool, clock, cookie_secure=False) as c:  # plain local HTTP
        form = c.get("/ops/prijava", headers=HTML)
        resp = c.post("/ops/prijava", data={"csrf": hidden_csrf(form.text),
                                             "username": "ana", "password": PW})
    cookie = set_cookie_of(resp, "ops_session").lower()
    assert "secure" not in cookie and "httponly" in cookie and "samesite=strict" in cookie


def test_unknown_user_and_wrong_password_look_the_same(
        pool: ConnectionPool, clock: Clock) -> None:
    with client_for(pool, clock) as c:
        wrong = browser_login(c, "ana", "not the password")
        unknown = browser_login(c, "nobody", PW)
        forged = c.post("/ops/prijava", data={"csrf": "forged", "username": "ana",
                                              "password": PW})
        empty = c.post("/ops/prijava", data={"csrf": hidden_csrf(c.get("/ops/prijava").text),
                                             "username": "", "password": ""})
    assert wrong[0] == unknown[0] == 401
    message = re.compile(r'<p class="error" role="alert" id="login-error">([^<]+)</p>')
    found = [message.search(text) for _, text in (wrong, unknown)]
    assert [m.group(1) for m in found if m] == ["Pogrešno korisničko ime ili lozinka."] * 2
    assert "ops_session" not in c.cookies
    assert forged.status_code == 403 and "Obrazac je istekao" in forged.text
    assert empty.status_code == 400 and 'id="username-err"' in empty.text
    assert rows(pool, "SELECT count(*) FROM operator_sessions") == [(0,)]
    assert rows(pool, "SELECT operator, action FROM operator_audit ORDER BY audit_id") == [
        ("ana", "login_failed"), ("nobody", "login_failed")]


def test_failed_logins_lock_the_account_even_for_the_right_password(
        pool: ConnectionPool, clock: Clock) -> None:
    with client_for(pool, clock) as c:
        codes = [browser_login(c, "bojan", "wrong")[0] for _ in range(10)]
        form = c.get("/ops/prijava")
        locked = c.post("/ops/prijava", data={"csrf": hidden_csrf(form.text),
                                              "username": "bojan", "password": PW})
        api = c.post("/api/v1/operators/login", json={"username": "bojan", "password": PW})
        clock.now += timedelta(minutes=16)
        after = browser_login(c, "bojan")
    assert codes == [401] * 10
    assert (locked.status_code, locked.headers["retry-after"]) == (429, "900")
    assert "Pokušajte ponovo za 15 min." in locked.text
    assert api.status_code == 429  # the API login shares the account's counter
    assert after == (303, "/ops")


def test_csrf_is_needed_for_every_state_changing_request_with_the_cookie(
        pool: ConnectionPool, clock: Clock) -> None:
    with client_for(pool, clock) as c:
        browser_login(c, "cica")
        page = c.get("/ops/alerts", headers=HTML)
        assert page.status_code == 200
        csrf = hidden_csrf(page.text)
        assert page.text.count('action="/ops/alerts/') == 2
        no_token = c.post("/ops/alerts/1/potvrdi", data={})
        forged = c.post("/ops/alerts/1/potvrdi", data={"csrf": "f" * 64})
        json_call = c.post("/api/v1/alerts/2/acknowledge", json={})
        assert [no_token.status_code, forged.status_code, json_call.status_code] == [403] * 3
        assert "csrf" in no_token.json()["detail"]
        assert rows(pool, "SELECT count(*) FROM meter_alerts WHERE state = 'open'") == [(2,)]
        done = c.post("/ops/alerts/1/potvrdi", data={"csrf": csrf})
        assert (done.status_code, done.headers["location"]) == (303, "/ops/alerts?ok=1")
        header = c.post("/api/v1/alerts/2/acknowledge", json={},
                        headers={"X-CSRF-Token": csrf})
        assert header.status_code == 200, header.text
        after = c.get("/ops/alerts?ok=1", headers=HTML).text
    assert 'id="ack-done"' in after and 'data-state="acknowledged"' in after
    assert rows(pool, "SELECT alert_id, acknowledged_by FROM meter_alerts ORDER BY 1") == [
        (1, "operator:cica"), (2, "operator")]
    assert rows(pool, "SELECT operator, action, target, detail->>'status' FROM operator_audit"
                      " WHERE action LIKE 'POST %%' ORDER BY audit_id") == [
        ("cica", "POST /ops/alerts/{alert_id}/potvrdi", "alert_id=1", "done"),
        ("cica", "POST /api/v1/alerts/{alert_id}/acknowledge", "alert_id=2", "done")]


def test_roles_still_apply_to_a_cookie_session(pool: ConnectionPool, clock: Clock) -> None:
    with client_for(pool, clock) as c:
        browser_login(c, "bojan")
        dashboard = c.get("/ops", headers=HTML)
        denied = c.get("/ops/alerts")  # not a browser: the JSON answer
        post = c.post("/ops/alerts/1/potvrdi", data={"csrf": hidden_csrf(dashboard.text)})
    assert dashboard.status_code == 200 and 'href="/ops/alerts"' not in dashboard.text
    assert denied.status_code == 403
    assert "needs one of admin, clerk" in denied.json()["detail"]
    assert post.status_code == 403 and "needs one of" in post.json()["detail"]
    assert rows(pool, "SELECT count(*) FROM meter_alerts WHERE state = 'open'") == [(2,)]


def test_a_missing_role_is_a_page_for_the_browser_and_json_for_the_api(
        pool: ConnectionPool, clock: Clock) -> None:
    # #6: a logged-in operator without the page's role got the API's JSON in the browser
    with client_for(pool, clock) as c:
        browser_login(c, "bojan")  # billing: may see /ops, not the alerts
        csrf = hidden_csrf(c.get("/ops", headers=HTML).text)
        page = c.get("/ops/alerts", headers=HTML)
        english = c.get("/ops/alerts?lang=en", headers=HTML)
        form = c.post("/ops/alerts/1/potvrdi", data={"csrf": csrf}, headers=HTML)
        api = c.get("/api/v1/operators/audit", headers=HTML)  # a JSON route stays JSON
    assert page.status_code == 403 and page.headers["content-type"].startswith("text/html")
    assert '<html lang="bs">' in page.text and "Pristup nije dozvoljen" in page.text
    assert re.search(r'id="forbidden-why">[^<]*uloga:\s*admin, clerk\.', page.text)
    assert '<a id="forbidden-back" href="/ops"' in page.text and "Natrag na pregled" in page.text
    assert '<span id="operator-name">' not in page.text  # nothing shown of the page itself
    assert 'data-state="open"' not in page.text
    assert_no_inline_code(page.text)
    assert english.status_code == 403 and '<html lang="en">' in english.text
    assert "Access denied" in english.text and "Back to the dashboard" in english.text
    assert 'href="?lang=bs"' in english.text
    assert form.status_code == 403 and "Access denied" in form.text  # the language stays
    assert 'href="/ops?lang=bs"' in form.text  # not back to the form's address
    assert rows(pool, "SELECT count(*) FROM meter_alerts WHERE state = 'open'") == [(2,)]
    assert api.status_code == 403 and api.headers["content-type"] == "application/json"
    assert "needs one of admin" in api.json()["detail"]


def test_the_language_switch_keeps_next_and_only_a_safe_one(
        pool: ConnectionPool, clock: Clock) -> None:
    # #6: ?lang=en on the login page dropped `next`, so the login landed on /ops
    with client_for(pool, clock) as c:
        sent = c.get("/ops/customers?q=amra", headers=HTML).headers["location"]
        login = c.get(sent, headers=HTML)
        link = re.search(r'<a href="([^"]*)" lang="en"', login.text)
        assert link is not None
        href = html.unescape(link.group(1))
        assert href == "?next=%2Fops%2Fcustomers%3Fq%3Damra&lang=en"
        english = c.get("/ops/prijava" + href, headers=HTML)
        assert '<html lang="en">' in english.text
        assert 'name="next" value="/ops/customers?q=amra"' in english.text
        back = re.search(r'<a href="([^"]*)" lang="bs"', english.text)
        assert back is not None
        assert html.unescape(back.group(1)) == "?next=%2Fops%2Fcustomers%3Fq%3Damra&lang=bs"
        data = {"csrf": hidden_csrf(english.text), "username": "ana", "password": PW,
                "next": "/ops/customers?q=amra"}
        done = c.post("/ops/prijava", data=data, headers=HTML)
        assert (done.status_code, done.headers["location"]) == (303, "/ops/customers?q=amra")
        c.cookies.clear()
        for evil in ("https://evil.example/ops", "//evil.example/ops", "/ops/../pregled"):
            page = c.get("/ops/prijava", params={"next": evil}, headers=HTML).text
            assert 'href="?lang=en"' in page, evil  # only the safe default, never echoed
            assert "evil" not in page and "pregled" not in page, evil
        fresh = hidden_csrf(c.get("/ops/prijava", headers=HTML).text)
        failed = c.post("/ops/prijava", data={**data, "csrf": fresh, "password": "wrong"},
                        headers=HTML)
        assert failed.status_code == 401
        assert 'href="?next=%2Fops%2Fcustomers%3Fq%3Damra&amp;lang=en"' in failed.text
        search = c.get("/ops/customers?q=amra&lang=bs", headers=HTML)
        assert search.status_code == 303  # logged out: to the login, next kept


def test_idle_and_absolute_timeouts(pool: ConnectionPool, clock: Clock) -> None:
    with client_for(pool, clock) as c:
        browser_login(c, "ana")
        clock.now += timedelta(minutes=29)
        assert c.get("/ops", headers=HTML).status_code == 200  # seen: idle clock restarts
        clock.now += timedelta(minutes=29)
        assert c.get("/ops", headers=HTML).status_code == 200
        clock.now += timedelta(minutes=31)
        idle = c.get("/ops", headers=HTML)
        assert idle.status_code == 303
        stale = c.get("/ops/prijava", headers=HTML)
        assert "Sesija je istekla" in stale.text
        assert 'ops_session=""' in set_cookie_of(stale, "ops_session")  # cleared
        c.cookies.clear()
        browser_login(c, "ana")
        for _ in range(12 * 3 - 1):  # active every 20 minutes for 11 h 40 min
            clock.now += timedelta(minutes=20)
            assert c.get("/ops", headers=HTML).status_code == 200
        clock.now += timedelta(minutes=20)  # 12 h after the login
        assert c.get("/ops", headers=HTML).status_code == 303


def test_logout_needs_the_token_ends_the_session_and_is_audited(
        pool: ConnectionPool, clock: Clock) -> None:
    with client_for(pool, clock) as c:
        browser_login(c, "ana")
        token = c.cookies["ops_session"]
        csrf = hidden_csrf(c.get("/ops", headers=HTML).text)
        refused = c.post("/ops/odjava", data={"csrf": "forged"})
        assert refused.status_code == 403
        assert c.get("/ops", headers=HTML).status_code == 200  # still logged in
        out = c.post("/ops/odjava", data={"csrf": csrf})
        assert (out.status_code, out.headers["location"]) == (303, "/ops/prijava?odjava=1")
        assert 'ops_session=""' in set_cookie_of(out, "ops_session")
        back = c.get("/ops", headers=HTML, cookies={"ops_session": token})
        assert back.status_code == 303  # the old cookie is dead
        c.cookies.clear()
        assert "Odjavljeni ste." in c.get("/ops/prijava?odjava=1").text
    assert rows(pool, "SELECT count(*) FROM operator_sessions") == [(0,)]
    assert rows(pool, "SELECT operator, action FROM operator_audit ORDER BY audit_id") == [
        ("ana", "login"), ("ana", "logout")]


def test_after_login_only_local_ops_paths(pool: ConnectionPool, clock: Clock) -> None:
    with client_for(pool, clock) as c:
        for given, expected in (("//evil.example/ops", "/ops"), ("https://evil.example", "/ops"),
                                ("/ops/customers?q=amra", "/ops/customers?q=amra"),
                                ("/pregled", "/ops"), ("/ops/../pregled", "/ops")):
            c.cookies.clear()
            assert browser_login(c, "ana", next_url=given) == (303, expected), given
        c.cookies.clear()
        resp = c.get("/ops/customers?q=x", headers=HTML)
    assert resp.headers["location"] == "/ops/prijava?next=/ops/customers%3Fq%3Dx"
