"""Test fixtures on a real PostgreSQL.

The server is the embedded one (started once per run under var/test-postgres) unless
BILLING_TEST_DATABASE_URL or BILLING_DATABASE_URL names another server. A template
database is migrated once; each test that asks for `db_url` gets a fresh copy of it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from app.database import start_embedded, with_database
from app.migrate import migrate

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = "billing_test_template"


@pytest.fixture(scope="session")
def admin_url() -> str:
    url = os.environ.get("BILLING_TEST_DATABASE_URL") or os.environ.get("BILLING_DATABASE_URL")
    if url:
        return url
    return start_embedded(REPO / "var" / "test")


@pytest.fixture(scope="session")
def template_db(admin_url: str) -> str:
    name = f"{TEMPLATE}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    migrate(with_database(admin_url, name))
    yield name
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def db_url(admin_url: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated, empty database for one test."""
    name = f"billing_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    yield with_database(admin_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The real Kafka broker started by scripts/test.sh (`make test`)."""
    bootstrap = os.environ.get("BILLING_TEST_KAFKA_BOOTSTRAP")
    if not bootstrap:
        pytest.skip("Kafka is not running: run the suite with `make test`")
    return bootstrap


@pytest.fixture(scope="session")
def mqtt_credentials() -> dict[str, str]:
    """Host, port and per-user passwords of the real Mosquitto started by scripts/test.sh."""
    path = os.environ.get("BILLING_TEST_MQTT_CREDENTIALS")
    if not path or not Path(path).exists():
        pytest.skip("Mosquitto is not running: run the suite with `make test`")
    values: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("'\"")
    return values
