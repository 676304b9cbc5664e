"""The live view in headless Chromium: /uzivo changes by itself (server-sent events, live.js)
when a read of the customer arrives through ``stream.pipeline.process_reads``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

from stream.pipeline import process_reads
from tests.browser.conftest import NOW, Portal
from tests.browser.test_portal_browser import (
    api,
    assert_console_clean,
    log_in,
    navigate,
    screenshot,
)

pytest.importorskip("selenium", reason="pip install selenium")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

KWH_MORE = 50


def next_read(db_url: str, customer_id: str) -> dict[str, str]:
    """A read KWH_MORE kWh above the customer's newest electricity read, 12 h before NOW."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT r.meter_id, r.register, r.value_milli FROM readings r"
            " JOIN meter_installations i USING (meter_id)"
            " JOIN contracts c ON c.metering_point_id = i.metering_point_id"
            "  AND c.service = 'electricity'"
            " WHERE c.customer_id = %s AND r.register = '1.8.1'"
            " ORDER BY r.read_at DESC LIMIT 1", (customer_id,)).fetchone()
    assert row is not None, "the demo customer has no electricity read"
    meter, register, value = row
    at = (NOW - timedelta(hours=12)).isoformat().replace("+00:00", "Z")
    return {"meter_id": meter, "register": register, "read_at": at,
            "value": f"{(value + KWH_MORE * 1000) / 1000:.3f}", "unit": "kWh", "source": "amr"}


def text_of(driver: Any, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def test_live_page_follows_a_new_read(portal: Portal, browser: Any) -> None:
    log_in(browser, portal)
    navigate(browser, lambda: browser.get(portal.url + "/uzivo?lang=en"))
    before_total = text_of(browser, "live-total")
    before = api(browser, portal, "/api/v1/portal/live/snapshot")
    assert before_total.replace(",", "") == before["total"] + " KM"  # English format
    screenshot(browser, "live-before")

    read = next_read(portal.db_url, portal.customer_id)
    with psycopg.connect(portal.db_url) as conn, conn.transaction():
        result = process_reads(conn, [read], channel="test", now=int(NOW.timestamp()))
    assert [o.status for o in result.outcomes] == ["accepted"], result.outcomes

    WebDriverWait(browser, 20).until(lambda d: text_of(d, "live-total") != before_total)
    after = api(browser, portal, "/api/v1/portal/live/snapshot")
    assert browser.find_element(By.ID, "live-total").get_attribute("value") == after["total"]
    assert after["total"] != before["total"]
    qty = {s["service"]: s["quantity"] for s in after["services"]}
    shown = browser.find_element(By.CSS_SELECTOR, "#live-electricity .live-qty")
    assert shown.get_attribute("value") == qty["electricity"]
    assert screenshot(browser, "live-after").name == "portal-live-after.png"
    assert_console_clean(browser)
