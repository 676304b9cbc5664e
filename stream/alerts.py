"""Meter anomaly alerts in PostgreSQL (``meter_alerts``) and on topic ``meter.alerts.v1``.

``evaluate_batch`` runs in the pipeline's transaction after the sink wrote a batch: it
looks only at what the batch can have changed (nights completed, days completed, flags,
the export register) with a few set-based queries, asks the pure rules of
``stream.anomalies``, then opens / refreshes / auto-closes alerts in two statements.
``sweep_communication_loss`` is the periodic check for AMR meters that went silent.

At most one alert per (meter, kind) is active (open or acknowledged): a condition seen
again refreshes ``last_seen_at``. The gauge ``billing_meter_alerts_open{kind}`` counts the
alerts in state ``open`` (an acknowledged alert has a person on it).
Events are published when a producer is given (before the caller commits: a consumer
keeps the newest event of an ``alert_id``, and the row in PostgreSQL is the truth).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import orjson
import psycopg

from app.metrics import METER_ALERTS_OPEN
from rating.calendar import local_day_of, local_midnights
from schemas.contracts import ALERTS, validate
from schemas.meter_reads import MeterRead
from stream import anomalies as rules
from stream.vee import Interval, MeterInfo

KINDS = ("leak", "reverse_energy", "tamper", "zero_drop", "communication_loss",
         "high_consumption")  # fmt: skip
_RETURNING = """alert_id, meter_id, register, metering_point_id, kind, state,
    extract(epoch FROM opened_at)::bigint, extract(epoch FROM closed_at)::bigint, detail"""


class AlertProducer(Protocol):
    """Anything with confluent_kafka.Producer's ``produce(topic, value=…, key=…)``."""

    def produce(self, topic: str, value: bytes, key: str) -> None: ...


def evaluate_batch(
    conn: psycopg.Connection,
    *,
    reads: Sequence[tuple[MeterRead, Any]],
    intervals: Sequence[Interval],
    meters: Mapping[str, MeterInfo],
    now: int,
    producer: AlertProducer | None = None,
    th: rules.Thresholds = rules.DEFAULT,
) -> list[dict[str, Any]]:
    """Alerts opened or closed by one stored batch (accepted reads with their original
    payload, and their intervals); returns the ``meter.alerts.v1`` events."""
    if not reads and not intervals:
        return []
    active = refresh_gauge(conn)  # kinds with active alerts: closing the others is moot
    findings = rules.flag_findings(reads, meters)
    findings += rules.reverse_register_findings(intervals, meters, th)
    findings += _leak_findings(conn, intervals, meters, th)
    findings += _daily_findings(conn, intervals, meters, th)
    if "communication_loss" in active:  # any read of a meter ends its communication loss
        findings += [
            rules.Finding(m, "communication_loss", rules.CLOSE, detail={"text": "reads again"})
            for m in sorted({r.meter_id for r, _ in reads})
        ]
    findings = [f for f in findings if f.decision == rules.OPEN or f.kind in active]
    events = apply_findings(conn, findings, now)
    if events:
        refresh_gauge(conn)
    publish(producer, events)
    return events


def sweep_communication_loss(
    conn: psycopg.Connection,
    now: int,
    *,
    producer: AlertProducer | None = None,
    th: rules.Thresholds = rules.DEFAULT,
) -> list[dict[str, Any]]:
    """Open communication loss for installed meters whose newest read is an AMR read older
    than ``th.silent_hours``; close it for every other meter. Run it periodically."""
    rows = conn.execute(
        """WITH active AS (
             SELECT meter_id, metering_point_id FROM meter_installations
             WHERE installed_at <= to_timestamp(%(now)s)
               AND (removed_at IS NULL OR removed_at > to_timestamp(%(now)s))),
           last AS (
             SELECT DISTINCT ON (s.meter_id) s.meter_id, s.register, s.last_read_at
             FROM meter_state s JOIN active a USING (meter_id)
             ORDER BY s.meter_id, s.last_read_at DESC)
           SELECT l.meter_id, a.metering_point_id, extract(epoch FROM l.last_read_at)::bigint
           FROM last l JOIN active a USING (meter_id)
           JOIN readings r ON r.meter_id = l.meter_id AND r.register = l.register
                          AND r.read_at = l.last_read_at
           WHERE r.source = 'amr'""",
        {"now": now},
    ).fetchall()
    last = np.fromiter((r[2] for r in rows), np.int64, len(rows))
    mask = rules.silent(last, now, th)
    findings = [
        rules.Finding(m, "communication_loss", rules.OPEN, mp, None,
                {"text": f"no read for {(now - t) // 3600} h (limit {th.silent_hours} h)",
                 "last_read_at": rules.iso(t)})
        for (m, mp, t), quiet in zip(rows, mask.tolist(), strict=True) if quiet
    ]  # fmt: skip
    silent_ids = [f.meter_id for f in findings]
    closing = conn.execute(
        """SELECT meter_id FROM meter_alerts WHERE kind = 'communication_loss'
           AND state <> 'closed' AND NOT (meter_id = ANY(%s))""",
        (silent_ids,),
    ).fetchall()
    findings += [
        rules.Finding(m, "communication_loss", rules.CLOSE, detail={"text": "meter heard again"})
        for (m,) in closing
    ]
    events = apply_findings(conn, findings, now)
    refresh_gauge(conn)
    publish(producer, events)
    return events


