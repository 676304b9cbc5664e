"""A believable demo utility in Brčko as an import document (docs/import-format.md).

~88 % households (electricity EL-HH on a two-register 6-digit meter, water W-HH or, in
villages, W-VS, waste WA-HH), ~12 % businesses (EL-OP, W-BU, WA-BU by m²). One read per
register at local midnight on the first of each month. Consumption has believable shapes
(winter heating, day/night split, per-member water use) from a seeded numpy generator:
the same arguments always give the same document. Customer 100001 with password "demo"
is always present (the documented portal login); nobody else gets a password.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rating.calendar import LOCAL_TZ, month_bounds, previous_period

CATALOG = Path(__file__).parent / "demo" / "catalog.json"
DEMO_CUSTOMER = "100001"
DEMO_PASSWORD = "demo"
CENTER = (44.872, 18.81)  # Brčko


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split("|"))


STREETS = _names(
    "Bulevar mira|Reisa Džemaludina Čauševića|Trg pravde|Ulica Mehmedalije Tarabara|"
    "Dubrovačka|Cvijetina Mijatovića|Zagrebačka|Islahijeta|Potočari|Kolobara|Ive Andrića|"
    "Sarajevska|Tuzlanska"
)
VILLAGES = _names(
    "Brka|Gornji Rahić|Maoča|Bijela|Ražljevo|Brezovo Polje|Boće|Gorice|Bukvik|Gornji Zovik"
)
FIRST = _names(
    "Amra|Emina|Selma|Jasmina|Marija|Ivana|Milica|Jelena|Lejla|Ana|Adnan|Emir|Haris|"
    "Mirza|Nikola|Marko|Dragan|Ivan|Stefan|Zoran|Senad|Mehmed|Goran|Tarik|Dejan"
)
LAST = _names(
    "Hodžić|Mehmedović|Jovanović|Petrović|Kovačević|Marić|Babić|Husić|Salihović|"
    "Stojanović|Nikolić|Tomić|Jurić|Mujić|Begić|Ćosić|Lukić|Ilić|Hasanović|Alić|Đurić|"
    "Knežević|Pavlović|Filipović|Omerović"
)
TRADES = _names(
    "Trgovina|Pekara|Frizerski salon|Kafe bar|Autoservis|Apoteka|Stomatološka ordinacija|"
    "Knjigovodstveni biro|Cvjećara|Mesnica|Butik|Restoran"
)

# Monthly shape of electricity use, January first (households heat with electricity).
EL_HOUSEHOLD = np.array([1.30, 1.25, 1.10, 0.95, 0.85, 0.85, 0.90, 0.88, 0.85, 0.95, 1.10, 1.30])
EL_BUSINESS = np.array([1.10, 1.05, 1.00, 0.95, 0.95, 1.05, 1.15, 1.10, 0.95, 0.95, 1.00, 1.10])
WATER = np.array([1.0, 1.0, 1.0, 1.0, 1.05, 1.10, 1.12, 1.10, 1.05, 1.0, 1.0, 1.0])
EL_HOUSEHOLD /= EL_HOUSEHOLD.mean()  # the shapes move use between months, not the year's total
EL_BUSINESS /= EL_BUSINESS.mean()
WATER /= WATER.mean()
EL_MODULUS = 10**6 * 1000  # 6 digits, in Wh
WATER_DIGITS = 5
WATER_MODULUS = 10**WATER_DIGITS * 1000  # litres

I64 = npt.NDArray[np.int64]


def demo_periods(end_period: str, months: int) -> list[str]:
    """The `months` billing periods ending with `end_period`, oldest first."""
    if months < 1:
        raise ValueError("months must be at least 1")
    month_bounds(end_period)  # validates YYYY-MM
    out = [end_period]
    while len(out) < months:
        out.append(previous_period(out[-1]))
    return out[::-1]


def read_instants(end_period: str, months: int) -> list[date]:
    """First day of each period plus the first day after `end_period` (months + 1 days)."""
    periods = demo_periods(end_period, months)
    return [month_bounds(p)[0] for p in periods] + [month_bounds(end_period)[1]]


def _rfc3339(d: date) -> str:
    return datetime.combine(d, time(0), LOCAL_TZ).isoformat()


def _value(milli: int) -> str:
    return f"{milli // 1000}.{milli % 1000:03d}"


def generate_demo(
    *, customers: int = 2000, months: int = 24, end_period: str, seed: int = 7
) -> dict[str, Any]:
    """An import document for `customers` customers with `months` months of reads, the last
    read on the first day after `end_period` (so every period up to it can be closed)."""
    if customers < 1:
        raise ValueError("customers must be at least 1")
    tariffs = json.loads(CATALOG.read_text(encoding="utf-8"))
    days = read_instants(end_period, months)
    earliest = max(date.fromisoformat(t["valid_from"]) for t in tariffs)
    if days[0] < earliest:
        raise ValueError(
            f"the demo catalog starts {earliest}: {months} months ending "
            f"{end_period} would begin {days[0]}"
        )
    rng = np.random.default_rng(seed)
    n = customers
    business = rng.random(n) < 0.12
    business[0] = False
    village = ~business & (rng.random(n) < 0.08)
    village[0] = False
    members = rng.choice(np.arange(1, 7), size=n, p=[0.14, 0.24, 0.2, 0.22, 0.13, 0.07])
    area = rng.integers(20, 401, size=n)
    month_of = np.array([d.month - 1 for d in days[:-1]])

    # electricity, Wh per month
    base = np.where(
        business, np.exp(rng.uniform(np.log(400), np.log(4000), n)), rng.uniform(165, 415, n)
    )
    shape = np.where(business[:, None], EL_BUSINESS[month_of], EL_HOUSEHOLD[month_of])
    noise = np.clip(rng.normal(1.0, 0.07, (n, months)), 0.8, 1.2)
    total = np.rint(base[:, None] * shape * noise * 1000).astype(np.int64)
    share = np.where(business, rng.uniform(0.70, 0.82, n), rng.uniform(0.60, 0.70, n))
    share_m = np.clip(share[:, None] + rng.normal(0, 0.01, (n, months)), 0.55, 0.85)
    vt = np.rint(total * share_m).astype(np.int64)
    mt = total - vt
    # water, litres per month
    per_member = rng.uniform(2.5, 4.0, n) * members
    w_base = np.where(business, rng.uniform(5, 60, n), per_member)
    w_noise = np.clip(rng.normal(1.0, 0.05, (n, months)), 0.85, 1.15)
    water = np.rint(w_base[:, None] * WATER[month_of] * w_noise * 1000).astype(np.int64)

    el_vt = _registers(rng.integers(1000, 60000, n) * 1000, vt, EL_MODULUS)
    el_mt = _registers(rng.integers(500, 30000, n) * 1000, mt, EL_MODULUS)
    w_start = rng.integers(10, 3000, n) * 1000
    rolling = (
        rng.choice(np.arange(1, n), size=min(n - 1, max(1, n // 100)), replace=False)
        if n > 1
        else np.zeros(0, np.int64)
    )
    cum = np.concatenate([np.zeros((n, 1), np.int64), np.cumsum(water, axis=1)], axis=1)
    mid = months // 2
    for c in rolling:  # start just below 99999 m³ so the register wraps mid-way
        w_start[c] = WATER_MODULUS - cum[c, mid] - max(1, int(water[c, mid]) // 2)
    w_reg = _registers(w_start, water, WATER_MODULUS)

    stamps = [_rfc3339(d) for d in days]
    doc: dict[str, Any] = {
        "tariffs": tariffs,
        "customers": [],
        "metering_points": [],
        "meters": [],
        "contracts": [],
        "readings": [],
    }
    lat = np.round(CENTER[0] + rng.uniform(-0.03, 0.03, n), 6)
    lon = np.round(CENTER[1] + rng.uniform(-0.03, 0.03, n), 6)
    street = rng.integers(0, len(STREETS), n)
    place = rng.integers(0, len(VILLAGES), n)
    number = rng.integers(1, 121, n)
    names = rng.integers(0, 1000, (n, 3))
    phones = rng.integers(200000, 1000000, n)
    for c in range(n):
        cid = f"{100001 + c}"
        address = (
            f"{VILLAGES[place[c]]} {number[c]}, Brčko"
            if village[c]
            else f"{STREETS[street[c]]} {number[c]}, Brčko"
        )
        customer: dict[str, Any] = {
            "customer_id": cid,
            "name": _name(c, bool(business[c]), names[c]),
            "kind": "business" if business[c] else "household",
            "address": address,
            "phone": f"+387 49 {phones[c]}",
        }
        if cid == DEMO_CUSTOMER:
            customer["password"] = DEMO_PASSWORD
        doc["customers"].append(customer)
        mp = f"MM-{cid}"
        point: dict[str, Any] = {
            "metering_point_id": mp,
            "address": address,
            "latitude": float(lat[c]),
            "longitude": float(lon[c]),
        }
        if business[c]:
            point["area_m2"] = int(area[c])
        else:
            point["household_members"] = int(members[c])
        doc["metering_points"].append(point)
        install = [{"metering_point_id": mp, "installed_at": stamps[0]}]
        doc["meters"] += [
            {
                "meter_id": f"E-{cid}",
                "service": "electricity",
                "digits": 6,
                "registers": ["1.8.1", "1.8.2"],
                "installations": install,
            },
            {
                "meter_id": f"V-{cid}",
                "service": "water",
                "digits": WATER_DIGITS,
                "registers": ["8.0"],
                "installations": install,
            },
        ]
        tariff = (
            ("EL-OP", "W-BU", "WA-BU")
            if business[c]
            else ("EL-HH", "W-VS" if village[c] else "W-HH", "WA-HH")
        )
        for service, code, suffix in zip(
            ("electricity", "water", "waste"), tariff, ("EL", "VO", "SM"), strict=True
        ):
            doc["contracts"].append(
                {
                    "contract_id": f"{cid}-{suffix}",
                    "customer_id": cid,
                    "metering_point_id": mp,
                    "service": service,
                    "tariff_code": code,
                    "valid_from": days[0].isoformat(),
                }
            )
        _reads(doc["readings"], f"E-{cid}", "1.8.1", "kWh", stamps, el_vt[c])
        _reads(doc["readings"], f"E-{cid}", "1.8.2", "kWh", stamps, el_mt[c])
        _reads(doc["readings"], f"V-{cid}", "8.0", "m3", stamps, w_reg[c])
    return doc


def _registers(start: I64, monthly: I64, modulus: int) -> list[list[int]]:
    """Register values at every read instant: start, then cumulative, wrapping at modulus."""
    cum = np.concatenate([np.zeros((len(start), 1), np.int64), np.cumsum(monthly, axis=1)], axis=1)
    out: list[list[int]] = ((start[:, None] + cum) % modulus).tolist()
    return out


def _reads(
    out: list[dict[str, str]],
    meter: str,
    register: str,
    unit: str,
    stamps: list[str],
    values: list[int],
) -> None:
    out += [
        {
            "meter_id": meter,
            "register": register,
            "read_at": at,
            "value": _value(v),
            "unit": unit,
            "source": "amr",
        }
        for at, v in zip(stamps, values, strict=True)
    ]


def _name(c: int, business: bool, pick: npt.NDArray[np.int64]) -> str:
    if c == 0:
        return "Amra Hodžić"
    last = LAST[pick[1] % len(LAST)]
    if business:
        form = "d.o.o." if pick[2] % 3 == 0 else "s.p."
        return f"{TRADES[pick[0] % len(TRADES)]} {last} {form}"
    return f"{FIRST[pick[0] % len(FIRST)]} {last}"
