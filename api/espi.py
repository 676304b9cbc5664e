"""Green Button "Download My Data": a customer's daily consumption as an ESPI Atom feed
(NAESB REQ.21, namespace ``http://naesb.org/espi`` inside an RFC 4287 Atom feed).

Pure: plain rows in, XML bytes out; the time of the export is an argument. The feed holds

* one ``LocalTimeParameters`` entry (Europe/Sarajevo: UTC+1, +1 h from the last Sunday of
  March 02:00 to the last Sunday of October 03:00 local time),
* per metering point and service a ``UsagePoint`` (``ServiceCategory/kind``: 0
  electricity, 2 water),
* per register a ``MeterReading`` with its ``ReadingType`` (daily ``deltaData``,
  ``intervalLength`` 86400; electricity in Wh = uom 72 with ``powerOfTenMultiplier`` 0,
  water in m³ = uom 42 with multiplier -3; 1.8.1 / 1.8.2 are ``tou`` 1 / 2),
* per register and local month an ``IntervalBlock`` with one ``IntervalReading`` per
  day: ``timePeriod/start`` is the local midnight in epoch seconds, ``duration`` the
  day's real length (82,800 or 90,000 s on the days the clock changes), ``value`` the
  stored thousandths of a kWh or m³ (``quantity_milli``) unchanged.

Entries are linked the ESPI way (``self`` / ``up`` / ``related`` hrefs under
``RetailCustomer/{id}``), ids are ``urn:uuid`` derived from the customer, metering point,
service and register, so the same data gives the same ids in every download.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import groupby

from rating.calendar import LOCAL_TZ

ATOM = "http://www.w3.org/2005/Atom"
ESPI = "http://naesb.org/espi"
_ID_SPACE = uuid.UUID("6f1d3c52-8a4e-5b1f-9c0d-2e7a4b9c1f30")

DAY_SECONDS = 86_400
CURRENCY_BAM = 977  # ISO 4217 numeric
SERVICE_KIND = {"electricity": 0, "gas": 1, "water": 2}
TOU = {"1.8.1": 1, "1.8.2": 2}  # VT (higher tariff) = TOU A, MT (lower tariff) = TOU B


@dataclass(frozen=True)
class Measure:
    """How a service's ``quantity_milli`` reads in ESPI terms."""

    commodity: int  # CommodityKind
    kind: int  # MeasurementKind
    uom: int  # UnitSymbolKind
    power_of_ten: int


MEASURES = {
    "electricity": Measure(commodity=1, kind=12, uom=72, power_of_ten=0),  # kWh/1000 = Wh
    "water": Measure(commodity=9, kind=58, uom=42, power_of_ten=-3),  # m³/1000
}
ACCUMULATION_DELTA = 4
DATA_QUALIFIER_NORMAL = 12
FLOW_FORWARD = 1


@dataclass(frozen=True)
class DailyRow:
    """One day of one register of one metering point (a row of ``daily_consumption``)."""

    metering_point_id: str
    service: str
    register: str
    local_day: date
    quantity_milli: int


# ---- daylight saving rule (ESPI DstRuleType, 32 bits) -----------------------------------

LAST_OCCURRENCE = 7
SUNDAY = 7  # ESPI day of week: Monday = 1 … Sunday = 7


def dst_rule(month: int, hour: int, *, weekday: int = SUNDAY,
             operator: int = LAST_OCCURRENCE, day_of_month: int = 0, seconds: int = 0) -> str:
    """The rule as 8 hex digits: bits 28–31 month, 25–27 operator, 20–24 day of month,
    17–19 day of week, 12–16 hour, 0–11 seconds (local clock at the change)."""
    fields = ((month, 1, 12), (operator, 0, 7), (day_of_month, 0, 31), (weekday, 0, 7),
              (hour, 0, 23), (seconds, 0, 3599))
    for value, low, high in fields:
        if not low <= value <= high:
            raise ValueError(f"dst rule: {value} outside {low}..{high}")
    rule = (month << 28 | operator << 25 | day_of_month << 20 | weekday << 17 | hour << 12
            | seconds)
    return f"{rule:08X}"


DST_START = dst_rule(3, 2)  # last Sunday of March, 02:00 → 03:00
DST_END = dst_rule(10, 3)  # last Sunday of October, 03:00 → 02:00
TZ_OFFSET = 3600
DST_OFFSET = 3600


