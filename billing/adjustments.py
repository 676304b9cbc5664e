"""Adjustments of closed periods on the next invoice (korekcija, ispravka cijene).

A finalized invoice never changes. When the data of an invoiced period Q changes — a late
read, an estimate now covered by the actual read, an operator's read edit — or its tariff
is corrected (`billing.tariff_corrections`), the next close of the customer re-rates Q
from the current ``daily_consumption`` with `compute_invoice` (and the corrected catalog)
and bills the DIFFERENCE against what was billed for Q: Q's invoice lines (estimates
included) plus the adjustments of Q billed since. One line per (metering point, register,
component, price): its quantity is the quantity difference, its amount the amount
difference (so over any number of corrections the amounts billed for Q add up to exactly
Q re-rated once; the amount may differ by a fening from quantity × price).

Which periods: a trigger on ``daily_consumption`` (migration 0015) queues (metering point,
service, period) in ``rebill_queue`` when an invoiced period's days change; a tariff
correction queues the periods it covers. The close reads only that queue — never the
history. A period with an estimate waits in the queue until the estimated register is
read up to the end of the estimate (then it is reconciled once, completely).
Only metered lines (kWh, m³ and their social discounts) are compared for data changes:
fees do not depend on reads; a tariff correction compares the monthly fees too. Billing
power (kW, from 1.6.0 reads) and excess reactive energy are not re-rated here.
A credited and reissued period: the reissue is computed from current data; adjustments
of that period billed before stay counted as billed, so its next change credits them.

Adjustment lines carry the component code prefixed with ``korekcija:`` (so Q's own
lines are told apart from the adjustments of other periods on the same invoice), the
service and VAT rate of the re-rated line (the ledger books nets per service), and are
recorded in ``rebill_adjustments`` with the period they correct.

A net credit: an invoice with a negative total is not issued. If a customer's adjustments
would make the invoice of the period negative, they are held back in the queue (the
customer is invoiced without them) and billed at the first close whose invoice absorbs
them; `waiting_periods` lists what waits (e.g. a customer who moved out: refund by hand).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import psycopg

from billing import BillingError, closer
from billing.calculation import (
    SERVICE_ORDER,
    ContractInput,
    DailyConsumption,
    InvoiceLine,
    compute_invoice,
    with_extra_lines,
)
from billing.close_hooks import CloseContext, ExtraLines, WrittenInvoice
from billing.estimation import ESTIMATE_MARK, estimate_lines, link_estimates
from billing.tariff_corrections import corrected_catalog, corrections_for, load_corrections
from rating.calendar import month_bounds
from rating.catalog import Catalog
from rating.money import format_price, format_quantity

PREFIX = "korekcija:"
METERED_UNITS = ("kWh", "m3", "%")  # "%": the social discount of a metered line
FEE_KINDS = ("fixed_monthly", "per_m2_month")
_UNITS = {"m3": "m³"}

Key = tuple[str, str, str | None, str, str, int, Decimal]


def line_key(line: InvoiceLine) -> Key:
    component = line.component.removeprefix(PREFIX)
    return (line.service, line.metering_point_id, line.register, component, line.unit,
            line.unit_price_micro, line.vat_rate)


def difference_lines(period: str, billed: Iterable[InvoiceLine],
                     rerated: Iterable[InvoiceLine], *, tariff_note: str | None = None
                     ) -> list[InvoiceLine]:
    """The lines that bring what was `billed` for `period` to what it is `rerated` to now,
    one per (service, metering point, register, component, unit, price, VAT rate) whose
    quantity or amount differs. `tariff_note` (why the tariff was corrected) marks price
    lines that exist on one side only as "Ispravka cijene"."""
    acc: dict[Key, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # bq, ba, rq, ra
    names: dict[Key, str] = {}
    sides: dict[Key, set[str]] = defaultdict(set)
    for side, lines in (("r", rerated), ("b", billed)):
        for ln in lines:
            key = line_key(ln)
            names.setdefault(key, _base_description(ln.description))
            sides[key].add(side)
            a = acc[key]
            offset = 0 if side == "b" else 2
            a[offset] += ln.quantity_milli
            a[offset + 1] += ln.amount_fen
    out = []
    for key in sorted(acc, key=_order):
        bq, ba, rq, ra = acc[key]
        if bq == rq and ba == ra:
            continue
        service, mp, register, component, unit, price, rate = key
        text = _explain(period, names[key], unit, price, bq, rq, sides[key], tariff_note)
        out.append(InvoiceLine(service, mp, PREFIX + component, register, text, rq - bq, unit,
                               price, ra - ba, rate))
    return out


def _base_description(text: str) -> str:
    return text.removesuffix(ESTIMATE_MARK)


def _order(key: Key) -> tuple[object, ...]:
    service, mp, register, component, unit, price, rate = key
    return (SERVICE_ORDER.get(service, 9), mp, register is None, register or "", component,
            price, rate)


def _explain(period: str, name: str, unit: str, price: int, billed: int, now: int,
             sides: set[str], tariff_note: str | None) -> str:
    u = _UNITS.get(unit, unit)
    if unit == "%":  # a discount: its "price" is the amount it discounts
        storno = " — storno" if sides == {"b"} else ""
        return f"Korekcija za {period}: {name} na {format_price(price)} KM{storno}"
    if tariff_note is not None and len(sides) == 1:
        if sides == {"b"}:
            return (f"Ispravka cijene za {period}: {name} — storno {format_quantity(billed)}"
                    f" {u} po {format_price(price)} KM ({tariff_note})")
        return (f"Ispravka cijene za {period}: {name} — {format_quantity(now)} {u} po"
                f" {format_price(price)} KM ({tariff_note})")
    return (f"Korekcija za {period}: {name} — obračunato {format_quantity(billed)} {u},"
            f" prema očitanjima {format_quantity(now)} {u}")


# --- database side --------------------------------------------------------------------

_ONE = "c.customer_id = %(customer)s"
_CONTRACTS = closer._CONTRACTS.replace(closer._NOT_INVOICED, _ONE)
_CONSUMPTION = closer._CONSUMPTION.replace(closer._NOT_INVOICED, _ONE)
if _CONTRACTS == closer._CONTRACTS or _CONSUMPTION == closer._CONSUMPTION:
    raise ImportError("billing.closer queries changed: adjustments cannot reuse them")

_OPEN = """NOT EXISTS (SELECT 1 FROM credit_notes n WHERE n.invoice_number = i.invoice_number)"""

# queued places of earlier periods, their owners (customers with an open invoice for the
# period and a contract on the place in it), and whether an estimate still waits for reads
_QUEUE = f"""
SELECT q.metering_point_id, q.service, q.period, c.customer_id,
       EXISTS (SELECT 1 FROM consumption_estimates e
               LEFT JOIN meter_state s ON s.meter_id = e.meter_id AND s.register = e.register
               WHERE e.metering_point_id = q.metering_point_id AND e.service = q.service
                 AND e.period = q.period AND e.invoice_number IS NOT NULL
                 AND (s.last_read_at IS NULL OR s.last_read_at < e.estimated_to))