def apply_findings(
    conn: psycopg.Connection, findings: Sequence[rules.Finding], now: int
) -> list[dict[str, Any]]:
    """Open/refresh and auto-close in two set-based statements; events of what changed."""
    merged: dict[tuple[str, str], rules.Finding] = {}
    for f in findings:
        if f.decision is None:
            continue
        key = (f.meter_id, f.kind)
        old = merged.get(key)
        if old is None or (f.decision == rules.OPEN and old.decision != rules.OPEN):
            merged[key] = f
    opens = [f for f in merged.values() if f.decision == rules.OPEN]
    closes = [f for f in merged.values() if f.decision == rules.CLOSE]
    events: list[dict[str, Any]] = []
    if opens:
        rows = conn.execute(
            f"""INSERT INTO meter_alerts AS a (meter_id, metering_point_id, register, kind,
                    opened_at, last_seen_at, detail)
                SELECT m, mp, g, k, to_timestamp(%s), to_timestamp(%s), d::jsonb
                FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[])
                     AS x(m, mp, g, k, d)
                ON CONFLICT (meter_id, kind) WHERE state <> 'closed' DO UPDATE
                SET last_seen_at = greatest(a.last_seen_at, excluded.last_seen_at),
                    detail = excluded.detail
                RETURNING (xmax = 0), {_RETURNING}""",
            (now, now, [f.meter_id for f in opens], [f.metering_point_id for f in opens],
             [f.register for f in opens], [f.kind for f in opens],
             [orjson.dumps(f.detail).decode() for f in opens]),
        ).fetchall()  # fmt: skip
        events += [_event(r[1:]) for r in rows if r[0]]
    if closes:
        rows = conn.execute(
            f"""UPDATE meter_alerts a SET state = 'closed', closed_at = to_timestamp(%s),
                    closed_by = 'auto', detail = a.detail || jsonb_build_object('closed', x.d)
                FROM unnest(%s::text[], %s::text[], %s::text[]) AS x(m, k, d)
                WHERE a.meter_id = x.m AND a.kind = x.k AND a.state <> 'closed'
                RETURNING {_RETURNING.replace("alert_id", "a.alert_id")}""",
            (now, [f.meter_id for f in closes], [f.kind for f in closes],
             [str(f.detail.get("text", "condition ended")) for f in closes]),
        ).fetchall()  # fmt: skip
        events += [_event(r) for r in rows]
    return events


def refresh_gauge(conn: psycopg.Connection) -> set[str]:
    """Set the gauge from the table; return the kinds that have active alerts."""
    counts = dict.fromkeys(KINDS, 0)
    active = set()
    for kind, n in conn.execute(  # the predicate of the partial index meter_alerts_one_active
        """SELECT kind, count(*) FILTER (WHERE state = 'open') FROM meter_alerts
           WHERE state <> 'closed' GROUP BY kind"""
    ):
        counts[kind] = n
        active.add(kind)
    for kind, n in counts.items():
        METER_ALERTS_OPEN.labels(kind).set(n)
    return active


def publish(producer: AlertProducer | None, events: Sequence[dict[str, Any]]) -> None:
    """Each event checked against the contract, keyed by meter id; nothing without producer."""
    if producer is None:
        return
    for ev in events:
        validate(ALERTS, ev)
        producer.produce(ALERTS, value=orjson.dumps(ev), key=ev["meter_id"])


def _event(row: Sequence[Any]) -> dict[str, Any]:
    alert_id, meter_id, register, mp, kind, state, opened, closed, detail = row
    text = str(detail.get("text", kind))
    if "closed" in detail:
        text = f"{text}; closed: {detail['closed']}"
    return {
        "alert_id": str(alert_id), "meter_id": meter_id, "register": register,
        "metering_point_id": mp, "kind": kind, "state": state, "opened_at": rules.iso(opened),
        "closed_at": rules.iso(closed) if closed is not None else None, "detail": text[:2000],
    }  # fmt: skip


# --- what a batch can have changed ---------------------------------------------------------


