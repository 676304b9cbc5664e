"""The monthly close: one transaction that invoices every customer for a period.

Idempotent: a customer who already has an invoice for the period is skipped, so closing
again creates nothing; a customer whose contract was entered after the close gets an
invoice on a re-run. Invoice numbers ``YYYY-NNNNNN`` (year of issue) have no gaps: the
counter row is locked and advanced in the same transaction as the invoices it numbers.

Set-based: the consumption of the whole period is summed in SQL per contract, register and
*price bucket* — a run of days over which no tariff in use changes version or season — so
the pure calculation receives a few rows per customer, each carrying its first day, and
prices every day of the bucket correctly. Maximum demand (1.6.0, for tariffs with billing
power) is read from `readings` in one more query, only for contracts on such tariffs.
Invoices, lines and VAT rows are written with COPY; each invoice is booked in the general
ledger (`billing.ledger`) in the same transaction.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import psycopg
from psycopg.pq import TransactionStatus

from billing import BillingError
from billing.calculation import (
    ContractInput,
    InvoiceDraft,
    InvoiceLine,
)
from billing.close_chunks import (
    _CHUNK as _CHUNK,
)
from billing.close_chunks import (
    PARALLEL_FROM as PARALLEL_FROM,
)
from billing.close_chunks import (
    Computation,
    _Inputs,
    formatted_ahead,
    start,
)
from billing.close_chunks import (
    _draft_of as _draft_of,
)
from billing.close_chunks import (
    _render_range as _render_range,
)
from billing.close_chunks import (
    _workers as _workers,
)
from billing.close_copy import (
    Rendered as Rendered,
)
from billing.close_copy import (
    _ledger_totals,
    _send,
)
from billing.close_copy import (
    _render as _render,
)
from billing.close_copy import (
    _write as _write,
)
from billing.close_copy import (
    make_payment_reference as make_payment_reference,
)
from billing.close_hooks import (
    AfterWrite,
    CloseContext,
    LineSource,
    WrittenInvoice,
    default_after_write,
    default_line_sources,
    runs_per_chunk,
)
from billing.close_inputs import (
    _CONSUMPTION as _CONSUMPTION,
)
from billing.close_inputs import (
    _CONTRACTS as _CONTRACTS,
)
from billing.close_inputs import (
    _NOT_INVOICED as _NOT_INVOICED,
)
from billing.close_inputs import (
    _UNBILLED,
    MonthTotalsAhead,
    _CachedCatalog,
    _load_consumption,
    _load_contracts,
    _load_demand,
    _load_month_totals,
    _overlapping,
    _price_breaks,
    _scalar,
)
from billing.close_inputs import (
    _load_month as _load_month,
)
from billing.gc_pause import no_cyclic_gc
from billing.ledger import Chart, load_chart
from billing.ledger_posting import post_invoice_numbers, post_invoices
from rating import RatingError
from rating.calendar import month_bounds
from stream.pipeline import load_catalog

_PERIOD = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
MAX_SEQ = 999_999

_LOCK_COUNTER = """
INSERT INTO invoice_counters AS c (year, last_seq) VALUES (%s, 0)
ON CONFLICT (year) DO UPDATE SET last_seq = c.last_seq
RETURNING last_seq
"""

# The deferred constraint triggers a close's writes queue (migrations 0022, 0026): fired
# after each chunk when the close owns its transaction, so that COMMIT has little left.
_DEFERRED_CHECKS = "journal_pending_lines_check, invoices_pending_periods_check"

WHOLE_MONTH_FROM = 1_000  # customers to invoice; fewer: `_CONSUMPTION` reads less
# invoices in a chunk from which they are booked set-based (`post_invoice_numbers`); fewer:
# through `post_invoices`. 1 = always; the Python path stays for comparison (tests, bench)
BOOK_IN_SQL_FROM = 1


@dataclass(frozen=True)
class CloseResult:
    period: str
    invoices_created: int
    invoices_existing: int
    net_fen: int  # of the invoices created by this run
    vat_fen: int
    total_fen: int
    unbilled_days: int  # (metering point, service, day) with consumption but no contract
    skipped: dict[str, str] = field(default_factory=dict)  # customer_id → why not invoiced


def close_period(
    conn: psycopg.Connection, period: str, *, issued_on: date, payment_days: int = 15,
    chart: Chart | None = None, line_sources: Sequence[LineSource] | None = None,
    after_write: Sequence[AfterWrite] | None = None,
) -> CloseResult:
    """Invoice every customer with a contract active in `period` ('YYYY-MM') who has no
    invoice for it yet. A customer whose data cannot be invoiced (no price for a day's
    consumption, overlapping contracts, …) is left out and listed in `skipped`; one with
    nothing to invoice (no fee, no consumption) gets no invoice. Both are picked up by a
    later run once their data is there. Every invoice is booked with `chart` (default: the
    packaged chart of accounts). `line_sources` and `after_write` default to
    `billing.close_hooks`' registered ones. Raises `BillingError` for a bad period, a period
    that has not ended by `issued_on`, or an unreadable tariff catalog."""
    if not isinstance(period, str) or not _PERIOD.match(period):
        raise BillingError(f"period: must be YYYY-MM, got {period!r}")
    first, end = month_bounds(period)
    if issued_on < end:
        raise BillingError(
            f"period {period} has not ended: it ends on {end - timedelta(days=1)}, "
            f"issued_on {issued_on} must be later"
        )
    if not 0 <= payment_days <= 365:
        raise BillingError(f"payment_days: must be 0–365, got {payment_days}")
    args = {"period": period, "first": first, "end": end}
    # a caller's own transaction may hold deferred checks meant for its COMMIT
    owns_transaction = conn.info.transaction_status == TransactionStatus.IDLE
    # millions of short-lived objects without cycles (`billing.gc_pause`); the forked
    # calculation workers inherit the paused collector
    with no_cyclic_gc(), conn.transaction():
        # the period's consumption is grouped in one pass: let it hash in memory
        conn.execute("SET LOCAL work_mem = '256MB'")
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                     (f"billing.close:{period}",))
        row = conn.execute(_LOCK_COUNTER, (issued_on.year,)).fetchone()
        last_seq = int(row[0]) if row else 0
        existing = _scalar(conn, "SELECT count(*) FROM invoices WHERE period = %s"
                                 " AND kind = 'invoice'", (period,))
        try:
            catalog = _CachedCatalog(load_catalog(conn))
        except RatingError as exc:
            raise BillingError(f"tariff catalog: {exc}") from exc
        ctx = CloseContext(conn, period, first, end, issued_on, catalog)
        inputs = _load_base(ctx, second_connection=owns_transaction)
        computation = start(inputs)  # workers compute while the line sources are asked
        try:
            _complete(ctx, inputs, line_sources)
            drafts = _write_and_book(ctx, computation, chart, after_write, payment_days,
                                     last_seq, owns_transaction)
        finally:
            computation.close()
        unbilled = (_scalar(conn, _UNBILLED, args) if inputs.unbilled is None
                    else inputs.unbilled)
    return CloseResult(
        period=period,
        invoices_created=len(drafts),
        invoices_existing=existing,
        net_fen=sum(d.net_fen for d in drafts),
        vat_fen=sum(d.vat_fen for d in drafts),
        total_fen=sum(d.total_fen for d in drafts),
        unbilled_days=unbilled,
        skipped=dict(sorted(inputs.skipped.items())),
    )


def _write_and_book(ctx: CloseContext, computation: Computation, chart: Chart | None,
                    after_write: Sequence[AfterWrite] | None, payment_days: int,
                    last_seq: int, owns_transaction: bool) -> list[Rendered]:
    """Write and book the computed invoices chunk by chunk, in order (the same invoice and
    entry numbers as at once), while the next chunks are computed; then the after-write
    steps. Returns what was written."""
    conn, issued_on = ctx.conn, ctx.issued_on
    drafts: list[Rendered] = []
    steps = list(default_after_write() if after_write is None else after_write)
    chunk_steps = [s for s in steps if runs_per_chunk(s)]
    written_all: list[WrittenInvoice] = []
    for chunk, documents, written in formatted_ahead(computation.chunks(), issued_on,
                                                     payment_days, last_seq):
        if not chunk:
            continue
        if last_seq + len(drafts) + len(chunk) > MAX_SEQ:
            raise BillingError(f"invoice numbers of {issued_on.year} would pass {MAX_SEQ}")
        _send(conn, documents)
        chart = chart or load_chart()
        if len(chunk) >= BOOK_IN_SQL_FROM:  # set-based, from the rows just written
            first_seq = last_seq + len(drafts) + 1
            post_invoice_numbers(conn, f"{issued_on.year}-{first_seq:06d}",
                                 f"{issued_on.year}-{first_seq + len(chunk) - 1:06d}",
                                 chart=chart)
        else:
            post_invoices(conn, _ledger_totals(chunk, issued_on, last_seq + len(drafts)),
                          chart=chart)
        written_all.extend(written)
        for step in chunk_steps:
            step(ctx, written)
        if owns_transaction:  # this chunk's deferred checks now, not all at COMMIT
            conn.execute(f"SET CONSTRAINTS {_DEFERRED_CHECKS} IMMEDIATE")
            conn.execute(f"SET CONSTRAINTS {_DEFERRED_CHECKS} DEFERRED")
        drafts.extend(chunk)
    if drafts:
        conn.execute("UPDATE invoice_counters SET last_seq = %s WHERE year = %s",
                     (last_seq + len(drafts), issued_on.year))
        for step in steps:
            if not runs_per_chunk(step):
                step(ctx, written_all)
    return drafts


def draft_invoices(ctx: CloseContext, line_sources: Sequence[LineSource] | None = None
                   ) -> tuple[list[InvoiceDraft], dict[str, str]]:
    """The drafts of every customer not yet invoiced for ``ctx.period`` and the customers
    left out with the reason: what `close_period` writes and `close_preview` shows."""
    with no_cyclic_gc():
        inputs = _load_inputs(ctx, line_sources)
        drafts = []
        for customer_id in inputs.customers:
            draft = _draft_of(inputs, customer_id)
            if isinstance(draft, str):
                inputs.skipped[customer_id] = draft
            elif draft is not None:
                drafts.append(draft)
    return drafts, inputs.skipped


def _load_inputs(ctx: CloseContext, line_sources: Sequence[LineSource] | None) -> _Inputs:
    """Everything a close computes from (`_load_base`, then `_complete`)."""
    inputs = _load_base(ctx)
    _complete(ctx, inputs, line_sources)
    return inputs


def _load_base(ctx: CloseContext, *, second_connection: bool = False) -> _Inputs:
    """The contracts, consumption and maximum demand of the customers not yet invoiced:
    what the calculation workers start from. `second_connection`: the month-to-date totals
    are read meanwhile on another connection (`MonthTotalsAhead`)."""
    conn, catalog = ctx.conn, ctx.catalog
    args = {"period": ctx.period, "first": ctx.first, "end": ctx.end}
    ahead = MonthTotalsAhead(conn, args) if second_connection else None
    try:
        contracts = _load_contracts(conn, args)
        breaks = _price_breaks(catalog, contracts, ctx.first, ctx.end)
        unbilled = None
        if len(contracts) >= WHOLE_MONTH_FROM:
            consumption, unbilled = _load_month_totals(conn, args, breaks, ahead=ahead)
        else:
            consumption = _load_consumption(conn, args, breaks)
    finally:
        if ahead is not None:
            ahead.rows()  # waited for in every case: no thread may run when workers fork
    demand = _load_demand(conn, args, catalog, contracts, ctx.first, ctx.end)
    return _Inputs(ctx.period, catalog, contracts, consumption, demand, {}, {}, [], unbilled)


def _complete(ctx: CloseContext, inputs: _Inputs, line_sources: Sequence[LineSource] | None
              ) -> None:
    """The customers held back (overlapping contracts, line sources), the extra lines and
    the customers to invoice, in order."""
    args = {"period": ctx.period, "first": ctx.first, "end": ctx.end}
    contracts = inputs.contracts
    inputs.skipped.update(
        {k: v for k, v in _overlapping(ctx.conn, args).items() if k in contracts})
    inputs.extra.update(_extra_lines(ctx, contracts, inputs.skipped, line_sources))
    inputs.customers[:] = [c for c in sorted(set(contracts) | set(inputs.extra))
                           if c not in inputs.skipped]


def _extra_lines(ctx: CloseContext, contracts: dict[str, list[ContractInput]],
                 skipped: dict[str, str], sources: Sequence[LineSource] | None
                 ) -> dict[str, list[InvoiceLine]]:
    """The lines of every line source per customer; customers a source names beyond those
    with contracts are kept only if they have no invoice for the period yet."""
    out: dict[str, list[InvoiceLine]] = defaultdict(list)
    candidates = sorted(contracts)
    for source in default_line_sources() if sources is None else sources:
        found = source(ctx, candidates)
        for customer_id, why in found.skipped.items():
            skipped.setdefault(customer_id, why)
        for customer_id, lines in found.lines.items():
            out[customer_id].extend(lines)
    others = [c for c in out if c not in contracts]
    if others:
        invoiced = {r[0] for r in ctx.conn.execute(
            "SELECT customer_id FROM invoices WHERE period = %s AND kind = 'invoice'"
            " AND customer_id = ANY(%s)", (ctx.period, others))}
        for customer_id in invoiced:
            del out[customer_id]
    return out

