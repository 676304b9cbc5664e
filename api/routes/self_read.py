"""Self-read form (/ocitanje): the customer types what their meters show.

Each value becomes a read at the moment of sending (source ``self``) and goes through the
same chain as AMR reads: ``stream.pipeline.process_reads`` with channel ``portal``
(validation, rollover, rating, daily rollup, ``rejected_reads``), in one transaction.
Each register gets its own answer. Only the meters now installed at a metering point
where the customer has a contract for the meter's service can be read; fields naming
any other meter are ignored. A value that is not a number is named and nothing is sent,
the typed values stay in the form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import Conn, Now, Today
from api.i18n import Formats, text
from api.routes.pages import Form, Session, page_lang, redirect, render, same, session_csrf
from billing.accounts import service_key
from rating.calendar import LOCAL_TZ
from rating.money import parse_quantity_milli
from stream.pipeline import ReadOutcome, process_reads
from stream.vee import ACCEPTED, DUPLICATE, advance_milli
from stream.vee_rules import expected_unit

router = APIRouter(include_in_schema=False)
CHANNEL, SOURCE = "portal", "self"
_VALUE = re.compile(r"^([0-9]{1,12})(?:[.,]([0-9]{1,3}))?$")

_REGISTERS_SQL = """
SELECT DISTINCT m.meter_id, m.service, m.digits, r.register, mi.metering_point_id,
       mp.address, s.last_read_at, s.last_value_milli
FROM contracts c
JOIN metering_points mp ON mp.metering_point_id = c.metering_point_id
JOIN meter_installations mi ON mi.metering_point_id = c.metering_point_id
     AND mi.installed_at <= %(now)s AND (mi.removed_at IS NULL OR mi.removed_at > %(now)s)
JOIN meters m ON m.meter_id = mi.meter_id AND m.service = c.service
CROSS JOIN LATERAL unnest(m.registers) AS r(register)
LEFT JOIN meter_state s ON s.meter_id = m.meter_id AND s.register = r.register
WHERE c.customer_id = %(customer)s AND c.valid_from <= %(today)s
  AND (c.valid_to IS NULL OR c.valid_to >= %(today)s)
"""


@dataclass(frozen=True, slots=True)
class MeterRegister:
    meter_id: str
    service: str
    digits: int
    register: str
    metering_point_id: str
    address: str
    last_read_at: datetime | None
    last_value_milli: int | None

    @property
    def field(self) -> str:
        return f"r:{self.meter_id}:{self.register}"

    @property
    def last_read_day(self) -> date | None:
        return None if self.last_read_at is None else self.last_read_at.astimezone(LOCAL_TZ).date()

    @property
    def unit(self) -> str:
        return expected_unit(self.service, self.register) or "kWh"  # kW on 1.6.0


@dataclass(frozen=True, slots=True)
class Answer:
    status: str  # accepted | duplicate | rejected | invalid
    message: str


def customer_registers(
    conn: psycopg.Connection, customer_id: str, now: datetime, today: date
) -> list[MeterRegister]:
    """The registers the customer may read now, by service, meter and register."""
    rows = conn.execute(
        _REGISTERS_SQL, {"customer": customer_id, "now": now, "today": today}
    ).fetchall()
    found = [MeterRegister(str(r[0]), str(r[1]), int(r[2]), str(r[3]), str(r[4]), str(r[5]),
                           r[6], None if r[7] is None else int(r[7])) for r in rows]
    return sorted(found, key=lambda x: (service_key(x.service), x.meter_id, x.register))


def parse_value(typed: str) -> str | None:
    """'12 345,6' → '12345.6' (a plain decimal for the read contract); None if not a number."""
    match = _VALUE.match(typed.replace(" ", "").replace("\u00a0", ""))
    if match is None:
        return None
    whole, frac = match.groups()
    return f"{whole}.{frac}" if frac else whole


def explain(outcome: ReadOutcome, reg: MeterRegister, value: str, lang: str) -> Answer:
    """The pipeline's outcome for one register in the customer's words."""
    f = Formats(lang)
    milli = parse_quantity_milli(value)
    shown = f.qty(milli, reg.unit)
    if outcome.status == ACCEPTED:
        message = text(lang, "read_accepted", value=shown)
        if reg.last_value_milli is not None:
            advance = advance_milli(reg.last_value_milli, milli, reg.digits)
            if advance is not None:
                message += " " + text(lang, "read_advance", advance=f.qty(advance, reg.unit))
        return Answer(ACCEPTED, message)
    if outcome.status == DUPLICATE:
        return Answer(DUPLICATE, text(lang, "read_duplicate"))
    reason = outcome.reason or ""
    if reason.startswith("register went backwards") and reg.last_value_milli is not None:
        reason = text(lang, "reason_backwards", last=f.qty(reg.last_value_milli, reg.unit))
    elif reason.startswith("spike:"):
        reason = text(lang, "reason_spike")
    return Answer("rejected", text(lang, "read_rejected", reason=reason))


def _page(request: Request, session: tuple[str, str], registers: list[MeterRegister], *,
          typed: dict[str, str] | None = None, answers: dict[str, Answer] | None = None,
          message: str | None = None, status: int = 200) -> Response:
    meters: dict[str, list[MeterRegister]] = {}
    for reg in registers:
        meters.setdefault(reg.meter_id, []).append(reg)
    return render(request, "self_read.html", {
        "meters": list(meters.items()), "typed": typed or {}, "answers": answers or {},
        "message": message, "active": "self_read",
    }, status=status, session=session)


@router.get("/ocitanje")
def self_read_form(request: Request, session: Session, conn: Conn, now: Now,
                   today: Today) -> Response:
    if session is None:
        return redirect("/prijava")
    return _page(request, session, customer_registers(conn, session[0], now, today))


@router.post("/ocitanje")
def submit_reads(request: Request, form: Form, session: Session, conn: Conn, now: Now,
                 today: Today) -> Response:
    if session is None:
        return redirect("/prijava")
    registers = customer_registers(conn, session[0], now, today)
    lang = page_lang(request)
    if not same(form.get("csrf"), session_csrf(session[1])):
        return _page(request, session, registers, message="form_expired", status=403)
    typed = {r.field: form.get(r.field, "").strip()[:40] for r in registers}
    answers: dict[str, Answer] = {}
    values: dict[str, str] = {}
    for reg in registers:
        if typed[reg.field]:
            value = parse_value(typed[reg.field])
            if value is None:
                answers[reg.field] = Answer("invalid", text(lang, "read_invalid"))
            else:
                values[reg.field] = value
    if answers or not values:
        return _page(request, session, registers, typed=typed, answers=answers, status=400,
                     message=None if answers else "nothing_entered")
    read_at = now.astimezone(LOCAL_TZ).replace(microsecond=0).isoformat()
    chosen = [r for r in registers if r.field in values]
    payloads = [{"meter_id": r.meter_id, "register": r.register, "read_at": read_at,
                 "value": values[r.field], "unit": r.unit, "source": SOURCE} for r in chosen]
    with conn.transaction():
        # a typo of one digit must not bill a month: a self-read spike is refused, not flagged
        result = process_reads(conn, payloads, channel=CHANNEL, now=int(now.timestamp()),
                               reject_spikes=True)
    for reg, outcome in zip(chosen, result.outcomes, strict=True):
        answers[reg.field] = explain(outcome, reg, values[reg.field], lang)
    kept = {k: v for k, v in typed.items() if k in answers and answers[k].status == "rejected"}
    return _page(request, session, customer_registers(conn, session[0], now, today),
                 typed=kept, answers=answers)
