"""Reads/s of the streaming path against its ceilings, all measured in one run.

(a) Receive ceilings, one process each: the worker's own Faust app (``create_app`` as the
worker builds it) with a store that only counts, a bare aiokafka consumer, and
confluent-kafka's ``consume(num_messages=…)``. (b) A bare ``COPY`` of the same rows into a
copy of ``readings``, and the in-process chain (`process_reads`, no Kafka). (c) Kafka →
``python -m stream.worker`` → PostgreSQL with 1 and 2 worker processes on a 4-partition
topic; MQTT → gateway (thread) → Kafka → 1 worker → PostgreSQL, flat out and paced, with
latency per read. (c') The worker's `KafkaBatchStore` fed by bare aiokafka in this
process: what the worker would reach without Faust's per-message path.

The messages are exactly what the gateway produces (simulator messages through
`route_message`, keyed by meter, lz4 like the gateway). Besides reads/s, each line gives
CPU per read of the consuming process(es) and of the PostgreSQL server, and how idle the
machine was: on a shared 2-core machine the rates move with other people's load, the CPU
per read much less. Every topic, group, meter id and MQTT client id is unique to the run;
the workers, the gateway thread, the topics and the database are gone at the end. The
brokers must run (``infra/kafka/kafka.sh start``, ``infra/mosquitto/mosquitto.sh start``).

Latency, publish → stored: the publisher notes when it hands each MQTT message to its
client; every read of the message gets that time (side table keyed by meter and read_at).
"Stored" by two clocks of this machine: ``readings.received_at`` (the worker's ``now`` of
the batch: whole seconds, taken before the database work, so up to ~1 s low and before
the commit) and a poller that every 50 ms looks up a sample of the reads (after the
commit; up to ~50 ms late). The truth lies between the two.

    .venv/bin/python -m bench.stream_throughput [--meters 1000] [--days 1] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import psycopg
from aiokafka import AIOKafkaConsumer
from confluent_kafka import Consumer, ConsumerGroupState
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg_pool import ConnectionPool
from pydantic import SecretStr

from app.settings import Settings
from bench.common import REPO, fresh_database
from bench.pipeline_throughput import run_chain, run_copy_ceiling
from ingest.kafka_producer import ReadProducer
from ingest.mqtt_gateway import MqttGateway, route_message
from ingest.mqtt_publisher import MonthPlan, Outgoing, load_credentials, plan_messages
from stream.dead_letters import DeadLetterProducer
from stream.worker import KafkaBatchStore

START = datetime.fromisoformat("2026-03-01T00:00:00+01:00")
GATEWAY = "gw-001"
Records = list[tuple[str, bytes]]  # (meter_id, Kafka value) as the gateway produces them
Procs = Sequence[subprocess.Popen[bytes]]
NAN = float("nan")
MONITOR = "bench-monitor"  # this script's own polling connections, left out of the CPU

# --- CPU accounting (Linux /proc; nan elsewhere) ---------------------------------------------


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of one process."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return NAN
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def is_postgres(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "postgres"
    except OSError:
        return False


def machine() -> tuple[int, int]:
    """(idle, total) jiffies of all cores."""
    try:
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0, 0
    return v[3] + v[4], sum(v[:8])


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


class BackendCpu(threading.Thread):
    """CPU seconds of this database's PostgreSQL backends (not the whole server, which
    others may share), sampled every 0.1 s: a backend that exits loses its last 0.1 s."""

    def __init__(self, url: str) -> None:
        super().__init__(name="bench-backend-cpu", daemon=True)
        self.url, self.stop = url, threading.Event()
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True, application_name=MONITOR) as conn:
            born_before = True
            while True:
                pids = [r[0] for r in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name <> %s", (MONITOR,))]
                for pid in pids:
                    cpu = proc_cpu(pid) if is_postgres(pid) else NAN  # a remote server: nan
                    if not math.isnan(cpu):
                        self.first.setdefault(pid, cpu if born_before else 0.0)
                        self.last[pid] = cpu
                born_before = False
                if self.stop.wait(0.1):
                    return

    def seconds(self) -> float:
        """Nan when no backend could be read (a server on another machine)."""
        self.stop.set()
        self.join(10)
        return sum(self.last[p] - self.first[p] for p in self.last) if self.last else NAN


@dataclass
class Figures:
    """The runs of one measurement: reads/s, CPU µs per read, machine idle share."""

    label: str
    rates: list[float] = field(default_factory=list)
    client_us: list[float] = field(default_factory=list)  # consumer / worker process(es)
    server_us: list[float] = field(default_factory=list)  # the PostgreSQL server
    idle: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    def text(self) -> str:
        def med(v: list[float]) -> float:
            return statistics.median(v) if v else NAN

        return (f"{self.label}: median {self.rate:,.0f} reads/s "
                f"(runs: {', '.join(f'{v:,.0f}' for v in self.rates)}); CPU per read: "
                f"app {med(self.client_us):.0f} µs, PostgreSQL {med(self.server_us):.0f} µs;"
                f" machine idle {med(self.idle):.0%}")


def observe(fig: Figures, reads: int, url: str, fn: Callable[[], tuple[float, float]]) -> None:
    """One run: ``fn`` returns (reads/s, app CPU seconds; nan = this process's)."""
    backends = BackendCpu(url)
    backends.start()
    (i0, t0), c0 = machine(), own_cpu()
    try:
        rate, app = fn()
    finally:
        pg = backends.seconds()
    (i1, t1), c1 = machine(), own_cpu()
    fig.rates.append(rate)
    fig.client_us.append(1e6 * ((c1 - c0) if math.isnan(app) else app) / reads)
    fig.server_us.append(1e6 * pg / reads)
    fig.idle.append((i1 - i0) / (t1 - t0) if t1 > t0 else NAN)
    print(f"    run {len(fig.rates)}: {rate:,.0f} reads/s; CPU per read: app "
          f"{fig.client_us[-1]:.0f} µs, PostgreSQL {fig.server_us[-1]:.0f} µs; "
          f"machine idle {fig.idle[-1]:.0%}", flush=True)


# --- brokers, workers, messages --------------------------------------------------------------


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 4})  # no info lines


