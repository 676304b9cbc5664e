"""MQTT payload routing, the dead-letter record and the MQTT meter simulator's plan (pure)."""

from __future__ import annotations

import base64
from collections import Counter
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from pydantic import SecretStr

from app.settings import Settings
from ingest import IngestError
from ingest.kafka_producer import DLQ_ORIGINAL_MAX, dead_letter_record
from ingest.mqtt_gateway import MAX_PAYLOAD, MqttGateway, route_message
from ingest.mqtt_publisher import (
    GARBAGE_KINDS,
    MonthPlan,
    Outgoing,
    PublishResult,
    load_credentials,
    meter_ids,
    plan_messages,
)

TOPIC = "amr/gw-001/E-100001"


def read(meter: str = "E-100001", **over: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "meter_id": meter,
        "register": "1.8.1",
        "read_at": "2026-03-01T00:15:00+01:00",
        "value": "1234.567",
        "unit": "kWh",
        "source": "amr",
    }
    doc.update(over)
    return doc


def test_single_read_object_becomes_one_record_with_the_gateway() -> None:
    r = route_message(TOPIC, orjson.dumps(read(note="kept", gateway_id="gw-999")))
    assert r.reason is None and r.gateway_id == "gw-001" and r.received == 1
    [(key, value)] = r.records
    assert key == "E-100001"
    doc = orjson.loads(value)
    # the original object, extra fields included; the gateway comes from the topic (ACL-checked)
    assert doc == {**read(note="kept"), "gateway_id": "gw-001"}


def test_array_of_reads_keeps_order() -> None:
    reads = [read(read_at=f"2026-03-01T0{h}:00:00Z", value=str(h)) for h in range(5)]
    r = route_message(TOPIC, orjson.dumps(reads))
    assert r.reason is None and r.received == 5
    assert [orjson.loads(v)["read_at"] for _, v in r.records] == [x["read_at"] for x in reads]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"meter_id": "E-100001", "value": ', "payload: not JSON"),
        (b'{"meter_id": "\xff\xfe"}', "payload: not UTF-8"),
        (orjson.dumps(read(value=True)), "read[0].value:"),
        (orjson.dumps(read(register=181)), "read[0].register:"),
        (orjson.dumps(read(read_at="2026-03-01 00:15")), "read[0].read_at:"),
        (orjson.dumps(read(unit="MWh")), "read[0].unit:"),
        (
            orjson.dumps(read(meter="E-100002")),
            "read[0].meter_id: 'E-100002' differs from the topic",
        ),
        (orjson.dumps(read(note="x" * 70_000)), "read[0]: 70"),
        (orjson.dumps([1, 2]), "read[0]: must be a JSON object"),
        (b"42", "payload: must be a read object or an array"),
        (b"null", "payload: must be a read object or an array"),
        (b"[]", "payload: empty array"),
        (b" " * (MAX_PAYLOAD + 1), "payload: 1048577 bytes, over 1 MiB"),
    ],
)
def test_bad_payloads_are_dead_letters_with_a_reason(payload: bytes, reason: str) -> None:
    r = route_message(TOPIC, payload)
    assert r.records == []
    assert r.reason is not None and reason in r.reason
    assert r.gateway_id == "gw-001"


def test_a_payload_of_exactly_1_mib_is_still_read() -> None:
    body = orjson.dumps(read())
    payload = body + b" " * (MAX_PAYLOAD - len(body))
    assert len(payload) == MAX_PAYLOAD
    assert route_message(TOPIC, payload).reason is None


def test_mixed_array_keeps_valid_reads_and_names_the_bad_ones() -> None:
    reads = [read(), read(value="-1"), read(read_at="2026-03-01T01:00:00Z"), read("E-9")]
    r = route_message(TOPIC, orjson.dumps(reads))
    assert len(r.records) == 2 and r.received == 4
    assert r.reason is not None
    assert r.reason.startswith("read[1].value:") and "read[3].meter_id:" in r.reason


def test_many_bad_reads_are_summarised() -> None:
    r = route_message(TOPIC, orjson.dumps([read(unit="x")] * 12))
    assert r.reason is not None and r.reason.count("read[") == 5 and r.reason.endswith("(+7 more)")


