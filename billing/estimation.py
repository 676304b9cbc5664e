"""Estimated consumption at the close (procjena) for registers whose reads stop early.

At the close of period P, a register of an active electricity or water contract whose last
accepted read is before the end of P (or of the contract) has days nobody measured yet:
from the last read to the end. They are billed as an estimate, at the prices in force on
those days, in lines marked "(procjena)" — the same component codes as actual
consumption, so the period's invoice keeps "what was billed for P" in one place. Every
estimate is recorded in ``consumption_estimates`` (with its basis and, after the write,
its invoice number). When the actual read arrives, its interval fills those days in
``daily_consumption``, the period is queued for reconciliation (migration 0015) and
`billing.adjustments` bills actual − estimate on the next invoice.

The daily rate, first rule that has its data:

1. ``last_year_trend``: the same month a year earlier, scaled by the trend — the last three
   months against the same three months a year before (all of them fully measured);
2. ``recent_average``: the average per measured day of P and the three months before it
   (at least `MIN_DAYS` measured days);
3. ``profile``: the category's monthly quantity (`DEFAULT_PROFILE`, demo values) spread
   over P's days.

The quantity is rate × uncovered time (exact to the second, so a read at noon leaves half
a day), rounded half up once, then spread over the uncovered local days in proportion to
their uncovered seconds (each day priced with its own tariff version and season).
A register never read has no estimate: its start value is unknown, no advance can be
measured against it, and an estimate could never be reconciled. Load-profile meters
(1.8.0 split into VT/MT by the stream) are read every few minutes and are not estimated.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

import psycopg

from billing import BillingError
from billing.calculation import ContractInput, DailyConsumption, InvoiceLine, compute_invoice
from billing.close_hooks import CloseContext, ExtraLines, WrittenInvoice
from rating import RatingError
from rating.calendar import epoch_to_local_date, local_midnight_epoch, month_bounds
from rating.catalog import Catalog
from rating.money import round_half_up_div

SECONDS_PER_DAY = 86_400
MIN_DAYS = 7
ESTIMATE_MARK = " (procjena)"

# Monthly quantity (thousandths: Wh, litres) per tariff category and register, for a
# register without usable history. Demo values, to be set by the utility.
DEFAULT_PROFILE: Mapping[tuple[str, str], int] = {
    ("households", "1.8.1"): 250_000, ("households", "1.8.2"): 150_000,
    ("other_consumption_0_4kv", "1.8.1"): 600_000,
    ("other_consumption_0_4kv", "1.8.2"): 300_000,
    ("public_lighting", "1.8.0"): 1_500_000,
    ("water_households", "8.0"): 12_000, ("water_village", "8.0"): 10_000,
    ("water_business", "8.0"): 40_000,
}


@dataclass(frozen=True)
class MonthUsage:
    """Measured consumption of one register in one month: the sum and the days with data."""

    quantity_milli: int
    days: int


@dataclass(frozen=True)
class Rate:
    milli_per_day: Fraction
    basis: str  # last_year_trend | recent_average | profile


def shift_period(period: str, months: int) -> str:
    year, month = (int(x) for x in period.split("-"))
    index = year * 12 + month - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def days_in(period: str) -> int:
    first, end = month_bounds(period)
    return (end - first).days


def daily_rate(period: str, history: Mapping[str, MonthUsage],
               profile_month_milli: int | None) -> Rate | None:
    """The estimated daily consumption of a register in `period` from its measured
    `history` (period → usage), else its category's monthly profile; None if neither."""

    def full(p: str) -> bool:
        u = history.get(p)
        return u is not None and u.days >= days_in(p)

    recent = [shift_period(period, -k) for k in (3, 2, 1)]
    before = [shift_period(p, -12) for p in recent]
    last_year = shift_period(period, -12)
    if all(full(p) for p in (last_year, *recent, *before)):
        base = sum(history[p].quantity_milli for p in before)
        if base > 0:
            trend = Fraction(sum(history[p].quantity_milli for p in recent), base)
            per_day = Fraction(history[last_year].quantity_milli, days_in(last_year))
            return Rate(per_day * trend, "last_year_trend")
    window = [history[p] for p in (*recent, period) if p in history]
    days = sum(u.days for u in window)
    if days >= MIN_DAYS:
        return Rate(Fraction(sum(u.quantity_milli for u in window), days), "recent_average")
    if profile_month_milli is not None:
        return Rate(Fraction(profile_month_milli, days_in(period)), "profile")
    return None


