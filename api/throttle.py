"""Throttling of failed logins per account and per client IP (OWASP ASVS 2.2.1).

Counters live in PostgreSQL (table ``login_throttle``) so every API process sees the
same ones. An account is the login name *as typed*, known or not, so a throttled unknown
account answers exactly like a throttled real one. ``policy.account_failures`` failures
within ``policy.window`` lock the account for ``window``, the next lockout for twice
that, and so on up to ``policy.max_lock``; the IP has its own, higher limit. While
locked every attempt is refused with 429 and ``Retry-After`` before the password is even
looked at (a correct one included). A successful login clears the account's counter.

The state transition is pure (``after_failure``); time is always an argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import psycopg

from api import ApiError

TOO_MANY = "too many failed logins, try again later"


@dataclass(frozen=True)
class Policy:
    account_failures: int = 10
    ip_failures: int = 20
    window: timedelta = timedelta(minutes=15)
    max_lock: timedelta = timedelta(hours=24)


DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class Counter:
    failures: int
    window_start: datetime
    locked_until: datetime | None
    lockouts: int
    last_failure_at: datetime


class Throttled(ApiError):
    """429 with ``Retry-After`` (whole seconds)."""

    status_code = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(TOO_MANY, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


def after_failure(state: Counter | None, now: datetime, limit: int, policy: Policy) -> Counter:
    """The counter after one more failed login at ``now``.

    A window that has run out (and is not locked) starts again at zero; the lockout
    count is forgotten ``max_lock`` after the last failure or lock, so the delay grows only for
    persistent guessing.
    """
    if state is None:
        return _maybe_lock(Counter(1, now, None, 0, now), now, limit, policy)
    quiet_since = max(state.last_failure_at, state.locked_until or state.last_failure_at)
    lockouts = state.lockouts if now - quiet_since < policy.max_lock else 0
    locked = state.locked_until is not None and now < state.locked_until
    if not locked and now >= state.window_start + policy.window:
        state = Counter(0, now, None, lockouts, state.last_failure_at)
    state = replace(state, failures=state.failures + 1, lockouts=lockouts, last_failure_at=now)
    return _maybe_lock(state, now, limit, policy)


def _maybe_lock(state: Counter, now: datetime, limit: int, policy: Policy) -> Counter:
    if state.failures < limit:
        return state
    lockouts = state.lockouts + 1
    until = now + min(policy.window * 2 ** (lockouts - 1), policy.max_lock)
    return Counter(0, until, until, lockouts, now)


def retry_after(state: Counter | None, now: datetime) -> int:
    """Seconds until the next attempt is allowed; 0 when it is allowed now."""
    if state is None or state.locked_until is None or now >= state.locked_until:
        return 0
    return max(1, math.ceil((state.locked_until - now).total_seconds()))


# ---- PostgreSQL -------------------------------------------------------------------------

_COLUMNS = "failures, window_start, locked_until, lockouts, last_failure_at"


def _load(conn: psycopg.Connection, scope: str, key: str, *, lock: bool) -> Counter | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM login_throttle WHERE scope = %s AND key = %s"
        + (" FOR UPDATE" if lock else ""),
        (scope, key),
    ).fetchone()
    return None if row is None else Counter(*row)


def _keys(scope: str, account: str, ip: str | None) -> list[tuple[str, str]]:
    keys = [(scope, account)]
    if ip:
        keys.append(("ip", ip))
    return keys


def check(
    conn: psycopg.Connection, scope: str, account: str, ip: str | None, now: datetime
) -> None:
    """Raise ``Throttled`` when the account or the IP is locked at ``now``.

    Locks the account's row (when it has one) until the caller's transaction ends, so
    concurrent guesses at one account from several processes are counted one by one.
    Call it inside the login's transaction, before checking the password.
    """
    wait = 0
    for key_scope, key in _keys(scope, account, ip):
        state = _load(conn, key_scope, key, lock=key_scope == scope)
        wait = max(wait, retry_after(state, now))
    if wait:
        raise Throttled(wait)


def record_failure(
    conn: psycopg.Connection,
    scope: str,
    account: str,
    ip: str | None,
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
) -> None:
    """Count a failed login against the account and the IP (committed by the caller)."""
    for key_scope, key in _keys(scope, account, ip):
        limit = policy.ip_failures if key_scope == "ip" else policy.account_failures
        state = after_failure(_load(conn, key_scope, key, lock=True), now, limit, policy)
        conn.execute(
            f"""INSERT INTO login_throttle (scope, key, {_COLUMNS})
                VALUES (%s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (scope, key) DO UPDATE SET failures = EXCLUDED.failures,
                    window_start = EXCLUDED.window_start,
                    locked_until = EXCLUDED.locked_until, lockouts = EXCLUDED.lockouts,
                    last_failure_at = EXCLUDED.last_failure_at""",
            (key_scope, key, state.failures, state.window_start, state.locked_until,
             state.lockouts, state.last_failure_at),
        )


def record_success(conn: psycopg.Connection, scope: str, account: str) -> None:
    """A successful login clears the account's counter (not the IP's)."""
    conn.execute("DELETE FROM login_throttle WHERE scope = %s AND key = %s", (scope, account))


def prune(conn: psycopg.Connection, now: datetime, policy: Policy = DEFAULT_POLICY) -> int:
    """Drop counters that can no longer matter (quiet for ``max_lock``, not locked), so
    sprayed unknown names do not pile up; returns how many. For a periodic job."""
    cur = conn.execute(
        """DELETE FROM login_throttle WHERE last_failure_at < %s
             AND (locked_until IS NULL OR locked_until < %s)""",
        (now - policy.max_lock, now - policy.max_lock),
    )
    return cur.rowcount


def policy_of(state: Any) -> Policy:
    """The policy on ``app.state.login_policy`` (tests may set one), else the default."""
    found = getattr(state, "login_policy", None)
    return found if isinstance(found, Policy) else DEFAULT_POLICY


def client_ip(request: Any) -> str | None:
    """The peer address of a Starlette request (proxies are not trusted here)."""
    client = getattr(request, "client", None)
    return str(client.host) if client is not None and client.host else None