def _leak_findings(
    conn: psycopg.Connection,
    intervals: Sequence[Interval],
    meters: Mapping[str, MeterInfo],
    th: rules.Thresholds,
) -> list[rules.Finding]:
    water = [  # daily or monthly reads cannot tell a night minimum: no query for them
        iv
        for iv in intervals
        if meters[iv.meter_id].service == "water"
        and iv.end_at - iv.start_at <= th.night_max_interval_s
    ]
    if not water:
        return []
    start = np.fromiter((iv.start_at for iv in water), np.int64, len(water))
    end = np.fromiter((iv.end_at for iv in water), np.int64, len(water))
    newest: dict[str, int] = {}
    for iv, night in zip(water, rules.completed_nights(start, end, th).tolist(), strict=True):
        if night >= 0 and night > newest.get(iv.meter_id, -1):
            newest[iv.meter_id] = night
    if not newest:
        return []
    ids = sorted(newest)
    lo = [rules.night_window(newest[m] - th.leak_nights + 1, th)[0] for m in ids]
    hi = [rules.night_window(newest[m], th)[1] for m in ids]
    rows = conn.execute(
        """SELECT c.meter_id, extract(epoch FROM c.start_at)::bigint,
                  extract(epoch FROM c.end_at)::bigint, c.quantity_milli
           FROM consumption_intervals c
           JOIN unnest(%s::text[], %s::bigint[], %s::bigint[]) AS k(m, lo, hi)
             ON c.meter_id = k.m AND c.end_at > to_timestamp(k.lo)
            AND c.start_at < to_timestamp(k.hi)""",
        (ids, lo, hi),
    ).fetchall()
    by_meter: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for m, s, e, q in rows:
        by_meter[m].append((s, e, q))
    out = []
    for m in ids:
        arr = np.array(by_meter.get(m, []), dtype=np.int64).reshape(-1, 3)
        nights = range(newest[m] - th.leak_nights + 1, newest[m] + 1)
        flows = rules.night_min_flows(arr[:, 0], arr[:, 1], arr[:, 2], nights, th)
        decision = rules.leak_decision(flows, th)
        shown = ", ".join("?" if np.isnan(f) else f"{f:.1f}" for f in flows.tolist())
        out.append(rules.Finding(m, "leak", decision, meters[m].metering_point_id,
                           meters[m].registers[0],
                           {"text": f"minimum night flow {shown} l/h (limit "
                                    f"{th.leak_flow_l_per_h:g} l/h)"}))  # fmt: skip
    return out


def _daily_findings(
    conn: psycopg.Connection,
    intervals: Sequence[Interval],
    meters: Mapping[str, MeterInfo],
    th: rules.Thresholds,
) -> list[rules.Finding]:
    """Drop to zero and consumption far above history, on the metering point's daily
    consumption (``1.8.*`` registers for electricity), for the days the batch completed."""
    if not intervals:
        return []
    start = np.fromiter((iv.start_at for iv in intervals), np.int64, len(intervals))
    end = np.fromiter((iv.end_at for iv in intervals), np.int64, len(intervals))
    end_day = local_day_of(end)
    # the newest day an interval completed: the one before end's day, if that midnight is in it
    completes = local_midnights()[end_day] > start
    last: dict[tuple[str, str], tuple[int, str]] = {}
    for k, iv in enumerate(intervals):
        meter = meters[iv.meter_id]
        if not completes[k] or meter.metering_point_id is None:
            continue
        if meter.service == "electricity" and not iv.register.startswith("1.8."):
            continue
        key = (meter.metering_point_id, meter.service)
        day = int(end_day[k]) - 1
        if day >= last.get(key, (-1, ""))[0]:
            last[key] = (day, iv.meter_id)
    if not last:
        return []
    keys = sorted(last)
    span = max(th.high_history_days, th.zero_days + th.zero_baseline_days) + 1
    rows = conn.execute(
        """SELECT d.metering_point_id, d.service, d.local_day - DATE '2000-01-01',
                  sum(d.quantity_milli)::bigint
           FROM daily_consumption d
           JOIN unnest(%s::text[], %s::text[], %s::int[]) AS k(mp, svc, last)
             ON d.metering_point_id = k.mp AND d.service = k.svc
            AND d.local_day BETWEEN DATE '2000-01-01' + k.last - %s AND DATE '2000-01-01' + k.last
           WHERE d.service = 'water' OR d.register LIKE '1.8.%%'
           GROUP BY 1, 2, 3""",
        ([k[0] for k in keys], [k[1] for k in keys], [last[k][0] for k in keys], span - 1),
    ).fetchall()
    series = {k: np.full(span, rules.MISSING, dtype=np.int64) for k in keys}
    for mp, svc, day, qty in rows:
        series[(mp, svc)][day - last[(mp, svc)][0] + span - 1] = qty
    out = []
    for key in keys:
        daily, meter_id = series[key], last[key][1]
        zero = rules.zero_drop_decision(daily, th)
        out.append(rules.Finding(meter_id, "zero_drop", zero, key[0], None,
                           {"text": f"no consumption for {th.zero_days} days after steady use"
                            if zero == rules.OPEN else "consumption again"}))  # fmt: skip
        high = rules.high_consumption_decision(daily, th)
        median = rules.median_of_history(daily, th)
        out.append(rules.Finding(meter_id, "high_consumption", high, key[0], None,
                           {"text": f"day {daily[-1] / 1000:g} against a median of "
                                    f"{median / 1000:g} (limit ×{th.high_factor:g})",
                            "day_milli": int(daily[-1]), "median_milli": median}))  # fmt: skip
    return out
