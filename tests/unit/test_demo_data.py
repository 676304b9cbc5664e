"""The demo data generator: deterministic, believable, and always with the demo login."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest

from app.demo_data import DEMO_CUSTOMER, demo_periods, generate_demo, read_instants


def series(doc: dict[str, Any]) -> dict[tuple[str, str], list[Decimal]]:
    out: dict[tuple[str, str], list[Decimal]] = defaultdict(list)
    for r in doc["readings"]:
        out[(r["meter_id"], r["register"])].append(Decimal(r["value"]))
    return out


def monthly(values: list[Decimal], digits: int) -> list[Decimal]:
    """Advance per month; a smaller value is a rollover of a `digits`-digit register."""
    return [
        b - a if b >= a else b + 10**digits - a for a, b in zip(values, values[1:], strict=False)
    ]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return generate_demo(customers=400, months=24, end_period="2026-03", seed=7)


def test_periods_and_read_days() -> None:
    assert demo_periods("2026-02", 3) == ["2025-12", "2026-01", "2026-02"]
    days = read_instants("2026-02", 3)
    assert [d.isoformat() for d in days] == ["2025-12-01", "2026-01-01", "2026-02-01", "2026-03-01"]
    with pytest.raises(ValueError, match="YYYY-MM"):
        demo_periods("2026-13", 2)
    with pytest.raises(ValueError, match="catalog starts 2024-01-01"):
        generate_demo(customers=5, months=30, end_period="2025-01")


def test_same_seed_same_document_other_seed_differs() -> None:
    a = generate_demo(customers=30, months=4, end_period="2026-03", seed=7)
    b = generate_demo(customers=30, months=4, end_period="2026-03", seed=7)
    c = generate_demo(customers=30, months=4, end_period="2026-03", seed=8)
    assert a == b
    assert a["readings"] != c["readings"]


def test_demo_customer_has_login_and_all_services(doc: dict[str, Any]) -> None:
    demo = [c for c in doc["customers"] if c["customer_id"] == DEMO_CUSTOMER]
    assert demo == [demo[0]] and demo[0]["password"] == "demo"
    assert demo[0]["kind"] == "household"
    assert sum("password" in c for c in doc["customers"]) == 1
    services = {
        c["service"]: c["tariff_code"]
        for c in doc["contracts"]
        if c["customer_id"] == DEMO_CUSTOMER
    }
    assert services == {"electricity": "EL-HH", "water": "W-HH", "waste": "WA-HH"}


def test_shape_of_the_customer_base(doc: dict[str, Any]) -> None:
    kinds = [c["kind"] for c in doc["customers"]]
    share = kinds.count("business") / len(kinds)
    assert 0.07 < share < 0.17
    tariffs = defaultdict(set)
    for c in doc["contracts"]:
        tariffs[c["service"]].add(c["tariff_code"])
    assert tariffs == {
        "electricity": {"EL-HH", "EL-OP"},
        "water": {"W-HH", "W-VS", "W-BU"},
        "waste": {"WA-HH", "WA-BU"},
    }
    points = {p["metering_point_id"]: p for p in doc["metering_points"]}
    for p in points.values():
        assert abs(p["latitude"] - 44.872) <= 0.03 and abs(p["longitude"] - 18.81) <= 0.03
        assert p["address"].endswith(", Brčko")
        assert 1 <= p.get("household_members", 1) <= 6
        assert 20 <= p.get("area_m2", 20) <= 400
    # 24 months of reads need 25 read days, each at local midnight on the 1st
    reads = series(doc)
    assert {len(v) for v in reads.values()} == {25}
    assert doc["readings"][0]["read_at"] == "2024-04-01T00:00:00+02:00"
    assert doc["readings"][-1]["read_at"] == "2026-04-01T00:00:00+02:00"


def test_consumption_is_believable(doc: dict[str, Any]) -> None:
    kinds = {c["customer_id"]: c["kind"] for c in doc["customers"]}
    members = {
        p["metering_point_id"][3:]: p.get("household_members") for p in doc["metering_points"]
    }
    reads = series(doc)
    winter, summer = Decimal(0), Decimal(0)
    for cid, kind in kinds.items():
        vt = monthly(reads[(f"E-{cid}", "1.8.1")], 6)
        mt = monthly(reads[(f"E-{cid}", "1.8.2")], 6)
        total = [a + b for a, b in zip(vt, mt, strict=True)]
        water = monthly(reads[(f"V-{cid}", "8.0")], 5)
        # months are Apr 2024 … Mar 2026: index 0 = April
        year = sum(total[:12])
        if kind == "household":
            assert 1800 <= year <= 5400, (cid, year)
            assert Decimal("0.58") <= sum(vt) / sum(total) <= Decimal("0.72")
            winter += sum(total[i] for i in (8, 9, 10))  # Dec, Jan, Feb
            summer += sum(total[i] for i in (2, 3, 4))  # Jun, Jul, Aug
            per_member = sum(water) / len(water) / members[cid]
            assert Decimal("2.1") <= per_member <= Decimal("4.7"), (cid, per_member)
        else:
            assert 400 * 12 * Decimal("0.8") <= year <= 4000 * 12 * Decimal("1.2")
    assert Decimal("1.35") <= winter / summer <= Decimal("1.65")


def test_some_water_meters_roll_over(doc: dict[str, Any]) -> None:
    reads = series(doc)
    wrapped = [
        k
        for k, v in reads.items()
        if k[1] == "8.0" and any(b < a for a, b in zip(v, v[1:], strict=False))
    ]
    assert len(wrapped) == 4  # 1 % of 400 customers
    meters = {m["meter_id"]: m for m in doc["meters"]}
    assert {meters[m]["digits"] for m, _ in wrapped} == {5}
    for key in wrapped:  # the wrapped advance is a normal month, not a huge jump
        assert max(monthly(reads[key], 5)) < 200
