"""Operator screens in a real headless Chromium: /ops sends the browser to /ops/prijava, a
wrong password shows the message, the login leads back to the page asked for, the
dashboard and the alerts page show, an alert is acknowledged with the page's form (the
SameSite=Strict cookie and the CSRF field in a real browser), logout; screenshots in
test-artifacts/ops-*.png."""

from __future__ import annotations

import base64
from typing import Any

import psycopg
import pytest

from api.operators import create_operator
from tests.browser.conftest import ARTIFACTS, DESKTOP, NOW, Portal
from tests.browser.test_portal_browser import (
    assert_console_clean,
    click,
    emulate,
    navigate,
    path_of,
)

pytest.importorskip("selenium", reason="pip install selenium")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

USER, PASSWORD = "sluzbenica", "Sluzbenica-Lozinka-2026"


def screenshot(driver: Any, name: str) -> None:
    """The whole page as PNG in test-artifacts/ops-{name}.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    path = ARTIFACTS / f"ops-{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.stat().st_size > 5000


def seed_operator_and_alert(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        create_operator(conn, USER, PASSWORD, ["clerk"], now=NOW)
        row = conn.execute(
            """INSERT INTO meter_alerts (meter_id, metering_point_id, kind, opened_at,
                                         last_seen_at)
               VALUES ('VOD-0001', NULL, 'leak', %s, %s) RETURNING alert_id""",
            (NOW, NOW)).fetchone()
    assert row is not None
    return int(row[0])


def ops_log_in(driver: Any, password: str) -> None:
    driver.find_element(By.ID, "username").send_keys(USER)
    field = driver.find_element(By.ID, "password")
    field.send_keys(password)
    navigate(driver, lambda: field.send_keys(Keys.ENTER))


def test_operator_logs_in_sees_dashboard_and_alerts_and_logs_out(
        portal: Portal, browser: Any) -> None:
    alert_id = seed_operator_and_alert(portal.db_url)
    emulate(browser, DESKTOP, mobile=False)
    browser.get(portal.url + "/ops/alerts")
    assert path_of(browser, portal) == "/ops/prijava?next=/ops/alerts"
    assert browser.find_element(By.TAG_NAME, "h1").text == "Prijava operatera"
    screenshot(browser, "login-desktop")

    ops_log_in(browser, "pogresna-lozinka")
    assert path_of(browser, portal) == "/ops/prijava"
    message = browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
    assert message == "Pogrešno korisničko ime ili lozinka."
    assert browser.find_element(By.ID, "username").get_attribute("value") == USER
    assert browser.switch_to.active_element.get_attribute("id") == "password"
    assert browser.get_cookie("ops_session") is None
    screenshot(browser, "login-error-desktop")
    logged = browser.get_log("browser")  # reading the log empties it
    assert [e["message"].split(" - ")[0] for e in logged if e["level"] == "SEVERE"] == [
        f"{portal.url}/ops/prijava"]  # only the refused login's 401

    browser.find_element(By.ID, "username").clear()
    ops_log_in(browser, PASSWORD)
    assert path_of(browser, portal) == "/ops/alerts"  # back to the page asked for
    cookie = browser.get_cookie("ops_session")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    row = browser.find_element(By.ID, f"alert-{alert_id}")
    assert row.get_attribute("data-state") == "open"
    assert "VOD-0001" in row.text
    screenshot(browser, "alerts-desktop")
    navigate(browser, row.find_element(By.CSS_SELECTOR, "form button").click)
    assert path_of(browser, portal) == f"/ops/alerts?ok={alert_id}"
    row = browser.find_element(By.ID, f"alert-{alert_id}")
    assert row.get_attribute("data-state") == "acknowledged"
    assert f"operator:{USER}" in row.text
    assert_console_clean(browser)

    click(browser, By.LINK_TEXT, "Pregled")
    assert path_of(browser, portal) == "/ops"
    assert browser.find_element(By.TAG_NAME, "h1").text == "Pregled grada"
    assert browser.find_element(By.ID, "operator-name").text == USER
    with psycopg.connect(portal.db_url) as conn:
        active = conn.execute("SELECT count(*) FROM meter_alerts WHERE state <> 'closed'"
                              ).fetchone()
    assert active is not None and active[0] >= 1
    assert browser.find_element(By.ID, "open-alerts").text == str(active[0])
    screenshot(browser, "dashboard-desktop")
    assert_console_clean(browser)

    click(browser, By.CSS_SELECTOR, "form.logout button")
    assert path_of(browser, portal) == "/ops/prijava?odjava=1"
    assert browser.find_element(By.CSS_SELECTOR, "[role=status]").text == "Odjavljeni ste."
    assert browser.get_cookie("ops_session") is None
    browser.get(portal.url + "/ops")
    assert path_of(browser, portal) == "/ops/prijava?next=/ops"
    with psycopg.connect(portal.db_url) as conn:
        audit = conn.execute("SELECT operator, action FROM operator_audit ORDER BY audit_id"
                             ).fetchall()
    assert audit == [(USER, "login_failed"), (USER, "login"),
                     (USER, "POST /ops/alerts/{alert_id}/potvrdi"), (USER, "logout")]
