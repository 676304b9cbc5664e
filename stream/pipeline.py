"""One batch of reads through the whole chain, in one transaction.

decode → load master data and lock per-register state → validate and flag (pure; the
daily history the spike rule needs is loaded set-based) → split the intervals at local
midnight (pure) → price them (pure) → write through the sink. Reads from the future are
quarantined (`quarantined_reads`), not rejected: `release_quarantined` re-feeds them.
The same function serves HTTP ingest, file import, the simulator and the Kafka workers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg

from rating.catalog import Catalog
from schemas import SchemaError
from schemas.meter_reads import MeterRead, decode_read
from stream.alerts import evaluate_batch
from stream.directory import load_daily_medians, load_meters, lock_state
from stream.rate import rate_intervals
from stream.sink_postgres import ConsumedOffset, QuarantinedRow, RejectedRow, write_batch
from stream.vee import (
    ACCEPTED,
    CHECK_HISTORY,
    DUPLICATE,
    QUARANTINED,
    REJECTED,
    HistoryKey,
    validate_batch,
)
from stream.vee_rules import DEFAULT_CONFIG, VeeConfig, is_demand_register


@dataclass(frozen=True, slots=True)
class ReadOutcome:
    status: str  # accepted | duplicate | rejected | quarantined
    reason: str | None = None
    read_at: int | None = None  # epoch seconds, set on accepted reads (latency metrics)


@dataclass
class BatchResult:
    outcomes: list[ReadOutcome]
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    quarantined: int = 0
    pieces: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # meter.alerts.v1 events


def load_catalog(conn: psycopg.Connection) -> Catalog:
    docs = [row[0] for row in conn.execute("SELECT document FROM tariff_versions")]
    return Catalog.from_documents(docs)


def process_reads(
    conn: psycopg.Connection,
    payloads: Sequence[Any],
    *,
    channel: str,
    now: int,
    catalog: Catalog | None = None,
    offsets: Sequence[ConsumedOffset] = (),
    rejected_before: Sequence[RejectedRow] = (),
    config: VeeConfig = DEFAULT_CONFIG,
    reject_spikes: bool = False,
) -> BatchResult:
    """Validate, rate and store a batch of read objects (decoded JSON). Commits nothing:
    the caller owns the transaction (``with conn.transaction():``).

    ``rejected_before``: input the caller already refused (bytes that were not JSON, …),
    stored in ``rejected_reads`` in the same transaction; not counted in the result.
    ``reject_spikes``: refuse a read whose advance is a spike instead of storing it with
    the flag (the portal's self-reads: the customer is asked to check the digits)."""
    outcomes: list[ReadOutcome | None] = [None] * len(payloads)
    rejected: list[RejectedRow] = list(rejected_before)
    reads: list[MeterRead] = []
    positions: list[int] = []
    for i, obj in enumerate(payloads):
        try:
            reads.append(decode_read(obj))
            positions.append(i)
        except SchemaError as exc:
            outcomes[i] = ReadOutcome(REJECTED, str(exc))
            rejected.append(rejected_row(obj, str(exc)))

    meter_ids = {r.meter_id for r in reads}
    meters = load_meters(conn, meter_ids) if meter_ids else {}
    state = lock_state(conn, meter_ids) if meter_ids else {}

    def history(keys: Mapping[HistoryKey, int]) -> Mapping[HistoryKey, tuple[int, int]]:
        return load_daily_medians(conn, keys, config.spike_history_days)

    verdict = validate_batch(
        reads, meters, state, now, history, config=config, reject_spikes=reject_spikes
    )
    _resolve_history(conn, reads, verdict.status, verdict.reason)

    stored_reads = []
    quarantined: list[QuarantinedRow] = []
    accepted_reads: list[tuple[MeterRead, Any]] = []
    for k, read in enumerate(reads):
        i = positions[k]
        st = verdict.status[k]
        if st == ACCEPTED:
            stored_reads.append(
                (
                    read.meter_id,
                    read.register,
                    read.read_at,
                    read.value_milli,
                    read.unit,
                    read.source,
                    _array(verdict.flags[k]),
                )
            )
            outcomes[i] = ReadOutcome(ACCEPTED, None, read.read_at)
            accepted_reads.append((read, payloads[i]))
        elif st == DUPLICATE:
            outcomes[i] = ReadOutcome(DUPLICATE)
        elif st == QUARANTINED:
            why = verdict.reason[k] or "quarantined"
            outcomes[i] = ReadOutcome(QUARANTINED, why)
            quarantined.append(
                QuarantinedRow(
                    read.meter_id,
                    read.register,
                    read.read_at,
                    read.value_milli,
                    why,
                    rejected_row(payloads[i], why).payload,
                )
            )
        else:
            why = verdict.reason[k] or "rejected"
            outcomes[i] = ReadOutcome(REJECTED, why)
            rejected.append(rejected_row(payloads[i], why))

    rated = rate_intervals(verdict.intervals, meters, catalog or load_catalog(conn))
    new_state = [
        (m, r, s.last_read_at, s.last_value_milli, s.value_since)
        for (m, r), s in verdict.new_state.items()
    ]
    write_batch(
        conn,
        received_at=now,
        channel=channel,
        readings=stored_reads,
        intervals=rated.interval_rows() if rated else (),
        daily_rows=rated.daily_rows if rated else None,
        state=new_state,
        rejected=rejected,
        offsets=offsets,
        quarantined=quarantined,
    )
    alerts = evaluate_batch(
        conn, reads=accepted_reads, intervals=verdict.intervals, meters=meters, now=now
    )
    final = [o if o is not None else ReadOutcome(REJECTED, "not processed") for o in outcomes]
    result = BatchResult(final, pieces=len(rated.pieces.day) if rated else 0, alerts=alerts)
    for o in final:
        if o.status == ACCEPTED:
            result.accepted += 1
        elif o.status == DUPLICATE:
            result.duplicates += 1
        elif o.status == QUARANTINED:
            result.quarantined += 1
        else:
            result.rejected += 1
            key = (o.reason or "").split(":")[0]
            result.reasons[key] = result.reasons.get(key, 0) + 1
    return result


def _resolve_history(
    conn: psycopg.Connection,
    reads: Sequence[MeterRead],
    status: list[str],
    reason: list[str | None],
) -> None:
    """Reads older than the register's last accepted read: a stored twin is a duplicate.
    A late read of a maximum-demand register makes no interval: it is simply stored."""
    idx = [k for k, s in enumerate(status) if s == CHECK_HISTORY]
    if not idx:
        return
    keys = [(reads[k].meter_id, reads[k].register, reads[k].read_at) for k in idx]
    rows = conn.execute(
        """SELECT r.meter_id, r.register, extract(epoch FROM r.read_at)::bigint, r.value_milli
           FROM readings r JOIN unnest(%s::text[], %s::text[], %s::bigint[]) AS k(m, g, t)
             ON r.meter_id = k.m AND r.register = k.g AND r.read_at = to_timestamp(k.t)""",
        ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
    ).fetchall()
    stored = {(m, g, t): v for m, g, t, v in rows}
    for k, key in zip(idx, keys, strict=True):
        value = stored.get(key)
        if value is None and is_demand_register(reads[k].register):
            status[k] = ACCEPTED
        elif value is None:
            status[k] = REJECTED
            reason[k] = "older than the last accepted read of this register (late read)"
        elif value == reads[k].value_milli:
            status[k] = DUPLICATE
        else:
            status[k] = REJECTED
            reason[k] = "conflicts with an accepted read at the same instant"


def _array(flags: Sequence[str]) -> str:
    """Quality flags as a PostgreSQL array literal (flags are plain identifiers)."""
    return "{" + ",".join(flags) + "}" if flags else "{}"


def rejected_row(obj: Any, reason: str) -> RejectedRow:
    """The row kept in rejected_reads for an input that was refused (original JSON kept)."""
    try:
        payload = orjson.dumps(obj).decode()
    except TypeError:
        payload = repr(obj)
    get = obj.get if isinstance(obj, dict) else (lambda _k: None)
    return RejectedRow(
        meter_id=_short(get("meter_id")),
        register=_short(get("register")),
        read_at=_short(get("read_at")),
        reason=reason,
        payload=payload,
    )


def _short(value: Any) -> str | None:
    # PostgreSQL text cannot hold NUL; a meter_id "E1\x00" must not fail the whole batch
    return None if value is None else str(value)[:100].replace("\x00", "\ufffd")
