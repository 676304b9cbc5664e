"""Close time of one month for the demo data, against the plain aggregate query over the
same month (the floor any close must read through), measured in the same run.

    .venv/bin/python -m bench.close_time [--customers 2000] [--months 3] [--runs 3]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

import psycopg

from app.demo_data import demo_periods, generate_demo
from bench.common import fresh_database
from billing.closer import close_period
from ingest.file_import import import_document
from rating.calendar import month_bounds

AGGREGATE = """
SELECT c.customer_id, d.service, d.register, sum(d.quantity_milli), sum(d.amount_nano)
FROM daily_consumption d
JOIN contracts c ON c.metering_point_id = d.metering_point_id AND c.service = d.service
 AND d.local_day BETWEEN c.valid_from AND coalesce(c.valid_to, 'infinity')
WHERE d.local_day >= %s AND d.local_day < %s
GROUP BY 1, 2, 3
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--months", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    end = "2026-10"
    doc = generate_demo(customers=args.customers, months=args.months, end_period=end)
    with fresh_database() as url, psycopg.connect(url) as conn:
        started = time.perf_counter()
        import_document(conn, doc, now=int(datetime(2026, 11, 28, tzinfo=UTC).timestamp()))
        imported = time.perf_counter() - started
        for period in demo_periods(end, args.months)[:-1]:
            close_period(conn, period, issued_on=month_bounds(period)[1])
        first, nxt = month_bounds(end)
        aggregate, closes = [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            rows = conn.execute(AGGREGATE, (first, nxt)).fetchall()
            aggregate.append(time.perf_counter() - t)
            # each run closes inside a transaction that is rolled back afterwards
            t = time.perf_counter()
            res = close_period(conn, end, issued_on=nxt)
            closes.append(time.perf_counter() - t)
            conn.rollback()
            assert res.invoices_created == args.customers, res
    agg = sorted(aggregate)[len(aggregate) // 2]
    close = sorted(closes)[len(closes) // 2]
    print(
        f"demo data: {args.customers:,} customers, {args.months} months, imported in "
        f"{imported:.1f} s; aggregate rows: {len(rows):,}"
    )
    print(
        f"plain aggregate query over {end}: median {agg * 1000:.0f} ms  "
        f"(runs: {', '.join(f'{v * 1000:.0f}' for v in aggregate)})"
    )
    print(
        f"close of {end} ({args.customers:,} invoices): median {close * 1000:.0f} ms  "
        f"(runs: {', '.join(f'{v * 1000:.0f}' for v in closes)})"
    )
    print(f"close / aggregate: {close / agg:.1f}×; invoices/s: {args.customers / close:,.0f}")


if __name__ == "__main__":
    main()
