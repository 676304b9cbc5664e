"""Read-only queries behind the operator screens: city-wide consumption, pipeline health,
metering points as GeoJSON, customer search and the clerk's view of one customer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from billing.accounts import InvoiceState, account_balance_fen, invoice_states

SEARCH_LIMIT = 50
LAST_READS = 20


@dataclass(frozen=True)
class Health:
    reads_last_hour: int
    rejected_by_reason: list[tuple[str, int]]
    dead_letters_last_hour: int
    last_ingest_at: datetime | None
    open_alerts: int


def _rows(conn: psycopg.Connection, sql: str, args: Any = None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, args).fetchall()


def table_exists(conn: psycopg.Connection, name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def city_hourly(conn: psycopg.Connection, now: datetime, hours: int = 24
                ) -> dict[str, list[tuple[datetime, int]]]:
    """Per service, the quantity (thousandths) of each of the last ``hours`` whole hours."""
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(hours=hours)
    found: dict[tuple[str, datetime], int] = {}
    for svc, hour, qty in conn.execute(
        "SELECT service, hour_start, sum(quantity_milli)::bigint FROM consumption_hourly"
        " WHERE hour_start >= %s AND hour_start < %s GROUP BY 1, 2", (start, end),
    ):
        found[(svc, hour)] = int(qty)
    out: dict[str, list[tuple[datetime, int]]] = {}
    for svc in sorted({k[0] for k in found}):
        out[svc] = [(start + timedelta(hours=i), found.get((svc, start + timedelta(hours=i)), 0))
                    for i in range(hours)]
    return out


def open_alerts_count(conn: psycopg.Connection) -> int:
    if not table_exists(conn, "meter_alerts"):
        return 0
    row = conn.execute("SELECT count(*) FROM meter_alerts WHERE state <> 'closed'").fetchone()
    return int(row[0]) if row else 0


def pipeline_health(conn: psycopg.Connection, now: datetime) -> Health:
    hour_ago = now - timedelta(hours=1)
    reads_row = conn.execute(
        "SELECT count(*) FROM readings WHERE received_at > %s AND received_at <= %s",
        (hour_ago, now)).fetchone()
    rejected = [(str(r), int(n)) for r, n in conn.execute(
        "SELECT reason, count(*) FROM rejected_reads WHERE received_at > %s AND received_at <= %s"
        " GROUP BY 1 ORDER BY 2 DESC, 1", (hour_ago, now))]
    last_row = conn.execute("SELECT max(received_at) FROM readings").fetchone()
    return Health(
        reads_last_hour=int(reads_row[0]) if reads_row else 0,
        rejected_by_reason=rejected,
        dead_letters_last_hour=sum(n for _r, n in rejected),
        last_ingest_at=last_row[0] if last_row else None,
        open_alerts=open_alerts_count(conn),
    )


def metering_points_geojson(conn: psycopg.Connection) -> dict[str, Any]:
    """A GeoJSON FeatureCollection (RFC 7946: coordinates are [longitude, latitude])."""
    alerts = ("(SELECT count(*) FROM meter_alerts a WHERE a.metering_point_id ="
              " m.metering_point_id AND a.state <> 'closed')"
              if table_exists(conn, "meter_alerts") else "0")
    rows = _rows(conn, f"""
        SELECT m.metering_point_id AS id, m.address, m.longitude, m.latitude,
               coalesce((SELECT array_agg(DISTINCT c.service ORDER BY c.service) FROM contracts c
                         WHERE c.metering_point_id = m.metering_point_id), '{{}}') AS services,
               EXISTS (SELECT 1 FROM meter_installations i
                       WHERE i.metering_point_id = m.metering_point_id
                         AND i.removed_at IS NULL) AS metered,
               {alerts} AS open_alerts
        FROM metering_points m
        WHERE m.longitude IS NOT NULL AND m.latitude IS NOT NULL
        ORDER BY m.metering_point_id""")
    features = [{
        "type": "Feature",
        "id": r["id"],
        "geometry": {"type": "Point",
                     "coordinates": [float(r["longitude"]), float(r["latitude"])]},
        "properties": {
            "metering_point_id": r["id"], "address": r["address"],
            "services": list(r["services"]),
            "service": r["services"][0] if len(r["services"]) == 1 else
            ("mixed" if r["services"] else "none"),
            "state": "metered" if r["metered"] else "unmetered",
            "open_alerts": int(r["open_alerts"]),
        },
    } for r in rows]
    return {"type": "FeatureCollection", "features": features}


def search_customers(conn: psycopg.Connection, query: str) -> list[dict[str, Any]]:
    """By customer ID prefix, name or address (case-insensitive), or metering point ID."""
    q = query.strip()[:100]
    if not q:
        return []
    like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return _rows(conn, """
        SELECT c.customer_id, c.name, c.kind, c.address
        FROM customers c
        WHERE c.customer_id LIKE %(prefix)s OR c.name ILIKE %(like)s OR c.address ILIKE %(like)s
           OR EXISTS (SELECT 1 FROM contracts k JOIN metering_points m USING (metering_point_id)
                      WHERE k.customer_id = c.customer_id
                        AND (m.metering_point_id ILIKE %(like)s OR m.address ILIKE %(like)s))
        ORDER BY c.customer_id LIMIT %(limit)s""",
        {"prefix": like[1:], "like": like, "limit": SEARCH_LIMIT})


@dataclass
class CustomerFile:
    customer: dict[str, Any]
    balance_fen: int
    contracts: list[dict[str, Any]]
    meters: list[dict[str, Any]]
    reads: list[dict[str, Any]]
    invoices: list[InvoiceState]
    payments: list[dict[str, Any]]
    collection: dict[str, Any] | None
    steps: list[dict[str, Any]]
    legal_cases: list[dict[str, Any]]


def customer_file(conn: psycopg.Connection, customer_id: str, today: date
                  ) -> CustomerFile | None:
    found = _rows(conn, "SELECT customer_id, name, kind, address, email, phone FROM customers"
                  " WHERE customer_id = %s", (customer_id,))
    if not found:
        return None
    args = {"c": customer_id, "n": LAST_READS}
    contracts = _rows(conn, """
        SELECT k.contract_id, k.service, k.tariff_code, k.valid_from, k.valid_to,
               k.metering_point_id, m.address
        FROM contracts k JOIN metering_points m USING (metering_point_id)
        WHERE k.customer_id = %(c)s ORDER BY k.valid_from, k.contract_id""", args)
    meters = _rows(conn, """
        SELECT DISTINCT i.meter_id, t.service, i.metering_point_id, i.installed_at, i.removed_at
        FROM meter_installations i JOIN meters t USING (meter_id)
        WHERE i.metering_point_id IN (SELECT metering_point_id FROM contracts
                                      WHERE customer_id = %(c)s)
        ORDER BY i.meter_id, i.installed_at""", args)
    reads = _rows(conn, """
        (SELECT r.meter_id, r.register, r.read_at::text AS read_at, r.value_milli, r.unit,
                r.source, r.received_at, 'accepted' AS status, NULL AS reason
         FROM readings r WHERE r.meter_id IN (SELECT i.meter_id FROM meter_installations i
              JOIN contracts k USING (metering_point_id) WHERE k.customer_id = %(c)s)
         ORDER BY r.read_at DESC LIMIT %(n)s)
        UNION ALL
        (SELECT j.meter_id, j.register, j.read_at, NULL, NULL, NULL, j.received_at,
                'rejected', j.reason
         FROM rejected_reads j WHERE j.meter_id IN (SELECT i.meter_id FROM meter_installations i
              JOIN contracts k USING (metering_point_id) WHERE k.customer_id = %(c)s)
         ORDER BY j.received_at DESC LIMIT %(n)s)
        ORDER BY received_at DESC, read_at DESC LIMIT %(n)s""", args)
    payments = _rows(conn, "SELECT payment_id, paid_on, amount_fen, reference, channel"
                     " FROM payments WHERE customer_id = %(c)s ORDER BY paid_on DESC,"
                     " payment_id LIMIT 50", args)
    collection, steps, cases = None, [], []
    if table_exists(conn, "collection_accounts"):
        got = _rows(conn, "SELECT stage, stage_on, disconnected FROM collection_accounts"
                    " WHERE customer_id = %(c)s", args)
        collection = got[0] if got else None
        steps = _rows(conn, "SELECT step, step_on, overdue_fen, days_overdue FROM"
                      " collection_steps WHERE customer_id = %(c)s"
                      " ORDER BY step_on DESC, step_id DESC LIMIT 10", args)
    if table_exists(conn, "legal_cases"):
        cases = _rows(conn, "SELECT case_id, court, case_number, filed_on, state, state_on,"
                      " principal_fen FROM legal_cases WHERE customer_id = %(c)s"
                      " ORDER BY filed_on DESC", args)
    return CustomerFile(found[0], account_balance_fen(conn, customer_id), contracts, meters,
                        reads, invoice_states(conn, customer_id, today), payments,
                        collection, steps, cases)
