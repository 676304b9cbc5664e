"""Invoice lines of the tariff kinds beyond energy and fees (pure, like `billing.calculation`).

A *run* is a stretch of a contract's days in the month over which one component stays the
same (price, tiers, VAT rate, …); a new tariff version that leaves the component as it was
does not split its run. Each run is priced as a part of the month (``days/days_in_month``):

- ``tiered_graduated`` / ``tiered_volume``: the run's quantity of the component's registers;
  tier bounds prorated by the run's days (`rating.tiers.prorate_tiers`), so a contract from
  the 11th or a price change on the 15th gets proportionally smaller blocks. One line per
  block (graduated) or one line at the price of the tier the quantity falls in (volume);
  the description names the block. No consumption row at all: no line (as for energy).
- ``billing_power``: the month's maximum demand within the contract's days (the largest
  `max_demand` row of the component's registers, 1.6.0, already × the meter multiplier),
  at least ``minimum_kw``, × KM/kW × days/days_in_month. **No demand read**: a utility
  still bills the contracted minimum, so ``minimum_kw`` is billed and the description says
  there was no read; without a minimum there is nothing to bill on, so `BillingError` names
  the contract and register and the close leaves the customer for a later run.
- ``reactive_excess``: the run's reactive energy (3.8.0, kvarh, cumulative like kWh) beyond
  tan φ × the run's active energy (1.8.1 + 1.8.2, else 1.8.0); a line only when there is an
  excess. Active energy but no reactive row at all is missing data, not a zero excess:
  `BillingError`.
- ``minimum_charge``: after all other lines, a top-up line when the metering point's net
  for the service (discounts included) is below the minimum, prorated by the runs' days.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from billing import BillingError
from billing.calculation import (
    DEPTH_KINDS,
    RANK_METERED,
    RANK_POWER,
    RANK_REACTIVE,
    SERVICE_ORDER,
    ContractInput,
    DailyConsumption,
    InvoiceLine,
    _Keyed,
    _Span,
    version_segments,
)
from rating import RatingError
from rating.catalog import Catalog, Component
from rating.demand import active_energy_milli, billing_power_fen, reactive_excess_fen
from rating.money import format_km, round_half_up_div
from rating.tiers import Tier, graduated_lines, prorate_tiers, volume_line

_MICRO_PER_FEN = 10_000
_UNIT_TEXT = {"m3": "m³"}


@dataclass(slots=True)
class Run:
    contract: ContractInput
    tariff_code: str
    comp: Component
    vat_rate: Decimal
    start: date
    stop: date  # the day after the last
    totals: dict[str, int] = field(default_factory=dict)  # register → quantity in the run

    @property
    def days(self) -> int:
        return (self.stop - self.start).days


def component_runs(catalog: Catalog, spans: Sequence[_Span]) -> list[Run]:
    """The runs of every `DEPTH_KINDS` component over the spans' days."""
    runs: list[Run] = []
    for contract, start, stop in spans:
        last: dict[str, Run] = {}
        for version, seg_start, seg_stop in version_segments(catalog, contract, start, stop):
            for comp in version.components:
                if comp.kind not in DEPTH_KINDS or not comp.applies_on(seg_start):
                    continue  # a month has one season: 1 April and 1 October start months
                rate = version.vat_rate_of(comp)
                prev = last.get(comp.code)
                if prev and prev.stop == seg_start and (prev.comp, prev.vat_rate) == (comp, rate):
                    prev.stop = seg_stop
                    continue
                run = Run(contract, version.tariff_code, comp, rate, seg_start, seg_stop)
                last[comp.code] = run
                runs.append(run)
    return runs


