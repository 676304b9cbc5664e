"""One customer's invoice for one month, from plain data (pure: no database, no clock).

Energy (kWh, m³) is priced day by day with the component in force on that day and summed
into one line per (metering point, register, component, unit price); the amount is rounded
half up once per line. Monthly fees are prorated by the contract's days in the month
(``price × days / days_in_month``), per tariff version when the price changes mid-month.
VAT is computed per rate on the sum of that rate's net lines; every component may carry its
own rate (`TariffVersion.vat_rate_of`).
The other kinds (tiers, billing power, excess reactive energy, minimum charge) are priced
in `billing.calculation_depth`; a component's ``discount_percent`` becomes a negative line
"Popust (socijalna kategorija) x %" right under the line(s) it discounts (quantity: the
percent, unit ``%``, unit price: the discounted amount).

Most customers take a shorter path to the same draft (`_simple_invoice`, see there).

The records are plain (not frozen) slotted dataclasses: a close builds hundreds of
thousands of them and frozen ones cost several times more to create. Treat them as values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from billing import BillingError
from rating import RatingError
from rating.calendar import month_bounds
from rating.catalog import TIERED_KINDS, Catalog, Component, TariffVersion
from rating.demand import discount_fen
from rating.money import line_amount_fen, round_half_up_div, vat_fen

SERVICE_ORDER = {"electricity": 0, "water": 1, "waste": 2}
_FEE_KINDS = frozenset(("fixed_monthly", "per_m2_month"))
DEPTH_KINDS = frozenset((*TIERED_KINDS, "billing_power", "reactive_excess", "minimum_charge"))
_MICRO_PER_FEN = 10_000
_NANO_PER_FEN = 10_000_000  # quantity (thousandths) × price (micro-KM) → fen
# order of lines within a metering point: metered (energy, tiers), power, reactive, fees
RANK_METERED, RANK_POWER, RANK_REACTIVE, RANK_FEE = 0, 1, 2, 3


@dataclass(slots=True)
class ContractInput:
    """A contract active in the period, with its metering point's attributes."""

    contract_id: str
    metering_point_id: str
    service: str
    tariff_code: str
    valid_from: date
    valid_to: date | None  # inclusive; None = open-ended
    area_m2: Decimal | None = None
    household_members: int | None = None


@dataclass(slots=True)
class DailyConsumption:
    metering_point_id: str
    service: str
    register: str
    local_day: date
    quantity_milli: int


@dataclass(slots=True)
class InvoiceLine:
    service: str
    metering_point_id: str
    component: str
    register: str | None
    description: str
    quantity_milli: int
    unit: str  # kWh | m3 | month | m2
    unit_price_micro: int
    amount_fen: int
    vat_rate: Decimal


@dataclass(slots=True)
class VatRow:
    vat_rate: Decimal
    base_fen: int
    vat_fen: int


@dataclass(frozen=True)
class InvoiceDraft:
    customer_id: str
    period: str
    lines: list[InvoiceLine]
    vat: list[VatRow]
    net_fen: int
    vat_fen: int
    total_fen: int


@dataclass(slots=True)
class _Energy:
    component: Component
    vat_rate: Decimal
    first: date
    last: date
    quantity_milli: int = 0


@dataclass(slots=True)
class _Fee:
    component: Component
    vat_rate: Decimal
    area_centi: int | None
    first: date
    days: int = 0


_Span = tuple[ContractInput, date, date]  # contract, first active day, day after the last
# a line, its first day (order of split lines), rank, place within its group (tier) and the
# discount percent of its component
_Keyed = tuple[InvoiceLine, date, int, int, Decimal | None]


