"""Section `meters`: the meter and its installation history (where it hung, when).

A meter that already has readings keeps its facts: only the `removed_at` of its
installations may change (not before its last reading) and new installations may be
added after its last reading. Anything else is rejected with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from ingest.file_import.fields import (
    OBIS_PATTERN,
    FieldError,
    as_record,
    choice,
    ident,
    instant,
    integer,
    key_of,
)
from ingest.file_import.report import ImportReport

SECTION = "meters"
SERVICES = ("electricity", "water")
FIELDS = frozenset({"meter_id", "service", "digits", "multiplier", "registers", "installations"})
INSTALLATION_FIELDS = frozenset({"metering_point_id", "installed_at", "removed_at"})

Install = tuple[str, int, int | None]  # metering point, installed_at, removed_at (epoch s)


@dataclass(frozen=True)
class Meter:
    meter_id: str
    service: str
    digits: int
    multiplier: int
    registers: tuple[str, ...]
    installs: tuple[Install, ...]

    @property
    def row(self) -> tuple[str, str, int, int, tuple[str, ...]]:
        return (self.meter_id, self.service, self.digits, self.multiplier, self.registers)


def parse_meter(obj: Any) -> Meter:
    rec = as_record(obj, FIELDS)
    meter_id = ident(rec, "meter_id")
    service = choice(rec, "service", SERVICES)
    digits = integer(rec, "digits", lo=3, hi=12, required=True)
    multiplier = integer(rec, "multiplier", lo=1, hi=1_000_000, default=1)
    regs = rec.get("registers")
    if not isinstance(regs, list) or not regs:
        raise FieldError("registers: must be a non-empty list of OBIS codes")
    for k, reg in enumerate(regs):
        if not isinstance(reg, str) or not OBIS_PATTERN.match(reg):
            raise FieldError(f"registers[{k}]: not an OBIS code such as 1.8.1 or 8.0")
        if (service == "water") != reg.startswith("8."):
            raise FieldError(
                f"registers[{k}]: {reg} is not a {service} register "
                "(water registers are 8.x, electricity 1.x–7.x)"
            )
    if len(set(regs)) != len(regs):
        raise FieldError("registers: listed twice")
    assert digits is not None and multiplier is not None
    return Meter(
        meter_id,
        service,
        digits,
        multiplier,
        tuple(regs),
        _installations(rec.get("installations", [])),
    )


def _installations(raw: Any) -> tuple[Install, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise FieldError("installations: must be a list")
    out: list[Install] = []
    for k, item in enumerate(raw):
        where = f"installations[{k}]."
        try:
            rec = as_record(item, INSTALLATION_FIELDS)
            mp = ident(rec, "metering_point_id")
            start = instant(rec, "installed_at")
            end = instant(rec, "removed_at", required=False)
        except FieldError as exc:
            raise FieldError(where + str(exc)) from exc
        assert start is not None
        if end is not None and end <= start:
            raise FieldError(f"{where}removed_at: must be after installed_at")
        out.append((mp, int(start.timestamp()), None if end is None else int(end.timestamp())))
    out.sort(key=lambda x: x[1])
    for a, b in zip(out, out[1:], strict=False):
        if a[2] is None or a[2] > b[1]:
            raise FieldError(
                f"installations: the installation at {_iso(a[1])} overlaps the one "
                f"at {_iso(b[1])} (only the last may be open, none may overlap)"
            )
    return tuple(out)


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def load_meters(conn: psycopg.Connection, records: Sequence[Any], report: ImportReport) -> None:
    parsed: dict[str, tuple[int, Meter]] = {}
    for i, rec in enumerate(records):
        try:
            meter = parse_meter(rec)
        except FieldError as exc:
            report.reject(SECTION, i, key_of(rec, "meter_id"), str(exc))
            continue
        if meter.meter_id in parsed:
            report.reject(
                SECTION,
                i,
                meter.meter_id,
                f"meter_id: duplicate {meter.meter_id} "
                f"(first at meters[{parsed[meter.meter_id][0]}])",
            )
            continue
        parsed[meter.meter_id] = (i, meter)
    if not parsed:
        return
    ids = list(parsed)
    mps = sorted({inst[0] for _, m in parsed.values() for inst in m.installs})
    known_mps = {
        r[0]
        for r in conn.execute(
            "SELECT metering_point_id FROM metering_points WHERE metering_point_id = ANY(%s)",
            (mps,),
        )
    }
    stored = {
        r[0]: (r[0], r[1], r[2], r[3], tuple(r[4]))
        for r in conn.execute(
            "SELECT meter_id, service, digits, multiplier, registers FROM meters"
            " WHERE meter_id = ANY(%s)",
            (ids,),
        )
    }
    installs: dict[str, list[Install]] = {}
    for mid, mp, start, end in conn.execute(
        "SELECT meter_id, metering_point_id, extract(epoch FROM installed_at)::bigint,"
        " extract(epoch FROM removed_at)::bigint FROM meter_installations"
        " WHERE meter_id = ANY(%s) ORDER BY installed_at",
        (ids,),
    ):
        installs.setdefault(mid, []).append((mp, start, end))
    changed = [
        mid
        for mid in stored
        if (stored[mid], tuple(installs.get(mid, ())))
        != (parsed[mid][1].row, parsed[mid][1].installs)
    ]
    last_read: dict[str, int] = (
        dict(
            conn.execute(
                "SELECT meter_id, extract(epoch FROM max(read_at))::bigint FROM readings"
                " WHERE meter_id = ANY(%s) GROUP BY meter_id",
                (changed,),
            ).fetchall()
        )
        if changed
        else {}
    )

    writes: list[Meter] = []
    for mid, (i, meter) in parsed.items():
        why = _unknown_mp(meter, known_mps, report)
        if why is None and mid in last_read:
            why = _keeps_facts(stored[mid], installs.get(mid, []), meter, last_read[mid])
        if why is not None:
            report.reject(SECTION, i, mid, why)
        elif mid not in stored:
            report.count(SECTION, "created")
            writes.append(meter)
        elif mid in changed:
            report.count(SECTION, "updated")
            writes.append(meter)
        else:
            report.count(SECTION, "unchanged")
    _write(conn, writes)


def _unknown_mp(meter: Meter, known: set[str], report: ImportReport) -> str | None:
    for k, (mp, _, _) in enumerate(meter.installs):
        if mp not in known:
            return report.parent_reason(
                "metering_points", f"installations[{k}].metering_point_id", mp, "metering point"
            )
    return None


def _keeps_facts(
    old_row: tuple[Any, ...], old_installs: list[Install], meter: Meter, last_read: int
) -> str | None:
    """Why this change to a meter with readings is refused, or None if it is allowed."""
    base = f"meter {meter.meter_id} already has readings (last {_iso(last_read)}): "
    diff = [
        name
        for name, a, b in zip(
            ("service", "digits", "multiplier", "registers"),
            old_row[1:],
            meter.row[1:],
            strict=True,
        )
        if a != b
    ]
    if diff:
        return base + f"{', '.join(diff)} cannot change (only installations[].removed_at may)"
    new = {start: (mp, end) for mp, start, end in meter.installs}
    for mp, start, _ in old_installs:
        if new.get(start, (None,))[0] != mp:
            return base + f"the installation at {_iso(start)} cannot be removed or moved"
    old_starts = {start for _, start, _ in old_installs}
    for k, (_, start, end) in enumerate(meter.installs):
        if start not in old_starts and start <= last_read:
            return (
                base + f"installations[{k}].installed_at: a new installation must begin "
                "after the last reading"
            )
        covers_last = start <= last_read and (
            k + 1 == len(meter.installs) or meter.installs[k + 1][1] > last_read
        )
        if covers_last and end is not None and end < last_read:
            return base + f"installations[{k}].removed_at: cannot be before the last reading"
    return None


def _write(conn: psycopg.Connection, meters: list[Meter]) -> None:
    if not meters:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO meters (meter_id, service, digits, multiplier, registers)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (meter_id) DO UPDATE SET"
            " service = excluded.service, digits = excluded.digits,"
            " multiplier = excluded.multiplier, registers = excluded.registers",
            [(*m.row[:4], list(m.registers)) for m in meters],
        )
        cur.execute(
            "DELETE FROM meter_installations i USING unnest(%s::text[]) AS k(meter_id)"
            " WHERE i.meter_id = k.meter_id",
            ([m.meter_id for m in meters],),
        )
        rows = [(m.meter_id, mp, start, end) for m in meters for mp, start, end in m.installs]
        if rows:
            cur.executemany(
                "INSERT INTO meter_installations (meter_id, metering_point_id, installed_at,"
                " removed_at) VALUES (%s, %s, to_timestamp(%s), to_timestamp(%s))",
                rows,
            )