@pytest.mark.parametrize(
    ("topic", "gateway"),
    [
        ("amr/gw-001", "gw-001"),
        ("amr/gw-001/E-1/extra", "gw-001"),
        ("amr/gw-001/", "gw-001"),
        ("amr//E-1", "mqtt"),
        ("meters/gw-001/E-1", "gw-001"),
    ],
)
def test_topic_not_of_the_shape(topic: str, gateway: str) -> None:
    r = route_message(topic, orjson.dumps(read("E-1")))
    assert r.records == [] and r.reason is not None and r.reason.startswith("topic:")
    assert r.gateway_id == gateway


def test_the_ingest_user_is_not_a_gateway() -> None:
    # the broker's `pattern write amr/%u/#` also lets the ingest user publish under
    # amr/ingest/: the gateway refuses such reads as not coming from an AMR gateway
    payload = orjson.dumps(read("E-1"))
    r = route_message("amr/ingest/E-1", payload, not_gateways=frozenset({"ingest"}))
    assert r.records == [] and r.reason == "topic: 'ingest' is not an AMR gateway"
    assert route_message("amr/gw-001/E-1", payload,
                         not_gateways=frozenset({"ingest"})).records


def test_dead_letter_record_carries_the_original_bytes() -> None:
    original = b'{"meter_id": "\xff'
    doc = orjson.loads(
        dead_letter_record(
            original, source="gw-001", reason="payload: not UTF-8", topic=TOPIC, received_at=0
        )
    )
    assert base64.b64decode(doc["original_b64"]) == original
    assert doc["source"] == "gw-001" and doc["mqtt_topic"] == TOPIC
    assert doc["reason"] == "payload: not UTF-8"
    assert doc["received_at"] == "1970-01-01T00:00:00Z"
    assert "truncated" not in doc


def test_dead_letter_record_truncates_what_kafka_could_not_hold() -> None:
    original = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes
    value = dead_letter_record(original, source="gw-1", reason="r", topic=None, received_at=1.5)
    doc = orjson.loads(value)
    assert len(value) < 1_000_000
    assert base64.b64decode(doc["original_b64"]) == original[:DLQ_ORIGINAL_MAX]
    assert doc["truncated"] is True and doc["original_size"] == len(original)
    assert doc["mqtt_topic"] is None


START = datetime.fromisoformat("2026-03-01T00:00:00+01:00")


def test_plan_without_noise_is_every_read_once_and_routes_cleanly() -> None:
    plan = MonthPlan(START, days=2, meters_per_gateway=6, read_minutes=60, reads_per_message=5)
    msgs = list(plan_messages("gw-001", plan))
    # 48 instants in groups of 5 -> 10 messages per meter
    assert len(msgs) == 6 * 10 and {m.kind for m in msgs} == {"reads"}
    seen: Counter[tuple[str, str]] = Counter()
    first: dict[tuple[str, str], int] = {}
    last: dict[tuple[str, str], tuple[str, int]] = {}
    for m in msgs:
        routed = route_message(m.topic, m.payload)
        assert routed.reason is None and len(routed.records) == m.reads
        for _, value in routed.records:
            r = orjson.loads(value)
            key = (r["meter_id"], r["register"])
            milli = int(r["value"].replace(".", ""))
            if key in last:  # time moves forward, registers never go back
                assert r["read_at"] > last[key][0] and milli >= last[key][1]
                winter_hour = (int(r["read_at"][11:13]) + 1) % 24
                if r["register"] == "1.8.1" and not 7 <= winter_hour < 22:
                    assert milli == last[key][1], "the day register moved at night"
            first.setdefault(key, milli)
            last[key] = (r["read_at"], milli)
            seen[key] += 1
    electricity = [m for m in meter_ids("gw-001", plan) if m.startswith("E-")]
    assert len(electricity) == 4
    assert all(n == 48 for n in seen.values()) and len(seen) == 4 * 2 + 2 * 1
    for meter in meter_ids("gw-001", plan):  # believable use over two days
        used = sum(last[k][1] - first[k] for k in last if k[0] == meter)
        low, high = (1_000, 200_000) if meter.startswith("E-") else (50, 10_000)
        assert low < used < high, (meter, used)


