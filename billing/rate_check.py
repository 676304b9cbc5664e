"""The clerk's rate check and the tariff simulation.

A customer complains about a bill: the period is re-rated on demand from the stored daily
consumption and the catalog, with the close's own loaders and `compute_invoice`, and the
calculation is printed step by step (quantity × price = unrounded amount → rounded half
up, fees with their proration, VAT per rate) and compared with the finalized invoice.
A simulation prices the same consumption under another tariff code.

Everything here is pure text rendering except `load_period`, the one database read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

import psycopg

from billing import BillingError
from billing.calculation import (
    SERVICE_ORDER,
    ContractInput,
    DailyConsumption,
    InvoiceDraft,
    InvoiceLine,
    compute_invoice,
)
from billing.closer import _load_consumption, _load_contracts, _load_demand, _price_breaks
from rating import RatingError
from rating.calendar import month_bounds
from rating.catalog import Catalog, Component, TariffVersion
from rating.money import format_km, format_price, format_quantity, parse_quantity_milli
from stream.pipeline import load_catalog

_PERIOD = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
_UNITS = {"electricity": "kWh", "water": "m3"}
_UNITS_OF = {"3.8.0": "kvarh"}  # registers not in their service's unit
_SIX = Decimal("0.000001")
_NINE = Decimal("0.000000001")
_LineKey = tuple[str, str, str, str]  # service, metering point, component, register


@dataclass(frozen=True)
class StoredLine:
    service: str
    metering_point_id: str
    component: str
    register: str | None
    quantity_milli: int
    unit_price_micro: int
    amount_fen: int


@dataclass(frozen=True)
class StoredInvoice:
    invoice_number: str
    lines: list[StoredLine]
    net_fen: int
    vat_fen: int
    total_fen: int


@dataclass(frozen=True)
class PeriodData:
    customer_id: str
    period: str
    contracts: list[ContractInput]
    consumption: list[DailyConsumption]
    catalog: Catalog
    invoice: StoredInvoice | None
    demand: list[DailyConsumption] = field(default_factory=list)  # maximum demand (1.6.0)


def check_period(period: str) -> tuple[date, date]:
    if not isinstance(period, str) or not _PERIOD.match(period):
        raise BillingError(f"period: must be YYYY-MM, got {period!r}")
    return month_bounds(period)


def load_period(conn: psycopg.Connection, customer_id: str, period: str) -> PeriodData:
    """The customer's contracts, consumption (per price bucket, as the close sums it), the
    catalog and the invoice of the period that is not credited, if any."""
    first, end = check_period(period)
    if conn.execute("SELECT 1 FROM customers WHERE customer_id = %s",
                    (customer_id,)).fetchone() is None:
        raise BillingError(f"customer: unknown customer {customer_id!r}")
    try:
        catalog = load_catalog(conn)
    except RatingError as exc:
        raise BillingError(f"tariff catalog: {exc}") from exc
    # the close's queries leave out customers already invoiced for `period`; no invoice has
    # an empty period, so with "" they load an invoiced customer too
    args: dict[str, object] = {"period": "", "first": first, "end": end}
    contracts = {customer_id: _load_contracts(conn, args).get(customer_id, [])}
    if not contracts[customer_id]:
        raise BillingError(f"customer {customer_id} has no contract active in {period}")
    breaks = _price_breaks(catalog, contracts, first, end)
    consumption = _load_consumption(conn, args, breaks).get(customer_id, [])
    demand = _load_demand(conn, args, catalog, contracts, first, end, [customer_id])
    return PeriodData(customer_id, period, contracts[customer_id], consumption, catalog,
                      _stored_invoice(conn, customer_id, period), demand.get(customer_id, []))


def _stored_invoice(conn: psycopg.Connection, customer_id: str, period: str
                    ) -> StoredInvoice | None:
    row = conn.execute(
        "SELECT invoice_number, net_fen, vat_fen, total_fen FROM invoices i"
        " WHERE customer_id = %s AND period = %s AND kind = 'invoice' AND NOT EXISTS"
        " (SELECT 1 FROM credit_notes n WHERE n.invoice_number = i.invoice_number)"
        " ORDER BY issued_on DESC, invoice_number DESC LIMIT 1", (customer_id, period),
    ).fetchone()
    if row is None:
        return None
    lines = [StoredLine(*r) for r in conn.execute(
        "SELECT service, metering_point_id, component, register, quantity_milli,"
        " unit_price_micro, amount_fen FROM invoice_lines WHERE invoice_number = %s"
        " ORDER BY line_no", (row[0],))]
    return StoredInvoice(row[0], lines, int(row[1]), int(row[2]), int(row[3]))


def _dec(value: Decimal) -> str:
    """An unrounded amount: exact when it has at most 9 decimals, else '≈' and 6 decimals."""
    if value == value.quantize(_NINE):
        text = f"{value.quantize(_NINE).normalize():f}"
    else:
        text = f"≈{value.quantize(_SIX, rounding=ROUND_HALF_UP):f}"
    if "." not in text:
        text += ".00"
    elif len(text.split(".")[1]) < 2:
        text += "0"
    return text


def _spans(contracts: list[ContractInput], first: date, end: date
           ) -> list[tuple[ContractInput, date, date]]:
    out = []
    for c in contracts:
        start = max(c.valid_from, first)
        stop = end if c.valid_to is None else min(c.valid_to + timedelta(days=1), end)
        if start < stop:
            out.append((c, start, stop))
    return out


def _segments(catalog: Catalog, c: ContractInput, start: date, stop: date
              ) -> list[tuple[TariffVersion, int]]:
    versions = catalog.versions_between(c.tariff_code, start, stop)
    out = []
    for i, v in enumerate(versions):
        seg_start = max(start, v.valid_from)
        seg_stop = min(stop, versions[i + 1].valid_from) if i + 1 < len(versions) else stop
        out.append((v, (seg_stop - seg_start).days))
    return out


def _find(catalog: Catalog, spans: list[tuple[ContractInput, date, date]], code: str,
          price: int) -> tuple[TariffVersion, Component, int] | None:
    """The version carrying component `code` at `price`, and its days in the spans."""
    found: tuple[TariffVersion, Component] | None = None
    days = 0
    for c, start, stop in spans:
        for v, n in _segments(catalog, c, start, stop):
            for comp in v.components:
                if comp.code == code and comp.price_micro == price:
                    found = found or (v, comp)
                    days += n
    return None if found is None else (found[0], found[1], days)


def explain(draft: InvoiceDraft, contracts: list[ContractInput],
            consumption: list[DailyConsumption], catalog: Catalog,
            invoice: StoredInvoice | None = None, *, simulation: bool = False,
            demand: list[DailyConsumption] | None = None) -> str:
    """The calculation of `draft`, step by step, and its comparison with `invoice`
    (`simulation`: a given consumption without a customer, nothing to compare; `demand`:
    the maximum-demand rows the draft was rated with)."""
    first, end = month_bounds(draft.period)
    dim = (end - first).days
    days = f"period {draft.period} ({first} – {end - timedelta(days=1)}, {dim} days)"
    out = [f"Simulation without a customer: {days}, the given consumption" if simulation else
           f"Rate check: customer {draft.customer_id}, {days}, re-rated from the stored daily"
           " consumption"]
    places = sorted({(c.service, c.metering_point_id) for c in contracts},
                    key=lambda p: (SERVICE_ORDER.get(p[0], 9), p[1]))
    for service, mp in places:
        spans = _spans([c for c in contracts if (c.service, c.metering_point_id)
                        == (service, mp)], first, end)
        if not spans:
            continue
        out.append("")
        out.append(f"{service}, metering point {mp}")
        for c, start, stop in spans:
            out.append(f"  contract {c.contract_id}, tariff {c.tariff_code}: {start} – "
                       f"{stop - timedelta(days=1)}, {(stop - start).days}/{dim} days")
        totals: dict[str, int] = {}
        for row in consumption:
            if (row.service, row.metering_point_id) == (service, mp):
                totals[row.register] = totals.get(row.register, 0) + row.quantity_milli
        if totals:
            unit = _UNITS.get(service, "")
            out.append("  register totals: " + ", ".join(
                f"{r} = {format_quantity(q)} {_UNITS_OF.get(r, unit)}"
                for r, q in sorted(totals.items())))
        peaks: dict[str, int] = {}
        for row in demand or ():
            if (row.service, row.metering_point_id) == (service, mp):
                peaks[row.register] = max(peaks.get(row.register, 0), row.quantity_milli)
        if peaks:
            out.append("  maximum demand: " + ", ".join(
                f"{r} = {format_quantity(q)} kW" for r, q in sorted(peaks.items())))
        here = [ln for ln in draft.lines if (ln.service, ln.metering_point_id) == (service, mp)]
        for line in here:
            others = sum(ln.amount_fen for ln in here if ln is not line)
            out.extend(_line_steps(line, catalog, spans, dim, others))
    out.append("")
    for vat in draft.vat:
        exact = Decimal(vat.base_fen) * vat.vat_rate / 10_000
        out.append(f"VAT {vat.vat_rate.normalize():f} %: {format_km(vat.base_fen)} × "
                   f"{vat.vat_rate.normalize():f} % = {_dec(exact)} → {format_km(vat.vat_fen)}")
    out.append(f"net {format_km(draft.net_fen)} KM + VAT {format_km(draft.vat_fen)} KM = "
               f"total {format_km(draft.total_fen)} KM")
    if simulation:
        pass
    elif invoice is None:
        out.append("no invoice for this period yet")
    else:
        out.extend(compare(draft, invoice))
    return "\n".join(out) + "\n"


def _line_steps(line: InvoiceLine, catalog: Catalog,
                spans: list[tuple[ContractInput, date, date]], dim: int, place_net: int = 0
                ) -> list[str]:
    """One line's calculation; `place_net`: the other lines of its metering point (the
    base of a minimum charge's top-up)."""
    hit = _find(catalog, spans, line.component, line.unit_price_micro)
    where = ""
    if hit is not None:
        v, comp, days = hit
        season = f", {comp.season} season" if comp.season else ""
        where = f" [tariff {v.tariff_code} version of {v.valid_from}{season}]"
    price = format_price(line.unit_price_micro)
    head = f"  {line.description}" + (f" (register {line.register})" if line.register else "")
    if line.unit == "%":  # a discount: percent of the discounted amount
        pct = Decimal(line.quantity_milli) / 1000
        base = Decimal(line.unit_price_micro) / 10**6
        return [head, f"    -{pct.normalize():f} % × {format_km(line.unit_price_micro // 10_000)}"
                      f" = {_dec(-base * pct / 100)} → {format_km(line.amount_fen)}"]
    if line.unit == "month" and _is_minimum(catalog, spans, line.component):
        return [head, f"    minimum {format_km(line.amount_fen + place_net)} − net of the "
                      f"metering point {format_km(place_net)} = {format_km(line.amount_fen)}"]
    if line.unit in ("kWh", "m3", "kvarh"):
        exact = Decimal(line.quantity_milli * line.unit_price_micro) / 10**9
        return [head + where,
                f"    {format_quantity(line.quantity_milli)} {line.unit} × {price} = "
                f"{_dec(exact)} → {format_km(line.amount_fen)}"]
    days = hit[2] if hit is not None else dim
    if line.unit == "kW":
        exact = Decimal(line.quantity_milli * line.unit_price_micro * days) / (10**9 * dim)
        calc = f"{format_quantity(line.quantity_milli)} kW × {price} × {days}/{dim}"
    elif line.unit == "m2":
        area = Decimal(line.quantity_milli) / 1000
        exact = area * line.unit_price_micro * days / (10**6 * dim)
        calc = f"{area.normalize():f} m² × {price} × {days}/{dim}"
    else:
        exact = Decimal(line.unit_price_micro * days) / (10**6 * dim)
        calc = f"{price} × {days}/{dim}"
    return [head + where, f"    {calc} = {_dec(exact)} → {format_km(line.amount_fen)}"]


