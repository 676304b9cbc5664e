"""The close's extension points: line sources add lines (totals and VAT made anew, and a
customer without a contract in the period still gets an invoice); after-write steps see
the written invoices inside the close's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import psycopg

from billing.calculation import InvoiceLine
from billing.close_hooks import CloseContext, ExtraLines, WrittenInvoice
from billing.closer import close_period
from tests.integration.test_close import APRIL_1, MARCH_READS, push, seed


def _line(amount_fen: int) -> InvoiceLine:
    return InvoiceLine("electricity", "MP1", "adjustment", None, "Korekcija", 1000, "month",
                       amount_fen * 10_000, amount_fen, Decimal("17"))


def test_extra_lines_change_totals_and_after_write_sees_invoices(db_url: str) -> None:
    with psycopg.connect(db_url) as c:
        seed(c)
        c.execute("INSERT INTO customers (customer_id, name, kind)"
                  " VALUES ('100009', 'Moved Out', 'household')")
        c.commit()
        push(c, MARCH_READS)
        written: list[WrittenInvoice] = []
        held = {"200001": "held for a test"}

        def source(ctx: CloseContext, customers: Sequence[str]) -> ExtraLines:
            assert ctx.period == "2026-03" and "100009" not in customers  # no contract
            assert ("100001" in customers) == (not written)  # invoiced ones are not offered
            return ExtraLines(lines={"100001": [_line(1000)], "100009": [_line(2000)]},
                              skipped=dict(held))

        def after(ctx: CloseContext, invoices: Sequence[WrittenInvoice]) -> None:
            n = ctx.conn.execute("SELECT count(*) FROM invoices").fetchone()
            assert n is not None and n[0] == len(written) + len(invoices)
            written.extend(invoices)

        res = close_period(c, "2026-03", issued_on=APRIL_1, line_sources=[source],
                           after_write=[after])
        assert res.skipped == held
        assert sorted(w.customer_id for w in written) == ["100001", "100002", "100009"]
        row = c.execute("SELECT net_fen, vat_fen, total_fen FROM invoices"
                        " WHERE customer_id = '100009'").fetchone()
        assert row == (2000, 340, 2340)
        lines = c.execute("SELECT l.component, l.amount_fen FROM invoice_lines l JOIN invoices i"
                          " USING (invoice_number) WHERE i.customer_id = '100001'"
                          " ORDER BY l.line_no").fetchall()
        assert lines[-1] == ("adjustment", 1000)
        net = c.execute("SELECT net_fen FROM invoices WHERE customer_id = '100001'").fetchone()
        assert net is not None and net[0] == sum(a for _, a in lines)
        # the next run: nobody invoiced twice, the held customer comes in once released
        held.clear()
        again = close_period(c, "2026-03", issued_on=APRIL_1, line_sources=[source],
                             after_write=[after])
        assert again.invoices_created == 1
        assert [w.customer_id for w in written[3:]] == ["200001"]
