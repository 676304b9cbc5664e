"""MQTT -> Kafka ingest gateway, QoS 1 end to end.

AMR gateways publish to ``amr/{gateway_id}/{meter_id}``; the broker's ACL lets each
gateway user write only below its own prefix, so the topic names the sender. A message
is one read object or a JSON array of them. Valid reads go to ``meter.reads.v1`` keyed
by meter id; anything wrong goes to the dead-letter topic with the original bytes and
the reason, and the gateway keeps going.

A message is acknowledged (manual PUBACK, in arrival order as MQTT requires) only after
Kafka acknowledged every record made from it. When a Kafka delivery fails the session
ends without that PUBACK and a new one starts after a backoff, so the broker redelivers
(at least once; the sink makes duplicates harmless). MQTT 5 because its Receive Maximum
allows many unacknowledged messages in flight (Mosquitto allows 20 to MQTT 3.1.1
clients); the session is persistent, so messages wait while the gateway restarts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from app.metrics import DEAD_LETTERS, READS_RECEIVED
from app.settings import Settings
from ingest import IngestError
from ingest.kafka_producer import ReadProducer
from schemas import SchemaError
from schemas.meter_reads import decode_read

log = logging.getLogger(__name__)

MAX_PAYLOAD = 1024 * 1024
MAX_READ = 64 * 1024  # one read object; larger ones could not become a Kafka record
_RECEIVED = READS_RECEIVED.labels(channel="mqtt")
_DEAD = DEAD_LETTERS.labels(stage="gateway")


@dataclass(frozen=True, slots=True)
class Routed:
    """What one MQTT message becomes: Kafka records and/or one dead letter (never neither)."""

    gateway_id: str
    records: list[tuple[str, bytes]]  # (meter_id, value) for meter.reads.v1
    reason: str | None  # set: the original payload goes to the DLQ with this reason
    received: int  # reads found in the payload, valid or not


def route_message(topic: str, payload: bytes, *, not_gateways: frozenset[str] = frozenset()
                  ) -> Routed:
    """Validate one message (pure). Valid reads are kept even when others are bad.
    `not_gateways`: broker users that are not AMR gateways (the ingest user itself): the
    ACL's ``pattern write amr/%u/#`` would let them publish under their own prefix too."""
    parts = topic.split("/")
    gateway_id = parts[1] if len(parts) > 1 and parts[1] else "mqtt"
    if len(parts) != 3 or parts[0] != "amr" or not parts[1] or not parts[2]:
        return Routed(gateway_id, [], f"topic: {topic[:200]!r} is not amr/<gateway>/<meter>", 0)
    if gateway_id in not_gateways:
        return Routed(gateway_id, [], f"topic: {gateway_id!r} is not an AMR gateway", 0)
    meter_id = parts[2]
    if len(payload) > MAX_PAYLOAD:
        return Routed(gateway_id, [], f"payload: {len(payload)} bytes, over 1 MiB", 0)
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as uexc:
            return Routed(
                gateway_id, [], f"payload: not UTF-8 ({uexc.reason} at byte {uexc.start})", 0
            )
        return Routed(gateway_id, [], f"payload: not JSON ({exc})", 0)
    items: list[Any]
    if isinstance(doc, dict):
        items = [doc]
    elif isinstance(doc, list):
        items = doc
        if not items:
            return Routed(gateway_id, [], "payload: empty array", 0)
    else:
        return Routed(gateway_id, [], "payload: must be a read object or an array of them", 0)
    records: list[tuple[str, bytes]] = []
    bad: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            bad.append(f"read[{i}]: must be a JSON object")
            continue
        try:
            read = decode_read(item)
        except SchemaError as exc:  # the message starts with the field's name
            bad.append(f"read[{i}].{exc}")
            continue
        if read.meter_id != meter_id:
            bad.append(f"read[{i}].meter_id: {read.meter_id!r} differs from the topic's meter")
            continue
        value = orjson.dumps({**item, "gateway_id": gateway_id})
        if len(value) > MAX_READ:
            bad.append(f"read[{i}]: {len(value)} bytes, over {MAX_READ} for one read")
            continue
        records.append((meter_id, value))
    reason = None
    if bad:
        more = f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""
        reason = "; ".join(bad[:5]) + more
    return Routed(gateway_id, records, reason, len(items))


@dataclass
class GatewayStats:
    messages: int = 0  # MQTT messages received (redeliveries included)
    redelivered: int = 0  # of which the broker marked as DUP
    reads: int = 0  # records produced to the reads topic
    dead_letters: int = 0
    acked: int = 0  # PUBACKs sent (after Kafka acknowledged)
    failed: int = 0  # messages whose Kafka delivery failed (left unacknowledged)
    sessions: int = 0  # successful MQTT connections


class _Pending:
    __slots__ = ("mid", "qos", "remaining", "ok", "failed")

    def __init__(self, mid: int, qos: int, remaining: int) -> None:
        self.mid, self.qos, self.remaining = mid, qos, remaining
        self.ok = self.failed = False


