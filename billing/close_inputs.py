"""What a close reads, and the SQL that reads it: contracts, overlaps, price breaks, the
month's consumption (from the stream's month-to-date totals where they suffice, see
`_load_month_totals`), maximum demand and the unbilled days. Split out of
`billing.closer`, which re-exports these names."""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import date, timedelta
from typing import Any

import psycopg

from billing.calculation import ContractInput, DailyConsumption
from rating import RatingError
from rating.catalog import Catalog, TariffVersion

_NOT_INVOICED = """NOT EXISTS (SELECT 1 FROM invoices i WHERE i.customer_id = c.customer_id
                                  AND i.period = %(period)s AND i.kind = 'invoice')"""
_ACTIVE = "c.valid_from < %(end)s AND (c.valid_to IS NULL OR c.valid_to >= %(first)s)"

_CONTRACTS = f"""
SELECT c.customer_id, c.contract_id, c.metering_point_id, c.service, c.tariff_code,
       c.valid_from, c.valid_to, m.area_m2, m.household_members
FROM contracts c JOIN metering_points m USING (metering_point_id)
WHERE {_ACTIVE} AND {_NOT_INVOICED}
"""

# Two contracts (of any customers) on the same metering point and service on the same day
# would bill the same consumption twice: those customers are held back, with the reason.
_OVERLAPS = f"""
SELECT c.customer_id, b.customer_id, c.contract_id, b.contract_id, c.metering_point_id,
       c.service
FROM contracts c
JOIN contracts b ON b.metering_point_id = c.metering_point_id AND b.service = c.service
     AND b.contract_id > c.contract_id
     AND daterange(c.valid_from, c.valid_to, '[]') && daterange(b.valid_from, b.valid_to, '[]')
     AND b.valid_from < %(end)s AND (b.valid_to IS NULL OR b.valid_to >= %(first)s)
WHERE {_ACTIVE}
"""

# Grouped per contract, register and price bucket: `breaks` are the days on which some
# tariff in use starts a new version or changes season inside the month.
_CONSUMPTION = f"""
SELECT c.customer_id, c.metering_point_id, c.service, d.register, min(d.local_day),
       sum(d.quantity_milli)::bigint
FROM daily_consumption d
JOIN contracts c ON c.metering_point_id = d.metering_point_id AND c.service = d.service
     AND d.local_day >= c.valid_from AND (c.valid_to IS NULL OR d.local_day <= c.valid_to)
WHERE d.local_day >= %(first)s AND d.local_day < %(end)s AND {_NOT_INVOICED}
GROUP BY c.contract_id, d.register, width_bucket(d.local_day, %(breaks)s::date[])
"""

# The same result as `_CONSUMPTION`, cheaper: the day rows are first summed per metering
# point, service, register and *cut* (a run of days between two days on which a price
# bucket or any contract starts or ends), so that only those sums are joined with the
# contracts and grouped again per price bucket. Within a cut every contract covers all days
# or none, so each sum lands in the contract its days would. The cuts are computed in the
# same statement (same snapshot as the join); `width_bucket` needs them sorted.
# The last row (customer NULL) is `_UNBILLED` from the same sums: each carries the days
# with consumption as bits of a mask, and no contract covers a cut in part.
_CONSUMPTION_CLOSE = """
WITH cuts AS (
    SELECT array_agg(x ORDER BY x) AS days FROM (
        SELECT unnest(%(breaks)s::date[]) AS x
        UNION SELECT valid_from FROM contracts
              WHERE valid_from > %(first)s AND valid_from < %(end)s
        UNION SELECT valid_to + 1 FROM contracts
              WHERE valid_to >= %(first)s AND valid_to + 1 < %(end)s) AS t
), d AS MATERIALIZED (
    SELECT metering_point_id, service, register, min(local_day) AS local_day,
           sum(quantity_milli)::bigint AS quantity_milli,
           width_bucket(local_day, (SELECT days FROM cuts)) AS cut,
           bit_or(CASE WHEN quantity_milli <> 0 THEN 1::bigint << (local_day - %(first)s)
                       ELSE 0 END) AS days_used
    FROM daily_consumption
    WHERE local_day >= %(first)s AND local_day < %(end)s
    GROUP BY metering_point_id, service, register, cut
)
SELECT c.customer_id, c.metering_point_id, c.service, d.register, min(d.local_day),
       sum(d.quantity_milli)::bigint
FROM d
JOIN contracts c ON c.metering_point_id = d.metering_point_id AND c.service = d.service
     AND d.local_day >= c.valid_from AND (c.valid_to IS NULL OR d.local_day <= c.valid_to)
WHERE c.customer_id NOT IN (SELECT i.customer_id FROM invoices i
                            WHERE i.period = %(period)s AND i.kind = 'invoice')
GROUP BY c.contract_id, d.register, width_bucket(d.local_day, %(breaks)s::date[])
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, coalesce(sum(bit_count(u.days::bit(64))), 0)::bigint
FROM (SELECT bit_or(d.days_used) AS days FROM d
      WHERE NOT EXISTS (
          SELECT 1 FROM contracts c
          WHERE c.metering_point_id = d.metering_point_id AND c.service = d.service
            AND d.local_day >= c.valid_from AND (c.valid_to IS NULL OR d.local_day <= c.valid_to))
      GROUP BY d.metering_point_id, d.service, d.cut) AS u
"""
# (`NOT IN` over a NOT NULL column is `_NOT_INVOICED`, planned as a hashed subplan within
# the close's work_mem; the anti-join became a nested loop over every invoice of the period
# — 70 s for 20,000 accounts — when the statistics had not yet seen a first close's invoices)

