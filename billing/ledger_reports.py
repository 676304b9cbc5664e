"""Ledger reports: trial balance (bruto bilans), general ledger of one account (kartica
konta), and the CSV / ``ledger.entries.v1`` export of a period's entries.

Balances are debit − credit in feninga: positive is a debit balance (assets, receivables),
negative a credit balance (revenue, liabilities). Every report reads only posted entries.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg

from billing.ledger import LedgerError
from rating.calendar import month_bounds
from rating.money import format_km

CSV_FIELDS = ("entry_no", "entry_date", "source_type", "source_id", "description",
              "line_no", "account", "debit", "credit", "customer_id")
_PERIOD = re.compile(r"^[0-9]{4}(-(0[1-9]|1[0-2]))?$")


@dataclass(frozen=True, slots=True)
class TrialBalanceRow:
    account: str
    name: str
    kind: str
    debit_fen: int  # turnover up to the date
    credit_fen: int
    balance_fen: int  # debit − credit


@dataclass(frozen=True)
class TrialBalance:
    as_of: date
    rows: list[TrialBalanceRow]

    @property
    def debit_fen(self) -> int:
        return sum(r.debit_fen for r in self.rows)

    @property
    def credit_fen(self) -> int:
        return sum(r.credit_fen for r in self.rows)


@dataclass(frozen=True, slots=True)
class LedgerLine:
    entry_number: str
    entry_date: date
    kind: str
    source_document: str
    description: str
    customer_id: str | None
    debit_fen: int
    credit_fen: int
    balance_fen: int  # running, from the opening balance


@dataclass(frozen=True)
class AccountLedger:
    account: str
    name: str
    first: date
    last: date
    opening_fen: int
    lines: list[LedgerLine]

    @property
    def closing_fen(self) -> int:
        return self.lines[-1].balance_fen if self.lines else self.opening_fen


def trial_balance(conn: psycopg.Connection, as_of: date) -> TrialBalance:
    """Debit and credit turnover and balance of every account with entries up to `as_of`
    (inclusive). The debit and credit totals are equal because every entry balances."""
    rows = conn.execute(
        """SELECT a.account, a.name, a.kind, sum(l.debit_fen)::bigint, sum(l.credit_fen)::bigint
           FROM journal_lines l JOIN journal_entries e USING (entry_number)
           JOIN ledger_accounts a USING (account)
           WHERE e.entry_date <= %s
           GROUP BY a.account ORDER BY a.account""",
        (as_of,),
    ).fetchall()
    return TrialBalance(as_of, [
        TrialBalanceRow(acc, name, kind, int(d), int(c), int(d) - int(c))
        for acc, name, kind, d, c in rows
    ])


def general_ledger(conn: psycopg.Connection, account: str, first: date, last: date
                   ) -> AccountLedger:
    """The account's lines from `first` to `last` (inclusive) in entry order, with the
    opening balance (everything before `first`) and a running balance."""
    if last < first:
        raise LedgerError(f"period: last day {last} is before first day {first}")
    head = conn.execute("SELECT name FROM ledger_accounts WHERE account = %s",
                        (account,)).fetchone()
    if head is None:
        raise LedgerError(f"account: {account!r} has no entries and is not in the chart")
    opening_row = conn.execute(
        """SELECT coalesce(sum(l.debit_fen - l.credit_fen), 0)::bigint
           FROM journal_lines l JOIN journal_entries e USING (entry_number)
           WHERE l.account = %s AND e.entry_date < %s""",
        (account, first),
    ).fetchone()
    opening = int(opening_row[0]) if opening_row else 0
    balance = opening
    lines = []
    for number, day, kind, source, text, customer, debit, credit in conn.execute(
        """SELECT e.entry_number, e.entry_date, e.kind, e.source_document, e.description,
                  l.customer_id, l.debit_fen, l.credit_fen
           FROM journal_lines l JOIN journal_entries e USING (entry_number)
           WHERE l.account = %s AND e.entry_date BETWEEN %s AND %s
           ORDER BY e.entry_date, e.year, e.seq, l.line_no""",
        (account, first, last),
    ):
        balance += int(debit) - int(credit)
        lines.append(LedgerLine(number, day, kind, source, text, customer, int(debit),
                                int(credit), balance))
    return AccountLedger(account, str(head[0]), first, last, opening, lines)


def period_bounds(period: str) -> tuple[date, date]:
    """'2026-03' → (1 March, 1 April); '2026' → (1 Jan 2026, 1 Jan 2027)."""
    if not isinstance(period, str) or not _PERIOD.match(period):
        raise LedgerError(f"period: must be YYYY or YYYY-MM, got {period!r}")
    if len(period) == 4:
        return date(int(period), 1, 1), date(int(period) + 1, 1, 1)
    return month_bounds(period)


def entry_messages(conn: psycopg.Connection, period: str) -> list[dict[str, Any]]:
    """The period's entries (by entry date) as ``ledger.entries.v1`` messages."""
    first, end = period_bounds(period)
    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for number, day, kind, source, text, _no, account, customer, debit, credit in _lines(
        conn, first, end
    ):
        if current is None or current["entry_no"] != number:
            current = {"entry_no": number, "entry_date": day.isoformat(),
                       "source_document": {"type": kind, "id": source},
                       "description": text, "lines": []}
            out.append(current)
        line = {"account": account, "debit": format_km(debit), "credit": format_km(credit)}
        if customer is not None:
            line["customer_id"] = customer
        current["lines"].append(line)
    return out


def export_csv(conn: psycopg.Connection, period: str) -> str:
    """One CSV row per journal line of the period (``YYYY`` or ``YYYY-MM``), ordered by
    entry; columns `CSV_FIELDS`, the fields of ``ledger.entries.v1`` flattened (amounts in
    KM with two decimals, empty customer_id when the line has none)."""
    first, end = period_bounds(period)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for number, day, kind, source, text, no, account, customer, debit, credit in _lines(
        conn, first, end
    ):
        writer.writerow((number, day.isoformat(), kind, _cell(source), _cell(text), no, account,
                         format_km(debit), format_km(credit), customer or ""))
    return buf.getvalue()


def _cell(text: str) -> str:
    """Text a spreadsheet would run as a formula (a payer's id from a bank file) is quoted."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _lines(conn: psycopg.Connection, first: date, end: date) -> list[tuple[Any, ...]]:
    return conn.execute(
        """SELECT e.entry_number, e.entry_date, e.kind, e.source_document, e.description,
                  l.line_no, l.account, l.customer_id, l.debit_fen, l.credit_fen
           FROM journal_entries e JOIN journal_lines l USING (entry_number)
           WHERE e.entry_date >= %s AND e.entry_date < %s
           ORDER BY e.year, e.seq, l.line_no""",
        (first, end),
    ).fetchall()