def _is_minimum(catalog: Catalog, spans: list[tuple[ContractInput, date, date]], code: str
                ) -> bool:
    return any(comp.code == code and comp.kind == "minimum_charge"
               for c, start, stop in spans for v, _ in _segments(catalog, c, start, stop)
               for comp in v.components)


def compare(draft: InvoiceDraft, invoice: StoredInvoice) -> list[str]:
    """'matches', or each line and total that differs between the re-rating and the invoice."""
    def key(service: str, mp: str, comp: str, reg: str | None, price: int
            ) -> tuple[str, str, str, str, int]:
        return (service, mp, comp, reg or "", price)

    now = {key(ln.service, ln.metering_point_id, ln.component, ln.register,
               ln.unit_price_micro): (ln.quantity_milli, ln.amount_fen) for ln in draft.lines}
    then = {key(ln.service, ln.metering_point_id, ln.component, ln.register,
                ln.unit_price_micro): (ln.quantity_milli, ln.amount_fen) for ln in invoice.lines}
    diffs = []
    for k in sorted(now.keys() | then.keys()):
        label = f"{k[0]} {k[1]} {k[2]}" + (f" {k[3]}" if k[3] else "") + f" @ {format_price(k[4])}"
        a, b = then.get(k), now.get(k)
        if a is None and b is not None:
            diffs.append(f"  {label}: not on the invoice; re-rated {format_quantity(b[0])}"
                         f" → {format_km(b[1])}")
        elif b is None and a is not None:
            diffs.append(f"  {label}: on the invoice {format_quantity(a[0])} → "
                         f"{format_km(a[1])}; not in the re-rating")
        elif a != b and a is not None and b is not None:
            diffs.append(f"  {label}: invoice {format_quantity(a[0])} → {format_km(a[1])}, "
                         f"re-rated {format_quantity(b[0])} → {format_km(b[1])} "
                         f"(difference {format_km(b[1] - a[1])})")
    if (invoice.net_fen, invoice.vat_fen, invoice.total_fen) != (
            draft.net_fen, draft.vat_fen, draft.total_fen):
        diffs.append(f"  total: invoice {format_km(invoice.total_fen)}, re-rated "
                     f"{format_km(draft.total_fen)} (difference "
                     f"{format_km(draft.total_fen - invoice.total_fen)})")
    if not diffs:
        return [f"invoice {invoice.invoice_number}: matches ({len(invoice.lines)} lines, "
                f"total {format_km(invoice.total_fen)} KM)"]
    return [f"invoice {invoice.invoice_number}: DIFFERS"] + diffs


