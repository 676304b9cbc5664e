"""Transactional outbox: outbound business events written in the transaction of the fact.

An invoice, a payment or a journal entry is reported on Kafka (``billing.invoices.v1``,
``billing.payments.v1``, ``ledger.entries.v1``; contracts in ``schemas/json``) by a row in
``outbox_events`` written in the same transaction that writes the fact: a rolled-back close
leaves no event behind, a committed one cannot lose its events. ``stream.outbox_publisher``
sends the rows later and marks them published.

The row is a claim check (topic, key, the document's id): invoices, payments and journal
entries are immutable, so the publisher builds the payload when it sends
(`build_payloads`), outside the fact's transaction, and it is the payload the fact's
transaction would have built. Rows written with a payload (before migration 0022) are sent
as they are.
Payloads are built in SQL (set-based: one statement per batch, however many documents),
so the event says exactly what the database holds. Money is a decimal string in KM with
two decimals, quantities with three, prices with two to six.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from billing.close_hooks import CloseContext, WrittenInvoice, number_range, per_chunk
from schemas.contracts import INVOICES, LEDGER, PAYMENTS


def _km(col: str) -> str:
    return f"(({col}) / 100.0)::numeric(20, 2)::text"


def _quantity(col: str) -> str:
    return f"(({col}) / 1000.0)::numeric(20, 3)::text"


def _price(col: str) -> str:
    """At least two decimals, at most six (micro-KM): 2500000 → '2.50', 157800 → '0.1578'."""
    return (f"CASE WHEN mod({col}, 10000) = 0 THEN {_km(f'({col}) / 10000')}"
            f" ELSE trim_scale(({col}) / 1000000.0)::text END")


def _day(col: str) -> str:
    return f"to_char({col}, 'YYYY-MM-DD')"


def _text(col: str) -> str:
    """A JSON string (escaped) or null, as text."""
    return f"coalesce(to_json({col})::text, 'null')"


# The invoice's JSON is concatenated as text and parsed into jsonb once: building it with
# jsonb_build_object (12 keys a line) cost a third more CPU, for the same document.
_MP_OR_NULL = _text("nullif(metering_point_id, '')")  # a line of no metering point (interest)
_LINE_JSON = (
    "concat('{\"line_no\":', line_no, ',\"service\":', to_json(service),"
    f" ',\"metering_point_id\":', {_MP_OR_NULL},"
    " ',\"component\":', to_json(component),"
    f" ',\"register\":', {_text('register')}, ',\"description\":', to_json(description),"
    f" ',\"quantity\":\"', {_quantity('quantity_milli')}, '\",\"unit\":', to_json(unit),"
    f" ',\"unit_price\":\"', {_price('unit_price_micro')},"
    f" '\",\"amount\":\"', {_km('amount_fen')}, '\",\"vat_rate\":\"', vat_rate, '\"}}')"
)

# The documents are joined to `unnest` of their ids, never filtered by `= ANY(array)`:
# without parallel workers the planner ran that filter over every line of the table, for
# every number (minutes at 100,000 invoices). Each payload is returned as jsonb's text, the
# very form the outbox stored when it kept full payloads (rows written before 0022).
_INVOICE_PAYLOADS = f"""
SELECT i.invoice_number, concat(
    '{{"number":', to_json(i.invoice_number), ',"customer_id":', to_json(i.customer_id),
    ',"period":', to_json(i.period), ',"issued_on":"', {_day("i.issued_on")},
    '","due_on":"', {_day("i.due_on")}, '","currency":"BAM","net":"', {_km("i.net_fen")},
    '","vat":"', {_km("i.vat_fen")}, '","total":"', {_km("i.total_fen")},
    '","payment_reference":', to_json(i.payment_reference), ',"lines":[',
    (SELECT string_agg({_LINE_JSON}, ',' ORDER BY line_no)
     FROM invoice_lines l WHERE l.invoice_number = i.invoice_number),
    '],"vat_breakdown":[',
    (SELECT string_agg(concat('{{"vat_rate":"', vat_rate, '","base":"', {_km("base_fen")},
                              '","vat":"', {_km("vat_fen")}, '"}}'), ',' ORDER BY vat_rate)
     FROM invoice_vat v WHERE v.invoice_number = i.invoice_number),
    ']}}')::jsonb::text
FROM unnest(%(documents)s::text[]) AS n(invoice_number)
JOIN invoices i USING (invoice_number)
"""

# A reversal or refund (negative amount) says its kind; a payment does not (as before).
_PAYMENT_JSON = f"""jsonb_build_object(
    'payment_id', p.payment_id, 'customer_id', p.customer_id,
    'paid_on', {_day("p.paid_on")}, 'amount', {_km("p.amount_fen")}, 'currency', 'BAM',
    'reference', left(p.reference, 35), 'channel', p.channel, 'status', 'matched')
    || CASE WHEN p.kind = 'payment' THEN '{{}}'::jsonb
            ELSE jsonb_build_object('kind', p.kind) END"""

_PAYMENT_PAYLOADS = f"""
SELECT p.payment_id, ({_PAYMENT_JSON})::text
FROM unnest(%(documents)s::text[]) AS n(payment_id)
JOIN payments p USING (payment_id)
"""

_LEDGER_PAYLOADS = f"""
SELECT e.entry_number, jsonb_build_object(
    'entry_no', e.entry_number, 'entry_date', {_day("e.entry_date")},
    'source_document', jsonb_build_object('type', e.kind, 'id', e.source_document),
    'description', e.description, 'lines',
    (SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                'account', account, 'debit', {_km("debit_fen")}, 'credit', {_km("credit_fen")},
                'customer_id', customer_id)) ORDER BY line_no)
     FROM journal_lines l WHERE l.entry_number = e.entry_number))::text
