"""Importing a bank statement (camt.053) or a payments CSV: record, book, queue the rest.

Every credit becomes a payment for `billing.payments.record_checked` under the bank's
transaction reference (camt: ``<account>:<AcctSvcrRef>``; CSV: the transaction_id
column), so importing the same statement again records nothing twice. The whole file is
matched and recorded by a handful of statements (set-based), never one per payment.
Outcomes:

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

import psycopg

from billing import BillingError
from billing.bank_parse import (
    BankTransaction,
    ParsedStatement,
    StatementError,
    parse_camt053,
    parse_csv,
)
from billing.gc_pause import no_cyclic_gc
from billing.ledger import Chart
from billing.payments import (
    ACCEPTED,
    DUPLICATE,
    Payment,
    PaymentOutcome,
    record_checked,
    record_payments,
)
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
    with no_cyclic_gc():  # tens of thousands of objects, no cycles among them
        return _import(conn, parse_statement(data), now=now, channel=channel, chart=chart)


def _import(conn: psycopg.Connection, parsed: ParsedStatement, *, now: datetime, channel: str,
            chart: Chart | None) -> BankImportReport:
    report = BankImportReport(parsed.format, parsed.statement_id,
                              ignored=len(parsed.ignored), invalid=len(parsed.errors))
    report.lines += [f"ignored {x}" for x in parsed.ignored]
    report.lines += [f"invalid {x}" for x in parsed.errors]
    prefix = f"{parsed.account}:" if parsed.account else ""
    txs = [(prefix + t.transaction_id, t) for t in parsed.transactions]
    with conn.transaction():
        queued = _queued(conn, [pid for pid, _ in txs])
        to_record: list[tuple[int, str, BankTransaction]] = []
        to_queue: list[_Queued] = []
        for no, (pid, t) in enumerate(txs):
            if pid in queued:
                report.duplicate += 1
            elif t.currency != CURRENCY:
                to_queue.append(_Queued(no, pid, t, "unmatched", f"currency {t.currency}: only"
                                        f" {CURRENCY} is booked automatically"))
            else:
                to_record.append((no, pid, t))
        outcomes = record_checked(conn, [_payment(pid, t) for _, pid, t in to_record],
                                  channel=channel, chart=chart)
        for (no, pid, t), out in zip(to_record, outcomes, strict=True):
            if out.status == ACCEPTED:
                report.matched += 1
                report.matched_fen += t.amount_fen
            elif out.status == DUPLICATE:
                report.duplicate += 1
            else:
                to_queue.append(_Queued(no, pid, t, "flagged" if out.conflict else "unmatched",
                                        out.reason or "not matched"))
        _queue(conn, report, parsed, sorted(to_queue, key=lambda q: q.no), now)
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
    if not payment_ids:
        return set()
    rows = conn.execute("SELECT q.payment_id FROM unnest(%b::text[]) AS s(payment_id)"
                        " JOIN unmatched_payments q USING (payment_id)", (payment_ids,))
    return {r[0] for r in rows}


def _payment(pid: str, t: BankTransaction) -> Payment:
    code = t.customer_code
    return Payment(pid, code if code and _CUSTOMER_CODE.match(code) else None, t.paid_on,
                   t.amount_fen, t.reference)


@dataclass(frozen=True, slots=True)
class _Queued:
    no: int  # place in the file
    payment_id: str
    t: BankTransaction
    kind: str  # unmatched | flagged
    reason: str



def _queue(conn: psycopg.Connection, report: BankImportReport, parsed: ParsedStatement,
           items: list[_Queued], now: datetime) -> None:
    """Put `items` in the clerk's queue with one statement; an id listed twice in the file,
    or queued meanwhile by another import, is a duplicate."""
    first: dict[str, _Queued] = {}
    for q in items:
        first.setdefault(q.payment_id, q)
    fresh = list(first.values())
    inserted: set[str] = set()
    if fresh:
        cols = list(zip(*((q.payment_id, q.kind, q.t.paid_on, q.t.amount_fen, q.t.currency,
                           q.t.reference, q.t.remittance, q.t.customer_code, q.t.payer_name,
                           q.reason) for q in fresh), strict=True))
        inserted = {r[0] for r in conn.execute(
            """INSERT INTO unmatched_payments (payment_id, kind, source, statement_id, paid_on,
                   amount_fen, currency, reference, remittance, customer_code, payer_name,
                   reason, received_at)
               SELECT payment_id, kind, %s, %s, paid_on, amount_fen, currency, reference,
                      remittance, customer_code, payer_name, reason, %s
               FROM unnest(%b::text[], %b::text[], %b::date[], %b::bigint[], %b::text[],
                           %b::text[], %b::text[], %b::text[], %b::text[], %b::text[])
                    WITH ORDINALITY AS q(payment_id, kind, paid_on, amount_fen, currency,
                                         reference, remittance, customer_code, payer_name,
                                         reason, no)
               ORDER BY no
               ON CONFLICT (payment_id) DO NOTHING RETURNING payment_id""",
            (parsed.format, parsed.statement_id, now, *(list(c) for c in cols)))}
    for q in items:
        if first.get(q.payment_id) is not q or q.payment_id not in inserted:
            report.duplicate += 1  # listed twice in this file, or queued meanwhile
            continue
        setattr(report, q.kind, getattr(report, q.kind) + 1)
        t = q.t
        report.lines.append(f"{q.kind} {t.where} {q.payment_id} {format_km(t.amount_fen)}"
                            f" {t.currency} {t.paid_on}: {q.reason}")
