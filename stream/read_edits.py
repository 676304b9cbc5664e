"""Operator read editing: correct a wrong read's value or remove the read, and re-flow.

A read sits between the previous and the next accepted read of its meter and register;
the stream stored one interval on each side (ending at the read, ending at the next read).
An edit replaces those (at most two) intervals: a correction recomputes both advances, a
removal merges them into one interval from the previous to the next read. The daily
rollup moves by the difference of the replaced and the new intervals' day (and TOU band)
pieces, both rated by the same pure `stream.rate.rate_intervals` the stream uses, so the
re-flow is exact and an edit followed by its inverse leaves every total as it was.
`meter_state` follows when the edited read is the register's last one.

Pure: `parse_value`, `plan_reflow` (which intervals go, which come, the new state) and
`price_reflow` (their pieces and the daily difference). Thin: `apply_read_edit` loads,
checks, writes everything and the audit row (table ``read_edits``) in one transaction.

Invoices are never touched. A day of an already invoiced period simply changes in
``daily_consumption`` (plain INSERT … ON CONFLICT DO UPDATE, which a statement-level
trigger may watch); the result names such periods. A daily total may never go negative:
that would mean the stored intervals were rated under other master data (e.g. a contract
added later) and the edit is refused rather than guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from rating.calendar import day_from_index
from rating.catalog import Catalog
from rating.holidays import HolidayCalendar
from rating.money import parse_quantity_milli
from stream.directory import load_meters, lock_state
from stream.rate import RatedIntervals, rate_intervals
from stream.vee import Interval, MeterInfo, RegisterState, advance_milli

DailyKey = tuple[str, str, str, int]  # metering point, service, register, day index
MIN_REASON, MAX_REASON = 3, 500


class ReadEditError(ValueError):
    """The request is wrong; the message starts with the field (value, reason, read_at)."""


class ReadNotFound(LookupError):
    """No such meter or no accepted read at that instant."""


class ReadEditConflict(RuntimeError):
    """The stored data do not allow the edit (e.g. a daily total would go negative)."""


@dataclass(frozen=True, slots=True)
class StoredRead:
    read_at: int  # UTC epoch seconds
    value_milli: int


@dataclass(frozen=True)
class Reflow:
    old: tuple[Interval, ...]  # the stored intervals the edit replaces
    new: tuple[Interval, ...]  # the intervals written instead
    state: RegisterState | None  # the register's state after the edit (None: no read left)
    state_changed: bool


@dataclass(frozen=True)
class PricedReflow:
    reflow: Reflow
    before: RatedIntervals | None
    after: RatedIntervals | None
    daily_changes: list[tuple[str, str, str, int, int, int, int]]  # key + Δqty, Δamount, Δpieces


def parse_value(raw: object, digits: int) -> int:
    """A corrected register value ('1234.567' or a number) in thousandths."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ReadEditError("value: must be a number or a decimal string")
    try:
        milli = parse_quantity_milli(raw.strip() if isinstance(raw, str) else raw)
    except ValueError as exc:
        raise ReadEditError(f"value: {exc}") from exc
    if milli < 0:
        raise ReadEditError("value: a cumulative register value cannot be negative")
    if milli >= 10**digits * 1000:
        raise ReadEditError(f"value: more than the meter's {digits} integer digits")
    return milli


def check_reason(raw: object) -> str:
    if not isinstance(raw, str) or not (MIN_REASON <= len(raw.strip()) <= MAX_REASON):
        raise ReadEditError(f"reason: {MIN_REASON}–{MAX_REASON} characters are required")
    return raw.strip()


