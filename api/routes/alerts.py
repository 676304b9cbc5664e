"""Operator calls on meter anomaly alerts: list, acknowledge, close (with a note).

Protected by the operator bearer token (``settings.operator_token``). Who acted is
recorded as ``operator`` or ``operator:<name>`` when the body names the person, with the
instant of the request's clock.
"""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api import ApiError, NotFound
from api.deps import Conn, Now, Operator
from stream.alerts import KINDS, refresh_gauge

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

_COLUMNS = """alert_id, meter_id, metering_point_id, register, kind, state, opened_at,
    last_seen_at, acknowledged_at, acknowledged_by, closed_at, closed_by, close_note, detail"""
_NAME = r"^[\w .@\-]{1,64}$"


class Conflict(ApiError):
    status_code = 409


class AcknowledgeRequest(BaseModel):
    operator: str | None = Field(default=None, pattern=_NAME, description="who acknowledges")


class CloseRequest(BaseModel):
    note: str = Field(min_length=1, max_length=2000, description="why the alert is closed")
    operator: str | None = Field(default=None, pattern=_NAME, description="who closes")


@router.get("")
def list_alerts(
    _operator: Operator,
    conn: Conn,
    state: Annotated[str | None, Query(pattern="^(open|acknowledged|closed)$")] = None,
    kind: Annotated[str | None, Query(pattern=f"^({'|'.join(KINDS)})$")] = None,
    meter_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Alerts, newest first, filtered by state, kind and meter."""
    rows = conn.execute(
        f"""SELECT {_COLUMNS} FROM meter_alerts
            WHERE (%(state)s::text IS NULL OR state = %(state)s)
              AND (%(kind)s::text IS NULL OR kind = %(kind)s)
              AND (%(meter)s::text IS NULL OR meter_id = %(meter)s)
            ORDER BY opened_at DESC, alert_id DESC LIMIT %(limit)s""",
        {"state": state, "kind": kind, "meter": meter_id, "limit": limit},
    ).fetchall()
    return {"alerts": [_encode(r) for r in rows]}


@router.post("/{alert_id}/acknowledge")
def acknowledge(
    alert_id: int, _operator: Operator, conn: Conn, now: Now, body: AcknowledgeRequest | None = None
) -> dict[str, Any]:
    by = _who(body.operator if body else None)
    with conn.transaction():
        row = conn.execute(
            f"""UPDATE meter_alerts SET state = 'acknowledged', acknowledged_at = %s,
                    acknowledged_by = %s
                WHERE alert_id = %s AND state = 'open' RETURNING {_COLUMNS}""",
            (now, by, alert_id),
        ).fetchone()
        if row is None:
            row = _current(conn, alert_id)
            if row[5] == "closed":
                raise Conflict(f"alert {alert_id} is already closed")
        refresh_gauge(conn)
    return _encode(row)


@router.post("/{alert_id}/close")
def close(
    alert_id: int, body: CloseRequest, _operator: Operator, conn: Conn, now: Now
) -> dict[str, Any]:
    with conn.transaction():
        row = conn.execute(
            f"""UPDATE meter_alerts SET state = 'closed', closed_at = %s, closed_by = %s,
                    close_note = %s
                WHERE alert_id = %s AND state <> 'closed' RETURNING {_COLUMNS}""",
            (now, _who(body.operator), body.note, alert_id),
        ).fetchone()
        if row is None:
            _current(conn, alert_id)
            raise Conflict(f"alert {alert_id} is already closed")
        refresh_gauge(conn)
    return _encode(row)


def _who(name: str | None) -> str:
    return f"operator:{name}" if name else "operator"


def _current(conn: psycopg.Connection, alert_id: int) -> tuple[Any, ...]:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM meter_alerts WHERE alert_id = %s", (alert_id,)
    ).fetchone()
    if row is None:
        raise NotFound(f"no alert {alert_id}")
    return tuple(row)


def _encode(row: Any) -> dict[str, Any]:
    names = [c.strip() for c in _COLUMNS.split(",")]
    out = dict(zip(names, row, strict=True))
    for key in ("opened_at", "last_seen_at", "acknowledged_at", "closed_at"):
        if out[key] is not None:
            out[key] = out[key].isoformat()
    return out
