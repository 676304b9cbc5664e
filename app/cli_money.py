"""`billing` subcommands of the money side: collections run, aging report, letters."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from app.bootstrap import bootstrap
from app.clock import today_local
from app.settings import Settings


def cmd_collections(settings: Settings, args: argparse.Namespace) -> int:
    from billing import BillingError
    from billing.collections_run import run_collections
    from rating.money import format_km

    day = date.fromisoformat(args.date) if args.date else today_local()
    rt = bootstrap(settings, pool_size=1)
    try:
        with rt.pool.connection() as conn:
            conn.autocommit = True
            report = run_collections(conn, day)
    except BillingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        rt.close()
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
    rt = bootstrap(settings, pool_size=1)
    try:
        with rt.pool.connection() as conn:
            report = aging_report(conn, as_of, args.customer)
    finally:
        rt.close()
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

    rt = bootstrap(settings, pool_size=1)
    try:
        with rt.pool.connection() as conn:
            Path(args.out).write_bytes(letter_pdf(conn, args.ref))
    except BillingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        rt.close()
    print(f"letter {args.ref} written to {args.out}")
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