def plan_reflow(
    meter: MeterInfo,
    register: str,
    read: StoredRead,
    new_value: int | None,
    *,
    prev: StoredRead | None,
    nxt: StoredRead | None,
    old_before: Interval | None,
    old_after: Interval | None,
) -> Reflow:
    """Intervals to replace and to write when `read` gets `new_value` (None = removed).

    `old_before` / `old_after` are the stored intervals ending at the read and at the next
    read; only a side the stream had linked is recomputed."""
    m, mult, digits = meter.meter_id, meter.multiplier, meter.digits

    def advance(a: int, b: int, what: str) -> int:
        adv = advance_milli(a, b, digits)
        if adv is None and new_value is None:
            raise ReadEditConflict(f"removing the read, the register would go backwards {what}")
        if adv is None:
            raise ReadEditError(f"value: the register would go backwards {what}")
        return adv * mult

    old = tuple(iv for iv in (old_before, old_after) if iv is not None)
    new: list[Interval] = []
    if new_value is not None:
        if old_before is not None and prev is not None:
            adv = advance(prev.value_milli, new_value, "from the previous read")
            new.append(Interval(m, register, prev.read_at, read.read_at, adv))
        if old_after is not None and nxt is not None:
            adv = advance(new_value, nxt.value_milli, "to the next read")
            new.append(Interval(m, register, read.read_at, nxt.read_at, adv))
    elif old_before is not None and old_after is not None and prev and nxt:
        adv = advance(prev.value_milli, nxt.value_milli, "between the reads around it")
        new.append(Interval(m, register, prev.read_at, nxt.read_at, adv))
    if nxt is not None:
        return Reflow(old, tuple(new), None, False)
    if new_value is not None:
        return Reflow(old, tuple(new), RegisterState(read.read_at, new_value), True)
    state = RegisterState(prev.read_at, prev.value_milli) if prev is not None else None
    return Reflow(old, tuple(new), state, True)


def price_reflow(
    reflow: Reflow,
    meter: MeterInfo,
    catalog: Catalog,
    holidays: HolidayCalendar | None = None,
) -> PricedReflow:
    """Rate the replaced and the new intervals like the stream; the daily difference."""
    meters = {meter.meter_id: meter}
    before = rate_intervals(reflow.old, meters, catalog, holidays)
    after = rate_intervals(reflow.new, meters, catalog, holidays)
    acc: dict[DailyKey, list[int]] = {}
    for rated, sign in ((before, -1), (after, 1)):
        for mp, service, reg, day, q, a, c in rated.daily_rows(None) if rated else ():
            key = (str(mp), str(service), str(reg), int(day))  # type: ignore[call-overload]
            sums = acc.setdefault(key, [0, 0, 0])
            for k, v in enumerate((q, a, c)):
                sums[k] += sign * int(v)  # type: ignore[call-overload]
    changes = [(*k, *v) for k, v in sorted(acc.items()) if any(v)]
    return PricedReflow(reflow, before, after, changes)  # type: ignore[arg-type]


# ---- the thin database side -------------------------------------------------------------

_READ = """SELECT value_milli FROM readings
WHERE meter_id = %s AND register = %s AND read_at = to_timestamp(%s) FOR UPDATE"""
_NEIGHBOUR = """SELECT extract(epoch FROM read_at)::bigint, value_milli FROM readings
WHERE meter_id = %s AND register = %s AND read_at {op} to_timestamp(%s)
ORDER BY read_at {order} LIMIT 1"""
_INTERVALS = """SELECT extract(epoch FROM start_at)::bigint, extract(epoch FROM end_at)::bigint,
       quantity_milli, metering_point_id
FROM consumption_intervals
WHERE meter_id = %s AND register = %s AND end_at = ANY(%s::timestamptz[])"""
_INSERT_INTERVAL = """INSERT INTO consumption_intervals (meter_id, register, start_at, end_at,
    local_day, metering_point_id, service, tariff_code, quantity_milli, price_micro,
    amount_nano)
VALUES (%s, %s, to_timestamp(%s), to_timestamp(%s), DATE '2000-01-01' + %s::int, %s, %s, %s, %s,
        %s, %s)"""
