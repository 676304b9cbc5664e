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


@router.get("/close/{period}/preview")
def close_preview(period: str, _operator: Operator, conn: Conn, today: Today,
                  settings: AppSettings, issued_on: date | None = None) -> dict[str, Any]:
    """The invoices the close would issue now (no numbers, nothing written), with the
    credit it would apply, and the customers it would skip with the reason."""
    from billing.close_preview import preview_close_report

    try:
        p = preview_close_report(conn, period, issued_on=issued_on or today,
                                 payment_days=settings.payment_days)
    except ValueError as exc:
        raise Unprocessable(str(exc)) from exc
    return {
        "period": p.period, "issued_on": p.issued_on, "due_on": p.due_on,
        "invoices_existing": p.invoices_existing, "invoices": len(p.invoices),
        "net": format_km(p.net_fen), "vat": format_km(p.vat_fen), "total": format_km(p.total_fen),
        "skipped_count": len(p.skipped), "skipped": p.skipped,
        "drafts": [{
            "customer_id": d.draft.customer_id, "net": format_km(d.draft.net_fen),
            "vat": format_km(d.draft.vat_fen), "total": format_km(d.draft.total_fen),
            "credit_applied": format_km(d.credit_applied_fen), "to_pay": format_km(d.to_pay_fen),
            "lines": [{"service": ln.service, "metering_point_id": ln.metering_point_id or None,
                       "component": ln.component, "register": ln.register,
                       "description": ln.description,
                       "quantity": _milli(ln.quantity_milli), "unit": ln.unit,
                       "amount": format_km(ln.amount_fen), "vat_rate": str(ln.vat_rate)}
                      for ln in d.draft.lines],
            "vat_rows": [{"vat_rate": str(v.vat_rate), "base": format_km(v.base_fen),
                          "vat": format_km(v.vat_fen)} for v in d.draft.vat],
        } for d in p.invoices],
    }


def _milli(value: int) -> str:
    """Thousandths as a decimal string without float ("12.345", "-0.500")."""
    sign = "-" if value < 0 else ""
    return f"{sign}{abs(value) // 1000}.{abs(value) % 1000:03d}"


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
