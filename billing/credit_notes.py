"""Credit notes (knjižno odobrenje, storno) and corrected invoices.

A credit note cancels one finalized invoice in full: it copies the invoice's lines and VAT
rows (amounts as credited, with the invoice's sign — see migration 0012), takes the next
number of its own gap-free series ``CN-YYYY-NNNNNN`` (year of issue) and, in the same
transaction, posts the reversal of the invoice's journal entry (sides swapped, on the
credit note's date). An invoice is credited once. The customer's balance is
invoices − credit notes − payments.

A credited invoice can be replaced: `reissue_invoice` computes the customer's period like
the monthly close (same queries, same pure calculation, current data) and numbers the
corrected invoice in the invoice series. It refuses while an invoice of that customer and
period is not credited; the database checks the same at commit (migration 0012).

Lock order: the close's advisory lock of the period, then the counters of documents
(invoice or credit note), then the journal counters — the order the close already uses.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import psycopg

from billing import BillingError, closer
from billing.calculation import ContractInput, DailyConsumption, compute_invoice
from billing.ledger import Chart, EntryDraft, LineDraft, load_chart, reversal_of
from billing.ledger_posting import post_entries, post_invoices
from rating import RatingError
from rating.calendar import month_bounds
from stream.pipeline import load_catalog

MAX_SEQ = 999_999

_LOCK_COUNTER = """
INSERT INTO credit_note_counters AS c (year, last_seq) VALUES (%s, 0)
ON CONFLICT (year) DO UPDATE SET last_seq = c.last_seq
RETURNING last_seq
"""

_ONE_CUSTOMER = "c.customer_id = %(customer)s"
if closer._NOT_INVOICED not in closer._CONTRACTS or closer._NOT_INVOICED not in closer._CONSUMPTION:
    raise ImportError("billing.closer queries changed: credit_notes cannot reuse them")
# The close's queries, for one customer whether invoiced or not.
_CONTRACTS = closer._CONTRACTS.replace(closer._NOT_INVOICED, _ONE_CUSTOMER)
_CONSUMPTION = closer._CONSUMPTION.replace(closer._NOT_INVOICED, _ONE_CUSTOMER)


def credit_note_number(year: int, seq: int) -> str:
    return f"CN-{year}-{seq:06d}"


def _text(value: object, field: str, limit: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= limit:
        raise BillingError(f"{field}: 1–{limit} characters required")
    return value.strip()


def issue_credit_note(
    conn: psycopg.Connection, invoice_number: str, *, issued_on: date, reason: str,
    operator: str, chart: Chart | None = None,
) -> str:
    """Credit `invoice_number` in full; return the credit note's number. Raises
    `BillingError` (naming the field) for an unknown or already credited invoice, a date
    before the invoice's, an empty reason or operator. Commits nothing."""
    why = _text(reason, "reason", 500)
    who = _text(operator, "operator", 100)
    if not isinstance(issued_on, date):
        raise BillingError("issued_on: a date is required")
    with conn.transaction():
        row = conn.execute(_LOCK_COUNTER, (issued_on.year,)).fetchone()
        last_seq = int(row[0]) if row else 0
        head = conn.execute(
            "SELECT issued_on, total_fen FROM invoices WHERE invoice_number = %s",
            (invoice_number,)).fetchone()
        if head is None:
            raise BillingError(f"invoice_number: unknown invoice {invoice_number!r}")
        if issued_on < head[0]:
            raise BillingError(
                f"issued_on: {issued_on} is before the invoice's issue date {head[0]}")
        done = conn.execute("SELECT credit_note_number FROM credit_notes"
                            " WHERE invoice_number = %s", (invoice_number,)).fetchone()
        if done is not None:
            raise BillingError(
                f"invoice_number: {invoice_number} is already credited by {done[0]}")
        if last_seq + 1 > MAX_SEQ:
            raise BillingError(f"credit note numbers of {issued_on.year} would pass {MAX_SEQ}")
        number = credit_note_number(issued_on.year, last_seq + 1)
        _copy_invoice(conn, invoice_number, number, last_seq + 1, issued_on, why, who)
        conn.execute("UPDATE credit_note_counters SET last_seq = %s WHERE year = %s",
                     (last_seq + 1, issued_on.year))
        _post_reversal(conn, invoice_number, number, issued_on, chart or load_chart())
    return number


def _copy_invoice(conn: psycopg.Connection, invoice: str, number: str, seq: int,
                  issued_on: date, reason: str, operator: str) -> None:
    conn.execute(
        """INSERT INTO credit_notes (credit_note_number, year, seq, invoice_number, customer_id,
                                     period, issued_on, net_fen, vat_fen, total_fen, reason,
                                     operator)
           SELECT %s, %s, %s, invoice_number, customer_id, period, %s, net_fen, vat_fen,
                  total_fen, %s, %s
           FROM invoices WHERE invoice_number = %s""",
        (number, issued_on.year, seq, issued_on, reason, operator, invoice))
    conn.execute(
        """INSERT INTO credit_note_lines (credit_note_number, line_no, service,
               metering_point_id, component, register, description, quantity_milli, unit,
               unit_price_micro, amount_fen, vat_rate)
           SELECT %s, line_no, service, metering_point_id, component, register, description,
                  quantity_milli, unit, unit_price_micro, amount_fen, vat_rate
           FROM invoice_lines WHERE invoice_number = %s""", (number, invoice))
    conn.execute(
        """INSERT INTO credit_note_vat (credit_note_number, vat_rate, base_fen, vat_fen)
           SELECT %s, vat_rate, base_fen, vat_fen FROM invoice_vat WHERE invoice_number = %s""",
        (number, invoice))


