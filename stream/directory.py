"""Load, for one batch, the master data, per-register state and consumption history the
validation needs: one query each, whatever the batch's size."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping
from datetime import date

import psycopg

from rating.calendar import day_from_index, day_index
from stream.vee import ContractSpan, History, HistoryKey, MeterInfo, RegisterState

_FAR_FUTURE = date(2079, 12, 31)

_METERS_SQL = """
SELECT m.meter_id, m.service, m.digits, m.multiplier, m.registers, i.metering_point_id,
       extract(epoch FROM i.installed_at)::bigint, extract(epoch FROM i.removed_at)::bigint
FROM meters m
LEFT JOIN LATERAL (
    SELECT * FROM meter_installations i WHERE i.meter_id = m.meter_id
    ORDER BY installed_at DESC LIMIT 1) i ON true
WHERE m.meter_id = ANY(%s)
"""

_CONTRACTS_SQL = """
SELECT metering_point_id, service, contract_id, tariff_code, valid_from, valid_to
FROM contracts WHERE metering_point_id = ANY(%s)
"""

_STATE_SQL = """
SELECT meter_id, register, extract(epoch FROM last_read_at)::bigint, last_value_milli,
       extract(epoch FROM value_since)::bigint
FROM meter_state WHERE meter_id = ANY(%s) FOR UPDATE
"""

# Median (lower, as vee_rules.median_milli) of the daily quantities of each register in the
# `days` days before its window end; only days that have a rollup row count.
_MEDIANS_SQL = """
SELECT k.mp, k.svc, k.reg,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY d.quantity_milli), count(*)
FROM unnest(%s::text[], %s::text[], %s::text[], %s::date[]) AS k(mp, svc, reg, before)
JOIN daily_consumption d ON d.metering_point_id = k.mp AND d.service = k.svc
     AND d.register = k.reg AND d.local_day >= k.before - %s::integer AND d.local_day < k.before
GROUP BY k.mp, k.svc, k.reg
"""


def load_meters(conn: psycopg.Connection, meter_ids: Collection[str]) -> dict[str, MeterInfo]:
    rows = conn.execute(_METERS_SQL, (list(meter_ids),)).fetchall()
    mps = [r[5] for r in rows if r[5] is not None]
    spans: dict[tuple[str, str], list[ContractSpan]] = defaultdict(list)
    if mps:
        for mp, service, cid, tariff, vfrom, vto in conn.execute(_CONTRACTS_SQL, (mps,)):
            end = day_index(vto or _FAR_FUTURE) + 1
            spans[(mp, service)].append(ContractSpan(cid, tariff, day_index(vfrom), end))
    return {
        r[0]: MeterInfo(
            meter_id=r[0],
            service=r[1],
            digits=r[2],
            multiplier=r[3],
            registers=tuple(r[4]),
            metering_point_id=r[5],
            installed_at=r[6],
            removed_at=r[7],
            contracts=tuple(spans.get((r[5], r[1]), ())),
        )
        for r in rows
    }


def lock_state(
    conn: psycopg.Connection, meter_ids: Collection[str]
) -> dict[tuple[str, str], RegisterState]:
    """Per-register state of these meters, locked until the batch's transaction ends."""
    return {
        (m, r): RegisterState(at, value, since)
        for m, r, at, value, since in conn.execute(_STATE_SQL, (list(meter_ids),))
    }


def load_daily_medians(
    conn: psycopg.Connection, keys: Mapping[HistoryKey, int], days: int
) -> History:
    """(median daily quantity, days with data) per (metering point, service, register)
    over the `days` local days before the day index each key maps to."""
    if not keys:
        return {}
    items = list(keys.items())
    rows = conn.execute(
        _MEDIANS_SQL,
        (
            [k[0] for k, _ in items],
            [k[1] for k, _ in items],
            [k[2] for k, _ in items],
            [day_from_index(d) for _, d in items],
            days,
        ),
    ).fetchall()
    return {(mp, svc, reg): (int(median), int(n)) for mp, svc, reg, median, n in rows}
