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

import gc
import os
import re
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from multiprocessing import get_all_start_methods, get_context
from typing import Any, NamedTuple

import psycopg

from billing import BillingError
from billing.calculation import (
    ContractInput,
    DailyConsumption,
    InvoiceDraft,
    InvoiceLine,
    compute_invoice,
    with_extra_lines,
)
from billing.close_hooks import (
    AfterWrite,
    CloseContext,
    LineSource,
    WrittenInvoice,
    default_after_write,
    default_line_sources,
)
from billing.ledger import Chart, InvoiceTotals, load_chart
from billing.ledger_posting import post_invoices
from billing.reference import make_payment_reference
from rating import RatingError
from rating.calendar import month_bounds
from rating.catalog import Catalog, TariffVersion
from stream.pipeline import load_catalog

_PERIOD = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
MAX_SEQ = 999_999

_LOCK_COUNTER = """
INSERT INTO invoice_counters AS c (year, last_seq) VALUES (%s, 0)
ON CONFLICT (year) DO UPDATE SET last_seq = c.last_seq
RETURNING last_seq
"""

_NOT_INVOICED = """NOT EXISTS (SELECT 1 FROM invoices i WHERE i.customer_id = c.customer_id
                                  AND i.period = %(period)s AND i.kind = 'invoice')"""
_ACTIVE = "c.valid_from < %(end)s AND (c.valid_to IS NULL OR c.valid_to >= %(first)s)"

_CONTRACTS = f"""
SELECT c.customer_id, c.contract_id, c.metering_point_id, c.service, c.tariff_code,
       c.valid_from, c.valid_to, m.area_m2, m.household_members
FROM contracts c JOIN metering_points m USING (metering_point_id)
WHERE {_ACTIVE} AND {_NOT_INVOICED}
"""

# Two contracts (of any customers) on the same metering point and service on the same day
# would bill the same consumption twice: those customers are held back, with the reason.
_OVERLAPS = f"""
SELECT c.customer_id, b.customer_id, c.contract_id, b.contract_id, c.metering_point_id,
       c.service
FROM contracts c
JOIN contracts b ON b.metering_point_id = c.metering_point_id AND b.service = c.service
     AND b.contract_id > c.contract_id
     AND daterange(c.valid_from, c.valid_to, '[]') && daterange(b.valid_from, b.valid_to, '[]')
     AND b.valid_from < %(end)s AND (b.valid_to IS NULL OR b.valid_to >= %(first)s)
WHERE {_ACTIVE}
"""

# Grouped per contract, register and price bucket: `breaks` are the days on which some
# tariff in use starts a new version or changes season inside the month.
_CONSUMPTION = f"""
SELECT c.customer_id, c.metering_point_id, c.service, d.register, min(d.local_day),
       sum(d.quantity_milli)::bigint
FROM daily_consumption d
JOIN contracts c ON c.metering_point_id = d.metering_point_id AND c.service = d.service
     AND d.local_day >= c.valid_from AND (c.valid_to IS NULL OR d.local_day <= c.valid_to)
WHERE d.local_day >= %(first)s AND d.local_day < %(end)s AND {_NOT_INVOICED}
GROUP BY c.contract_id, d.register, width_bucket(d.local_day, %(breaks)s::date[])
"""

