"""How the close computes its invoices: chunk by chunk, in forked workers when it is large,
handed to the writer one chunk ahead. Split out of `billing.closer`, which re-exports
these names.

The calculation is pure and costs 30–50 µs per customer. From PARALLEL_FROM customers on,
chunks of customers are computed in forked worker processes: they inherit the loaded
inputs (nothing is pickled but the rendered text coming back) while the closer writes the
chunks already done. The workers are started (`start`) as soon as the contracts and the
consumption are read, before the closer asks the line sources for their extra lines and
the overlap check for the customers to hold back: they compute every customer with a
contract, and the chunks handed to the writer (`Computation.chunks`) leave out the
customers held back, recompute in this process those with extra lines and add, in
customer order, the ones with extra lines only. Forking is safe only in a process with one
thread (the CLI, the bench, a worker); elsewhere (the API server) the close computes in
this process, chunk by chunk, once everything is known.
"""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import threading
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from multiprocessing import get_all_start_methods, get_context
from typing import Any, NamedTuple

from billing import BillingError
from billing.calculation import (
    ContractInput,
    DailyConsumption,
    InvoiceDraft,
    InvoiceLine,
    compute_invoice,
    with_extra_lines,
)
from billing.close_copy import DocumentCopy, Rendered, _format, _render, _written
from billing.close_hooks import WrittenInvoice
from rating.catalog import Catalog

PARALLEL_FROM = 5_000
_CHUNK = 2_500


@dataclass
class _Inputs:
    """Everything the calculation of a close reads, loaded once. `extra`, `skipped` and
    `customers` are complete only once `closer._load_inputs` (or the close) has asked the
    line sources and the overlap check."""

    period: str
    catalog: Catalog
    contracts: dict[str, list[ContractInput]]
    consumption: dict[str, list[DailyConsumption]]
    demand: dict[str, list[DailyConsumption]]
    extra: dict[str, list[InvoiceLine]]
    skipped: dict[str, str]
    customers: list[str]  # to invoice, in order (invoice numbers follow it)
    unbilled: int | None  # `_UNBILLED` if it came with the consumption
    base: list[str] = field(default_factory=list)  # customers with a contract, sorted

    def __post_init__(self) -> None:
        if not self.base:
            self.base = sorted(self.contracts)


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


_FORKED: _Inputs | None = None  # the inputs a forked worker computes from