@dataclass
class Bench:
    bootstrap: str
    url: str
    u: str
    tmp: Path
    settings: Settings  # batch size and wait of every worker of the run
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def topic(self, name: str) -> str:
        full = f"bench.{self.u}.{name}"
        admin = admin_client(self.bootstrap)
        for fut in admin.create_topics([NewTopic(full, 4, 1)]).values():
            fut.result(30)
        return full

    def start_workers(self, n: int, topic: str) -> Procs:
        group = f"{topic}.group"
        env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
        env.update(BILLING_DATABASE_URL=self.url, BILLING_KAFKA_BOOTSTRAP=self.bootstrap,
                   BILLING_KAFKA_READS_TOPIC=topic, BILLING_KAFKA_DLQ_TOPIC=f"{topic}.dlq",
                   BILLING_KAFKA_CONSUMER_GROUP=group, BILLING_VAR_DIR=str(self.tmp),
                   BILLING_WORKER_BATCH_SIZE=str(self.settings.worker_batch_size),
                   BILLING_WORKER_BATCH_SECONDS=str(self.settings.worker_batch_seconds))
        started = [self._spawn([sys.executable, "-m", "stream.worker"], f"{group}-{k}", env)
                   for k in range(n)]
        admin = admin_client(self.bootstrap)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and all(p.poll() is None for p in started):
            info = admin.describe_consumer_groups([group])[group].result(10)
            owned = [tp for m in info.members for tp in m.assignment.topic_partitions
                     if tp.topic == topic]
            if info.state == ConsumerGroupState.STABLE and len(info.members) == n \
                    and len(owned) == 4:
                return started
            time.sleep(0.2)
        raise RuntimeError(f"{n} workers did not share {topic}\n{self.logs(group)}")

    def _spawn(self, argv: list[str], name: str, env: dict[str, str] | None = None
               ) -> subprocess.Popen[bytes]:
        with (self.tmp / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.workers.append(proc)
        return proc

    def logs(self, prefix: str) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:]
                         for p in self.tmp.glob(f"{prefix}*.log"))

    def stop_workers(self) -> None:
        for p in self.workers:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.workers:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        self.workers.clear()

    def delete_topics(self) -> None:
        admin = admin_client(self.bootstrap)
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"bench.{self.u}")]
        for fut in (admin.delete_topics(mine) if mine else {}).values():
            fut.result(30)


