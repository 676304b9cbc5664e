"""The fast paths of the close (issue #5) give exactly what the plain paths give: the
consumption summed per cut before the contract join, the calculation in worker processes
written chunk by chunk, the COPY text formatted in bulk, balances of many customers."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from bench.close_100k import PERIOD, seed
from billing import close_chunks, close_inputs, closer, customer_credit
from billing.calculation import InvoiceLine
from billing.close_hooks import CloseContext, ExtraLines, LineSource
from billing.copy_text import copy_rows
from rating.calendar import month_bounds
from stream.pipeline import load_catalog

ISSUED = date(2026, 11, 1)


def seed_varied(conn: psycopg.Connection, customers: int, *, price_change: bool = True) -> None:
    """Bench accounts with a water price change on the 15th (`price_change`), electricity
    contracts ending on the 12th (half of them followed by another tariff from the 13th),
    water contracts from the 20th, waste contracts ending on the 5th, customers whose
    contracts all ended before the month, and overlapping water contracts (held back)."""
    seed(conn, customers)
    if price_change:
        doc = dict(conn.execute("SELECT document FROM tariff_versions"
                                " WHERE tariff_code = 'W-HH'").fetchone()[0])  # type: ignore[index]
        doc["valid_from"] = "2026-10-15"
        doc["components"] = [{**c, "price": "1.40"} if c["kind"] == "energy" else c
                             for c in doc["components"]]
        conn.execute("INSERT INTO tariff_versions (tariff_code, valid_from, service, document)"
                     " VALUES ('W-HH', '2026-10-15', 'water', %s)", (json.dumps(doc),))
    _seed_contract_changes(conn)


def _seed_contract_changes(conn: psycopg.Connection) -> None:
    conn.execute("""
        UPDATE contracts SET valid_to = '2026-10-12'
         WHERE service = 'electricity' AND customer_id::int % 3 = 0;
        INSERT INTO contracts SELECT contract_id || '-2', customer_id, metering_point_id, service,
               'EL-OP', '2026-10-13', NULL
          FROM contracts WHERE service = 'electricity' AND customer_id::int % 6 = 0;
        UPDATE contracts SET valid_from = '2026-10-20'
         WHERE service = 'water' AND customer_id::int % 5 = 0;
        UPDATE contracts SET valid_to = '2026-10-05'
         WHERE service = 'waste' AND customer_id::int % 7 = 0;
        UPDATE contracts SET valid_to = '2026-09-30'
         WHERE customer_id::int % 11 = 0 AND valid_from < '2026-09-30';
        INSERT INTO contracts SELECT contract_id || '-X', customer_id, metering_point_id, service,
               tariff_code, '2026-10-25', NULL
          FROM contracts WHERE service = 'water' AND customer_id::int % 13 = 0;
    """)
    conn.commit()


def written(conn: psycopg.Connection) -> dict[str, Any]:
    """The invoices, lines and VAT rows written, without their creation time."""
    return {
        "invoices": conn.execute(
            "SELECT invoice_number, seq, customer_id, period, issued_on, due_on, net_fen,"
            " vat_fen, total_fen, payment_reference FROM invoices ORDER BY 1").fetchall(),
        "lines": conn.execute("SELECT * FROM invoice_lines ORDER BY 1, 2").fetchall(),
        "vat": conn.execute("SELECT * FROM invoice_vat ORDER BY 1, 2").fetchall(),
    }


def expected(conn: psycopg.Connection, line_sources: Sequence[LineSource] = ()
             ) -> tuple[dict[str, Any], dict[str, str]]:
    """What the close must write, from the serial drafts (`draft_invoices`, the preview's
    path with the plain consumption query), numbered from 1."""
    first, end = month_bounds(PERIOD)
    catalog = closer._CachedCatalog(load_catalog(conn))
    drafts, skipped = closer.draft_invoices(
        CloseContext(conn, PERIOD, first, end, ISSUED, catalog), list(line_sources))
    conn.rollback()
    invoices, lines, vat = [], [], []
    for seq, d in enumerate(drafts, start=1):
        number = f"2026-{seq:06d}"
        invoices.append((number, seq, d.customer_id, d.period, ISSUED, date(2026, 11, 16),
                         d.net_fen, d.vat_fen, d.total_fen,
                         closer.make_payment_reference(2026, seq)))
        lines += [(number, no, ln.service, ln.metering_point_id, ln.component, ln.register,
                   ln.description, ln.quantity_milli, ln.unit, ln.unit_price_micro,
                   ln.amount_fen, ln.vat_rate) for no, ln in enumerate(d.lines, start=1)]
        vat += [(number, v.vat_rate, v.base_fen, v.vat_fen) for v in d.vat]
    return {"invoices": invoices, "lines": lines, "vat": vat}, skipped


def test_whole_month_consumption_equals_the_plain_query(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        seed_varied(conn, 60)
        first, end = month_bounds(PERIOD)
        args = {"period": PERIOD, "first": first, "end": end}
        catalog = closer._CachedCatalog(load_catalog(conn))
        breaks = closer._price_breaks(catalog, closer._load_contracts(conn, args), first, end)
        assert breaks == [first, date(2026, 10, 15)]
        plain = closer._load_consumption(conn, args, breaks)
        fast = closer._load_consumption(conn, args, breaks, whole_month=True)
        assert sum(len(v) for v in plain.values()) > 3 * 60  # split rows are there
        assert {k: sorted(v, key=repr) for k, v in fast.items()} == {
            k: sorted(v, key=repr) for k, v in plain.items()}
        unbilled = closer._scalar(conn, closer._UNBILLED, args)
        assert unbilled > 100  # the days before and after the contracts that end or start
        assert closer._load_month(conn, args, breaks)[1] == unbilled


def test_parallel_close_writes_what_the_serial_drafts_say(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pools = []

    class CountedPool(close_chunks.ProcessPoolExecutor):
        def __init__(self, *a: Any, **kw: Any) -> None:
            pools.append(self)
            super().__init__(*a, **kw)

    with psycopg.connect(db_url) as conn:
        seed_varied(conn, 60)
        monkeypatch.setattr(closer, "WHOLE_MONTH_FROM", 10**9)
        want, want_skipped = expected(conn)  # with the plain consumption query, serially
        monkeypatch.setattr(close_chunks, "ProcessPoolExecutor", CountedPool)
        monkeypatch.setattr(close_chunks, "PARALLEL_FROM", 10)
        # one worker even where an earlier test left a thread running (a full test run)
        monkeypatch.setattr(close_chunks, "_workers", lambda customers: 1)
        monkeypatch.setattr(closer, "WHOLE_MONTH_FROM", 10)
        monkeypatch.setattr(close_chunks, "_CHUNK", 7)
        res = closer.close_period(conn, PERIOD, issued_on=ISSUED, after_write=[])
        assert len(pools) == 1
        assert res.skipped == dict(sorted(want_skipped.items()))
        assert len(want_skipped) == 4  # the overlapping water contracts
        assert res.invoices_created == len(want["invoices"]) > 40
        assert written(conn) == want
        assert res.total_fen == sum(r[8] for r in want["invoices"])
        # booked chunk by chunk: one entry per invoice, numbered in invoice order
        entries = conn.execute("SELECT source_document FROM journal_entries"
                               " ORDER BY entry_number").fetchall()
        assert [e[0] for e in entries] == [r[0] for r in want["invoices"]]
        first, end = month_bounds(PERIOD)
        assert res.unbilled_days == closer._scalar(
            conn, closer._UNBILLED, {"first": first, "end": end}) > 100


def _adjustment(amount_fen: int) -> InvoiceLine:
    return InvoiceLine("electricity", "MM-X", "adjustment", None, "Korekcija", 1000, "month",
                       amount_fen * 10_000, amount_fen, Decimal("17"))


def test_workers_started_before_the_line_sources_give_the_serial_result(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers compute every customer with a contract before the line sources and the
    overlap check have spoken: the close still leaves out the customers held back, adds
    the extra lines, and numbers the customers with extra lines only in customer order
    (before the first, between others, after the last chunk)."""
    with psycopg.connect(db_url) as conn:
        seed_varied(conn, 60)
        only = ["000001", "1000105", "1000305", "1000355", "9999999"]  # no contract
        conn.execute("INSERT INTO customers (customer_id, name, kind)"
                     " SELECT c, 'Samo korekcija ' || c, 'household' FROM unnest(%s::text[]) c",
                     (only,))
        conn.commit()

        def source(ctx: CloseContext, customers: Sequence[str]) -> ExtraLines:
            lines = {c: [_adjustment(100 + i)] for i, c in enumerate(customers) if i % 4 == 1}
            lines.update({c: [_adjustment(250 + i)] for i, c in enumerate(only)})
            held = {c: "held by the test" for i, c in enumerate(customers) if i % 9 == 4}
            return ExtraLines(lines=lines, skipped=held)

        monkeypatch.setattr(closer, "WHOLE_MONTH_FROM", 10**9)
        want, want_skipped = expected(conn, [source])
        monkeypatch.setattr(close_chunks, "_workers", lambda customers: 1)
        monkeypatch.setattr(close_chunks, "_CHUNK", 7)
        res = closer.close_period(conn, PERIOD, issued_on=ISSUED, line_sources=[source],
                                  after_write=[])
        assert res.skipped == dict(sorted(want_skipped.items()))
        assert "held by the test" in res.skipped.values()
        got = written(conn)
        assert got == want
        customers = [r[2] for r in got["invoices"]]
        assert customers == sorted(customers) and set(only) <= set(customers)