def retariff(contracts: list[ContractInput], service: str, tariff_code: str, catalog: Catalog,
             period: str) -> list[ContractInput]:
    """The contracts of `service` moved to `tariff_code` (checked against the catalog)."""
    first, _ = check_period(period)
    try:
        version = catalog.version_on(tariff_code, first)
    except RatingError as exc:
        raise BillingError(f"tariff: {exc}") from exc
    if version.service != service:
        raise BillingError(f"tariff: {tariff_code} is a {version.service} tariff, not {service}")
    if not any(c.service == service for c in contracts):
        raise BillingError(f"service: the customer has no {service} contract in {period}")
    return [replace(c, tariff_code=tariff_code) if c.service == service else c
            for c in contracts]


def tariff_for_category(catalog: Catalog, service: str, category: str, period: str) -> str:
    """The one tariff code of `service` whose version in force on the period's first day is
    of `category`."""
    first, _ = check_period(period)
    found, known = [], set()
    for code in sorted(catalog.versions):
        try:
            v = catalog.version_on(code, first)
        except RatingError:
            continue
        if v.service == service:
            known.add(v.category)
            if v.category == category:
                found.append(code)
    if len(found) != 1:
        why = "no" if not found else f"{len(found)} ({', '.join(found)})"
        raise BillingError(f"category: {why} {service} tariff of category {category!r} in "
                           f"{period}; categories: {', '.join(sorted(known)) or 'none'}")
    return found[0]


