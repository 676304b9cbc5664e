"""One bootstrap per process: settings → database → migrations → connection pool."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg_pool import ConnectionPool

from app.database import database_url
from app.migrate import migrate
from app.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    database_url: str
    pool: ConnectionPool

    def close(self) -> None:
        self.pool.close()


def bootstrap(settings: Settings, *, pool_size: int | None = None) -> Runtime:
    url = database_url(settings)
    applied = migrate(url)
    if applied:
        log.info("applied %d migration(s)", applied)
    size = pool_size or settings.pool_size
    pool = ConnectionPool(url, min_size=1, max_size=size, open=True, name="billing")
    pool.wait(timeout=30)
    return Runtime(settings, url, pool)


@contextmanager
def one_connection(settings: Settings) -> Iterator[psycopg.Connection]:
    """For a one-shot command: bootstrap, lend one connection, close everything after."""
    rt = bootstrap(settings, pool_size=1)
    try:
        with rt.pool.connection() as conn:
            yield conn
    finally:
        rt.close()
