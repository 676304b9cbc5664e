"""Rollups under one name, with or without TimescaleDB (used by migration 0006).

The API and the dashboards read ``consumption_hourly``, ``daily_consumption`` and
``consumption_monthly`` and never need to know which server they run on:

- **TimescaleDB** (extension available and preloaded): ``readings`` and
  ``consumption_intervals`` become hypertables (existing rows migrated), with compression and
  retention policies; continuous aggregates ``consumption_hourly_cagg``,
  ``consumption_daily_cagg`` and ``consumption_monthly_cagg`` roll the intervals up, and the
  views ``consumption_hourly`` / ``consumption_monthly`` give them the columns below.
- **Plain PostgreSQL**: the same two views, computed from ``consumption_intervals`` and
  from the sink-maintained ``daily_consumption``.

Hourly (and ``consumption_daily_cagg``): an interval (start_at, end_at] counts in the hour
(local day) in which it *ends*: a piece ending exactly at 14:00 belongs to 13:00–14:00.
TimescaleDB buckets are therefore shifted by one microsecond (``time_bucket(..., offset =>
1 µs)``) and the hourly view subtracts it again. Monthly: the sum of ``daily_consumption``
(the sink splits consumption at local midnight), so both modes give the same months
(in TimescaleDB ``daily_consumption`` becomes a hypertable on ``local_day``).

Columns of both views: metering_point_id, service, register, hour_start (timestamptz) or
month (date, the 1st), quantity_milli, amount_nano, pieces (all bigint).
"""

import logging
from typing import Any

log = logging.getLogger(__name__)

LOCAL_TZ = "Europe/Sarajevo"
READER_ROLE = "grafana_reader"
MIN_TIMESCALEDB = (2, 15)  # continuous aggregates over time_bucket with an offset
CHUNK = "INTERVAL '1 day'"
COMPRESS_AFTER = "INTERVAL '35 days'"  # after the monthly close of the month
RAW_RETENTION = "INTERVAL '10 years'"  # readings and intervals: evidence for invoices
HOURLY_RETENTION = "INTERVAL '3 years'"
ROLLUP_VIEWS = ("consumption_hourly", "consumption_monthly")
CAGGS = ("consumption_hourly_cagg", "consumption_daily_cagg", "consumption_monthly_cagg")

_SUMS = """sum(quantity_milli)::bigint AS quantity_milli,
       sum(amount_nano)::bigint AS amount_nano"""

FALLBACK_SQL = [
    f"""CREATE OR REPLACE VIEW consumption_hourly AS
SELECT metering_point_id, service, register,
       date_trunc('hour', end_at - INTERVAL '1 microsecond', 'UTC') AS hour_start,
       {_SUMS},
       count(*)::bigint AS pieces
FROM consumption_intervals
GROUP BY metering_point_id, service, register, 4""",
    f"""CREATE OR REPLACE VIEW consumption_monthly AS
SELECT metering_point_id, service, register,
       date_trunc('month', local_day::timestamp)::date AS month,
       {_SUMS},
       sum(pieces)::bigint AS pieces
FROM daily_consumption
GROUP BY metering_point_id, service, register, 4""",
]


def _cagg(name: str, bucket: str, source: str, refresh_from: str, every: str) -> list[str]:
    pieces = "sum(pieces)" if source == "daily_consumption" else "count(*)"
    return [
        f"""CREATE MATERIALIZED VIEW {name}
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT {bucket} AS bucket, metering_point_id, service, register,
       sum(quantity_milli) AS quantity_milli, sum(amount_nano) AS amount_nano,
       {pieces} AS pieces
FROM {source}
GROUP BY bucket, metering_point_id, service, register
WITH NO DATA""",
        f"""SELECT add_continuous_aggregate_policy('{name}',
    start_offset => {refresh_from}, end_offset => INTERVAL '1 hour',
    schedule_interval => {every}, if_not_exists => true)""",
    ]


def _hypertable(table: str, time_column: str) -> list[str]:
    return [
        _create_hypertable(table, time_column, CHUNK),
        f"""ALTER TABLE {table} SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'meter_id, register',
    timescaledb.compress_orderby = '{time_column} DESC')""",
        f"SELECT add_compression_policy('{table}', {COMPRESS_AFTER}, if_not_exists => true)",
        f"SELECT add_retention_policy('{table}', {RAW_RETENTION}, if_not_exists => true)",
    ]