def uncovered_seconds(start: int, stop: int) -> list[tuple[date, int]]:
    """The local days of [start, stop) (epoch seconds) with the seconds of each inside."""
    if stop <= start:
        return []
    out = []
    day = epoch_to_local_date(start)
    while True:
        day_start = local_midnight_epoch(day)
        day_end = local_midnight_epoch(day + timedelta(days=1))
        lo, hi = max(start, day_start), min(stop, day_end)
        if lo < hi:
            out.append((day, hi - lo))
        if day_end >= stop:
            return out
        day += timedelta(days=1)


def estimate_quantity(rate: Rate, seconds: int) -> int:
    r = rate.milli_per_day * seconds
    return round_half_up_div(r.numerator, r.denominator * SECONDS_PER_DAY)


def spread(quantity_milli: int, days: Sequence[tuple[date, int]]) -> list[tuple[date, int]]:
    """`quantity_milli` over `days` in proportion to their seconds; the parts sum exactly."""
    total = sum(s for _, s in days)
    out, done, cumulative = [], 0, 0
    for day, seconds in days:
        cumulative += seconds
        upto = quantity_milli * cumulative // total
        out.append((day, upto - done))
        done = upto
    return out


@dataclass(frozen=True)
class Uncovered:
    """One register of one contract with days after its last read (loader output)."""

    customer_id: str
    contract: ContractInput
    meter_id: str
    register: str
    start: int  # epoch seconds: the last read, or the start of the period / contract
    stop: int  # the end of the period or of the contract
    category: str


@dataclass(frozen=True)
class Estimate:
    place: Uncovered
    quantity_milli: int
    basis: str


def estimate(place: Uncovered, period: str, history: Mapping[str, MonthUsage],
             profile: Mapping[tuple[str, str], int]) -> Estimate | None:
    rate = daily_rate(period, history, profile.get((place.category, place.register)))
    if rate is None:
        return None
    return Estimate(place, estimate_quantity(rate, place.stop - place.start), rate.basis)


def estimate_invoice_lines(customer_id: str, period: str, estimates: Sequence[Estimate],
                           catalog: Catalog) -> list[InvoiceLine]:
    """The metered lines of one customer's estimates, priced day by day like actual
    consumption, described as estimates."""
    rows = [DailyConsumption(e.place.contract.metering_point_id, e.place.contract.service,
                             e.place.register, day, q)
            for e in estimates
            for day, q in spread(e.quantity_milli, uncovered_seconds(e.place.start,
                                                                     e.place.stop))]
    contracts = list({e.place.contract.contract_id: e.place.contract for e in estimates}
                     .values())
    draft = compute_invoice(customer_id, period, contracts, rows, catalog, metered_only=True)
    lines = [ln for ln in draft.lines if ln.quantity_milli or ln.amount_fen]
    for ln in lines:
        ln.description += ESTIMATE_MARK
    return lines


# --- database side: the close's line source and after-write step --------------------

_UNCOVERED = """
SELECT c.customer_id, c.contract_id, c.metering_point_id, c.service, c.tariff_code,
       c.valid_from, c.valid_to, mp.area_m2, mp.household_members, mi.meter_id, s.register,
       extract(epoch FROM s.last_read_at)::bigint
FROM contracts c
JOIN metering_points mp USING (metering_point_id)
JOIN meter_installations mi ON mi.metering_point_id = c.metering_point_id
     AND mi.installed_at < %(end_at)s AND (mi.removed_at IS NULL OR mi.removed_at >= %(end_at)s)
JOIN meters m ON m.meter_id = mi.meter_id AND m.service = c.service
JOIN meter_state s ON s.meter_id = mi.meter_id AND s.register = ANY (m.registers)
WHERE c.valid_from < %(end)s AND (c.valid_to IS NULL OR c.valid_to >= %(first)s)
  AND c.service IN ('electricity', 'water') AND s.last_read_at < %(end_at)s
"""

_HISTORY = """
SELECT d.metering_point_id, d.service, d.register, to_char(d.local_day, 'YYYY-MM'),
       sum(d.quantity_milli)::bigint, count(*)
FROM daily_consumption d
JOIN unnest(%s::text[], %s::text[], %s::text[]) AS k(mp, service, register)
  ON d.metering_point_id = k.mp AND d.service = k.service AND d.register = k.register
WHERE d.local_day >= %s AND d.local_day < %s
GROUP BY 1, 2, 3, 4
"""


