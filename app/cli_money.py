"""`billing` subcommands of the money side: collections, aging, letters, bank statements,
ledger reports, invoice PDFs, payment reversals and refunds, close preview, interest policy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.bootstrap import one_connection
from app.cli_args import iso_day
from app.clock import today_local
from app.settings import Settings


def cmd_collections(settings: Settings, args: argparse.Namespace) -> int:
    from billing import BillingError
    from billing.collections_run import run_collections
    from rating.money import format_km

    day = args.date or today_local()
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

    as_of = args.as_of or today_local()
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

    as_of = args.as_of or today_local()
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


def cmd_reverse_payment(settings: Settings, args: argparse.Namespace) -> int:
    """Reverse a wrongly matched payment; re-match it or send it back to the queue."""
    from billing import BillingError
    from billing.payment_corrections import reverse_payment

    on = args.on or today_local()
    try:
        with one_connection(settings) as conn, conn.transaction():
            r = reverse_payment(conn, args.payment_id, reason=args.reason, on=on,
                                operator=args.operator, rematch_to=args.rematch_to)
    except BillingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    where = (f"recorded for {r.rematched_to} as {r.rematched_id}" if r.rematched_id
             else f"queued as unmatched {r.queued_id}")
    print(f"payment {r.payment_id} of {r.customer_id} reversed by {r.reversal_id}; {where}")
    return 0


def cmd_refund_credit(settings: Settings, args: argparse.Namespace) -> int:
    from billing import BillingError
    from billing.payment_corrections import refund_credit
    from rating.money import parse_amount_fen

    on = args.on or today_local()
    try:
        amount = parse_amount_fen(args.amount)
        with one_connection(settings) as conn, conn.transaction():
            refund_id = refund_credit(conn, args.customer_id, amount, reason=args.reason,
                                      on=on, operator=args.operator)
    except BillingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: amount: {exc}", file=sys.stderr)
        return 2
    print(f"refund {refund_id}: {args.amount} KM to customer {args.customer_id}")
    return 0


def cmd_close_preview(settings: Settings, args: argparse.Namespace) -> int:
    """What the close of a period would invoice now, without writing anything."""
    from billing import BillingError
    from billing.close_preview import preview_close_report
    from rating.money import format_km

    issued_on = args.issued_on or today_local()
    try:
        with one_connection(settings) as conn:
            p = preview_close_report(conn, args.period, issued_on=issued_on,
                                     payment_days=settings.payment_days)
    except BillingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"preview {p.period}, issued {p.issued_on}, due {p.due_on}: {len(p.invoices)}"
          f" invoices, total {format_km(p.total_fen)} KM; {p.invoices_existing} already issued;"
          f" {len(p.skipped)} skipped")
    if args.verbose:
        for d in p.invoices:
            print(f"  {d.draft.customer_id:<12}{format_km(d.draft.total_fen):>12}"
                  f"  credit {format_km(d.credit_applied_fen):>10}  to pay"
                  f" {format_km(d.to_pay_fen):>10}")
    for customer, why in p.skipped.items():
        print(f"  skipped {customer}: {why}")
    return 0


def cmd_interest_policy(settings: Settings, args: argparse.Namespace) -> int:
    """Show or set whether the close charges late-payment interest on the next invoice."""
    from billing import BillingError
    from billing.interest_charges import load_policy, set_policy
    from rating.money import format_km, parse_amount_fen

    try:
        with one_connection(settings) as conn, conn.transaction():
            if args.set is not None:
                current = load_policy(conn)
                minimum = (parse_amount_fen(args.minimum) if args.minimum is not None
                           else current.min_charge_fen)
                set_policy(conn, on_invoice=args.set == "on", min_charge_fen=minimum)
            policy = load_policy(conn)
    except (BillingError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"interest on invoices: {'on' if policy.on_invoice else 'off'},"
          f" minimum {format_km(policy.min_charge_fen)} KM")
    return 0


def add_money_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    col = sub.add_parser("collections", help="daily collections run: reminders → court")
    col.add_argument("--date", type=iso_day, help="YYYY-MM-DD (default: today)")
    col.set_defaults(func=cmd_collections)
    aging = sub.add_parser("aging", help="aging report of receivables")
    aging.add_argument("--as-of", type=iso_day, help="YYYY-MM-DD (default: today)")
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
    tb.add_argument("--as-of", type=iso_day, help="YYYY-MM-DD (default: today)")
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
    rev = sub.add_parser("reverse-payment", help="reverse a wrongly matched payment")
    rev.add_argument("payment_id")
    rev.add_argument("--reason", required=True)
    rev.add_argument("--operator", required=True)
    rev.add_argument("--on", type=iso_day, help="YYYY-MM-DD (default: today)")
    rev.add_argument("--rematch-to", help="the right customer (default: back to the queue)")
    rev.set_defaults(func=cmd_reverse_payment)
    ref = sub.add_parser("refund-credit", help="pay back a customer's credit")
    ref.add_argument("customer_id")
    ref.add_argument("amount", help="KM, e.g. 12.50")
    ref.add_argument("--reason", required=True)
    ref.add_argument("--operator")
    ref.add_argument("--on", type=iso_day, help="YYYY-MM-DD (default: today)")
    ref.set_defaults(func=cmd_refund_credit)
    prev = sub.add_parser("close-preview", help="what the close would invoice (writes nothing)")
    prev.add_argument("period", help="YYYY-MM")
    prev.add_argument("--issued-on", type=iso_day, help="YYYY-MM-DD (default: today)")
    prev.add_argument("-v", "--verbose", action="store_true", help="one line per invoice")
    prev.set_defaults(func=cmd_close_preview)
    pol = sub.add_parser("interest-policy", help="late-payment interest on invoices: show/set")
    pol.add_argument("--set", choices=["on", "off"])
    pol.add_argument("--minimum", help="KM below which interest waits for a later invoice")
    pol.set_defaults(func=cmd_interest_policy)
