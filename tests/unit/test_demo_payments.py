from collections import Counter
from datetime import date, timedelta

from app.demo_payments import IssuedInvoice, demo_payments, payer_kind


def invoices(customers: int, months: int) -> list[IssuedInvoice]:
    out = []
    for c in range(customers):
        for m in range(months):
            issued = date(2025, 1, 1) + timedelta(days=31 * m)
            out.append(
                IssuedInvoice(
                    f"2025-{c * months + m + 1:06d}",
                    f"{100001 + c}",
                    issued,
                    issued + timedelta(days=15),
                    5000 + c,
                    f"REF{c}-{m}",
                )
            )
    return out


def test_payer_mix_and_nothing_in_the_future() -> None:
    invs = invoices(400, 12)
    today = date(2025, 10, 1)
    pays = demo_payments(invs, today=today)
    kinds = Counter(payer_kind(f"{100001 + c}") for c in range(400))
    assert kinds["punctual"] > 280 and kinds["late"] > 20 and kinds["debtor"] >= 1
    assert all(date.fromisoformat(p["paid_on"]) <= today for p in pays)
    assert len({p["payment_id"] for p in pays}) == len(pays)
    by_number = {i.number: i for i in invs}
    for p in pays:
        inv = by_number[p["payment_id"].removeprefix("DEMO-")]
        assert p["reference"] == inv.payment_reference
        assert p["amount"] == f"{inv.total_fen // 100}.{inv.total_fen % 100:02d}"


def test_demo_customer_leaves_the_newest_invoice_open_and_is_deterministic() -> None:
    invs = invoices(3, 6)
    pays = demo_payments(invs, today=date(2030, 1, 1))
    demo = [p for p in pays if p["customer_id"] == "100001"]
    assert len(demo) == 5
    assert demo_payments(invs, today=date(2030, 1, 1)) == pays