def simulation_text(current: InvoiceDraft, simulated: InvoiceDraft, title: str) -> str:
    """Both invoices' totals and the difference per line (split lines summed)."""
    def amounts(d: InvoiceDraft) -> dict[_LineKey, int]:
        out: dict[_LineKey, int] = {}
        for ln in d.lines:
            k = (ln.service, ln.metering_point_id, ln.component, ln.register or "")
            out[k] = out.get(k, 0) + ln.amount_fen
        return out

    a, b = amounts(current), amounts(simulated)
    rows = [f"{title}", f"{'line':<48}{'current':>12}{'simulated':>12}{'difference':>12}"]
    for k in dict.fromkeys([*a, *b]):  # the invoice's order, then lines only simulated
        label = " ".join(p for p in k if p)
        x, y = a.get(k, 0), b.get(k, 0)
        rows.append(f"{label[:47]:<48}{format_km(x):>12}{format_km(y):>12}{format_km(y - x):>12}")
    for name, x, y in (("net", current.net_fen, simulated.net_fen),
                       ("VAT", current.vat_fen, simulated.vat_fen),
                       ("total", current.total_fen, simulated.total_fen)):
        rows.append(f"{name.upper():<48}{format_km(x):>12}{format_km(y):>12}{format_km(y - x):>12}")
    return "\n".join(rows) + "\n"


