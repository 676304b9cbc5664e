"""`billing` subcommands of the money side: collections, aging, letters, bank statements,
ledger reports, invoice PDFs."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from app.bootstrap import one_connection
from app.clock import today_local
from app.settings import Settings


def cmd_collections(settings: Settings, args: argparse.Namespace) -> int:
    from billing import BillingError
    from billing.collections_run import run_collections
    from rating.money import format_km

    day = date.fromisoformat(args.date) if args.date else today_local()
    try:
        with one_connection(settings) as conn:
            conn.autocommit = True
            report = run_collections(conn, day)
    except BillingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    steps = ", ".join(f"{k}: {v}" for k, v in sorted(report.steps.items())) or "none"
    print(
        f"collections {day}: {report.accounts} accounts examined; steps {steps}; "
        f"{len(report.letters)} letters; interest charged {format_km(report.interest_charged_fen)}"
        f" KM; {report.orders} disconnection orders; {report.cases_opened} legal cases opened"
    )
    return 0


def cmd_aging(settings: Settings, args: argparse.Namespace) -> int:
    from billing.aging import BUCKETS, aging_report
    from rating.money import format_km

    as_of = date.fromisoformat(args.as_of) if args.as_of else today_local()
    with one_connection(settings) as conn:
        report = aging_report(conn, as_of, args.customer)
    print(f"{'customer':<12}" + "".join(f"{b:>12}" for b in BUCKETS) + f"{'total':>12}")
    for row in report.rows:
        cells = "".join(f"{format_km(row.buckets[b]):>12}" for b in BUCKETS)
        print(f"{row.customer_id:<12}{cells}{format_km(row.total_fen):>12}")
    cells = "".join(f"{format_km(report.totals[b]):>12}" for b in BUCKETS)
    print(f"{'TOTAL':<12}{cells}{format_km(sum(report.totals.values())):>12}")
    return 0


def cmd_letter(settings: Settings, args: argparse.Namespace) -> int:
    from billing import BillingError
    from billing.letters import letter_pdf

    try:
        with one_connection(settings) as conn:
            Path(args.out).write_bytes(letter_pdf(conn, args.ref))
    except BillingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"letter {args.ref} written to {args.out}")
    return 0


def cmd_import_statement(settings: Settings, args: argparse.Namespace) -> int:
    from app.clock import now_utc
    from billing.bank_import import import_statement
    from billing.bank_parse import StatementError

    try:
        with one_connection(settings) as conn:
            report = import_statement(conn, Path(args.file), now=now_utc(), channel=args.channel)
    except StatementError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    for line in report.lines:
        print(f"  {line}")
    return 0


def cmd_trial_balance(settings: Settings, args: argparse.Namespace) -> int:
    from billing.ledger_reports import trial_balance
    from rating.money import format_km

    as_of = date.fromisoformat(args.as_of) if args.as_of else today_local()
    with one_connection(settings) as conn:
        tb = trial_balance(conn, as_of)
    print(f"trial balance as of {as_of}")
    print(f"{'account':<8}{'name':<40}{'debit':>14}{'credit':>14}{'balance':>14}")
    for r in tb.rows:
        print(
            f"{r.account:<8}{r.name[:39]:<40}{format_km(r.debit_fen):>14}"
            f"{format_km(r.credit_fen):>14}{format_km(r.balance_fen):>14}"
        )
    print(f"{'':<8}{'TOTAL':<40}{format_km(tb.debit_fen):>14}{format_km(tb.credit_fen):>14}")
    return 0


def cmd_ledger_export(settings: Settings, args: argparse.Namespace) -> int:
    from billing.ledger_reports import export_csv

    with one_connection(settings) as conn:
        text = export_csv(conn, args.period)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"journal of {args.period} written to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_invoice_pdf(settings: Settings, args: argparse.Namespace) -> int:
    from billing.invoice_pdf import UtilityInfo, load_invoice, render_invoice_pdf

    with one_connection(settings) as conn:
        invoice = load_invoice(conn, args.number)
    if invoice is None:
        print(f"error: no invoice {args.number}", file=sys.stderr)
        return 2
    pdf = render_invoice_pdf(
        invoice, utility=UtilityInfo(settings.recipient_account), lang=args.lang
    )
    out = args.out or f"racun-{args.number}.pdf"
    Path(out).write_bytes(pdf)
    print(f"invoice {args.number} written to {out} ({len(pdf):,} bytes)")
    return 0


def cmd_alerts_sweep(settings: Settings, _args: argparse.Namespace) -> int:
    """Open or close communication-loss alerts; run it every few minutes (cron, closer)."""
    from app.clock import now_utc
    from stream.alerts import sweep_communication_loss

    with one_connection(settings) as conn, conn.transaction():
        events = sweep_communication_loss(conn, int(now_utc().timestamp()))
    print(f"communication-loss sweep: {len(events)} alert(s) opened or closed")
    return 0


def cmd_operator_create(settings: Settings, args: argparse.Namespace) -> int:
    """Create a staff account; the password is asked for (or read from stdin when piped)."""
    import getpass

    from api.operators import create_operator
    from app.clock import now_utc

    password = (
        getpass.getpass("password (at least 12 characters): ")
        if sys.stdin.isatty()
        else sys.stdin.readline().rstrip("\n")
    )
    try:
        with one_connection(settings) as conn, conn.transaction():
            roles = create_operator(conn, args.username, password, args.roles, now=now_utc())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"operator {args.username} created with roles {', '.join(roles)}")
    return 0


def add_money_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    col = sub.add_parser("collections", help="daily collections run: reminders → court")
    col.add_argument("--date", help="YYYY-MM-DD (default: today)")
    col.set_defaults(func=cmd_collections)
    aging = sub.add_parser("aging", help="aging report of receivables")
    aging.add_argument("--as-of", help="YYYY-MM-DD (default: today)")
    aging.add_argument("--customer")
    aging.set_defaults(func=cmd_aging)
    letter = sub.add_parser("letter", help="write a collections letter as PDF")
    letter.add_argument("ref")
    letter.add_argument("--out", required=True)
    letter.set_defaults(func=cmd_letter)
    stmt = sub.add_parser("import-statement", help="import a bank statement (camt.053 or CSV)")
    stmt.add_argument("file")
    stmt.add_argument("--channel", default="bank", help="bank | posta | …")
    stmt.set_defaults(func=cmd_import_statement)
    tb = sub.add_parser("trial-balance", help="trial balance of the general ledger")
    tb.add_argument("--as-of", help="YYYY-MM-DD (default: today)")
    tb.set_defaults(func=cmd_trial_balance)
    exp = sub.add_parser("ledger-export", help="journal entries as CSV for the accounting system")
    exp.add_argument("--period", required=True, help="YYYY or YYYY-MM")
    exp.add_argument("--out")
    exp.set_defaults(func=cmd_ledger_export)
    pdf = sub.add_parser("invoice-pdf", help="write an invoice as PDF")
    pdf.add_argument("number")
    pdf.add_argument("--lang", choices=["bs", "en"], default="bs")
    pdf.add_argument("--out")
    pdf.set_defaults(func=cmd_invoice_pdf)
    sweep = sub.add_parser("alerts-sweep", help="open/close communication-loss alerts")
    sweep.set_defaults(func=cmd_alerts_sweep)
    op = sub.add_parser(
        "operator-create", help="create a staff account (clerk/billing/legal/admin)"
    )
    op.add_argument("username")
    op.add_argument("--roles", required=True, help="comma-separated, e.g. billing,legal")
    op.set_defaults(func=cmd_operator_create)
