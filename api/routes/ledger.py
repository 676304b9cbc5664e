"""Invoice PDF for the portal customer, and the operator's ledger reports.

* ``GET /api/v1/portal/invoices/{number}/pdf?lang=bs|en`` — the customer's own invoice
  (session cookie; someone else's number is a 404 like an unknown one);
* ``GET /api/v1/ledger/trial-balance?as_of=YYYY-MM-DD`` — operator token;
* ``GET /api/v1/ledger/entries.csv?period=YYYY-MM`` — operator token.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from api import ApiError, NotFound, Unprocessable
from api.deps import AppSettings, Conn, Customer, Operator, Today
from rating.money import format_km

router = APIRouter(tags=["ledger"])


@router.get("/api/v1/portal/invoices/{number}/pdf")
def invoice_pdf(number: str, customer: Customer, conn: Conn, settings: AppSettings,
                lang: Annotated[str, Query(pattern="^(bs|en)$")] = "bs") -> Response:
    from billing.invoice_pdf import InvoicePdfError, UtilityInfo, load_invoice, render_invoice_pdf

    found = load_invoice(conn, number, customer) if len(number) <= 64 else None
    if found is None:
        raise NotFound("no such invoice")
    try:
        pdf = render_invoice_pdf(found, utility=UtilityInfo(settings.recipient_account),
                                 lang=lang)
    except InvoicePdfError as exc:  # the utility's settings, not the customer's request
        raise ApiError(f"invoice PDF unavailable: {exc}", status_code=500) from exc
    name = "racun" if lang == "bs" else "invoice"
    return Response(pdf, media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="{name}-{number}.pdf"',
        "Cache-Control": "private, no-store"})


@router.get("/api/v1/ledger/trial-balance")
def trial_balance_report(_operator: Operator, conn: Conn, today: Today,
                         as_of: date | None = None) -> dict[str, Any]:
    from billing.ledger_reports import trial_balance

    tb = trial_balance(conn, as_of or today)
    return {
        "as_of": tb.as_of.isoformat(),
        "rows": [{"account": r.account, "name": r.name, "kind": r.kind,
                  "debit": format_km(r.debit_fen), "credit": format_km(r.credit_fen),
                  "balance": format_km(r.balance_fen)} for r in tb.rows],
        "debit": format_km(tb.debit_fen),
        "credit": format_km(tb.credit_fen),
    }


@router.get("/api/v1/ledger/entries.csv")
def entries_csv(_operator: Operator, conn: Conn,
                period: Annotated[str, Query(pattern=r"^[0-9]{4}(-(0[1-9]|1[0-2]))?$")]
                ) -> Response:
    from billing.ledger import LedgerError
    from billing.ledger_reports import export_csv

    try:
        text = export_csv(conn, period)
    except LedgerError as exc:
        raise Unprocessable(str(exc)) from exc
    return Response(text, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="glavna-knjiga-{period}.csv"'})
