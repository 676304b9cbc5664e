"""Reads/s through the in-process chain into PostgreSQL, against the raw COPY ceiling.

Both are measured in the same run on the same server and the same `readings` table
shape: the ceiling is a bare `COPY` of the same rows into an empty copy of `readings`;
the chain is decode → validate → split → rate → COPY+INSERT … ON CONFLICT of reads,
rated day pieces, the daily rollup and per-register state, one transaction per batch.

    .venv/bin/python -m bench.pipeline_throughput [--meters 2000] [--hours 48] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime

import psycopg

from bench.common import REPO, fresh_database, median_of
from schemas.meter_reads import MeterRead, encode_read
from stream.pipeline import process_reads

START = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp())


def seed(conn: psycopg.Connection, meters: int) -> None:
    catalog = json.loads((REPO / "app" / "demo" / "catalog.json").read_text())
    for doc in catalog:
        conn.execute(
            "INSERT INTO tariff_versions (tariff_code, valid_from, service, document)"
            " VALUES (%s, %s, %s, %s)",
            (doc["tariff_code"], doc["valid_from"], doc["service"], json.dumps(doc)),
        )
    with conn.cursor() as cur:
        with cur.copy("COPY customers (customer_id, name, kind) FROM STDIN") as cp:
            for i in range(meters):
                cp.write_row((f"{200000 + i}", f"Kupac {i}", "household"))
        with cur.copy("COPY metering_points (metering_point_id, address) FROM STDIN") as cp:
            for i in range(meters):
                cp.write_row((f"MP{i}", f"Ulica {i}"))
        with cur.copy("COPY meters (meter_id, service, digits, registers) FROM STDIN") as cp:
            for i in range(meters):
                cp.write_row((f"E{i}", "electricity", 7, ["1.8.1", "1.8.2"]))
        with cur.copy(
            "COPY meter_installations (meter_id, metering_point_id, installed_at) FROM STDIN"
        ) as cp:
            for i in range(meters):
                cp.write_row((f"E{i}", f"MP{i}", "2025-01-01T00:00:00Z"))
        with cur.copy("COPY contracts FROM STDIN") as cp:
            for i in range(meters):
                cp.write_row(
                    (f"C{i}", f"{200000 + i}", f"MP{i}", "electricity", "EL-HH", "2025-01-01", None)
                )
    conn.commit()


def make_reads(meters: int, hours: int) -> list[dict[str, str]]:
    out = []
    for h in range(hours + 1):
        at = START + h * 3600
        for i in range(meters):
            base = (i % 97) * 1000
            out.append(encode_read(MeterRead(f"E{i}", "1.8.1", at, base + h * 310, "kWh", "amr")))
            out.append(encode_read(MeterRead(f"E{i}", "1.8.2", at, base + h * 170, "kWh", "amr")))
    return out


def run_chain(url: str, reads: list[dict[str, str]], batch: int) -> float:
    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE readings, consumption_intervals, daily_consumption, meter_state")
        conn.commit()
        now = START + 400 * 86400
        started = time.perf_counter()
        for k in range(0, len(reads), batch):
            with conn.transaction():
                res = process_reads(conn, reads[k : k + batch], channel="bench", now=now)
            assert res.rejected == 0, res.reasons
        return len(reads) / (time.perf_counter() - started)


def run_copy_ceiling(url: str, reads: list[dict[str, str]]) -> float:
    rows = [
        (
            r["meter_id"],
            r["register"],
            r["read_at"],
            int(r["value"].replace(".", "")),
            "kWh",
            "amr",
            "2026-01-01T00:00:00Z",
        )
        for r in reads
    ]
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS readings_ceiling")
        conn.execute("CREATE TABLE readings_ceiling (LIKE readings INCLUDING ALL)")
        conn.commit()
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY readings_ceiling (meter_id, register, read_at, value_milli, unit, source,"
                " received_at) FROM STDIN"
            ) as cp,
        ):
            for row in rows:
                cp.write_row(row)
        conn.commit()
        return len(rows) / (time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--meters", type=int, default=2000)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--batch", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with fresh_database() as url:
        with psycopg.connect(url) as conn:
            seed(conn, args.meters)
        reads = make_reads(args.meters, args.hours)
        ceiling, c_runs = median_of(args.runs, lambda: run_copy_ceiling(url, reads))
        chain, p_runs = median_of(args.runs, lambda: run_chain(url, reads, args.batch))
    print(
        f"reads per run: {len(reads):,} ({args.meters} meters × 2 registers × "
        f"{args.hours + 1} hourly reads), batch {args.batch:,}, {args.runs} runs"
    )
    print(
        f"raw COPY ceiling into readings: median {ceiling:,.0f} reads/s  "
        f"(runs: {', '.join(f'{v:,.0f}' for v in c_runs)})"
    )
    print(
        f"in-process chain into PostgreSQL: median {chain:,.0f} reads/s  "
        f"(runs: {', '.join(f'{v:,.0f}' for v in p_runs)})"
    )
    print(f"chain / ceiling: {chain / ceiling:.2f}")


if __name__ == "__main__":
    main()
