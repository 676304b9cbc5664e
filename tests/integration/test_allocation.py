"""Issue #5 on a real PostgreSQL: a payment whose reference names an invoice pays that
invoice, on every read side (portal status, aging, interest, collections); without a
reference the oldest invoice is paid first, as before.

Customer 200001 (waste, business) has an older invoice (period 2026-02, issued 1 March,
due 16 March) and a newer one (2026-03, issued 1 April, due 16 April); both are open.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg
import pytest

from api.routes.collections import interest_statement
from billing.accounts import invoice_states
from billing.aging import aging_report, load_items
from billing.closer import close_period
from billing.collections_run import run_collections
from billing.interest import overdue
from billing.payment_corrections import reverse_payment
from billing.payments import record_payments
from tests.integration.test_close import MARCH_READS, push, seed

D = date
WHO = "200001"
AS_OF = D(2026, 5, 1)  # older 46 days past due, newer 15


@pytest.fixture
def conn(db_url: str):
    with psycopg.connect(db_url, autocommit=True) as c:
        seed(c)
        push(c, MARCH_READS)
        for period, issued in (("2026-02", D(2026, 3, 1)), ("2026-03", D(2026, 4, 1))):
            with c.transaction():  # no interest line: the totals stay the fee's
                close_period(c, period, issued_on=issued, line_sources=[])
        yield c


def invoices(conn: psycopg.Connection) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    older, newer = conn.execute(
        "SELECT invoice_number, total_fen, payment_reference, due_on FROM invoices"
        " WHERE customer_id = %s ORDER BY period", (WHO,)).fetchall()
    assert older[3] == D(2026, 3, 16) and newer[3] == D(2026, 4, 16)
    return tuple(older), tuple(newer)


def pay(conn: psycopg.Connection, pid: str, on: str, fen: int, reference: str | None) -> None:
    payment = {"payment_id": pid, "paid_on": on, "amount": f"{fen // 100}.{fen % 100:02d}"}
    payment |= {"reference": reference} if reference else {"customer_id": WHO}
    with conn.transaction():
        [out] = record_payments(conn, [payment], channel="bank")
    assert out.status == "accepted" and out.customer_id == WHO, out


def states(conn: psycopg.Connection) -> dict[str, tuple[str, int]]:
    return {s.number: (s.status, s.covered_fen) for s in invoice_states(conn, WHO, AS_OF)}


def interest(total_fen: int, days: int) -> int:
    exact = Decimal(total_fen) * Decimal("0.0003") * days
    return int(exact.quantize(Decimal(1), ROUND_HALF_UP))


def test_paying_the_newer_invoice_by_its_reference_leaves_the_older_overdue(conn) -> None:
    (old_no, old_total, _, _), (new_no, new_total, new_ref, _) = invoices(conn)
    pay(conn, "P1", "2026-04-10", new_total, new_ref)
    assert states(conn) == {new_no: ("paid", new_total), old_no: ("overdue", 0)}
    [row] = aging_report(conn, AS_OF, WHO).rows
    assert row.buckets["31-60"] == old_total and row.total_fen == old_total
    assert row.credit_fen == 0
    statement = interest_statement(conn, WHO, AS_OF)
    # interest on the older invoice only: 17 March … 1 May = 46 days
    assert [(i["number"], i["days"]) for i in statement["invoices"]] == [(old_no, 46)]
    assert statement["accrued"] == f"{interest(old_total, 46) / 100:.2f}"
    items = load_items(conn, AS_OF, WHO)[WHO]
    assert overdue(items.invoices, items.credits, AS_OF) == (old_total, 46)
    run_collections(conn, AS_OF)
    step = conn.execute("SELECT step, overdue_fen, days_overdue, detail FROM collection_steps"
                        " WHERE customer_id = %s", (WHO,)).fetchone()
    assert step is not None and step[:3] == ("reminder", old_total, 46)
    assert [i["number"] for i in step[3]["invoices"]] == [old_no]


def test_the_same_payment_without_a_reference_pays_the_oldest_first(conn) -> None:
    (old_no, old_total, _, _), (new_no, new_total, _, _) = invoices(conn)
    pay(conn, "P1", "2026-04-10", new_total, None)
    covered_old = min(new_total, old_total)
    assert states(conn)[old_no][1] == covered_old
    assert states(conn)[new_no] == ("overdue", new_total - covered_old)
    items = load_items(conn, AS_OF, WHO)[WHO]
    # what is open is the older invoice's amount, the newer partly: either way old_total
    assert overdue(items.invoices, items.credits, AS_OF) == (
        old_total, 46 if covered_old < old_total else 15)


def test_the_excess_of_a_targeted_payment_covers_the_oldest_other(conn) -> None:
    (old_no, old_total, _, _), (new_no, new_total, new_ref, _) = invoices(conn)
    assert old_total > 1000
    pay(conn, "P1", "2026-04-10", new_total + 1000, new_ref)
    assert states(conn) == {new_no: ("paid", new_total), old_no: ("overdue", 1000)}
    [row] = aging_report(conn, AS_OF, WHO).rows
    assert (row.buckets["31-60"], row.total_fen) == (old_total - 1000, old_total - 1000)
    # a targeted payment larger than both: the rest is the customer's credit
    pay(conn, "P2", "2026-04-11", old_total, new_ref)
    assert states(conn) == {new_no: ("paid", new_total), old_no: ("paid", old_total)}
    [row] = aging_report(conn, AS_OF, WHO).rows
    assert (row.total_fen, row.credit_fen) == (0, 1000)


def test_a_reversal_of_a_targeted_payment_reopens_that_invoice(conn) -> None:
    (old_no, old_total, _, _), (new_no, new_total, new_ref, _) = invoices(conn)
    pay(conn, "P1", "2026-04-10", new_total, new_ref)
    pay(conn, "P2", "2026-04-12", 500, None)  # untargeted: the older invoice
    with conn.transaction():
        reverse_payment(conn, "P1", reason="pogrešan kupac", on=D(2026, 4, 20),
                        operator="test")
    assert states(conn) == {new_no: ("overdue", 0), old_no: ("overdue", 500)}
    statement = interest_statement(conn, WHO, AS_OF)
    days = {i["number"]: i["days"] for i in statement["invoices"]}
    assert days == {old_no: 46, new_no: 11}  # newer open again from 21 April to 1 May
    [row] = aging_report(conn, AS_OF, WHO).rows
    assert row.total_fen == old_total + new_total - 500
    # as of the day before the reversal the newer invoice was still paid
    [row] = aging_report(conn, D(2026, 4, 19), WHO).rows
    assert row.total_fen == old_total - 500


def test_a_reference_written_with_spaces_and_dashes_names_its_invoice(conn) -> None:
    """Banks print the reference in groups; the target is the invoice all the same."""
    (old_no, _, _, _), (new_no, new_total, new_ref, _) = invoices(conn)
    pay(conn, "P1", "2026-04-10", new_total, f"{new_ref[:2]} {new_ref[2:6]}-{new_ref[6:]}")
    assert states(conn) == {new_no: ("paid", new_total), old_no: ("overdue", 0)}