# The month-to-date totals kept by the stream (`monthly_consumption`, migration 0025) per
# metering point, service and register, with the customer whose contract alone covers the
# (metering point, service) from the first to the last day of the month; NULL: none does
# (no contract, one starting or ending inside the month, several) and the per-day path
# must price those days. Rows of customers already invoiced for the period are left out.
_MONTH_TOTALS = f"""
WITH whole AS (
    SELECT c.metering_point_id, c.service, min(c.customer_id) AS customer_id
    FROM contracts c
    WHERE {_ACTIVE}
    GROUP BY c.metering_point_id, c.service
    HAVING count(*) = 1 AND min(c.valid_from) <= %(first)s
       AND bool_and(c.valid_to IS NULL OR c.valid_to >= %(end)s::date - 1)
)
SELECT w.customer_id, m.metering_point_id, m.service, m.register, m.first_day,
       m.quantity_milli
FROM monthly_consumption m
LEFT JOIN whole w ON w.metering_point_id = m.metering_point_id AND w.service = m.service
WHERE m.month = %(first)s
  AND (w.customer_id IS NULL
       OR w.customer_id NOT IN (SELECT i.customer_id FROM invoices i
                                WHERE i.period = %(period)s AND i.kind = 'invoice'))
"""
# The per-day path of the pairs `_MONTH_TOTALS` leaves open: `_CONSUMPTION_CLOSE` over
# their days only (an index path on daily_consumption's primary key).
_PAIRS = """JOIN unnest(%(mps)s::text[], %(services)s::text[]) AS p(mp, sv)
         ON p.mp = metering_point_id AND p.sv = service"""
_CONSUMPTION_OF_PAIRS = _CONSUMPTION_CLOSE.replace(
    "    FROM daily_consumption\n    WHERE local_day",
    f"    FROM daily_consumption\n    {_PAIRS}\n    WHERE local_day")
assert _CONSUMPTION_OF_PAIRS != _CONSUMPTION_CLOSE
OPEN_PAIRS_MAX = 0.2  # share of the month's rows on the per-day path; more: `_load_month`

# The month's maximum demand per contract and register: non-cumulative reads (1.6.0, kW)
# of the meters installed at the metering point, × the meter's multiplier. A read belongs
# to the interval that ends at it, so a contract's reads in the month are those after the
# local midnight that starts its first day up to and including the midnight that ends its
# last (the billing reset read at 00:00 on the 1st is the previous month's maximum). The
# row's day is the local day of the first such read (it only places the row in a contract).
_DEMAND = f"""
SELECT c.customer_id, c.metering_point_id, c.service, r.register,
       ((min(r.first_at) - interval '1 second') AT TIME ZONE 'Europe/Sarajevo')::date,
       max(r.peak * m.multiplier)::bigint
FROM contracts c
JOIN meter_installations i ON i.metering_point_id = c.metering_point_id
JOIN meters m ON m.meter_id = i.meter_id AND m.service = c.service
CROSS JOIN LATERAL (
    SELECT greatest(c.valid_from, %(first)s)::timestamp AT TIME ZONE 'Europe/Sarajevo' AS lo,
           least(c.valid_to + 1, %(end)s)::timestamp AT TIME ZONE 'Europe/Sarajevo' AS hi
) b
JOIN LATERAL (
    SELECT x.register, max(x.value_milli) AS peak, min(x.read_at) AS first_at
    FROM readings x
    WHERE x.meter_id = i.meter_id AND x.register = ANY(%(registers)s)
      AND x.read_at > b.lo AND x.read_at <= b.hi AND x.read_at >= i.installed_at
      AND x.read_at <= coalesce(i.removed_at, 'infinity')
    GROUP BY x.register
) r ON true
WHERE (%(tariffs)s::text[] IS NULL OR c.tariff_code = ANY(%(tariffs)s)) AND {_ACTIVE}
  AND {_NOT_INVOICED}
  AND (%(customers)s::text[] IS NULL OR c.customer_id = ANY(%(customers)s))
GROUP BY c.contract_id, r.register
"""

