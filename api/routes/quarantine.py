"""Operator calls on quarantined reads: reads that came from the future (beyond the clock
tolerance) are kept in ``quarantined_reads`` with their original JSON, never billed.

- ``GET /api/v1/ops/quarantine``: the list, waiting first by default, each with whether it
  can be released now (its ``read_at`` is no longer ahead of the clock).
- ``POST /api/v1/ops/quarantine/{id}/release``: once time has caught up, the original
  read goes through ``stream.pipeline.process_reads`` like any other (validation,
  intervals, rating) in one transaction with the quarantine row's update; the row keeps
  the outcome (accepted, duplicate or rejected with its reason) and who released it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api import ApiError, NotFound
from api.deps import Conn, Now, Operator
from stream.pipeline import process_reads
from stream.vee import QUARANTINED
from stream.vee_rules import DEFAULT_CONFIG, is_future

router = APIRouter(prefix="/api/v1/ops/quarantine", tags=["quarantine"])

_COLUMNS = """quarantine_id, received_at, channel, meter_id, register, read_at, value_milli,
    reason, payload, released_at, released_by, release_status, release_reason"""


class Conflict(ApiError):
    status_code = 409


@router.get("")
def list_quarantine(
    _operator: Operator,
    conn: Conn,
    now: Now,
    state: Annotated[str, Query(pattern="^(waiting|released|all)$")] = "waiting",
    meter_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Quarantined reads, oldest read first, filtered by state and meter."""
    rows = conn.execute(
        f"""SELECT {_COLUMNS} FROM quarantined_reads
            WHERE (%(state)s = 'all' OR (released_at IS NULL) = (%(state)s = 'waiting'))
              AND (%(meter)s::text IS NULL OR meter_id = %(meter)s)
            ORDER BY read_at, quarantine_id LIMIT %(limit)s""",
        {"state": state, "meter": meter_id, "limit": limit},
    ).fetchall()
    waiting = conn.execute(
        "SELECT count(*) FROM quarantined_reads WHERE released_at IS NULL"
    ).fetchone()
    return {
        "waiting": int(waiting[0]) if waiting else 0,
        "quarantined": [_encode(r, now) for r in rows],
    }


@router.post("/{quarantine_id}/release")
def release(quarantine_id: int, operator: Operator, conn: Conn, now: Now) -> dict[str, Any]:
    """Re-feed the read through the pipeline; 409 while it is still ahead of the clock."""
    epoch = int(now.timestamp())
    with conn.transaction():
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM quarantined_reads WHERE quarantine_id = %s FOR UPDATE",
            (quarantine_id,),
        ).fetchone()
        if row is None:
            raise NotFound(f"quarantined read {quarantine_id} not found")
        if row[9] is not None:
            raise Conflict(f"quarantined read {quarantine_id} was already released on {row[9]}")
        read_at: datetime = row[5]
        if is_future(int(read_at.timestamp()), epoch, DEFAULT_CONFIG.future_tolerance_s):
            raise Conflict(
                f"quarantined read {quarantine_id}: read_at {read_at.isoformat()} is still "
                "ahead of the clock; release it once that time has passed"
            )
        result = process_reads(conn, [row[8]], channel=str(row[2]), now=epoch)
        outcome = result.outcomes[0]
        if outcome.status == QUARANTINED:  # the clock check above makes this unreachable
            raise Conflict(f"quarantined read {quarantine_id}: {outcome.reason}")
        updated = conn.execute(
            f"""UPDATE quarantined_reads SET released_at = %s, released_by = %s,
                    release_status = %s, release_reason = %s
                WHERE quarantine_id = %s RETURNING {_COLUMNS}""",
            (now, operator.username, outcome.status, outcome.reason, quarantine_id),
        ).fetchone()
    assert updated is not None
    return _encode(updated, now)


def _encode(row: Any, now: datetime) -> dict[str, Any]:
    value = int(row[6])
    released = row[9] is not None
    return {
        "quarantine_id": row[0],
        "received_at": row[1].isoformat(),
        "channel": row[2],
        "meter_id": row[3],
        "register": row[4],
        "read_at": row[5].isoformat(),
        "value": f"{value // 1000}.{value % 1000:03d}",
        "reason": row[7],
        "payload": row[8],
        "releasable": not released
        and not is_future(
            int(row[5].timestamp()), int(now.timestamp()), DEFAULT_CONFIG.future_tolerance_s
        ),
        "released_at": row[9].isoformat() if released else None,
        "released_by": row[10],
        "release_status": row[11],
        "release_reason": row[12],
    }
