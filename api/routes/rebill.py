"""Operator calls of rebilling (issue #4), role billing (``/api/v1/billing/`` rule):

    POST /api/v1/billing/rebill/tariff-corrections  {"tariff_code", "valid_from",
         "valid_to", "document", "reason"} → the correction's id and the periods queued
    GET  /api/v1/billing/rebill/queue  → closed periods waiting for their adjustment

A correction never changes an issued invoice or the original tariff version: the next
close of each customer bills the differences (`billing.tariff_corrections`).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api import Unprocessable
from api.deps import Conn, Operator
from billing import BillingError
from billing.adjustments import waiting_periods
from billing.tariff_corrections import record_correction

router = APIRouter(prefix="/api/v1/billing/rebill", tags=["billing"])


class CorrectionRequest(BaseModel):
    tariff_code: str = Field(min_length=1, max_length=50)
    valid_from: date = Field(description="first corrected day")
    valid_to: date = Field(description="last corrected day (inclusive)")
    document: dict[str, Any] = Field(description="the corrected tariff document")
    reason: str = Field(min_length=1, max_length=500)


@router.post("/tariff-corrections")
def correct_tariff(body: CorrectionRequest, who: Operator, conn: Conn) -> dict[str, Any]:
    try:
        correction_id, queued = record_correction(
            conn, tariff_code=body.tariff_code, valid_from=body.valid_from,
            valid_to=body.valid_to, document=body.document, reason=body.reason,
            operator=who.username)
    except BillingError as exc:
        raise Unprocessable(str(exc)) from exc
    return {"correction_id": correction_id, "queued_periods": queued}


@router.get("/queue")
def queue(_who: Operator, conn: Conn) -> dict[str, Any]:
    return {"waiting": [{"metering_point_id": mp, "service": service, "period": period}
                        for mp, service, period in waiting_periods(conn)]}