def produce(bootstrap: str, topic: str, records: Records) -> None:
    """With the gateway's producer (idempotent, lz4); raises unless all were acknowledged."""
    producer = ReadProducer(bootstrap, topic=topic, dlq_topic=f"{topic}.dlq",
                            client_id="bench-producer")
    failed: list[str | None] = []
    for k in range(0, len(records), 10_000):
        producer.produce_reads(records[k:k + 10_000],
                               lambda ok, err: None if ok else failed.append(err))
        producer.poll(0)
    if producer.close(60) or failed:
        raise RuntimeError(f"producing to {topic} failed: {failed[:3]}")


def seed(conn: psycopg.Connection, meters: Sequence[str]) -> None:
    for doc in json.loads((REPO / "app" / "demo" / "catalog.json").read_text()):
        conn.execute("INSERT INTO tariff_versions (tariff_code, valid_from, service, document)"
                     " VALUES (%s, %s, %s, %s)",
                     (doc["tariff_code"], doc["valid_from"], doc["service"], json.dumps(doc)))
    tables: dict[str, Callable[[int, str], tuple[object, ...]]] = {
        "customers (customer_id, name, kind)": lambda i, m: (f"{200000 + i}", m, "household"),
        "metering_points (metering_point_id, address)": lambda i, m: (f"MP{i}", f"Ulica {i}"),
        "meters (meter_id, service, digits, registers)":
            lambda i, m: (m, "electricity", 7, ["1.8.1", "1.8.2"]),
        "meter_installations (meter_id, metering_point_id, installed_at)":
            lambda i, m: (m, f"MP{i}", "2025-01-01T00:00:00Z"),
        "contracts": lambda i, m: (f"C{i}", f"{200000 + i}", f"MP{i}", "electricity", "EL-HH",
                                   "2025-01-01", None),
    }  # fmt: skip
    with conn.cursor() as cur:
        for table, row in tables.items():
            with cur.copy(f"COPY {table} FROM STDIN") as cp:
                for i, meter in enumerate(meters):
                    cp.write_row(row(i, meter))
    conn.commit()


def reset(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE readings, consumption_intervals, daily_consumption, meter_state,"
                     " rejected_reads")


# --- (a) receive ceilings --------------------------------------------------------------------


class Window:
    """Messages/s and CPU after the first batch (which also holds the start-up wait)."""

    def __init__(self) -> None:
        self.count = self.first = 0
        self.t_first = self.cpu_first = 0.0

    def add(self, n: int) -> None:
        self.count += n
        if n and not self.first:
            self.first, self.t_first, self.cpu_first = self.count, time.perf_counter(), own_cpu()

    def result(self) -> tuple[float, float]:
        """(messages/s, CPU seconds scaled to all messages)."""
        elapsed, n = time.perf_counter() - self.t_first, self.count - self.first
        if n <= 0 or elapsed <= 0:
            return NAN, NAN
        return n / elapsed, (own_cpu() - self.cpu_first) * self.count / n


class CountingStore:
    """A `BatchStore` that stores nothing: the worker's receive path alone."""

    def __init__(self, expected: int, out: Path) -> None:
        self.expected, self.out, self.window = expected, out, Window()

    def store(self, records: Sequence[object], now: int) -> dict[int, int]:
        self.window.add(len(records))
        if self.window.count >= self.expected:
            self.out.write_text(json.dumps(self.window.result()))
            os.kill(os.getpid(), signal.SIGTERM)  # the Faust worker stops cleanly
        return {}

    def stored_offsets(self, partitions: object) -> dict[int, int]:
        return {}


