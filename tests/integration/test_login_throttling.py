"""Failed-login throttling on a real PostgreSQL with a pinned clock: per account, per IP,
for the JSON login and the HTML form, shared by two API processes (two apps, two pools)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool

from api.main import create_app
from api.security import hash_password
from api.throttle import TOO_MANY, Policy, prune
from app.settings import Settings

PW = "Lozinka-A1!"
START = datetime(2026, 4, 20, 8, 0, tzinfo=UTC)
FIVE = Policy(account_failures=5, ip_failures=20, window=timedelta(minutes=15))


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def pool(db_url: str) -> Iterator[ConnectionPool]:
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO customers (customer_id, name, kind, password_hash)"
                     " VALUES ('100001', 'Amra H.', 'household', %s)", (hash_password(PW),))
    with ConnectionPool(db_url, min_size=1, max_size=4, open=True) as p:
        yield p


def client(pool: ConnectionPool, clock: Clock, policy: Policy | None = FIVE) -> TestClient:
    app = create_app(Settings(), pool, clock=clock)
    if policy is not None:
        app.state.login_policy = policy
    return TestClient(app, base_url="https://testserver")


def attempt(c: TestClient, customer: str, password: str) -> tuple[int, str, str | None]:
    r = c.post("/api/v1/portal/login", json={"customer_id": customer, "password": password})
    return r.status_code, r.json()["detail"] if r.status_code != 200 else "ok", \
        r.headers.get("retry-after")


def test_sixth_attempt_is_refused_even_with_the_right_password_then_allowed(
    pool: ConnectionPool,
) -> None:
    clock = Clock(START)
    with client(pool, clock) as c:
        for i in range(5):
            clock.now = START + timedelta(minutes=i)
            assert attempt(c, "100001", "wrong")[0] == 401
        clock.now = START + timedelta(minutes=5)
        # locked at 08:04 for 15 minutes: 08:19 - 08:05 = 14 minutes left
        assert attempt(c, "100001", PW) == (429, TOO_MANY, str(14 * 60))
        clock.now = START + timedelta(minutes=18, seconds=59)
        assert attempt(c, "100001", PW) == (429, TOO_MANY, "1")
        clock.now = START + timedelta(minutes=19)
        assert attempt(c, "100001", PW) == (200, "ok", None)
    with pool.connection() as conn:  # the success cleared the account's counter
        rows = conn.execute("SELECT scope, key, failures FROM login_throttle ORDER BY 1").fetchall()
    assert rows == [("ip", "testclient", 5)]


def test_a_throttled_unknown_account_answers_like_a_real_one(pool: ConnectionPool) -> None:
    clock = Clock(START)
    with client(pool, clock) as c:
        for customer in ("100001", "999999"):
            for _ in range(5):
                assert attempt(c, customer, "wrong")[:2] == (401, "wrong customer ID or password")
        real = c.post("/api/v1/portal/login", json={"customer_id": "100001", "password": "x"})
        unknown = c.post("/api/v1/portal/login", json={"customer_id": "999999", "password": "x"})
    assert (real.status_code, real.content, real.headers["retry-after"]) == (
        unknown.status_code, unknown.content, unknown.headers["retry-after"])
    assert real.status_code == 429


def test_the_next_lockout_is_twice_as_long(pool: ConnectionPool) -> None:
    clock = Clock(START)
    with client(pool, clock) as c:
        for _ in range(5):
            attempt(c, "100001", "wrong")
        clock.now = START + timedelta(minutes=15)
        for _ in range(5):
            assert attempt(c, "100001", "wrong")[0] == 401
        assert attempt(c, "100001", PW) == (429, TOO_MANY, str(30 * 60))


def test_default_policy_allows_ten_failures(pool: ConnectionPool) -> None:
    clock = Clock(START)
    with client(pool, clock, policy=None) as c:
        assert [attempt(c, "100001", "wrong")[0] for _ in range(10)] == [401] * 10
        assert attempt(c, "100001", PW)[0] == 429


def test_per_ip_limit_across_accounts_and_shared_by_two_processes(db_url: str,
                                                                   pool: ConnectionPool) -> None:
    clock = Clock(START)
    with ConnectionPool(db_url, min_size=1, max_size=2, open=True) as other_pool, \
            client(pool, clock) as a, client(other_pool, clock) as b:
        for i in range(20):  # 20 accounts, one failure each, alternating processes
            assert attempt(a if i % 2 else b, f"2000{i:02d}", "wrong")[0] == 401
        assert attempt(a, "100001", PW) == (429, TOO_MANY, str(15 * 60))
        assert attempt(b, "100001", PW)[0] == 429
        clock.now = START + timedelta(minutes=15)
        assert attempt(b, "100001", PW)[0] == 200


def test_html_login_form_is_throttled(pool: ConnectionPool) -> None:
    clock = Clock(START)
    with client(pool, clock) as c:
        page = c.get("/prijava?lang=en")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None

        def post(password: str) -> httpx.Response:
            return c.post("/prijava", data={"customer_id": "100001", "password": password,
                                            "csrf": csrf.group(1)}, follow_redirects=False)

        assert [post("wrong").status_code for _ in range(5)] == [401] * 5
        refused = post(PW)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == str(15 * 60)
        assert "Too many failed logins. Try again in 15 min." in refused.text
        assert "portal_session" not in c.cookies
        # the JSON login shares the counter
        assert attempt(c, "100001", PW)[0] == 429
        clock.now = START + timedelta(minutes=15)
        done = post(PW)
        assert (done.status_code, done.headers["location"]) == (303, "/pregled")


def test_prune_drops_only_counters_that_no_longer_matter(pool: ConnectionPool) -> None:
    clock = Clock(START)
    with client(pool, clock) as c:
        for _ in range(5):
            attempt(c, "100001", "wrong")  # locked until 08:15
        clock.now = START + timedelta(hours=20)
        attempt(c, "999999", "wrong")
    with pool.connection() as conn:
        assert prune(conn, START + timedelta(hours=24, minutes=10)) == 0  # lock ended 08:15
        assert prune(conn, START + timedelta(hours=24, minutes=16)) == 1
        left = conn.execute("SELECT scope, key FROM login_throttle ORDER BY 1, 2").fetchall()
    assert left == [("ip", "testclient"), ("portal", "999999")]