class Computation:
    """The drafts of a close's customers, computing (in workers) from `start` on."""

    def __init__(self, inputs: _Inputs, bounds: list[tuple[int, int]],
                 pool: ProcessPoolExecutor | None, futures: list[Future[Any]]) -> None:
        self.inputs = inputs
        self._bounds = bounds
        self._pool = pool
        self._futures = futures
        self._others: list[str] = []  # customers with extra lines only, sorted
        self._next_other = 0

    def chunks(self) -> Iterator[list[Rendered]]:
        """The rendered drafts in customer order (``inputs.customers``), a chunk at a time;
        customers that cannot be invoiced are added to ``inputs.skipped``. Call it once the
        inputs are complete."""
        inputs = self.inputs
        base = set(inputs.base)
        self._others = sorted(c for c in inputs.extra
                              if c not in base and c not in inputs.skipped)
        if not self._bounds:
            yield self._merge(0, [], last=True)
            return
        if not self._futures:
            for k, (lo, hi) in enumerate(self._bounds):
                yield self._merge(lo, _render_range(inputs, lo, hi),
                                  last=k == len(self._bounds) - 1)
            self._release()
            return
        try:
            for k, ((lo, _), future) in enumerate(zip(self._bounds, self._futures,
                                                      strict=True)):
                yield self._merge(lo, future.result(), last=k == len(self._bounds) - 1)
        finally:
            self.close()
        self._release()

    def _release(self) -> None:
        """Every chunk is computed: the calculation's inputs (hundreds of thousands of
        objects) are freed now, by the thread that formats the chunks, while the writer is
        still busy, rather than when the close returns."""
        for table in (self.inputs.contracts, self.inputs.consumption, self.inputs.demand):
            table.clear()

    def close(self) -> None:
        """Stop the workers (those computing finish their chunk); safe to call twice."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _merge(self, lo: int, results: list[Rendered | str | None], *, last: bool
               ) -> list[Rendered]:
        """The chunk of ``base[lo:lo + len(results)]`` merged, in customer order, with the
        customers with extra lines only that sort up to its last one (all that are left,
        for the `last` chunk)."""
        inputs = self.inputs
        names = inputs.base[lo:lo + len(results)]
        found: dict[str, Rendered | str | None] = dict(zip(names, results, strict=True))
        upper = None if last or not names else names[-1]
        start = self._next_other
        stop = start
        while stop < len(self._others) and (upper is None or self._others[stop] <= upper):
            stop += 1
        self._next_other = stop
        ordered = sorted([*names, *self._others[start:stop]]) if stop > start else names
        chunk = []
        for customer_id in ordered:
            if customer_id in inputs.skipped:
                continue
            result = found.get(customer_id)
            if customer_id in inputs.extra:  # computed here, with its extra lines
                draft = _draft_of(inputs, customer_id)
                result = draft if draft is None or isinstance(draft, str) else _render(draft)
            if isinstance(result, str):
                inputs.skipped[customer_id] = result
            elif result is not None:
                chunk.append(result)
        return chunk


def start(inputs: _Inputs) -> Computation:
    """Start computing every customer with a contract (``inputs.base``): in forked workers
    when there are enough of them and this process may fork, else later, in `chunks`."""
    global _FORKED
    base = inputs.base
    bounds = [(lo, min(lo + _CHUNK, len(base))) for lo in range(0, len(base), _CHUNK)]
    workers = _workers(len(base))
    if workers < 1:
        return Computation(inputs, bounds, None, [])
    _FORKED = inputs
    # the objects alive now are shared with the workers page by page: kept out of the
    # cyclic collector, its passes in a worker do not copy them all (copy on write)
    gc.freeze()
    try:
        pool = ProcessPoolExecutor(workers, mp_context=get_context("fork"))
        futures = [pool.submit(_render_forked, lo, hi) for lo, hi in bounds]
    finally:
        _FORKED = None
        gc.unfreeze()
    return Computation(inputs, bounds, pool, futures)


def _workers(customers: int) -> int:
    """Worker processes for the calculation: one core is left to this process and its
    PostgreSQL backend, which write the chunks meanwhile; 0 = compute here."""
    if (customers < PARALLEL_FROM or threading.active_count() > 1
            or "fork" not in get_all_start_methods()):
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min((cores or 1) - 1, 4)


def _render_forked(lo: int, hi: int) -> list[Rendered | str | None]:
    if _FORKED is None:  # pragma: no cover - only in a worker forked by `start`
        raise RuntimeError("close worker started without inputs")
    return _render_range(_FORKED, lo, hi)


def _render_range(inputs: _Inputs, lo: int, hi: int) -> list[Rendered | str | None]:
    """Rendered drafts (or why not, or None) of ``base[lo:hi]``; those with extra lines or
    held back (as far as known yet) are left to `Computation._merge` (None)."""
    out: list[Rendered | str | None] = []
    extra, skipped = inputs.extra, inputs.skipped
    for customer_id in inputs.base[lo:hi]:
        if customer_id in extra or customer_id in skipped:
            out.append(None)
            continue
        draft = _draft_of(inputs, customer_id)
        out.append(draft if draft is None or isinstance(draft, str) else _render(draft))
    return out


class Prepared(NamedTuple):
    """A chunk ready to send: its drafts, their COPY text, the hooks' view of them."""

    chunk: list[Rendered]
    documents: DocumentCopy
    written: list[WrittenInvoice]


def formatted_ahead(chunks: Iterator[list[Rendered]], issued_on: date, payment_days: int,
                    last_seq: int) -> Iterator[Prepared]:
    """The chunks with their documents' COPY text (numbered on from `last_seq`), one chunk
    ahead: while the caller sends and books chunk k — waiting on PostgreSQL, which releases
    the GIL — a thread collects (or computes) chunk k+1 and formats it."""
    offset = last_seq

    def prepare(chunk: list[Rendered]) -> Prepared:
        nonlocal offset
        documents = _format(chunk, issued_on, payment_days, offset)
        written = _written(chunk, issued_on, payment_days, offset)
        offset += len(chunk)
        return Prepared(chunk, documents, written)

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
