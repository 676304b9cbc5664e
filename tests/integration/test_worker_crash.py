"""``kill -9`` of a Kafka worker in the middle of the stream loses nothing and doubles nothing.

Two worker processes share the four partitions; one is killed while batches are being
stored, more reads arrive, a replacement starts. Every read must end up stored exactly
once: the totals equal those of the same reads pushed in-process into a second database.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from tests.integration.test_kafka_worker import (
    Streams,
    WorkerProcess,
    as_messages,
    hourly_reads,
    meters,
    other_db_url,  # noqa: F401 (fixture)
    produce,
    reference_totals,
    scalar,
    seed,
    start_worker,  # noqa: F401 (fixture)
    streams,  # noqa: F401 (fixture)
    totals,
    wait_for,
)

COUNT = "SELECT count(*) FROM readings"


def partitions_per_member(bootstrap: str, group: str, topic: str) -> list[list[int]]:
    """The reads partitions of each member of a stable group ([] while it rebalances)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    group_info = admin.describe_consumer_groups([group])[group].result(10)
    if group_info.state != ConsumerGroupState.STABLE:
        return []
    return [sorted(tp.partition for tp in m.assignment.topic_partitions if tp.topic == topic)
            for m in group_info.members]


def test_kill_9_mid_stream_then_restart_stores_every_read_once(
    streams: Streams, db_url: str, other_db_url: str, tmp_path: Path,  # noqa: F811
    start_worker: Callable[..., WorkerProcess],  # noqa: F811
) -> None:
    fleet = meters(100)
    reads = hourly_reads(fleet, hours=14 * 24)
    for url in (db_url, other_db_url):
        with psycopg.connect(url) as conn:
            seed(conn, fleet)
    messages = as_messages(reads)
    half = len(messages) // 2

    env = streams.env(db_url, tmp_path)
    doomed, survivor = start_worker(env), start_worker(env)
    deadline = time.monotonic() + 60
    while sorted(map(len, partitions_per_member(streams.bootstrap, streams.group,
                                                streams.reads))) != [2, 2]:
        assert time.monotonic() < deadline and doomed.alive() and survivor.alive(), (
            doomed.tail() + survivor.tail())
        time.sleep(0.2)
    produce(streams.bootstrap, streams.reads, messages[:half])
    # both workers have stored batches (every partition has an offset), and more is coming
    while (scalar(db_url, "SELECT count(*) FROM stream_offsets") < 4
           or scalar(db_url, COUNT) < half // 4):
        assert time.monotonic() < deadline and doomed.alive(), doomed.tail()
        time.sleep(0.02)
    doomed.kill()  # SIGKILL: no revoke, no commit, maybe a transaction cut short
    at_kill = scalar(db_url, COUNT)
    assert at_kill < half, "the kill came too late to prove anything"

    produce(streams.bootstrap, streams.reads, messages[half:])
    replacement = start_worker(env)
    took = wait_for(db_url, COUNT, len(reads), [survivor, replacement], timeout=120)
    wait_for(db_url, "SELECT sum(next_offset) FROM stream_offsets", len(reads),
             [survivor, replacement])
    print(f"\n{len(reads)} reads, killed at {at_kill}, all stored {took:.1f}s after restart")

    expected = reference_totals(other_db_url, reads)
    assert expected[0] == len(reads) and expected[8] == 0
    assert totals(db_url) == expected  # counts and sums of reads, pieces, days; no rejects