# The same result as `_CONSUMPTION`, cheaper: the day rows are first summed per metering
# point, service, register and *cut* (a run of days between two days on which a price
# bucket or any contract starts or ends), so that only those sums are joined with the
# contracts and grouped again per price bucket. Within a cut every contract covers all days
# or none, so each sum lands in the contract its days would. The cuts are computed in the
# same statement (same snapshot as the join); `width_bucket` needs them sorted.
# The last row (customer NULL) is `_UNBILLED` from the same sums: each carries the days
# with consumption as bits of a mask, and no contract covers a cut in part.
_CONSUMPTION_CLOSE = """
WITH cuts AS (
    SELECT array_agg(x ORDER BY x) AS days FROM (
        SELECT unnest(%(breaks)s::date[]) AS x
        UNION SELECT valid_from FROM contracts
              WHERE valid_from > %(first)s AND valid_from < %(end)s
        UNION SELECT valid_to + 1 FROM contracts
              WHERE valid_to >= %(first)s AND valid_to + 1 < %(end)s) AS t
), d AS MATERIALIZED (
    SELECT metering_point_id, service, register, min(local_day) AS local_day,
           sum(quantity_milli)::bigint AS quantity_milli,
           width_bucket(local_day, (SELECT days FROM cuts)) AS cut,
           bit_or(CASE WHEN quantity_milli <> 0 THEN 1::bigint << (local_day - %(first)s)
                       ELSE 0 END) AS days_used
    FROM daily_consumption
    WHERE local_day >= %(first)s AND local_day < %(end)s
    GROUP BY metering_point_id, service, register, cut
)
SELECT c.customer_id, c.metering_point_id, c.service, d.register, min(d.local_day),
       sum(d.quantity_milli)::bigint
FROM d
JOIN contracts c ON c.metering_point_id = d.metering_point_id AND c.service = d.service
     AND d.local_day >= c.valid_from AND (c.valid_to IS NULL OR d.local_day <= c.valid_to)
WHERE c.customer_id NOT IN (SELECT i.customer_id FROM invoices i
                            WHERE i.period = %(period)s AND i.kind = 'invoice')
GROUP BY c.contract_id, d.register, width_bucket(d.local_day, %(breaks)s::date[])
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, coalesce(sum(bit_count(u.days::bit(64))), 0)::bigint
FROM (SELECT bit_or(d.days_used) AS days FROM d
      WHERE NOT EXISTS (
          SELECT 1 FROM contracts c
          WHERE c.metering_point_id = d.metering_point_id AND c.service = d.service
            AND d.local_day >= c.valid_from AND (c.valid_to IS NULL OR d.local_day <= c.valid_to))
      GROUP BY d.metering_point_id, d.service, d.cut) AS u
"""
# (`NOT IN` over a NOT NULL column is `_NOT_INVOICED`, planned as a hashed subplan within
# the close's work_mem; the anti-join became a nested loop over every invoice of the period
# — 70 s for 20,000 accounts — when the statistics had not yet seen a first close's invoices)
WHOLE_MONTH_FROM = 1_000  # customers to invoice; fewer: `_CONSUMPTION` reads less

# The month's maximum demand per contract and register: non-cumulative reads (1.6.0, kW)
# of the meters installed at the metering point, × the meter's multiplier. A read belongs
# to the interval that ends at it, so a contract's reads in the month are those after the
# local midnight that starts its first day up to and including the midnight that ends its
# last (the billing reset read at 00:00 on the 1st is the previous month's maximum). The
# row's day is the local day of the first such read (it only places the row in a contract).
_DEMAND = f"""
SELECT c.customer_id, c.metering_point_id, c.service, r.register,
       ((min(r.first_at) - interval '1 second') AT TIME ZONE 'Europe/Sarajevo')::date,
       max(r.peak * m.multiplier)::bigint
FROM contracts c
JOIN meter_installations i ON i.metering_point_id = c.metering_point_id
JOIN meters m ON m.meter_id = i.meter_id AND m.service = c.service
CROSS JOIN LATERAL (
    SELECT greatest(c.valid_from, %(first)s)::timestamp AT TIME ZONE 'Europe/Sarajevo' AS lo,
           least(c.valid_to + 1, %(end)s)::timestamp AT TIME ZONE 'Europe/Sarajevo' AS hi
) b
JOIN LATERAL (
    SELECT x.register, max(x.value_milli) AS peak, min(x.read_at) AS first_at
    FROM readings x
    WHERE x.meter_id = i.meter_id AND x.register = ANY(%(registers)s)
      AND x.read_at > b.lo AND x.read_at <= b.hi AND x.read_at >= i.installed_at
      AND x.read_at <= coalesce(i.removed_at, 'infinity')
    GROUP BY x.register
) r ON true
WHERE (%(tariffs)s::text[] IS NULL OR c.tariff_code = ANY(%(tariffs)s)) AND {_ACTIVE}
  AND {_NOT_INVOICED}
  AND (%(customers)s::text[] IS NULL OR c.customer_id = ANY(%(customers)s))
GROUP BY c.contract_id, r.register
"""