def faust_consume_main(argv: Sequence[str]) -> None:
    """Subprocess: ``faust-consume BOOTSTRAP TOPIC N OUT VAR_DIR BATCH SECONDS``."""
    import faust

    from stream.faust_app import create_app

    bootstrap, topic, n, out, var_dir, batch, seconds = argv
    settings = Settings(kafka_bootstrap=bootstrap, kafka_reads_topic=topic,
                        kafka_consumer_group=f"{topic}.{Path(out).stem}", var_dir=Path(var_dir),
                        worker_batch_size=int(batch), worker_batch_seconds=float(seconds))
    app = create_app(settings, CountingStore(int(n), Path(out)))
    faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False
                 ).execute_from_commandline()


def faust_rate(b: Bench, topic: str, n: int) -> tuple[float, float]:
    out = b.tmp / f"faust-{uuid.uuid4().hex[:6]}.json"
    s = b.settings
    proc = b._spawn([sys.executable, "-m", "bench.stream_throughput", "faust-consume",
                     b.bootstrap, topic, str(n), str(out), str(b.tmp),
                     str(s.worker_batch_size), str(s.worker_batch_seconds)], out.stem)
    try:
        proc.wait(180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    if not out.exists():
        raise RuntimeError(f"the Faust consumer failed:\n{b.logs(out.stem)}")
    rate, cpu = json.loads(out.read_text())
    return float(rate), float(cpu)


def aiokafka_rate(bootstrap: str, topic: str, n: int, store: KafkaBatchStore | None = None,
                  batch: int = 5000) -> tuple[float, float]:
    """Bare ``getmany``; with `store`, every batch also goes through it in a thread, as in
    the Faust agent."""

    async def run() -> tuple[float, float]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                    group_id=f"{topic}.aio.{uuid.uuid4().hex[:6]}",
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            window = Window()
            while window.count < n:
                batches = await consumer.getmany(timeout_ms=1000, max_records=batch)
                records = [(m.partition, m.offset, m.key, m.value)
                           for msgs in batches.values() for m in msgs]
                if store is not None and records:
                    await asyncio.to_thread(store.store, records, int(time.time()))
                window.add(len(records))
            return window.result()
        finally:
            await consumer.stop()

    return asyncio.run(run())


def confluent_rate(bootstrap: str, topic: str, n: int) -> tuple[float, float]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "auto.offset.reset": "earliest",
                         "group.id": f"{topic}.ck.{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    try:
        window = Window()
        while window.count < n:
            msgs = consumer.consume(num_messages=10_000, timeout=1.0)
            window.add(len([(m.partition(), m.offset(), m.key(), m.value()) for m in msgs
                            if m.error() is None]))
        return window.result()
    finally:
        consumer.close()


def store_rate(b: Bench, topic: str, n: int) -> tuple[float, float]:
    """(c'): bare aiokafka feeding the worker's `KafkaBatchStore`, in this process."""
    reset(b.url)
    letters = DeadLetterProducer(b.bootstrap, f"{topic}.dlq")
    try:
        with ConnectionPool(b.url, min_size=1, max_size=2) as pool:
            store = KafkaBatchStore(pool, letters, topic=topic,
                                    consumer_group=f"{topic}.store.{uuid.uuid4().hex[:6]}")
            return aiokafka_rate(b.bootstrap, topic, n, store, b.settings.worker_batch_size)
    finally:
        letters.close()


# --- (c) end to end --------------------------------------------------------------------------


def wait_stored(url: str, expected: int, procs: Procs, timeout: float = 300) -> float:
    """Poll ``count(*)`` of readings every 0.1 s until it is `expected`; perf_counter() then."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True, application_name=MONITOR) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT (SELECT count(*) FROM readings),"
                               " (SELECT count(*) FROM rejected_reads)").fetchone()
            if row and row[1]:
                raise RuntimeError(f"{row[1]} reads rejected")
            if row and row[0] >= expected:
                return time.perf_counter()
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a worker exited during the run")
            time.sleep(0.1)
    raise RuntimeError(f"not all {expected} reads stored in {timeout} s")


def kafka_e2e_rate(b: Bench, topic: str, records: Records, procs: Procs) -> tuple[float, float]:
    reset(b.url)
    cpu0 = sum(proc_cpu(p.pid) for p in procs)
    started = time.perf_counter()
    produce(b.bootstrap, topic, records)
    rate = len(records) / (wait_stored(b.url, len(records), procs) - started)
    return rate, sum(proc_cpu(p.pid) for p in procs) - cpu0


class Poller(threading.Thread):
    """Every 50 ms: which of the watched reads (meter, register, read_at) are visible."""

    def __init__(self, url: str) -> None:
        super().__init__(name="bench-poller", daemon=True)
        self.url = url
        self.pending: dict[tuple[str, str, int], float] = {}  # key -> publish time
        self.latency: list[float] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def watch(self, key: tuple[str, str, int], published: float) -> None:
        with self.lock:
            self.pending[key] = published

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True, application_name=MONITOR) as conn:
            while not self.stop.wait(0.05):
                with self.lock:
                    keys = list(self.pending)
                if not keys:
                    continue
                rows = conn.execute(
                    "SELECT r.meter_id, r.register, extract(epoch FROM r.read_at)::bigint"
                    " FROM unnest(%s::text[], %s::text[], %s::bigint[]) k(m, g, t)"
                    " JOIN readings r ON r.meter_id = k.m AND r.register = k.g"
                    " AND r.read_at = to_timestamp(k.t)",
                    ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
                ).fetchall()
                seen = time.time()
                with self.lock:
                    for m, g, t in rows:
                        self.latency.append(seen - self.pending.pop((m, g, int(t))))


def epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def publish(host: str, port: int, password: str, messages: Sequence[Outgoing],
            rate: float | None, poller: Poller) -> dict[tuple[str, int], float]:
    """QoS 1, at most `rate` reads/s; returns (meter, read_at) -> publish time. The first
    read of every 10th message is handed to the poller."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4()}")
    client.username_pw_set(GATEWAY, password)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    acked = threading.Semaphore(0)
    client.on_publish = lambda *_a: acked.release()
    client.connect(host, port, keepalive=30)
    client.loop_start()
    published: dict[tuple[str, int], float] = {}
    try:
        reads, begin = 0, time.perf_counter()
        for k, out in enumerate(messages):
            body = orjson.loads(out.payload)
            if rate and reads / rate > time.perf_counter() - begin:
                time.sleep(reads / rate - (time.perf_counter() - begin))
            now = time.time()
            client.publish(out.topic, out.payload, qos=1)
            reads += len(body)
            for read in body:
                published[(read["meter_id"], epoch(read["read_at"]))] = now
            if k % 10 == 0:
                poller.watch((body[0]["meter_id"], body[0]["register"],
                              epoch(body[0]["read_at"])), now)
        for _ in messages:
            if not acked.acquire(timeout=60):
                raise RuntimeError("mqtt: the broker stopped acknowledging")
    finally:
        client.disconnect()
        client.loop_stop()
    return published