_ADD_DAILY = """INSERT INTO daily_consumption AS d (metering_point_id, service, register,
    local_day, quantity_milli, amount_nano, pieces)
SELECT mp, sv, rg, DATE '2000-01-01' + dy, q, a, c
FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::bigint[], %s::bigint[],
            %s::int[]) AS x(mp, sv, rg, dy, q, a, c)
ON CONFLICT (metering_point_id, service, register, local_day) DO UPDATE
SET quantity_milli = d.quantity_milli + excluded.quantity_milli,
    amount_nano = d.amount_nano + excluded.amount_nano,
    pieces = d.pieces + excluded.pieces
RETURNING register, local_day, quantity_milli, amount_nano, pieces"""
# the first read of the trailing run of reads that show the register's last value
_VALUE_SINCE = """UPDATE meter_state s SET value_since = (
    SELECT min(r.read_at) FROM readings r
    WHERE r.meter_id = s.meter_id AND r.register = s.register AND r.read_at <= s.last_read_at
      AND r.read_at > coalesce((
          SELECT max(o.read_at) FROM readings o
          WHERE o.meter_id = s.meter_id AND o.register = s.register
            AND o.read_at < s.last_read_at AND o.value_milli <> s.last_value_milli),
          '-infinity'))
WHERE s.meter_id = %s AND s.register = %s"""
_INVOICED = """SELECT DISTINCT i.period FROM invoices i JOIN contracts c USING (customer_id)
WHERE c.metering_point_id = %s AND c.service = %s AND i.period = ANY(%s) ORDER BY 1"""
_AUDIT = """INSERT INTO read_edits (meter_id, register, read_at, action, value_before_milli,
    value_after_milli, reason, edited_by, edited_at, intervals_before, intervals_after,
    daily_changes)
VALUES (%s, %s, to_timestamp(%s), %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING edit_id"""


@dataclass(frozen=True)
class EditResult:
    changed: bool
    edit_id: int | None
    action: str  # correct | remove
    value_before_milli: int
    value_after_milli: int | None
    intervals_before: list[dict[str, Any]]
    intervals_after: list[dict[str, Any]]
    daily_changes: list[dict[str, Any]]
    invoiced_periods: list[str]  # closed periods whose days changed (invoices untouched)


def apply_read_edit(
    conn: psycopg.Connection,
    *,
    meter_id: str,
    register: str,
    read_at: int,
    value: object | None,
    reason: object,
    edited_by: str,
    now: datetime,
    catalog: Catalog | None = None,
    holidays: HolidayCalendar | None = None,
) -> EditResult:
    """Correct (`value` given) or remove (`value` None) one accepted read, in one
    transaction (a savepoint inside the caller's). Correcting to the current value
    changes nothing and writes no audit row (a retried request is harmless)."""
    why = check_reason(reason)
    with conn.transaction():
        meter = load_meters(conn, [meter_id]).get(meter_id)
        if meter is None:
            raise ReadNotFound(f"no meter {meter_id}")
        new_value = None if value is None else parse_value(value, meter.digits)
        lock_state(conn, [meter_id])  # the stream locks the same rows: no race with it
        row = conn.execute(_READ, (meter_id, register, read_at)).fetchone()
        if row is None:
            raise ReadNotFound(f"no accepted read of {meter_id} {register} at {_iso(read_at)}")
        read = StoredRead(read_at, int(row[0]))
        action = "remove" if new_value is None else "correct"
        if new_value == read.value_milli:
            return EditResult(False, None, action, read.value_milli, new_value, [], [], [], [])
        prev, nxt = (_neighbour(conn, meter_id, register, read_at, op) for op in ("<", ">"))
        old_before, old_after = _stored_intervals(conn, meter, register, read, prev, nxt)
        plan = plan_reflow(
            meter,
            register,
            read,
            new_value,
            prev=prev,
            nxt=nxt,
            old_before=old_before,
            old_after=old_after,
        )
        priced = price_reflow(plan, meter, catalog or _catalog(conn), holidays)
        _write(conn, meter, register, read, new_value, priced)
        changes = _daily_json(priced.daily_changes)
        periods = sorted({c["local_day"][:7] for c in changes})
        invoiced = [
            r[0] for r in conn.execute(_INVOICED, (meter.metering_point_id, meter.service, periods))
        ]
        before, after = _intervals_json(plan.old), _intervals_json(plan.new)
        audit = (meter_id, register, read_at, action, read.value_milli, new_value, why)
        row = conn.execute(
            _AUDIT, (*audit, edited_by, now, Jsonb(before), Jsonb(after), Jsonb(changes))
        ).fetchone()
        assert row is not None
        edit_id = row[0]
    return EditResult(
        True, int(edit_id), action, read.value_milli, new_value, before, after, changes, invoiced
    )


def _catalog(conn: psycopg.Connection) -> Catalog:
    docs = [row[0] for row in conn.execute("SELECT document FROM tariff_versions")]
    return Catalog.from_documents(docs)


