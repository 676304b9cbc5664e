"""The customer portal in a real headless Chromium: login through the form, the overview
against the JSON API, invoices, an invoice, logout, a wrong password, the language
switch, the phone layout; screenshots of every page in test-artifacts/.
"""

from __future__ import annotations

import base64
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.browser.conftest import ARTIFACTS, DESKTOP, PHONE, Portal

pytest.importorskip("selenium", reason="pip install selenium")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def navigate(driver: Any, action: Any) -> None:
    """Do something that loads a new page (a click, Enter, a submit) and wait for that page."""
    old = driver.find_element(By.TAG_NAME, "html")
    action()
    WebDriverWait(driver, 15).until(expected_conditions.staleness_of(old))
    WebDriverWait(driver, 15).until(
        lambda d: d.execute_script("return document.readyState") == "complete")


def click(driver: Any, by: str, what: str) -> None:
    navigate(driver, driver.find_element(by, what).click)


def emulate(driver: Any, size: tuple[int, int], *, mobile: bool) -> None:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": size[0], "height": size[1], "deviceScaleFactor": 2 if mobile else 1,
        "mobile": mobile})


def screenshot(driver: Any, name: str) -> Path:
    """The whole page (beyond the viewport) as PNG in test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    path = ARTIFACTS / f"portal-{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.stat().st_size > 5000
    return path


def path_of(driver: Any, portal: Portal) -> str:
    return str(driver.current_url).removeprefix(portal.url)


def log_in(driver: Any, portal: Portal, password: str | None = None) -> None:
    driver.get(portal.url + "/")
    assert path_of(driver, portal) == "/prijava"
    driver.find_element(By.ID, "customer_id").send_keys(portal.customer_id)
    field = driver.find_element(By.ID, "password")
    field.send_keys(password or portal.password)
    navigate(driver, lambda: field.send_keys(Keys.ENTER))  # the keyboard alone submits


def api(driver: Any, portal: Portal, path: str) -> Any:
    """The JSON API with the browser's session cookie."""
    cookie = driver.get_cookie("portal_session")
    assert cookie and cookie["httpOnly"], "the session cookie must be HttpOnly"
    resp = httpx.get(portal.url + path, cookies={"portal_session": cookie["value"]})
    assert resp.status_code == 200, resp.text
    return resp.json()


def attr(driver: Any, css: str, name: str = "value") -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).get_attribute(name))


def assert_console_clean(driver: Any) -> None:
    """No CSP violation, no failed resource: the browser's console has no error."""
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []


def test_login_overview_invoices_detail_logout(portal: Portal, browser: Any) -> None:
    emulate(browser, DESKTOP, mobile=False)
    browser.get(portal.url + "/")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "bs"
    screenshot(browser, "login-desktop")
    log_in(browser, portal)
    assert path_of(browser, portal) == "/pregled"
    summary = api(browser, portal, "/api/v1/portal/summary")
    assert attr(browser, "#balance") == summary["balance"]
    assert float(summary["balance"]) > 0  # the demo customer leaves the newest invoice open
    assert attr(browser, "#last-payment") == summary["last_payment"]["amount"]
    assert attr(browser, "#last-payment-date", "datetime") == summary["last_payment"]["date"]
    last, previous = summary["last_month"], summary["previous_month"]
    assert (last["period"], previous["period"]) == ("2026-03", "2026-02")
    for service, month in last["services"].items():
        row = f"#svc-{service}"
        assert attr(browser, f"{row} .last-amount") == month["amount"]
        assert attr(browser, f"{row} .previous-amount") == (
            previous["services"][service]["amount"])
        change = browser.find_element(By.CSS_SELECTOR, f"{row} .change").text
        expected = summary["change_percent"].get(service)
        assert change == ("–" if expected is None else
                          f"{'+' if expected > 0 else '−' if expected < 0 else '±'}"
                          f"{abs(expected):.1f} %".replace(".", ","))
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert [c.get_attribute("id") for c in charts] == [
        f"chart-{s}" for s in last["services"]]
    for chart in charts:
        assert chart.size["width"] > 400 and chart.size["height"] > 200
        assert len(chart.find_elements(By.CSS_SELECTOR, "rect.bar")) == 24
    screenshot(browser, "overview-desktop")
    assert_console_clean(browser)

    click(browser, By.LINK_TEXT, "Računi")
    assert path_of(browser, portal) == "/racuni"
    listed = api(browser, portal, "/api/v1/portal/invoices")
    rows = browser.find_elements(By.CSS_SELECTOR, "table.invoices tbody tr")
    assert len(rows) == len(listed) == 24
    for row, inv in zip(rows, listed, strict=True):
        assert row.get_attribute("id") == f"inv-{inv['number']}"
        assert row.find_element(By.CSS_SELECTOR, ".badge").get_attribute("data-status") == (
            inv["status"])
        assert row.find_element(By.CSS_SELECTOR, "data.total").get_attribute("value") == (
            inv["total"])
    newest = listed[0]
    assert browser.find_element(By.CSS_SELECTOR, "tbody tr a.pdf").get_attribute("href") == (
        f"{portal.url}/api/v1/portal/invoices/{newest['number']}/pdf")
    screenshot(browser, "invoices-desktop")

    click(browser, By.LINK_TEXT, newest["number"])
    assert path_of(browser, portal) == f"/racuni/{newest['number']}"
    detail = api(browser, portal, f"/api/v1/portal/invoices/{newest['number']}")
    assert attr(browser, "#invoice-total") == detail["total"]
    amounts = [e.get_attribute("value") for e in
               browser.find_elements(By.CSS_SELECTOR, "tr.line data.line-amount")]
    assert amounts == [ln["amount"] for ln in detail["lines"]]
    assert browser.find_element(By.ID, "payment-reference").text == detail["payment_reference"]
    screenshot(browser, "invoice-desktop")
    assert_console_clean(browser)

    click(browser, By.CSS_SELECTOR, "form.logout button")
    assert path_of(browser, portal) == "/prijava?odjava=1"
    assert "Odjavljeni ste." in browser.find_element(By.CSS_SELECTOR, "[role=status]").text
    assert browser.get_cookie("portal_session") is None
    browser.get(portal.url + "/pregled")
    assert path_of(browser, portal) == "/prijava"