def given_consumption(period: str, tariff_code: str, kwh_vt: str, kwh_mt: str,
                      catalog: Catalog) -> tuple[list[ContractInput], list[DailyConsumption]]:
    """A whole-month electricity contract on an imaginary metering point with the given VT
    and MT kWh (their sum on 1.8.0 for a single-rate tariff)."""
    first, _ = check_period(period)
    try:
        version = catalog.version_on(tariff_code, first)
    except RatingError as exc:
        raise BillingError(f"tariff: {exc}") from exc
    if version.service != "electricity":
        raise BillingError(f"tariff: {tariff_code} is a {version.service} tariff; --kwh-vt and"
                           " --kwh-mt price electricity")
    quantities = {}
    for name, text in (("--kwh-vt", kwh_vt), ("--kwh-mt", kwh_mt)):
        try:
            quantities[name] = parse_quantity_milli(text)
        except ValueError as exc:
            raise BillingError(f"{name}: {exc}") from exc
        if quantities[name] < 0:
            raise BillingError(f"{name}: must not be negative, got {text}")
    mp = "SIMULATION"
    contract = ContractInput("SIMULATION", mp, "electricity", tariff_code, first, None)
    if version.energy_component("1.8.1", first) is not None:
        rows = [DailyConsumption(mp, "electricity", "1.8.1", first, quantities["--kwh-vt"]),
                DailyConsumption(mp, "electricity", "1.8.2", first, quantities["--kwh-mt"])]
    else:
        rows = [DailyConsumption(mp, "electricity", "1.8.0", first,
                                 quantities["--kwh-vt"] + quantities["--kwh-mt"])]
    return [contract], rows


def rate(customer_id: str, period: str, contracts: list[ContractInput],
         consumption: list[DailyConsumption], catalog: Catalog,
         demand: list[DailyConsumption] | None = None) -> InvoiceDraft:
    return compute_invoice(customer_id, period, contracts, consumption, catalog, demand or ())