def _neighbour(
    conn: psycopg.Connection, meter_id: str, register: str, read_at: int, op: str
) -> StoredRead | None:
    sql = _NEIGHBOUR.format(op=op, order="DESC" if op == "<" else "ASC")
    row = conn.execute(sql, (meter_id, register, read_at)).fetchone()
    return StoredRead(int(row[0]), int(row[1])) if row else None


def _stored_intervals(
    conn: psycopg.Connection,
    meter: MeterInfo,
    register: str,
    read: StoredRead,
    prev: StoredRead | None,
    nxt: StoredRead | None,
) -> tuple[Interval | None, Interval | None]:
    ends = [_iso(read.read_at)] + ([_iso(nxt.read_at)] if nxt else [])
    found = {}
    for start, end, qty, mp in conn.execute(_INTERVALS, (meter.meter_id, register, ends)):
        if mp != meter.metering_point_id:
            raise ReadEditConflict(
                f"the interval ending {_iso(end)} belongs to metering point {mp}, the meter"
                f" is now at {meter.metering_point_id}: not re-flowed automatically"
            )
        found[int(end)] = Interval(meter.meter_id, register, int(start), int(end), int(qty))
    before = found.get(read.read_at)
    after = found.get(nxt.read_at) if nxt else None
    if (before and (prev is None or before.start_at != prev.read_at)) or (
        after and after.start_at != read.read_at
    ):
        raise ReadEditConflict("the stored intervals do not match the stored reads")
    return before, after


def _write(
    conn: psycopg.Connection,
    meter: MeterInfo,
    register: str,
    read: StoredRead,
    new_value: int | None,
    priced: PricedReflow,
) -> None:
    key = (meter.meter_id, register, read.read_at)
    if new_value is None:
        conn.execute(
            "DELETE FROM readings WHERE meter_id = %s AND register = %s"
            " AND read_at = to_timestamp(%s)",
            key,
        )
    else:
        conn.execute(
            "UPDATE readings SET value_milli = %s WHERE meter_id = %s"
            " AND register = %s AND read_at = to_timestamp(%s)",
            (new_value, *key),
        )
    plan = priced.reflow
    if plan.old:
        conn.execute(
            "DELETE FROM consumption_intervals WHERE meter_id = %s AND register = %s"
            " AND end_at = ANY(%s::timestamptz[])",
            (meter.meter_id, register, [_iso(iv.end_at) for iv in plan.old]),
        )
    if priced.after is not None:
        with conn.cursor() as cur:
            cur.executemany(_INSERT_INTERVAL, priced.after.interval_rows())
    if priced.daily_changes:
        columns = [list(col) for col in zip(*priced.daily_changes, strict=True)]
        for reg, day, q, a, c in conn.execute(_ADD_DAILY, columns).fetchall():
            if q < 0 or a < 0 or c < 0:
                raise ReadEditConflict(
                    f"daily consumption of {meter.metering_point_id} {reg} on {day} would go"
                    " negative: the stored intervals were rated under other master data"
                )
    if plan.state_changed:
        if plan.state is None:
            conn.execute(
                "DELETE FROM meter_state WHERE meter_id = %s AND register = %s",
                (meter.meter_id, register),
            )
        else:
            conn.execute(
                "UPDATE meter_state SET last_read_at = to_timestamp(%s), last_value_milli = %s"
                " WHERE meter_id = %s AND register = %s",
                (plan.state.last_read_at, plan.state.last_value_milli, meter.meter_id, register),
            )
    conn.execute(_VALUE_SINCE, (meter.meter_id, register))


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _intervals_json(intervals: Sequence[Interval]) -> list[dict[str, Any]]:
    return [
        {
            "start_at": _iso(iv.start_at),
            "end_at": _iso(iv.end_at),
            "quantity_milli": iv.quantity_milli,
        }
        for iv in intervals
    ]


def _daily_json(
    changes: Sequence[tuple[str, str, str, int, int, int, int]],
) -> list[dict[str, Any]]:
    return [
        {
            "metering_point_id": mp,
            "service": sv,
            "register": rg,
            "local_day": day_from_index(d).isoformat(),
            "quantity_milli": q,
            "amount_nano": a,
            "pieces": c,
        }
        for mp, sv, rg, d, q, a, c in changes
    ]