FROM unnest(%(documents)s::text[]) AS n(entry_number)
JOIN journal_entries e USING (entry_number)
"""

PAYLOADS = {INVOICES: _INVOICE_PAYLOADS, PAYMENTS: _PAYMENT_PAYLOADS, LEDGER: _LEDGER_PAYLOADS}
"""Topic → the query that builds its events from the documents' ids (claim-check rows)."""

# A claim check: (topic, key, the document's id); the publisher builds the payload.
_CLAIMS = """
INSERT INTO outbox_events (topic, key, document)
SELECT %(topic)s, {key}, n.document
FROM unnest(%(documents)s::text[]) WITH ORDINALITY AS n(document, no)
{join}
ORDER BY n.no
"""
_INVOICE_CLAIMS = _CLAIMS.format(
    key="i.customer_id", join="JOIN invoices i ON i.invoice_number = n.document")
_PAYMENT_CLAIMS = _CLAIMS.format(
    key="p.customer_id", join="JOIN payments p ON p.payment_id = n.document")
_LEDGER_CLAIMS = _CLAIMS.format(
    key="e.entry_number", join="JOIN journal_entries e ON e.entry_number = n.document")
_KEYED_CLAIMS = """
INSERT INTO outbox_events (topic, key, document)
SELECT %(topic)s, n.key, n.document
FROM unnest(%(keys)s::text[], %(documents)s::text[]) WITH ORDINALITY AS n(key, document, no)
ORDER BY n.no
"""

_RANGE_CLAIMS = """
INSERT INTO outbox_events (topic, key, document)
SELECT %(topic)s, i.customer_id, i.invoice_number
FROM invoices i WHERE i.invoice_number BETWEEN %(first)s AND %(last)s
ORDER BY i.invoice_number
"""


def build_payloads(conn: psycopg.Connection, topic: str, documents: Sequence[str]
                   ) -> dict[str, str]:
    """The JSON text of the `topic` event of each document (one query for all of them);
    a document that does not exist is missing from the result. Raises KeyError for a topic
    that has no claim-check events."""
    query = PAYLOADS[topic]
    if not documents:
        return {}
    return {doc: text for doc, text in conn.execute(query, {"documents": list(documents)})}


def add_invoice_events(conn: psycopg.Connection, invoice_numbers: Sequence[str]) -> int:
    """One ``billing.invoices.v1`` event per invoice (with its lines and VAT rows), in the
    caller's transaction; returns how many were written. The row is a claim check: the
    publisher builds the payload from the (immutable) invoice when it sends."""
    if not invoice_numbers:
        return 0
    cur = conn.execute(_INVOICE_CLAIMS, {"topic": INVOICES, "documents": list(invoice_numbers)})
    return cur.rowcount


def add_payment_events(conn: psycopg.Connection, payment_ids: Sequence[str]) -> int:
    """One ``billing.payments.v1`` event per recorded payment (status ``matched``: it is
    recorded only once a customer is found; a reversal or refund with its ``kind``), in the
    caller's transaction."""
    if not payment_ids:
        return 0
    cur = conn.execute(_PAYMENT_CLAIMS, {"topic": PAYMENTS, "documents": list(payment_ids)})
    return cur.rowcount


def add_ledger_events(conn: psycopg.Connection, entry_numbers: Sequence[str]) -> int:
    """One ``ledger.entries.v1`` event per journal entry, in the caller's transaction."""
    if not entry_numbers:
        return 0
    cur = conn.execute(_LEDGER_CLAIMS, {"topic": LEDGER, "documents": list(entry_numbers)})
    return cur.rowcount


@per_chunk
def invoice_events_after_write(ctx: CloseContext, written: Sequence[WrittenInvoice]) -> None:
    """The close's after-write step (`billing.close_hooks`): report every new invoice (the
    close has just written them, so their keys need no look-up)."""
    if not written:
        return
    numbers = number_range(written)
    if numbers is not None:  # the close's invoices: by the primary key's range
        ctx.conn.execute(_RANGE_CLAIMS, {"topic": INVOICES, "first": numbers[0],
                                         "last": numbers[1]})
        return
    ctx.conn.execute(_KEYED_CLAIMS, {"topic": INVOICES,
                                     "keys": [w.customer_id for w in written],
                                     "documents": [w.invoice_number for w in written]})