@dataclass
class Latency:
    by_received_at: list[float] = field(default_factory=list)  # received_at - publish
    by_poll: list[float] = field(default_factory=list)  # seen by the poller - publish

    def text(self, label: str) -> str:
        def pct(v: list[float], p: float) -> float:
            s = sorted(v)
            return s[min(len(s) - 1, int(p / 100 * len(s)))] if s else NAN

        rec, seen = self.by_received_at, self.by_poll
        return (f"{label}: received_at − publish p50 {pct(rec, 50):.2f} s, p99 "
                f"{pct(rec, 99):.2f} s ({len(rec):,} reads); seen − publish p50 "
                f"{pct(seen, 50):.2f} s, p99 {pct(seen, 99):.2f} s ({len(seen):,} sampled)")


def mqtt_e2e(b: Bench, messages: Sequence[Outgoing], reads: int, creds: tuple[str, int, str],
             rate: float | None, procs: Procs, latency: Latency) -> tuple[float, float]:
    reset(b.url)
    poller = Poller(b.url)
    poller.start()
    cpu0 = sum(proc_cpu(p.pid) for p in procs)
    try:
        started = time.perf_counter()
        published = publish(*creds, messages, rate, poller)
        done = wait_stored(b.url, reads, procs)
        cpu = sum(proc_cpu(p.pid) for p in procs) - cpu0
        time.sleep(0.2)  # the poller's last look
    finally:
        poller.stop.set()
        poller.join(10)
    with psycopg.connect(b.url) as conn:
        rows = conn.execute("SELECT meter_id, extract(epoch FROM read_at)::bigint,"
                            " extract(epoch FROM received_at)::float8 FROM readings").fetchall()
    latency.by_received_at += [float(rec) - published[(m, int(t))] for m, t, rec in rows]
    latency.by_poll += poller.latency
    return reads / (done - started), cpu


