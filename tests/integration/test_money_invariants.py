"""Stateful property test of the money side on a real PostgreSQL.

Hypothesis drives reads (through `process_reads`), monthly closes (with late-payment
interest and customer credit applied), payment imports (by reference or customer id, any
amount including overpayments), duplicate imports, credit notes and corrected invoices,
payment reversals (re-matched or queued) and refunds of credit in random order; after every
step the ledger balances, each customer's receivable net of their credit (2110 + 4310) equals
invoices − credit notes − payments (reversals and refunds are negative payments) and, once
settled, the credit is exactly the surplus, invoices are covered by the allocation rule of
`billing.allocation` (a payment by reference pays its invoice, the rest FIFO; checked
against the machine's own record of payments), no payment covers more than its amount,
document numbers have no gaps and every finalized invoice and credit note is byte-identical
to what it was when issued.
Every example runs on its own database, copied from the migrated template.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from psycopg import sql

from app.database import with_database
from billing import BillingError
from billing.accounts import account_balance_fen, invoice_states
from billing.bank_import import resolve_unmatched
from billing.closer import close_period
from billing.credit_notes import issue_credit_note, reissue_invoice
from billing.customer_credit import open_credit_fen
from billing.payment_corrections import refund_credit, reverse_payment
from billing.payments import ACCEPTED, DUPLICATE, balance_fen, record_payments
from rating.calendar import month_bounds
from stream.pipeline import process_reads
from tests.integration.test_close import seed

CUSTOMERS = ("100001", "100002", "200001")
REGISTERS = (("E1", "1.8.1", "kWh"), ("E1", "1.8.2", "kWh"), ("W1", "8.0", "m3"),
             ("E2", "1.8.1", "kWh"))
FIRST_PERIOD, LAST_PERIOD = "2026-03", "2026-08"


def _utc(day: date, hour: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def _next(period: str) -> str:
    return month_bounds(period)[1].strftime("%Y-%m")


def _gapless(conn: psycopg.Connection, table: str) -> None:
    for year, n, top in conn.execute(
            sql.SQL("SELECT year, count(*), max(seq) FROM {} GROUP BY year").format(
                sql.Identifier(table))):
        assert n == top, f"{table} {year}: {n} numbers up to {top}"


class MoneyMachine(RuleBasedStateMachine):
    admin_url = ""
    template = ""

    def __init__(self) -> None:
        super().__init__()
        self.db = f"billing_inv_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(self.db), sql.Identifier(self.template)))
        self.conn = psycopg.connect(with_database(self.admin_url, self.db))
        seed(self.conn)
        self.period = FIRST_PERIOD  # the month reads go to; the next one to close
        self.today = date(2026, 3, 1)
        self.values = {(m, r): 1000_000 if m.startswith("E") else 500_000
                       for m, r, _ in REGISTERS}
        self.last_at = {(m, r): _utc(self.today) for m, r, _ in REGISTERS}
        self._push([(m, r, u) for m, r, u in REGISTERS])
        self.docs: dict[str, list[Any]] = {}  # invoice / credit note → rows when issued
        self.invoice_total: dict[str, tuple[str, int]] = {}  # number → (customer, total)
        self.credited: set[str] = set()
        self.credit_total: dict[str, int] = {c: 0 for c in CUSTOMERS}
        self.paid: dict[str, int] = {c: 0 for c in CUSTOMERS}
        self.payments: list[dict[str, str]] = []
        self.amounts: dict[str, tuple[str, int]] = {}  # payment id → (customer, amount)
        self.reversed: set[str] = set()
        self.target: dict[str, str] = {}  # payment id → invoice its reference names
        self.settled = set(CUSTOMERS)  # customers whose credit was settled since a change

    def teardown(self) -> None:
        self.conn.close()
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(self.db)))

    # ---- helpers --------------------------------------------------------------------

    def _push(self, regs: list[tuple[str, str, str]]) -> None:
        payloads = [{"meter_id": m, "register": r, "unit": u, "source": "amr",
                     "value": f"{self.values[(m, r)] / 1000:.3f}",
                     "read_at": self.last_at[(m, r)].strftime("%Y-%m-%dT%H:%M:%SZ")}
                    for m, r, u in regs]
        now = int(_utc(month_bounds(self.period)[1]).timestamp()) + 86_400
        with self.conn.transaction():
            res = process_reads(self.conn, payloads, channel="test", now=now)
        self.conn.commit()
        assert all(o.status == "accepted" for o in res.outcomes), res.outcomes

    def _rows(self, kind: str, number: str) -> list[Any]:
        prefix = "invoice" if kind == "invoice" else "credit_note"
        head = "invoices" if kind == "invoice" else "credit_notes"
        key = sql.Identifier(f"{prefix}_number")
        return [self.conn.execute(
                    sql.SQL("SELECT * FROM {} WHERE {} = %s ORDER BY 2").format(
                        sql.Identifier(t), key), (number,)).fetchall()
                for t in (head, f"{prefix}_lines", f"{prefix}_vat")]

    def _remember_invoices(self) -> None:
        for number, customer, total in self.conn.execute(
                "SELECT invoice_number, customer_id, total_fen FROM invoices"):
            if number not in self.invoice_total:
                self.invoice_total[number] = (customer, int(total))
                self.docs[number] = self._rows("invoice", number)

    # ---- rules ----------------------------------------------------------------------

    @rule(which=st.sets(st.sampled_from(range(len(REGISTERS))), min_size=1),
          hours=st.integers(1, 200), advance=st.integers(0, 400_000))
    def read(self, which: set[int], hours: int, advance: int) -> None:
        """Reads inside the open month (before its last day, so no interval crosses it)."""
        limit = _utc(month_bounds(self.period)[1] - timedelta(days=1))
        regs = []
        for i in sorted(which):
            m, r, u = REGISTERS[i]
            at = self.last_at[(m, r)] + timedelta(hours=hours)
            if at >= limit:
                continue
            self.last_at[(m, r)] = at
            self.values[(m, r)] += advance if m.startswith("E") else advance // 20
            regs.append((m, r, u))
        if regs:
            self._push(regs)

    @precondition(lambda self: self.period <= LAST_PERIOD)
    @rule()
    def close(self) -> None:
        end = month_bounds(self.period)[1]
        for m, r, u in REGISTERS:  # a read at the month's end, so the whole month is metered
            self.last_at[(m, r)] = _utc(end - timedelta(days=1), 21)
            self._push([(m, r, u)])
        close_period(self.conn, self.period, issued_on=end)
        self.conn.commit()
        self.settled |= {c for c, _ in self.invoice_total.values()} & set(CUSTOMERS)
        self._remember_invoices()
        self.period, self.today = _next(self.period), end

    @rule(customer=st.sampled_from(CUSTOMERS), fen=st.integers(1, 30_000),
          by_reference=st.booleans(), data=st.data())
    def pay(self, customer: str, fen: int, by_reference: bool, data: st.DataObject) -> None:
        payment = {"payment_id": f"P{len(self.payments) + 1}", "paid_on": self.today.isoformat(),
                   "amount": f"{fen // 100}.{fen % 100:02d}", "customer_id": customer}
        mine = sorted(n for n, (c, _) in self.invoice_total.items() if c == customer)
        if by_reference and mine:
            number = data.draw(st.sampled_from(mine))
            ref = self.conn.execute("SELECT payment_reference FROM invoices"
                                    " WHERE invoice_number = %s", (number,)).fetchone()
            assert ref is not None
            payment = {**payment, "reference": ref[0]}
            del payment["customer_id"]
            self.target[payment["payment_id"]] = number
        [out] = record_payments(self.conn, [payment], channel="bank")
        self.conn.commit()
        assert out.status == ACCEPTED and out.customer_id == customer, out
        self.payments.append(payment)
        self.paid[customer] += fen
        self.amounts[payment["payment_id"]] = (customer, fen)
        self.settled.add(customer)

    @precondition(lambda self: set(self.amounts) - self.reversed)
    @rule(data=st.data(), rematch=st.booleans(), resolve=st.booleans())
    def reverse(self, data: st.DataObject, rematch: bool, resolve: bool) -> None:
        pid = data.draw(st.sampled_from(sorted(set(self.amounts) - self.reversed)))
        customer, fen = self.amounts[pid]
        other = data.draw(st.sampled_from([c for c in CUSTOMERS if c != customer]))
        r = reverse_payment(self.conn, pid, reason="pogrešan kupac", on=self.today,
                            operator="hypothesis", rematch_to=other if rematch else None)
        self.conn.commit()
        self.reversed.add(pid)
        self.paid[customer] -= fen
        self.settled.add(customer)
        if rematch:
            assert r.rematched_id is not None
            self.paid[other] += fen
            self.amounts[r.rematched_id] = (other, fen)
            self.settled.add(other)
        else:
            assert self.conn.execute("SELECT status FROM unmatched_payments WHERE payment_id"
                                     " = %s", (r.queued_id,)).fetchone() == ("open",)
            if resolve:  # a clerk records it for the right customer
                assert r.queued_id is not None
                out = resolve_unmatched(self.conn, r.queued_id, customer_id=other, note="h",
                                        now=datetime(2026, 9, 1, tzinfo=UTC))
                self.conn.commit()
                assert out is not None and out.status == ACCEPTED
                self.paid[other] += fen
                self.amounts[r.queued_id] = (other, fen)
                self.settled.add(other)
        with pytest.raises(BillingError, match="already reversed"):
            reverse_payment(self.conn, pid, reason="again", on=self.today, operator="h")
        self.conn.rollback()

    @rule(customer=st.sampled_from(CUSTOMERS), data=st.data())
    def refund(self, customer: str, data: st.DataObject) -> None:
        held = max(0, -balance_fen(self.conn, customer))
        if held == 0:
            with pytest.raises(BillingError, match="exceeds"):
                refund_credit(self.conn, customer, 1, reason="povrat", on=self.today)
            self.conn.rollback()
            return
        fen = data.draw(st.integers(1, held))
        refund_credit(self.conn, customer, fen, reason="povrat", on=self.today)
        self.conn.commit()
        self.paid[customer] -= fen
        self.settled.add(customer)

    @precondition(lambda self: self.payments)
    @rule(data=st.data())
    def pay_again(self, data: st.DataObject) -> None:
        payment = data.draw(st.sampled_from(self.payments))
        [out] = record_payments(self.conn, [payment], channel="bank")
        self.conn.commit()
        assert out.status == DUPLICATE, out

    @precondition(lambda self: self.invoice_total)
    @rule(data=st.data(), reissue=st.booleans())
    def credit(self, data: st.DataObject, reissue: bool) -> None:
        number = data.draw(st.sampled_from(sorted(self.invoice_total)))
        customer, total = self.invoice_total[number]
        if number in self.credited:
            with pytest.raises(BillingError, match="already credited"):
                issue_credit_note(self.conn, number, issued_on=self.today, reason="test",
                                  operator="hypothesis")
            self.conn.rollback()
            return
        cn = issue_credit_note(self.conn, number, issued_on=self.today, reason="storno",
                               operator="hypothesis")
        self.conn.commit()
        self.docs[cn] = self._rows("credit_note", cn)
        self.credited.add(number)
        self.credit_total[customer] += total
        self.settled.discard(customer)  # a credit note settles no credit: the next step does
        period = self.docs[number][0][0][4]
        siblings = [n for n, (c, _) in self.invoice_total.items()
                    if c == customer and self.docs[n][0][0][4] == period]
        if reissue and all(n in self.credited for n in siblings):
            new = reissue_invoice(self.conn, customer, period, issued_on=self.today)
            self.conn.commit()
            self._remember_invoices()
            assert self.invoice_total[new][0] == customer

    # ---- invariants -----------------------------------------------------------------

    @invariant()
    def ledger_balances(self) -> None:
        totals = self.conn.execute(
            "SELECT coalesce(sum(debit_fen), 0), coalesce(sum(credit_fen), 0)"
            " FROM journal_lines").fetchone()
        assert totals is not None and totals[0] == totals[1]
        assert self.conn.execute(
            "SELECT entry_number FROM journal_lines GROUP BY entry_number"
            " HAVING sum(debit_fen) <> sum(credit_fen) OR count(*) < 2").fetchall() == []

    @invariant()
    def receivables_match_documents(self) -> None:
        for customer in CUSTOMERS:
            invoiced = sum(t for c, t in self.invoice_total.values() if c == customer)
            expected = invoiced - self.credit_total[customer] - self.paid[customer]
            row = self.conn.execute(
                "SELECT coalesce(sum(debit_fen - credit_fen) FILTER (WHERE account = '2110'), 0),"
                " coalesce(sum(credit_fen - debit_fen) FILTER (WHERE account = '4310'), 0)"
                " FROM journal_lines WHERE customer_id = %s", (customer,)).fetchone()
            assert row is not None
            receivable, credit = int(row[0]), int(row[1])
            assert receivable - credit == expected, customer
            assert credit >= 0 and credit == open_credit_fen(self.conn, customer), customer
            if customer in self.settled:  # receivables show what is owed, 4310 the surplus
                assert (receivable, credit) == (max(expected, 0), max(-expected, 0)), customer
            assert account_balance_fen(self.conn, customer) == expected
            assert balance_fen(self.conn, customer) == expected

    @invariant()
    def payments_cover_no_more_than_paid(self) -> None:
        for customer in CUSTOMERS:
            states = invoice_states(self.conn, customer, self.today)
            open_ = [s for s in states if s.number not in self.credited]
            assert all(0 <= s.covered_fen <= max(s.total_fen, 0) for s in open_)
            covered = sum(s.covered_fen for s in open_)
            # a live payment by reference pays its (uncredited) invoice up to its total; the
            # rest of all money is a pool covering the rest FIFO (net paid is below zero when a
            # payment whose surplus was refunded is reversed: the pool then covers nothing)
            totals = {s.number: max(s.total_fen, 0) for s in open_}
            net: dict[str, int] = dict.fromkeys(totals, 0)
            for pid, (who, fen) in self.amounts.items():
                number = self.target.get(pid)
                if who == customer and pid not in self.reversed and number in totals:
                    net[number] += fen
            applied = {n: min(max(t, 0), totals[n]) for n, t in net.items()}
            pool = self.paid[customer] - sum(applied.values())
            assert covered == sum(applied.values()) + min(
                max(pool, 0), sum(totals.values()) - sum(applied.values()))
            assert all(s.covered_fen >= applied[s.number] for s in open_)
        for pid, amount in self.conn.execute(
                "SELECT p.payment_id, p.amount_fen - coalesce(sum(l.credit_fen), 0)"
                " FROM payments p LEFT JOIN journal_entries e ON e.kind = 'payment'"
                " AND e.source_document = p.payment_id LEFT JOIN journal_lines l"
                " ON l.entry_number = e.entry_number AND l.account = '2110'"
                " WHERE p.kind = 'payment' GROUP BY p.payment_id, p.amount_fen"):
            assert amount == 0, pid

    @invariant()
    def numbers_have_no_gaps(self) -> None:
        for table in ("invoices", "credit_notes", "journal_entries"):
            _gapless(self.conn, table)

    @invariant()
    def issued_documents_never_change(self) -> None:
        for number, rows in self.docs.items():
            kind = "credit_note" if number.startswith("CN-") else "invoice"
            assert self._rows(kind, number) == rows, number


def test_money_invariants(admin_url: str, template_db: str) -> None:
    MoneyMachine.admin_url, MoneyMachine.template = admin_url, template_db
    runner = MoneyMachine.TestCase
    runner.settings = settings(max_examples=15, stateful_step_count=20, deadline=None,
                               suppress_health_check=list(HealthCheck))
    runner().runTest()