# ---- checks ---------------------------------------------------------------------------


def check_rows(rows: Iterable[DailyRow]) -> list[DailyRow]:
    """The rows as a list; ValueError naming the row and field of the first bad one."""
    out = list(rows)
    for i, r in enumerate(out):
        where = f"rows[{i}]"
        if not isinstance(r, DailyRow):
            raise ValueError(f"{where}: not a DailyRow")
        if r.service not in MEASURES:
            raise ValueError(f"{where}.service: {r.service!r} has no metered consumption"
                             f" (expected one of {', '.join(MEASURES)})")
        if not isinstance(r.metering_point_id, str) or not r.metering_point_id:
            raise ValueError(f"{where}.metering_point_id: must be a non-empty string")
        if not isinstance(r.register, str) or not r.register:
            raise ValueError(f"{where}.register: must be a non-empty string")
        if not isinstance(r.local_day, date) or isinstance(r.local_day, datetime):
            raise ValueError(f"{where}.local_day: must be a date")
        if not isinstance(r.quantity_milli, int) or isinstance(r.quantity_milli, bool):
            raise ValueError(f"{where}.quantity_milli: must be an integer")
        if abs(r.quantity_milli) >= 2**47:
            raise ValueError(f"{where}.quantity_milli: does not fit ESPI's Int48")
    return out


# ---- XML ------------------------------------------------------------------------------


def _resource(content: ET.Element, tag: str) -> ET.Element:
    """The ESPI resource of an entry, declaring ``http://naesb.org/espi`` as its default
    namespace (as Green Button files do); its children are unqualified."""
    return ET.SubElement(content, tag, {"xmlns": ESPI})


def _sub(parent: ET.Element, tag: str, value: object | None = None) -> ET.Element:
    child = ET.SubElement(parent, tag)
    if value is not None:
        child.text = str(value)
    return child


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def day_period(d: date) -> tuple[int, int]:
    """(start, duration) in epoch seconds of the local day ``d``."""
    start = datetime.combine(d, time(0), LOCAL_TZ)
    end = datetime.combine(d + timedelta(days=1), time(0), LOCAL_TZ)
    return int(start.timestamp()), int(end.timestamp() - start.timestamp())


class _Feed:
    """Builds the Atom entries; every entry carries the same ``published``/``updated``."""

    def __init__(self, customer_id: str, now: datetime, base: str) -> None:
        self.customer_id = customer_id
        self.stamp = _stamp(now)
        self.base = f"{base.rstrip('/')}/RetailCustomer/{customer_id}"
        self.root = ET.Element("feed", {"xmlns": ATOM})
        _sub(self.root, "id", self.urn("feed"))
        _sub(self.root, "title", f"Komunalno Brčko – Green Button – {customer_id}")
        _sub(self.root, "updated", self.stamp)
        ET.SubElement(self.root, "link", {"rel": "self", "href": f"{self.base}/DownloadMyData"})

    def urn(self, *parts: str) -> str:
        return f"urn:uuid:{uuid.uuid5(_ID_SPACE, '/'.join((self.customer_id, *parts)))}"

    def entry(self, key: tuple[str, ...], title: str, href: str, up: str,
              related: Iterable[str] = ()) -> ET.Element:
        """A new entry; returns its ``content`` element for the ESPI resource."""
        entry = _sub(self.root, "entry")
        _sub(entry, "id", self.urn(*key))
        ET.SubElement(entry, "link", {"rel": "self", "href": href})
        ET.SubElement(entry, "link", {"rel": "up", "href": up})
        for other in related:
            ET.SubElement(entry, "link", {"rel": "related", "href": other})
        _sub(entry, "title", title)
        content = _sub(entry, "content")
        _sub(entry, "published", self.stamp)
        _sub(entry, "updated", self.stamp)
        return content


def _local_time(feed: _Feed) -> str:
    href = f"{feed.base}/LocalTimeParameters/1"
    content = feed.entry(("LocalTimeParameters",), "Europe/Sarajevo", href,
                         f"{feed.base}/LocalTimeParameters")
    params = _resource(content, "LocalTimeParameters")
    for tag, value in (("dstEndRule", DST_END), ("dstOffset", DST_OFFSET),
                       ("dstStartRule", DST_START), ("tzOffset", TZ_OFFSET)):
        _sub(params, tag, value)
    return href


