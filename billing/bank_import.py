"""Importing a bank statement (camt.053) or a payments CSV: record, book, queue the rest.

Every credit becomes a payment for `billing.payments.record_payments` under the bank's
transaction reference (camt: ``<account>:<AcctSvcrRef>``; CSV: the transaction_id
column), so importing the same statement again records nothing twice. Outcomes:

* matched: recorded and booked (by payment reference, else by customer code);
* duplicate: already recorded, or already waiting in the clerk's queue;
* unmatched: no rule found the customer (or not BAM): queued in `unmatched_payments` with
  the reason, never lost;
* flagged: the transaction reference is recorded with another amount, customer or date:
  queued as flagged, never recorded twice;
* ignored: not a payment (debits, pending, reversals, zero) — one report line each;
* invalid: an entry that could not be read — one report line naming the field.

One transaction for the whole file: the file is imported entirely or not at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from billing import BillingError
from billing.bank_parse import (
    BankTransaction,
    ParsedStatement,
    StatementError,
    parse_camt053,
    parse_csv,
)
from billing.ledger import Chart
from billing.payments import ACCEPTED, DUPLICATE, PaymentOutcome, record_payments
from rating.money import format_km

MAX_BYTES = 50 * 1024 * 1024
_CUSTOMER_CODE = re.compile(r"^[0-9]{6,10}$")  # others stay in the queue row for the clerk
CURRENCY = "BAM"


@dataclass
class BankImportReport:
    format: str
    statement_id: str | None
    matched: int = 0
    duplicate: int = 0
    unmatched: int = 0
    flagged: int = 0
    ignored: int = 0
    invalid: int = 0
    matched_fen: int = 0
    lines: list[str] = field(default_factory=list)  # one per transaction not matched

    def summary(self) -> str:
        return (f"{self.format} {self.statement_id or ''}: matched {self.matched}"
                f" ({format_km(self.matched_fen)} KM), duplicate {self.duplicate}, unmatched"
                f" {self.unmatched}, flagged {self.flagged}, ignored {self.ignored},"
                f" invalid {self.invalid}")


def parse_statement(data: bytes) -> ParsedStatement:
    """camt.053 when the file is XML, the payments CSV otherwise."""
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    return parse_camt053(data) if head == b"<" else parse_csv(data)


def import_statement(
    conn: psycopg.Connection, source: Path | bytes, *, now: datetime, channel: str = "bank",
    chart: Chart | None = None,
) -> BankImportReport:
    """Parse `source` (a path or the file's bytes) and import it; see the module docstring.
    Raises `StatementError` for a file that cannot be read at all (nothing is imported)."""
    if now.tzinfo is None:
        raise BillingError("now: must be an aware datetime")
    data = _read(source)
    parsed = parse_statement(data)
    report = BankImportReport(parsed.format, parsed.statement_id,
                              ignored=len(parsed.ignored), invalid=len(parsed.errors))
    report.lines += [f"ignored {x}" for x in parsed.ignored]
    report.lines += [f"invalid {x}" for x in parsed.errors]
    prefix = f"{parsed.account}:" if parsed.account else ""
    txs = [(prefix + t.transaction_id, t) for t in parsed.transactions]
    with conn.transaction():
        queued = _queued(conn, [pid for pid, _ in txs])
        to_record: list[tuple[str, BankTransaction]] = []
        for pid, t in txs:
            if pid in queued:
                report.duplicate += 1
            elif t.currency != CURRENCY:
                _queue(conn, report, parsed, pid, t, "unmatched",
                       f"currency {t.currency}: only {CURRENCY} is booked automatically", now)
            else:
                to_record.append((pid, t))
        outcomes = record_payments(conn, [_payment(pid, t) for pid, t in to_record],
                                   channel=channel, chart=chart)
        for (pid, t), out in zip(to_record, outcomes, strict=True):
            _count(conn, report, parsed, pid, t, out, now)
    return report


def resolve_unmatched(conn: psycopg.Connection, payment_id: str, *, customer_id: str | None,
                      now: datetime, note: str, channel: str = "bank") -> PaymentOutcome | None:
    """A clerk's decision on a queued payment: record it for `customer_id` (booked like any
    payment), or with `customer_id` None close it without recording (returned to the payer,
    a flagged duplicate …). `note` says why. Raises `BillingError` if it cannot be done."""
    if not note.strip():
        raise BillingError("note: say why (it stays with the payment)")
    outcome = None
    with conn.transaction():
        row = conn.execute(
            "SELECT paid_on, amount_fen, currency FROM unmatched_payments"
            " WHERE payment_id = %s AND status = 'open' FOR UPDATE", (payment_id,)).fetchone()
        if row is None:
            raise BillingError(f"payment_id: no open queued payment {payment_id!r}")
        if customer_id is not None:
            if row[2] != CURRENCY:
                raise BillingError(f"currency {row[2]}: convert and record it by hand")
            outcome = record_payments(conn, [{
                "payment_id": payment_id, "paid_on": row[0].isoformat(),
                "amount": format_km(row[1]), "customer_id": customer_id}], channel=channel)[0]
            if outcome.status != ACCEPTED:
                raise BillingError(f"not recorded: {outcome.reason or outcome.status}")
        conn.execute("UPDATE unmatched_payments SET status = 'resolved', resolved_at = %s,"
                     " resolution = %s WHERE payment_id = %s", (now, note.strip()[:500],
                                                                  payment_id))
    return outcome


def _read(source: Path | bytes) -> bytes:
    if isinstance(source, bytes):
        data = source
    else:
        try:
            if Path(source).stat().st_size > MAX_BYTES:
                raise StatementError(f"{Path(source).name}: larger than {MAX_BYTES} bytes")
            data = Path(source).read_bytes()
        except OSError as exc:
            raise StatementError(f"{Path(source).name}: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise StatementError(f"statement: larger than {MAX_BYTES} bytes")
    if not data.strip():
        raise StatementError("statement: the file is empty")
    return data


def _queued(conn: psycopg.Connection, payment_ids: list[str]) -> set[str]:
    rows = conn.execute("SELECT payment_id FROM unmatched_payments WHERE payment_id = ANY(%s)",
                        (payment_ids,))
    return {r[0] for r in rows}


def _payment(pid: str, t: BankTransaction) -> dict[str, Any]:
    return {"payment_id": pid, "paid_on": t.paid_on.isoformat(),
            "amount": format_km(t.amount_fen), "reference": t.reference,
            "customer_id": t.customer_code if _CUSTOMER_CODE.match(t.customer_code or "")
            else None}


def _count(conn: psycopg.Connection, report: BankImportReport, parsed: ParsedStatement,
           pid: str, t: BankTransaction, out: PaymentOutcome, now: datetime) -> None:
    if out.status == ACCEPTED:
        report.matched += 1
        report.matched_fen += t.amount_fen
    elif out.status == DUPLICATE:
        report.duplicate += 1
    else:
        kind = "flagged" if out.conflict else "unmatched"
        _queue(conn, report, parsed, pid, t, kind, out.reason or "not matched", now)


def _queue(conn: psycopg.Connection, report: BankImportReport, parsed: ParsedStatement,
           pid: str, t: BankTransaction, kind: str, reason: str, now: datetime) -> None:
    inserted = conn.execute(
        """INSERT INTO unmatched_payments (payment_id, kind, source, statement_id, paid_on,
               amount_fen, currency, reference, remittance, customer_code, payer_name, reason,
               received_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (payment_id) DO NOTHING RETURNING payment_id""",
        (pid, kind, parsed.format, parsed.statement_id, t.paid_on, t.amount_fen, t.currency,
         t.reference, t.remittance, t.customer_code, t.payer_name, reason, now),
    ).fetchone()
    if inserted is None:  # listed twice in this file
        report.duplicate += 1
        return
    setattr(report, kind, getattr(report, kind) + 1)
    report.lines.append(f"{kind} {t.where} {pid} {format_km(t.amount_fen)} {t.currency}"
                        f" {t.paid_on}: {reason}")