_UNBILLED = """
SELECT count(*) FROM (
    SELECT DISTINCT d.metering_point_id, d.service, d.local_day
    FROM daily_consumption d
    WHERE d.local_day >= %(first)s AND d.local_day < %(end)s AND d.quantity_milli <> 0
      AND NOT EXISTS (
          SELECT 1 FROM contracts c
          WHERE c.metering_point_id = d.metering_point_id AND c.service = d.service
            AND d.local_day >= c.valid_from AND (c.valid_to IS NULL OR d.local_day <= c.valid_to))
) AS days
"""


class _CachedCatalog(Catalog):
    """The catalog with its look-ups memoized for one close (it cannot change meanwhile)."""

    def __init__(self, base: Catalog) -> None:
        super().__init__(base.versions)
        self._on: dict[tuple[str, date], TariffVersion] = {}
        self._between: dict[tuple[str, date, date], list[TariffVersion]] = {}

    def version_on(self, tariff_code: str, day: date) -> TariffVersion:
        key = (tariff_code, day)
        found = self._on.get(key)
        if found is None:
            found = self._on[key] = super().version_on(tariff_code, day)
        return found

    def versions_between(self, tariff_code: str, first: date, end: date) -> list[TariffVersion]:
        key = (tariff_code, first, end)
        found = self._between.get(key)
        if found is None:
            found = self._between[key] = super().versions_between(tariff_code, first, end)
        return found



def _scalar(conn: psycopg.Connection, query: str, params: Any) -> int:
    row = conn.execute(query, params).fetchone()
    return int(row[0]) if row else 0


def _load_contracts(conn: psycopg.Connection, args: dict[str, object]
                    ) -> dict[str, list[ContractInput]]:
    out: dict[str, list[ContractInput]] = defaultdict(list)
    for customer_id, *rest in conn.execute(_CONTRACTS, args):
        out[customer_id].append(ContractInput(*rest))
    return out


def _overlapping(conn: psycopg.Connection, args: dict[str, object]) -> dict[str, str]:
    out: dict[str, str] = {}
    for cust_a, cust_b, con_a, con_b, mp, service in conn.execute(_OVERLAPS, args):
        why = f"contracts {con_a} and {con_b} overlap on metering point {mp} ({service})"
        out.setdefault(cust_a, why)
        out.setdefault(cust_b, why)
    return out


def _price_breaks(catalog: Catalog, contracts: dict[str, list[ContractInput]], first: date,
                  end: date) -> list[date]:
    """The first day of the month and every day on which a tariff in use starts a new
    version or changes which components apply (season). Between two breaks every day of a
    tariff is priced alike, so its consumption can be summed before pricing; a tiered or
    reactive component changing on the 15th gets the days before and after apart."""
    tariffs = {c.tariff_code for cs in contracts.values() for c in cs}
    breaks = {first}
    for tariff in tariffs:
        previous: object = None
        day = first
        while day < end:
            try:
                v = catalog.version_on(tariff, day)
                key: object = (v.valid_from,
                               tuple(c.code for c in v.components if c.applies_on(day)))
            except RatingError:
                key = None  # the calculation names the missing version
            if day > first and key != previous:
                breaks.add(day)
            previous = key
            day += timedelta(days=1)
    return sorted(breaks)


def _load_consumption(conn: psycopg.Connection, args: dict[str, object], breaks: list[date],
                      *, whole_month: bool = False) -> dict[str, list[DailyConsumption]]:
    """customer → consumption per contract, register and price bucket. `whole_month`: the
    close's query, cheaper when most of the month's rows are wanted (it sums every metering
    point's month before joining the contracts)."""
    if whole_month:
        return _load_month(conn, args, breaks)[0]
    out: dict[str, list[DailyConsumption]] = defaultdict(list)
    for customer_id, *rest in conn.execute(_CONSUMPTION, {**args, "breaks": breaks}):
        out[customer_id].append(DailyConsumption(*rest))
    return out


def _load_month(conn: psycopg.Connection, args: dict[str, object], breaks: list[date]
                ) -> tuple[dict[str, list[DailyConsumption]], int]:
    """`_load_consumption(whole_month=True)` and the unbilled days (`_UNBILLED`), in one
    pass over the month."""
    out: dict[str, list[DailyConsumption]] = defaultdict(list)
    unbilled = 0
    # room for the hashed `NOT IN` (else a subplan rescanned per row) in the preview too
    conn.execute("SET LOCAL work_mem = '256MB'")
    for customer_id, *rest in conn.execute(_CONSUMPTION_CLOSE, {**args, "breaks": breaks}):
        if customer_id is None:
            unbilled = int(rest[-1])
        else:
            out[customer_id].append(DailyConsumption(*rest))
    return out, unbilled