class MqttGateway:
    def __init__(
        self,
        settings: Settings,
        *,
        producer: ReadProducer | None = None,
        topics: Sequence[str] | None = None,
        client_id: str = "billing-mqtt-gateway",
        receive_maximum: int = 65535,
        session_expiry_s: int = 86400,
        delivery_timeout_s: float = 120.0,
        backoff_s: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        if settings.mqtt_password is None:
            raise IngestError("BILLING_MQTT_PASSWORD: the gateway needs the MQTT password")
        self._owns_producer = producer is None
        if producer is None:
            if not settings.kafka_bootstrap:
                raise IngestError("BILLING_KAFKA_BOOTSTRAP: the gateway needs Kafka")
            producer = ReadProducer(
                settings.kafka_bootstrap,
                topic=settings.kafka_reads_topic,
                dlq_topic=settings.kafka_dlq_topic,
                client_id=client_id,
                delivery_timeout_s=delivery_timeout_s,
            )
        self.settings = settings
        self.producer = producer
        self.topics = list(topics or [settings.mqtt_topic])
        self.client_id = client_id
        self.receive_maximum = receive_maximum
        self.session_expiry_s = session_expiry_s
        self.backoff_s = backoff_s
        self.stats = GatewayStats()
        self._not_gateways = frozenset({settings.mqtt_username})
        self.ready = threading.Event()  # set while connected and subscribed
        self._lock = threading.Lock()
        self._pending: deque[_Pending] = deque()
        self._client: mqtt.Client | None = None
        self._resync = False

    # --- MQTT callbacks (paho's network thread) ---------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
        where = f"{self.settings.mqtt_host}:{self.settings.mqtt_port}"
        if rc.is_failure:
            log.error("mqtt: %s refused the connection: %s; retrying", where, rc)
            return
        with self._lock:
            self._pending.clear()
        self.stats.sessions += 1
        log.info("mqtt: connected to %s (session present: %s)", where, flags.session_present)
        client.subscribe([(t, 1) for t in self.topics])

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        refused = [str(c) for c in codes if c.is_failure]
        if refused:
            log.error("mqtt: subscription to %s refused: %s", self.topics, refused)
        else:
            log.info("mqtt: subscribed to %s with QoS 1", self.topics)
            self.ready.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.ready.clear()
        with self._lock:
            self._pending.clear()  # unacknowledged messages come again in the next session
        if rc.is_failure:
            log.warning("mqtt: disconnected (%s); reconnecting with backoff", rc)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._handle(msg)
        except Exception:  # a bug must not kill paho's thread: no PUBACK, new session
            log.exception("gateway: message %d on %s not handled", msg.mid, msg.topic)
            self._resync = True

    def _handle(self, msg: mqtt.MQTTMessage) -> None:
        payload = bytes(msg.payload)  # paho types it bytes | bytearray; it is bytes in practice
        routed = route_message(msg.topic, payload, not_gateways=self._not_gateways)
        entry = _Pending(msg.mid, msg.qos, int(bool(routed.records)) + int(bool(routed.reason)))
        self.stats.messages += 1
        self.stats.redelivered += int(bool(msg.dup))
        _RECEIVED.inc(routed.received)
        with self._lock:
            self._pending.append(entry)
        done = partial(self._delivered, entry)
        if routed.records:
            self.stats.reads += len(routed.records)
            self.producer.produce_reads(routed.records, done)
        if routed.reason:
            self.stats.dead_letters += 1
            _DEAD.inc()
            log.info("dead letter from %s on %s: %s", routed.gateway_id, msg.topic, routed.reason)
            self.producer.produce_dead_letter(
                payload, source=routed.gateway_id, reason=routed.reason, topic=msg.topic,
                on_delivered=done,
            )  # fmt: skip

    # --- Kafka delivery (whichever thread polls the producer) -------------------
    def _delivered(self, entry: _Pending, ok: bool, error: str | None) -> None:
        with self._lock:
            if not ok:
                entry.failed = True
                self.stats.failed += 1
                if not self._resync:
                    log.error("kafka: delivery failed (%s); no PUBACK for %d", error, entry.mid)
                self._resync = True
                return
            entry.remaining -= 1
            entry.ok = entry.remaining <= 0 and not entry.failed
            client = self._client
            while self._pending and self._pending[0].ok and client is not None:
                head = self._pending.popleft()
                client.ack(head.mid, head.qos)
                self.stats.acked += 1

    # --- lifecycle ---------------------------------------------------------------
    def _connect(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, self.client_id, protocol=mqtt.MQTTv5, manual_ack=True
        )
        assert s.mqtt_password is not None
        client.username_pw_set(s.mqtt_username, s.mqtt_password.get_secret_value())
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.ReceiveMaximum = self.receive_maximum
        props.SessionExpiryInterval = self.session_expiry_s
        with self._lock:
            self._client = client
            self._resync = False
        client.connect_async(
            s.mqtt_host, s.mqtt_port, keepalive=30, clean_start=False, properties=props
        )
        client.loop_start()
        return client

    def run(self, stop: threading.Event, *, flush_timeout_s: float = 5.0) -> None:
        """Serve until ``stop`` is set; a failed Kafka delivery starts a new MQTT session."""
        backoff = self.backoff_s[0]
        last_log = time.monotonic()
        while not stop.is_set():
            client = self._connect()
            acked_before = self.stats.acked
            try:
                while not stop.is_set() and not self._resync:
                    self.producer.poll(0.1)
                    if time.monotonic() - last_log > 60:
                        last_log = time.monotonic()
                        log.info("gateway: %s", self.stats)
                if not self._resync:  # graceful stop: let pending records be acknowledged
                    self.producer.flush(flush_timeout_s)
            finally:
                self.ready.clear()
                client.disconnect()
                client.loop_stop()
                with self._lock:
                    self._client = None
                    self._pending.clear()
            if self.stats.acked > acked_before:
                backoff = self.backoff_s[0]
            if self._resync and not stop.is_set():
                log.warning("gateway: new MQTT session (redelivery) in %.1f s", backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, self.backoff_s[1])
        if self._owns_producer:
            self.producer.close(flush_timeout_s)
        log.info("gateway stopped: %s", self.stats)


def run_gateway(settings: Settings, stop: threading.Event) -> None:
    """Entry point of the gateway process (metrics on settings.metrics_port if set)."""
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr=settings.host)
    MqttGateway(settings).run(stop)