FROM rebill_queue q
JOIN contracts c ON c.metering_point_id = q.metering_point_id AND c.service = q.service
     AND c.valid_from < (to_date(q.period, 'YYYY-MM') + INTERVAL '1 month')::date
     AND (c.valid_to IS NULL OR c.valid_to >= to_date(q.period, 'YYYY-MM'))
WHERE q.period = ANY(%s) AND EXISTS (
    SELECT 1 FROM invoices i WHERE i.customer_id = c.customer_id AND i.period = q.period
      AND i.kind = 'invoice' AND {_OPEN})
"""

_BILLED_LINES = f"""
SELECT l.service, l.metering_point_id, l.component, l.register, l.description,
       l.quantity_milli, l.unit, l.unit_price_micro, l.amount_fen, l.vat_rate
FROM invoices i JOIN invoice_lines l USING (invoice_number)
WHERE i.customer_id = %(customer)s AND i.period = %(period)s AND i.kind = 'invoice'
  AND {_OPEN} AND l.component NOT LIKE 'korekcija:%%'
UNION ALL
SELECT a.service, a.metering_point_id, a.component, a.register, a.component,
       a.quantity_milli, a.unit, a.unit_price_micro, a.amount_fen, a.vat_rate
FROM rebill_adjustments a JOIN invoices i USING (invoice_number)
WHERE a.customer_id = %(customer)s AND a.target_period = %(period)s AND {_OPEN}
"""


@dataclass(frozen=True)
class Correction:
    """The adjustment of one customer's period Q for some of its places."""

    customer_id: str
    period: str
    places: frozenset[tuple[str, str]]  # (metering point, service)
    lines: list[InvoiceLine]
    cause: str  # data | tariff