def compute_invoice(
    customer_id: str,
    period: str,
    contracts: Sequence[ContractInput],
    consumption: Iterable[DailyConsumption],
    catalog: Catalog,
    max_demand: Iterable[DailyConsumption] = (),
    *,
    metered_only: bool = False,
) -> InvoiceDraft:
    """The draft invoice of one customer for `period` ('YYYY-MM'). Consumption on days no
    contract of this customer covers is ignored (the closer reports it as unbilled).
    `max_demand`: maximum-demand rows (register 1.6.0, thousandths of kW, the maximum over
    the row's days), needed only by tariffs with a ``billing_power`` component.
    `metered_only`: only the lines of the given consumption (energy, tiers, their
    discounts) — for a partial quantity such as an estimate; fees, billing power, excess
    reactive energy and minimum charges belong to the month and are left out."""
    first, end = _month(period)
    rows = consumption if isinstance(consumption, list) else list(consumption)
    if not metered_only:
        draft = _simple_invoice(customer_id, period, contracts, rows, catalog, first, end)
        if draft is not None:
            return draft
    spans = _active_spans(_spans(contracts, first, end))
    depth_spans: list[_Span] = []
    keyed = _energy_lines(spans, rows, catalog)
    fees = _fee_lines(spans, catalog, first, end, depth_spans)
    if not metered_only:
        keyed += fees
    if depth_spans:
        # imported here: the depth module builds this module's records
        from billing import calculation_depth as depth

        runs = depth.component_runs(catalog, depth_spans)
        keyed += depth.depth_lines(runs, depth_spans, rows, max_demand, first, end,
                                   metered_only=metered_only)
        keyed.sort(key=_line_order)
        lines = _with_discounts(keyed)
        if not metered_only:
            lines = depth.with_minimum_charges(lines, runs, first, end)
    else:
        keyed.sort(key=_line_order)
        lines = _with_discounts(keyed)
    return _totals(customer_id, period, lines)


# The common customer — each contract alone on its metering point and service, one tariff
# version over its days, no component of `DEPTH_KINDS` — takes a shorter path
# (`_simple_invoice`): a span's version and fee lines come from one memo (`_PLANS`),
# each row finds its contract by its place, and the lines come out in the order
# `_line_order` gives without sorting them all: places by service and metering point, in
# each its energy lines by register (one per register here), then its fees (sorted in the
# plan). Anything else, and any error (which the general path words), returns None and goes
# the general way; both give the same draft (tests/unit/test_calculation_customers.py).
_FeeTemplate = tuple[str, int, Decimal, str, int, str, int, date]


class _Plan(NamedTuple):
    version: TariffVersion  # the one in force on every day of the span
    fees: tuple[_FeeTemplate, ...]  # in the order of `_line_order`
    # register → energy component and VAT rate, filled as registers come: the same
    # components apply on every day of the span (a season changes on a month's first day)
    energy: dict[str, tuple[Component | None, Decimal]]


# (id of the version in force, first day, day after the last, month, area) → the plan; None:
# not simple. A plan holds its version, so the id cannot be reused while the plan lives; a
# None only sends the span the general way, right for any version.
_PLANS: dict[tuple[object, ...], _Plan | None] = {}


def _new_plan(span: _Span, version: TariffVersion, catalog: Catalog, first: date
              ) -> _Plan | None:
    if _fees_of(version)[1]:
        return None
    end = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    try:
        fees = _grouped_fee_lines([span], catalog, first, end, [])
    except BillingError:
        return None
    _, start, stop = span
    applying = {tuple(c.applies_on(date.fromordinal(day)) for c in version.components)
                for day in range(start.toordinal(), stop.toordinal())}
    if len(applying) != 1:
        return None
    fees.sort(key=_line_order)
    return _Plan(version, tuple((ln.component, ln.unit_price_micro, ln.vat_rate,
                                 ln.description, ln.quantity_milli, ln.unit, ln.amount_fen, day)
                                for ln, day, _, _, _ in fees), {})


