"""The long-running roles: `run` (everything in one process), `api`, `worker`, `gateway`."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import threading
from collections.abc import Iterator

from app.bootstrap import Runtime
from app.clock import now_utc
from app.demo_load import load_demo
from app.settings import Settings

log = logging.getLogger(__name__)


def _serve(app: object, settings: Settings) -> None:
    import uvicorn

    proxy = settings.forwarded_allow_ips
    server = uvicorn.Server(
        uvicorn.Config(
            app,  # type: ignore[arg-type]
            host=settings.host,
            port=settings.port,
            log_level="warning",
            # behind a TLS proxy the client's address (login throttling per IP, audit) comes
            # from X-Forwarded-For, trusted only from the proxy's own address
            proxy_headers=proxy is not None,
            forwarded_allow_ips=proxy,
        )
    )
    # Ctrl-C reaches the whole process group; uvicorn has already shut down by then
    with contextlib.suppress(KeyboardInterrupt):
        server.run()


def read_producer(settings: Settings) -> object | None:
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
    stop = threading.Event()
    sweeper = threading.Thread(target=_housekeeping, args=(rt, stop), name="housekeeping",
                               daemon=True)
    sweeper.start()
    try:
        _serve(create_app(settings, rt.pool, read_producer=read_producer(settings)), settings)
    finally:
        stop.set()
        sweeper.join(timeout=5)
        rt.close()
    return 0


def cmd_worker(settings: Settings, _args: argparse.Namespace) -> int:
    """A Kafka → PostgreSQL worker (Faust); run as many as the topic has partitions. With
    Kafka it also publishes the outbox (`BILLING_PUBLISH_EVENTS`, see `publishing`)."""
    from app.database import database_url
    from stream.worker import run_worker

    url = database_url(settings) if publishes_events(settings) else ""
    with publishing(settings, url):
        run_worker(settings)
    return 0


def publishes_events(settings: Settings) -> bool:
    """Whether this process sends the outbox: `publish_events`, by default when Kafka is
    configured (there is nowhere to send it without)."""
    return bool(settings.kafka_bootstrap) and settings.publish_events is not False


@contextlib.contextmanager
def publishing(settings: Settings, database_url: str, *, idle_seconds: float = 1.0,
               stop_timeout_s: float = 15.0) -> Iterator[threading.Thread | None]:
    """While inside: a thread that publishes the outbox (`stream.outbox_publisher`) when
    `publishes_events`; on the way out it is stopped, joined and its producer flushed, so
    the role stops cleanly. Several workers may publish at once: a batch is locked with
    ``SKIP LOCKED``, so each event is sent by one of them."""
    if not publishes_events(settings):
        yield None
        return
    import psycopg

    from stream.outbox_publisher import OutboxPublisher, run_publisher

    bootstrap = str(settings.kafka_bootstrap)
    publisher = OutboxPublisher(bootstrap, client_id="billing-outbox-worker")
    stop = threading.Event()
    def publish() -> None:
        while not stop.is_set():
            try:
                run_publisher(lambda: psycopg.connect(database_url), publisher, stop,
                              idle_seconds=idle_seconds)
            except Exception:  # a Kafka client error must not end publishing for good
                log.exception("outbox publisher failed; restarting")
                stop.wait(5 * idle_seconds)

    thread = threading.Thread(target=publish, name="outbox-publisher", daemon=True)
    thread.start()
    log.info("outbox publisher started (Kafka at %s)", bootstrap)
    try:
        yield thread
    finally:
        stop.set()
        thread.join(timeout=stop_timeout_s)
        left = publisher.close(timeout=5.0)
        if thread.is_alive() or left:
            log.warning("outbox publisher: stopped with %d event(s) unacknowledged%s; they"
                        " are sent again by the next publisher", left,
                        " (still waiting for Kafka)" if thread.is_alive() else "")
        else:
            log.info("outbox publisher stopped")


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


def _housekeeping(rt: Runtime, stop: threading.Event, every_s: float = 300.0) -> None:
    """What needs a clock, not an event, every few minutes: communication-loss alerts (no
    read for hours) and dropping login-throttle counters that can no longer matter."""
    import logging

    from api.throttle import prune
    from stream.alerts import sweep_communication_loss

    while not stop.wait(every_s):
        try:
            now = now_utc()
            with rt.pool.connection() as conn, conn.transaction():
                sweep_communication_loss(conn, int(now.timestamp()))
                prune(conn, now)
        except Exception:  # a failed sweep must not stop the service; the next one retries
            logging.getLogger(__name__).exception("housekeeping failed")


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    """Everything in one command: database, demo data on first start, API and portal,
    meter simulator; with BILLING_KAFKA_BOOTSTRAP also a Kafka worker, the outbox publisher
    (and the MQTT gateway when BILLING_MQTT_PASSWORD is set), otherwise the in-process
    chain."""
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
    app = create_app(settings, rt.pool, read_producer=read_producer(settings))
    if not args.no_simulator:
        with rt.pool.connection() as conn:
            token = register_gateway(conn, f"simulator-{int(now_utc().timestamp())}")
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
    threads.append(
        threading.Thread(target=_housekeeping, args=(rt, stop), name="housekeeping", daemon=True)
    )
    for t in threads:
        t.start()
    try:
        with publishing(settings, rt.database_url):  # the outbox, when Kafka is configured
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