def rerate(conn: psycopg.Connection, customer_id: str, period: str,
           places: frozenset[tuple[str, str]], catalog: Catalog, *, fees: frozenset[str]
           ) -> list[InvoiceLine]:
    """The customer's period computed now: the metered lines of `places` and the fee
    components named in `fees`. Billing power (kW) and reactive energy are not re-rated
    (their data is not in daily_consumption)."""
    first, end = month_bounds(period)
    args = {"period": period, "first": first, "end": end, "customer": customer_id}
    contracts = [ContractInput(*rest) for _, *rest in conn.execute(_CONTRACTS, args)]
    contracts = [c for c in contracts if (c.metering_point_id, c.service) in places]
    breaks = closer._price_breaks(catalog, {customer_id: contracts}, first, end)
    consumption = [DailyConsumption(*rest) for _, *rest in
                   conn.execute(_CONSUMPTION, {**args, "breaks": breaks})
                   if (rest[0], rest[1]) in places]
    draft = compute_invoice(customer_id, period, contracts, consumption, catalog)
    return [ln for ln in draft.lines if _compared(ln, fees)]


def billed_lines(conn: psycopg.Connection, customer_id: str, period: str,
                 places: frozenset[tuple[str, str]], *, fees: frozenset[str]
                 ) -> list[InvoiceLine]:
    rows = conn.execute(_BILLED_LINES, {"customer": customer_id, "period": period})
    lines = [InvoiceLine(*r) for r in rows]
    return [ln for ln in lines if (ln.metering_point_id, ln.service) in places
            and _compared(ln, fees)]


def _compared(line: InvoiceLine, fees: frozenset[str]) -> bool:
    """Metered lines (kWh, m³, their discounts), and the fee components named in `fees`."""
    return line.unit in METERED_UNITS or line.component.removeprefix(PREFIX) in fees


def fee_codes(catalog: Catalog, tariff_codes: Iterable[str], first: date, end: date
              ) -> frozenset[str]:
    """The monthly fee components of the tariffs in [first, end)."""
    return frozenset(c.code for code in tariff_codes
                     for v in catalog.versions_between(code, first, end)
                     for c in v.components if c.kind in FEE_KINDS)


