"""CPU per customer of the close's calculation worker: `billing.closer._render_range` (the
draft of each customer, `compute_invoice`, and its COPY text, `close_copy._render`) over the
inputs of a close, loaded once, timed in this process.

    .venv/bin/python -m bench.calculation_speed [--customers 20000] [--runs 5]
        [--save FILE | --load FILE] [--general] [--rounds N]

The database is seeded as `bench.close_100k` seeds it (electricity VT/MT, water and waste
per account, 12 % businesses); the inputs are read with `closer._load_inputs` inside a
transaction that is rolled back. Each run calls ``_render_range(inputs, 0, n)`` (n: the
customers with a contract, ``inputs.base``) with the cyclic GC paused (as the close runs)
and measures `time.process_time`; the median of the runs is printed as µs per customer.
The first run also warms the calculation's memos, as the close's first chunk does in a
worker.

The SHA-256 of the rendered results is printed too: a change to the calculation that is
meant to be a speed-up only must print the same digest before and after.
`--general` times the general path too (`calculation._simple_invoice` off: every customer
priced as before the short path existed, `_render` as now), alternately with the short one.
`--save FILE` pickles the loaded inputs (no database needed afterwards: `--load FILE`),
to iterate quickly; a pickle is only valid while the input records keep their fields.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import pickle
import statistics
import time
from datetime import timedelta
from pathlib import Path

import psycopg

from bench.close_100k import PERIOD, seed
from bench.common import fresh_database
from billing import calculation, closer
from billing.close_hooks import CloseContext
from billing.close_inputs import _CachedCatalog
from rating.calendar import month_bounds
from stream.pipeline import load_catalog


def load_inputs(customers: int) -> closer._Inputs:
    """The inputs of a close of `customers` freshly seeded accounts."""
    first, end = month_bounds(PERIOD)
    with fresh_database() as url, psycopg.connect(url) as conn:
        t = time.perf_counter()
        seed(conn, customers)
        print(f"seeded {customers:,} accounts in {time.perf_counter() - t:.1f} s", flush=True)
        catalog = _CachedCatalog(load_catalog(conn))
        ctx = CloseContext(conn, PERIOD, first, end, end + timedelta(days=1), catalog)
        inputs = closer._load_inputs(ctx, [])
        conn.rollback()
    return inputs


def digest(results: list[closer.Rendered | str | None]) -> str:
    return hashlib.sha256("\n".join(map(repr, results)).encode()).hexdigest()


def time_render(inputs: closer._Inputs, runs: int) -> tuple[float, list[float], str]:
    """Median and all CPU seconds of ``_render_range`` over every customer with a contract,
    and the digest of its results."""
    n = len(inputs.base)
    seconds = []
    found = ""
    was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(runs):
            t = time.process_time()
            results = closer._render_range(inputs, 0, n)
            seconds.append(time.process_time() - t)
            found = found or digest(results)
            del results
    finally:
        if was:
            gc.enable()
    return statistics.median(seconds), seconds, found


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--save", help="pickle the loaded inputs to this file")
    ap.add_argument("--load", help="the inputs from a file written by --save (no seeding)")
    ap.add_argument("--general", action="store_true",
                    help="also time the general path only (the short path for the common"
                         " customer off), alternately; both must print the same digest")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the timings (alternately)")
    args = ap.parse_args()
    if args.load:
        inputs = pickle.loads(Path(args.load).read_bytes())
    else:
        inputs = load_inputs(args.customers)
        if args.save:
            Path(args.save).write_bytes(pickle.dumps(inputs, protocol=pickle.HIGHEST_PROTOCOL))
    n = len(inputs.base)
    for _ in range(args.rounds):
        for path in ("general", "short") if args.general else ("short",):
            if path == "general":
                calculation._simple_invoice = _general_only  # type: ignore[assignment]
            median, seconds, sha = time_render(inputs, args.runs)
            calculation._simple_invoice = _SHORT
            print(f"_render_range over {n:,} customers{' (general path)' * (path == 'general')}"
                  f": median CPU {median:.3f} s = {median / n * 1e6:.1f} µs per customer"
                  f" (runs: {', '.join(f'{s:.3f}' for s in seconds)}); results sha256 {sha}",
                  flush=True)


_SHORT = calculation._simple_invoice


def _general_only(*_args: object) -> None:
    """`calculation._simple_invoice` declining every customer: the general path only."""


if __name__ == "__main__":
    main()
