"""Shared helpers for the benchmarks: a fresh migrated database and medians."""

from __future__ import annotations

import os
import statistics
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from app.database import start_embedded, with_database
from app.migrate import migrate

REPO = Path(__file__).resolve().parent.parent


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new migrated database on BILLING_DATABASE_URL's server or the embedded one."""
    admin = os.environ.get("BILLING_DATABASE_URL") or start_embedded(REPO / "var" / "bench")
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(admin, name)
    migrate(url)
    try:
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def median_of(runs: int, fn: Callable[[], float]) -> tuple[float, list[float]]:
    values = [fn() for _ in range(runs)]
    return statistics.median(values), values
