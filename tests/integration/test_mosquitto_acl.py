"""Who may do what on the real Mosquitto broker (infra/mosquitto/acl and password file).

A gateway's identity is the prefix of its topic (`amr/<gateway>/...`); the gateway relies
on the broker to make that prefix trustworthy, so these tests guard that assumption.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import paho.mqtt.client as mqtt
import pytest

V311, V5 = mqtt.MQTTProtocolVersion.MQTTv311, mqtt.MQTTProtocolVersion.MQTTv5


def password(creds: dict[str, str], user: str) -> str:
    return creds[f"BILLING_MQTT_PASSWORD_{user.upper().replace('-', '_')}"]


class Session:
    """A connected client that records what it receives and the PUBACK reasons."""

    def __init__(
        self,
        creds: dict[str, str],
        user: str | None,
        pwd: str | None,
        proto: mqtt.MQTTProtocolVersion,
    ):
        self.received: list[tuple[str, bytes]] = []
        self.pubacks: dict[int, str] = {}
        self.connack: str | None = None
        self._connected = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-acl-{uuid.uuid4().hex}", protocol=proto
        )
        if user is not None:
            self.client.username_pw_set(user, pwd)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, m: self.received.append((m.topic, bytes(m.payload)))
        self.client.on_publish = self._on_publish
        self.client.connect(creds["BILLING_MQTT_HOST"], int(creds["BILLING_MQTT_PORT"]))
        self.client.loop_start()
        assert self._connected.wait(10), "no CONNACK"

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        self.connack = str(rc)
        self._connected.set()

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, rc: object, _p: object) -> None:
        self.pubacks[mid] = str(rc)

    def subscribe(self, topic: str) -> None:
        granted = threading.Event()
        self.client.on_subscribe = lambda *_a: granted.set()
        self.client.subscribe(topic, qos=1)
        assert granted.wait(10)

    def publish(self, topic: str, payload: bytes) -> str:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        return self.pubacks.get(info.mid, "?")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def session(
    creds: dict[str, str],
    user: str | None,
    pwd: str | None = None,
    proto: mqtt.MQTTProtocolVersion = V311,
) -> Iterator[Session]:
    if user is not None and pwd is None:
        pwd = password(creds, user)
    s = Session(creds, user, pwd, proto)
    try:
        yield s
    finally:
        s.close()


def settle(s: Session, expected: int, timeout: float = 1.5) -> None:
    """Wait until `expected` messages arrived, then a little longer for unexpected ones."""
    deadline = time.monotonic() + 5
    while len(s.received) < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(timeout)


@pytest.mark.parametrize("proto", [V311, V5])
def test_a_gateway_cannot_publish_under_another_gateways_prefix(
    mqtt_credentials: dict[str, str], proto: mqtt.MQTTProtocolVersion
) -> None:
    topic = f"amr/gw-002/E-{uuid.uuid4().hex[:8]}"
    with (
        session(mqtt_credentials, "ingest", proto=V5) as ingest,
        session(mqtt_credentials, "gw-001", proto=proto) as gw1,
        session(mqtt_credentials, "gw-002") as gw2,
    ):
        ingest.subscribe(topic)
        reason = gw1.publish(topic, b"forged by gw-001")
        # MQTT 5 says so in the PUBACK; MQTT 3.1.1 cannot, the broker just drops it
        assert reason == ("Not authorized" if proto == V5 else "Success")
        gw2.publish(topic, b"from gw-002")  # the owner: proves the subscription works
        settle(ingest, 1)
    assert ingest.received == [(topic, b"from gw-002")]


def test_a_gateway_publishes_under_its_own_prefix_only_and_reads_nothing(
    mqtt_credentials: dict[str, str],
) -> None:
    u = uuid.uuid4().hex[:8]
    own = f"amr/gw-001/E-{u}"
    with (
        session(mqtt_credentials, "ingest") as ingest,
        session(mqtt_credentials, "gw-001", proto=V5) as gw1,
        session(mqtt_credentials, "gw-002") as gw2,
    ):
        ingest.subscribe(f"amr/+/E-{u}")
        gw2.subscribe(own)  # another gateway must not see gw-001's reads
        assert gw1.publish(own, b"own") == "Success"
        assert gw1.publish(f"amr/E-{u}", b"no gateway level") == "Not authorized"
        assert gw1.publish(f"other/gw-001/E-{u}", b"outside amr") == "Not authorized"
        settle(ingest, 1)
    assert ingest.received == [(own, b"own")]
    assert gw2.received == []


def test_the_ingest_user_cannot_publish_as_a_gateway(mqtt_credentials: dict[str, str]) -> None:
    topic = f"amr/gw-001/E-{uuid.uuid4().hex[:8]}"
    with (
        session(mqtt_credentials, "ingest") as reader,
        session(mqtt_credentials, "ingest", proto=V5) as ingest,
    ):
        reader.subscribe(topic)
        assert ingest.publish(topic, b"x") == "Not authorized"
        settle(reader, 0, 1.0)
    assert reader.received == []


@pytest.mark.parametrize("proto", [V311, V5])
def test_anonymous_client_is_refused(
    mqtt_credentials: dict[str, str], proto: mqtt.MQTTProtocolVersion
) -> None:
    with session(mqtt_credentials, None, proto=proto) as anon:
        assert anon.connack == "Not authorized"
        assert not anon.client.is_connected()


@pytest.mark.parametrize("user", ["gw-001", "ingest", "gw-999"])
def test_wrong_password_is_refused(mqtt_credentials: dict[str, str], user: str) -> None:
    with session(mqtt_credentials, user, pwd="not-the-password", proto=V5) as s:
        assert s.connack in {"Not authorized", "Bad user name or password"}
        assert not s.client.is_connected()