def find_corrections(ctx: CloseContext, candidates: Sequence[str]) -> list[Correction]:
    """Every queued period of earlier months that is ready, for customers the close may
    invoice (candidates, or without a contract and without an invoice for the period)."""
    # the queued periods are locked like a close of them (latest first, after the close's
    # own): a batch writing their days waits, so no change slips between re-rating a
    # period and settling its queue entry
    periods = [r[0] for r in ctx.conn.execute(
        "SELECT DISTINCT period FROM rebill_queue WHERE period < %s ORDER BY 1 DESC",
        (ctx.period,))]
    for period in periods:
        ctx.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                         (f"billing.close:{period}",))
    owners: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
    for mp, service, period, customer, incomplete in ctx.conn.execute(_QUEUE, (periods,)):
        if not incomplete:  # an estimate not yet covered by reads waits in the queue
            owners[(customer, period)].add((mp, service))
    if not owners:
        return []
    allowed = set(candidates)
    others = sorted({c for c, _ in owners if c not in allowed})
    if others:
        allowed |= set(others) - {r[0] for r in ctx.conn.execute(
            "SELECT customer_id FROM invoices WHERE period = %s AND kind = 'invoice'"
            " AND customer_id = ANY(%s)", (ctx.period, others))}
    corrections = load_corrections(ctx.conn)
    out = []
    for (customer, period), place_set in sorted(owners.items()):
        if customer not in allowed:
            continue
        places = frozenset(place_set)
        first, end = month_bounds(period)
        codes = _tariffs_of(ctx.conn, customer, places, first, end)
        applied = corrections_for(corrections, codes, first, end)
        catalog = corrected_catalog(ctx.catalog, applied) if applied else ctx.catalog
        note = "; ".join(f"ispravka #{c.correction_id}: {c.reason}" for c in applied) or None
        fees = fee_codes(catalog, codes, first, end) if applied else frozenset()
        now = rerate(ctx.conn, customer, period, places, catalog, fees=fees)
        before = billed_lines(ctx.conn, customer, period, places, fees=fees)
        lines = difference_lines(period, before, now, tariff_note=note)
        out.append(Correction(customer, period, places, lines, "tariff" if applied else "data"))
    return out


def _tariffs_of(conn: psycopg.Connection, customer: str, places: frozenset[tuple[str, str]],
                first: date, end: date) -> set[str]:
    rows = conn.execute(
        "SELECT metering_point_id, service, tariff_code FROM contracts WHERE customer_id = %s"
        " AND valid_from < %s AND (valid_to IS NULL OR valid_to >= %s)", (customer, end, first))
    return {code for mp, service, code in rows if (mp, service) in places}


def rebill_lines(ctx: CloseContext, candidates: Sequence[str]) -> ExtraLines:
    """The close's line source of issue #4: estimates of the period, then adjustments of
    earlier periods. Pair it with `rebill_after_write`."""
    estimates = estimate_lines(ctx, candidates)
    adjustments = adjustment_lines(ctx, candidates, estimates.lines)
    for customer, lines in adjustments.lines.items():
        estimates.lines[customer] = [*estimates.lines.get(customer, []), *lines]
    estimates.skipped.update(adjustments.skipped)
    return estimates


def rebill_after_write(ctx: CloseContext, written: Sequence[WrittenInvoice]) -> None:
    """The close's after-write step of issue #4: invoice numbers of estimates and
    adjustments, settled queue entries."""
    link_estimates(ctx, written)
    link_adjustments(ctx, written)


def adjustment_lines(ctx: CloseContext, candidates: Sequence[str],
                     other: Mapping[str, Sequence[InvoiceLine]] | None = None) -> ExtraLines:
    """Line source: the adjustments of every ready queued period for the customers this
    close invoices; a net credit the invoice cannot absorb waits (see the module text).
    `other`: lines other sources add to the same invoices (counted in that check)."""
    ctx.conn.execute("DELETE FROM rebill_adjustments WHERE invoice_number IS NULL")
    found = find_corrections(ctx, candidates)
    per_customer: dict[str, list[Correction]] = defaultdict(list)
    for corr in found:
        if corr.lines:
            per_customer[corr.customer_id].append(corr)
    pending = {(p, c.period) for cs in per_customer.values() for c in cs for p in c.places}
    done = sorted({(p, c.period) for c in found if not c.lines for p in c.places} - pending)
    if done:  # nothing changed after all: those queue entries are settled
        ctx.conn.execute(
            "DELETE FROM rebill_queue WHERE (metering_point_id, service, period) IN"
            " (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))",
            ([p[0] for p, _ in done], [p[1] for p, _ in done], [q for _, q in done]))
    result = ExtraLines()
    rows: list[tuple[str, Correction, InvoiceLine]] = []
    for customer, corrs in sorted(per_customer.items()):
        lines = [ln for c in corrs for ln in c.lines]
        also = list((other or {}).get(customer, ()))
        if sum(ln.amount_fen for ln in lines) < 0 \
                and _total_with(ctx, customer, [*also, *lines]) < 0:
            continue  # held back: the credit waits in the queue for a larger invoice
        result.lines[customer] = lines
        rows.extend((customer, c, ln) for c in corrs for ln in c.lines)
    with ctx.conn.cursor() as cur, cur.copy(
            "COPY rebill_adjustments (customer_id, billed_in, target_period, service,"
            " metering_point_id, component, register, unit, unit_price_micro, vat_rate,"
            " quantity_milli, amount_fen, cause) FROM STDIN") as copy:
        for customer, c, ln in rows:
            copy.write_row((customer, ctx.period, c.period, ln.service, ln.metering_point_id,
                            ln.component.removeprefix(PREFIX), ln.register, ln.unit,
                            ln.unit_price_micro, ln.vat_rate, ln.quantity_milli,
                            ln.amount_fen, c.cause))
    return result