def _reading_type(content: ET.Element, service: str, register: str) -> None:
    m = MEASURES[service]
    rt = _resource(content, "ReadingType")
    _sub(rt, "accumulationBehaviour", ACCUMULATION_DELTA)
    _sub(rt, "commodity", m.commodity)
    _sub(rt, "currency", CURRENCY_BAM)
    _sub(rt, "dataQualifier", DATA_QUALIFIER_NORMAL)
    _sub(rt, "flowDirection", FLOW_FORWARD)
    _sub(rt, "intervalLength", DAY_SECONDS)
    _sub(rt, "kind", m.kind)
    _sub(rt, "powerOfTenMultiplier", m.power_of_ten)
    if register in TOU:
        _sub(rt, "tou", TOU[register])
    _sub(rt, "uom", m.uom)


def _interval_block(content: ET.Element, days: list[DailyRow]) -> None:
    block = _resource(content, "IntervalBlock")
    periods = [day_period(r.local_day) for r in days]
    interval = _sub(block, "interval")
    _sub(interval, "duration", periods[-1][0] + periods[-1][1] - periods[0][0])
    _sub(interval, "start", periods[0][0])
    for row, (start, duration) in zip(days, periods, strict=True):
        reading = _sub(block, "IntervalReading")
        period = _sub(reading, "timePeriod")
        _sub(period, "duration", duration)
        _sub(period, "start", start)
        _sub(reading, "value", row.quantity_milli)


def build_feed(customer_id: str, rows: Iterable[DailyRow], *, now: datetime,
               base: str = "/espi/1_1/resource") -> bytes:
    """The customer's Green Button feed (UTF-8 XML with declaration) for ``rows``.

    ``now`` (aware) becomes the feed's ``updated``; ``base`` prefixes the link hrefs.
    ValueError naming the field for a naive ``now`` or a bad row.
    """
    if not isinstance(customer_id, str) or not customer_id:
        raise ValueError("customer_id: must be a non-empty string")
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise ValueError("now: must be an aware datetime")
    checked = check_rows(rows)
    feed = _Feed(customer_id, now, base)
    local_time = _local_time(feed)

    def point_key(r: DailyRow) -> tuple[str, str]:
        return r.metering_point_id, r.service

    reading_types = 0
    ordered = sorted(checked, key=lambda r: (*point_key(r), r.register, r.local_day))
    for n, ((mp, service), point_rows) in enumerate(groupby(ordered, key=point_key), 1):
        up_href = f"{feed.base}/UsagePoint/{n}"
        content = feed.entry((mp, service), f"{mp} – {service}", up_href,
                             f"{feed.base}/UsagePoint",
                             (f"{up_href}/MeterReading", local_time))
        category = _sub(_resource(content, "UsagePoint"), "ServiceCategory")
        _sub(category, "kind", SERVICE_KIND[service])
        by_register = groupby(point_rows, key=lambda r: r.register)
        for k, (register, reg_rows) in enumerate(by_register, 1):
            days = list(reg_rows)
            mr_href = f"{up_href}/MeterReading/{k}"
            reading_types += 1
            rt_href = f"{feed.base}/ReadingType/{reading_types}"
            reading = feed.entry((mp, service, register), f"{mp} – {register}", mr_href,
                                 f"{up_href}/MeterReading",
                                 (f"{mr_href}/IntervalBlock", rt_href))
            _resource(reading, "MeterReading")
            _reading_type(feed.entry((mp, service, register, "type"),
                                     f"{service} {register}", rt_href,
                                     f"{feed.base}/ReadingType"), service, register)
            months = groupby(days, key=lambda r: (r.local_day.year, r.local_day.month))
            for b, ((year, month), month_rows) in enumerate(months, 1):
                content = feed.entry((mp, service, register, f"{year}-{month:02d}"),
                                     f"{mp} – {register} – {year}-{month:02d}",
                                     f"{mr_href}/IntervalBlock/{b}",
                                     f"{mr_href}/IntervalBlock")
                _interval_block(content, list(month_rows))
    return ET.tostring(feed.root, encoding="utf-8", xml_declaration=True)
