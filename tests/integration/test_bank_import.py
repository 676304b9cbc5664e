"""Importing bank statements on a real PostgreSQL: matched by reference and by customer code,
unmatched queued with the reason, the same statement twice, a wrong amount flagged."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from billing import BillingError
from billing.bank_import import import_statement, resolve_unmatched
from billing.bank_parse import StatementError
from billing.closer import close_period
from billing.ledger_reports import trial_balance
from billing.payments import balance_fen
from billing.reference import make_payment_reference
from tests.integration.test_close import MARCH_READS, push, seed
from tests.unit.test_camt053 import IBAN, REF_1, camt, ntry, txd

NOW = datetime(2026, 4, 11, 6, 30, tzinfo=UTC)

# After the March close: 2026-000001 is 100001's (81.49 KM), 2026-000002 is 100002's
# (4.62 KM), 2026-000003 is 200001's (25.01 KM).
STATEMENT = camt(
    ntry("81.49", ref="E-1", tx=txd(strd="26 000001 26", debtor="Amra H."))
    + ntry("4.62", ref="E-2", tx=txd(ustrd="Komunalije mart, šifra kupca 100002"))
    + ntry("12.00", ref="E-3", tx=txd(ustrd="uplata", debtor="Nepoznat"))
    + ntry("5.00", ref="E-4", tx=txd(strd="2600000127"))
    + ntry("3.00", ref="E-5", side="DBIT")
    + ntry("9.00", ref="E-6", ccy="EUR", tx=txd(strd=REF_1))
)


@pytest.fixture
def conn(db_url: str):
    with psycopg.connect(db_url) as c:
        seed(c)
        push(c, MARCH_READS)  # figures without estimates (billing.estimation, see test_close)
        close_period(c, "2026-03", issued_on=date(2026, 4, 1), line_sources=[])
        c.commit()
        yield c


def counts(report: Any) -> tuple[int, ...]:
    return (report.matched, report.duplicate, report.unmatched, report.flagged, report.ignored,
            report.invalid)


def queue(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT payment_id, kind, amount_fen, currency, reference, payer_name,"
                        " reason, status FROM unmatched_payments ORDER BY payment_id").fetchall()


def test_statement_import_matches_queues_and_is_idempotent(conn: psycopg.Connection) -> None:
    report = import_statement(conn, STATEMENT, now=NOW)
    conn.commit()
    assert counts(report) == (2, 0, 3, 0, 1, 0)
    assert report.matched_fen == 8149 + 462
    assert report.summary().startswith("camt.053.001.02 STMT-2026-04-10: matched 2 (86.11 KM),"
                                       " duplicate 0, unmatched 3, flagged 0, ignored 1")
    assert conn.execute("SELECT payment_id, customer_id, paid_on, amount_fen, reference, channel"
                        " FROM payments ORDER BY 1").fetchall() == [
        (f"{IBAN}:E-1", "100001", date(2026, 4, 10), 8149, REF_1, "bank"),
        (f"{IBAN}:E-2", "100002", date(2026, 4, 10), 462, None, "bank")]
    assert (balance_fen(conn, "100001"), balance_fen(conn, "100002")) == (0, 0)
    assert queue(conn) == [
        (f"{IBAN}:E-3", "unmatched", 1200, "BAM", None, "Nepoznat",
         "customer_id or reference: one is required", "open"),
        (f"{IBAN}:E-4", "unmatched", 500, "BAM", "2600000127", None,
         "reference: wrong check digits in '2600000127' (typo?)", "open"),
        (f"{IBAN}:E-6", "unmatched", 900, "EUR", REF_1, None,
         "currency EUR: only BAM is booked automatically", "open")]
    assert any(line.startswith("ignored Stmt[1]/Ntry[5] (E-5, 3.00 BAM): DBIT")
               for line in report.lines)
    # booked: one entry per matched payment, bank debited
    entries = conn.execute("SELECT source_document, entry_date FROM journal_entries"
                           " WHERE kind = 'payment' ORDER BY seq").fetchall()
    assert entries == [(f"{IBAN}:E-1", date(2026, 4, 10)), (f"{IBAN}:E-2", date(2026, 4, 10))]
    tb = trial_balance(conn, date(2026, 4, 30))
    assert tb.debit_fen == tb.credit_fen
    assert {r.account: r.balance_fen for r in tb.rows}["2410"] == 8611

    # the same statement again: nothing new anywhere
    before = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()
              for t in ("payments", "journal_entries", "unmatched_payments")]
    again = import_statement(conn, STATEMENT, now=NOW)
    conn.commit()
    assert counts(again) == (0, 5, 0, 0, 1, 0)
    assert [conn.execute(f"SELECT count(*) FROM {t}").fetchone()
            for t in ("payments", "journal_entries", "unmatched_payments")] == before


def test_known_transaction_with_another_amount_is_flagged(conn: psycopg.Connection) -> None:
    import_statement(conn, STATEMENT, now=NOW)
    changed = camt(ntry("18.49", ref="E-1", tx=txd(strd=REF_1)) + ntry("1.00", ref="E-7",
                                                                         tx=txd(strd=REF_1)))
    report = import_statement(conn, changed, now=NOW)
    conn.commit()
    assert counts(report) == (1, 0, 0, 1, 0, 0)
    assert conn.execute("SELECT amount_fen FROM payments WHERE payment_id = %s",
                        (f"{IBAN}:E-1",)).fetchone() == (8149,)  # never posted twice
    flagged = [q for q in queue(conn) if q[1] == "flagged"]
    assert flagged == [(f"{IBAN}:E-1", "flagged", 1849, "BAM", REF_1, None,
                        f"conflicts with recorded payment {IBAN}:E-1 (customer 100001,"
                        " 81.49 KM on 2026-04-10)", "open")]
    assert conn.execute("SELECT count(*) FROM journal_entries WHERE source_document = %s",
                        (f"{IBAN}:E-1",)).fetchone() == (1,)
    assert balance_fen(conn, "100001") == -100


def test_clerk_resolves_the_queue(conn: psycopg.Connection) -> None:
    import_statement(conn, STATEMENT, now=NOW)
    later = datetime(2026, 4, 12, 9, 0, tzinfo=UTC)
    out = resolve_unmatched(conn, f"{IBAN}:E-3", customer_id="200001", now=later,
                            note="kupac javio telefonom")
    assert out is not None and (out.status, out.customer_id) == ("accepted", "200001")
    with pytest.raises(BillingError, match="unknown customer 999999"):
        resolve_unmatched(conn, f"{IBAN}:E-4", customer_id="999999", now=later, note="x")
    conn.rollback()
    with pytest.raises(BillingError, match="note: say why"):
        resolve_unmatched(conn, f"{IBAN}:E-4", customer_id=None, now=later, note=" ")
    assert resolve_unmatched(conn, f"{IBAN}:E-4", customer_id=None, now=later,
                             note="vraćeno uplatiocu") is None
    conn.commit()
    assert balance_fen(conn, "200001") == 2501 - 1200
    assert conn.execute("SELECT payment_id, status, resolution FROM unmatched_payments"
                        " WHERE status = 'resolved' ORDER BY 1").fetchall() == [
        (f"{IBAN}:E-3", "resolved", "kupac javio telefonom"),
        (f"{IBAN}:E-4", "resolved", "vraćeno uplatiocu")]
    assert conn.execute("SELECT count(*) FROM journal_entries WHERE source_document = %s",
                        (f"{IBAN}:E-3",)).fetchone() == (1,)
    with pytest.raises(BillingError, match="no open queued payment"):
        resolve_unmatched(conn, f"{IBAN}:E-3", customer_id="200001", now=later, note="x")
    conn.rollback()
    with pytest.raises(BillingError, match="currency EUR"):
        resolve_unmatched(conn, f"{IBAN}:E-6", customer_id="100001", now=later, note="x")
    conn.rollback()
    # a re-import does not bring resolved items back
    assert counts(import_statement(conn, STATEMENT, now=later)) == (0, 5, 0, 0, 1, 0)


def test_csv_file_import(conn: psycopg.Connection, tmp_path: Path) -> None:
    path = tmp_path / "posta-2026-04-10.csv"
    path.write_text(
        "transaction_id;paid_on;amount;reference;customer_code;payer_name\n"
        "POSTA-1;10.04.2026;25,01;26 000099 23;;Pekara\n"
        "POSTA-2;10.04.2026;1,00;;abc;\n"
        "POSTA-3;31.04.2026;1,00;;;\n", encoding="utf-8")
    report = import_statement(conn, path, now=NOW, channel="posta")
    conn.commit()
    assert counts(report) == (0, 0, 2, 0, 0, 1)  # 2600009923: no such invoice
    assert "invalid line 4: paid_on: not a date: '31.04.2026'" in report.lines
    rows = queue(conn)
    assert [(r[0], r[6]) for r in rows] == [
        ("POSTA-1", "reference: no invoice carries reference '2600009923'"),
        ("POSTA-2", "customer_id or reference: one is required")]
    path.write_text("transaction_id,paid_on,amount,reference\n"
                    f"POSTA-9,2026-04-10,25.01,{make_payment_reference(2026, 3)}\n",
                    encoding="utf-8")
    assert counts(import_statement(conn, path, now=NOW, channel="posta")) == (1, 0, 0, 0, 0, 0)
    assert conn.execute("SELECT channel FROM payments").fetchall() == [("posta",)]


def test_unreadable_files_import_nothing(conn: psycopg.Connection, tmp_path: Path) -> None:
    with pytest.raises(StatementError, match="empty"):
        import_statement(conn, b" \n", now=NOW)
    with pytest.raises(StatementError, match="missing.txt"):
        import_statement(conn, tmp_path / "missing.txt", now=NOW)
    with pytest.raises(StatementError, match="not well-formed"):
        import_statement(conn, STATEMENT[:-20], now=NOW)
    with pytest.raises(BillingError, match="aware"):
        import_statement(conn, STATEMENT, now=datetime(2026, 4, 11))
    assert conn.execute("SELECT count(*) FROM payments").fetchone() == (0,)


def test_a_large_mixed_statement_is_matched_set_based(conn: psycopg.Connection) -> None:
    """300 entries of every kind in one file: the set-based matching gives each its outcome,
    ids repeated inside the file included, and a second import changes nothing."""
    refs = {"100001": REF_1, "100002": make_payment_reference(2026, 2),
            "200001": make_payment_reference(2026, 3)}
    entries, expect = [], {"matched": 0, "matched_fen": 0, "unmatched": 0, "duplicate": 0,
                           "flagged": 0}
    paid: dict[str, int] = dict.fromkeys(refs, 0)
    for i in range(300):
        customer = ("100001", "100002", "200001")[i % 3]
        fen = 100 + i
        amount = f"{fen // 100}.{fen % 100:02d}"
        kind = i % 6
        if kind in (0, 1):  # by reference, by customer code
            tx = txd(strd=refs[customer]) if kind == 0 else txd(ustrd=f"šifra kupca {customer}")
            entries.append(ntry(amount, ref=f"M-{i}", tx=tx))
            expect["matched"] += 1
            expect["matched_fen"] += fen
            paid[customer] += fen
        elif kind == 2:  # a typo in the reference, and an unknown customer code
            bad = refs[customer][:-1] + ("0" if refs[customer][-1] != "0" else "1")
            entries.append(ntry(amount, ref=f"U-{i}", tx=txd(strd=bad))
                           + ntry(amount, ref=f"V-{i}", tx=txd(ustrd="šifra kupca 999999")))
            expect["unmatched"] += 2
        elif kind == 3:  # listed twice, the same: the second is a duplicate
            entry = ntry(amount, ref=f"D-{i}", tx=txd(strd=refs[customer]))
            entries.append(entry + entry)
            expect["matched"] += 1
            expect["matched_fen"] += fen
            expect["duplicate"] += 1
            paid[customer] += fen
        elif kind == 4:  # listed twice with another amount: the second is flagged
            entries.append(ntry(amount, ref=f"F-{i}", tx=txd(strd=refs[customer]))
                           + ntry("1.00", ref=f"F-{i}", tx=txd(strd=refs[customer])))
            expect["matched"] += 1
            expect["matched_fen"] += fen
            expect["flagged"] += 1
            paid[customer] += fen
        else:  # nothing to match by, listed twice: queued once
            entry = ntry(amount, ref=f"Q-{i}", tx=txd(ustrd="uplata"))
            entries.append(entry + entry)
            expect["unmatched"] += 1
            expect["duplicate"] += 1
    statement = camt("".join(entries))
    before = {c: balance_fen(conn, c) for c in refs}
    report = import_statement(conn, statement, now=NOW)
    conn.commit()
    assert {k: getattr(report, k) for k in expect} == expect
    assert (report.ignored, report.invalid) == (0, 0)
    assert {c: before[c] - balance_fen(conn, c) for c in refs} == paid
    assert conn.execute("SELECT count(*), sum(amount_fen) FROM payments").fetchone() == (
        expect["matched"], expect["matched_fen"])
    assert conn.execute("SELECT kind, count(*) FROM unmatched_payments GROUP BY 1 ORDER BY 1"
                        ).fetchall() == [("flagged", expect["flagged"]),
                                         ("unmatched", expect["unmatched"])]
    assert conn.execute("SELECT count(*) FROM journal_entries WHERE kind = 'payment'"
                        ).fetchone() == (expect["matched"],)
    tb = trial_balance(conn, date(2026, 4, 30))
    assert tb.debit_fen == tb.credit_fen
    # every line not matched names the entry and why
    queued_lines = [x for x in report.lines if x.startswith(("unmatched", "flagged"))]
    assert len(queued_lines) == expect["unmatched"] + expect["flagged"]
    assert any("Stmt[1]/Ntry[" in x and "wrong check digits" in x for x in queued_lines)
    assert any("customer_id: unknown customer 999999" in x for x in queued_lines)
    again = import_statement(conn, statement, now=NOW)
    conn.commit()
    assert (again.matched, again.unmatched, again.flagged) == (0, 0, 0)
    assert again.duplicate == len(report.lines) + report.matched + report.duplicate


def test_csv_rows_that_cannot_be_recorded_are_queued_or_named(conn: psycopg.Connection) -> None:
    data = ("transaction_id;paid_on;amount;reference;customer_code\n"
            "STORNO/7;10.04.2026;5,00;;100001\n"             # a reserved id: queued, named
            "BIG-1;10.04.2026;1000000000,01;;100001\n"       # above a billion KM: queued
            f"HUGE-1;10.04.2026;{'9' * 16};;100001\n"        # not an amount at all: invalid
            "OK-1;10.04.2026;5,00;;100001\n").encode()
    report = import_statement(conn, data, now=NOW, channel="posta")
    conn.commit()
    assert counts(report) == (1, 0, 2, 0, 0, 1)
    assert [(r[0], r[6]) for r in queue(conn)] == [
        ("BIG-1", "amount: implausibly large: '1000000000.01'"),
        ("STORNO/7", "payment_id: 'STORNO/7' starts with a prefix reserved for corrections"
                     " (STORNO/, POVRAT/)")]
    assert any(x.startswith("invalid line 4: amount: more than 15 digits") for x in report.lines)
