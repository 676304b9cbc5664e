"""Legal cases (tužbe) and the charges collections book on a customer's account.

A case is opened by the collections ladder (state ``filed``, claiming the overdue
principal and the interest accrued that day) and then follows the court:
filed → judgment → enforcement → collected | settled | written_off (a closing state can be
reached from any open one). Court fees and lawyer costs are paid by the utility and
claimed from the debtor: one entry debits legal costs (expense) and credits the bank, and
debits the customer's receivables and credits recovered costs (revenue). A write-off books
the customer's whole open amount (invoices and charges less credits): debit write-off
expense, credit receivables; it is a credit on the account from then on.

Charges are booked as ledger entries of kind ``adjustment`` whose source document is the
charge id (KAM-… interest, PRK-… reconnection, TRS-… court costs, OTP-… write-off), so a
charge is booked once. Functions write in the caller's transaction and commit nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import psycopg

from billing import BillingError
from billing.aging import age_items, load_items
from billing.collections import Ladder, chart_with, load_ladder
from billing.ledger import Chart, EntryDraft, LineDraft, load_chart
from billing.ledger_posting import post_entries

OPEN_STATES = ("filed", "judgment", "enforcement")
CLOSED_STATES = ("collected", "settled", "written_off")
TRANSITIONS = {
    "filed": ("judgment", *CLOSED_STATES),
    "judgment": ("enforcement", *CLOSED_STATES),
    "enforcement": CLOSED_STATES,
}
COST_KINDS = ("court_fee", "lawyer_fee")


@dataclass(frozen=True, slots=True)
class Case:
    case_id: int
    customer_id: str
    court: str
    case_number: str | None
    filed_on: date
    state: str
    state_on: date
    principal_fen: int
    interest_fen: int
    costs_fen: int


_CASE_COLUMNS = ("case_id, customer_id, court, case_number, filed_on, state, state_on,"
                 " principal_fen, interest_fen, costs_fen")


def charts_for(ladder: Ladder | None, chart: Chart | None) -> tuple[Ladder, Chart]:
    lad = ladder or load_ladder()
    return lad, chart_with(chart or load_chart(), lad)


def post_charge(
    conn: psycopg.Connection, *, charge_id: str, customer_id: str, kind: str, on: date,
    amount_fen: int, lines: Sequence[LineDraft], description: str, chart: Chart,
    case_id: int | None = None,
) -> str:
    """Book a charge (one entry) and record it on the account; return its entry number.
    Booking the same charge id again changes nothing."""
    with conn.transaction():
        [number] = post_entries(conn, [EntryDraft("adjustment", charge_id, on, description,
                                                  tuple(lines))], chart=chart)
        if number is None:
            row = conn.execute("SELECT entry_number FROM journal_entries WHERE kind ="
                               " 'adjustment' AND source_document = %s", (charge_id,)).fetchone()
            return str(row[0]) if row else ""
        conn.execute(
            """INSERT INTO customer_charges (charge_id, customer_id, kind, charged_on,
               amount_fen, entry_number, case_id) VALUES (%s, %s, %s, %s, %s, %s, %s)""",
            (charge_id, customer_id, kind, on, amount_fen, number, case_id))
    return number


def open_case(conn: psycopg.Connection, customer_id: str, on: date, *, court: str,
              principal_fen: int, interest_fen: int, case_number: str | None = None) -> int:
    """File a case for the customer; refuses a second open case."""
    if conn.execute("SELECT 1 FROM legal_cases WHERE customer_id = %s AND state = ANY(%s)",
                    (customer_id, list(OPEN_STATES))).fetchone():
        raise BillingError(f"customer_id: {customer_id} already has an open legal case")
    row = conn.execute(
        """INSERT INTO legal_cases (customer_id, court, case_number, filed_on, state, state_on,
           principal_fen, interest_fen) VALUES (%s, %s, %s, %s, 'filed', %s, %s, %s)
           RETURNING case_id""",
        (customer_id, court, case_number, on, on, principal_fen, interest_fen)).fetchone()
    case_id = int(row[0]) if row else 0
    _event(conn, case_id, "filed", on, "")
    return case_id


def get_case(conn: psycopg.Connection, case_id: int) -> Case:
    row = conn.execute(f"SELECT {_CASE_COLUMNS} FROM legal_cases WHERE case_id = %s",
                       (case_id,)).fetchone()
    if row is None:
        raise BillingError(f"case_id: no legal case {case_id}")
    return Case(*row)


def change_state(
    conn: psycopg.Connection, case_id: int, state: str, on: date, *, note: str = "",
    case_number: str | None = None, ladder: Ladder | None = None, chart: Chart | None = None,
) -> Case:
    """Move a case to `state` (see TRANSITIONS); a write-off books the open amount."""
    case = get_case(conn, case_id)
    if state not in TRANSITIONS.get(case.state, ()):
        allowed = ", ".join(TRANSITIONS.get(case.state, ())) or "none (the case is closed)"
        raise BillingError(f"state: {case.state} → {state} is not allowed; allowed: {allowed}")
    if on < case.state_on:
        raise BillingError(f"on: {on} is before the case's last change ({case.state_on})")
    if len(note) > 500:
        raise BillingError("note: at most 500 characters")
    lad, full = charts_for(ladder, chart)
    with conn.transaction():
        if state == "written_off":
            items = load_items(conn, on, case.customer_id).get(case.customer_id)
            open_fen = 0 if items is None else sum(age_items(
                [*items.invoices, *items.charges], items.credits, on)[0].values())
            if open_fen > 0:
                post_charge(conn, charge_id=f"OTP-{case_id}", customer_id=case.customer_id,
                            kind="write_off", on=on, amount_fen=-open_fen, chart=full,
                            case_id=case_id, description=f"Otpis potraživanja, predmet {case_id}",
                            lines=(LineDraft(lad.posting["write_off_expense"], open_fen, 0),
                                   LineDraft(full.roles["receivables"], 0, open_fen,
                                             case.customer_id)))
        conn.execute(
            """UPDATE legal_cases SET state = %s, state_on = %s,
               case_number = coalesce(%s, case_number) WHERE case_id = %s""",
            (state, on, case_number, case_id))
        _event(conn, case_id, state, on, note)
        if state in CLOSED_STATES:
            conn.execute("UPDATE collection_accounts SET stage = 'current', stage_on = %s"
                         " WHERE customer_id = %s AND stage = 'legal'", (on, case.customer_id))
    return get_case(conn, case_id)


def add_cost(
    conn: psycopg.Connection, case_id: int, kind: str, amount_fen: int, on: date, *,
    ladder: Ladder | None = None, chart: Chart | None = None,
) -> str:
    """Book a court fee or lawyer cost paid by the utility and claimed from the debtor."""
    if kind not in COST_KINDS:
        raise BillingError(f"kind: must be one of {', '.join(COST_KINDS)}")
    if amount_fen <= 0:
        raise BillingError("amount: must be above zero")
    case = get_case(conn, case_id)
    if case.state not in OPEN_STATES:
        raise BillingError(f"case_id: case {case_id} is closed ({case.state})")
    lad, full = charts_for(ladder, chart)
    row = conn.execute("SELECT count(*) FROM customer_charges WHERE case_id = %s"
                       " AND kind = ANY(%s)", (case_id, list(COST_KINDS))).fetchone()
    n = (int(row[0]) if row else 0) + 1
    label = "Sudska taksa" if kind == "court_fee" else "Troškovi advokata"
    with conn.transaction():
        number = post_charge(
            conn, charge_id=f"TRS-{case_id}-{n}", customer_id=case.customer_id, kind=kind, on=on,
            amount_fen=amount_fen, chart=full, case_id=case_id,
            description=f"{label}, predmet {case.case_number or case_id}",
            lines=(LineDraft(lad.posting["legal_costs"], amount_fen, 0),
                   LineDraft(lad.posting["legal_costs_paid_from"], 0, amount_fen),
                   LineDraft(full.roles["receivables"], amount_fen, 0, case.customer_id),
                   LineDraft(lad.posting["recovered_costs"], 0, amount_fen)))
        conn.execute("UPDATE legal_cases SET costs_fen = costs_fen + %s WHERE case_id = %s",
                     (amount_fen, case_id))
    return number


def list_cases(conn: psycopg.Connection, *, state: str | None = None,
               customer_id: str | None = None, court: str | None = None) -> list[Case]:
    """Cases, newest first; each filter is optional (state 'open' = any open state)."""
    states = list(OPEN_STATES) if state == "open" else [state] if state else None
    if states and not set(states) <= {*OPEN_STATES, *CLOSED_STATES}:
        raise BillingError(f"state: unknown state {state!r}")
    rows = conn.execute(
        f"""SELECT {_CASE_COLUMNS} FROM legal_cases
            WHERE (%(s)s::text[] IS NULL OR state = ANY(%(s)s))
              AND (%(c)s::text IS NULL OR customer_id = %(c)s)
              AND (%(k)s::text IS NULL OR court = %(k)s)
            ORDER BY filed_on DESC, case_id DESC""",
        {"s": states, "c": customer_id, "k": court}).fetchall()
    return [Case(*r) for r in rows]


def _event(conn: psycopg.Connection, case_id: int, state: str, on: date, note: str) -> None:
    conn.execute(
        """INSERT INTO legal_case_events (case_id, event_no, state, event_on, note)
           SELECT %s, coalesce(max(event_no), 0) + 1, %s, %s, %s FROM legal_case_events
           WHERE case_id = %s""", (case_id, state, on, note, case_id))
