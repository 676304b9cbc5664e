"""Late-payment interest on the next invoice, on a real PostgreSQL: the line "Zatezna
kamata" (VAT 0, booked to 6700) carries the interest accrued since it was last charged,
never twice, minus what collections letters charged; the policy switches it off."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.closer import close_period
from billing.interest import Credit, Debt, RatePeriod, total_interest_fen
from billing.interest_charges import accrued_fen, set_policy
from billing.ledger import LineDraft, load_chart
from billing.legal import post_charge
from billing.payments import record_payments
from tests.integration.test_close import seed

# 200001 (business, waste per m²) is invoiced 25.01 KM a month: issued on the 1st, due on
# the 16th. The March invoice is due 16 April.
APRIL_1, MAY_1, JUNE_1 = date(2026, 4, 1), date(2026, 5, 1), date(2026, 6, 1)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url) as c:
        seed(c)
        close_period(c, "2026-03", issued_on=APRIL_1)
        c.commit()
        yield c


def interest_line(conn: psycopg.Connection, period: str, customer: str = "200001"
                  ) -> tuple[object, ...] | None:
    return conn.execute(
        "SELECT l.description, l.amount_fen, l.vat_rate, l.component FROM invoice_lines l"
        " JOIN invoices i USING (invoice_number) WHERE i.customer_id = %s AND i.period = %s"
        " AND l.service = 'interest'", (customer, period)).fetchone()


def test_interest_is_charged_once_on_the_next_invoices(conn: psycopg.Connection) -> None:
    close_period(conn, "2026-04", issued_on=MAY_1)
    conn.commit()
    # 17–30 April: 14 days × 25.01 KM × 0.03 % = 0.105042 KM → 0.11 KM
    assert interest_line(conn, "2026-04") == (
        "Zatezna kamata do 30.04.2026", 11, Decimal("0.00"), "late_interest")
    head = conn.execute("SELECT invoice_number, net_fen, vat_fen, total_fen FROM invoices"
                        " WHERE customer_id = '200001' AND period = '2026-04'").fetchone()
    assert head is not None
    number, net, vat, total = head
    assert (net, total) == (2138 + 11, 2501 + 11) and vat == 363  # no VAT on interest
    assert conn.execute("SELECT through_day, amount_fen FROM interest_charges"
                        " WHERE invoice_number = %s", (number,)).fetchone() == (
        date(2026, 4, 30), 11)
    assert conn.execute(
        "SELECT l.credit_fen FROM journal_lines l JOIN journal_entries e USING (entry_number)"
        " WHERE e.source_document = %s AND l.account = '6700'", (number,)).fetchone() == (11,)
    # March paid on 10 May; April (principal 25.01 KM, its interest line excluded) is open
    with conn.transaction():
        record_payments(conn, [{"payment_id": "P1", "paid_on": "2026-05-10", "amount": "25.01",
                                "customer_id": "200001"}], channel="bank")
    close_period(conn, "2026-05", issued_on=JUNE_1)
    conn.commit()
    # accrued: March 17 Apr–10 May 24 days × 0.7503 = 18.0072 → 0.18; April 17–31 May
    # 15 days × 0.7503 = 11.2545 → 0.11; total 0.29 less 0.11 charged in April = 0.18 KM
    line = interest_line(conn, "2026-05")
    assert line is not None and line[:2] == ("Zatezna kamata do 31.05.2026", 18)
    # closing again charges nothing again
    assert close_period(conn, "2026-05", issued_on=JUNE_1).invoices_created == 0
    assert conn.execute("SELECT count(*), sum(amount_fen) FROM interest_charges"
                        " WHERE customer_id = '200001'").fetchone() == (2, 29)


def test_interest_follows_the_invoice_a_payment_names(conn: psycopg.Connection) -> None:
    """April's invoice paid in full by its reference on 10 May leaves March open: March
    bears interest to the end of May (FIFO would have paid March and charged April)."""
    close_period(conn, "2026-04", issued_on=MAY_1)
    conn.commit()
    april = conn.execute("SELECT total_fen, payment_reference FROM invoices"
                         " WHERE customer_id = '200001' AND period = '2026-04'").fetchone()
    assert april is not None and april[0] == 2512  # 25.01 + 0.11 interest for March
    with conn.transaction():
        record_payments(conn, [{"payment_id": "P1", "paid_on": "2026-05-10", "amount": "25.12",
                                "reference": april[1]}], channel="bank")
    close_period(conn, "2026-05", issued_on=JUNE_1)
    conn.commit()
    # April's principal 25.01 is paid; the 0.11 beyond it covers March from 11 May.
    # March: 17 Apr–10 May 24 days × 0.7503 + 11–31 May 21 days × 0.7470 = 33.6942 → 0.34;
    # April: nothing (paid before its due date). 0.34 less 0.11 charged in April = 0.23 KM
    # (FIFO: March paid, April open 17–31 May → 0.18 + 0.11 − 0.11 = 0.18 KM).
    line = interest_line(conn, "2026-05")
    assert line is not None and line[:2] == ("Zatezna kamata do 31.05.2026", 23)


def test_interest_charged_by_collections_is_not_charged_again(conn: psycopg.Connection
                                                               ) -> None:
    chart = load_chart()
    post_charge(conn, charge_id="KAM-T1", customer_id="200001", kind="interest",
                on=date(2026, 4, 25), amount_fen=5, chart=chart, description="Zatezna kamata",
                lines=(LineDraft("2110", 5, 0, "200001"), LineDraft("6700", 0, 5)))
    close_period(conn, "2026-04", issued_on=MAY_1)
    conn.commit()
    line = interest_line(conn, "2026-04")
    assert line is not None and line[1] == 11 - 5


def test_policy_switches_interest_off_or_waits_for_a_minimum(conn: psycopg.Connection) -> None:
    set_policy(conn, on_invoice=False)
    close_period(conn, "2026-04", issued_on=MAY_1)
    conn.commit()
    assert interest_line(conn, "2026-04") is None
    set_policy(conn, on_invoice=True, min_charge_fen=100)
    close_period(conn, "2026-05", issued_on=JUNE_1)
    conn.commit()
    assert interest_line(conn, "2026-05") is None  # 0.11 + 0.23 … still below 1.00 KM
    set_policy(conn, on_invoice=True, min_charge_fen=0)
    close_period(conn, "2026-06", issued_on=date(2026, 7, 1))
    conn.commit()
    # nothing was lost while it waited: everything accrued up to 30 June at once
    line = interest_line(conn, "2026-06")
    assert line is not None and int(str(line[1])) > 11 + 23
    with pytest.raises(ValueError, match="min_charge_fen"):
        set_policy(conn, on_invoice=True, min_charge_fen=-1)


# ---- the fast accrual equals billing.interest's (pure) ----------------------------------

_DAY = st.dates(min_value=date(2025, 1, 1), max_value=date(2025, 12, 31))


@settings(max_examples=300, deadline=None)
@given(debts=st.lists(st.tuples(_DAY, st.integers(-500, 50_000)), max_size=8),
       credits=st.lists(st.tuples(_DAY, st.integers(-20_000, 60_000)), max_size=10),
       as_of=_DAY,
       rates=st.lists(st.tuples(_DAY, st.decimals("0", "0.2", places=4)), min_size=1,
                      max_size=3, unique_by=lambda r: r[0]))
def test_fast_accrual_equals_the_reference(debts: list[tuple[date, int]],
                                           credits: list[tuple[date, int]], as_of: date,
                                           rates: list[tuple[date, Decimal]]) -> None:
    periods = [RatePeriod(date(2000, 1, 1), Decimal("0.03")),
               *(RatePeriod(d, r) for d, r in sorted(rates))]
    ds = [Debt(f"I{i}", due, total) for i, (due, total) in enumerate(debts)]
    cs = [Credit(on, amount) for on, amount in credits]
    assert accrued_fen(ds, cs, as_of, periods) == total_interest_fen(ds, cs, as_of, periods)
