"""Meter simulator over MQTT, for demos and load: a month of AMR reads in seconds.

Each gateway (its own MQTT user) publishes for its meters to ``amr/{gateway}/{meter}``.
Electricity meters have a day register 1.8.1 (07-22 winter time, weekdays) and a night
register 1.8.2; water meters one register 8.0 in m³. Consumption follows a day/night
shape with noise. A message carries ``reads_per_message`` consecutive read instants of
one meter (a JSON array). On request some messages are sent twice (duplicates), some
are held back and sent later (late reads) and some garbage messages are added.

`plan_messages` is pure (time is in the plan); `publish_month` does the I/O.
"""

from __future__ import annotations

import argparse
import threading
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np
import orjson
import paho.mqtt.client as mqtt

from ingest import IngestError

# Relative consumption by hour of the winter-time clock: night low, morning and evening peaks.
_SHAPE = np.array([0.5, 0.4, 0.4, 0.4, 0.4, 0.5, 0.8, 1.3, 1.3, 1.0, 0.9, 0.9,
                   1.0, 1.0, 0.9, 0.9, 1.0, 1.3, 1.7, 1.8, 1.7, 1.5, 1.1, 0.7])  # fmt: skip
GARBAGE_KINDS = ("not_json", "not_utf8", "wrong_type", "meter_mismatch", "not_object")


@dataclass(frozen=True)
class MonthPlan:
    start: datetime  # aware; the first read is one interval after it
    days: int = 30
    meters_per_gateway: int = 100
    read_minutes: int = 15
    reads_per_message: int = 4  # read instants per message
    duplicate_share: float = 0.0  # messages sent twice
    late_share: float = 0.0  # messages held back and sent `late_by` messages later
    garbage_share: float = 0.0  # an extra bad message after this share of messages
    late_by: int | None = None  # messages later; default: three rounds of all meters
    meter_prefix: str = "SIM"
    # Real meters instead of invented ones: gateway -> meter ids ("V-..." = water), and
    # where each (meter, register) stands now (thousandths), so the reads continue it.
    meters: Mapping[str, Sequence[str]] | None = None
    start_milli: Mapping[tuple[str, str], int] | None = None
    seed: int = 7


class Outgoing(NamedTuple):
    topic: str
    payload: bytes
    kind: str  # reads | duplicate | late | garbage
    reads: int


@dataclass
class PublishResult:
    messages: int = 0
    reads: int = 0  # valid reads published, duplicates included
    distinct_reads: int = 0
    duplicates: int = 0  # messages sent a second time
    duplicate_reads: int = 0
    late: int = 0  # messages sent after newer ones
    garbage: int = 0  # bad messages (they belong in the dead-letter topic)
    seconds: float = 0.0
    by_gateway: dict[str, int] = field(default_factory=dict)  # messages per gateway
    meter_ids: list[str] = field(default_factory=list)

    def add(self, out: Outgoing) -> None:
        self.messages += 1
        self.reads += out.reads
        if out.kind == "duplicate":
            self.duplicates += 1
            self.duplicate_reads += out.reads
        elif out.kind == "garbage":
            self.garbage += 1
        else:
            self.distinct_reads += out.reads
            self.late += out.kind == "late"


def meter_ids(gateway: str, plan: MonthPlan) -> list[str]:
    """The plan's meters, or invented ones: every third a water meter (V-), else E-."""
    if plan.meters is not None:
        return list(plan.meters.get(gateway, ()))
    return [
        f"{'V' if k % 3 == 2 else 'E'}-{plan.meter_prefix}-{gateway}-{k:05d}"
        for k in range(plan.meters_per_gateway)
    ]


