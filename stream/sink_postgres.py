"""The one PostgreSQL sink: COPY into staging tables, then INSERT … ON CONFLICT DO NOTHING.

Everything a batch changes — reads with their quality flags, rejected and quarantined
reads, rated intervals, the daily rollup, per-register state (and, on Kafka, the consumed
offsets) — is written in the caller's transaction, so a redelivered batch changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS stage_readings (
    meter_id text, register text, read_at bigint, value_milli bigint, unit text, source text,
    quality text[]
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_intervals (
    meter_id text, register text, start_at bigint, end_at bigint, day_index integer,
    metering_point_id text, service text, tariff_code text, quantity_milli bigint,
    price_micro bigint, amount_nano bigint
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_daily (
    metering_point_id text, service text, register text, day_index integer,
    quantity_milli bigint, amount_nano bigint, pieces integer
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_state (
    meter_id text, register text, last_read_at bigint, last_value_milli bigint,
    value_since bigint
) ON COMMIT DELETE ROWS;
"""

_INSERT_READINGS = """
INSERT INTO readings (meter_id, register, read_at, value_milli, unit, source, received_at,
                      quality)
SELECT meter_id, register, to_timestamp(read_at), value_milli, unit, source, to_timestamp(%s),
       coalesce(quality, '{}')
FROM stage_readings
ON CONFLICT DO NOTHING
"""

_INSERT_INTERVALS = """
INSERT INTO consumption_intervals (meter_id, register, start_at, end_at, local_day,
    metering_point_id, service, tariff_code, quantity_milli, price_micro, amount_nano)
SELECT meter_id, register, to_timestamp(start_at), to_timestamp(end_at),
       DATE '2000-01-01' + day_index, metering_point_id, service, tariff_code,
       quantity_milli, price_micro, amount_nano
FROM stage_intervals
ON CONFLICT DO NOTHING
RETURNING meter_id, register, extract(epoch FROM end_at)::bigint
"""

_UPSERT_DAILY = """
INSERT INTO daily_consumption AS d (metering_point_id, service, register, local_day,
                                    quantity_milli, amount_nano, pieces)
SELECT metering_point_id, service, register, DATE '2000-01-01' + day_index, quantity_milli,
       amount_nano, pieces
FROM stage_daily
ON CONFLICT (metering_point_id, service, register, local_day) DO UPDATE
SET quantity_milli = d.quantity_milli + excluded.quantity_milli,
    amount_nano = d.amount_nano + excluded.amount_nano,
    pieces = d.pieces + excluded.pieces
"""

_UPSERT_STATE = """
INSERT INTO meter_state (meter_id, register, last_read_at, last_value_milli, value_since)
SELECT meter_id, register, to_timestamp(last_read_at), last_value_milli,
       to_timestamp(value_since)
FROM stage_state
ON CONFLICT (meter_id, register) DO UPDATE
SET last_read_at = excluded.last_read_at, last_value_milli = excluded.last_value_milli,
    value_since = excluded.value_since
WHERE meter_state.last_read_at < excluded.last_read_at
"""

_INSERT_REJECTED = """
COPY rejected_reads (received_at, channel, meter_id, register, read_at, reason, payload)
FROM STDIN
"""

_INSERT_QUARANTINED = """
INSERT INTO quarantined_reads (received_at, channel, meter_id, register, read_at,
                               value_milli, reason, payload)
VALUES (to_timestamp(%s), %s, %s, %s, to_timestamp(%s), %s, %s, %s::jsonb)
ON CONFLICT DO NOTHING
"""

_UPSERT_OFFSET = """
INSERT INTO stream_offsets (consumer_group, topic, partition, next_offset)
VALUES (%s, %s, %s, %s)
ON CONFLICT (consumer_group, topic, partition) DO UPDATE
SET next_offset = greatest(stream_offsets.next_offset, excluded.next_offset), updated_at = now()
"""


DailyRows = Callable[[Collection[tuple[str, str, int]] | None], Sequence[Sequence[object]]]