def _post_reversal(conn: psycopg.Connection, invoice: str, number: str, on: date,
                   chart: Chart) -> None:
    """Post the storno of the invoice's journal entry. An invoice with nothing to book (all
    amounts zero) has no entry and needs none; any other invoice without an entry was never
    booked, and crediting it would leave the ledger wrong: refused."""
    found = conn.execute("SELECT entry_number, entry_date FROM journal_entries"
                         " WHERE kind = 'invoice' AND source_document = %s", (invoice,)).fetchone()
    if found is None:
        amounts = conn.execute(
            "SELECT coalesce(bool_or(amount_fen <> 0), false) FROM invoice_lines"
            " WHERE invoice_number = %s", (invoice,)).fetchone()
        vat = conn.execute("SELECT vat_fen FROM invoices WHERE invoice_number = %s",
                           (invoice,)).fetchone()
        if (amounts and amounts[0]) or (vat and vat[0]):
            raise BillingError(f"invoice_number: {invoice} has no journal entry yet;"
                               " book it first (ledger post_missing)")
        return
    entry_no, entry_date = found
    lines = tuple(
        LineDraft(account, int(debit), int(credit), customer)
        for account, customer, debit, credit in conn.execute(
            "SELECT account, customer_id, debit_fen, credit_fen FROM journal_lines"
            " WHERE entry_number = %s ORDER BY line_no", (entry_no,)))
    original = EntryDraft("invoice", invoice, entry_date, "", lines)
    storno = replace(reversal_of(entry_no, original, on=on),
                     description=f"Storno {entry_no}: knjižno odobrenje {number}"
                                 f" za račun {invoice}"[:200])
    if post_entries(conn, [storno], chart=chart) == [None]:
        raise BillingError(f"invoice_number: the entry {entry_no} of {invoice} is already"
                           " reversed")


def reissue_invoice(
    conn: psycopg.Connection, customer_id: str, period: str, *, issued_on: date,
    payment_days: int = 15, chart: Chart | None = None,
) -> str:
    """Invoice `customer_id` for `period` again, after its invoice was credited; return the
    new invoice's number. Raises `BillingError` if the period has no invoice of that
    customer, one that is not credited, nothing to invoice, or data the close would skip.
    Commits nothing."""
    if not isinstance(period, str) or not closer._PERIOD.match(period):
        raise BillingError(f"period: must be YYYY-MM, got {period!r}")
    first, end = month_bounds(period)
    if issued_on < end:
        raise BillingError(f"issued_on: {issued_on} is before the end of period {period}")
    if not 0 <= payment_days <= 365:
        raise BillingError(f"payment_days: must be 0–365, got {payment_days}")
    args = {"period": period, "first": first, "end": end, "customer": customer_id}
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                     (f"billing.close:{period}",))
        row = conn.execute(closer._LOCK_COUNTER, (issued_on.year,)).fetchone()
        last_seq = int(row[0]) if row else 0
        open_ = conn.execute(
            """SELECT count(*), count(*) FILTER (WHERE NOT EXISTS (
                   SELECT 1 FROM credit_notes c WHERE c.invoice_number = i.invoice_number))
               FROM invoices i WHERE customer_id = %(customer)s AND period = %(period)s
                 AND kind = 'invoice'""", args).fetchone()
        if not open_ or open_[0] == 0:
            raise BillingError(f"period: customer {customer_id} has no invoice for {period}"
                               " to correct (the monthly close invoices it)")
        if open_[1]:
            raise BillingError(f"period: the invoice of customer {customer_id} for {period}"
                               " is not credited; issue a credit note first")
        try:
            catalog = load_catalog(conn)
        except RatingError as exc:
            raise BillingError(f"tariff catalog: {exc}") from exc
        contracts = [ContractInput(*rest) for _, *rest in conn.execute(_CONTRACTS, args)]
        overlaps = closer._overlapping(conn, args)
        if customer_id in overlaps:
            raise BillingError(f"customer_id: {overlaps[customer_id]}")
        breaks = closer._price_breaks(catalog, {customer_id: contracts}, first, end)
        consumption = [DailyConsumption(*rest) for _, *rest in
                       conn.execute(_CONSUMPTION, {**args, "breaks": breaks})]
        # the month's maximum demand (billing power); period "" = not filtered by invoices
        demand = closer._load_demand(conn, {**args, "period": ""}, catalog,
                                     {customer_id: contracts}, first, end, [customer_id])
        draft = compute_invoice(customer_id, period, contracts, consumption, catalog,
                                demand.get(customer_id, []))
        if not draft.lines:
            raise BillingError(f"customer_id: nothing to invoice for {customer_id} in {period}")
        if last_seq + 1 > MAX_SEQ:
            raise BillingError(f"invoice numbers of {issued_on.year} would pass {MAX_SEQ}")
        closer._write(conn, [draft], issued_on, payment_days, last_seq)
        conn.execute("UPDATE invoice_counters SET last_seq = %s WHERE year = %s",
                     (last_seq + 1, issued_on.year))
        post_invoices(conn, closer._ledger_totals([draft], issued_on, last_seq),
                      chart=chart or load_chart())
    return f"{issued_on.year}-{last_seq + 1:06d}"

