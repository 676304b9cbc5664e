"""Operator read editing: correct a wrong read or remove it, with an audit trail.

    POST /api/v1/ops/readings/{meter_id}/{register}/{read_at}/edit    {"value", "reason"}
    POST /api/v1/ops/readings/{meter_id}/{register}/{read_at}/remove  {"reason"}

``read_at`` is the read's instant in ISO 8601 with an offset (``2026-03-10T12:00:00Z``,
URL-encode a ``+``). The edit re-flows consumption (see `stream.read_edits`); invoices of
closed periods are not touched, the answer names those periods. Who edited is the
operator of the bearer token; the row in ``read_edits`` keeps who, when, before, after, why.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api import ApiError, NotFound, Unprocessable
from api.deps import Conn, Now, Operator
from stream.read_edits import (
    MAX_REASON,
    EditResult,
    ReadEditConflict,
    ReadEditError,
    ReadNotFound,
    apply_read_edit,
)

router = APIRouter(prefix="/api/v1/ops/readings", tags=["read edits"])


class Conflict(ApiError):
    status_code = 409


class EditRequest(BaseModel):
    value: Any = Field(description="the corrected register value, e.g. '1234.567'")
    reason: str = Field(max_length=MAX_REASON, description="why the read is corrected")


class RemoveRequest(BaseModel):
    reason: str = Field(max_length=MAX_REASON, description="why the read is removed")


@router.post("/{meter_id}/{register}/{read_at}/edit")
def edit_read(
    meter_id: str, register: str, read_at: str, body: EditRequest, who: Operator, conn: Conn,
    now: Now,
) -> dict[str, Any]:  # fmt: skip
    """Correct the value of one accepted read."""
    if body.value is None:  # never a removal by accident: that is the /remove call
        raise Unprocessable("value: is required (to remove the read, use …/remove)")
    return _apply(conn, who.username, now, meter_id, register, read_at, body.value, body.reason)


@router.post("/{meter_id}/{register}/{read_at}/remove")
def remove_read(
    meter_id: str, register: str, read_at: str, body: RemoveRequest, who: Operator, conn: Conn,
    now: Now,
) -> dict[str, Any]:  # fmt: skip
    """Remove one accepted read; the intervals on both sides merge into one."""
    return _apply(conn, who.username, now, meter_id, register, read_at, None, body.reason)


def parse_read_at(raw: str) -> int:
    """An ISO 8601 instant with an offset, in whole seconds → UTC epoch seconds."""
    try:
        at = datetime.fromisoformat(raw.strip().replace("z", "Z"))
    except ValueError as exc:
        raise Unprocessable(f"read_at: not an ISO 8601 instant: {raw!r}") from exc
    if at.tzinfo is None:
        raise Unprocessable("read_at: needs a UTC offset (e.g. Z or +01:00)")
    if at.microsecond:
        raise Unprocessable("read_at: reads are stored in whole seconds")
    return int(at.timestamp())


def _apply(
    conn: Conn, who: str, now: datetime, meter_id: str, register: str, read_at: str,
    value: Any, reason: str,
) -> dict[str, Any]:  # fmt: skip
    at = parse_read_at(read_at)
    try:
        result = apply_read_edit(
            conn, meter_id=meter_id, register=register, read_at=at, value=value,
            reason=reason, edited_by=who, now=now,
        )  # fmt: skip
    except ReadEditError as exc:
        raise Unprocessable(str(exc)) from exc
    except ReadNotFound as exc:
        raise NotFound(str(exc)) from exc
    except ReadEditConflict as exc:
        raise Conflict(str(exc)) from exc
    return _encode(meter_id, register, at, result)


def _encode(meter_id: str, register: str, read_at: int, r: EditResult) -> dict[str, Any]:
    return {
        "meter_id": meter_id,
        "register": register,
        "read_at": datetime.fromtimestamp(read_at, UTC).isoformat(),
        "changed": r.changed,
        "edit_id": r.edit_id,
        "action": r.action,
        "value_before": _qty(r.value_before_milli),
        "value_after": None if r.value_after_milli is None else _qty(r.value_after_milli),
        "intervals_before": r.intervals_before,
        "intervals_after": r.intervals_after,
        "daily_changes": r.daily_changes,
        "invoiced_periods": r.invoiced_periods,
    }


def _qty(milli: int) -> str:
    return f"{milli // 1000}.{milli % 1000:03d}"