def test_wrong_password_shows_the_error(portal: Portal, browser: Any) -> None:
    log_in(browser, portal, password="pogresna")
    assert path_of(browser, portal) == "/prijava"
    message = browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
    assert message == "Pogrešan broj kupca ili lozinka."
    assert attr(browser, "#customer_id") == portal.customer_id
    assert attr(browser, "#password") == ""
    assert browser.switch_to.active_element.get_attribute("id") == "password"
    assert browser.get_cookie("portal_session") is None
    screenshot(browser, "login-error-desktop")
    browser.find_element(By.ID, "customer_id").clear()
    browser.find_element(By.ID, "customer_id").send_keys("999999")
    field = browser.find_element(By.ID, "password")
    field.send_keys(portal.password)
    navigate(browser, field.submit)
    assert path_of(browser, portal) == "/prijava"
    assert browser.find_element(By.CSS_SELECTOR, "[role=alert]").text == message


def test_phone_layout_keyboard_and_language(portal: Portal, browser: Any) -> None:
    emulate(browser, PHONE, mobile=True)
    browser.get(portal.url + "/prijava")
    assert browser.execute_script("return window.innerWidth") == PHONE[0]
    screenshot(browser, "login-phone")
    log_in(browser, portal)
    for page, name in (("/pregled", "overview"), ("/racuni", "invoices")):
        browser.get(portal.url + page)
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= PHONE[0], f"{page} scrolls sideways on a phone ({width}px)"
        screenshot(browser, f"{name}-phone")
    click(browser, By.CSS_SELECTOR, "tbody tr th a")
    assert browser.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
    screenshot(browser, "invoice-phone")

    # keyboard: the first Tab reaches the skip link, which then becomes visible
    browser.get(portal.url + "/pregled")
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    focused = browser.switch_to.active_element
    assert focused.get_attribute("class") == "skip"
    assert focused.location["x"] >= 0 and focused.is_displayed()
    outline = browser.execute_script(
        "return getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"

    click(browser, By.LINK_TEXT, "English")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert browser.find_element(By.TAG_NAME, "h1").text == "Account overview"
    balance = browser.find_element(By.ID, "balance")
    assert balance.text == f"{Decimal(balance.get_attribute('value')):,.2f} KM"  # 1,234.56
    browser.get(portal.url + "/racuni")  # the choice is remembered
    assert browser.find_element(By.TAG_NAME, "h1").text == "Invoices"
    assert browser.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
    logout = browser.find_element(By.CSS_SELECTOR, "form.logout button")
    assert logout.location["x"] + logout.size["width"] <= PHONE[0]
    screenshot(browser, "invoices-phone-en")
    assert_console_clean(browser)


def test_self_read_form(portal: Portal, browser: Any) -> None:
    with psycopg.connect(portal.db_url) as conn:
        found = conn.execute(
            """SELECT s.meter_id, s.last_value_milli FROM meter_state s
               JOIN meters m USING (meter_id)
               JOIN meter_installations i USING (meter_id)
               JOIN contracts c ON c.metering_point_id = i.metering_point_id
                    AND c.service = m.service
               WHERE c.customer_id = %s AND m.service = 'electricity'
                 AND s.register = '1.8.1'""", (portal.customer_id,)).fetchone()
    assert found is not None
    meter_id, last_milli = found
    emulate(browser, PHONE, mobile=True)
    log_in(browser, portal)
    click(browser, By.LINK_TEXT, "Očitanje")
    assert path_of(browser, portal) == "/ocitanje"
    typed = f"{(last_milli + 12_500) // 1000},{(last_milli + 12_500) % 1000:03d}"
    field = browser.find_element(By.ID, f"in-{meter_id}-1.8.1")
    assert field.get_attribute("inputmode") == "decimal"
    field.send_keys(typed)
    screenshot(browser, "self-read-phone")
    click(browser, By.CSS_SELECTOR, "form.reads button[type=submit]")
    result = browser.find_element(By.ID, f"in-{meter_id}-1.8.1-answer")
    assert result.get_attribute("data-status") == "accepted"
    assert result.text.endswith("Potrošnja od zadnjeg očitanja: 12,5 kWh.")
    screenshot(browser, "self-read-answer-phone")
    with psycopg.connect(portal.db_url) as conn:
        row = conn.execute(
            "SELECT value_milli, source FROM readings WHERE meter_id = %s AND register = '1.8.1'"
            " ORDER BY read_at DESC LIMIT 1", (meter_id,)).fetchone()
    assert row == (last_milli + 12_500, "self")
    assert_console_clean(browser)


def wait_for_file(folder: Path, name: str, seconds: float = 20) -> Path:
    """A download Chromium has finished (no ``.crdownload`` left)."""
    import time

    path, deadline = folder / name, time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and not list(folder.glob("*.crdownload")):
            return path
        time.sleep(0.1)
    raise AssertionError(f"no download {name} in {sorted(p.name for p in folder.iterdir())}")


def test_download_my_data_as_green_button_xml_and_open_an_invoice_pdf(
        portal: Portal, browser: Any, tmp_path: Path) -> None:
    from defusedxml import ElementTree as SafeET

    from api.espi import ATOM, ESPI

    browser.execute_cdp_cmd("Page.setDownloadBehavior",
                            {"behavior": "allow", "downloadPath": str(tmp_path)})
    log_in(browser, portal)
    link = browser.find_element(By.ID, "export-espi")
    assert link.get_attribute("href") == f"{portal.url}/moji-podaci.xml"
    assert "Green Button" in link.text
    link.click()
    xml = wait_for_file(tmp_path, f"green-button-{portal.customer_id}.xml").read_bytes()
    feed = SafeET.fromstring(xml)
    assert feed.tag == f"{{{ATOM}}}feed"
    values = [int(v.text) for v in feed.iter(f"{{{ESPI}}}value")]
    with psycopg.connect(portal.db_url) as conn:
        expected = conn.execute(
            """SELECT count(*), sum(d.quantity_milli) FROM contracts c
               JOIN daily_consumption d ON d.metering_point_id = c.metering_point_id
                AND d.service = c.service AND d.local_day >= c.valid_from
                AND (c.valid_to IS NULL OR d.local_day <= c.valid_to)
               WHERE c.customer_id = %s AND d.local_day BETWEEN '2024-04-01' AND '2026-04-20'
            """, (portal.customer_id,)).fetchone()
    assert expected is not None and expected[0] > 600  # 24 months of days, several registers
    assert (len(values), sum(values)) == (expected[0], expected[1])

    click(browser, By.LINK_TEXT, "Računi")
    pdf_url = browser.find_element(By.CSS_SELECTOR, "tbody tr a.pdf").get_attribute("href")
    cookie = browser.get_cookie("portal_session")
    assert cookie is not None
    resp = httpx.get(pdf_url, cookies={"portal_session": cookie["value"]})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/pdf"
    assert resp.content.startswith(b"%PDF-") and resp.content.rstrip().endswith(b"%%EOF")
    assert httpx.get(pdf_url).status_code == 401  # not without the session
    number = pdf_url.rsplit("/", 2)[-2]
    browser.get(pdf_url)  # headless Chromium shows the PDF or saves it, never an error
    shown = browser.execute_script("return document.contentType")
    if shown != "application/pdf":
        saved = wait_for_file(tmp_path, f"racun-{number}.pdf").read_bytes()
        assert saved == resp.content