_UNBILLED = """
SELECT count(*) FROM (
    SELECT DISTINCT d.metering_point_id, d.service, d.local_day
    FROM daily_consumption d
    WHERE d.local_day >= %(first)s AND d.local_day < %(end)s AND d.quantity_milli <> 0
      AND NOT EXISTS (
          SELECT 1 FROM contracts c
          WHERE c.metering_point_id = d.metering_point_id AND c.service = d.service
            AND d.local_day >= c.valid_from AND (c.valid_to IS NULL OR d.local_day <= c.valid_to))
) AS days
"""


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
    with conn.transaction():
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
        # written and booked chunk by chunk, in order (the same invoice and entry numbers as
        # at once), while worker processes compute the next chunks
        for chunk in _rendered_chunks(inputs):
            if not chunk:
                continue
            if last_seq + len(drafts) + len(chunk) > MAX_SEQ:
                raise BillingError(f"invoice numbers of {issued_on.year} would pass {MAX_SEQ}")
            _write(conn, chunk, issued_on, payment_days, last_seq + len(drafts))
            chart = chart or load_chart()
            post_invoices(conn, _ledger_totals(chunk, issued_on, last_seq + len(drafts)),
                          chart=chart)
            drafts.extend(chunk)
        if drafts:
            conn.execute("UPDATE invoice_counters SET last_seq = %s WHERE year = %s",
                         (last_seq + len(drafts), issued_on.year))
            written = _written(drafts, issued_on, payment_days, last_seq)
            for step in default_after_write() if after_write is None else after_write:
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
        consumption, unbilled = _load_month(conn, args, breaks)
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


class Rendered(NamedTuple):
    """A draft as the close writes it: its totals, net per service (for the ledger) and
    its lines and VAT rows as COPY text, without the invoice number (given at writing)."""

    customer_id: str
    period: str
    net_fen: int
    vat_fen: int
    total_fen: int
    nets: tuple[tuple[str, int], ...]
    lines: str  # "line_no\tservice\t…" rows joined by "\n"
    vat: str  # "vat_rate\tbase_fen\tvat_fen" rows joined by "\n"


def _render(d: InvoiceDraft) -> Rendered:
    t = _text
    nets: dict[str, int] = {}
    for ln in d.lines:
        nets[ln.service] = nets.get(ln.service, 0) + ln.amount_fen
    lines = "\n".join(
        f"{no}\t{t(ln.service)}\t{t(ln.metering_point_id)}\t{t(ln.component)}"
        f"\t{t(ln.register)}\t{t(ln.description)}\t{ln.quantity_milli}\t{t(ln.unit)}"
        f"\t{ln.unit_price_micro}\t{ln.amount_fen}\t{t(ln.vat_rate)}"
        for no, ln in enumerate(d.lines, start=1))
    vat = "\n".join(f"{t(v.vat_rate)}\t{v.base_fen}\t{v.vat_fen}" for v in d.vat)
    return Rendered(d.customer_id, d.period, d.net_fen, d.vat_fen, d.total_fen,
                    tuple(nets.items()), lines, vat)


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


class _CachedCatalog(Catalog):
    """The catalog with its look-ups memoized for one close (it cannot change meanwhile)."""

    def __init__(self, base: Catalog) -> None:
        super().__init__(base.versions)
        self._on: dict[tuple[str, date], TariffVersion] = {}
        self._between: dict[tuple[str, date, date], list[TariffVersion]] = {}

    def version_on(self, tariff_code: str, day: date) -> TariffVersion:
        key = (tariff_code, day)
        found = self._on.get(key)
        if found is None:
            found = self._on[key] = super().version_on(tariff_code, day)
        return found

    def versions_between(self, tariff_code: str, first: date, end: date) -> list[TariffVersion]:
        key = (tariff_code, first, end)
        found = self._between.get(key)
        if found is None:
            found = self._between[key] = super().versions_between(tariff_code, first, end)
        return found


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