def _create_hypertable(table: str, time_column: str, chunk: str) -> str:
    return f"""SELECT create_hypertable('{table}', '{time_column}', chunk_time_interval => {chunk},
    migrate_data => true, if_not_exists => true)"""


_US = "INTERVAL '1 microsecond'"

TIMESCALE_SQL = [
    *_hypertable("readings", "read_at"),
    *_hypertable("consumption_intervals", "end_at"),
    # the sink's daily rollup (local days, split at local midnight) feeds the monthly one
    _create_hypertable("daily_consumption", "local_day", "INTERVAL '1 month'"),
    *_cagg(
        "consumption_hourly_cagg",
        f"time_bucket(INTERVAL '1 hour', end_at, {_US})",
        "consumption_intervals",
        "INTERVAL '2 years'",
        "INTERVAL '15 minutes'",
    ),
    f"SELECT add_retention_policy('consumption_hourly_cagg', {HOURLY_RETENTION},"
    " if_not_exists => true)",
    *_cagg(
        "consumption_daily_cagg",
        f"time_bucket(INTERVAL '1 day', end_at, '{LOCAL_TZ}', \"offset\" => {_US})",
        "consumption_intervals",
        "INTERVAL '9 years'",
        "INTERVAL '1 hour'",
    ),
    *_cagg(
        "consumption_monthly_cagg",
        "time_bucket(INTERVAL '1 month', local_day)",
        "daily_consumption",
        "INTERVAL '9 years'",
        "INTERVAL '1 hour'",
    ),
    f"""CREATE OR REPLACE VIEW consumption_hourly AS
SELECT metering_point_id, service, register, bucket - {_US} AS hour_start,
       quantity_milli::bigint AS quantity_milli, amount_nano::bigint AS amount_nano,
       pieces::bigint AS pieces
FROM consumption_hourly_cagg""",
    """CREATE OR REPLACE VIEW consumption_monthly AS
SELECT metering_point_id, service, register, bucket AS month,
       quantity_milli::bigint AS quantity_milli, amount_nano::bigint AS amount_nano,
       pieces::bigint AS pieces
FROM consumption_monthly_cagg""",
]


def choose_mode(available: bool, preload_libraries: str) -> str:
    """'timescaledb' when the extension can be created, else 'postgresql'."""
    if not available:
        return "postgresql"
    preloaded = {lib.strip() for lib in preload_libraries.split(",")}
    if "timescaledb" not in preloaded:
        log.warning(
            "timescaledb is installed but not in shared_preload_libraries: "
            "using plain PostgreSQL rollups"
        )
        return "postgresql"
    return "timescaledb"


def detect_mode(cur: Any) -> str:
    cur.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),"
        " current_setting('shared_preload_libraries')"
    )
    available, preload = cur.fetchone()
    return choose_mode(bool(available), str(preload or ""))


def _check_version(cur: Any) -> None:
    cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    version = str(cur.fetchone()[0])
    parts = tuple(int(p) for p in version.split("-")[0].split(".")[:2])
    if parts < MIN_TIMESCALEDB:
        need = ".".join(map(str, MIN_TIMESCALEDB))
        raise RuntimeError(f"TimescaleDB {version} is too old: {need} or newer is needed")


def install(conn: Any) -> str:
    """Create the rollups (migration 0006); returns the mode used."""
    cur = conn.cursor()
    mode = detect_mode(cur)
    if mode == "timescaledb":
        cur.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        _check_version(cur)
        statements = TIMESCALE_SQL
    else:
        statements = FALLBACK_SQL
    for sql in statements:
        cur.execute(sql)
    grant_readers(cur)
    log.info("rollups installed on %s", mode)
    return mode


def uninstall(conn: Any) -> None:
    """Drop the rollup views and aggregates (hypertables stay hypertables)."""
    cur = conn.cursor()
    for view in ROLLUP_VIEWS:
        cur.execute(f"DROP VIEW IF EXISTS {view}")
    cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    if cur.fetchone():
        for cagg in CAGGS:
            cur.execute(f"DROP MATERIALIZED VIEW IF EXISTS {cagg}")


def grant_readers(cur: Any, role: str = READER_ROLE) -> bool:
    """Let the dashboards' read-only role (if it exists) read the rollups and nothing else."""
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    if not cur.fetchone():
        return False
    cur.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = current_schema() AND c.relname = ANY(%s)",
        (["daily_consumption", *ROLLUP_VIEWS, *CAGGS],),
    )
    for (name,) in cur.fetchall():
        cur.execute(f'GRANT SELECT ON {name} TO "{role}"')
    return True
