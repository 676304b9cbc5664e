"""Close time of one month at utility scale (100,000 accounts), against the plain aggregate
query over the same month (the ceiling any close must read through), in the same run.

    .venv/bin/python -m bench.close_100k [--customers 100000] [--runs 3] [--profile FILE]

Seeding goes straight into the tables with COPY (customers, metering points, meters and
their installations, contracts, a month of `daily_consumption` — whose triggers fill
`monthly_consumption` as the stream's would —, `meter_state`): pushing
100,000 × 3 registers × 31 days through the stream (`process_reads`) would take longer
than the benchmark itself and measures something else (bench.pipeline_throughput does).
The shape follows app.demo_data: 12 % businesses, every account has electricity (VT/MT),
water and waste contracts on one metering point.

The seeded database is the template of one fresh copy per run (invoices and journal entries
are immutable, so they cannot be deleted between runs). Each run warms the cache with the
aggregate, times it again, then closes and COMMITs: the journal's balance check is deferred
to commit, so a close that is rolled back would not pay for it. The close's time includes
the commit; the wall and CPU time of each step of the close are printed per run. CPU is the
bench process plus its PostgreSQL backend (read from /proc), with parallel query off so
that the backend's CPU is all of the query's; it moves far less with the machine's load
than wall time does.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import json
import os
import pstats
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from app.database import with_database
from bench.common import REPO, fresh_database
from billing import close_inputs, closer
from billing.closer import close_period
from rating.calendar import month_bounds

PERIOD = "2026-10"
CATALOG = REPO / "app" / "demo" / "catalog.json"
PRICE_MICRO = {"1.8.1": 157_800, "1.8.2": 78_900, "8.0": 1_068_376}  # for amount_nano only

AGGREGATE = """
SELECT c.contract_id, d.register, sum(d.quantity_milli)
FROM daily_consumption d
JOIN contracts c ON c.metering_point_id = d.metering_point_id AND c.service = d.service
 AND d.local_day >= c.valid_from AND (c.valid_to IS NULL OR d.local_day <= c.valid_to)
WHERE d.local_day >= %s AND d.local_day < %s
GROUP BY 1, 2
"""


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a local process; nan if it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(conn: psycopg.Connection) -> float:
    """CPU seconds used so far by this process, its finished child processes (the close's
    calculation workers) and the connection's PostgreSQL backend (Linux /proc, local
    server; nan elsewhere). Parallel query workers, autovacuum and the WAL writer are not
    counted."""
    t = os.times()
    return (t.user + t.system + t.children_user + t.children_system
            + proc_cpu(conn.info.backend_pid))


def children_cpu() -> float:
    """CPU seconds of this process's finished (waited-for) child processes."""
    t = os.times()
    return t.children_user + t.children_system


def _copy_text(conn: psycopg.Connection, table: str, columns: str, lines: list[str]) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for i in range(0, len(lines), 50_000):
            copy.write("\n".join(lines[i:i + 50_000]) + "\n")