def _total_with(ctx: CloseContext, customer: str, lines: list[InvoiceLine]) -> int:
    """The total of the customer's invoice for the period with `lines` added (its own
    lines computed like the close does; other sources' lines are not counted)."""
    args = {"period": ctx.period, "first": ctx.first, "end": ctx.end, "customer": customer}
    contracts = [ContractInput(*rest) for _, *rest in ctx.conn.execute(_CONTRACTS, args)]
    breaks = closer._price_breaks(ctx.catalog, {customer: contracts}, ctx.first, ctx.end)
    consumption = [DailyConsumption(*rest) for _, *rest in
                   ctx.conn.execute(_CONSUMPTION, {**args, "breaks": breaks})]
    try:
        draft = compute_invoice(customer, ctx.period, contracts, consumption, ctx.catalog)
    except BillingError:
        return -1  # the close skips this customer anyway
    return with_extra_lines(draft, lines).total_fen


def link_adjustments(ctx: CloseContext, written: Sequence[WrittenInvoice]) -> None:
    """After-write step: the invoice number of every adjustment billed; the queue entries
    they settle are done unless an owner left out still waits for its line."""
    row = ctx.conn.execute("SELECT EXISTS (SELECT 1 FROM rebill_adjustments"
                           " WHERE billed_in = %s AND invoice_number IS NULL)",
                           (ctx.period,)).fetchone()
    if not (row and row[0]):
        return
    ctx.conn.execute(
        """UPDATE rebill_adjustments a SET invoice_number = w.number
           FROM unnest(%s::text[], %s::text[]) AS w(number, customer_id)
           WHERE a.customer_id = w.customer_id AND a.billed_in = %s
             AND a.invoice_number IS NULL""",
        ([w.invoice_number for w in written], [w.customer_id for w in written], ctx.period))
    ctx.conn.execute(
        """DELETE FROM rebill_queue q
           WHERE EXISTS (SELECT 1 FROM rebill_adjustments a
                         WHERE a.billed_in = %(p)s AND a.invoice_number = ANY(%(numbers)s)
                           AND a.target_period = q.period
                           AND a.metering_point_id = q.metering_point_id
                           AND a.service = q.service)
             AND NOT EXISTS (SELECT 1 FROM rebill_adjustments a
                             WHERE a.invoice_number IS NULL AND a.target_period = q.period
                               AND a.metering_point_id = q.metering_point_id
                               AND a.service = q.service)""",
        {"p": ctx.period, "numbers": [w.invoice_number for w in written]})
    ctx.conn.execute("DELETE FROM rebill_adjustments WHERE invoice_number IS NULL")


def waiting_periods(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """Queued (metering point, service, period) still waiting, oldest first."""
    return [(r[0], r[1], r[2]) for r in conn.execute(
        "SELECT metering_point_id, service, period FROM rebill_queue ORDER BY period, 1, 2")]