def depth_lines(runs: list[Run], spans: Sequence[_Span], consumption: Iterable[DailyConsumption],
                max_demand: Iterable[DailyConsumption], first: date, end: date, *,
                metered_only: bool = False) -> list[_Keyed]:
    """The tier, billing-power and excess-reactive lines of the runs (minimum charges come
    after all other lines, see `with_minimum_charges`); `metered_only`: tiers only."""
    dim = (end - first).days
    _add_totals(runs, spans, consumption)
    demand = _max_demand(spans, max_demand)
    out: list[_Keyed] = []
    for run in runs:
        kind = run.comp.kind
        try:
            if kind in ("tiered_graduated", "tiered_volume"):
                out.extend(_tier_lines(run, dim))
            elif metered_only:
                continue
            elif kind == "billing_power":
                out.append(_power_line(run, demand.get(run.contract.contract_id, {}), dim))
            elif kind == "reactive_excess":
                out.extend(_reactive_line(run, dim))
        except RatingError as exc:
            raise BillingError(f"contract {run.contract.contract_id}: component "
                               f"{run.comp.code}: {exc}") from exc
    return out


def _contract_of(spans: Sequence[_Span], row: DailyConsumption) -> ContractInput | None:
    for c, start, stop in spans:
        if ((c.metering_point_id, c.service) == (row.metering_point_id, row.service)
                and start <= row.local_day < stop):
            return c
    return None


def _add_totals(runs: list[Run], spans: Sequence[_Span],
                consumption: Iterable[DailyConsumption]) -> None:
    places = {(c.metering_point_id, c.service) for c, _, _ in spans}
    by_contract: dict[str, list[Run]] = {}
    for run in runs:
        by_contract.setdefault(run.contract.contract_id, []).append(run)
    for row in consumption:
        if (row.metering_point_id, row.service) not in places:
            continue
        contract = _contract_of(spans, row)
        if contract is None:
            continue
        for run in by_contract.get(contract.contract_id, ()):
            if run.start <= row.local_day < run.stop:
                run.totals[row.register] = run.totals.get(row.register, 0) + row.quantity_milli


def _max_demand(spans: Sequence[_Span], rows: Iterable[DailyConsumption]
                ) -> dict[str, dict[str, int]]:
    """contract → register → the largest demand within the contract's days."""
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        contract = _contract_of(spans, row)
        if contract is None:
            continue
        regs = out.setdefault(contract.contract_id, {})
        regs[row.register] = max(regs.get(row.register, row.quantity_milli), row.quantity_milli)
    return out


def _qty(milli: int) -> str:
    """A quantity for a description: 10000 → '10', 3226 → '3,226'."""
    return f"{(Decimal(milli) / 1000).normalize():f}".replace(".", ",")


def _when(run: Run, dim: int) -> str:
    if run.days == dim:
        return ""
    last = run.stop - timedelta(days=1)
    return f" ({run.start:%d.%m.}–{last:%d.%m.}, {run.days}/{dim} dana)"


def _block(tiers: tuple[Tier, ...], i: int, unit: str) -> str:
    lower = tiers[i - 1].up_to_milli if i else 0
    upper = tiers[i].up_to_milli
    unit = _UNIT_TEXT.get(unit, unit)
    if upper is None:
        return f"blok {i + 1} (preko {_qty(lower or 0)} {unit})" if i else f"blok {i + 1}"
    return f"blok {i + 1} ({_qty(lower or 0)}–{_qty(upper)} {unit})"


def _line(run: Run, description: str, quantity: int, unit: str, price: int, amount: int,
          register: str | None) -> InvoiceLine:
    c = run.contract
    return InvoiceLine(c.service, c.metering_point_id, run.comp.code, register, description,
                       quantity, unit, price, amount, run.vat_rate)


def _tier_lines(run: Run, dim: int) -> list[_Keyed]:
    comp = run.comp
    if not any(r in run.totals for r in comp.registers):
        return []
    quantity = sum(run.totals.get(r, 0) for r in comp.registers)
    tiers = comp.tiers if run.days == dim else prorate_tiers(comp.tiers, run.days, dim)
    if comp.kind == "tiered_graduated":
        blocks = graduated_lines(quantity, tiers)
    else:
        blocks = [volume_line(quantity, tiers)]
    return [(_line(run, f"{comp.description} – {_block(tiers, b.tier, comp.unit)}"
                   + _when(run, dim), b.quantity_milli, comp.unit, b.price_micro, b.amount_fen,
                   "+".join(comp.registers)),
             run.start, RANK_METERED, b.tier, comp.discount_percent)
            for b in blocks]


