"""Server-rendered portal pages on a real PostgreSQL: login form with CSRF, overview,
invoices, invoice detail, logout, language switch.

The data is the seed of ``test_api_portal`` (customer A: invoices 2026-02 and 2026-03,
payments 50.00 + 26.20); the figures below are worked out there by hand:
balance 76.20 + 76.86 − 76.20 = 76.86; electricity 2026-03 net 41.37 → 48.40 with VAT,
2026-02 50.25 → −3.7 %; water 17.92 vs 15.42 → +16.2 %; waste 10.53 both months.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from xml.etree import ElementTree

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool

from api.routes.pages import CSRF_COOKIE, session_csrf
from api.security import hash_password
from tests.integration.test_api_portal import PW_A, START, Clock, make_client, seed

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def pool(db_url: str) -> Iterator[ConnectionPool]:
    with psycopg.connect(db_url) as conn:
        seed(conn)
    with ConnectionPool(db_url, min_size=1, max_size=4, open=True) as p:
        yield p


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


def hidden_csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field in the form"
    return match.group(1)


def data_value(html: str, element_id: str) -> str:
    match = re.search(rf'<data id="{element_id}" value="([^"]+)">([^<]*)</data>', html)
    assert match, f"no <data id={element_id}>"
    return match.group(1)


def row(html: str, row_id: str) -> str:
    match = re.search(rf'<tr id="{row_id}">(.*?)</tr>', html, re.S)
    assert match, f"no row {row_id}"
    return match.group(1)


def found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not found"
    return match.group(1)


def child(element: ElementTree.Element, tag: str) -> ElementTree.Element:
    found_child = element.find(f"{SVG}{tag}")
    assert found_child is not None, f"no <{tag}>"
    return found_child


def text_of(fragment: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", fragment).split())


def login_form(client: TestClient, customer: str, password: str, **extra: str):  # noqa: ANN201
    page = client.get("/prijava")
    fields = {"customer_id": customer, "password": password, "csrf": hidden_csrf(page.text)}
    fields.update(extra)
    return client.post("/prijava", data=fields, follow_redirects=False)


def assert_no_inline_code(html: str) -> None:
    """The CSP forbids inline script and style: the pages must not need them."""
    assert "<script" not in html
    assert "<style" not in html
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)  # no event handler attributes


def test_root_redirects_and_the_login_page(pool: ConnectionPool, clock: Clock) -> None:
    with make_client(pool, clock) as client:
        root = client.get("/", follow_redirects=False)
        page = client.get("/prijava")
    assert (root.status_code, root.headers["location"]) == (303, "/prijava")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == "default-src 'self'; frame-ancestors 'none'"
    assert page.headers["cache-control"] == "no-store"
    html = page.text
    assert '<html lang="bs">' in html
    assert '<label for="customer_id">Broj kupca</label>' in html
    assert '<label for="password">Lozinka</label>' in html
    assert 'autocomplete="current-password"' in html
    assert hidden_csrf(html) == page.cookies[CSRF_COOKIE]
    assert "SameSite=strict" in page.headers["set-cookie"]
    assert_no_inline_code(html)


def test_wrong_id_and_wrong_password_look_the_same(pool: ConnectionPool, clock: Clock) -> None:
    with make_client(pool, clock) as client:
        answers = [login_form(client, c, p) for c, p in
                   (("100001", "wrong"), ("999999", PW_A), ("100003", "x"), ("not-an-id", PW_A))]
    assert {r.status_code for r in answers} == {401}
    errors = {found(r'role="alert"[^>]*>([^<]+)<', r.text) for r in answers}
    assert errors == {"Pogrešan broj kupca ili lozinka."}
    assert all("portal_session" not in r.headers.get("set-cookie", "") for r in answers)
    assert 'value="999999"' in answers[1].text  # the ID is kept, the password never echoed
    assert PW_A not in answers[1].text
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM portal_sessions").fetchone() == (0,)


def test_login_needs_the_form_token(pool: ConnectionPool, clock: Clock) -> None:
    with make_client(pool, clock) as client:
        client.get("/prijava")
        missing = client.post("/prijava", data={"customer_id": "100001", "password": PW_A},
                              follow_redirects=False)
        forged = client.post("/prijava", data={"customer_id": "100001", "password": PW_A,
                                               "csrf": "x" * 43}, follow_redirects=False)
        client.cookies.delete(CSRF_COOKIE)  # a cross-site post carries no strict cookie
        no_cookie = client.post("/prijava", data={"customer_id": "100001", "password": PW_A,
                                                  "csrf": "x" * 43}, follow_redirects=False)
        as_json = client.post("/prijava", json={"customer_id": "100001", "password": PW_A},
                              follow_redirects=False)
    assert [r.status_code for r in (missing, forged, no_cookie, as_json)] == [403] * 4
    assert "Obrazac je istekao" in missing.text
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM portal_sessions").fetchone() == (0,)


def test_empty_fields_are_named(pool: ConnectionPool, clock: Clock) -> None:
    with make_client(pool, clock) as client:
        resp = login_form(client, " ", "")
    assert resp.status_code == 400
    assert "Broj kupca: obavezno polje" in resp.text
    assert "Lozinka: obavezno polje" in resp.text
    assert resp.text.count('aria-invalid="true"') == 2


def test_overview_shows_what_the_json_api_says(pool: ConnectionPool, clock: Clock) -> None:
    with make_client(pool, clock) as client:
        resp = login_form(client, "100001", PW_A)
        assert (resp.status_code, resp.headers["location"]) == (303, "/pregled")
        assert "portal_session=" in resp.headers["set-cookie"]
        page = client.get("/pregled")
        summary = client.get("/api/v1/portal/summary").json()
        assert client.get("/", follow_redirects=False).headers["location"] == "/pregled"
        assert client.get("/prijava", follow_redirects=False).headers["location"] == "/pregled"
    html = page.text
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert_no_inline_code(html)
    assert "Amra H." in html and "100001" in html
    assert data_value(html, "balance") == summary["balance"] == "76.86"
    assert "76,86 KM" in html
    assert data_value(html, "last-payment") == summary["last_payment"]["amount"] == "26.20"
    assert '<time id="last-payment-date" datetime="2026-03-20">20.03.2026.</time>' in html
    for service, last, previous, change in (
        ("electricity", "48,40 KM", "50,25 KM", "−3,7 %"),
        ("water", "17,92 KM", "15,42 KM", "+16,2 %"),
        ("waste", "10,53 KM", "10,53 KM", "±0,0 %"),
    ):
        cells = row(html, f"svc-{service}")
        assert found(r'class="last-amount" value="([^"]+)"', cells) == (
            summary["last_month"]["services"][service]["amount"])
        assert found(r'class="previous-amount" value="([^"]+)"', cells) == (
            summary["previous_month"]["services"][service]["amount"])
        assert text_of(cells).split(" ")[-2:] == change.split(" ")
        assert last in cells and previous in cells
    assert "300 kWh" in row(html, "svc-electricity")  # 180 VT + 120 MT
    assert "12 m³" in row(html, "svc-water")
    assert ">februar 2026<" in html and ">mart 2026<" in html


def test_overview_charts_are_accessible_svg(pool: ConnectionPool, clock: Clock) -> None:
    with make_client(pool, clock) as client:
        login_form(client, "100001", PW_A)
        html = client.get("/pregled").text
    svgs = re.findall(r"<svg.*?</svg>", html, re.S)
    assert len(svgs) == 3
    for markup, service in zip(svgs, ("electricity", "water", "waste"), strict=True):
        svg = ElementTree.fromstring(markup)
        assert svg.get("role") == "img"
        title_id, desc_id = str(svg.get("aria-labelledby")).split()
        assert child(svg, "title").get("id") == title_id
        assert child(svg, "desc").get("id") == desc_id
        assert svg.get("id") == f"chart-{service}"
        bars = svg.findall(f"{SVG}rect")
        assert len(bars) == 2  # 24 months shown, two of them invoiced
        tips = [child(b, "title").text for b in bars]
        if service == "electricity":
            assert tips == ["februar 2026: 300 kWh", "mart 2026: 300 kWh"]
        if service == "waste":  # no meter: the amount with VAT
            assert tips == ["februar 2026: 10,53 KM", "mart 2026: 10,53 KM"]
    assert svgs[1].count("<title>") == 2
    assert "od april 2024 do mart 2026" in svgs[0]  # 24 months ending with the last invoice
    assert html.count("<details>") == 3  # the same data as tables


def test_language_switch_is_remembered(pool: ConnectionPool, clock: Clock) -> None:
    with make_client(pool, clock) as client:
        english_login = client.get("/prijava?lang=en")
        assert '<html lang="en">' in english_login.text
        assert '<label for="customer_id">Customer ID</label>' in english_login.text
        assert "portal_lang=en" in english_login.headers["set-cookie"]
        login_form(client, "100001", PW_A)
        page = client.get("/pregled").text
        assert '<html lang="en">' in page
        assert "Account overview" in page and "76.86 KM" in page
        assert "March 2026" in page and "−3.7%" in page
        assert '<a href="?lang=bs" lang="bs" hreflang="bs">Bosanski</a>' in page
        ignored = client.get("/pregled?lang=de").text  # unknown: the cookie stays in force
        assert '<html lang="en">' in ignored
        back = client.get("/racuni?lang=bs").text
        assert '<html lang="bs">' in back and "Plaćen" in back


def test_invoices_and_invoice_detail(pool: ConnectionPool, clock: Clock) -> None:
    with make_client(pool, clock) as client:
        login_form(client, "100001", PW_A)
        listing = client.get("/racuni").text
        detail = client.get("/racuni/2026-000003")
        foreign = client.get("/racuni/2026-000002")
        unknown = client.get("/racuni/2026-999999")
        too_long = client.get("/racuni/" + "9" * 65)
    assert_no_inline_code(listing)
    assert re.findall(r'<tr id="inv-([0-9-]+)">', listing) == ["2026-000003", "2026-000001"]
    newest = row(listing, "inv-2026-000003")
    assert 'data-status="overdue"' in newest and "Dospio, nije plaćen" in newest
    assert "76,86 KM" in newest and "17.04.2026." in newest and "mart 2026" in newest
    assert 'href="/racuni/2026-000003"' in newest
    assert 'href="/api/v1/portal/invoices/2026-000003/pdf"' in newest
    assert 'aria-label="Preuzmi račun 2026-000003 kao PDF"' in newest
    assert 'data-status="paid"' in row(listing, "inv-2026-000001")
    html = detail.text
    assert detail.status_code == 200
    assert data_value(html, "invoice-total") == "76.86"
    assert '<dd class="mono" id="payment-reference">REF-2026-000003</dd>' in html
    assert "154 999 00000000 53" in html  # the default recipient account, grouped
    lines = re.findall(r'<tr class="line">(.*?)</tr>', html, re.S)
    assert len(lines) == 6
    assert "energy_vt_higher MP-A" in lines[0] and "180 kWh" in lines[0]
    assert "0,1578" in lines[0] and "28,40 KM" in lines[0]
    assert "1,068376" in lines[3]
    assert "65,69 KM" in html and "11,17 KM" in html  # net and VAT
    for missing in (foreign, unknown, too_long):
        assert missing.status_code == 404
        assert "Taj račun ne postoji ili nije vaš." in missing.text
    assert foreign.text == unknown.text.replace("2026-999999", "2026-000002")


def test_logout_needs_the_session_token(pool: ConnectionPool, clock: Clock) -> None:
    with make_client(pool, clock) as client:
        login_form(client, "100001", PW_A)
        page = client.get("/pregled").text
        token = client.cookies["portal_session"]
        assert hidden_csrf(page) == session_csrf(token)
        forged = client.post("/odjava", data={"csrf": session_csrf("another-session")},
                             follow_redirects=False)
        missing = client.post("/odjava", follow_redirects=False)
        assert (forged.status_code, missing.status_code) == (403, 403)
        assert client.get("/pregled", follow_redirects=False).status_code == 200
        out = client.post("/odjava", data={"csrf": hidden_csrf(page)}, follow_redirects=False)
        assert (out.status_code, out.headers["location"]) == (303, "/prijava?odjava=1")
        assert "Odjavljeni ste." in client.get("/prijava?odjava=1").text
        client.cookies.set("portal_session", token)  # a copy of the old cookie is worthless
        for path in ("/pregled", "/racuni", "/racuni/2026-000003"):
            resp = client.get(path, follow_redirects=False)
            assert (resp.status_code, resp.headers["location"]) == (303, "/prijava")
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM portal_sessions").fetchone() == (0,)


def test_expired_session_goes_back_to_login(pool: ConnectionPool, clock: Clock) -> None:
    with make_client(pool, clock, session_idle_minutes=30) as client:
        login_form(client, "100001", PW_A)
        assert client.get("/pregled", follow_redirects=False).status_code == 200
        clock.now = START + timedelta(minutes=31)
        resp = client.get("/pregled", follow_redirects=False)
        assert (resp.status_code, resp.headers["location"]) == (303, "/prijava")
        page = client.get("/prijava")
    assert "Sesija je istekla" in page.text
    assert 'portal_session=""' in page.headers["set-cookie"]


def test_customer_without_invoices(pool: ConnectionPool, clock: Clock) -> None:
    with pool.connection() as conn:
        conn.execute("UPDATE customers SET password_hash = %s WHERE customer_id = '100003'",
                     (hash_password("x-y-z"),))
    with make_client(pool, clock) as client:
        login_form(client, "100003", "x-y-z")
        overview = client.get("/pregled").text
        listing = client.get("/racuni").text
    assert data_value(overview, "balance") == "0.00"
    assert "Nemate dugovanja." in overview and "Nema evidentiranih uplata." in overview
    assert "<svg" not in overview
    assert "Još nema izdatih računa." in listing


def test_stylesheet_is_served_by_the_app(pool: ConnectionPool, clock: Clock) -> None:
    with make_client(pool, clock) as client:
        css = client.get("/static/portal.css")
        icon = client.get("/static/favicon.svg")
        missing = client.get("/static/nope.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert ":focus-visible" in css.text
    assert css.headers["x-content-type-options"] == "nosniff"
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg")
    assert missing.status_code == 404


def test_language_switch_keeps_the_page_query(pool: ConnectionPool, clock: Clock) -> None:
    """After logging out (/prijava?odjava=1) the English link still says "logged out"."""
    with make_client(pool, clock) as client:
        page = client.get("/prijava?odjava=1").text
        assert "Odjavljeni ste." in page
        assert '<a href="?odjava=1&amp;lang=en" lang="en" hreflang="en">English</a>' in page
        english = client.get("/prijava?odjava=1&lang=en").text
        assert "You have logged out." in english
        assert '<a href="?odjava=1&amp;lang=bs" lang="bs" hreflang="bs">Bosanski</a>' in english
