"""Load, for one batch, the master data and per-register state the validation needs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from datetime import date

import psycopg

from rating.calendar import day_index
from stream.vee import ContractSpan, MeterInfo, RegisterState

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
SELECT meter_id, register, extract(epoch FROM last_read_at)::bigint, last_value_milli
FROM meter_state WHERE meter_id = ANY(%s) FOR UPDATE
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
        (m, r): RegisterState(at, value)
        for m, r, at, value in conn.execute(_STATE_SQL, (list(meter_ids),))
    }