def _written(drafts: Sequence[Rendered], issued_on: date, payment_days: int, last_seq: int
             ) -> list[WrittenInvoice]:
    due_on = issued_on + timedelta(days=payment_days)
    return [WrittenInvoice(f"{issued_on.year}-{seq:06d}", d.customer_id, d.period, issued_on,
                           due_on, d.net_fen, d.vat_fen, d.total_fen)
            for seq, d in enumerate(drafts, start=last_seq + 1)]


def _scalar(conn: psycopg.Connection, query: str, params: Any) -> int:
    row = conn.execute(query, params).fetchone()
    return int(row[0]) if row else 0


def _load_contracts(conn: psycopg.Connection, args: dict[str, object]
                    ) -> dict[str, list[ContractInput]]:
    out: dict[str, list[ContractInput]] = defaultdict(list)
    for customer_id, *rest in conn.execute(_CONTRACTS, args):
        out[customer_id].append(ContractInput(*rest))
    return out


def _overlapping(conn: psycopg.Connection, args: dict[str, object]) -> dict[str, str]:
    out: dict[str, str] = {}
    for cust_a, cust_b, con_a, con_b, mp, service in conn.execute(_OVERLAPS, args):
        why = f"contracts {con_a} and {con_b} overlap on metering point {mp} ({service})"
        out.setdefault(cust_a, why)
        out.setdefault(cust_b, why)
    return out


def _price_breaks(catalog: Catalog, contracts: dict[str, list[ContractInput]], first: date,
                  end: date) -> list[date]:
    """The first day of the month and every day on which a tariff in use starts a new
    version or changes which components apply (season). Between two breaks every day of a
    tariff is priced alike, so its consumption can be summed before pricing; a tiered or
    reactive component changing on the 15th gets the days before and after apart."""
    tariffs = {c.tariff_code for cs in contracts.values() for c in cs}
    breaks = {first}
    for tariff in tariffs:
        previous: object = None
        day = first
        while day < end:
            try:
                v = catalog.version_on(tariff, day)
                key: object = (v.valid_from,
                               tuple(c.code for c in v.components if c.applies_on(day)))
            except RatingError:
                key = None  # the calculation names the missing version
            if day > first and key != previous:
                breaks.add(day)
            previous = key
            day += timedelta(days=1)
    return sorted(breaks)


def _load_consumption(conn: psycopg.Connection, args: dict[str, object], breaks: list[date],
                      *, whole_month: bool = False) -> dict[str, list[DailyConsumption]]:
    """customer → consumption per contract, register and price bucket. `whole_month`: the
    close's query, cheaper when most of the month's rows are wanted (it sums every metering
    point's month before joining the contracts)."""
    if whole_month:
        return _load_month(conn, args, breaks)[0]
    out: dict[str, list[DailyConsumption]] = defaultdict(list)
    for customer_id, *rest in conn.execute(_CONSUMPTION, {**args, "breaks": breaks}):
        out[customer_id].append(DailyConsumption(*rest))
    return out


def _load_month(conn: psycopg.Connection, args: dict[str, object], breaks: list[date]
                ) -> tuple[dict[str, list[DailyConsumption]], int]:
    """`_load_consumption(whole_month=True)` and the unbilled days (`_UNBILLED`), in one
    pass over the month."""
    out: dict[str, list[DailyConsumption]] = defaultdict(list)
    unbilled = 0
    # room for the hashed `NOT IN` (else a subplan rescanned per row) in the preview too
    conn.execute("SET LOCAL work_mem = '256MB'")
    for customer_id, *rest in conn.execute(_CONSUMPTION_CLOSE, {**args, "breaks": breaks}):
        if customer_id is None:
            unbilled = int(rest[-1])
        else:
            out[customer_id].append(DailyConsumption(*rest))
    return out, unbilled


