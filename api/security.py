"""Secrets of the HTTP side: customer passwords, session and gateway tokens.

Passwords are hashed with argon2id (``argon2-cffi`` defaults, RFC 9106 low-memory
profile). Tokens are 32 random bytes; the database keeps only their SHA-256, so a leaked
table does not let anyone log in or push reads.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from functools import cache

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
_GATEWAY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
TOKEN_BYTES = 32


def hash_password(password: str) -> str:
    """argon2id hash (with its own salt and parameters) of a password."""
    if not isinstance(password, str) or not password:
        raise ValueError("password: must be a non-empty string")
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches; False for a wrong password or a malformed hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def password_needs_rehash(password_hash: str) -> bool:
    """The hash was made with weaker parameters than today's defaults."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True


@cache
def dummy_hash() -> str:
    """A hash of a random password: verified against when the customer does not exist, so
    an unknown customer ID costs the same time as a wrong password."""
    return hash_password(secrets.token_urlsafe(16))


def new_token() -> str:
    """32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets."""
    return hmac.compare_digest(given.encode(), expected.encode())


def new_gateway_token() -> str:
    return new_token()


def register_gateway(conn: psycopg.Connection, gateway_id: str) -> str:
    """Create (or re-key) an ingest gateway; return its plain token, shown only this once.

    Registering an existing gateway again replaces its token: the old one stops working.
    Commits nothing: the caller owns the transaction.
    """
    if not isinstance(gateway_id, str) or not _GATEWAY_ID.match(gateway_id):
        raise ValueError("gateway_id: must be 1–64 letters, digits, '.', '_' or '-'")
    token = new_gateway_token()
    conn.execute(
        """INSERT INTO ingest_gateways (gateway_id, token_sha256) VALUES (%s, %s)
           ON CONFLICT (gateway_id) DO UPDATE SET token_sha256 = EXCLUDED.token_sha256""",
        (gateway_id, token_sha256(token)),
    )
    return token


def gateway_for_token(conn: psycopg.Connection, token: str) -> str | None:
    """The gateway a bearer token belongs to, or None."""
    row = conn.execute(
        "SELECT gateway_id FROM ingest_gateways WHERE token_sha256 = %s", (token_sha256(token),)
    ).fetchone()
    return None if row is None else str(row[0])
