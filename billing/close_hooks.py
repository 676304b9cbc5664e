"""Extension points of the monthly close, so features add to an invoice without editing
the closer: a *line source* adds lines to the invoices being made (adjustments of earlier
periods, estimates, late-payment interest, …); an *after-write* step runs in the same
transaction once the invoices are written and booked (credit allocation, outbound events),
after each chunk of them if it is marked `per_chunk`.

Each feature registers its functions in `default_line_sources` / `default_after_write`
(imported lazily so this module stays import-cycle free).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import NamedTuple

import psycopg

from billing.calculation import InvoiceLine
from rating.catalog import Catalog


@dataclass(frozen=True)
class CloseContext:
    """What a hook may use: the close's connection (inside its transaction), the period,
    its first day and the day after its last, the issue date and the catalog in use."""

    conn: psycopg.Connection
    period: str
    first: date
    end: date
    issued_on: date
    catalog: Catalog


@dataclass
class ExtraLines:
    """Lines a source adds per customer; `skipped` names customers it cannot invoice now
    (the closer leaves them out with that reason, a later run picks them up)."""

    lines: dict[str, list[InvoiceLine]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


class WrittenInvoice(NamedTuple):
    """An invoice the close has just written (a tuple: a close makes 100,000 of them)."""

    invoice_number: str
    customer_id: str
    period: str
    issued_on: date
    due_on: date
    net_fen: int
    vat_fen: int
    total_fen: int


def number_range(written: Sequence[WrittenInvoice]) -> tuple[str, str] | None:
    """(first, last) invoice number when `written` are consecutive numbers of one year in
    ascending order (a close's invoices): a statement can then select them by that range
    of the primary key instead of receiving every number. None otherwise."""
    if not written:
        return None
    first = written[0].invoice_number
    year, _, seq = first.partition("-")
    if not (len(year) == 4 and year.isdigit() and len(seq) == 6 and seq.isdigit()):
        return None
    start = int(seq)
    for k, w in enumerate(written):
        if w.invoice_number != f"{year}-{start + k:06d}":
            return None
    return first, written[-1].invoice_number


# `customer_ids`: customers with a contract active in the period and no invoice for it
# yet. A source may also return lines for other customers without an invoice for the
# period (e.g. an adjustment after the contract ended); they are invoiced too.
LineSource = Callable[[CloseContext, Sequence[str]], ExtraLines]
AfterWrite = Callable[[CloseContext, Sequence[WrittenInvoice]], None]


def per_chunk(step: AfterWrite) -> AfterWrite:
    """Mark an after-write step that may run after each chunk the close writes, with that
    chunk's invoices: it looks at no invoice of another chunk and takes no lock that could
    order it against other transactions differently (a step that locks per customer is not
    one). The close runs such steps while the next chunk is being computed instead of all
    at the end; unmarked steps run once, after the last chunk, with every invoice."""
    step.per_chunk = True  # type: ignore[attr-defined]
    return step


def runs_per_chunk(step: AfterWrite) -> bool:
    return bool(getattr(step, "per_chunk", False))


def default_line_sources() -> list[LineSource]:
    """The line sources every close runs, in the order their lines appear."""
    from billing.adjustments import rebill_lines  # estimates, corrections of closed periods (#4)
    from billing.interest_charges import interest_lines  # late-payment interest (#5)

    return [rebill_lines, interest_lines]


def default_after_write() -> list[AfterWrite]:
    """The steps every close runs after writing its invoices, in this order."""
    from billing.adjustments import rebill_after_write  # estimates, adjustments (#4)
    from billing.customer_credit import apply_credit_after_close  # credit → invoice (#5)
    from billing.interest_charges import record_interest_after_close  # (#5)
    from billing.outbox import invoice_events_after_write

    return [rebill_after_write, record_interest_after_close, apply_credit_after_close,
            invoice_events_after_write]
