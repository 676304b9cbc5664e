"""Recording payments on a real PostgreSQL: matching, idempotence, bad input, balance."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from billing import BillingError
from billing.closer import close_period
from billing.payments import Payment, balance_fen, record_checked, record_payments
from billing.reference import make_payment_reference
from tests.integration.test_close import MARCH_READS, push, seed

# After the March close (see test_close.py): 2026-000001 is 100001's (81.49 KM),
# 2026-000002 is 100002's (4.62 KM), 2026-000003 is 200001's (25.01 KM).
REF_1 = make_payment_reference(2026, 1)  # '2600000126'
REF_2 = make_payment_reference(2026, 2)


@pytest.fixture
def conn(db_url: str):
    with psycopg.connect(db_url) as c:
        seed(c)
        push(c, MARCH_READS)  # figures without estimates (billing.estimation, see test_close)
        close_period(c, "2026-03", issued_on=date(2026, 4, 1), line_sources=[])
        c.commit()
        yield c


def pay(payment_id: str, amount: Any, **extra: Any) -> dict[str, Any]:
    return {"payment_id": payment_id, "paid_on": "2026-04-10", "amount": amount, **extra}


def record(conn: psycopg.Connection, payments: list[Any]) -> list[tuple[str, str | None]]:
    with conn.transaction():
        outcomes = record_payments(conn, payments, channel="bank")
    return [(o.status, o.reason) for o in outcomes]


def test_matched_by_reference_and_balance(conn: psycopg.Connection) -> None:
    assert balance_fen(conn, "100001") == 8149
    with conn.transaction():
        out = record_payments(conn, [pay("UPL-1", "50.00", reference="26 000001 26")],
                              channel="posta")
    assert [(o.status, o.customer_id, o.invoice_number) for o in out] == [
        ("accepted", "100001", "2026-000001")]
    assert balance_fen(conn, "100001") == 8149 - 5000
    row = conn.execute("SELECT customer_id, paid_on, amount_fen, reference, channel"
                       " FROM payments").fetchone()
    assert row == ("100001", date(2026, 4, 10), 5000, REF_1, "posta")  # reference normalized
    record(conn, [pay("UPL-2", "31.49", customer_id="100001")])
    assert balance_fen(conn, "100001") == 0
    record(conn, [pay("UPL-3", "10", customer_id="100001")])
    assert balance_fen(conn, "100001") == -1000  # paid in advance
    assert balance_fen(conn, "200001") == 2501


def test_matching_rules(conn: psycopg.Connection) -> None:
    typo = REF_1[:3] + ("1" if REF_1[3] != "1" else "2") + REF_1[4:]
    unused = make_payment_reference(2026, 999)
    results = record(conn, [
        pay("P1", "1.00", reference=typo),                         # typo, nobody else
        pay("P2", "1.00", reference=typo, customer_id="100002"),   # typo, customer given
        pay("P3", "1.00", reference=unused),                       # valid but no invoice
        pay("P4", "1.00", reference=REF_1, customer_id="100002"),  # reference of another
        pay("P5", "1.00", reference=REF_2, customer_id="100002"),  # both agree
        pay("P6", "1.00", customer_id="999999"),                   # unknown customer
        pay("P7", "1.00"),                                         # no way to match
        pay("P8", "1.00", reference=unused, customer_id="200001"),
    ])
    assert results[0] == ("rejected", f"reference: wrong check digits in '{typo}' (typo?)")
    assert results[1] == ("accepted", None)
    assert results[2] == ("rejected", f"reference: no invoice carries reference '{unused}'")
    assert results[3] == ("rejected", f"reference {REF_1} is invoice 2026-000001 of customer"
                                      " 100001, not of customer_id 100002")
    assert results[4] == ("accepted", None)
    assert results[5] == ("rejected", "customer_id: unknown customer 999999")
    assert results[6] == ("rejected", "customer_id or reference: one is required")
    assert results[7] == ("accepted", None)
    assert conn.execute("SELECT payment_id, customer_id FROM payments ORDER BY 1").fetchall() == [
        ("P2", "100002"), ("P5", "100002"), ("P8", "200001")]


def test_idempotent_on_payment_id(conn: psycopg.Connection) -> None:
    first = [pay("BBI-77", "20.00", reference=REF_1), pay("BBI-78", "5.00", customer_id="100002")]
    assert record(conn, first) == [("accepted", None)] * 2
    snapshot = conn.execute("SELECT * FROM payments ORDER BY 1").fetchall()
    assert record(conn, first) == [("duplicate", None)] * 2
    # the same transaction id with a different amount, customer or date is never posted
    again = record(conn, [
        pay("BBI-77", "20.01", reference=REF_1),
        pay("BBI-77", "20.00", customer_id="100002"),
        {**pay("BBI-77", "20.00", reference=REF_1), "paid_on": "2026-04-11"},
        pay("BBI-77", "20.00", customer_id="100001"),  # same customer via the code: duplicate
    ])
    why = "conflicts with recorded payment BBI-77 (customer 100001, 20.00 KM on 2026-04-10)"
    assert again == [("rejected", why)] * 3 + [("duplicate", None)]
    assert conn.execute("SELECT * FROM payments ORDER BY 1").fetchall() == snapshot
    # twice inside one batch: the second is a duplicate or a conflict of the first
    assert record(conn, [pay("BBI-90", "1.00", customer_id="100002"),
                         pay("BBI-90", "1.00", customer_id="100002"),
                         pay("BBI-90", "2.00", customer_id="100002")]) == [
        ("accepted", None), ("duplicate", None),
        ("rejected", "conflicts with recorded payment BBI-90 (customer 100002, 1.00 KM on"
                     " 2026-04-10)")]
    assert balance_fen(conn, "100002") == 462 - 500 - 100


def test_bad_input_is_named_and_good_payments_kept(conn: psycopg.Connection) -> None:
    batch: list[Any] = [
        pay("OK-1", "12.50", customer_id="100002"),
        {"paid_on": "2026-04-10", "amount": "1.00", "customer_id": "100002"},
        pay("  ", "1.00", customer_id="100002"),
        {**pay("B-3", "1.00", customer_id="100002"), "paid_on": "2026-02-30"},
        {**pay("B-4", "1.00", customer_id="100002"), "paid_on": "10.04.2026"},
        pay("B-5", "0.00", customer_id="100002"),
        pay("B-6", "-5.00", customer_id="100002"),
        pay("B-7", "12.345", customer_id="100002"),
        pay("B-8", "45,20", customer_id="100002"),
        pay("B-9", 12.5, customer_id="100002"),
        pay("B-10", "1.00", customer_id="12ab"),
        pay("B-11", "1e3", customer_id="100002"),
        pay("B-12", "1.00", reference=2600000126),
        "not an object",
        pay("OK-2", Decimal("3.10"), customer_id="200001"),
        pay("OK-3", 7, customer_id="200001"),
    ]
    results = record(conn, batch)
    assert [s for s, _ in results] == ["accepted"] + ["rejected"] * 13 + ["accepted"] * 2
    reasons = [r or "" for _, r in results[1:14]]
    assert reasons[0].startswith("payment_id: is required")
    assert reasons[1].startswith("payment_id: is required")
    assert reasons[2] == "paid_on: must be a date YYYY-MM-DD, got '2026-02-30'"
    assert reasons[3] == "paid_on: must be a date YYYY-MM-DD, got '10.04.2026'"
    assert reasons[4] == "amount: must be greater than zero, got '0.00'"
    assert reasons[5] == "amount: must be greater than zero, got '-5.00'"
    assert reasons[6] == "amount: amount '12.345' has more than 2 decimals"
    assert reasons[7].startswith("amount: must be a decimal string") and "'45,20'" in reasons[7]
    assert reasons[8].startswith("amount: must be a decimal string") and "12.5" in reasons[8]
    assert reasons[9] == "customer_id: must be 6–10 digits, got '12ab'"
    assert reasons[10].startswith("amount: must be a decimal string")
    assert reasons[11] == "reference: must be text of at most 100 characters"
    assert reasons[12] == "payment: must be an object"
    rows = conn.execute("SELECT payment_id, amount_fen FROM payments ORDER BY 1").fetchall()
    assert rows == [("OK-1", 1250), ("OK-2", 310), ("OK-3", 700)]


def test_nothing_is_written_outside_the_callers_transaction(conn: psycopg.Connection) -> None:
    with pytest.raises(RuntimeError), conn.transaction():
        record_payments(conn, [pay("R-1", "1.00", customer_id="100002")], channel="bank")
        raise RuntimeError("the caller fails after recording")
    assert conn.execute("SELECT count(*) FROM payments").fetchone() == (0,)


def test_channel_and_unknown_balance(conn: psycopg.Connection) -> None:
    with pytest.raises(BillingError, match="channel"):
        record_payments(conn, [], channel=" ")
    with pytest.raises(BillingError, match="unknown customer '555555'"):
        balance_fen(conn, "555555")
    assert record(conn, []) == []


def test_concurrent_recording_of_the_same_payment(conn: psycopg.Connection, db_url: str) -> None:
    """Two importers post the same bank statement at once: the one that waits on the other's
    uncommitted row reports duplicate (or conflict), and nothing is posted twice."""
    import threading

    other_result: list[Any] = []
    with psycopg.connect(db_url) as other:
        with other.transaction():
            record_payments(other, [pay("C-1", "4.00", customer_id="100002"),
                                    pay("C-2", "4.00", customer_id="100002")], channel="bank")

            def second() -> None:
                with conn.transaction():
                    other_result.extend(record_payments(
                        conn, [pay("C-1", "4.00", customer_id="100002"),
                               pay("C-2", "9.00", customer_id="100002")], channel="posta"))

            worker = threading.Thread(target=second)
            worker.start()
            worker.join(timeout=1.0)
            assert worker.is_alive()  # blocked on the uncommitted rows
        worker.join(timeout=10)
    assert [(o.status, o.reason) for o in other_result] == [
        ("duplicate", None),
        ("rejected", "conflicts with recorded payment C-2 (customer 100002, 4.00 KM on"
                     " 2026-04-10)")]
    assert conn.execute("SELECT payment_id, channel, amount_fen FROM payments ORDER BY 1"
                        ).fetchall() == [("C-1", "bank", 400), ("C-2", "bank", 400)]


def test_record_checked_takes_payments_already_read(conn: psycopg.Connection) -> None:
    """The bank import's entry point: the same matching, and the checks `_decode` would
    have made on an object, with the reason named."""
    day = date(2026, 4, 10)
    batch = [
        Payment("K-1", None, day, 8149, "26-000001-26"),  # spaced reference: normalized
        Payment("K-2", "100002", day, 100, None),
        Payment("povrat/K-3", "100002", day, 100, None),
        Payment("K-4", "100002", day, 0, None),
        Payment("K-5", "100002", day, 100_000_000_001, None),
        Payment("K-6", "12ab", day, 100, None),
        Payment("K-7", "100002", day, 100, "26000001\x0026"),
        Payment("K-2", "100002", day, 100, None),  # again in the batch: duplicate
        Payment("K-1", None, day, 8149, REF_2),    # the same id for another customer
    ]
    with conn.transaction():
        out = record_checked(conn, batch, channel="bank")
    assert [(o.status, o.customer_id, o.invoice_number) for o in out[:2]] == [
        ("accepted", "100001", "2026-000001"), ("accepted", "100002", None)]
    assert [o.reason for o in out[2:7]] == [
        "payment_id: 'povrat/K-3' starts with a prefix reserved for corrections"
        " (STORNO/, POVRAT/)",
        "amount: must be greater than zero, got '0.00'",
        "amount: implausibly large: '1000000000.01'",
        "customer_id: must be 6–10 digits, got '12ab'",
        "reference: must be text of at most 100 characters"]
    assert out[7].status == "duplicate"
    assert (out[8].status, out[8].conflict) == ("rejected", True)
    assert conn.execute("SELECT payment_id, reference FROM payments ORDER BY 1").fetchall() == [
        ("K-1", REF_1), ("K-2", None)]
    with pytest.raises(BillingError, match="channel"):
        record_checked(conn, batch, channel="")
