"""Intervals/s of the vectorized TOU rating against the plain per-row reference, same batch,
same run: a month of 15-minute load-profile intervals (register 1.8.0) for a set of
meters, each rated with TOU band + season + tariff version + price + amount (and split at
band changes and local midnight where an interval crosses one). Both results must agree
exactly; the bench asserts it before printing.

    .venv/bin/python -m bench.rating_speed [--meters 700] [--period 2026-03] [--runs 3]

Inputs are built before the clock starts: numpy arrays for the engine, a list of
(start, end, quantity, tariff) tuples for the reference (its natural per-row input).
Synthetic load shapes (seeded): a daily curve with noise; 80 % households, 15 % other
consumption, 5 % single-rate public lighting.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import date
from pathlib import Path

import numpy as np

from rating.calendar import local_midnight_epoch, month_bounds
from rating.catalog import Catalog
from rating.holidays import HolidayCalendar, brcko_holidays
from rating.reference_rater import reference_rate
from rating.tou import RatedBandPieces, rate_profile

REPO = Path(__file__).resolve().parent.parent
TARIFFS = ["EL-HH", "EL-OP", "EL-JR"]


def batch(meters: int, period: str, step: int, offset: int = 0) -> tuple[np.ndarray, ...]:
    """Intervals meter after meter, in time order (as a stream batch keyed by meter)."""
    first, nxt = month_bounds(period)
    t0, t1 = local_midnight_epoch(first) + offset, local_midnight_epoch(nxt) + offset
    starts = np.arange(t0, t1, step, dtype=np.int64)
    rng = np.random.default_rng(20260329)
    hour = (starts + 3600) // 3600 % 24
    evening, morning = np.exp(-(((hour - 20) / 3.0) ** 2)), np.exp(-(((hour - 8) / 2.0) ** 2))
    curve = 120 + 180 * evening + 90 * morning
    tariff = rng.choice(len(TARIFFS), size=meters, p=[0.80, 0.15, 0.05]).astype(np.int64)
    scale = rng.uniform(0.3, 3.0, size=meters)
    qty = np.rint(
        scale[:, None] * curve[None, :] * rng.gamma(4.0, 0.25, (meters, len(starts)))
    ).astype(np.int64)  # Wh per interval
    start = np.tile(starts, meters)
    return start, start + step, qty.ravel(), np.repeat(tariff, len(starts))


def check_agreement(got: RatedBandPieces, ref: list) -> None:
    p = got.pieces
    for name, values in (
        ("source", p.source), ("start_at", p.start_at), ("end_at", p.end_at), ("day", p.day),
        ("band", p.band), ("quantity_milli", p.quantity_milli), ("price_micro", got.price_micro),
        ("amount_nano", got.amount_nano),
    ):  # fmt: skip
        expected = np.fromiter((getattr(r, name) for r in ref), np.int64, len(ref))
        if len(values) != len(expected) or not np.array_equal(values, expected):
            raise AssertionError(f"vectorized and reference rating differ in {name}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--meters", type=int, default=700)
    ap.add_argument("--period", default="2026-03")
    ap.add_argument("--step", type=int, default=900, help="interval length in seconds")
    ap.add_argument(
        "--offset",
        type=int,
        default=0,
        help="shift the grid (0: aligned); "
        "e.g. 420 makes every fourth interval cross a whole hour and be split",
    )
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    catalog = Catalog.from_documents(json.loads((REPO / "app/demo/catalog.json").read_text()))
    year = month_bounds(args.period)[0].year
    holidays = brcko_holidays(range(year - 1, year + 2))
    calendar = HolidayCalendar.of(holidays)
    holiday_days: set[date] = {h.day for h in holidays}
    start, end, qty, tariff = batch(args.meters, args.period, args.step, args.offset)
    n = len(start)
    columns = (start.tolist(), end.tolist(), qty.tolist(), tariff.tolist())
    rows = [(s, e, q, TARIFFS[t]) for s, e, q, t in zip(*columns, strict=True)]

    # one untimed call each first: the engine's first call also builds the cached calendar
    # table (local midnights 2000–2079) and takes fresh memory from the OS; reported apart
    t = time.perf_counter()
    rate_profile(catalog, start, end, qty, tariff, TARIFFS, calendar)
    cold = time.perf_counter() - t
    reference_rate(catalog, rows[:10_000], holiday_days)
    wall: dict[str, list[float]] = {"vectorized": [], "reference": []}
    cpu: dict[str, list[float]] = {"vectorized": [], "reference": []}
    got = ref = None
    for _ in range(args.runs):  # interleaved, so that both see the same machine load
        t, c = time.perf_counter(), time.process_time()
        got = rate_profile(catalog, start, end, qty, tariff, TARIFFS, calendar)
        wall["vectorized"].append(time.perf_counter() - t)
        cpu["vectorized"].append(time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        ref = reference_rate(catalog, rows, holiday_days)
        wall["reference"].append(time.perf_counter() - t)
        cpu["reference"].append(time.process_time() - c)
    assert got is not None and ref is not None
    check_agreement(got, ref)

    total_km = int(got.amount_nano.sum()) / 1e9
    print(
        f"batch: {args.meters} meters × {n // args.meters} intervals of {args.step} s "
        f"({args.period}) = {n:,} intervals → {len(got.pieces.source):,} pieces; "
        f"{int(qty.sum()) / 1e6:,.1f} MWh, {total_km:,.2f} KM net (unrounded)"
    )
    print(f"first vectorized call in the process: {cold * 1000:.0f} ms (untimed below)")
    for name in ("vectorized", "reference"):
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(
            f"{name:>10}: {n / w / 1e6:7.3f} M intervals/s wall (median {w * 1000:,.0f} ms; runs "
            + ", ".join(f"{x * 1000:,.0f}" for x in wall[name])
            + f"), {n / c / 1e6:7.3f} M/s CPU (median {c * 1000:,.0f} ms)"
        )
    ratio_wall = statistics.median(wall["reference"]) / statistics.median(wall["vectorized"])
    ratio_cpu = statistics.median(cpu["reference"]) / statistics.median(cpu["vectorized"])
    print(
        f"ratio: {ratio_wall:.1f}× wall, {ratio_cpu:.1f}× CPU (medians over {args.runs} runs); "
        f"results identical: yes; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
