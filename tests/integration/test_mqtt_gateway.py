"""The MQTT -> Kafka gateway on the real Mosquitto and Kafka brokers.

Every test uses its own meter ids, Kafka topics, consumer group and MQTT client id,
because other people's tests may use the same brokers at the same time.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from confluent_kafka import Consumer, Message
from prometheus_client import REGISTRY
from pydantic import SecretStr

from app.settings import Settings
from ingest import IngestError
from ingest.kafka_producer import DLQ_ORIGINAL_MAX, ReadProducer
from ingest.mqtt_gateway import MqttGateway
from ingest.mqtt_publisher import MonthPlan, meter_ids, plan_messages, publish_month


def wait_for(cond: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def password(creds: dict[str, str], user: str) -> str:
    return creds[f"BILLING_MQTT_PASSWORD_{user.upper().replace('-', '_')}"]


def gateway_settings(kafka: str, creds: dict[str, str], u: str) -> Settings:
    return Settings(
        kafka_bootstrap=kafka,
        kafka_reads_topic=f"test.reads.{u}",
        kafka_dlq_topic=f"test.dlq.{u}",
        mqtt_host=creds["BILLING_MQTT_HOST"],
        mqtt_port=int(creds["BILLING_MQTT_PORT"]),
        mqtt_username="ingest",
        mqtt_password=SecretStr(password(creds, "ingest")),
    )


@contextmanager
def running(gateway: MqttGateway) -> Iterator[MqttGateway]:
    stop = threading.Event()
    thread = threading.Thread(target=gateway.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert gateway.ready.wait(15), "the gateway did not connect and subscribe"
        yield gateway
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive()


def publish(creds: dict[str, str], user: str, messages: list[tuple[str, bytes]]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex}")
    client.username_pw_set(user, password(creds, user))
    client.connect(creds["BILLING_MQTT_HOST"], int(creds["BILLING_MQTT_PORT"]))
    client.loop_start()
    try:
        assert wait_for(client.is_connected, 10)
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def consume(kafka: str, topic: str, expected: int, timeout: float = 30.0) -> list[Message]:
    """Everything in `topic` from the start; waits a little longer to catch extras."""
    consumer = Consumer(
        {
            "bootstrap.servers": kafka,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    quiet_until = None
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                out.append(msg)
            if len(out) >= expected:
                quiet_until = quiet_until or time.monotonic() + 1.0
                if time.monotonic() > quiet_until:
                    break
    finally:
        consumer.close()
    return out


def metric(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_valid_reads_reach_kafka_keyed_by_meter(
    kafka_bootstrap: str, mqtt_credentials: dict[str, str]
) -> None:
    u = uuid.uuid4().hex[:8]
    plan = MonthPlan(
        datetime.fromisoformat("2026-03-01T00:00:00+01:00"),
        days=1, meters_per_gateway=3, read_minutes=60, reads_per_message=6, meter_prefix=u,
    )  # fmt: skip
    meters = meter_ids("gw-001", plan)
    single = orjson.dumps(
        {"meter_id": meters[0], "register": "1.8.1", "read_at": "2026-03-02T00:00:00+01:00",
         "value": "99999.000", "unit": "kWh"}
    )  # fmt: skip
    settings = gateway_settings(kafka_bootstrap, mqtt_credentials, u)
    gw = MqttGateway(
        settings, topics=[f"amr/gw-001/{m}" for m in meters], client_id=f"t-gw-{u}",
        session_expiry_s=60,
    )  # fmt: skip
    received_before = metric("billing_reads_received_total", {"channel": "mqtt"})
    with running(gw):
        sent = publish_month(
            mqtt_credentials["BILLING_MQTT_HOST"], int(mqtt_credentials["BILLING_MQTT_PORT"]),
            {"gw-001": password(mqtt_credentials, "gw-001")}, plan,
        )  # fmt: skip
        publish(mqtt_credentials, "gw-001", [(f"amr/gw-001/{meters[0]}", single)])
        assert wait_for(lambda: gw.stats.acked == sent.messages + 1)
    assert sent.messages == 3 * 4 and sent.reads == (2 + 2 + 1) * 24
    assert (gw.stats.dead_letters, gw.stats.failed, gw.stats.reads) == (0, 0, sent.reads + 1)
    assert metric("billing_reads_received_total", {"channel": "mqtt"}) - received_before == (
        sent.reads + 1
    )

    records = consume(kafka_bootstrap, settings.kafka_reads_topic, sent.reads + 1)
    assert len(records) == sent.reads + 1
    published = {
        (r["meter_id"], r["register"], r["read_at"], r["value"])
        for m in plan_messages("gw-001", plan)
        for r in orjson.loads(m.payload)
    }
    got = set()
    partitions: dict[str, set[int]] = {}
    for msg in records:
        doc = orjson.loads(msg.value() or b"")
        assert msg.key() == doc["meter_id"].encode()
        assert doc["gateway_id"] == "gw-001"
        partitions.setdefault(doc["meter_id"], set()).add(msg.partition() or 0)
        got.add((doc["meter_id"], doc["register"], doc["read_at"], doc["value"]))
    assert got == published | {(meters[0], "1.8.1", "2026-03-02T00:00:00+01:00", "99999.000")}
    assert all(len(p) == 1 for p in partitions.values())  # one meter, one partition
    # within a partition, each register's reads arrive in the order they were read
    last: dict[tuple[str, str], str] = {}
    for msg in records:
        doc = orjson.loads(msg.value() or b"")
        key = (doc["meter_id"], doc["register"])
        at = datetime.fromisoformat(doc["read_at"]).isoformat()
        assert at > last.get(key, ""), key
        last[key] = at


def test_poison_messages_go_to_the_dlq_and_good_ones_still_flow(
    kafka_bootstrap: str, mqtt_credentials: dict[str, str]
) -> None:
    u = uuid.uuid4().hex[:8]
    meter = f"E-{u}"
    topic = f"amr/gw-001/{meter}"

    def read(**over: Any) -> dict[str, Any]:
        doc = {"meter_id": meter, "register": "1.8.1", "read_at": "2026-03-01T00:15:00Z",
               "value": "10.000", "unit": "kWh", "source": "amr"}  # fmt: skip
        return {**doc, **over}

    good1 = orjson.dumps(read())
    good2 = orjson.dumps(read(read_at="2026-03-01T00:45:00Z", value="10.500"))
    mixed = orjson.dumps([read(read_at="2026-03-01T00:30:00Z", value="10.250"), read(value=-5)])
    oversized = b"[" + b" " * (1024 * 1024) + b"]"
    poison = [  # (topic, payload, what the reason must say)
        (topic, b'{"meter_id": "' + meter.encode() + b'", "value": ', "not JSON"),
        (topic, b'{"meter_id": "\xc3\x28"}', "not UTF-8"),
        (topic, orjson.dumps(read(value=True, register=181)), "read[0].register:"),
        (topic, oversized, "over 1 MiB"),
        (topic, orjson.dumps(read(meter_id=f"E-{u}-other")), "differs from the topic's meter"),
        (topic, mixed, "read[1].value:"),
        (f"{topic}/extra", good1, "topic:"),
    ]
    settings = gateway_settings(kafka_bootstrap, mqtt_credentials, u)
    gw = MqttGateway(settings, topics=[f"{topic}/#"], client_id=f"t-gw-{u}", session_expiry_s=60)
    dead_before = metric("billing_dead_letters_total", {"stage": "gateway"})
    messages = [(topic, good1)] + [(t, p) for t, p, _ in poison] + [(topic, good2)]
    with running(gw):
        publish(mqtt_credentials, "gw-001", messages)
        assert wait_for(lambda: gw.stats.acked == len(messages))
    assert gw.stats.dead_letters == len(poison) and gw.stats.failed == 0
    assert metric("billing_dead_letters_total", {"stage": "gateway"}) - dead_before == len(poison)

    reads = consume(kafka_bootstrap, settings.kafka_reads_topic, 3)
    values = [orjson.loads(m.value() or b"")["value"] for m in reads]
    assert values == ["10.000", "10.250", "10.500"]  # same meter, same partition, in order

    letters = consume(kafka_bootstrap, settings.kafka_dlq_topic, len(poison))
    assert len(letters) == len(poison)
    docs = [orjson.loads(m.value() or b"") for m in letters]
    assert all(m.key() == b"gw-001" for m in letters)
    by_topic_and_reason = list(zip(docs, poison, strict=True))  # one partition: key gw-001
    for doc, (ptopic, payload, reason) in by_topic_and_reason:
        assert doc["source"] == "gw-001" and doc["mqtt_topic"] == ptopic
        assert reason in doc["reason"], (reason, doc["reason"])
        original = base64.b64decode(doc["original_b64"])
        if payload is oversized:
            assert doc["truncated"] is True and doc["original_size"] == len(payload)
            assert original == payload[:DLQ_ORIGINAL_MAX]
        else:
            assert original == payload and "truncated" not in doc
        assert datetime.fromisoformat(doc["received_at"]).tzinfo is not None


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_mqtt_ack_only_after_kafka_ack_and_redelivery_after_restart(
    kafka_bootstrap: str, mqtt_credentials: dict[str, str]
) -> None:
    u = uuid.uuid4().hex[:8]
    meter = f"E-{u}"
    topic = f"amr/gw-001/{meter}"
    payloads = [
        orjson.dumps({"meter_id": meter, "register": "1.8.1", "value": v, "unit": "kWh",
                      "read_at": f"2026-03-01T0{h}:00:00Z"})
        for h, v in ((1, "1.000"), (2, "2.000"))
    ]  # fmt: skip
    settings = gateway_settings(kafka_bootstrap, mqtt_credentials, u)

    def gateway(bootstrap: str) -> MqttGateway:
        producer = ReadProducer(
            bootstrap, topic=settings.kafka_reads_topic, dlq_topic=settings.kafka_dlq_topic,
            client_id=f"t-{u}", delivery_timeout_s=2.0,
        )  # fmt: skip
        return MqttGateway(
            settings, producer=producer, topics=[topic], client_id=f"t-gw-{u}",
            session_expiry_s=120, backoff_s=(0.3, 0.3),
        )  # fmt: skip

    # Kafka unreachable: nothing is acknowledged; the gateway ends its session and the
    # broker delivers the same messages again (DUP) in the next one.
    broken = gateway(f"127.0.0.1:{dead_port()}")
    with running(broken):
        publish(mqtt_credentials, "gw-001", [(topic, p) for p in payloads])
        assert wait_for(lambda: broken.stats.redelivered >= 2, 30)
        assert broken.stats.failed >= 2 and broken.stats.sessions >= 2
    assert broken.stats.acked == 0
    broken.producer.close(0)

    # The gateway restarts with a working Kafka: the broker still holds both messages.
    good = gateway(kafka_bootstrap)
    with running(good):
        assert wait_for(lambda: good.stats.acked == 2)
    good.producer.close()
    assert good.stats.messages == 2 and good.stats.redelivered == 2
    records = consume(kafka_bootstrap, settings.kafka_reads_topic, 2)
    assert sorted(orjson.loads(m.value() or b"")["value"] for m in records) == ["1.000", "2.000"]

    # ...and they were really acknowledged: a third start of the session gets nothing.
    again = gateway(kafka_bootstrap)
    with running(again):
        time.sleep(1.5)
    again.producer.close()
    assert again.stats.messages == 0


def test_produce_read_objects_blocks_until_kafka_acknowledged(kafka_bootstrap: str) -> None:
    """The call HTTP ingest and `billing load` use when Kafka is configured."""
    u = uuid.uuid4().hex[:8]
    topic = f"test.reads.{u}"
    objs = [
        {"meter_id": f"E-{u}-{i % 3}", "register": "1.8.1", "unit": "kWh", "value": f"{i}.000",
         "read_at": f"2026-03-01T00:{i:02d}:00Z"}
        for i in range(30)
    ]  # fmt: skip
    producer = ReadProducer(kafka_bootstrap, topic=topic, dlq_topic=f"test.dlq.{u}", client_id=u)
    assert producer.produce_read_objects(objs) == 30
    assert len(producer) == 0  # nothing left in flight: the call waited for the acks
    with pytest.raises(IngestError, match=r"read\[1\]\.meter_id"):
        producer.produce_read_objects([objs[0], {"value": "1"}])  # nothing of it is sent
    producer.close()
    records = consume(kafka_bootstrap, topic, 30)
    assert sorted(m.value() or b"" for m in records) == sorted(orjson.dumps(o) for o in objs)
    assert all(m.key() == orjson.loads(m.value() or b"")["meter_id"].encode() for m in records)

    dead = ReadProducer(
        f"127.0.0.1:{dead_port()}", topic=topic, dlq_topic=f"test.dlq.{u}", client_id=u,
        delivery_timeout_s=1.0,
    )  # fmt: skip
    with pytest.raises(IngestError, match="kafka: reads not stored"):
        dead.produce_read_objects(objs[:2])
    dead.close(0)
