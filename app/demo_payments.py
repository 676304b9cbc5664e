"""Believable payment history for the demo: most customers pay on time, some late,
a few stop paying (so collections has work). Pure: invoices and `today` in, payments out."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np

from rating.money import format_km

DEMO_CUSTOMER = "100001"


@dataclass(frozen=True)
class IssuedInvoice:
    number: str
    customer_id: str
    issued_on: date
    due_on: date
    total_fen: int
    payment_reference: str


def payer_kind(customer_id: str) -> str:
    """punctual 80 %, late 12 %, irregular 6 %, debtor 2 % (stable per customer)."""
    bucket = zlib.crc32(customer_id.encode()) % 100
    if customer_id == DEMO_CUSTOMER or bucket < 80:
        return "punctual"
    if bucket < 92:
        return "late"
    if bucket < 98:
        return "irregular"
    return "debtor"


def demo_payments(
    invoices: Iterable[IssuedInvoice], *, today: date, seed: int = 5,
    last_issue: date | None = None,
) -> list[dict[str, Any]]:
    """One payment per paid invoice, by reference; nothing dated after `today`.

    The demo customer leaves the newest invoice open, so the portal shows an amount due.
    `last_issue`: the issue date of the newest invoice of the whole history, when the
    invoices come one month at a time (default: the newest among `invoices`).
    """
    rng = np.random.default_rng(seed)
    ordered: Sequence[IssuedInvoice] = sorted(invoices, key=lambda i: (i.customer_id, i.number))
    newest: dict[str, date] = {}
    for inv in ordered:
        newest[inv.customer_id] = max(newest.get(inv.customer_id, inv.issued_on), inv.issued_on,
                                      last_issue or inv.issued_on)
    out: list[dict[str, Any]] = []
    for inv in ordered:
        kind = payer_kind(inv.customer_id)
        draw = rng.random()
        if kind == "punctual":
            paid_on = inv.issued_on + timedelta(days=int(rng.integers(2, 13)))
        elif kind == "late":
            paid_on = inv.due_on + timedelta(days=int(rng.integers(5, 45)))
        elif kind == "irregular":
            if draw < 0.35:
                continue
            paid_on = inv.due_on + timedelta(days=int(rng.integers(0, 20)))
        else:  # debtor: stopped paying six months before the newest invoice
            if inv.issued_on > newest[inv.customer_id] - timedelta(days=183):
                continue
            paid_on = inv.issued_on + timedelta(days=int(rng.integers(5, 25)))
        if inv.customer_id == DEMO_CUSTOMER and inv.issued_on == newest[inv.customer_id]:
            continue
        if paid_on > today:
            continue
        out.append({
            "payment_id": f"DEMO-{inv.number}",
            "reference": inv.payment_reference,
            "customer_id": inv.customer_id,
            "paid_on": paid_on.isoformat(),
            "amount": format_km(inv.total_fen),
        })  # fmt: skip
    return out