def seed(conn: psycopg.Connection, customers: int, period: str = PERIOD, seed: int = 7) -> None:
    """`customers` accounts with a month of daily consumption in `period`, committed."""
    first, end = month_bounds(period)
    days = [(first + timedelta(days=i)).isoformat() for i in range((end - first).days)]
    rng = np.random.default_rng(seed)
    n = customers
    business = rng.random(n) < 0.12
    village = ~business & (rng.random(n) < 0.08)
    members = rng.integers(1, 7, n)
    area = rng.integers(20, 401, n)
    ids = [str(100001 + i) for i in range(n)]
    for doc in json.loads(Path(CATALOG).read_text(encoding="utf-8")):
        conn.execute("INSERT INTO tariff_versions (tariff_code, valid_from, service, document)"
                     " VALUES (%s, %s, %s, %s)",
                     (doc["tariff_code"], doc["valid_from"], doc["service"], json.dumps(doc)))
    _copy_text(conn, "customers", "customer_id, name, kind", [
        f"{cid}\tKupac {cid}\t{'business' if business[i] else 'household'}"
        for i, cid in enumerate(ids)])
    _copy_text(conn, "metering_points", "metering_point_id, address, household_members, area_m2", [
        f"MM-{cid}\tUlica {i % 97} {i % 120 + 1}, Brčko\t"
        + (f"\\N\t{area[i]}" if business[i] else f"{members[i]}\t\\N")
        for i, cid in enumerate(ids)])
    _copy_text(conn, "meters", "meter_id, service, digits, registers",
               [f"E-{cid}\telectricity\t6\t{{1.8.1,1.8.2}}" for cid in ids]
               + [f"V-{cid}\twater\t5\t{{8.0}}" for cid in ids])
    _copy_text(conn, "meter_installations", "meter_id, metering_point_id, installed_at",
               [f"{m}-{cid}\tMM-{cid}\t2026-01-01 00:00+01" for cid in ids for m in "EV"])
    _copy_text(conn, "contracts", "contract_id, customer_id, metering_point_id, service,"
               " tariff_code, valid_from", [
                   f"{cid}-{suffix}\t{cid}\tMM-{cid}\t{service}\t{code}\t2026-01-01"
                   for i, cid in enumerate(ids)
                   for service, code, suffix in zip(
                       ("electricity", "water", "waste"),
                       ("EL-OP", "W-BU", "WA-BU") if business[i]
                       else ("EL-HH", "W-VS" if village[i] else "W-HH", "WA-HH"),
                       ("EL", "VO", "SM"), strict=True)])
    # Wh / litres per day: households ~9 kWh and ~0.3 m³ a day, businesses more
    el = np.where(business, rng.uniform(15_000, 130_000, n), rng.uniform(5_500, 14_000, n))
    water = np.where(business, rng.uniform(150, 2_000, n), members * rng.uniform(80, 130, n))
    noise = rng.uniform(0.7, 1.3, (n, len(days), 3))
    qty = np.rint(np.stack([el * 0.65, el * 0.35, water], axis=1)[:, None, :] * noise
                  ).astype(np.int64)
    conn.execute("ALTER TABLE daily_consumption DROP CONSTRAINT daily_consumption_pkey")
    conn.execute("DROP INDEX daily_consumption_day")
    registers = (("electricity", "1.8.1"), ("electricity", "1.8.2"), ("water", "8.0"))
    with conn.cursor() as cur, cur.copy(
        "COPY daily_consumption (metering_point_id, service, register, local_day,"
        " quantity_milli, amount_nano, pieces) FROM STDIN"
    ) as copy:
        for lo in range(0, n, 5000):
            chunk = []
            for i in range(lo, min(n, lo + 5000)):
                mp, q = f"MM-{ids[i]}", qty[i].tolist()
                for r, (service, register) in enumerate(registers):
                    price = PRICE_MICRO[register]
                    chunk += [f"{mp}\t{service}\t{register}\t{day}\t{q[d][r]}\t{q[d][r] * price}\t1"
                              for d, day in enumerate(days)]
            copy.write("\n".join(chunk) + "\n")
    conn.execute("ALTER TABLE daily_consumption ADD PRIMARY KEY"
                 " (metering_point_id, service, register, local_day)")
    conn.execute("CREATE INDEX daily_consumption_day ON daily_consumption (local_day)")
    last = f"{end.isoformat()} 00:00+01"
    totals = qty.sum(axis=1).tolist()
    _copy_text(conn, "meter_state", "meter_id, register, last_read_at, last_value_milli", [
        f"{m}-{cid}\t{register}\t{last}\t{totals[i][r] + 1_000_000}"
        for i, cid in enumerate(ids)
        for r, (m, register) in enumerate((("E", "1.8.1"), ("E", "1.8.2"), ("V", "8.0")))])
    conn.commit()
    with psycopg.connect(conn.info.dsn, autocommit=True) as admin:
        admin.execute("VACUUM ANALYZE")


