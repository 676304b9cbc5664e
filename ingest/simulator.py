"""Meter simulator: live AMR reads for the demo, posted to the HTTP ingest like a gateway.

Each register advances at its own average rate (taken from the meter's recent history),
scaled by time of day and a little noise, and reads every `read_every_s` seconds.
`due_reads` is pure (time is an argument); `run_simulator` is the I/O loop.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import numpy as np
import psycopg

from schemas.meter_reads import MeterRead, encode_read

log = logging.getLogger(__name__)


@dataclass
class SimulatedRegister:
    meter_id: str
    register: str
    unit: str
    value_milli: int
    last_at: int
    rate_milli_per_hour: float  # average advance; a float is fine for a simulation
    next_due: int = 0


def _diurnal(register: str, hour_utc: int) -> float:
    """Day registers (1.8.1) run in the day, night registers (1.8.2) at night; water by day."""
    local = (hour_utc + 1) % 24
    day = 7 <= local < 22
    if register == "1.8.2":
        return 0.4 if day else 2.0
    if register == "1.8.1":
        return 1.4 if day else 0.2
    return 1.3 if day else 0.4


def due_reads(
    registers: Iterable[SimulatedRegister], now: int, read_every_s: int, rng: np.random.Generator
) -> list[MeterRead]:
    """Advance every register whose next read is due and return the reads."""
    out: list[MeterRead] = []
    hour = datetime.fromtimestamp(now, UTC).hour
    for reg in registers:
        if now < reg.next_due or now <= reg.last_at:
            continue
        hours = (now - reg.last_at) / 3600
        factor = _diurnal(reg.register, hour) if hours < 6 else 1.0
        noise = float(rng.lognormal(0.0, 0.15))
        advance = max(0, math.floor(reg.rate_milli_per_hour * hours * factor * noise))
        reg.value_milli += advance
        reg.last_at = now
        reg.next_due = now + read_every_s
        out.append(MeterRead(reg.meter_id, reg.register, now, reg.value_milli, reg.unit, "amr"))
    return out


_REGISTERS_SQL = """
SELECT s.meter_id, s.register, CASE m.service WHEN 'water' THEN 'm3' ELSE 'kWh' END,
       s.last_value_milli, extract(epoch FROM s.last_read_at)::bigint,
       coalesce(h.quantity / nullif(h.hours, 0), 50.0)
FROM meter_state s
JOIN meters m USING (meter_id)
LEFT JOIN LATERAL (
    SELECT sum(quantity_milli)::float8 AS quantity,
           sum(extract(epoch FROM end_at - start_at))::float8 / 3600 AS hours
    FROM consumption_intervals c
    WHERE c.meter_id = s.meter_id AND c.register = s.register
      AND c.end_at > s.last_read_at - interval '62 days') h ON true
"""


def load_registers(conn: psycopg.Connection) -> list[SimulatedRegister]:
    return [SimulatedRegister(*row) for row in conn.execute(_REGISTERS_SQL)]


def run_simulator(
    registers: list[SimulatedRegister],
    *,
    url: str,
    token: str,
    interval_s: float,
    read_every_s: int,
    stop: threading.Event,
    seed: int = 11,
) -> None:
    """Post due reads every `interval_s` seconds until `stop` is set."""
    rng = np.random.default_rng(seed)
    now = int(datetime.now(UTC).timestamp())
    for k, reg in enumerate(registers):  # spread the meters over the read period
        reg.next_due = now + (k * 7919) % read_every_s
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
        while not stop.is_set():
            now = int(datetime.now(UTC).timestamp())
            reads = due_reads(registers, now, read_every_s, rng)
            for start in range(0, len(reads), 5000):
                chunk = [encode_read(r) for r in reads[start : start + 5000]]
                try:
                    resp = client.post(url, json=chunk)
                    body = resp.json()
                    log.info(
                        "simulator sent %d reads: %d accepted, %d rejected",
                        len(chunk),
                        body.get("accepted", 0),
                        body.get("rejected", 0),
                    )
                except (httpx.HTTPError, ValueError) as exc:
                    log.warning("simulator could not send reads: %s", exc)
            stop.wait(interval_s)
