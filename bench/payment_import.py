"""Payment import speed: a camt.053 statement and a payments CSV of N payments each (the
totals and payment references of real invoices of a close), imported through
`billing.bank_import.import_statement`, against the ceiling measured in the same run: a raw
COPY of the same rows into a scratch table shaped like `payments`.

    .venv/bin/python -m bench.payment_import [--payments 50000] [--runs 3]

The accounts are seeded like bench.close_100k (COPY, one month of daily consumption) and
the month is closed once; that database is the template of a fresh copy for every import
(imports commit, and recorded payments and journal entries cannot be deleted).
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, date, datetime, timedelta

import psycopg
from psycopg import sql

from app.database import with_database
from bench.close_100k import PERIOD, StepTimer, Targets, cpu_seconds, seed
from bench.common import fresh_database
from billing import bank_import, payments
from billing.bank_import import import_statement
from billing.closer import close_period
from rating.calendar import month_bounds
from rating.money import format_km

IBAN = "BA391549990000000099"
NOW = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
PAID_ON = date(2026, 11, 10)
STEPS: Targets = [
    (bank_import, ("parse_statement", "_queued", "record_checked", "_queue")),
    (payments, ("lock_counters", "_match_and_insert", "_recorded", "post_payments",
                "post_payment_ids",
                "settle_credit", "add_payment_events")),
]

HOT: tuple[str, ...] = ()  # nothing is called per payment any more

Invoice = tuple[str, str, int]  # customer_id, payment_reference, total_fen


def camt053(invoices: list[Invoice]) -> bytes:
    entries = "".join(
        f'<Ntry><Amt Ccy="BAM">{format_km(total)}</Amt><CdtDbtInd>CRDT</CdtDbtInd>'
        f"<Sts>BOOK</Sts><BookgDt><Dt>{PAID_ON}</Dt></BookgDt><ValDt><Dt>{PAID_ON}</Dt>"
        f"</ValDt><AcctSvcrRef>T{i:08d}</AcctSvcrRef><BkTxCd/><NtryDtls><TxDtls><Refs>"
        f"<EndToEndId>NOTPROVIDED</EndToEndId></Refs><RltdPties><Dbtr><Nm>Kupac {customer}"
        f"</Nm></Dbtr></RltdPties><RmtInf><Strd><CdtrRefInf><Tp><CdOrPrtry><Cd>SCOR</Cd>"
        f"</CdOrPrtry></Tp><Ref>{ref}</Ref></CdtrRefInf></Strd></RmtInf></TxDtls></NtryDtls>"
        f"</Ntry>"
        for i, (customer, ref, total) in enumerate(invoices, start=1))
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>'
            "<GrpHdr><MsgId>BENCH-1</MsgId><CreDtTm>2026-11-11T06:00:00</CreDtTm></GrpHdr>"
            "<Stmt><Id>STMT-BENCH</Id><CreDtTm>2026-11-11T06:00:00</CreDtTm>"
            f"<Acct><Id><IBAN>{IBAN}</IBAN></Id><Ccy>BAM</Ccy></Acct>{entries}</Stmt>"
            "</BkToCstmrStmt></Document>").encode()


def payments_csv(invoices: list[Invoice]) -> bytes:
    day = PAID_ON.strftime("%d.%m.%Y")
    rows = [f"C{i:08d};{day};{format_km(total).replace('.', ',')};{ref};{customer};Kupac"
            for i, (customer, ref, total) in enumerate(invoices, start=1)]
    head = "transaction_id;paid_on;amount;reference;customer_code;payer_name"
    return ("\n".join([head, *rows]) + "\n").encode()


def copy_ceiling(conn: psycopg.Connection, invoices: list[Invoice]) -> float:
    """Seconds to COPY the same payment rows into an empty scratch copy of `payments`."""
    conn.execute("CREATE TEMP TABLE scratch_payments (LIKE payments INCLUDING ALL)")
    t = time.perf_counter()
    with conn.cursor() as cur, cur.copy(
        "COPY scratch_payments (payment_id, customer_id, paid_on, amount_fen, reference,"
        " channel) FROM STDIN"
    ) as copy:
        for i, (customer, ref, total) in enumerate(invoices, start=1):
            copy.write_row((f"{IBAN}:T{i:08d}", customer, PAID_ON, total, ref, "bank"))
    conn.commit()
    seconds = time.perf_counter() - t
    conn.execute("DROP TABLE scratch_payments")
    conn.commit()
    return seconds


def _import(admin: str, template: str, data: bytes, expected: int, ceiling: bool,
            invoices: list[Invoice]) -> tuple[float, float | None, str]:
    name = f"{template}_imp"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)))
    try:
        with psycopg.connect(with_database(admin, name)) as conn:
            ceil = copy_ceiling(conn, invoices) if ceiling else None
            with StepTimer(STEPS, conn.info.backend_pid, hot=HOT) as steps:
                t, cpu = time.perf_counter(), cpu_seconds(conn)
                report = import_statement(conn, data, now=NOW)
                seconds, cpu = time.perf_counter() - t, cpu_seconds(conn) - cpu
            assert report.matched == expected, report.summary()
            return seconds, ceil, (f"CPU (bench + backend) {cpu:.2f} s = {cpu / expected * 1e6:.0f}"
                                   f" µs a payment; steps (wall/CPU s): {steps.summary()}")
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--payments", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    n = args.payments
    with fresh_database() as url:
        with psycopg.connect(url) as conn:
            t = time.perf_counter()
            seed(conn, n)
            res = close_period(conn, PERIOD, issued_on=month_bounds(PERIOD)[1] + timedelta(1))
            conn.commit()
            invoices: list[Invoice] = conn.execute(
                "SELECT customer_id, payment_reference, total_fen FROM invoices"
                " ORDER BY invoice_number").fetchall()
        print(f"seeded and closed {res.invoices_created:,} invoices in"
              f" {time.perf_counter() - t:.1f} s", flush=True)
        files = {"camt.053": camt053(invoices), "csv": payments_csv(invoices)}
        admin = with_database(url, "postgres")
        template = str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])
        results: dict[str, list[float]] = {k: [] for k in (*files, "COPY ceiling")}
        for run in range(args.runs):
            for kind, data in files.items():
                seconds, ceil, steps = _import(admin, template, data, n, kind == "csv",
                                               invoices)
                results[kind].append(n / seconds)
                if ceil is not None:
                    results["COPY ceiling"].append(n / ceil)
                print(f"run {run + 1} {kind} ({len(data) / 1e6:.1f} MB): {seconds:.2f} s,"
                      f" {n / seconds:,.0f} payments/s; {steps}", flush=True)
    ceiling = statistics.median(results["COPY ceiling"])
    for kind, rates in results.items():
        rate = statistics.median(rates)
        print(f"{kind}: median {rate:,.0f} payments/s (runs: "
              f"{', '.join(f'{r:,.0f}' for r in rates)}); {rate / ceiling:.3f} of the ceiling")


if __name__ == "__main__":
    main()