def _registers(
    meter: str, stamps: np.ndarray, rng: np.random.Generator, plan: MonthPlan
) -> list[tuple[str, str, np.ndarray]]:
    """(register, unit, cumulative values in thousandths) for one meter."""
    step_h = (stamps[1] - stamps[0]) / 3600 if len(stamps) > 1 else 0.25
    winter = stamps + 3600  # the TOU windows are fixed in UTC+1
    hour = (winter // 3600) % 24
    sunday = ((winter // 86400) + 3) % 7 == 6  # 1970-01-01 was a Thursday
    noise = rng.lognormal(0.0, 0.25, len(stamps))
    if meter.startswith("V-"):
        use = rng.lognormal(np.log(15.0), 0.4) * step_h * _SHAPE[hour] * noise  # litres
        start = _start(plan, meter, "8.0", int(rng.integers(0, 5_000_000)))
        return [("8.0", "m3", start + np.cumsum(np.floor(use)).astype(np.int64))]
    use = rng.lognormal(np.log(450.0), 0.5) * step_h * _SHAPE[hour] * noise  # Wh
    day = (hour >= 7) & (hour < 22) & ~sunday
    out = []
    for register, mask in (("1.8.1", day), ("1.8.2", ~day)):
        start = _start(plan, meter, register, int(rng.integers(0, 50_000_000)))
        values = start + np.cumsum(np.floor(np.where(mask, use, 0.0))).astype(np.int64)
        out.append((register, "kWh", values))
    return out


def _start(plan: MonthPlan, meter: str, register: str, default: int) -> int:
    return (plan.start_milli or {}).get((meter, register), default)


def _garbage(kind: str, gateway: str, meter: str, other: str, at: str) -> bytes:
    good = {"meter_id": meter, "register": "1.8.1", "read_at": at, "value": "1.000", "unit": "kWh"}
    if kind == "not_json":
        return b'{"meter_id": "' + meter.encode() + b'", "value": '
    if kind == "not_utf8":
        return b'{"meter_id": "\xff\xfe", "value": "1"}'
    if kind == "wrong_type":
        return orjson.dumps({**good, "value": True, "register": 181})
    if kind == "meter_mismatch":
        return orjson.dumps({**good, "meter_id": other})
    return orjson.dumps([1, 2, 3])


def plan_messages(gateway: str, plan: MonthPlan) -> Iterator[Outgoing]:
    """The messages of one gateway in publishing order (deterministic for a seed)."""
    rng = np.random.default_rng([plan.seed, zlib.crc32(gateway.encode())])
    step = plan.read_minutes * 60
    first = int(plan.start.timestamp()) + step
    n = plan.days * 86400 // step
    stamps = first + step * np.arange(n, dtype=np.int64)
    iso = [datetime.fromtimestamp(int(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for t in stamps]
    meters = meter_ids(gateway, plan)
    regs = {m: _registers(m, stamps, rng, plan) for m in meters}
    late_by = plan.late_by if plan.late_by is not None else 3 * len(meters) + 1
    held: list[tuple[int, Outgoing]] = []
    sent = 0
    per = plan.reads_per_message
    for g in range(0, n, per):
        for meter in meters:
            topic = f"amr/{gateway}/{meter}"
            body = [
                {"meter_id": meter, "register": r, "read_at": iso[i],
                 "value": f"{int(v[i]) // 1000}.{int(v[i]) % 1000:03d}", "unit": u, "source": "amr"}
                for i in range(g, min(g + per, n))
                for r, u, v in regs[meter]
            ]  # fmt: skip
            out = Outgoing(topic, orjson.dumps(body), "reads", len(body))
            if rng.random() < plan.late_share:
                held.append((sent + late_by, out._replace(kind="late")))
            else:
                yield out
                sent += 1
                if rng.random() < plan.duplicate_share:
                    yield out._replace(kind="duplicate")
            if rng.random() < plan.garbage_share:
                kind = GARBAGE_KINDS[int(rng.integers(len(GARBAGE_KINDS)))]
                other = meters[(meters.index(meter) + 1) % len(meters)] + "-x"
                yield Outgoing(topic, _garbage(kind, gateway, meter, other, iso[g]), "garbage", 0)
            while held and held[0][0] <= sent:
                yield held.pop(0)[1]
                sent += 1
    for _, out in held:
        yield out


def _publish_gateway(
    host: str, port: int, user: str, password: str, plan: MonthPlan, result: PublishResult,
    max_rate: float | None,
) -> None:  # fmt: skip
    connected = threading.Event()
    refused: list[str] = []
    acked = threading.Semaphore(0)

    def on_connect(
        _c: mqtt.Client, _u: object, _f: object, rc: mqtt.ReasonCode, _p: object
    ) -> None:
        if rc.is_failure:
            refused.append(str(rc))
        connected.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sim-{user}-{time.time_ns()}")
    client.username_pw_set(user, password)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_connect = on_connect
    client.on_publish = lambda *_args: acked.release()
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        if not connected.wait(10) or refused:
            raise IngestError(f"mqtt: {user} could not connect: {refused or 'timeout'}")
        begin = time.monotonic()
        for out in plan_messages(user, plan):
            client.publish(out.topic, out.payload, qos=1)
            result.add(out)
            if max_rate and result.messages % 100 == 0:
                ahead = result.messages / max_rate - (time.monotonic() - begin)
                if ahead > 0:
                    time.sleep(ahead)
        for _ in range(result.messages):  # every PUBACK, so nothing is left in paho's queue
            if not acked.acquire(timeout=60):
                raise IngestError(f"mqtt: {user}: broker stopped acknowledging publishes")
    finally:
        client.disconnect()
        client.loop_stop()


def publish_month(
    host: str,
    port: int,
    credentials: Mapping[str, str],
    plan: MonthPlan,
    *,
    gateways: Sequence[str] | None = None,
    max_rate: float | None = None,
) -> PublishResult:
    """Publish the plan for every gateway in parallel; returns what was sent.

    ``credentials`` maps MQTT user (= gateway id) to password; ``max_rate`` caps the
    messages per second of each gateway.
    """
    names = list(gateways or plan.meters or credentials)
    parts = {gw: PublishResult() for gw in names}
    errors: list[BaseException] = []

    def work(gw: str) -> None:
        try:
            _publish_gateway(host, port, gw, credentials[gw], plan, parts[gw], max_rate)
        except BaseException as exc:  # reported after join
            errors.append(exc)

    begin = time.monotonic()
    threads = [threading.Thread(target=work, args=(gw,), name=f"sim-{gw}") for gw in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    total = PublishResult(seconds=time.monotonic() - begin)
    for gw, part in parts.items():
        for name in ("messages", "reads", "distinct_reads", "duplicates", "duplicate_reads",
                     "late", "garbage"):  # fmt: skip
            setattr(total, name, getattr(total, name) + getattr(part, name))
        total.by_gateway[gw] = part.messages
        total.meter_ids += meter_ids(gw, plan)
    return total


def load_credentials(path: Path) -> tuple[str, int, dict[str, str]]:
    """Host, port and {gateway user: password} from infra's credentials.env."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip().strip("'\"")
    users = env.get("BILLING_MQTT_GATEWAY_USERS", "").split()
    pwd = {u: env[f"BILLING_MQTT_PASSWORD_{u.upper().replace('-', '_')}"] for u in users}
    return env.get("BILLING_MQTT_HOST", "127.0.0.1"), int(env.get("BILLING_MQTT_PORT", 11883)), pwd


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Publish simulated AMR reads over MQTT")
    ap.add_argument("--credentials", type=Path, default=Path("var/mosquitto/credentials.env"))
    ap.add_argument("--start", default="2026-03-01T00:00:00+01:00")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--meters", type=int, default=100, help="meters per gateway")
    ap.add_argument("--minutes", type=int, default=15, choices=(15, 60))
    ap.add_argument("--per-message", type=int, default=4)
    ap.add_argument("--duplicates", type=float, default=0.0)
    ap.add_argument("--late", type=float, default=0.0)
    ap.add_argument("--garbage", type=float, default=0.0)
    ap.add_argument("--rate", type=float, default=None, help="max messages/s per gateway")
    a = ap.parse_args(argv)
    host, port, creds = load_credentials(a.credentials)
    plan = MonthPlan(datetime.fromisoformat(a.start), a.days, a.meters, a.minutes,
                     a.per_message, a.duplicates, a.late, a.garbage)  # fmt: skip
    r = publish_month(host, port, creds, plan, max_rate=a.rate)
    print(f"{r.messages} messages, {r.reads} reads ({r.duplicate_reads} duplicated), "
          f"{r.late} late, {r.garbage} garbage in {r.seconds:.1f} s "
          f"({r.reads / max(r.seconds, 1e-9):.0f} reads/s)")  # fmt: skip


if __name__ == "__main__":
    main()
