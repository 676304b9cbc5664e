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

import contextlib
import gc
import os
import queue
import re
import threading
from collections import defaultdict
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from multiprocessing import get_all_start_methods, get_context
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from billing import BillingError
from billing.calculation import (
    ContractInput,
    DailyConsumption,
    InvoiceDraft,
    InvoiceLine,
    compute_invoice,
    with_extra_lines,
)
from billing.close_copy import (
    DocumentCopy,
    _format,
    _ledger_totals,
    _render,
    _send,
    _written,
)
from billing.close_copy import (
    Rendered as Rendered,
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
from rating.catalog import Catalog
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
        inputs = _load_inputs(ctx, line_sources)
        skipped = inputs.skipped
        drafts: list[Rendered] = []
        steps = list(default_after_write() if after_write is None else after_write)
        chunk_steps = [s for s in steps if runs_per_chunk(s)]
        # written and booked chunk by chunk, in order (the same invoice and entry numbers as
        # at once), while worker processes compute the next chunks
        for chunk, documents in _formatted_ahead(_rendered_chunks(inputs), issued_on,
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
            if chunk_steps:
                written = _written(chunk, issued_on, payment_days, last_seq + len(drafts))
                for step in chunk_steps:
                    step(ctx, written)
            if owns_transaction:  # this chunk's deferred checks now, not all at COMMIT
                conn.execute(f"SET CONSTRAINTS {_DEFERRED_CHECKS} IMMEDIATE")
                conn.execute(f"SET CONSTRAINTS {_DEFERRED_CHECKS} DEFERRED")
            drafts.extend(chunk)
        if drafts:
            conn.execute("UPDATE invoice_counters SET last_seq = %s WHERE year = %s",
                         (last_seq + len(drafts), issued_on.year))
            written = _written(drafts, issued_on, payment_days, last_seq)
            for step in steps:
                if not runs_per_chunk(step):
                    step(ctx, written)
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
        skipped=dict(sorted(skipped.items())),
    )


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


@dataclass
class _Inputs:
    """Everything the calculation of a close reads, loaded once."""

    period: str
    catalog: Catalog
    contracts: dict[str, list[ContractInput]]
    consumption: dict[str, list[DailyConsumption]]
    demand: dict[str, list[DailyConsumption]]
    extra: dict[str, list[InvoiceLine]]
    skipped: dict[str, str]
    customers: list[str]  # to invoice, in order (invoice numbers follow it)
    unbilled: int | None  # `_UNBILLED` if it came with the consumption


def _load_inputs(ctx: CloseContext, line_sources: Sequence[LineSource] | None) -> _Inputs:
    conn, catalog = ctx.conn, ctx.catalog
    args = {"period": ctx.period, "first": ctx.first, "end": ctx.end}
    contracts = _load_contracts(conn, args)
    skipped = {k: v for k, v in _overlapping(conn, args).items() if k in contracts}
    breaks = _price_breaks(catalog, contracts, ctx.first, ctx.end)
    unbilled = None
    if len(contracts) >= WHOLE_MONTH_FROM:
        consumption, unbilled = _load_month_totals(conn, args, breaks)
    else:
        consumption = _load_consumption(conn, args, breaks)
    demand = _load_demand(conn, args, catalog, contracts, ctx.first, ctx.end)
    extra = _extra_lines(ctx, contracts, skipped, line_sources)
    customers = [c for c in sorted(set(contracts) | set(extra)) if c not in skipped]
    return _Inputs(ctx.period, catalog, contracts, consumption, demand, extra, skipped,
                   customers, unbilled)


def _draft_of(inputs: _Inputs, customer_id: str) -> InvoiceDraft | str | None:
    """The customer's draft; the reason it cannot be made; None: nothing to invoice (a
    tariff without fees and no consumption)."""
    try:
        draft = compute_invoice(customer_id, inputs.period, inputs.contracts.get(customer_id, []),
                                inputs.consumption.get(customer_id, []), inputs.catalog,
                                inputs.demand.get(customer_id, ()))
    except BillingError as exc:
        return str(exc)
    draft = with_extra_lines(draft, inputs.extra.get(customer_id, []))
    return draft if draft.lines else None



# The calculation is pure and costs ~50 µs per customer: from PARALLEL_FROM customers on,
# chunks of customers are computed in forked worker processes (they inherit the loaded
# inputs, nothing is pickled but the rendered text coming back) while this process writes
# the chunks already done. Forking is safe only in a process with one thread (the CLI, the
# bench, a worker); elsewhere (the API server) the close computes in this process.
PARALLEL_FROM = 5_000
_CHUNK = 2_500
_FORKED: _Inputs | None = None  # the inputs a forked worker computes from


def _rendered_chunks(inputs: _Inputs) -> Iterator[list[Rendered]]:
    """The rendered drafts in customer order, a chunk at a time; customers that cannot be
    invoiced are added to ``inputs.skipped``."""
    global _FORKED
    customers = inputs.customers
    bounds = [(lo, min(lo + _CHUNK, len(customers))) for lo in range(0, len(customers), _CHUNK)]
    workers = _workers(len(customers))
    if workers < 1:
        for lo, hi in bounds:
            yield _merge(inputs, lo, _render_range(inputs, lo, hi))
        return
    _FORKED = inputs
    # the objects alive now are shared with the workers page by page: kept out of the
    # cyclic collector, its passes in a worker do not copy them all (copy on write)
    gc.freeze()
    try:
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            futures = [pool.submit(_render_forked, lo, hi) for lo, hi in bounds]
            _FORKED = None
            gc.unfreeze()
            for (lo, _), future in zip(bounds, futures, strict=True):
                yield _merge(inputs, lo, future.result())
    finally:
        _FORKED = None
        gc.unfreeze()


def _formatted_ahead(chunks: Iterator[list[Rendered]], issued_on: date, payment_days: int,
                     last_seq: int) -> Iterator[tuple[list[Rendered], DocumentCopy]]:
    """The chunks with their documents' COPY text (numbered on from `last_seq`), one chunk
    ahead: while the caller sends and books chunk k — waiting on PostgreSQL, which releases
    the GIL — a thread collects (or computes) chunk k+1 and formats it. The first chunk is
    taken in the calling thread, so `_rendered_chunks` forks its workers before the thread
    exists."""
    offset = last_seq

    def prepare(chunk: list[Rendered]) -> tuple[list[Rendered], DocumentCopy]:
        nonlocal offset
        documents = _format(chunk, issued_on, payment_days, offset)
        offset += len(chunk)
        return chunk, documents

    first = next(chunks, None)
    if first is None:
        return
    ready = prepare(first)
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def run() -> None:
        try:
            for chunk in chunks:
                if stop.is_set():
                    break
                handoff.put(("chunk", prepare(chunk)))
        except BaseException as exc:  # handed to the caller, raised there
            handoff.put(("error", exc))
        finally:
            if isinstance(chunks, Generator):
                chunks.close()  # the worker pool shuts down in this thread
            handoff.put(("end", None))

    thread = threading.Thread(target=run, name="close-format", daemon=True)
    thread.start()
    try:
        yield ready
        while True:
            kind, value = handoff.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # unblock its put, let it close the chunks
            with contextlib.suppress(queue.Empty):
                handoff.get(timeout=0.05)
        thread.join()


def _workers(customers: int) -> int:
    """Worker processes for the calculation: one core is left to this process and its
    PostgreSQL backend, which write the chunks meanwhile; 0 = compute here."""
    if (customers < PARALLEL_FROM or threading.active_count() > 1
            or "fork" not in get_all_start_methods()):
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min((cores or 1) - 1, 4)


def _render_forked(lo: int, hi: int) -> list[Rendered | str | None]:
    if _FORKED is None:  # pragma: no cover - only in a worker forked by _rendered_chunks
        raise RuntimeError("close worker started without inputs")
    return _render_range(_FORKED, lo, hi)


def _render_range(inputs: _Inputs, lo: int, hi: int) -> list[Rendered | str | None]:
    """Rendered drafts (or why not, or None) of ``customers[lo:hi]``; those with extra lines
    are left to `_merge` (None), as are any whose line sources might differ per process."""
    out: list[Rendered | str | None] = []
    for customer_id in inputs.customers[lo:hi]:
        if customer_id in inputs.extra:
            out.append(None)
            continue
        draft = _draft_of(inputs, customer_id)
        out.append(draft if draft is None or isinstance(draft, str) else _render(draft))
    return out


def _merge(inputs: _Inputs, lo: int, results: list[Rendered | str | None]) -> list[Rendered]:
    chunk = []
    for customer_id, found in zip(inputs.customers[lo:lo + len(results)], results, strict=True):
        if found is None and customer_id in inputs.extra:
            draft = _draft_of(inputs, customer_id)
            found = draft if draft is None or isinstance(draft, str) else _render(draft)
        if isinstance(found, str):
            inputs.skipped[customer_id] = found
        elif found is not None:
            chunk.append(found)
    return chunk



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

