"""The Green Button (ESPI) builder: parsed back with a namespace-aware parser, every value
checked against the rows it was given, the daylight-saving rules against the tz database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from defusedxml import ElementTree as SafeET

from api.espi import ATOM, DST_END, DST_START, ESPI, DailyRow, build_feed, day_period
from rating.calendar import LOCAL_TZ

NOW = datetime(2026, 4, 20, 8, 0, tzinfo=UTC)
A = f"{{{ATOM}}}"
E = f"{{{ESPI}}}"


def days(start: date, n: int, register: str = "1.8.1", service: str = "electricity",
         mp: str = "MP-A", base: int = 1000) -> list[DailyRow]:
    return [DailyRow(mp, service, register, start + timedelta(days=i), base + i)
            for i in range(n)]


def parse(rows: list[DailyRow], customer: str = "100001") -> Any:
    return SafeET.fromstring(build_feed(customer, rows, now=NOW))


def resources(feed: Any, tag: str) -> list[tuple[Any, Any]]:
    """(entry, resource) for every entry whose content holds an ESPI ``tag``."""
    out = []
    for entry in feed.findall(f"{A}entry"):
        found = entry.find(f"{A}content/{E}{tag}")
        if found is not None:
            out.append((entry, found))
    return out


def links(entry: Any, rel: str) -> list[str]:
    return [ln.get("href") for ln in entry.findall(f"{A}link") if ln.get("rel") == rel]


def test_feed_and_resources_are_in_the_atom_and_espi_namespaces() -> None:
    xml = build_feed("100001", days(date(2026, 3, 1), 3), now=NOW)
    assert xml.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    feed = SafeET.fromstring(xml)
    assert feed.tag == f"{A}feed"
    assert feed.findtext(f"{A}updated") == "2026-04-20T08:00:00Z"
    assert feed.findtext(f"{A}id").startswith("urn:uuid:")
    kinds = [e.find(f"{A}content")[0].tag for e in feed.findall(f"{A}entry")]
    assert kinds == [f"{E}LocalTimeParameters", f"{E}UsagePoint", f"{E}MeterReading",
                     f"{E}ReadingType", f"{E}IntervalBlock"]
    for entry in feed.findall(f"{A}entry"):
        assert entry.findtext(f"{A}published") == entry.findtext(f"{A}updated") == (
            "2026-04-20T08:00:00Z")
        assert len(links(entry, "self")) == len(links(entry, "up")) == 1


def test_usage_points_reading_types_and_values() -> None:
    rows = (days(date(2026, 3, 1), 2, "1.8.1") + days(date(2026, 3, 1), 2, "1.8.2", base=500)
            + days(date(2026, 3, 1), 2, "8.0", "water", "MP-W", base=-7))
    feed = parse(rows)
    points = resources(feed, "UsagePoint")
    assert [p.findtext(f"{E}ServiceCategory/{E}kind") for _, p in points] == ["0", "2"]
    types = [rt for _, rt in resources(feed, "ReadingType")]
    got = [{child.tag.removeprefix(E): child.text for child in rt} for rt in types]
    common = {"accumulationBehaviour": "4", "currency": "977", "dataQualifier": "12",
              "flowDirection": "1", "intervalLength": "86400"}
    assert got == [
        {**common, "commodity": "1", "kind": "12", "powerOfTenMultiplier": "0", "tou": "1",
         "uom": "72"},
        {**common, "commodity": "1", "kind": "12", "powerOfTenMultiplier": "0", "tou": "2",
         "uom": "72"},
        {**common, "commodity": "9", "kind": "58", "powerOfTenMultiplier": "-3", "uom": "42"},
    ]
    values = [[int(v.text) for v in block.iter(f"{E}value")]
              for _, block in resources(feed, "IntervalBlock")]
    assert values == [[1000, 1001], [500, 501], [-7, -6]]


def test_each_day_starts_at_local_midnight_and_lasts_as_long_as_the_day() -> None:
    rows = days(date(2026, 3, 28), 3) + days(date(2025, 10, 25), 3)
    feed = parse(rows)
    readings = [(int(r.findtext(f"{E}timePeriod/{E}start")),
                 int(r.findtext(f"{E}timePeriod/{E}duration")), int(r.findtext(f"{E}value")))
                for _, b in resources(feed, "IntervalBlock")
                for r in b.findall(f"{E}IntervalReading")]
    by_day = {datetime.fromtimestamp(s, LOCAL_TZ).date(): (s, d) for s, d, _v in readings}
    assert {d: dur for d, (_s, dur) in by_day.items()} == {
        date(2025, 10, 25): 86_400, date(2025, 10, 26): 90_000, date(2025, 10, 27): 86_400,
        date(2026, 3, 28): 86_400, date(2026, 3, 29): 82_800, date(2026, 3, 30): 86_400}
    for d, (start, _dur) in by_day.items():
        local = datetime.fromtimestamp(start, LOCAL_TZ)
        assert (local.date(), local.hour, local.minute) == (d, 0, 0)
    assert day_period(date(2026, 3, 29)) == (
        int(datetime(2026, 3, 28, 23, 0, tzinfo=UTC).timestamp()), 82_800)


def test_one_interval_block_per_local_month_linked_to_its_reading() -> None:
    feed = parse(days(date(2026, 1, 30), 4))  # 30, 31 Jan, 1, 2 Feb
    (reading_entry, _), = resources(feed, "MeterReading")
    blocks = resources(feed, "IntervalBlock")
    assert len(blocks) == 2
    for entry, block in blocks:
        assert links(entry, "up") == [links(reading_entry, "related")[0]]
        start = int(block.findtext(f"{E}interval/{E}start"))
        duration = int(block.findtext(f"{E}interval/{E}duration"))
        firsts = [int(r.findtext(f"{E}timePeriod/{E}start"))
                  for r in block.findall(f"{E}IntervalReading")]
        assert start == firsts[0] and duration == 2 * 86_400
    (type_entry, _), = resources(feed, "ReadingType")
    assert links(type_entry, "self")[0] in links(reading_entry, "related")
    (point_entry, _), = resources(feed, "UsagePoint")
    (ltp_entry, _), = resources(feed, "LocalTimeParameters")
    assert links(ltp_entry, "self")[0] in links(point_entry, "related")


def decode_rule(rule: str, year: int) -> datetime:
    """The local wall-clock time of an ESPI DstRuleType in ``year`` (operators 0 and 7)."""
    bits = int(rule, 16)
    seconds, hours = bits & 0xFFF, (bits >> 12) & 0x1F
    weekday, day, operator, month = ((bits >> 17) & 0x7, (bits >> 20) & 0x1F,
                                     (bits >> 25) & 0x7, bits >> 28)
    if operator == 0:
        d = date(year, month, day)
    else:
        assert operator == 7
        d = date(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)
        while d.isoweekday() != weekday:
            d -= timedelta(days=1)
    return datetime(d.year, d.month, d.day, hours) + timedelta(seconds=seconds)


def test_the_dst_rules_match_the_time_zone_database() -> None:
    feed = parse(days(date(2026, 3, 1), 1))
    (_, ltp), = resources(feed, "LocalTimeParameters")
    assert [(c.tag.removeprefix(E), c.text) for c in ltp] == [
        ("dstEndRule", DST_END), ("dstOffset", "3600"), ("dstStartRule", DST_START),
        ("tzOffset", "3600")]
    for year in (2024, 2025, 2026, 2027):
        changes = []
        t = datetime(year, 1, 1, tzinfo=UTC)
        while t.year == year:
            nxt = t + timedelta(hours=1)
            if t.astimezone(LOCAL_TZ).utcoffset() != nxt.astimezone(LOCAL_TZ).utcoffset():
                changes.append(nxt)
            t = nxt
        start_utc, end_utc = changes
        # the rule names the local clock just before the change (02:00 CET, 03:00 CEST)
        assert decode_rule(DST_START, year) == (start_utc + timedelta(hours=1)).replace(
            tzinfo=None)
        assert decode_rule(DST_END, year) == (end_utc + timedelta(hours=2)).replace(
            tzinfo=None)


def test_same_rows_same_bytes_and_ids_depend_on_the_customer() -> None:
    rows = days(date(2026, 3, 1), 3)
    assert build_feed("100001", rows, now=NOW) == build_feed("100001", rows[::-1], now=NOW)
    ids_a = [e.findtext(f"{A}id") for e in parse(rows, "100001").findall(f"{A}entry")]
    ids_b = [e.findtext(f"{A}id") for e in parse(rows, "100002").findall(f"{A}entry")]
    assert len(set(ids_a)) == len(ids_a) and not set(ids_a) & set(ids_b)


def test_an_empty_export_is_a_valid_feed() -> None:
    feed = parse([])
    assert [e.find(f"{A}content")[0].tag for e in feed.findall(f"{A}entry")] == [
        f"{E}LocalTimeParameters"]


@pytest.mark.parametrize(("row", "message"), [
    (DailyRow("MP", "waste", "x", date(2026, 3, 1), 1), r"rows\[0\]\.service: 'waste'"),
    (DailyRow("MP", "electricity", "1.8.1", date(2026, 3, 1), 1.5),  # type: ignore[arg-type]
     r"rows\[0\]\.quantity_milli: must be an integer"),
    (DailyRow("MP", "electricity", "", date(2026, 3, 1), 1), r"rows\[0\]\.register"),
    (DailyRow("", "water", "8.0", date(2026, 3, 1), 1), r"rows\[0\]\.metering_point_id"),
    (DailyRow("MP", "water", "8.0", "2026-03-01", 1),  # type: ignore[arg-type]
     r"rows\[0\]\.local_day: must be a date"),
    (DailyRow("MP", "water", "8.0", date(2026, 3, 1), 2**47), r"Int48"),
])
def test_bad_rows_are_refused_naming_the_field(row: DailyRow, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_feed("100001", [row], now=NOW)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="now: must be an aware datetime"):
        build_feed("100001", [], now=datetime(2026, 4, 20, 8))
    with pytest.raises(ValueError, match="customer_id"):
        build_feed("", [], now=NOW)