Targets = list[tuple[ModuleType, tuple[str, ...]]]


class StepTimer:
    """Wall and CPU time per step, by wrapping module-level functions for the duration of a
    block (`targets`: module and function names; "default_after_write" times each step it
    lists). CPU is this process plus `backend_pid`'s PostgreSQL backend; for `hot` steps
    (called per invoice) only this process, since reading /proc per call would cost more
    than the step."""

    def __init__(self, targets: Targets, backend_pid: int | None = None,
                 hot: tuple[str, ...] = ("compute_invoice", "with_extra_lines", "_decode")
                 ) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self._targets = targets
        self._pid = backend_pid
        self._hot = hot
        self._saved: list[tuple[ModuleType, str, Any]] = []

    def _cpu(self, with_backend: bool) -> float:
        t = os.times()
        return t.user + t.system + (proc_cpu(self._pid) if with_backend and self._pid else 0.0)

    def _timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        backend = name not in self._hot

        def run(*a: Any, **kw: Any) -> Any:
            t, c = time.perf_counter(), self._cpu(backend)
            try:
                return fn(*a, **kw)
            finally:
                self.seconds[name] += time.perf_counter() - t
                self.cpu[name] += self._cpu(backend) - c
        return functools.update_wrapper(run, fn)  # keeps marks such as `per_chunk`

    def __enter__(self) -> StepTimer:
        for module, names in self._targets:
            for name in names:
                fn = getattr(module, name, None)
                if fn is None:
                    continue
                self._saved.append((module, name, fn))
                if name == "default_after_write":
                    setattr(module, name, lambda fn=fn: [
                        self._timed(f"after_write:{s.__name__}", s) for s in fn()])
                else:
                    setattr(module, name, self._timed(name, fn))
        return self

    def __exit__(self, *_exc: object) -> None:
        for module, name, fn in reversed(self._saved):
            setattr(module, name, fn)

    def summary(self) -> str:
        """'step wall/CPU' in seconds, biggest CPU first."""
        return ", ".join(f"{k.lstrip('_')} {self.seconds[k]:.2f}/{v:.2f}"
                         for k, v in sorted(self.cpu.items(), key=lambda kv: -kv[1]))


CLOSE_STEPS: Targets = [(closer, (
    "_load_contracts", "_overlapping", "_price_breaks", "_load_consumption", "_load_month",
    "_load_month_totals",
    "_load_demand",
    "_extra_lines", "compute_invoice", "with_extra_lines", "_merge", "_send", "post_invoices",
    "post_invoice_numbers",
    "_scalar", "default_after_write"))]


