"""Customer self-service behind the portal (issue #6): CSV export, password change,
notification preferences and problem reports. Database work only; the caller owns the
transaction and passes the time in.

CSV: UTF-8 with a BOM, ``;`` as separator and a decimal comma, as Excel expects it in
Bosnian locales. A text cell starting with ``= + - @`` (or tab / carriage return) gets a
leading apostrophe so a spreadsheet never evaluates it as a formula (CWE-1236).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime

import psycopg

from api.security import hash_password
from billing.accounts import consumption_series, invoice_states
from rating.money import format_km, format_quantity

EXPORT_MONTHS = 60
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
EVENTS = ("invoice_issued", "payment_received", "reminder")
CHANNELS = ("email", "sms")
DEFAULT_PREFS = {"email": True, "sms": False}
CATEGORIES = ("meter", "invoice", "supply", "other")
STATUSES = ("new", "in_progress", "resolved")
MAX_REPORT = 2000
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


# ---- CSV export ----------------------------------------------------------------------


def safe_cell(value: str) -> str:
    """A text cell that a spreadsheet shows as text, never evaluates."""
    return "'" + value if value.startswith(_FORMULA) else value


def comma(decimal_text: str) -> str:
    """'1234.50' → '1234,50' (no thousands separator, so Excel reads a number)."""
    return decimal_text.replace(".", ",")


def export_csv(conn: psycopg.Connection, customer_id: str, today: date) -> str:
    """Consumption by month and service, then the invoices, of one customer."""
    out = io.StringIO()
    w = csv.writer(out, delimiter=";", lineterminator="\r\n")
    w.writerow(["potrosnja"])
    w.writerow(["mjesec", "usluga", "kolicina", "jedinica", "iznos_km_sa_pdv"])
    for period, service, month in consumption_series(conn, customer_id, EXPORT_MONTHS):
        w.writerow([period, safe_cell(service), comma(format_quantity(month.quantity_milli)),
                    safe_cell(month.unit), comma(format_km(month.amount_fen))])
    w.writerow([])
    w.writerow(["racuni"])
    w.writerow(["broj", "period", "izdat", "dospijeva", "iznos_km", "placeno_km", "status"])
    for s in invoice_states(conn, customer_id, today):
        w.writerow([safe_cell(s.number), s.period, s.issued_on.isoformat(),
                    s.due_on.isoformat(), comma(format_km(s.total_fen)),
                    comma(format_km(s.covered_fen)), safe_cell(s.status)])
    return "\ufeff" + out.getvalue()


# ---- password ------------------------------------------------------------------------


def new_password_problem(new: str, repeat: str) -> str | None:
    """An i18n key naming what is wrong with the new password, else None."""
    if len(new) < MIN_PASSWORD:
        return "pw_too_short"
    if len(new) > MAX_PASSWORD:
        return "pw_too_long"
    if new != repeat:
        return "pw_mismatch"
    return None


def set_password(conn: psycopg.Connection, customer_id: str, new: str) -> None:
    """Store an argon2id hash and end every session of the customer (the caller opens a
    fresh one for the browser that made the change)."""
    conn.execute("UPDATE customers SET password_hash = %s WHERE customer_id = %s",
                 (hash_password(new), customer_id))
    conn.execute("DELETE FROM portal_sessions WHERE customer_id = %s", (customer_id,))


# ---- notification preferences -----------------------------------------------------------


def preferences(conn: psycopg.Connection, customer_id: str) -> dict[tuple[str, str], bool]:
    """(event, channel) → enabled; defaults (e-mail on, SMS off) where nothing is saved."""
    prefs = {(e, c): DEFAULT_PREFS[c] for e in EVENTS for c in CHANNELS}
    for event, channel, enabled in conn.execute(
        "SELECT event, channel, enabled FROM notification_preferences WHERE customer_id = %s",
        (customer_id,),
    ).fetchall():
        prefs[(str(event), str(channel))] = bool(enabled)
    return prefs


def save_preferences(conn: psycopg.Connection, customer_id: str,
                     chosen: set[tuple[str, str]], now: datetime) -> None:
    """Every (event, channel) in ``chosen`` on, every other off."""
    for e in EVENTS:
        for c in CHANNELS:
            conn.execute(
                """INSERT INTO notification_preferences
                       (customer_id, event, channel, enabled, updated_at)
                   VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (customer_id, event, channel) DO UPDATE
                   SET enabled = EXCLUDED.enabled, updated_at = EXCLUDED.updated_at""",
                (customer_id, e, c, (e, c) in chosen, now),
            )


# ---- problem reports -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Report:
    report_id: int
    category: str
    body: str
    metering_point_id: str | None
    status: str
    created_at: datetime
    updated_at: datetime


def customer_points(conn: psycopg.Connection, customer_id: str) -> list[tuple[str, str]]:
    """(metering point, address) of every contract the customer has or had."""
    rows = conn.execute(
        """SELECT DISTINCT mp.metering_point_id, mp.address FROM contracts c
           JOIN metering_points mp USING (metering_point_id)
           WHERE c.customer_id = %s ORDER BY 1""", (customer_id,)).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def report_problem(category: str, body: str, point: str, points: list[str]) -> dict[str, str]:
    """Field → i18n key of what is wrong with a report (empty when it can be stored)."""
    errors: dict[str, str] = {}
    if category not in CATEGORIES:
        errors["category"] = "required"
    if not body.strip():
        errors["body"] = "required"
    elif len(body) > MAX_REPORT:
        errors["body"] = "report_too_long"
    if point and point not in points:
        errors["metering_point_id"] = "report_bad_point"
    return errors


def add_report(conn: psycopg.Connection, customer_id: str, category: str, body: str,
               point: str | None, now: datetime) -> int:
    row = conn.execute(
        """INSERT INTO customer_reports (customer_id, category, body, metering_point_id,
                                         created_at, updated_at)
           VALUES (%s, %s, %s, %s, %s, %s) RETURNING report_id""",
        (customer_id, category, body.strip(), point or None, now, now),
    ).fetchone()
    assert row is not None
    return int(row[0])


def customer_reports(conn: psycopg.Connection, customer_id: str) -> list[Report]:
    rows = conn.execute(
        """SELECT report_id, category, body, metering_point_id, status, created_at, updated_at
           FROM customer_reports WHERE customer_id = %s
           ORDER BY created_at DESC, report_id DESC""", (customer_id,)).fetchall()
    return [Report(int(r[0]), str(r[1]), str(r[2]), r[3], str(r[4]), r[5], r[6]) for r in rows]


def move_report(conn: psycopg.Connection, report_id: int, status: str, operator: str,
                now: datetime) -> str | None:
    """Advance a report (new → in_progress → resolved, never back); its old status, None
    when there is no such report. ValueError for an unknown status or a step back."""
    if status not in STATUSES:
        raise ValueError(f"status: must be one of {', '.join(STATUSES)}")
    row = conn.execute("SELECT status FROM customer_reports WHERE report_id = %s FOR UPDATE",
                       (report_id,)).fetchone()
    if row is None:
        return None
    old = str(row[0])
    if STATUSES.index(status) < STATUSES.index(old):
        raise ValueError(f"status: a report that is {old} cannot go back to {status}")
    conn.execute("""UPDATE customer_reports SET status = %s, updated_at = %s, updated_by = %s
                    WHERE report_id = %s""", (status, now, operator, report_id))
    return old