def _load_demand(conn: psycopg.Connection, args: dict[str, object], catalog: Catalog,
                 contracts: dict[str, list[ContractInput]], first: date, end: date,
                 customers: list[str] | None = None) -> dict[str, list[DailyConsumption]]:
    """customer → the maximum demand per contract and register (a `DailyConsumption` whose
    quantity is the month's maximum, its day the first with a read), for the contracts on
    tariffs with a ``billing_power`` component; no query when no tariff in use has one.
    With `customers` (a rate check, a simulation under another tariff): theirs, whatever
    their tariff."""
    tariffs: set[str] = set()
    registers: set[str] = set()
    codes = set(catalog.versions) if customers is not None else {
        c.tariff_code for cs in contracts.values() for c in cs}
    for code in codes:
        for version in catalog.versions_between(code, first, end):
            for comp in version.components_of_kind("billing_power"):
                tariffs.add(code)
                registers.update(comp.registers)
    out: dict[str, list[DailyConsumption]] = defaultdict(list)
    if not tariffs:
        return out
    params = {**args, "tariffs": None if customers is not None else sorted(tariffs),
              "registers": sorted(registers), "customers": customers}
    for customer_id, *rest in conn.execute(_DEMAND, params):
        out[customer_id].append(DailyConsumption(*rest))
    return out


def _ledger_totals(drafts: Sequence[InvoiceDraft | Rendered], issued_on: date, last_seq: int
                   ) -> list[InvoiceTotals]:
    out = []
    for seq, d in enumerate(drafts, start=last_seq + 1):
        r = d if isinstance(d, Rendered) else _render(d)
        out.append(InvoiceTotals(f"{issued_on.year}-{seq:06d}", r.customer_id, issued_on,
                                 dict(r.nets), r.vat_fen, r.total_fen))
    return out


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_BATCH = 20_000  # rows per write


def _text(value: object) -> str:
    """One field of COPY's text format: NULL as \\N, backslash and separators escaped."""
    if value is None:
        return "\\N"
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_COPY_ESCAPES)
    return text


def _copy_rows(cur: psycopg.Cursor[Any], statement: str, rows: Iterable[str]) -> None:
    """COPY of rows already formatted (tab-separated fields), written in large pieces: the
    close writes ~8 rows per invoice, and formatting them in bulk costs a fraction of
    `write_row` per row."""
    with cur.copy(statement) as copy:
        batch: list[str] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= _COPY_BATCH:
                copy.write("\n".join(batch) + "\n")
                batch.clear()
        if batch:
            copy.write("\n".join(batch) + "\n")


def _write(conn: psycopg.Connection, drafts: Sequence[InvoiceDraft | Rendered],
           issued_on: date, payment_days: int, last_seq: int) -> None:
    """COPY the invoices numbered from ``last_seq + 1``, their lines and VAT rows."""
    year = issued_on.year
    tail = f"\t{issued_on.isoformat()}\t{(issued_on + timedelta(days=payment_days)).isoformat()}"
    numbered = [(f"{year}-{seq:06d}", seq, d if isinstance(d, Rendered) else _render(d))
                for seq, d in enumerate(drafts, start=last_seq + 1)]
    t = _text
    with conn.cursor() as cur:
        _copy_rows(cur, "COPY invoices (invoice_number, year, seq, customer_id, period, kind,"
                        " issued_on, due_on, net_fen, vat_fen, total_fen, payment_reference,"
                        " status) FROM STDIN", (
            f"{number}\t{year}\t{seq}\t{t(r.customer_id)}\t{t(r.period)}\tinvoice{tail}\t"
            f"{r.net_fen}\t{r.vat_fen}\t{r.total_fen}\t{make_payment_reference(year, seq)}"
            "\tfinalized"
            for number, seq, r in numbered))
        _copy_rows(cur, "COPY invoice_lines (invoice_number, line_no, service,"
                        " metering_point_id, component, register, description, quantity_milli,"
                        " unit, unit_price_micro, amount_fen, vat_rate) FROM STDIN", (
            f"{number}\t" + r.lines.replace("\n", f"\n{number}\t")
            for number, _, r in numbered if r.lines))
        _copy_rows(cur, "COPY invoice_vat (invoice_number, vat_rate, base_fen, vat_fen)"
                        " FROM STDIN", (
            f"{number}\t" + r.vat.replace("\n", f"\n{number}\t")
            for number, _, r in numbered if r.vat))
