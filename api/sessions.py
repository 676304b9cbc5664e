"""Portal login and server-side sessions (table ``portal_sessions``).

The cookie carries a random token; the table keys the session by the token's SHA-256.
A session ends after ``session_idle_minutes`` without a request, or
``session_absolute_hours`` after login, whichever comes first. Time is an argument.
"Seen" is written at most once a minute (a write per portal call would cost a WAL flush
each), so an idle session may end up to a minute early.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg

from api.security import (
    dummy_hash,
    hash_password,
    new_token,
    password_needs_rehash,
    token_sha256,
    verify_password,
)
from app.settings import Settings

COOKIE = "portal_session"
SEEN_EVERY = timedelta(minutes=1)


def check_login(conn: psycopg.Connection, customer_id: str, password: str) -> str | None:
    """The customer's name when ID and password match, else None.

    An unknown customer (or one without a password) is verified against a dummy hash so
    the answer takes as long as for a wrong password. An outdated hash is upgraded.
    """
    row = conn.execute(
        "SELECT name, password_hash FROM customers WHERE customer_id = %s", (customer_id,)
    ).fetchone()
    if row is None or row[1] is None:
        verify_password(dummy_hash(), password)
        return None
    name, stored = str(row[0]), str(row[1])
    if not verify_password(stored, password):
        return None
    if password_needs_rehash(stored):
        conn.execute(
            "UPDATE customers SET password_hash = %s WHERE customer_id = %s",
            (hash_password(password), customer_id),
        )
    return name


def start_session(
    conn: psycopg.Connection, customer_id: str, now: datetime, settings: Settings
) -> str:
    """A new session for the customer; returns the plain token for the cookie.

    Also drops the customer's sessions that have already expired (housekeeping).
    """
    token = new_token()
    idle = timedelta(minutes=settings.session_idle_minutes)
    conn.execute(
        """DELETE FROM portal_sessions
           WHERE customer_id = %s AND (expires_at <= %s OR last_seen_at <= %s)""",
        (customer_id, now, now - idle),
    )
    conn.execute(
        """INSERT INTO portal_sessions
               (session_sha256, customer_id, created_at, last_seen_at, expires_at)
           VALUES (%s, %s, %s, %s, %s)""",
        (token_sha256(token), customer_id, now, now,
         now + timedelta(hours=settings.session_absolute_hours)),
    )
    return token


def session_customer(
    conn: psycopg.Connection, token: str, now: datetime, settings: Settings
) -> str | None:
    """The customer of a live session (and mark it seen now), or None.

    A session found expired is deleted.
    """
    key = token_sha256(token)
    row = conn.execute(
        "SELECT customer_id, last_seen_at, expires_at FROM portal_sessions"
        " WHERE session_sha256 = %s",
        (key,),
    ).fetchone()
    if row is None:
        return None
    customer_id, last_seen_at, expires_at = row
    idle = timedelta(minutes=settings.session_idle_minutes)
    if now >= expires_at or now >= last_seen_at + idle:
        conn.execute("DELETE FROM portal_sessions WHERE session_sha256 = %s", (key,))
        return None
    if now - last_seen_at >= SEEN_EVERY:  # one write a minute, not one per call
        conn.execute(
            "UPDATE portal_sessions SET last_seen_at = greatest(last_seen_at, %s)"
            " WHERE session_sha256 = %s",
            (now, key),
        )
    return str(customer_id)


def end_session(conn: psycopg.Connection, token: str) -> None:
    conn.execute("DELETE FROM portal_sessions WHERE session_sha256 = %s", (token_sha256(token),))