def _power_line(run: Run, demand: dict[str, int], dim: int) -> _Keyed:
    comp = run.comp
    regs = "/".join(comp.registers)
    found = [demand[r] for r in comp.registers if r in demand]
    if not found and not comp.minimum_milli:
        raise BillingError(
            f"contract {run.contract.contract_id}: tariff {run.tariff_code} bills power "
            f"({comp.code}) but metering point {run.contract.metering_point_id} has no "
            f"maximum-demand read ({regs}) from {run.start} to {run.stop - timedelta(days=1)}"
            " and the tariff sets no minimum_kw"
        )
    kw, amount = billing_power_fen(max(found, default=0), comp.price_micro,
                                   minimum_milli=comp.minimum_milli, days=run.days,
                                   days_in_month=dim)  # fmt: skip
    note = ""
    if not found:
        note = f" – nema očitanja {regs}: ugovorena snaga {_qty(kw)} kW"
    elif max(found) < comp.minimum_milli:
        note = f" – ugovorena minimalna snaga {_qty(kw)} kW"
    # no register: the kW is a monthly maximum, not consumption (callers that keep only
    # consumption lines, e.g. estimates, leave it out)
    return (_line(run, comp.description + note + _when(run, dim), kw, "kW", comp.price_micro,
                  amount, None), run.start, RANK_POWER, 0, None)


def _reactive_line(run: Run, dim: int) -> list[_Keyed]:
    comp = run.comp
    active = active_energy_milli(run.totals)
    if not any(r in run.totals for r in comp.registers):
        if active:
            raise BillingError(
                f"contract {run.contract.contract_id}: tariff {run.tariff_code} prices excess"
                f" reactive energy ({comp.code}) but metering point "
                f"{run.contract.metering_point_id} has no {'/'.join(comp.registers)} "
                f"consumption from {run.start} to {run.stop - timedelta(days=1)}"
            )
        return []
    reactive = sum(run.totals.get(r, 0) for r in comp.registers)
    excess, amount = reactive_excess_fen(reactive, active, comp.price_micro, comp.tan_phi_micro)
    if not excess:
        return []
    text = (f"{comp.description} (izmjereno {_qty(reactive)} kvarh, dozvoljeno "
            f"{_qty(reactive - excess)} kvarh)")
    return [(_line(run, text + _when(run, dim), excess, "kvarh", comp.price_micro, amount,
                   "+".join(comp.registers)), run.start, RANK_REACTIVE, 0, None)]


def with_minimum_charges(lines: list[InvoiceLine], runs: list[Run], first: date, end: date
                         ) -> list[InvoiceLine]:
    """`lines` with a top-up line at the end of each metering point's lines of a service
    whose net is below the (prorated) minimum of its ``minimum_charge`` components."""
    dim = (end - first).days
    minimums: dict[tuple[str, str, str], tuple[Run, int, int]] = {}
    for run in runs:
        if run.comp.kind != "minimum_charge":
            continue
        key = (run.contract.service, run.contract.metering_point_id, run.comp.code)
        _, price_days, days = minimums.get(key, (run, 0, 0))
        minimums[key] = (run, price_days + run.comp.price_micro * run.days, days + run.days)
    if not minimums:
        return lines
    net: dict[tuple[str, str], int] = {}
    for ln in lines:
        place = (ln.service, ln.metering_point_id)
        net[place] = net.get(place, 0) + ln.amount_fen
    top_ups = []
    for (service, mp, _), (run, price_days, days) in minimums.items():
        minimum = round_half_up_div(price_days, dim * _MICRO_PER_FEN)
        top_up = minimum - net.get((service, mp), 0)
        if top_up <= 0:
            continue
        when = f", {days}/{dim} dana" if days < dim else ""
        text = f"{run.comp.description} (dopuna do minimuma {format_km(minimum)} KM{when})"
        top_ups.append(InvoiceLine(service, mp, run.comp.code, None, text, 1000, "month",
                                   top_up * _MICRO_PER_FEN, top_up, run.vat_rate))
    if not top_ups:
        return lines
    # stable: each top-up lands after the other lines of its metering point and service
    return sorted([*lines, *top_ups],
                  key=lambda ln: (SERVICE_ORDER[ln.service], ln.metering_point_id))