def load_uncovered(ctx: CloseContext, customer_ids: Sequence[str]) -> list[Uncovered]:
    """Registers of the customers' contracts in the period read last before its end,
    limited to the registers their tariff prices."""
    wanted = set(customer_ids)
    end_at = local_midnight_epoch(ctx.end)
    args = {"first": ctx.first, "end": ctx.end, "end_at": _ts(end_at)}
    out = []
    for customer, *contract, meter, register, last_read in ctx.conn.execute(_UNCOVERED, args):
        if customer not in wanted:
            continue
        c = ContractInput(*contract)
        start = max(int(last_read), local_midnight_epoch(max(c.valid_from, ctx.first)))
        stop = end_at if c.valid_to is None or c.valid_to + timedelta(days=1) >= ctx.end \
            else local_midnight_epoch(c.valid_to + timedelta(days=1))
        if start >= stop:
            continue
        last_day = epoch_to_local_date(stop - 1)
        try:
            version = ctx.catalog.version_on(c.tariff_code, last_day)
        except RatingError:
            continue  # the close reports the contract's missing tariff itself
        if version.energy_component(register, last_day) is None \
                and version.tiered_component(register, last_day) is None:
            continue
        out.append(Uncovered(customer, c, meter, register, start, stop, version.category))
    return out


def load_history(conn: psycopg.Connection, places: Sequence[Uncovered], period: str
                 ) -> dict[tuple[str, str, str], dict[str, MonthUsage]]:
    keys = sorted({(p.contract.metering_point_id, p.contract.service, p.register)
                   for p in places})
    out: dict[tuple[str, str, str], dict[str, MonthUsage]] = defaultdict(dict)
    if not keys:
        return out
    first = month_bounds(shift_period(period, -15))[0]
    end = month_bounds(period)[1]
    for mp, service, register, month, qty, days in conn.execute(
            _HISTORY, ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
                       first, end)):
        out[(mp, service, register)][month] = MonthUsage(int(qty), int(days))
    return out


def estimate_lines(ctx: CloseContext, customer_ids: Sequence[str],
                   profile: Mapping[tuple[str, str], int] = DEFAULT_PROFILE) -> ExtraLines:
    """Line source: estimate lines for the registers of `customer_ids` not read to the end
    of the period; every estimate is recorded (its invoice number follows at write)."""
    ctx.conn.execute("DELETE FROM consumption_estimates WHERE period = %s"
                     " AND invoice_number IS NULL", (ctx.period,))
    places = load_uncovered(ctx, customer_ids)
    history = load_history(ctx.conn, places, ctx.period)
    per_customer: dict[str, list[Estimate]] = defaultdict(list)
    for place in places:
        key = (place.contract.metering_point_id, place.contract.service, place.register)
        found = estimate(place, ctx.period, history.get(key, {}), profile)
        if found is not None and found.quantity_milli > 0:
            per_customer[place.customer_id].append(found)
    result = ExtraLines()
    recorded = []
    for customer_id, estimates in sorted(per_customer.items()):
        try:
            result.lines[customer_id] = estimate_invoice_lines(customer_id, ctx.period,
                                                               estimates, ctx.catalog)
        except BillingError as exc:
            result.skipped[customer_id] = f"estimate: {exc}"
            continue
        recorded.extend(estimates)
    with ctx.conn.cursor() as cur, cur.copy(
            "COPY consumption_estimates (metering_point_id, service, register, period,"
            " customer_id, meter_id, estimated_from, estimated_to, quantity_milli, basis)"
            " FROM STDIN") as copy:
        for e in recorded:
            p = e.place
            copy.write_row((p.contract.metering_point_id, p.contract.service, p.register,
                            ctx.period, p.customer_id, p.meter_id, _ts(p.start), _ts(p.stop),
                            e.quantity_milli, e.basis))
    return result


def link_estimates(ctx: CloseContext, written: Sequence[WrittenInvoice]) -> None:
    """After-write step: the invoice number of every estimate of the invoiced customers;
    the estimates of customers left out are dropped (a later run estimates again)."""
    if not _exists(ctx.conn, "SELECT EXISTS (SELECT 1 FROM consumption_estimates"
                             " WHERE period = %s AND invoice_number IS NULL)", ctx.period):
        return
    ctx.conn.execute(
        """UPDATE consumption_estimates e SET invoice_number = w.number
           FROM unnest(%s::text[], %s::text[]) AS w(number, customer_id)
           WHERE e.customer_id = w.customer_id AND e.period = %s
             AND e.invoice_number IS NULL""",
        ([w.invoice_number for w in written], [w.customer_id for w in written], ctx.period))
    ctx.conn.execute("DELETE FROM consumption_estimates WHERE period = %s"
                     " AND invoice_number IS NULL", (ctx.period,))


def _exists(conn: psycopg.Connection, query: str, *args: object) -> bool:
    row = conn.execute(query, args).fetchone()
    return bool(row and row[0])


def _ts(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()
