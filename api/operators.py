"""Operator accounts (roles clerk | billing | legal | admin), their sessions, the role each
operator route needs, and the audit log.

An API client logs in for a bearer token (``POST /api/v1/operators/login``): no CSRF
surface on the state-changing JSON calls, and the same ``Authorization`` header the
break-glass ``settings.operator_token`` already uses. A browser logs in at ``/ops/prijava``
for an HttpOnly ``SameSite=Strict`` cookie (``api.routes.operator_login``); its
state-changing requests must also carry the session's CSRF token (``ops_csrf``). A
session is one or the other (column ``via``): a cookie token is no bearer token and the
other way round. The table keeps only the token's SHA-256; a session ends after
``session_idle_minutes`` idle or ``session_absolute_hours`` after login, like a portal
session. Time is an argument.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb

from api.security import (
    dummy_hash,
    hash_password,
    new_token,
    password_needs_rehash,
    token_sha256,
    verify_password,
)
from app.settings import Settings

ROLES = ("clerk", "billing", "legal", "admin")
BREAK_GLASS = "operator_token"
OPS_COOKIE = "ops_session"
Via = Literal["bearer", "cookie"]
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MIN_PASSWORD = 12

# (method or "*", route path prefix) → roles that may call it; first match wins; an
# empty set means any logged-in operator. Paths not listed need admin (fail closed).
RULES: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("*", "/api/v1/operators/me", frozenset()),
    ("*", "/api/v1/operators/logout", frozenset()),
    ("*", "/api/v1/operators", frozenset({"admin"})),
    ("*", "/api/v1/billing/", frozenset({"billing", "admin"})),
    ("POST", "/api/v1/collections/run", frozenset({"billing", "legal", "admin"})),
    ("*", "/api/v1/collections/", frozenset({"legal", "admin"})),
    ("*", "/api/v1/ledger/", frozenset({"billing", "admin"})),
    ("*", "/api/v1/alerts", frozenset({"clerk", "admin"})),
    ("POST", "/api/v1/ops/reports/", frozenset({"clerk", "admin"})),  # customers' reports
    ("POST", "/api/v1/ops/readings/", frozenset({"billing", "admin"})),  # read corrections
    ("POST", "/api/v1/ops/quarantine/", frozenset({"billing", "admin"})),  # meter data
    ("GET", "/api/v1/ops/", frozenset(ROLES)),  # read-only operator screens
    ("*", "/ops/alerts", frozenset({"clerk", "admin"})),
    ("GET", "/ops", frozenset(ROLES)),
)


@dataclass(frozen=True)
class OperatorIdentity:
    username: str
    roles: frozenset[str]
    token: str | None = None  # the session token; None for the break-glass token
    via: Via | None = None  # the session's kind; None for the break-glass token

    def may(self, needed: frozenset[str]) -> bool:
        return not needed or bool(self.roles & needed)


def required_roles(method: str, path: str) -> frozenset[str]:
    """The roles of which an operator needs one for ``method`` on the route ``path``."""
    for rule_method, prefix, roles in RULES:
        if rule_method in ("*", method.upper()) and path.startswith(prefix):
            return roles
    return frozenset({"admin"})


def clean_roles(roles: Iterable[str]) -> list[str]:
    """Roles as a sorted list without repeats; ValueError naming an unknown one."""
    if isinstance(roles, str):
        roles = [r.strip() for r in roles.split(",") if r.strip()]
    out = sorted(set(roles))
    unknown = [r for r in out if r not in ROLES]
    if unknown:
        raise ValueError(f"roles: unknown {', '.join(unknown)} (allowed: {', '.join(ROLES)})")
    if not out:
        raise ValueError("roles: at least one role is needed")
    return out


def check_username(username: str) -> str:
    if not isinstance(username, str) or not _USERNAME.match(username):
        raise ValueError("username: 1–64 lower-case letters, digits, '.', '_' or '-'")
    return username


def create_operator(
    conn: psycopg.Connection,
    username: str,
    password: str,
    roles: Iterable[str],
    *,
    now: datetime | None = None,
) -> list[str]:
    """Create an active operator; returns the cleaned roles. Commits nothing.

    ``created_at`` is ``now`` (the database's clock when None, e.g. from the CLI).

    ValueError (naming the field) for a bad username, an existing one, a password
    shorter than 12 characters or an unknown role.
    """
    check_username(username)
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise ValueError(f"password: at least {MIN_PASSWORD} characters")
    cleaned = clean_roles(roles)
    row = conn.execute(
        """INSERT INTO operators (username, password_hash, roles, active, created_at)
           VALUES (%s, %s, %s, true, coalesce(%s::timestamptz, now()))
           ON CONFLICT (username) DO NOTHING
           RETURNING username""",
        (username, hash_password(password), cleaned, now),
    ).fetchone()
    if row is None:
        raise ValueError(f"username: {username} already exists")
    return cleaned


def update_operator(
    conn: psycopg.Connection,
    username: str,
    *,
    roles: Iterable[str] | None = None,
    active: bool | None = None,
) -> tuple[list[str], bool] | None:
    """Set roles and/or active; None for an unknown operator. Deactivating (or any role
    change) ends the operator's sessions, so the new rights apply at once."""
    cleaned = None if roles is None else clean_roles(roles)
    row = conn.execute(
        """UPDATE operators SET roles = coalesce(%s, roles), active = coalesce(%s, active)
           WHERE username = %s RETURNING roles, active""",
        (cleaned, active, username),
    ).fetchone()
    if row is None:
        return None
    conn.execute("DELETE FROM operator_sessions WHERE username = %s", (username,))
    return list(row[0]), bool(row[1])


def check_operator_login(
    conn: psycopg.Connection, username: str, password: str
) -> frozenset[str] | None:
    """The roles of an active operator whose password matches, else None (an unknown or
    inactive operator costs one argon2 verification too). An old hash is upgraded."""
    row = conn.execute(
        "SELECT password_hash, roles FROM operators WHERE username = %s AND active",
        (username,),
    ).fetchone()
    if row is None:
        verify_password(dummy_hash(), password)
        return None
    stored = str(row[0])
    if not verify_password(stored, password):
        return None
    if password_needs_rehash(stored):
        conn.execute("UPDATE operators SET password_hash = %s WHERE username = %s",
                     (hash_password(password), username))
    return frozenset(row[1])


def start_operator_session(
    conn: psycopg.Connection, username: str, now: datetime, settings: Settings,
    via: Via = "bearer",
) -> str:
    """A new session token for the operator, a bearer token or a browser cookie's
    (expired sessions of theirs are dropped)."""
    token = new_token()
    idle = timedelta(minutes=settings.session_idle_minutes)
    conn.execute(
        """DELETE FROM operator_sessions
           WHERE username = %s AND (expires_at <= %s OR last_seen_at <= %s)""",
        (username, now, now - idle),
    )
    conn.execute(
        """INSERT INTO operator_sessions
               (token_sha256, username, created_at, last_seen_at, expires_at, via)
           VALUES (%s, %s, %s, %s, %s, %s)""",
        (token_sha256(token), username, now, now,
         now + timedelta(hours=settings.session_absolute_hours), via),
    )
    return token


def session_operator(
    conn: psycopg.Connection, token: str, now: datetime, settings: Settings,
    via: Via = "bearer",
) -> OperatorIdentity | None:
    """The active operator of a live session of kind ``via`` (marked seen now), or None."""
    key = token_sha256(token)
    row = conn.execute(
        """SELECT s.username, s.last_seen_at, s.expires_at, o.roles, o.active
           FROM operator_sessions s JOIN operators o USING (username)
           WHERE s.token_sha256 = %s AND s.via = %s""",
        (key, via),
    ).fetchone()
    if row is None:
        return None
    username, last_seen_at, expires_at, roles, active = row
    idle = timedelta(minutes=settings.session_idle_minutes)
    if not active or now >= expires_at or now >= last_seen_at + idle:
        conn.execute("DELETE FROM operator_sessions WHERE token_sha256 = %s", (key,))
        return None
    conn.execute(
        "UPDATE operator_sessions SET last_seen_at = greatest(last_seen_at, %s)"
        " WHERE token_sha256 = %s",
        (now, key),
    )
    return OperatorIdentity(str(username), frozenset(roles), token, via)


def ops_csrf(session_token: str) -> str:
    """The form token of a browser session: HMAC-SHA256 of a fixed label keyed by the
    session's secret, so a foreign page cannot know it."""
    return hmac.new(session_token.encode(), b"ops-form", hashlib.sha256).hexdigest()


def end_operator_session(conn: psycopg.Connection, token: str) -> None:
    conn.execute("DELETE FROM operator_sessions WHERE token_sha256 = %s",
                 (token_sha256(token),))


def any_operator(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT EXISTS (SELECT 1 FROM operators WHERE active)").fetchone() == (
        True,
    )


# ---- audit ------------------------------------------------------------------------------


def write_audit(
    conn: psycopg.Connection,
    *,
    at: datetime,
    operator: str,
    action: str,
    target: str | None,
    detail: dict[str, Any],
    ip: str | None,
) -> None:
    conn.execute(
        """INSERT INTO operator_audit (at, operator, action, target, detail, ip)
           VALUES (%s, %s, %s, %s, %s, %s)""",
        (at, operator, action, target, Jsonb(detail), ip),
    )


def audit_rows(conn: psycopg.Connection, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        """SELECT audit_id, at, operator, action, target, detail, ip FROM operator_audit
           ORDER BY at DESC, audit_id DESC LIMIT %s""",
        (limit,),
    ).fetchall()
    names = ("audit_id", "at", "operator", "action", "target", "detail", "ip")
    return [{**dict(zip(names, r, strict=True)), "at": r[1].isoformat()} for r in rows]


def redact(value: Any) -> Any:
    """A JSON body for the audit with every ``*password*`` / ``*token*`` field masked."""
    if isinstance(value, dict):
        return {
            k: "***" if any(s in str(k).lower() for s in ("password", "token", "secret"))
            else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
