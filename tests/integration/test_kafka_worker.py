"""The Kafka → PostgreSQL worker (`python -m stream.worker`) on the real broker and database.

Every test uses its own topics and consumer group (uuid suffix): the broker is shared.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast

import orjson
import psycopg
import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg import sql
from psycopg_pool import ConnectionPool

from app.database import with_database
from billing.closer import close_period
from schemas.contracts import validate
from stream.dead_letters import DeadLetterProducer, decode_dead_letter
from stream.pipeline import process_reads
from stream.worker import KafkaBatchStore

REPO = Path(__file__).resolve().parents[2]
CATALOG = json.loads((REPO / "app" / "demo" / "catalog.json").read_text())
MARCH = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp()) - 3600  # local midnight
HOURS = 31 * 24 - 1  # March in local hours (clocks go forward on 29 March)
NOW = int(datetime(2026, 4, 2, tzinfo=UTC).timestamp())


@dataclass(frozen=True)
class Meter:
    meter_id: str
    register: str
    unit: str
    start_milli: int
    water: bool


def meters(n: int) -> list[Meter]:
    """Four in five electricity meters (1.8.1), one in five water meters (8.0)."""
    out = []
    for i in range(1, n + 1):
        water = i % 5 == 0
        out.append(Meter(f"{'W' if water else 'E'}{i:05d}", "8.0" if water else "1.8.1",
                         "m3" if water else "kWh", 1_000_000 + i * 1_000, water))
    return out


def seed(conn: psycopg.Connection, fleet: Sequence[Meter]) -> None:
    for doc in CATALOG:
        conn.execute(
            "INSERT INTO tariff_versions (tariff_code, valid_from, service, document)"
            " VALUES (%s, %s, %s, %s)",
            (doc["tariff_code"], doc["valid_from"], doc["service"], json.dumps(doc)),
        )
    for i, m in enumerate(fleet, 1):
        service = "water" if m.water else "electricity"
        conn.execute("INSERT INTO customers VALUES (%s, %s, 'household')",
                     (f"{100000 + i}", f"Kupac {i}"))
        conn.execute("INSERT INTO metering_points (metering_point_id, address) VALUES (%s, %s)",
                     (f"MP{i}", f"Ulica {i}"))
        conn.execute("INSERT INTO meters VALUES (%s, %s, 6, 1, %s)",
                     (m.meter_id, service, [m.register]))
        conn.execute("INSERT INTO meter_installations VALUES (%s, %s, '2025-01-01T00:00Z')",
                     (m.meter_id, f"MP{i}"))
        conn.execute(
            "INSERT INTO contracts VALUES (%s, %s, %s, %s, %s, '2025-01-01', NULL)",
            (f"C{i}", f"{100000 + i}", f"MP{i}", service, "W-HH" if m.water else "EL-HH"),
        )
    conn.commit()


def hourly_reads(fleet: Sequence[Meter], hours: int = HOURS) -> list[dict[str, Any]]:
    """Cumulative register values every hour, time-major (as gateways send them)."""
    reads = []
    values = [m.start_milli for m in fleet]
    for h in range(hours + 1):
        at = datetime.fromtimestamp(MARCH + h * 3600, UTC).isoformat().replace("+00:00", "Z")
        for k, m in enumerate(fleet):
            if h:
                values[k] += 5 + (k + h) % 7 if m.water else 200 + (k * 7 + h * 13) % 17 * 100
            v = values[k]
            read = {"meter_id": m.meter_id, "register": m.register, "read_at": at,
                    "value": f"{v // 1000}.{v % 1000:03d}", "unit": m.unit, "source": "amr"}
            if k % 3 == 0:
                read["gateway_id"] = f"gw-{k % 4:03d}"  # added by the MQTT bridge
            reads.append(read)
    return reads


def as_messages(reads: Sequence[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    return [(r["meter_id"].encode(), orjson.dumps(r)) for r in reads]


def unique(name: str) -> str:
    return f"test.{name}.{uuid.uuid4().hex[:10]}"


def create_topic(bootstrap: str, name: str, partitions: int = 4) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(30)


def produce(bootstrap: str, topic: str, messages: Sequence[tuple[bytes | None, bytes | None]]
            ) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "acks": "all", "linger.ms": 20})
    errors: list[Any] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert not errors, errors[:3]


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 30) -> list[Any]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("reader"),
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(msg)
    finally:
        consumer.close()
    return out


@dataclass
class Streams:
    """One test's topics and consumer group on the shared broker."""

    bootstrap: str
    reads: str
    dlq: str
    group: str

    def env(self, db_url: str, var_dir: Path, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
        env.update(
            BILLING_DATABASE_URL=db_url, BILLING_KAFKA_BOOTSTRAP=self.bootstrap,
            BILLING_KAFKA_READS_TOPIC=self.reads, BILLING_KAFKA_DLQ_TOPIC=self.dlq,
            BILLING_KAFKA_CONSUMER_GROUP=self.group, BILLING_WORKER_BATCH_SECONDS="0.2",
            BILLING_WORKER_BATCH_SIZE="2000", BILLING_VAR_DIR=str(var_dir), **extra,
        )
        return env


@pytest.fixture
def streams(kafka_bootstrap: str) -> Streams:
    s = Streams(kafka_bootstrap, unique("reads"), unique("dlq"), unique("group"))
    create_topic(kafka_bootstrap, s.reads)
    create_topic(kafka_bootstrap, s.dlq, 1)
    return s


class WorkerProcess:
    """``python -m stream.worker`` as a separate OS process."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "stream.worker"], cwd=REPO,
                                     env=env, stdout=self._out, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._out.close()

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(env: dict[str, str]) -> WorkerProcess:
        w = WorkerProcess(env, tmp_path / f"worker-{len(started)}.log")
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def scalar(db_url: str, query: str) -> Any:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(query).fetchone()
    return row[0] if row else None


def wait_for(db_url: str, query: str, expected: Any, workers: Sequence[WorkerProcess],
             timeout: float = 90) -> float:
    """Poll until ``query`` returns ``expected``; return the seconds it took."""
    start = time.monotonic()
    value = None
    while time.monotonic() - start < timeout:
        value = scalar(db_url, query)
        if value == expected:
            return time.monotonic() - start
        if not any(w.alive() for w in workers):
            break
        time.sleep(0.25)
    logs = "\n---\n".join(w.tail() for w in workers)
    raise AssertionError(f"{query} = {value}, expected {expected}\n{logs}")


TOTALS = """
SELECT (SELECT count(*) FROM readings), (SELECT coalesce(sum(value_milli), 0) FROM readings),
       (SELECT count(*) FROM consumption_intervals),
       (SELECT coalesce(sum(quantity_milli), 0) FROM consumption_intervals),
       (SELECT coalesce(sum(amount_nano), 0) FROM consumption_intervals),
       (SELECT coalesce(sum(quantity_milli), 0) FROM daily_consumption),
       (SELECT coalesce(sum(amount_nano), 0) FROM daily_consumption),
       (SELECT count(*) FROM daily_consumption), (SELECT count(*) FROM rejected_reads)
"""


def totals(db_url: str) -> tuple[int, ...]:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(TOTALS).fetchone()
    assert row is not None
    return tuple(int(v) for v in row)


def reference_totals(db_url: str, reads: Sequence[dict[str, Any]]) -> tuple[int, ...]:
    """The in-process path: the same reads straight through `process_reads`."""
    with psycopg.connect(db_url) as conn:
        for k in range(0, len(reads), 5000):
            with conn.transaction():
                process_reads(conn, reads[k : k + 5000], channel="test", now=NOW)
    return totals(db_url)


@pytest.fixture
def other_db_url(admin_url: str, template_db: str) -> Iterator[str]:
    name = f"billing_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template_db)))
    yield with_database(admin_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


def invoices(db_url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with psycopg.connect(db_url) as conn:
        result = close_period(conn, "2026-03", issued_on=date(2026, 4, 2))
        assert result.invoices_created > 0 and not result.skipped, result
        heads = conn.execute(
            "SELECT invoice_number, customer_id, net_fen, vat_fen, total_fen, payment_reference"
            " FROM invoices ORDER BY invoice_number").fetchall()
        lines = conn.execute("SELECT * FROM invoice_lines ORDER BY 1, 2").fetchall()
    return heads, lines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name))


# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["faust", "aiokafka"])
def test_a_month_of_hourly_reads_gives_the_same_invoices_as_in_process(
    streams: Streams, db_url: str, other_db_url: str, tmp_path: Path,
    start_worker: Callable[..., WorkerProcess], engine: str,
) -> None:
    fleet = meters(100)
    reads = hourly_reads(fleet)
    for url in (db_url, other_db_url):
        with psycopg.connect(url) as conn:
            seed(conn, fleet)
    produce(streams.bootstrap, streams.reads, as_messages(reads))
    port = free_port()
    worker = start_worker(
        streams.env(db_url, tmp_path, BILLING_METRICS_PORT=str(port), BILLING_WORKER_ENGINE=engine)
    )
    took = wait_for(db_url, "SELECT count(*) FROM readings", len(reads), [worker])
    wait_for(db_url, "SELECT sum(next_offset) FROM stream_offsets", len(reads), [worker])
    print(f"\nworker stored {len(reads)} reads in {took:.1f}s incl. start-up")

    expected = reference_totals(other_db_url, reads)
    assert totals(db_url) == expected
    assert expected[0] == len(reads) and expected[8] == 0  # nothing rejected
    assert metric(port, 'billing_reads_accepted_total{channel="kafka"}') == len(reads)
    worker.stop()
    assert invoices(db_url) == invoices(other_db_url)


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(4)])]
    result = admin.list_consumer_group_offsets(request)[group].result(30)
    return {tp.partition: tp.offset for tp in result.topic_partitions}


def reset_to_earliest(bootstrap: str, group: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p, 0) for p in range(4)])]
    admin.alter_consumer_group_offsets(request)[group].result(30)


def test_duplicates_and_redeliveries_change_nothing(
    streams: Streams, db_url: str, other_db_url: str, tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    fleet = meters(20)
    reads = hourly_reads(fleet, hours=72)
    for url in (db_url, other_db_url):
        with psycopg.connect(url) as conn:
            seed(conn, fleet)
    messages = as_messages(reads)
    produce(streams.bootstrap, streams.reads, messages)
    produce(streams.bootstrap, streams.reads, messages)  # every read twice
    total = 2 * len(messages)
    offsets_sql = "SELECT sum(next_offset) FROM stream_offsets WHERE consumer_group = "
    worker = start_worker(streams.env(db_url, tmp_path))
    wait_for(db_url, f"{offsets_sql}'{streams.group}'", total, [worker])
    expected = reference_totals(other_db_url, reads)
    assert totals(db_url) == expected
    worker.stop()

    # the group is reset to the beginning: the stored offsets say it was all done
    reset_to_earliest(streams.bootstrap, streams.group, streams.reads)
    assert sum(committed_offsets(streams.bootstrap, streams.group, streams.reads).values()) == 0
    port = free_port()
    worker = start_worker(streams.env(db_url, tmp_path, BILLING_METRICS_PORT=str(port)))
    deadline = time.monotonic() + 60
    while sum(committed_offsets(streams.bootstrap, streams.group, streams.reads).values()) < total:
        assert time.monotonic() < deadline and worker.alive(), worker.tail()
        time.sleep(0.25)
    time.sleep(1.0)  # a batch or two, had anything been fetched
    assert metric(port, 'billing_reads_received_total{channel="kafka"}') == 0
    assert totals(db_url) == expected
    worker.stop()

    # a replay under a new group (no stored offsets): every read arrives again, twice
    replay = Streams(streams.bootstrap, streams.reads, streams.dlq, unique("replay"))
    worker = start_worker(replay.env(db_url, tmp_path, BILLING_METRICS_PORT=str(port)))
    wait_for(db_url, f"{offsets_sql}'{replay.group}'", total, [worker])
    assert metric(port, 'billing_reads_duplicate_total{channel="kafka"}') == total
    assert totals(db_url) == expected


SURROGATE = '{"meter_id": "E00001", "value": "\udcff"}'.encode("utf-8", "surrogatepass")
POISON: list[tuple[str, bytes | None]] = [  # (start of the reason, message value)
    ("not JSON", b'{"meter_id": "E00001", "register": '),
    ("not JSON", b"\xff\xfe\x00garbage \xc3\x28"),  # not UTF-8
    ("not JSON", SURROGATE),
    ("read", b"[1, 2, 3]"),
    ("read", b'"just a string"'),
    ("value", b'{"meter_id": "E00001", "register": "1.8.1", "read_at": "2026-03-01T05:00:00Z",'
              b' "value": true, "unit": "kWh"}'),
    ("meter_id", b'{"meter_id": 17, "register": "1.8.1", "read_at": "2026-03-01T05:00:00Z",'
                 b' "value": "1.0", "unit": "kWh"}'),
    ("meter_id", b'{"meter_id": "E0\\u0000", "register": "1.8.1", "read_at": "2026-03-01T05Z",'
                 b' "value": "1.0", "unit": "kWh"}'),
    ("unknown meter NOPE", b'{"meter_id": "NOPE", "register": "1.8.1", "read_at":'
                           b' "2026-03-01T05:00:00Z", "value": "1.000", "unit": "kWh"}'),
    ("message too large", b'{"meter_id": "E00001", "pad": "' + b"x" * 40_000 + b'"}'),
    ("empty message", None),
    # decimal.Overflow escapes the read contract: the batch is retried message by message
    ("value|processing failed", b'{"meter_id": "E00001", "register": "1.8.1", "read_at":'
                                b' "2026-03-01T05:30:00Z", "value": "1e9999999", "unit": "kWh"}'),
]


def test_poison_messages_go_to_the_dead_letters_and_the_partition_goes_on(
    streams: Streams, db_url: str, tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    fleet = meters(1)
    with psycopg.connect(db_url) as conn:
        seed(conn, fleet)
    reads = hourly_reads(fleet, hours=len(POISON))
    good = as_messages(reads)
    sent: list[tuple[str, bytes | None]] = []  # good, poison, good, poison, …, good
    for k, poison in enumerate(POISON):
        sent += [("ok", good[k][1]), poison]
    sent.append(("ok", good[-1][1]))
    producer = Producer({"bootstrap.servers": streams.bootstrap, "enable.idempotence": True,
                         "acks": "all"})
    for _why, value in sent:  # all into one partition, in this order
        producer.produce(streams.reads, value=value, key=b"E00001", partition=2)
    assert producer.flush(30) == 0
    port = free_port()
    worker = start_worker(streams.env(db_url, tmp_path, BILLING_METRICS_PORT=str(port)))
    wait_for(db_url, "SELECT next_offset FROM stream_offsets WHERE partition = 2", len(sent),
             [worker])

    assert scalar(db_url, "SELECT count(*) FROM readings") == len(good)  # every good read
    first, last = (int(r["value"].replace(".", "")) for r in (reads[0], reads[-1]))
    assert scalar(db_url, "SELECT sum(quantity_milli) FROM consumption_intervals") == last - first
    with psycopg.connect(db_url) as conn:
        rejected = conn.execute("SELECT reason, payload FROM rejected_reads").fetchall()
    assert all("\x00" not in p for _r, p in rejected)

    letters = [decode_dead_letter(m.value())
               for m in consume_all(streams.bootstrap, streams.dlq, len(POISON))]
    letters.sort(key=lambda lt: int(str(lt["kafka_offset"])))
    poison_at = [(i, why, v) for i, (why, v) in enumerate(sent) if why != "ok"]
    assert [(lt["kafka_partition"], lt["kafka_offset"]) for lt in letters] == [
        (2, i) for i, *_ in poison_at
    ]
    for letter, (_i, why, value) in zip(letters, poison_at, strict=True):
        assert letter["kafka_topic"] == streams.reads and re.match(why, str(letter["reason"]))
        if value is None or not letter["truncated"]:
            assert letter["value"] == (value or b"")
            assert letter["original_size"] == len(value or b"")
        else:  # oversized: the first 64 KiB are kept, the size says how much there was
            assert value.startswith(cast(bytes, letter["value"]))
            assert letter["original_size"] == len(value)
    for letter in letters:  # every dead letter follows the topic's contract
        plain = {k: v for k, v in letter.items() if k not in ("key", "value")}
        validate("meter.reads.dlq.v1", plain)
    # each poison message exactly once in the table too, with the same reason
    assert sorted(r for r, _p in rejected) == sorted(str(lt["reason"]) for lt in letters)
    assert metric(port, 'billing_dead_letters_total{stage="worker"}') == len(POISON)
    assert metric(port, 'billing_reads_accepted_total{channel="kafka"}') == len(good)


BOOM = b'{"meter_id": "E00001", "boom": true}'


class FragileStore(KafkaBatchStore):
    """Fails any batch holding BOOM, as a bug triggered by one message would."""

    def _store(self, records: Sequence[Any], now: int) -> dict[int, int]:
        if any(value == BOOM for *_, value in records):
            raise RuntimeError("boom")
        return super()._store(records, now)


def test_a_message_that_breaks_its_batch_is_dead_lettered_alone(
    streams: Streams, db_url: str
) -> None:
    fleet = meters(1)
    with psycopg.connect(db_url) as conn:
        seed(conn, fleet)
    values = [v for _k, v in as_messages(hourly_reads(fleet, hours=3))]
    values.insert(2, BOOM)
    records = [(1, 40 + i, b"E00001", v) for i, v in enumerate(values)]
    dead_letters = DeadLetterProducer(streams.bootstrap, streams.dlq)
    with ConnectionPool(db_url, min_size=1, max_size=1) as pool:
        store = FragileStore(pool, dead_letters, topic=streams.reads,
                             consumer_group=streams.group)
        assert store.store(records, NOW) == {1: 45}
        assert store.stored_offsets([0, 1]) == {1: 45}
    assert scalar(db_url, "SELECT count(*) FROM readings") == 4
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT reason, payload FROM rejected_reads").fetchall() == [
            ("processing failed: RuntimeError", BOOM.decode())]
    letters = [decode_dead_letter(m.value())
               for m in consume_all(streams.bootstrap, streams.dlq, 1)]
    found = [(lt["kafka_partition"], lt["kafka_offset"], lt["value"]) for lt in letters]
    assert found == [(1, 42, BOOM)]
