"""The customer's live month: consumption so far and an estimate of the bill so far.

Energy is what the stream already rated (``daily_consumption.amount_nano``) on the local
days of the current month up to today, inside each contract's validity. Monthly fees
(``fixed_monthly``, ``per_m2_month``) are pro-rated by the contract days elapsed so far
(``price × days / days_in_month``), like the closer does for a whole month. VAT at the
tariff's rate (17 %) on the net per rate. It is an estimate: the invoice rounds per line.

``consumption_fingerprint`` is the cheap query the live stream polls; the full snapshot
(which loads the tariff catalog) is computed only when the fingerprint changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg

from billing.accounts import service_key
from rating import RatingError
from rating.calendar import month_bounds
from rating.catalog import Catalog
from rating.money import format_km, format_quantity, nano_to_fen, round_half_up_div, vat_fen

UNITS = {"electricity": "kWh", "water": "m3", "waste": ""}
_MICRO_PER_FEN = 10_000

_CONSUMPTION_SQL = """
SELECT d.service, sum(d.quantity_milli)::bigint, sum(d.amount_nano)::bigint,
       sum(d.pieces)::bigint, min(c.tariff_code)
FROM contracts c
JOIN daily_consumption d
  ON d.metering_point_id = c.metering_point_id AND d.service = c.service
WHERE c.customer_id = %(customer)s
  AND d.local_day BETWEEN %(first)s AND %(today)s
  AND d.local_day >= c.valid_from AND (c.valid_to IS NULL OR d.local_day <= c.valid_to)
GROUP BY d.service
"""

_CONTRACTS_SQL = """
SELECT c.service, c.tariff_code, greatest(c.valid_from, %(first)s),
       least(coalesce(c.valid_to, %(today)s), %(today)s), m.area_m2
FROM contracts c JOIN metering_points m USING (metering_point_id)
WHERE c.customer_id = %(customer)s AND c.valid_from <= %(today)s
  AND (c.valid_to IS NULL OR c.valid_to >= %(first)s)
"""


@dataclass
class ServiceSoFar:
    service: str
    unit: str
    quantity_milli: int = 0
    energy_fen: int = 0
    fees_fen: int = 0
    pieces: int = 0

    @property
    def net_fen(self) -> int:
        return self.energy_fen + self.fees_fen


@dataclass
class MonthSoFar:
    customer_id: str
    period: str
    today: date
    days_elapsed: int
    days_in_month: int
    services: list[ServiceSoFar] = field(default_factory=list)
    vat_by_rate: dict[Decimal, tuple[int, int]] = field(default_factory=dict)  # base, vat

    @property
    def net_fen(self) -> int:
        return sum(s.net_fen for s in self.services)

    @property
    def vat_fen(self) -> int:
        return sum(v for _base, v in self.vat_by_rate.values())

    @property
    def total_fen(self) -> int:
        return self.net_fen + self.vat_fen


def _month(today: date) -> tuple[str, date, int]:
    period = f"{today.year:04d}-{today.month:02d}"
    first, end = month_bounds(period)
    return period, first, (end - first).days


def consumption_fingerprint(conn: psycopg.Connection, customer_id: str, today: date
                            ) -> tuple[Any, ...]:
    """What changes when a read of the customer is stored (and when the day changes)."""
    _period, first, _days = _month(today)
    rows = conn.execute(_CONSUMPTION_SQL,
                        {"customer": customer_id, "first": first, "today": today}).fetchall()
    return (today, tuple(sorted(tuple(r[:4]) for r in rows)))


def month_so_far(conn: psycopg.Connection, customer_id: str, today: date,
                 catalog: Catalog) -> MonthSoFar:
    period, first, days_in_month = _month(today)
    args = {"customer": customer_id, "first": first, "today": today}
    result = MonthSoFar(customer_id, period, today, (today - first).days + 1, days_in_month)
    by_service: dict[str, ServiceSoFar] = {}
    bases: dict[Decimal, int] = {}

    def service(name: str) -> ServiceSoFar:
        return by_service.setdefault(name, ServiceSoFar(name, UNITS.get(name, "")))

    for svc, qty, nano, pieces, tariff in conn.execute(_CONSUMPTION_SQL, args):
        row = service(svc)
        row.quantity_milli, row.pieces = int(qty), int(pieces)
        row.energy_fen = nano_to_fen(int(nano))
        rate = _tariff_rate(catalog, tariff, today)
        bases[rate] = bases.get(rate, 0) + row.energy_fen
    for svc, tariff, start, stop, area in conn.execute(_CONTRACTS_SQL, args):
        days = (stop - start).days + 1
        row = service(svc)
        try:
            version = catalog.version_on(tariff, today)
        except RatingError:
            continue  # no tariff in force: no fee to estimate
        for comp in version.components:
            if comp.kind == "fixed_monthly":
                fee = round_half_up_div(comp.price_micro * days, days_in_month * _MICRO_PER_FEN)
            elif comp.kind == "per_m2_month" and area is not None:
                centi = int((Decimal(area) * 100).to_integral_value())
                fee = round_half_up_div(centi * comp.price_micro * days,
                                        100 * days_in_month * _MICRO_PER_FEN)
            else:
                continue
            row.fees_fen += fee
            rate = version.vat_rate_of(comp)
            bases[rate] = bases.get(rate, 0) + fee
    result.services = sorted(by_service.values(), key=lambda s: service_key(s.service))
    result.vat_by_rate = {rate: (base, vat_fen(base, rate)) for rate, base in bases.items()}
    return result


def _tariff_rate(catalog: Catalog, tariff: str, today: date) -> Decimal:
    try:
        return catalog.version_on(tariff, today).vat_rate
    except RatingError:
        return Decimal("17")


def encode_month(month: MonthSoFar) -> dict[str, Any]:
    """The JSON of the snapshot and of each live event (money as KM strings)."""
    return {
        "customer_id": month.customer_id,
        "period": month.period,
        "through_day": month.today.isoformat(),
        "days_elapsed": month.days_elapsed,
        "days_in_month": month.days_in_month,
        "estimate": True,
        "services": [
            {"service": s.service, "quantity": format_quantity(s.quantity_milli),
             "unit": s.unit, "energy": format_km(s.energy_fen), "fees": format_km(s.fees_fen),
             "net": format_km(s.net_fen), "reads_pieces": s.pieces}
            for s in month.services
        ],
        "net": format_km(month.net_fen),
        "vat": format_km(month.vat_fen),
        "total": format_km(month.total_fen),
    }