def _load_demand(conn: psycopg.Connection, args: dict[str, object], catalog: Catalog,
                 contracts: dict[str, list[ContractInput]], first: date, end: date,
                 customers: list[str] | None = None) -> dict[str, list[DailyConsumption]]:
    """customer → the maximum demand per contract and register (a `DailyConsumption` whose
    quantity is the month's maximum, its day the first with a read), for the contracts on
    tariffs with a ``billing_power`` component; no query when no tariff in use has one.
    With `customers` (a rate check, a simulation under another tariff): theirs, whatever
    their tariff."""
    tariffs: set[str] = set()
    registers: set[str] = set()
    codes = set(catalog.versions) if customers is not None else {
        c.tariff_code for cs in contracts.values() for c in cs}
    for code in codes:
        for version in catalog.versions_between(code, first, end):
            for comp in version.components_of_kind("billing_power"):
                tariffs.add(code)
                registers.update(comp.registers)
    out: dict[str, list[DailyConsumption]] = defaultdict(list)
    if not tariffs:
        return out
    params = {**args, "tariffs": None if customers is not None else sorted(tariffs),
              "registers": sorted(registers), "customers": customers}
    for customer_id, *rest in conn.execute(_DEMAND, params):
        out[customer_id].append(DailyConsumption(*rest))
    return out


class MonthTotalsAhead:
    """`_MONTH_TOTALS` read on a second connection, in a thread, while the close reads its
    contracts on its own: the two queries and their decoding overlap. Only for a close that
    owns its transaction (everything it reads is committed, so another connection sees
    it); its own statements, too, each see what was committed when they began."""

    def __init__(self, conn: psycopg.Connection, args: dict[str, Any]) -> None:
        self._rows: list[tuple[Any, ...]] | None = None
        self._thread = threading.Thread(
            target=self._read, args=(conn.info.dsn, conn.info.password, args),
            name="close-month-totals", daemon=True)
        self._thread.start()

    def _read(self, dsn: str, password: str | None, args: dict[str, Any]) -> None:
        try:
            with psycopg.connect(dsn, password=password, autocommit=True) as other:
                other.execute("SET work_mem = '256MB'")  # the hashed `NOT IN`
                self._rows = other.execute(_MONTH_TOTALS, args).fetchall()
        except psycopg.Error:
            self._rows = None  # the close reads them on its own connection instead

    def rows(self) -> list[tuple[Any, ...]] | None:
        """The rows once read; None if the second connection failed."""
        self._thread.join()
        return self._rows


def _load_month_totals(conn: psycopg.Connection, args: dict[str, Any], breaks: list[date],
                       *, ahead: MonthTotalsAhead | None = None
                       ) -> tuple[dict[str, list[DailyConsumption]], int]:
    """`_load_month`, from the stream's month-to-date totals where they give the same rows:
    a (metering point, service) covered by one contract all month, in a month without a
    price break (one bucket: the total of the month, its day the first with a row, as
    ``min(local_day)`` gives), has no unbilled day either. The other pairs go the per-day
    path, theirs only; if they hold more than `OPEN_PAIRS_MAX` of the month's rows, or
    the month has price breaks, the whole month goes `_load_month`."""
    if breaks != [args["first"]]:
        return _load_month(conn, args, breaks)
    conn.execute("SET LOCAL work_mem = '256MB'")  # the hashed `NOT IN`, as in `_load_month`
    out: dict[str, list[DailyConsumption]] = defaultdict(list)
    open_pairs: dict[tuple[str, str], None] = {}
    rows = open_rows = 0
    totals = ahead.rows() if ahead is not None else None
    if totals is None:
        totals = conn.execute(_MONTH_TOTALS, args).fetchall()
    for customer_id, mp, service, register, day, qty in totals:
        rows += 1
        if customer_id is None:
            open_rows += 1
            open_pairs[mp, service] = None
        else:
            out[customer_id].append(DailyConsumption(mp, service, register, day, qty))
    if not open_pairs:
        return out, 0
    if open_rows > OPEN_PAIRS_MAX * rows:
        return _load_month(conn, args, breaks)
    unbilled = 0
    params = {**args, "breaks": breaks, "mps": [p[0] for p in open_pairs],
              "services": [p[1] for p in open_pairs]}
    for customer_id, *rest in conn.execute(_CONSUMPTION_OF_PAIRS, params):
        if customer_id is None:
            unbilled = int(rest[-1])
        else:
            out[customer_id].append(DailyConsumption(*rest))
    return out, unbilled