def test_month_totals_read_by_the_close_itself_when_a_second_connection_fails(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with psycopg.connect(db_url) as conn:
        seed_varied(conn, 40, price_change=False)
        monkeypatch.setattr(closer, "WHOLE_MONTH_FROM", 10**9)
        want, want_skipped = expected(conn)
        tried = []

        def refused(*_a: Any, **_kw: Any) -> psycopg.Connection:
            tried.append(1)
            raise psycopg.OperationalError("too many connections (test)")

        monkeypatch.setattr(closer, "WHOLE_MONTH_FROM", 10)  # the month-totals path
        monkeypatch.setattr(close_inputs.psycopg, "connect", refused)
        res = closer.close_period(conn, PERIOD, issued_on=ISSUED, after_write=[])
        assert tried == [1]
        assert res.skipped == dict(sorted(want_skipped.items()))
        assert written(conn) == want


def test_copy_text_escapes_separators(db_url: str) -> None:
    line = InvoiceLine("waste", "MM\\1", "fee", None, "Odvoz\tsmeća\nzgrada \\ ulaz\r",
                       1000, "month", 10_000, 1, Decimal("17.00"))
    rendered = closer._render(closer.InvoiceDraft("100001", PERIOD, [line], [], 1, 0, 1))
    with psycopg.connect(db_url) as conn:
        conn.execute("CREATE TEMP TABLE t (invoice_number text, line_no int, service text,"
                     " metering_point_id text, component text, register text, description text,"
                     " quantity_milli bigint, unit text, unit_price_micro bigint,"
                     " amount_fen bigint, vat_rate numeric(5, 2))")
        with conn.cursor() as cur:
            copy_rows(cur, "COPY t FROM STDIN", ["N\t" + rendered.lines])
        row = conn.execute("SELECT * FROM t").fetchone()
    assert row == ("N", 1, "waste", "MM\\1", "fee", None, "Odvoz\tsmeća\nzgrada \\ ulaz\r",
                   1000, "month", 10_000, 1, Decimal("17.00"))


def test_balances_of_many_customers_equal_the_per_customer_query(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with psycopg.connect(db_url) as conn:
        seed_varied(conn, 30)
        closer.close_period(conn, PERIOD, issued_on=ISSUED, after_write=[])
        conn.execute("""
            INSERT INTO payments (payment_id, customer_id, paid_on, amount_fen, channel)
            SELECT 'P' || customer_id, customer_id, '2026-11-05',
                   5000 + customer_id::int % 7 * 1000, 'cash'
            FROM customers WHERE customer_id::int % 2 = 0""")
        ids = [r[0] for r in conn.execute("SELECT customer_id FROM customers")] + ["999999"]
        few = customer_credit.balances(conn, ids)
        monkeypatch.setattr(customer_credit, "_MANY", 1)
        many = customer_credit.balances(conn, ids)
        assert many == few
        assert len(few) == 30 and len({b for b, _ in few.values()}) > 5


def test_no_workers_for_a_small_close_or_beside_other_threads() -> None:
    assert closer._workers(closer.PARALLEL_FROM - 1) == 0
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert closer._workers(10 * closer.PARALLEL_FROM) == 0  # forking could deadlock
    finally:
        stop.set()
        thread.join()


def _seed_unbilled_point(conn: psycopg.Connection) -> None:
    """A metering point with a month of consumption and no contract at all."""
    conn.execute("""
        INSERT INTO metering_points (metering_point_id, address) VALUES ('MM-X', 'Ulica X');
        INSERT INTO daily_consumption
        SELECT 'MM-X', 'water', '8.0', day::date, 100 + extract(day FROM day)::int, 0, 1
        FROM generate_series('2026-10-01'::date, '2026-10-31', '1 day') AS day;
    """)
    conn.commit()


def _close_twice(conn: psycopg.Connection) -> dict[str, Any]:
    """Close October, then a late read into October (after the close: billed as an
    adjustment), then close November; everything either close wrote, rolled back."""
    conn.execute("SELECT 1")  # an outer transaction: the closes' own are savepoints
    try:
        res_oct = closer.close_period(conn, PERIOD, issued_on=ISSUED)
        conn.execute("""
            INSERT INTO daily_consumption AS d VALUES
                ('MM-100002', 'electricity', '1.8.1', '2026-10-31', 4321, 0, 1)
            ON CONFLICT (metering_point_id, service, register, local_day) DO UPDATE
            SET quantity_milli = d.quantity_milli + excluded.quantity_milli""")
        res_nov = closer.close_period(conn, "2026-11", issued_on=date(2026, 12, 1))
        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the deferred checks, before rollback
        return {
            **written(conn), "results": (res_oct, res_nov),
            "entries": conn.execute("SELECT entry_number, entry_date, kind, source_document,"
                                    " description FROM journal_entries ORDER BY 1").fetchall(),
            "journal": conn.execute("SELECT * FROM journal_lines ORDER BY 1, 2").fetchall(),
            "adjustments": conn.execute(
                "SELECT customer_id, billed_in, target_period, service, metering_point_id,"
                " component, register, quantity_milli, amount_fen, invoice_number"
                " FROM rebill_adjustments ORDER BY 1, 3, 4, 6, 7").fetchall(),
            "monthly": conn.execute("SELECT count(*) FROM monthly_consumption").fetchone(),
        }
    finally:
        conn.rollback()


@pytest.mark.parametrize("price_change", [False, True])
def test_close_from_month_totals_writes_what_the_day_rows_give(
        db_url: str, monkeypatch: pytest.MonkeyPatch, price_change: bool) -> None:
    """Whole-month contracts, contracts ending and starting inside the month, overlapping
    contracts, a metering point without a contract, a late read after the close; with and
    without a price change inside the month (then the per-day query is taken whole)."""
    calls: list[str] = []
    old_month = close_inputs._load_month

    def spied(*a: Any, **kw: Any) -> Any:
        calls.append("per-day")
        return old_month(*a, **kw)

    with psycopg.connect(db_url) as conn:
        seed_varied(conn, 60, price_change=price_change)
        _seed_unbilled_point(conn)
        monkeypatch.setattr(closer, "WHOLE_MONTH_FROM", 1)
        monkeypatch.setattr(close_inputs, "OPEN_PAIRS_MAX", 1.0)  # the mixed path, not whole
        monkeypatch.setattr(close_inputs, "_load_month", spied)
        new = _close_twice(conn)
        assert calls == (["per-day"] if price_change else [])
        monkeypatch.setattr(closer, "_load_month_totals",  # the path before the totals
                            lambda conn, args, breaks, **_: old_month(conn, args, breaks))
        old = _close_twice(conn)
    assert new == old
    res_oct, res_nov = new["results"]
    assert res_oct.invoices_created > 40 and len(res_oct.skipped) == 4
    assert res_oct.unbilled_days > 31  # MM-X and the days around the contracts
    assert [a for a in new["adjustments"] if a[0] == "100002" and a[6] == "1.8.1"]
    assert res_nov.invoices_created > 40


def test_month_totals_with_few_open_pairs_and_the_fallback(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with psycopg.connect(db_url) as conn:
        seed_varied(conn, 60, price_change=False)
        _seed_unbilled_point(conn)
        first, end = month_bounds(PERIOD)
        args = {"period": PERIOD, "first": first, "end": end}
        breaks = [first]
        plain = closer._load_consumption(conn, args, breaks)
        whole, unbilled = closer._load_month(conn, args, breaks)
        for share in (1.0, 0.0):  # per-day path for the open pairs only; all per-day
            monkeypatch.setattr(close_inputs, "OPEN_PAIRS_MAX", share)
            fast, fast_unbilled = close_inputs._load_month_totals(conn, args, breaks)
            assert {k: sorted(v, key=repr) for k, v in fast.items()} == {
                k: sorted(v, key=repr) for k, v in plain.items()} == {
                k: sorted(v, key=repr) for k, v in whole.items()}
            assert fast_unbilled == unbilled > 31
        # totals only: every pair covered by one contract all month, none unbilled
        conn.execute("DELETE FROM contracts WHERE contract_id LIKE '%%-%%-%%'"
                     " OR valid_to IS NOT NULL OR valid_from > %s", (first,))
        conn.execute("DELETE FROM daily_consumption d WHERE NOT EXISTS (SELECT 1"
                     " FROM contracts c WHERE c.metering_point_id = d.metering_point_id"
                     " AND c.service = d.service)")
        fast, fast_unbilled = close_inputs._load_month_totals(conn, args, breaks)
        assert fast_unbilled == 0 == closer._load_month(conn, args, breaks)[1]
        plain = closer._load_consumption(conn, args, breaks)
        assert {k: sorted(v, key=repr) for k, v in fast.items()} == {
            k: sorted(v, key=repr) for k, v in plain.items()}
        rows = [r for v in fast.values() for r in v]  # one row per register, no split
        assert len({(r.metering_point_id, r.service, r.register) for r in rows}) == len(rows) > 60
        assert {r.local_day for r in rows} == {first}
        conn.rollback()