def test_plan_is_deterministic_and_noise_is_as_asked() -> None:
    plan = MonthPlan(
        START, days=5, meters_per_gateway=10, duplicate_share=0.1, late_share=0.05,
        garbage_share=0.05, seed=3,
    )  # fmt: skip
    a = list(plan_messages("gw-002", plan))
    assert a == list(plan_messages("gw-002", plan))
    assert a != list(plan_messages("gw-001", plan))
    kinds = Counter(m.kind for m in a)
    base = 10 * (5 * 96 // 4)
    assert kinds["reads"] + kinds["late"] == base
    assert 0.05 * base < kinds["duplicate"] < 0.15 * base
    assert 0.02 * base < kinds["late"] < 0.08 * base
    assert 0.02 * base < kinds["garbage"] < 0.08 * base
    for i, m in enumerate(a):
        if m.kind == "duplicate":
            assert a[i - 1].payload == m.payload
        if m.kind == "garbage":
            assert route_message(m.topic, m.payload).reason is not None
    # a late message arrives after a newer message of the same meter
    newest: dict[str, str] = {}
    overtaken = 0
    for m in a:
        if m.kind in ("reads", "late"):
            first = orjson.loads(m.payload)[0]["read_at"]
            overtaken += m.kind == "late" and newest.get(m.topic, "") > first
            newest[m.topic] = max(newest.get(m.topic, ""), first)
    assert overtaken == kinds["late"]


def test_garbage_covers_every_kind() -> None:
    plan = MonthPlan(START, days=3, meters_per_gateway=10, garbage_share=0.5)
    markers = ("not JSON", "not UTF-8", "register:", "differs from the topic", "a JSON object")
    found: Counter[str] = Counter()
    for m in plan_messages("gw-001", plan):
        if m.kind == "garbage":
            reason = route_message(m.topic, m.payload).reason or ""
            found.update(x for x in markers if x in reason)
    assert len(GARBAGE_KINDS) == len(markers) and set(found) == set(markers)


def test_publish_result_counts() -> None:
    r = PublishResult()
    for kind, n in (("reads", 8), ("duplicate", 8), ("late", 4), ("garbage", 0)):
        r.add(Outgoing("amr/g/m", b"", kind, n))
    assert (r.messages, r.reads, r.distinct_reads, r.duplicate_reads) == (4, 20, 12, 8)
    assert (r.duplicates, r.late, r.garbage) == (1, 1, 1)


def test_load_credentials(tmp_path: Path) -> None:
    env = tmp_path / "credentials.env"
    env.write_text(
        "# comment\nBILLING_MQTT_HOST=127.0.0.1\nBILLING_MQTT_PORT=11883\n"
        'BILLING_MQTT_GATEWAY_USERS="gw-001 gw-002"\nBILLING_MQTT_PASSWORD_GW_001=a\n'
        "BILLING_MQTT_PASSWORD_GW_002='b'\nBILLING_MQTT_PASSWORD_INGEST=c\n"
    )
    assert load_credentials(env) == ("127.0.0.1", 11883, {"gw-001": "a", "gw-002": "b"})


def test_plan_with_real_meters_continues_their_registers() -> None:
    plan = MonthPlan(
        START, days=1, read_minutes=60, reads_per_message=24,
        meters={"gw-002": ["E-100001", "V-100001"]},
        start_milli={("E-100001", "1.8.1"): 5_000_000, ("V-100001", "8.0"): 123_456},
    )  # fmt: skip
    assert meter_ids("gw-002", plan) == ["E-100001", "V-100001"] and meter_ids("gw-001", plan) == []
    msgs = list(plan_messages("gw-002", plan))
    assert [m.topic for m in msgs] == ["amr/gw-002/E-100001", "amr/gw-002/V-100001"]
    reads = [r for m in msgs for r in orjson.loads(m.payload)]
    assert {(r["meter_id"], r["register"], r["unit"]) for r in reads} == {
        ("E-100001", "1.8.1", "kWh"), ("E-100001", "1.8.2", "kWh"), ("V-100001", "8.0", "m3"),
    }  # fmt: skip
    day = [r["value"] for r in reads if r["register"] == "1.8.1"]
    water = [r["value"] for r in reads if r["register"] == "8.0"]
    assert 5000.0 <= float(day[0]) < 5010.0 and 123.456 <= float(water[0]) < 124.0


def test_gateway_refuses_to_start_without_its_settings() -> None:
    with pytest.raises(IngestError, match="BILLING_MQTT_PASSWORD"):
        MqttGateway(Settings(mqtt_password=None, kafka_bootstrap="127.0.0.1:9"))
    with pytest.raises(IngestError, match="BILLING_KAFKA_BOOTSTRAP"):
        MqttGateway(Settings(mqtt_password=SecretStr("x"), kafka_bootstrap=None))
