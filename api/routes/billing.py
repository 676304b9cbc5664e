"""Operator call: close a billing period (issue the month's invoices).

Protected by the operator bearer token (``settings.operator_token``) until operator
accounts exist. The closer is imported inside the handler so this module loads even
where ``billing.closer`` is not installed.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

from fastapi import APIRouter
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field

from api import Unprocessable
from api.deps import AppSettings, Conn, Operator, Today
from rating.money import format_km

router = APIRouter(prefix="/api/v1/billing", tags=["billing"])


class CloseRequest(BaseModel):
    period: str = Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")
    issued_on: date | None = Field(default=None, description="default: today (local)")


@router.post("/close")
def close(
    body: CloseRequest, _operator: Operator, conn: Conn, today: Today, settings: AppSettings
) -> dict[str, Any]:
    from billing.closer import close_period

    try:
        with conn.transaction():
            result = close_period(
                conn,
                body.period,
                issued_on=body.issued_on or today,
                payment_days=settings.payment_days,
            )
    except ValueError as exc:  # the closer's own refusal (e.g. a period not yet over)
        raise Unprocessable(str(exc)) from exc
    return encode_result(result)


def encode_result(result: Any) -> dict[str, Any]:
    """The closer's result as JSON: ``*_fen`` fields become KM strings without the suffix."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        fields = dataclasses.asdict(result)
    else:
        fields = dict(vars(result))
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if name.endswith("_fen") and isinstance(value, int):
            out[name[: -len("_fen")]] = format_km(value)
        else:
            out[name] = jsonable_encoder(value)
    return out
