"""Schema migrations with yoyo (plain SQL files in app/migrations)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
from yoyo import get_backend, read_migrations

MIGRATIONS = Path(__file__).parent / "migrations"


def yoyo_url(conninfo: str) -> str:
    """yoyo wants a URL with a driver scheme; build it from any libpq conninfo."""
    info = psycopg.conninfo.conninfo_to_dict(conninfo)
    user = quote(str(info.pop("user", "postgres")))
    password = info.pop("password", None)
    host = str(info.pop("host", "") or "")
    port = info.pop("port", None)
    dbname = info.pop("dbname", user)
    query: dict[str, str] = {k: str(v) for k, v in info.items() if v is not None}
    netloc = user + (f":{quote(str(password))}" if password else "")
    if host.startswith("/"):
        query["host"] = host
        netloc += "@"
    else:
        netloc += f"@{host}" + (f":{port}" if port else "")
    q = f"?{urlencode(query)}" if query else ""
    return f"postgresql+psycopg://{netloc}/{dbname}{q}"


def migrate(conninfo: str) -> int:
    """Apply pending migrations; return how many were applied."""
    backend = get_backend(yoyo_url(conninfo))
    migrations = read_migrations(str(MIGRATIONS))
    try:
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
    finally:
        backend.connection.close()
    return len(pending)
