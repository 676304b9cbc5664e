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
prorated by contract days) and ``per_m2_month`` (per m² of the metering point and month).
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
from rating.money import parse_price_micro

SERVICES = ("electricity", "water", "waste")
COMPONENT_KINDS = ("energy", "fixed_monthly", "per_m2_month")
SEASONS = ("higher", "lower")
UNITS = {"electricity": "kWh", "water": "m3"}


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

    def energy_component(self, register: str, day: date) -> Component | None:
        for comp in self.components:
            if comp.kind == "energy" and register in comp.registers and comp.applies_on(day):
                return comp
        return None

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
    try:
        vat_rate = Decimal(str(doc.get("vat_rate", "17")))
    except InvalidOperation as exc:
        raise CatalogError(f"vat_rate: not a number: {doc.get('vat_rate')!r}") from exc
    if not (Decimal(0) <= vat_rate <= Decimal(100)):
        raise CatalogError("vat_rate: must be between 0 and 100")
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
    )


def _parse_component(doc: Any, where: str, service: str) -> Component:
    if not isinstance(doc, Mapping):
        raise CatalogError(f"{where[:-1]}: must be an object")
    kind = _field(doc, "kind", where)
    if kind not in COMPONENT_KINDS:
        raise CatalogError(f"{where}kind: must be one of {', '.join(COMPONENT_KINDS)}")
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
    if kind == "energy":
        if service == "waste":
            raise CatalogError(f"{where}kind: waste tariffs have no metered energy component")
        regs = _field(doc, "registers", where)
        if not isinstance(regs, list) or not all(isinstance(r, str) and r for r in regs):
            raise CatalogError(f"{where}registers: must be a list of register codes")
        registers = tuple(regs)
        unit = unit or UNITS[service]
        if unit != UNITS[service]:
            raise CatalogError(f"{where}unit: must be {UNITS[service]} for {service}")
    return Component(
        code=str(_field(doc, "code", where)),
        kind=kind,
        price_micro=price,
        description=str(doc.get("description", doc.get("code"))),
        registers=registers,
        season=season,
        unit=unit,
    )


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