# --- the run ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> None:
    bootstrap = os.environ.get("BILLING_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    try:
        admin_client(bootstrap).list_topics(timeout=5)
    except Exception as exc:
        raise SystemExit(f"Kafka at {bootstrap}: {exc}; infra/kafka/kafka.sh start") from exc
    cred_file = Path(os.environ.get("BILLING_MQTT_CREDENTIALS",
                                    REPO / "var" / "mosquitto" / "credentials.env"))
    if not cred_file.exists():
        raise SystemExit(f"no {cred_file}: infra/mosquitto/mosquitto.sh start")
    host, port, passwords = load_credentials(cred_file)
    env = dict(kv.split("=", 1) for kv in cred_file.read_text().splitlines() if "=" in kv)
    ingest_password = env["BILLING_MQTT_PASSWORD_INGEST"].strip().strip("'\"")
    u = uuid.uuid4().hex[:6]
    meters = [f"B{u}-{i:05d}" for i in range(args.meters)]
    plan = MonthPlan(START, days=args.days, read_minutes=60, reads_per_message=4,
                     meters={GATEWAY: meters})
    messages = list(plan_messages(GATEWAY, plan))
    records = [r for out in messages for r in route_message(out.topic, out.payload).records]
    reads, n = [orjson.loads(v) for _k, v in records], len(records)
    print(f"{n:,} reads per run ({args.meters} meters × 2 registers × {args.days * 24} hourly "
          f"reads; {len(messages):,} MQTT messages of 4 instants); Kafka messages of "
          f"{statistics.mean(len(v) for _k, v in records):.0f} bytes; worker batch "
          f"{args.batch} / {args.batch_seconds} s; {args.runs} runs; {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    settings = Settings(worker_batch_size=args.batch, worker_batch_seconds=args.batch_seconds)
    stop_gateway = threading.Event()
    gateway_thread: threading.Thread | None = None
    figs: dict[str, Figures] = {}

    def measure(key: str, label: str, fn: Callable[[], tuple[float, float]],
                count: int = n) -> None:
        figs[key] = fig = Figures(label)
        print(label, flush=True)
        for _ in range(args.runs):
            observe(fig, count, url, fn)

    with fresh_database() as url:
        b = Bench(bootstrap, url, u, tmp, settings)
        try:
            with psycopg.connect(url) as conn:
                seed(conn, meters)
            topic = b.topic("consume")
            produce(bootstrap, topic, records)
            measure("faust", "(a) receive: the worker's Faust app, counting store",
                    lambda: faust_rate(b, topic, n))
            measure("aio", "(a) receive: bare aiokafka getmany(5000)",
                    lambda: aiokafka_rate(bootstrap, topic, n))
            measure("ck", "(a) receive: confluent-kafka consume(10000)",
                    lambda: confluent_rate(bootstrap, topic, n))
            measure("copy", "(b) raw COPY into readings",
                    lambda: (run_copy_ceiling(url, reads), NAN))
            measure("chain", "(b) in-process chain (process_reads, no Kafka)",
                    lambda: (run_chain(url, reads, args.batch), NAN))
            measure("store", "(c') bare aiokafka → the worker's KafkaBatchStore (not the "
                    "worker)", lambda: store_rate(b, topic, n))
            for w in (1, 2):
                topic = b.topic(f"w{w}")
                procs = b.start_workers(w, topic)
                measure(f"w{w}", f"(c) Kafka → {w} worker process(es) → PostgreSQL",
                        partial(kafka_e2e_rate, b, topic, records, procs))
                b.stop_workers()
            # MQTT → gateway (thread) → Kafka → 1 worker → PostgreSQL
            topic = b.topic("mqtt")
            procs = b.start_workers(1, topic)
            gateway = MqttGateway(
                Settings(kafka_bootstrap=bootstrap, kafka_reads_topic=topic,
                         kafka_dlq_topic=f"{topic}.gateway-dlq", mqtt_host=host, mqtt_port=port,
                         mqtt_username="ingest", mqtt_password=SecretStr(ingest_password)),
                topics=[f"amr/{GATEWAY}/{m}" for m in meters], client_id=f"bench-gw-{u}",
                session_expiry_s=30)
            gateway_thread = threading.Thread(target=gateway.run, args=(stop_gateway,),
                                              name="bench-gateway")
            gateway_thread.start()
            if not gateway.ready.wait(30):
                raise RuntimeError("the gateway did not connect and subscribe")
            creds = (host, port, passwords[GATEWAY])
            flat, paced = Latency(), Latency()
            measure("mqtt", "(c) MQTT → gateway → Kafka → 1 worker → PostgreSQL, flat out",
                    lambda: mqtt_e2e(b, messages, n, creds, None, procs, flat))
            paced_rate = args.paced_share * figs["w1"].rate
            part = messages[:max(1, int(paced_rate * args.paced_seconds / 8))]  # 8 reads each
            paced_reads = sum(len(orjson.loads(o.payload)) for o in part)
            measure("paced", f"(c) MQTT paced at {paced_rate:,.0f} reads/s "
                    f"({args.paced_share:.0%} of 1 worker; {paced_reads:,} reads)",
                    lambda: mqtt_e2e(b, part, paced_reads, creds, paced_rate, procs, paced),
                    paced_reads)
        finally:
            stop_gateway.set()
            if gateway_thread is not None:
                gateway_thread.join(60)
            b.stop_workers()
            b.delete_topics()
            shutil.rmtree(tmp, ignore_errors=True)
    summary(figs, flat, paced)


def summary(figs: dict[str, Figures], flat: Latency, paced: Latency) -> None:
    print(f"\nmedians (load average now {os.getloadavg()[0]:.1f}):")
    for fig in figs.values():
        print(fig.text())
    print(flat.text("latency, MQTT flat out (a backlog)"))
    print(paced.text(f"latency, MQTT paced at {figs['paced'].rate:,.0f} reads/s"))
    r = {k: f.rate for k, f in figs.items()}
    lower_key = "faust" if r["faust"] <= r["copy"] else "copy"
    lower = r[lower_key]
    print(f"lower ceiling: {figs[lower_key].label} = {lower:,.0f} reads/s")
    print(f"end to end / lower ceiling: Kafka→1 worker {r['w1'] / lower:.2f}, "
          f"Kafka→2 workers {r['w2'] / lower:.2f}, MQTT→1 worker {r['mqtt'] / lower:.2f}")
    print(f"2 workers / 1 worker {r['w2'] / r['w1']:.2f}; 1 worker / in-process chain "
          f"{r['w1'] / r['chain']:.2f}; (c') / 1 worker {r['store'] / r['w1']:.2f}; "
          f"Faust receive / bare aiokafka {r['faust'] / r['aio']:.3f}; "
          f"Faust receive / confluent consume {r['faust'] / r['ck']:.2f}")
    us = statistics.median(figs["w1"].client_us)
    print(f"aim ≥ 50,000 reads/s per worker process: {r['w1']:,.0f} ({r['w1'] / 50_000:.2f}); "
          f"at {us:.0f} µs of worker CPU per read one whole core would give "
          f"{1e6 / us:,.0f}; aim ≥ 0.25 of the lower ceiling: {r['w1'] / lower:.2f}")


def main() -> None:
    if sys.argv[1:2] == ["faust-consume"]:
        faust_consume_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--meters", type=int, default=1000)
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=Settings().worker_batch_size)
    ap.add_argument("--batch-seconds", type=float, default=Settings().worker_batch_seconds)
    ap.add_argument("--paced-share", type=float, default=0.5,
                    help="the paced MQTT run at this share of the 1-worker Kafka rate")
    ap.add_argument("--paced-seconds", type=float, default=5.0)
    run(ap.parse_args())


if __name__ == "__main__":
    main()
