"""Tariff catalog: effective-dated tariff versions parsed from plain documents.

A tariff document (JSON) looks like::

    {"tariff_code": "EL-HH", "service": "electricity", "category": "households",
     "valid_from": "2025-01-01", "vat_rate": "17", "demo": true,
     "components": [
        {"code": "energy_vt_higher", "kind": "energy", "registers": ["1.8.1"],
         "season": "higher", "price": "0.1578", "unit": "kWh"},
        {"code": "metering_point_fee", "kind": "fixed_monthly", "price": "3.50"}]}

Component kinds: ``energy`` (price per unit of the listed registers, optionally only in
the ``higher`` or ``lower`` season), ``fixed_monthly`` (per metering point and month,
prorated by contract days) and ``per_m2_month`` (per m² of the metering point and month);
``tiered_graduated`` / ``tiered_volume`` (a month's quantity of the registers priced by
``tiers: [{"up_to": "100", "price": "0.10"}, {"up_to": null, "price": "0.15"}]``, see
`rating.tiers`); ``billing_power`` (KM/kW of the month's maximum demand, register 1.6.0,
optional ``minimum_kw``), ``reactive_excess`` (KM/kvarh beyond ``tan_phi`` × kWh, default
0.3287 = cos φ 0.95, register 3.8.0) and ``minimum_charge`` (``price`` = the month's
minimum net amount), see `rating.demand`.
Any component may carry its own ``vat_rate`` (e.g. an exempt fee); energy and tiered
components may carry ``discount_percent`` (a social discount line on their amount).
A tariff may name its TOU scheme (``tou_scheme``: households, other, single; see
`rating.tou`); an electricity tariff with 1.8.1 and 1.8.2 prices defaults to
``households`` for the households category and ``other`` otherwise, else ``single``.
Errors name the offending field, e.g. ``components[2].price: has more than 6 decimals``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from rating import RatingError
from rating.calendar import is_higher_season
from rating.money import parse_price_micro, parse_quantity_milli
from rating.tiers import Tier, TierError, parse_tiers
from rating.tou import SCHEMES

SERVICES = ("electricity", "water", "waste")
TIERED_KINDS = ("tiered_graduated", "tiered_volume")
METERED_KINDS = ("energy", *TIERED_KINDS)
COMPONENT_KINDS = ("energy", "fixed_monthly", "per_m2_month", *TIERED_KINDS,
                   "billing_power", "reactive_excess", "minimum_charge")  # fmt: skip
ELECTRICITY_ONLY = ("billing_power", "reactive_excess")
SEASONS = ("higher", "lower")
UNITS = {"electricity": "kWh", "water": "m3"}
# unit and default registers of the kinds that are not priced per kWh / m³
_KIND_UNITS = {
    "billing_power": ("kW", ("1.6.0",)),
    "reactive_excess": ("kvarh", ("3.8.0",)),
    "minimum_charge": ("month", ()),
}
TAN_PHI_095_MICRO = 328_700  # tan(arccos 0.95) = 0.32868 → 0.3287


class CatalogError(RatingError):
    """A tariff document is invalid; the message names the field."""


@dataclass(frozen=True)
class Component:
    code: str
    kind: str
    price_micro: int
    description: str
    registers: tuple[str, ...] = ()
    season: str | None = None
    unit: str = ""
    tiers: tuple[Tier, ...] = ()
    vat_rate: Decimal | None = None  # None: the tariff's rate
    discount_percent: Decimal | None = None
    minimum_milli: int = 0  # billing_power: contracted minimum kW
    tan_phi_micro: int = TAN_PHI_095_MICRO  # reactive_excess

    def applies_on(self, day: date) -> bool:
        if self.season is None:
            return True
        return (self.season == "higher") == is_higher_season(day)


@dataclass(frozen=True)
class TariffVersion:
    tariff_code: str
    service: str
    category: str
    valid_from: date
    vat_rate: Decimal
    demo: bool
    components: tuple[Component, ...]
    name: str = ""
    tou_scheme: str | None = None

    def energy_component(self, register: str, day: date) -> Component | None:
        for comp in self.components:
            if comp.kind == "energy" and register in comp.registers and comp.applies_on(day):
                return comp
        return None

    def tiered_component(self, register: str, day: date) -> Component | None:
        for comp in self.components:
            if comp.kind in TIERED_KINDS and register in comp.registers and comp.applies_on(day):
                return comp
        return None

    def vat_rate_of(self, comp: Component) -> Decimal:
        return self.vat_rate if comp.vat_rate is None else comp.vat_rate

    def components_of_kind(self, kind: str) -> list[Component]:
        return [c for c in self.components if c.kind == kind]


def _field(doc: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in doc or doc[name] in (None, ""):
        raise CatalogError(f"{where}{name}: is required")
    return doc[name]


def parse_tariff(doc: Mapping[str, Any]) -> TariffVersion:
    """Validate one tariff document and return the typed version."""
    if not isinstance(doc, Mapping):
        raise CatalogError("tariff: must be an object")
    code = str(_field(doc, "tariff_code", ""))
    service = _field(doc, "service", "")
    if service not in SERVICES:
        raise CatalogError(f"service: must be one of {', '.join(SERVICES)}, got {service!r}")
    try:
        valid_from = date.fromisoformat(str(_field(doc, "valid_from", "")))
    except ValueError as exc:
        raise CatalogError(f"valid_from: not a date (YYYY-MM-DD): {doc['valid_from']!r}") from exc
    vat_rate = _percent(doc.get("vat_rate", "17"), "vat_rate")
    raw_components = _field(doc, "components", "")
    if not isinstance(raw_components, list) or not raw_components:
        raise CatalogError("components: must be a non-empty list")
    components = tuple(
        _parse_component(c, f"components[{i}].", service) for i, c in enumerate(raw_components)
    )
    codes = [c.code for c in components]
    if len(set(codes)) != len(codes):
        raise CatalogError("components: codes must be unique within a tariff")
    return TariffVersion(
        tariff_code=code,
        service=service,
        category=str(doc.get("category", "")),
        valid_from=valid_from,
        vat_rate=vat_rate,
        demo=bool(doc.get("demo", False)),
        components=components,
        name=str(doc.get("name", code)),
        tou_scheme=_tou_scheme(doc, service, components),
    )


def _percent(raw: Any, where: str) -> Decimal:
    try:
        value = Decimal(str(raw))
    except InvalidOperation as exc:
        raise CatalogError(f"{where}: not a number: {raw!r}") from exc
    if not (Decimal(0) <= value <= Decimal(100)):
        raise CatalogError(f"{where}: must be between 0 and 100")
    return value


def _tou_scheme(doc: Mapping[str, Any], service: str, comps: tuple[Component, ...]) -> str | None:
    scheme = doc.get("tou_scheme")
    if scheme is not None:
        if service != "electricity" or scheme not in SCHEMES:
            raise CatalogError(f"tou_scheme: must be one of {', '.join(SCHEMES)} (electricity)")
        return str(scheme)
    if service != "electricity":
        return None
    priced = {r for c in comps if c.kind in METERED_KINDS for r in c.registers}
    if {"1.8.1", "1.8.2"} <= priced:
        return "households" if doc.get("category") == "households" else "other"
    return "single"


def _parse_component(doc: Any, where: str, service: str) -> Component:
    if not isinstance(doc, Mapping):
        raise CatalogError(f"{where[:-1]}: must be an object")
    kind = _field(doc, "kind", where)
    if kind not in COMPONENT_KINDS:
        raise CatalogError(f"{where}kind: must be one of {', '.join(COMPONENT_KINDS)}")
    price = 0
    if kind not in TIERED_KINDS:
        try:
            price = parse_price_micro(_field(doc, "price", where))
        except ValueError as exc:
            raise CatalogError(f"{where}price: {exc}") from exc
        if price < 0:
            raise CatalogError(f"{where}price: must not be negative")
    registers: tuple[str, ...] = ()
    season = doc.get("season")
    if season is not None and season not in SEASONS:
        raise CatalogError(f"{where}season: must be 'higher' or 'lower'")
    unit = str(doc.get("unit", ""))
    if kind in ELECTRICITY_ONLY and service != "electricity":
        raise CatalogError(f"{where}kind: {kind} is for electricity tariffs only")
    if kind in METERED_KINDS:
        if service == "waste":
            raise CatalogError(f"{where}kind: waste tariffs have no metered energy component")
        registers = _registers(_field(doc, "registers", where), where)
        unit = unit or UNITS[service]
        if unit != UNITS[service]:
            raise CatalogError(f"{where}unit: must be {UNITS[service]} for {service}")
    elif kind in _KIND_UNITS:
        expected, default_registers = _KIND_UNITS[kind]
        registers = _registers(doc.get("registers", list(default_registers)), where)
        unit = unit or expected
        if unit != expected:
            raise CatalogError(f"{where}unit: must be {expected} for {kind}")
    return Component(
        code=str(_field(doc, "code", where)),
        kind=kind,
        price_micro=price,
        description=str(doc.get("description", doc.get("code"))),
        registers=registers,
        season=season,
        unit=unit,
        **_depth_fields(doc, where, kind),
    )


def _registers(regs: Any, where: str) -> tuple[str, ...]:
    if not isinstance(regs, list) or not all(isinstance(r, str) and r for r in regs):
        raise CatalogError(f"{where}registers: must be a list of register codes")
    return tuple(regs)


def _depth_fields(doc: Mapping[str, Any], where: str, kind: str) -> dict[str, Any]:
    """Tiers, own VAT rate, discount, minimum kW and tan φ, each checked against the kind."""
    out: dict[str, Any] = {}
    if kind in TIERED_KINDS:
        try:
            out["tiers"] = parse_tiers(doc.get("tiers"))
        except TierError as exc:
            raise CatalogError(f"{where}{exc}") from exc
    elif "tiers" in doc:
        raise CatalogError(f"{where}tiers: only for {' / '.join(TIERED_KINDS)}")
    if doc.get("vat_rate") is not None:
        out["vat_rate"] = _percent(doc["vat_rate"], f"{where}vat_rate")
    if doc.get("discount_percent") is not None:
        if kind not in METERED_KINDS:
            raise CatalogError(f"{where}discount_percent: only on energy or tiered components")
        pct = _percent(doc["discount_percent"], f"{where}discount_percent")
        if pct != pct.quantize(Decimal("0.01")):
            raise CatalogError(f"{where}discount_percent: at most 2 decimals")
        out["discount_percent"] = pct
    for name, owner in (("minimum_kw", "billing_power"), ("tan_phi", "reactive_excess")):
        raw = doc.get(name)
        if raw is None:
            continue
        if kind != owner:
            raise CatalogError(f"{where}{name}: only for {owner}")
        try:
            value = parse_quantity_milli(raw) if name == "minimum_kw" else parse_price_micro(raw)
        except ValueError as exc:
            raise CatalogError(f"{where}{name}: {exc}") from exc
        if value < 0 or (name == "tan_phi" and value == 0):
            raise CatalogError(f"{where}{name}: must be positive")
        out["minimum_milli" if name == "minimum_kw" else "tan_phi_micro"] = value
    return out


@dataclass
class Catalog:
    """All versions of all tariffs; `version_on` picks the one in force on a day."""

    versions: dict[str, list[TariffVersion]] = field(default_factory=dict)

    @classmethod
    def from_documents(cls, docs: Iterable[Mapping[str, Any]]) -> Catalog:
        cat = cls()
        for doc in docs:
            cat.add(parse_tariff(doc))
        return cat

    def add(self, version: TariffVersion) -> None:
        lst = self.versions.setdefault(version.tariff_code, [])
        lst[:] = [v for v in lst if v.valid_from != version.valid_from]
        lst.append(version)
        lst.sort(key=lambda v: v.valid_from)

    def version_on(self, tariff_code: str, day: date) -> TariffVersion:
        lst = self.versions.get(tariff_code)
        if not lst:
            raise RatingError(f"unknown tariff {tariff_code!r}")
        i = bisect_right([v.valid_from for v in lst], day) - 1
        if i < 0:
            raise RatingError(f"tariff {tariff_code!r} has no version in force on {day}")
        return lst[i]

    def versions_between(self, tariff_code: str, first: date, end: date) -> list[TariffVersion]:
        """Versions in force on any day of [first, end)."""
        lst = self.versions.get(tariff_code, [])
        return [
            v
            for i, v in enumerate(lst)
            if v.valid_from < end and (i + 1 == len(lst) or lst[i + 1].valid_from > first)
        ]
