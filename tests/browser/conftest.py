"""Real-browser fixtures: the app served by uvicorn on a free local port against the test
database, driven by Debian's headless Chromium through its chromedriver.

Nothing is downloaded: the driver and the browser are the system's (``apt-get install
chromium chromium-driver``); without them (or without selenium) the tests are skipped.
Screenshots go to ``test-artifacts/`` (git-ignored).
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from api.main import create_app
from app.demo_data import DEMO_CUSTOMER, DEMO_PASSWORD, demo_periods, generate_demo
from app.demo_payments import IssuedInvoice, demo_payments
from app.settings import Settings
from billing.closer import close_period
from billing.payments import record_payments
from ingest.file_import import import_document
from rating.calendar import month_bounds

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
NOW = datetime(2026, 4, 20, 8, 0, tzinfo=UTC)
LAST_PERIOD, MONTHS = "2026-03", 24
PHONE, DESKTOP = (390, 844), (1280, 900)
CHROME_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
)


@dataclass(frozen=True)
class Portal:
    url: str
    customer_id: str
    password: str
    db_url: str


def _browser_paths() -> tuple[str, str]:
    driver = shutil.which("chromedriver")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not driver or not browser:
        pytest.skip("headless browser tests need Debian's chromium and chromium-driver "
                    "(apt-get install -y chromium chromium-driver)")
    return driver, browser


@pytest.fixture(autouse=True)
def _needs_chromium() -> None:
    """Skip before any database work when the browser is missing."""
    _browser_paths()
    pytest.importorskip("selenium", reason="pip install selenium")


def seed_demo(db_url: str) -> None:
    """Three demo customers, 24 months of reads through the real chain, every month closed,
    payments as the demo payers make them (the demo customer leaves the newest invoice open)."""
    doc = generate_demo(customers=3, months=MONTHS, end_period=LAST_PERIOD)
    with psycopg.connect(db_url, autocommit=True) as conn:
        report = import_document(conn, doc, now=int(NOW.timestamp()), channel="demo")
        assert report.rejected == 0, report.summary()
        for period in demo_periods(LAST_PERIOD, MONTHS):
            close_period(conn, period, issued_on=month_bounds(period)[1], payment_days=15)
        invoices = [IssuedInvoice(*row) for row in conn.execute(
            "SELECT invoice_number, customer_id, issued_on, due_on, total_fen, payment_reference"
            " FROM invoices")]
        with conn.transaction():
            outcomes = record_payments(conn, demo_payments(invoices, today=date(2026, 4, 20)),
                                       channel="demo")
        assert all(o.status == "accepted" for o in outcomes)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def portal(db_url: str) -> Iterator[Portal]:
    """The real app (uvicorn, plain local HTTP) on 127.0.0.1 with the demo data seeded."""
    import uvicorn

    seed_demo(db_url)
    settings = Settings(cookie_secure=False)  # plain HTTP on localhost
    with ConnectionPool(db_url, min_size=1, max_size=4, open=True) as pool:
        app = create_app(settings, pool, clock=lambda: NOW)
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               log_level="warning", lifespan="off"))
        thread = threading.Thread(target=server.run, name="portal-uvicorn", daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("uvicorn did not start")
            time.sleep(0.05)
        try:
            yield Portal(f"http://127.0.0.1:{port}", DEMO_CUSTOMER, DEMO_PASSWORD, db_url)
        finally:
            server.should_exit = True
            thread.join(timeout=10)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium through the system chromedriver (Selenium Manager is not used)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    from selenium.webdriver.chrome.service import Service

    driver_path, browser_path = _browser_paths()
    profile = tempfile.mkdtemp(prefix="portal-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
