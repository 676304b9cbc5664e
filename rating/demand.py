"""Monthly charges beyond energy: billing power, excess reactive energy, minimum charge,
percentage discounts. Pure integer arithmetic; each function returns one invoice line's
amount in feninga, rounded half up once (the project's one rounding rule).

Quantities are thousandths of their unit: kW from the maximum-demand register 1.6.0,
kvarh from the reactive register (3.8.0 by default), kWh from the active registers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from rating import RatingError
from rating.catalog import TAN_PHI_095_MICRO, Component, TariffVersion
from rating.money import MICRO, round_half_up_div

_NANO_PER_FEN = 10_000_000


class DemandError(RatingError):
    """Invalid input to a demand or reactive charge; the message names the field."""


@dataclass(frozen=True)
class Charge:
    component: str
    quantity_milli: int
    unit: str
    unit_price_micro: int
    amount_fen: int
    vat_rate: Decimal


def _prorated_fen(quantity_milli: int, price_micro: int, days: int, days_in_month: int) -> int:
    if not 0 < days <= days_in_month:
        raise DemandError("days: must be between 1 and the days in the month")
    return round_half_up_div(quantity_milli * price_micro * days, days_in_month * _NANO_PER_FEN)


def billing_power_fen(
    max_demand_milli: int,
    price_micro: int,
    *,
    minimum_milli: int = 0,
    days: int = 1,
    days_in_month: int = 1,
) -> tuple[int, int]:
    """(billed kW in thousandths, amount): the month's maximum demand, at least the
    contracted minimum, × KM/kW, prorated by the contract's days in the month."""
    if max_demand_milli < 0:
        raise DemandError("max_demand_milli: must not be negative")
    billed = max(max_demand_milli, minimum_milli)
    return billed, _prorated_fen(billed, price_micro, days, days_in_month)


def reactive_allowance_milli(active_milli: int, tan_phi_micro: int = TAN_PHI_095_MICRO) -> int:
    """kvarh free of charge: tan φ × kWh (cos φ 0.95 → 0.3287), half up to the varh."""
    if active_milli < 0:
        raise DemandError("active_milli: must not be negative")
    return round_half_up_div(active_milli * tan_phi_micro, MICRO)


def reactive_excess_fen(
    reactive_milli: int, active_milli: int, price_micro: int, tan_phi_micro: int = TAN_PHI_095_MICRO
) -> tuple[int, int]:
    """(excess kvarh in thousandths, amount): reactive energy beyond the allowance."""
    if reactive_milli < 0:
        raise DemandError("reactive_milli: must not be negative")
    excess = max(0, reactive_milli - reactive_allowance_milli(active_milli, tan_phi_micro))
    return excess, round_half_up_div(excess * price_micro, _NANO_PER_FEN)


def minimum_charge_fen(
    net_fen: int, minimum_micro: int, *, days: int = 1, days_in_month: int = 1
) -> int:
    """Top-up that brings the month's net up to the (prorated) minimum; 0 if above it."""
    minimum_fen = _prorated_fen(1000, minimum_micro, days, days_in_month)
    return max(0, minimum_fen - net_fen)


def discount_fen(amount_fen: int, percent: Decimal) -> int:
    """The (negative) discount line on an amount: −percent % of it, half up."""
    centi = Decimal(percent) * 100
    if centi != centi.to_integral_value() or not 0 <= centi <= 10_000:
        raise DemandError("discount_percent: must be 0–100 with at most 2 decimals")
    return -round_half_up_div(amount_fen * int(centi), 10_000)


def active_energy_milli(totals: Mapping[str, int]) -> int:
    """A month's active energy from register totals: 1.8.1 + 1.8.2 when the meter has
    them, otherwise 1.8.0 (never both, a meter with all three would count twice)."""
    if "1.8.1" in totals or "1.8.2" in totals:
        return totals.get("1.8.1", 0) + totals.get("1.8.2", 0)
    return totals.get("1.8.0", 0)


def demand_charges(
    version: TariffVersion, totals: Mapping[str, int], *, days: int, days_in_month: int
) -> list[Charge]:
    """The billing-power and excess-reactive lines of one metering point's month.

    `totals` holds the month's quantity per register in thousandths; for the demand
    register (1.6.0) it is the month's maximum, not a sum.
    """
    out: list[Charge] = []
    for comp in version.components:
        if comp.kind == "billing_power":
            demand = max((totals.get(r, 0) for r in comp.registers), default=0)
            kw, amount = billing_power_fen(demand, comp.price_micro,
                                           minimum_milli=comp.minimum_milli, days=days,
                                           days_in_month=days_in_month)  # fmt: skip
            out.append(_charge(version, comp, kw, amount))
        elif comp.kind == "reactive_excess":
            reactive = sum(totals.get(r, 0) for r in comp.registers)
            excess, amount = reactive_excess_fen(
                reactive, active_energy_milli(totals), comp.price_micro, comp.tan_phi_micro
            )
            out.append(_charge(version, comp, excess, amount))
    return out


def minimum_charges(
    version: TariffVersion, net_fen: int, *, days: int, days_in_month: int
) -> list[Charge]:
    """A top-up line per `minimum_charge` component when the net is below its minimum."""
    out = []
    for comp in version.components_of_kind("minimum_charge"):
        top_up = minimum_charge_fen(net_fen, comp.price_micro, days=days,
                                    days_in_month=days_in_month)  # fmt: skip
        if top_up:
            out.append(_charge(version, comp, 1000, top_up))
    return out


def _charge(version: TariffVersion, comp: Component, quantity: int, amount: int) -> Charge:
    return Charge(comp.code, quantity, comp.unit, comp.price_micro, amount,
                  version.vat_rate_of(comp))  # fmt: skip