def _simple_invoice(customer_id: str, period: str, contracts: Sequence[ContractInput],
                    rows: list[DailyConsumption], catalog: Catalog, first: date, end: date
                    ) -> InvoiceDraft | None:
    # (mp, service) → first day, day after the last, plan, register → [component, VAT rate,
    # quantity] (one line per register: its first day orders nothing here)
    places: dict[tuple[str, str], tuple[date, date, _Plan, dict[str, list[Any]]]] = {}
    order = []
    for contract in contracts:  # their spans as `_spans` makes them
        service, mp = contract.service, contract.metering_point_id
        rank = SERVICE_ORDER.get(service)
        if rank is None:
            return None
        start = contract.valid_from if contract.valid_from > first else first
        last = contract.valid_to
        stop = end if last is None or last >= end else last + _ONE_DAY
        if start >= stop:
            continue
        if (mp, service) in places:
            return None
        versions = catalog.versions_between(contract.tariff_code, start, stop)
        if len(versions) != 1 or versions[0].valid_from > start:
            return None
        key = (id(versions[0]), start, stop, first, contract.area_m2)
        try:
            plan = _PLANS[key]
        except KeyError:
            plan = _new_plan((contract, start, stop), versions[0], catalog, first)
            if len(_PLANS) >= _MEMO_MAX:
                _PLANS.clear()
            _PLANS[key] = plan
        if plan is None:
            return None
        registers: dict[str, list[Any]] = {}
        places[mp, service] = (start, stop, plan, registers)
        order.append((rank, mp, service, registers, plan.fees))
    for row in rows:
        found = places.get((row.metering_point_id, row.service))
        if found is None:
            continue
        start, stop, plan, registers = found
        day = row.local_day
        if day < start or day >= stop:
            continue
        register = row.register
        price_of = plan.energy.get(register)
        if price_of is None:
            price_of = plan.energy[register] = _energy_price(plan.version, register, start)[:2]
        comp, rate = price_of
        if comp is None:
            if row.quantity_milli == 0:
                continue
            return None
        acc = registers.get(register)
        if acc is None:
            if not isinstance(register, str):
                return None
            registers[register] = [comp, rate, row.quantity_milli]
        else:  # the same component: one per register and plan
            acc[2] += row.quantity_milli
    order.sort()  # no two alike: one contract per (service, metering point)
    lines = []
    bases: dict[Decimal, int] = {}  # net per VAT rate
    for _, mp, service, registers, fees in order:
        for register in sorted(registers) if len(registers) > 1 else registers:
            comp, rate, quantity = registers[register]
            price = comp.price_micro
            amount = quantity * price
            if amount >= 0:  # `line_amount_fen`: half up, to the fening
                amount = (amount + _NANO_PER_FEN // 2) // _NANO_PER_FEN
            else:
                amount = line_amount_fen(quantity, price)
            line = InvoiceLine(service, mp, comp.code, register, comp.description, quantity,
                               comp.unit, price, amount, rate)
            lines.append(line)
            bases[rate] = bases.get(rate, 0) + amount
            if comp.discount_percent:  # its line right under the one line it discounts
                try:
                    for discount in _discount_line(line, comp.discount_percent, amount):
                        lines.append(discount)
                        bases[rate] += discount.amount_fen
                except RatingError:
                    return None  # a bad percent: the general path raises
        for code, price, rate, description, quantity, unit, amount, _ in fees:
            lines.append(InvoiceLine(service, mp, code, None, description, quantity, unit,
                                     price, amount, rate))
            bases[rate] = bases.get(rate, 0) + amount
    return _draft(customer_id, period, lines, bases)


_MONTHS: dict[str, tuple[date, date]] = {}  # a close asks for one period 100,000 times


def _month(period: str) -> tuple[date, date]:
    found = _MONTHS.get(period)
    if found is None:
        try:
            found = month_bounds(period)
        except ValueError as exc:
            raise BillingError(f"period: {exc}") from exc
        if len(_MONTHS) < 1000:
            _MONTHS[period] = found
    return found


def with_extra_lines(draft: InvoiceDraft, extra: Sequence[InvoiceLine]) -> InvoiceDraft:
    """`draft` with `extra` lines appended after its own and the totals made anew (VAT per
    rate over all lines)."""
    if not extra:
        return draft
    return _totals(draft.customer_id, draft.period, [*draft.lines, *extra])


def _spans(contracts: Sequence[ContractInput], first: date, end: date) -> list[_Span]:
    """The contracts active in [first, end), with their first day and the day after their
    last in it, in the order given."""
    spans: list[_Span] = []
    for c in contracts:
        if c.service not in SERVICE_ORDER:
            raise BillingError(f"contract {c.contract_id}: unknown service {c.service!r}")
        start = c.valid_from if c.valid_from > first else first
        last = c.valid_to
        stop = end if last is None or last >= end else last + _ONE_DAY
        if start < stop:
            spans.append((c, start, stop))
    return spans


_ONE_DAY = timedelta(days=1)


def _active_spans(spans: list[_Span]) -> list[_Span]:
    """`spans` by metering point, service and first day; `BillingError` if two on one
    metering point and service overlap."""
    if len(spans) < 2:
        return spans
    spans = sorted(spans, key=lambda s: (s[0].metering_point_id, s[0].service, s[1]))
    for (a, _, a_stop), (b, b_start, _) in zip(spans, spans[1:], strict=False):
        same_place = (a.metering_point_id, a.service) == (b.metering_point_id, b.service)
        if same_place and b_start < a_stop:
            raise BillingError(
                f"contracts {a.contract_id} and {b.contract_id} overlap on metering point "
                f"{a.metering_point_id} ({a.service}) from {b_start}"
            )
    return spans


def version_on(catalog: Catalog, c: ContractInput, day: date) -> TariffVersion:
    try:
        return catalog.version_on(c.tariff_code, day)
    except RatingError as exc:
        raise BillingError(f"contract {c.contract_id}: {exc}") from exc


def _energy_lines(
    spans: list[_Span], consumption: Iterable[DailyConsumption], catalog: Catalog
) -> list[_Keyed]:
    by_place: dict[tuple[str, str], list[_Span]] = {}
    for span in spans:
        by_place.setdefault((span[0].metering_point_id, span[0].service), []).append(span)
    groups: dict[tuple[str, str, str, str, int, Decimal], _Energy] = {}
    for row in consumption:
        contract = None
        day = row.local_day
        for c, start, stop in by_place.get((row.metering_point_id, row.service), ()):
            if start <= day < stop:
                contract = c
                break
        if contract is None:
            continue
        comp, rate, deep = _energy_price(version_on(catalog, contract, day), row.register, day)
        if comp is None:
            if row.quantity_milli == 0 or deep:
                continue
            raise BillingError(
                f"tariff {contract.tariff_code} has no energy price for register {row.register}"
                f" on {day} (contract {contract.contract_id}, metering point "
                f"{row.metering_point_id})"
            )
        key = (row.service, row.metering_point_id, row.register, comp.code, comp.price_micro,
               rate)
        acc = groups.get(key)
        if acc is None:
            acc = groups[key] = _Energy(comp, rate, day, day)
        elif day < acc.first:
            acc.first = day
        elif day > acc.last:
            acc.last = day
        acc.quantity_milli += row.quantity_milli
    places = [key[:4] for key in groups]
    split = _count(places) if len(set(places)) < len(places) else None
    lines: list[_Keyed] = []
    for (service, mp, register, code, price, rate), acc in groups.items():
        description = acc.component.description
        if split is not None and split[(service, mp, register, code)] > 1:
            # a price change inside the month
            description += f" ({acc.first:%d.%m.}–{acc.last:%d.%m.})"
        line = InvoiceLine(service, mp, code, register, description, acc.quantity_milli,
                           acc.component.unit, price,
                           line_amount_fen(acc.quantity_milli, price), rate)
        lines.append((line, acc.first, RANK_METERED, 0, acc.component.discount_percent))
    return lines


# Memos of what depends only on a tariff version (frozen) and a register or day: a close
# asks the same few questions 100,000 times. Keyed by the version's id, with the version
# itself kept in the value (so the id cannot be reused while the entry lives).
_MEMO_MAX = 100_000
_ENERGY_MEMO: dict[tuple[int, str, date],
                   tuple[TariffVersion, Component | None, Decimal, bool]] = {}
_FEES_MEMO: dict[int, tuple[TariffVersion, tuple[tuple[Component, Decimal], ...], bool]] = {}


def _energy_price(version: TariffVersion, register: str, day: date
                  ) -> tuple[Component | None, Decimal, bool]:
    """The energy component of `register` on `day` (None: none), its VAT rate and
    whether the register feeds a component priced in `billing.calculation_depth`."""
    key = (id(version), register, day)
    found = _ENERGY_MEMO.get(key)
    if found is None:
        comp = version.energy_component(register, day)
        rate = version.vat_rate if comp is None or comp.vat_rate is None else comp.vat_rate
        deep = comp is None and _depth_priced(version, register, day)
        if len(_ENERGY_MEMO) >= _MEMO_MAX:
            _ENERGY_MEMO.clear()
        found = _ENERGY_MEMO[key] = (version, comp, rate, deep)
    return found[1], found[2], found[3]


def _fees_of(version: TariffVersion) -> tuple[tuple[tuple[Component, Decimal], ...], bool]:
    """The version's fee components with their VAT rates, and whether it has a component
    of `DEPTH_KINDS`."""
    found = _FEES_MEMO.get(id(version))
    if found is None:
        fees = tuple((c, version.vat_rate if c.vat_rate is None else c.vat_rate)
                     for c in version.components if c.kind in _FEE_KINDS)
        deep = any(c.kind in DEPTH_KINDS for c in version.components)
        if len(_FEES_MEMO) >= _MEMO_MAX:
            _FEES_MEMO.clear()
        found = _FEES_MEMO[id(version)] = (version, fees, deep)
    return found[1], found[2]


def _depth_priced(version: TariffVersion, register: str, day: date) -> bool:
    """Whether `register` feeds a component priced in `billing.calculation_depth` (tiers,
    reactive energy; a demand register that reached the daily rollup is not energy)."""
    return any(c.kind in DEPTH_KINDS and register in c.registers and c.applies_on(day)
               for c in version.components)


def _count(keys: Iterable[tuple[str, ...]]) -> dict[tuple[str, ...], int]:
    out: dict[tuple[str, ...], int] = {}
    for k in keys:
        out[k] = out.get(k, 0) + 1
    return out


_FeePlan = tuple[tuple[TariffVersion, ...], bool,
                 tuple[tuple[str, int, Decimal, str, int, str, int, date], ...]]
_SPAN_FEES: dict[tuple[object, ...], _FeePlan] = {}


def _fee_lines(spans: list[_Span], catalog: Catalog, first: date, end: date,
               depth_spans: list[_Span]) -> list[_Keyed]:
    """The monthly fees; collects in `depth_spans` the spans whose tariff has a component
    of `DEPTH_KINDS`. Each span on a metering point of its own (the common case) takes its
    lines from a memo of the span's tariff versions, days and area; contracts following
    each other on one point share their fee lines (`_grouped_fee_lines`)."""
    if len({(s[0].metering_point_id, s[0].service) for s in spans}) < len(spans):
        return _grouped_fee_lines(spans, catalog, first, end, depth_spans)
    lines: list[_Keyed] = []
    for span in spans:
        contract, start, stop = span
        versions = catalog.versions_between(contract.tariff_code, start, stop)
        key = (contract.tariff_code, start, stop, first, end, contract.area_m2,
               *map(id, versions))
        plan = _SPAN_FEES.get(key)
        if plan is None:
            found: list[_Span] = []
            fees = _grouped_fee_lines([span], catalog, first, end, found)
            plan = (tuple(versions), bool(found),
                    tuple((ln.component, ln.unit_price_micro, ln.vat_rate, ln.description,
                           ln.quantity_milli, ln.unit, ln.amount_fen, day)
                          for ln, day, _, _, _ in fees))
            if len(_SPAN_FEES) >= _MEMO_MAX:
                _SPAN_FEES.clear()
            _SPAN_FEES[key] = plan
        if plan[1]:
            depth_spans.append(span)
        service, mp = contract.service, contract.metering_point_id
        for code, price, rate, description, quantity, unit, amount, day in plan[2]:
            lines.append((InvoiceLine(service, mp, code, None, description, quantity, unit,
                                      price, amount, rate), day, RANK_FEE, 0, None))
    return lines


def _grouped_fee_lines(spans: list[_Span], catalog: Catalog, first: date, end: date,
                       depth_spans: list[_Span]) -> list[_Keyed]:
    """The fee lines of `spans`, one per metering point, component, price, rate and area,
    over the days of all spans and tariff versions it applies to."""
    days_in_month = (end - first).days
    groups: dict[tuple[str, str, str, int, Decimal, int | None], _Fee] = {}
    for span in spans:
        contract, start, stop = span
        deep = False
        for version, seg_start, seg_stop in version_segments(catalog, contract, start, stop):
            fees, version_deep = _fees_of(version)
            deep = deep or version_deep
            for comp, rate in fees:
                area = _area_centi(contract) if comp.kind == "per_m2_month" else None
                key = (contract.service, contract.metering_point_id, comp.code, comp.price_micro,
                       rate, area)
                acc = groups.get(key)
                if acc is None:
                    acc = groups[key] = _Fee(comp, rate, area, seg_start)
                elif seg_start < acc.first:
                    acc.first = seg_start
                acc.days += (seg_stop - seg_start).days
        if deep:
            depth_spans.append(span)
    lines: list[_Keyed] = []
    for (service, mp, code, price, rate, area), acc in groups.items():
        description = acc.component.description
        if acc.days < days_in_month:
            description += f" ({acc.days}/{days_in_month} dana)"
        quantity, amount = _fee_figures(price, acc.days, days_in_month, area)
        line = InvoiceLine(service, mp, code, None, description, quantity,
                           "month" if area is None else "m2", price, amount, rate)
        lines.append((line, acc.first, RANK_FEE, 0, None))
    return lines


_FIGURES_MEMO: dict[tuple[int, int, int, int | None], tuple[int, int]] = {}


def _fee_figures(price: int, days: int, days_in_month: int, area: int | None
                 ) -> tuple[int, int]:
    """A fee line's quantity (months or m², thousandths) and amount: ``price × days /
    days_in_month`` (× the area in hundredths of m²), half up."""
    key = (price, days, days_in_month, area)
    found = _FIGURES_MEMO.get(key)
    if found is None:
        if area is None:
            found = (round_half_up_div(1000 * days, days_in_month),
                     round_half_up_div(price * days, days_in_month * _MICRO_PER_FEN))
        else:
            found = (area * 10, round_half_up_div(area * price * days,
                                                  100 * days_in_month * _MICRO_PER_FEN))
        if len(_FIGURES_MEMO) >= _MEMO_MAX:
            _FIGURES_MEMO.clear()
        _FIGURES_MEMO[key] = found
    return found


def version_segments(
    catalog: Catalog, contract: ContractInput, start: date, stop: date
) -> list[tuple[TariffVersion, date, date]]:
    """The tariff versions in force over [start, stop), each with the days it covers."""
    versions = catalog.versions_between(contract.tariff_code, start, stop)
    if len(versions) == 1 and versions[0].valid_from <= start:
        # the one version in force from `start` on: the last one begun by then
        return [(versions[0], start, stop)]
    version_on(catalog, contract, start)  # the first day must be covered (raises otherwise)
    out = []
    for i, v in enumerate(versions):
        seg_start = max(start, v.valid_from)
        seg_stop = min(stop, versions[i + 1].valid_from) if i + 1 < len(versions) else stop
        out.append((v, seg_start, seg_stop))
    return out


def _area_centi(contract: ContractInput) -> int:
    area = contract.area_m2
    if area is None:
        raise BillingError(
            f"metering point {contract.metering_point_id}: area_m2 is required by tariff "
            f"{contract.tariff_code} (contract {contract.contract_id})"
        )
    centi = Decimal(area) * 100
    if centi != centi.to_integral_value() or centi < 0:
        raise BillingError(
            f"metering point {contract.metering_point_id}: area_m2 must be ≥ 0 with at most "
            f"2 decimals, got {area}"
        )
    return int(centi)


def _line_order(keyed: _Keyed) -> tuple[object, ...]:
    # energy and tiers, then power, reactive energy and fees within a metering point; a
    # component split by a price change in date order, tiers in their order
    line, first_day, rank, sub, _ = keyed
    return (SERVICE_ORDER[line.service], line.metering_point_id, rank, line.register or "",
            line.component, first_day, sub)


def _with_discounts(keyed: list[_Keyed]) -> list[InvoiceLine]:
    """The sorted lines with a discount line under each discounted group (one energy line,
    or the tier lines of one component and period)."""
    if not any(k[4] for k in keyed):
        return [k[0] for k in keyed]
    out: list[InvoiceLine] = []
    group: tuple[object, ...] | None = None
    base: InvoiceLine | None = None
    percent = Decimal(0)
    amount = 0
    for line, first_day, _, _, pct in keyed:
        key = (line.service, line.metering_point_id, line.register, line.component, first_day)
        if base is not None and key != group:
            out.extend(_discount_line(base, percent, amount))
            base = None
        out.append(line)
        if pct:
            if base is None:
                group, base, percent, amount = key, line, pct, 0
            amount += line.amount_fen
    if base is not None:
        out.extend(_discount_line(base, percent, amount))
    return out


def _discount_line(base: InvoiceLine, percent: Decimal, amount_fen: int) -> list[InvoiceLine]:
    discount = discount_fen(amount_fen, percent)
    if not discount:
        return []
    shown = f"{percent.normalize():f}".replace(".", ",")
    return [InvoiceLine(base.service, base.metering_point_id, f"{base.component}_discount",
                        base.register, f"Popust (socijalna kategorija) {shown} %",
                        int(percent * 1000), "%", amount_fen * _MICRO_PER_FEN, discount,
                        base.vat_rate)]


def _totals(customer_id: str, period: str, lines: list[InvoiceLine]) -> InvoiceDraft:
    bases: dict[Decimal, int] = {}
    for line in lines:
        bases[line.vat_rate] = bases.get(line.vat_rate, 0) + line.amount_fen
    return _draft(customer_id, period, lines, bases)


def _draft(customer_id: str, period: str, lines: list[InvoiceLine], bases: dict[Decimal, int]
           ) -> InvoiceDraft:
    """The draft of `lines` with VAT per rate over `bases` (the net of the lines per rate,
    each rate as it first appears in `lines`)."""
    if len(bases) == 1:
        for rate, net in bases.items():
            tax = _vat_fen(net, rate)
            return InvoiceDraft(customer_id, period, lines, [VatRow(rate, net, tax)], net, tax,
                                net + tax)
    vat = [VatRow(rate, base, _vat_fen(base, rate)) for rate, base in sorted(bases.items())]
    net = tax = 0
    for row in vat:
        net += row.base_fen
        tax += row.vat_fen
    return InvoiceDraft(customer_id, period, lines, vat, net, tax, net + tax)


_WHOLE_RATES: dict[Decimal, int | None] = {}  # VAT rate → the rate as an integer, if it is one


def _vat_fen(base_fen: int, rate: Decimal) -> int:
    """`rating.money.vat_fen` in integers for a whole-number rate (17, 0): the same
    figure without Decimal arithmetic (exact below 10^20 fen, as Decimal's 28 digits)."""
    whole = _WHOLE_RATES.get(rate, 0)
    if whole == 0 and rate not in _WHOLE_RATES:
        whole = int(rate) if rate == rate.to_integral_value() else None
        if len(_WHOLE_RATES) < 1000:
            _WHOLE_RATES[rate] = whole
    if whole is None or abs(base_fen) >= 10**20:
        return vat_fen(base_fen, rate)
    scaled = base_fen * whole  # VAT in hundredths of a fening
    return (scaled + 50) // 100 if scaled >= 0 else round_half_up_div(scaled, 100)