@dataclass(frozen=True)
class ConsumedOffset:
    """The next offset to consume of one partition, stored with the batch it produced."""

    consumer_group: str
    topic: str
    partition: int
    next_offset: int


@dataclass(frozen=True)
class QuarantinedRow:
    """A read from the future, kept with its original JSON until time has caught up."""

    meter_id: str
    register: str
    read_at: int
    value_milli: int
    reason: str
    payload: str  # JSON text


@dataclass(frozen=True)
class RejectedRow:
    meter_id: str | None
    register: str | None
    read_at: str | None
    reason: str
    payload: str


def ensure_staging(conn: psycopg.Connection) -> None:
    """Create the session's staging tables once, and empty them: several batches may share
    one transaction (a file import), and ON COMMIT DELETE ROWS only empties them at commit."""
    conn.execute(_STAGING)
    conn.execute("TRUNCATE stage_readings, stage_intervals, stage_daily, stage_state")


def _copy(
    conn: psycopg.Connection, table: str, columns: str, rows: Iterable[Sequence[object]]
) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def write_batch(
    conn: psycopg.Connection,
    *,
    received_at: int,
    channel: str,
    readings: Sequence[Sequence[object]],
    intervals: Sequence[Sequence[object]] = (),
    daily_rows: DailyRows | None = None,
    state: Sequence[Sequence[object]],
    rejected: Sequence[RejectedRow],
    offsets: Sequence[ConsumedOffset] = (),
    quarantined: Sequence[QuarantinedRow] = (),
) -> int:
    """Write one validated batch; return how many readings were newly stored.

    `readings` rows: meter_id, register, read_at, value_milli, unit, source and optionally
    the quality flags as a PostgreSQL array literal ('{gap,spike}'); `state` rows:
    meter_id, register, last_read_at, last_value_milli and optionally value_since."""
    ensure_staging(conn)
    stored = 0
    if readings:
        _copy(
            conn,
            "stage_readings",
            "meter_id, register, read_at, value_milli, unit, source"
            + (", quality" if len(readings[0]) > 6 else ""),
            readings,
        )
        stored = conn.execute(_INSERT_READINGS, (received_at,)).rowcount
    if intervals:
        _copy(
            conn,
            "stage_intervals",
            "meter_id, register, start_at, end_at, day_index, metering_point_id, service, "
            "tariff_code, quantity_milli, price_micro, amount_nano",
            intervals,
        )
        inserted = conn.execute(_INSERT_INTERVALS).fetchall()
        if daily_rows is not None:
            # normally every staged interval is new; after a redelivery only some are
            keys = None if len(inserted) == len(intervals) else {tuple(k) for k in inserted}
            rows = daily_rows(keys)
            if rows:
                _copy(
                    conn,
                    "stage_daily",
                    "metering_point_id, service, register, day_index, quantity_milli, "
                    "amount_nano, pieces",
                    rows,
                )
                conn.execute(_UPSERT_DAILY)
    if state:
        columns = "meter_id, register, last_read_at, last_value_milli"
        _copy(conn, "stage_state", columns + (", value_since" if len(state[0]) > 4 else ""), state)
        conn.execute(_UPSERT_STATE)
    if rejected:
        with conn.cursor() as cur, cur.copy(_INSERT_REJECTED) as copy:
            for r in rejected:
                copy.write_row(
                    (
                        _ts(received_at),
                        channel,
                        r.meter_id,
                        r.register,
                        r.read_at,
                        r.reason,
                        r.payload,
                    )
                )
    if quarantined:
        with conn.cursor() as cur:
            cur.executemany(
                _INSERT_QUARANTINED,
                [
                    (received_at, channel, q.meter_id, q.register, q.read_at, q.value_milli,
                     q.reason, q.payload)
                    for q in quarantined
                ],
            )  # fmt: skip
    for off in offsets:
        conn.execute(
            _UPSERT_OFFSET, (off.consumer_group, off.topic, off.partition, off.next_offset)
        )
    return stored


def _ts(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()
