"""The close's invoices booked set-based (`post_invoice_numbers`, issue #5) are booked
exactly as the Python rules (`entry_for_invoice` through `post_invoices`) book them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.close_100k import PERIOD
from billing import closer
from billing.calculation import InvoiceLine
from billing.close_hooks import CloseContext, ExtraLines
from billing.ledger import (
    DEFAULT_CHART,
    EntryDraft,
    LedgerError,
    LineDraft,
    load_chart,
    parse_chart,
)
from billing.ledger_posting import post_entries, post_invoice_numbers
from tests.integration.test_close_speed import seed_varied

ISSUED = date(2026, 11, 1)
# customers without a contract, invoiced only for the lines given to them below
ZERO, NETS_ONLY, VAT_ONLY = "900001", "900002", "900003"


def _line(service: str, amount_fen: int, rate: str, what: str = "Korekcija") -> InvoiceLine:
    return InvoiceLine(service, "" if service == "interest" else f"MM-{service}", "adjustment",
                       None, what, 1000, "month", amount_fen * 10_000, amount_fen, Decimal(rate))


def extra_lines(ctx: CloseContext, customer_ids: Sequence[str]) -> ExtraLines:
    """Zero-VAT interest for every 4th customer, a water credit that makes the water net
    negative (the total too, for some) for every 4th after it, and three customers invoiced
    only for these lines: one whose every amount is zero (nothing to book), one whose total
    is zero but whose services are not, one whose total is zero with VAT."""
    out: dict[str, list[InvoiceLine]] = {}
    for cid in customer_ids:
        n = int(cid)
        if n % 4 == 1:
            out[cid] = [_line("interest", 137 + n % 50, "0", "Zatezna kamata")]
        elif n % 4 == 2:
            out[cid] = [_line("water", -(1500 + 900 * (n % 20)), "17")]
    out[ZERO] = [_line("waste", 500, "0"), _line("waste", -500, "0")]
    out[NETS_ONLY] = [_line("water", 1000, "0"), _line("electricity", -1000, "0")]
    out[VAT_ONLY] = [_line("water", 1000, "17"), _line("electricity", -1170, "0")]
    return ExtraLines(lines=out)


def booked(conn: psycopg.Connection) -> dict[str, Any]:
    return {
        "entries": conn.execute(
            "SELECT entry_number, year, seq, entry_date, kind, source_document, description"
            " FROM journal_entries ORDER BY entry_number").fetchall(),
        "lines": conn.execute("SELECT * FROM journal_lines ORDER BY 1, 2").fetchall(),
        "outbox": conn.execute("SELECT topic, key, document, payload FROM outbox_events"
                               " ORDER BY event_id").fetchall(),
        "counters": conn.execute("SELECT * FROM journal_counters ORDER BY 1").fetchall(),
    }


def _close(conn: psycopg.Connection, book_in_sql_from: int,
           monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setattr(closer, "BOOK_IN_SQL_FROM", book_in_sql_from)
    conn.execute("SELECT 1")  # an open transaction: the close's is a savepoint, rolled back
    res = closer.close_period(conn, PERIOD, issued_on=ISSUED, line_sources=[extra_lines])
    assert res.invoices_created > 300
    out = booked(conn)
    conn.rollback()
    return out


@pytest.fixture
def conn(db_url: str):
    with psycopg.connect(db_url) as c:
        seed_varied(c, 400)
        c.execute("INSERT INTO customers (customer_id, name, kind) VALUES"
                  " (%s, 'Kupac bez ugovora', 'household'), (%s, 'Kupac bez ugovora', 'household'),"
                  " (%s, 'Kupac bez ugovora', 'business')", (ZERO, NETS_ONLY, VAT_ONLY))
        chart = load_chart()
        post_entries(c, [EntryDraft(  # an entry before the close: numbers continue after it
            "opening", "OTVARANJE-2026", date(2026, 1, 1), "Početno stanje",
            (LineDraft("2410", 10_000, 0), LineDraft("2110", 0, 10_000, "100001")))],
            chart=chart)
        c.commit()
        yield c


def test_the_sql_booking_writes_what_the_python_rules_write(
        conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    python = _close(conn, 10**9, monkeypatch)
    sql = _close(conn, 1, monkeypatch)
    assert sql == python
    assert conn.execute("SELECT count(*) FROM invoices").fetchone() == (0,), "rolled back"
    # what the fixture means to cover is there: several services, interest, a negative
    # water net and a negative total, an invoice with nothing to book (one number fewer)
    accounts = {ln[2] for ln in python["lines"]}
    assert {"2110", "6010", "6011", "6012", "6700", "4700"} <= accounts
    assert any(ln[2] == "6011" and ln[4] > 0 for ln in python["lines"])  # water revenue debited
    assert any(ln[2] == "2110" and ln[5] > 0 for ln in python["lines"])  # negative total
    invoices = [o for o in python["outbox"] if o[0] == "billing.invoices.v1"]
    ledger = [o for o in python["outbox"] if o[0] == "ledger.entries.v1"]
    assert python["entries"][0][4] == "opening" and python["entries"][1][2] == 2
    assert len(python["entries"]) == 1 + len(invoices) - 1
    assert [o[2] for o in ledger] == [e[0] for e in python["entries"]]
    assert python["counters"] == [(2026, len(python["entries"]))]


def test_the_special_invoices(conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(closer, "BOOK_IN_SQL_FROM", 1)
    closer.close_period(conn, PERIOD, issued_on=ISSUED, line_sources=[extra_lines])
    number: dict[str, str] = dict(conn.execute("SELECT customer_id, invoice_number FROM invoices"
                               " WHERE customer_id IN (%s, %s, %s)",
                               (ZERO, NETS_ONLY, VAT_ONLY)).fetchall())
    assert set(number) == {ZERO, NETS_ONLY, VAT_ONLY}

    def lines_of(customer: str) -> list[tuple[Any, ...]]:
        return conn.execute(
            "SELECT l.line_no, l.account, l.customer_id, l.debit_fen, l.credit_fen"
            " FROM journal_entries e JOIN journal_lines l USING (entry_number)"
            " WHERE e.kind = 'invoice' AND e.source_document = %s ORDER BY l.line_no",
            (number[customer],)).fetchall()

    assert lines_of(ZERO) == []  # nothing to book: no entry, no number taken
    assert lines_of(NETS_ONLY) == [(1, "6010", None, 1000, 0), (2, "6011", None, 0, 1000)]
    assert lines_of(VAT_ONLY) == [(1, "6010", None, 1170, 0), (2, "6011", None, 0, 1000),
                                  (3, "4700", None, 0, 170)]
    seqs = [s for (s,) in conn.execute("SELECT seq FROM journal_entries ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))  # no gap where the zero invoice was


def test_booking_again_books_nothing_and_a_bad_range_writes_nothing(
        conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(closer, "BOOK_IN_SQL_FROM", 1)
    res = closer.close_period(conn, PERIOD, issued_on=ISSUED, line_sources=[extra_lines])
    chart = load_chart()
    last = f"2026-{res.invoices_created:06d}"
    before = booked(conn)
    assert post_invoice_numbers(conn, "2026-000001", last, chart=chart) == 0
    assert booked(conn) == before
    with pytest.raises(LedgerError, match="last_number"):
        post_invoice_numbers(conn, "2026-000001", "2027-000001", chart=chart)
    with pytest.raises(LedgerError, match="first_number"):
        post_invoice_numbers(conn, "2026-1", last, chart=chart)
    conn.rollback()


def test_a_service_without_revenue_account_books_nothing(
        conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    """The invoices are written, then booking refuses the whole chunk with the service's
    name (the close rolls back); nothing of the chunk is in the ledger."""
    doc = json.loads(Path(DEFAULT_CHART).read_text(encoding="utf-8"))
    del doc["posting"]["revenue"]["water"]
    before = booked(conn)
    monkeypatch.setattr(closer, "BOOK_IN_SQL_FROM", 1)
    with pytest.raises(LedgerError, match="'water'"):
        closer.close_period(conn, PERIOD, issued_on=ISSUED, line_sources=[extra_lines],
                            chart=parse_chart(doc))
    conn.rollback()
    assert booked(conn) == before