def _run(admin: str, template: str, customers: int, issued_on: date, phases: bool
         ) -> tuple[float, float, float, float, str]:
    """One run on a fresh copy of the seeded database: wall s of the aggregate and the
    close, their CPU s (bench + backend) and the close's steps. The
    connection is idle, so the close's transaction is a real one and its time includes the
    commit with the checks deferred to it (journal balance)."""
    name = f"{template}_run"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)))
    try:
        with psycopg.connect(with_database(admin, name)) as conn:
            first, end = month_bounds(PERIOD)
            # no parallel query workers: their CPU would be invisible in the backend's, and
            # on two shared cores they only compete with the other jobs
            conn.execute("SET max_parallel_workers_per_gather = 0")
            conn.commit()
            conn.execute(AGGREGATE, (first, end)).fetchall()  # warm the cache
            conn.rollback()
            t, cpu = time.perf_counter(), cpu_seconds(conn)
            conn.execute(AGGREGATE, (first, end)).fetchall()
            aggregate, agg_cpu = time.perf_counter() - t, cpu_seconds(conn) - cpu
            conn.rollback()
            with StepTimer(CLOSE_STEPS, conn.info.backend_pid) as ph:
                t, cpu, kids = time.perf_counter(), cpu_seconds(conn), children_cpu()
                res = close_period(conn, PERIOD, issued_on=issued_on)
                closed, close_cpu = time.perf_counter() - t, cpu_seconds(conn) - cpu
                kids = children_cpu() - kids
            assert res.invoices_created == customers, (res.invoices_created, res.skipped)
            rest = (closed - sum(ph.seconds.values()), close_cpu - sum(ph.cpu.values()))
            # the calculation workers' CPU is counted when they end, in no step: in "rest"
            steps = (f"{ph.summary()}, rest incl. commit {rest[0]:.2f}/{rest[1]:.2f}"
                     f" (of which calculation workers' CPU {kids:.2f})")
            return aggregate, closed, agg_cpu, close_cpu, steps if phases else ""
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile", help="write a cProfile of one more close to this file")
    ap.add_argument("--per-day", action="store_true",
                    help="the close's consumption from the day rows only (the path before the"
                         " month-to-date totals), for comparison")
    ap.add_argument("--python-booking", action="store_true",
                    help="book the invoices through `post_invoices` (entries made in Python,"
                         " the path before the set-based booking), for comparison")
    args = ap.parse_args()
    if args.python_booking:
        closer.BOOK_IN_SQL_FROM = 10**9
    if args.per_day:
        closer._load_month_totals = (
            lambda conn, args, breaks, **_: close_inputs._load_month(conn, args, breaks))
    issued_on = month_bounds(PERIOD)[1] + timedelta(days=1)
    aggregate: list[float] = []
    closes: list[float] = []
    cpus: list[tuple[float, float]] = []
    with fresh_database() as url:
        with psycopg.connect(url) as conn:
            t = time.perf_counter()
            seed(conn, args.customers)
            seeded = time.perf_counter() - t
            rows = conn.execute("SELECT count(*) FROM daily_consumption").fetchone()
        print(f"seeded {args.customers:,} accounts, {rows[0] if rows else 0:,} daily rows"
              f" in {seeded:.1f} s", flush=True)
        admin = with_database(url, "postgres")
        template = str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])
        for run in range(args.runs):
            agg, close, agg_cpu, close_cpu, steps = _run(admin, template, args.customers,
                                                          issued_on, True)
            aggregate.append(agg)
            closes.append(close)
            cpus.append((agg_cpu, close_cpu))
            print(f"run {run + 1}: aggregate {agg:.2f} s (CPU {agg_cpu:.2f} s), close"
                  f" {close:.2f} s (CPU {close_cpu:.2f} s); steps (wall/CPU s): {steps}",
                  flush=True)
        if args.profile:
            _profile(url, issued_on, args.profile)
    agg, close = statistics.median(aggregate), statistics.median(closes)
    print(f"plain aggregate over {PERIOD}: median {agg:.2f} s"
          f" (runs: {', '.join(f'{v:.2f}' for v in aggregate)})")
    print(f"close of {PERIOD} ({args.customers:,} invoices) incl. commit: median {close:.2f} s"
          f" (runs: {', '.join(f'{v:.2f}' for v in closes)})")
    agg_cpu = statistics.median(c[0] for c in cpus)
    close_cpu = statistics.median(c[1] for c in cpus)
    print(f"close / aggregate: {close / agg:.2f}× wall; CPU (bench + backend) median"
          f" {close_cpu:.2f} s / {agg_cpu:.2f} s = {close_cpu / agg_cpu:.2f}×;"
          f" invoices/s: {args.customers / close:,.0f}")
    print("close / aggregate of each run: "
          + ", ".join(f"{c / a:.2f}×" for c, a in zip(closes, aggregate, strict=True)))


def _profile(url: str, issued_on: date, out: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("SELECT 1")  # an outer transaction: the close's own is a savepoint
        prof = cProfile.Profile()
        prof.enable()
        close_period(conn, PERIOD, issued_on=issued_on)
        prof.disable()
        conn.rollback()
    prof.dump_stats(out)
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(35)
    print(text.getvalue())


if __name__ == "__main__":
    main()
