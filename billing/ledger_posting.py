"""Posting journal entries to PostgreSQL, in the caller's transaction.

Entry numbers ``YYYY-NNNNNN`` (year of the entry date) have no gaps: the year's counter row
is locked and advanced in the same transaction as the entries it numbers, like invoice
numbers. A document (kind, source document) is booked once: posting it again books
nothing and returns None for it. The lines of an entry are written before the entry row,
which posts it: the database refuses an entry that does not balance (when its row is
written), a line added to a posted entry, a line whose entry never comes (at commit), and
any change to a posted entry (migration 0022).

Lock order, to stay free of deadlocks: journal counters by ascending year. A caller that
writes other rows before posting (payments) takes the counters first (`lock_counters`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date

import psycopg

from billing.copy_text import copy_field, copy_rows
from billing.gc_pause import no_cyclic_gc
from billing.ledger import (
    INTEREST_SERVICE,
    Chart,
    EntryDraft,
    InvoiceTotals,
    LedgerError,
    PaymentFacts,
    check_entry,
    entry_for_invoice,
    entry_for_payment,
)
from billing.outbox import add_ledger_events
from schemas.contracts import LEDGER

MAX_SEQ = 999_999

_LOCK_COUNTER = """
INSERT INTO journal_counters AS c (year, last_seq) VALUES (%s, 0)
ON CONFLICT (year) DO UPDATE SET last_seq = c.last_seq
RETURNING last_seq
"""


def entry_number(year: int, seq: int) -> str:
    return f"{year}-{seq:06d}"


def sync_chart(conn: psycopg.Connection, chart: Chart) -> None:
    """Make the chart's accounts known to the database (journal lines reference them).
    Only rows that differ are touched, so concurrent posters do not wait on each other."""
    rows = [(a.account, a.name, a.kind) for a in chart.accounts.values()]
    conn.execute(
        """INSERT INTO ledger_accounts AS l (account, name, kind)
           SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])
           ON CONFLICT (account) DO UPDATE SET name = excluded.name, kind = excluded.kind
           WHERE (l.name, l.kind) IS DISTINCT FROM (excluded.name, excluded.kind)""",
        tuple(list(col) for col in zip(*rows, strict=True)),
    )


def lock_counters(conn: psycopg.Connection, years: Iterable[int]) -> dict[int, int]:
    """Lock the journal counters of `years` (ascending) until the transaction ends; return
    each year's last sequence number."""
    out = {}
    for year in sorted(set(years)):
        row = conn.execute(_LOCK_COUNTER, (year,)).fetchone()
        out[year] = int(row[0]) if row else 0
    return out


def post_entries(
    conn: psycopg.Connection, entries: Sequence[EntryDraft], *, chart: Chart
) -> list[str | None]:
    """Number and write `entries`; return each one's entry number, or None where that
    document is already booked (or listed twice). Raises `LedgerError` before writing
    anything if an entry is malformed. Commits nothing."""
    with no_cyclic_gc():
        for entry in entries:
            check_entry(entry, chart)
    if not entries:
        return []
    with conn.transaction(), no_cyclic_gc():
        sync_chart(conn, chart)
        last = lock_counters(conn, (e.entry_date.year for e in entries))
        booked = _already_booked(conn, entries)
        numbers: list[str | None] = []
        new: list[tuple[str, EntryDraft]] = []
        for entry in entries:
            key = (entry.kind, entry.source_document)
            if key in booked:
                numbers.append(None)
                continue
            booked.add(key)
            year = entry.entry_date.year
            last[year] += 1
            if last[year] > MAX_SEQ:
                raise LedgerError(f"journal entry numbers of {year} would pass {MAX_SEQ}")
            number = entry_number(year, last[year])
            numbers.append(number)
            new.append((number, entry))
        if new:
            _write(conn, new)
            add_ledger_events(conn, [number for number, _ in new])  # outbox, same transaction
            conn.execute(
                "UPDATE journal_counters c SET last_seq = v.seq FROM unnest(%s::int[], %s::int[])"
                " AS v(year, seq) WHERE c.year = v.year",
                (list(last), list(last.values())),
            )
    return numbers


def post_invoices(conn: psycopg.Connection, invoices: Sequence[InvoiceTotals], *,
                  chart: Chart) -> int:
    """Book invoices (zero invoices book nothing); return how many entries were written."""
    with no_cyclic_gc():
        drafts = [d for d in (entry_for_invoice(i, chart=chart) for i in invoices)
                  if d is not None]
    return sum(n is not None for n in post_entries(conn, drafts, chart=chart))


def post_payments(conn: psycopg.Connection, payments: Sequence[PaymentFacts], *,
                  chart: Chart) -> int:
    drafts = [entry_for_payment(p, chart=chart) for p in payments]
    return sum(n is not None for n in post_entries(conn, drafts, chart=chart))


def post_missing(conn: psycopg.Connection, *, chart: Chart) -> tuple[int, int]:
    """Book every invoice and payment that has no entry yet (a database that had
    documents before the ledger existed); return (invoice entries, payment entries)."""
    nets: dict[str, dict[str, int]] = defaultdict(dict)
    heads: dict[str, tuple[str, date, int, int]] = {}
    for number, customer, issued_on, vat, total, service, net in conn.execute(
        """SELECT i.invoice_number, i.customer_id, i.issued_on, i.vat_fen, i.total_fen,
                  l.service, sum(l.amount_fen)::bigint
           FROM invoices i JOIN invoice_lines l USING (invoice_number)
           WHERE NOT EXISTS (SELECT 1 FROM journal_entries e
                             WHERE e.kind = 'invoice' AND e.source_document = i.invoice_number)
           GROUP BY i.invoice_number, l.service ORDER BY i.invoice_number, l.service"""
    ):
        heads[number] = (customer, issued_on, int(vat), int(total))
        nets[number][service] = int(net)
    invoices = [InvoiceTotals(n, c, d, nets[n], v, t) for n, (c, d, v, t) in heads.items()]
    payments = [
        PaymentFacts(pid, customer, paid_on, int(amount), channel)
        for pid, customer, paid_on, amount, channel in conn.execute(
            """SELECT payment_id, customer_id, paid_on, amount_fen, channel FROM payments p
               WHERE p.kind = 'payment'  -- reversals and refunds book their own entries
                 AND NOT EXISTS (SELECT 1 FROM journal_entries e
                                 WHERE e.kind = 'payment' AND e.source_document = p.payment_id)
               ORDER BY paid_on, received_at, payment_id"""
        )
    ]
    with conn.transaction():
        return (post_invoices(conn, invoices, chart=chart),
                post_payments(conn, payments, chart=chart))


def _already_booked(conn: psycopg.Connection, entries: Sequence[EntryDraft]
                    ) -> set[tuple[str, str]]:
    rows = conn.execute(
        """SELECT e.kind, e.source_document FROM journal_entries e
           JOIN unnest(%s::text[], %s::text[]) AS d(kind, source_document)
             USING (kind, source_document)""",
        ([e.kind for e in entries], [e.source_document for e in entries]),
    )
    return {(k, s) for k, s in rows}


def _write(conn: psycopg.Connection, new: list[tuple[str, EntryDraft]]) -> None:
    """Lines first, then the entries: writing an entry row posts it, and the database
    checks each new entry's lines then (migration 0022). COPY text is formatted in bulk."""
    lines = [
        f"{number}\t{no}\t{ln.account}\t{copy_field(ln.customer_id)}\t{ln.debit_fen}\t{ln.credit_fen}"
        for number, e in new for no, ln in enumerate(e.lines, start=1)
    ]
    entries = [
        f"{number}\t{e.entry_date.year}\t{int(number.rsplit('-', 1)[1])}\t{e.entry_date}\t{e.kind}"
        f"\t{copy_field(e.source_document)}\t{copy_field(e.description[:200])}"
        for number, e in new
    ]
    with conn.cursor() as cur:
        copy_rows(cur, "COPY journal_lines (entry_number, line_no, account, customer_id, debit_fen,"
                   " credit_fen) FROM STDIN", lines)
        copy_rows(cur, "COPY journal_entries (entry_number, year, seq, entry_date, kind,"
                   " source_document, description) FROM STDIN", entries)


# ---- the close's invoices, booked set-based -------------------------------------------

# `entry_for_invoice` in SQL, over invoices already written: one statement computes every
# entry's lines from `invoices` and `invoice_lines` (net per service), writes the lines and
# keeps the entries in a temporary table; the entry rows follow in a second statement (0022:
# lines first, the entry row posts them). Nothing is written if one invoice cannot be
# booked; the first reason found is returned instead. Lines are ordered as the Python rules
# order them: receivables, revenue by (account, service) in code-point order, VAT.
_BULK_ENTRIES = """
CREATE TEMPORARY TABLE IF NOT EXISTS pg_temp.bulk_invoice_entries (
    entry_number text, year integer, seq integer, entry_date date, source_document text
) ON COMMIT DROP
"""

_BULK_LINES = """
WITH inv AS (
    SELECT i.invoice_number, i.customer_id, i.issued_on, i.vat_fen, i.total_fen,
           EXISTS (SELECT 1 FROM journal_entries e  -- the range: else every invoice entry
                   WHERE e.kind = 'invoice' AND e.source_document = i.invoice_number
                     AND e.source_document BETWEEN %(first)s AND %(last)s) AS booked
    FROM invoices i
    WHERE i.invoice_number BETWEEN %(first)s AND %(last)s
), svc AS (  -- the range read from the primary key, never a scan of every invoice's lines
    SELECT s.invoice_number, s.service, s.net, m.account
    FROM (SELECT l.invoice_number, l.service, sum(l.amount_fen)::bigint AS net
          FROM invoice_lines l WHERE l.invoice_number BETWEEN %(first)s AND %(last)s
          GROUP BY l.invoice_number, l.service) s
    LEFT JOIN unnest(%(services)s::text[], %(accounts)s::text[]) AS m(service, account)
      ON m.service = s.service
), nets AS (
    SELECT invoice_number, sum(net)::bigint AS net, count(*) FILTER (WHERE net <> 0) AS revenue
    FROM svc GROUP BY invoice_number
), heads AS (
    SELECT inv.*, coalesce(n.net, 0) AS net, coalesce(n.revenue, 0) AS revenue
    FROM inv LEFT JOIN nets n USING (invoice_number)
), ent AS (
    SELECT h.*, %(last_seq)s + row_number() OVER (ORDER BY h.invoice_number) AS seq
    FROM heads h
    WHERE NOT h.booked AND (h.total_fen <> 0 OR h.vat_fen <> 0 OR h.revenue > 0)
), problem AS (
    SELECT coalesce(
        (SELECT format('service: no revenue account for %%L in the chart (invoice %%s)',
                       service, invoice_number)
         FROM svc WHERE account IS NULL ORDER BY invoice_number LIMIT 1),
        (SELECT format('invoice %%s: total %%s ≠ net %%s + VAT %%s',
                       invoice_number, total_fen, net, vat_fen)
         FROM heads WHERE net + vat_fen <> total_fen ORDER BY invoice_number LIMIT 1),
        (SELECT format('journal entry numbers of %%s would pass %%s', %(year)s, %(max_seq)s)
         FROM ent HAVING max(seq) > %(max_seq)s)) AS reason
), numbered AS (
    SELECT ent.*, %(year)s::text || '-' || lpad(ent.seq::text, 6, '0') AS entry_number,
           (ent.total_fen <> 0)::int AS receivable
    FROM ent WHERE (SELECT reason IS NULL FROM problem)
), revenue AS (  -- numbered within the entry, after the receivables line
    SELECT invoice_number, account, net,
           row_number() OVER (PARTITION BY invoice_number
                              ORDER BY account COLLATE "C", service COLLATE "C") AS no
    FROM svc WHERE net <> 0
), lines AS (
    SELECT entry_number, 1 AS line_no, %(receivables)s AS account, customer_id,
           total_fen AS debit
    FROM numbered WHERE total_fen <> 0
    UNION ALL
    SELECT n.entry_number, n.receivable + r.no, r.account, NULL, -r.net
    FROM numbered n JOIN revenue r USING (invoice_number)
    UNION ALL
    SELECT entry_number, receivable + revenue + 1, %(vat_payable)s, NULL, -vat_fen
    FROM numbered WHERE vat_fen <> 0
), written_lines AS (
    INSERT INTO journal_lines (entry_number, line_no, account, customer_id, debit_fen,
                               credit_fen)
    SELECT entry_number, line_no, account, customer_id, greatest(debit, 0),
           greatest(-debit, 0)
    FROM lines
), kept AS (
    INSERT INTO pg_temp.bulk_invoice_entries
    SELECT entry_number, %(year)s, seq, issued_on, invoice_number FROM numbered
)
SELECT (SELECT reason FROM problem), (SELECT count(*) FROM numbered)
"""

# The entry rows (which post the lines), their claim-check events in entry order, the
# counter advanced.
_BULK_POST = """
WITH posted AS (
    INSERT INTO journal_entries (entry_number, year, seq, entry_date, kind, source_document,
                                 description)
    SELECT entry_number, year, seq, entry_date, 'invoice', source_document,
           left('Račun ' || source_document, 200)
    FROM pg_temp.bulk_invoice_entries ORDER BY seq
    RETURNING entry_number, seq
), events AS (
    INSERT INTO outbox_events (topic, key, document)
    SELECT %(topic)s, entry_number, entry_number FROM posted ORDER BY seq
    RETURNING 1
)
UPDATE journal_counters SET last_seq = (SELECT max(seq) FROM posted)
WHERE year = %(year)s AND EXISTS (SELECT 1 FROM posted)
"""


def post_invoice_numbers(conn: psycopg.Connection, first_number: str, last_number: str, *,
                         chart: Chart) -> int:
    """Book the invoices numbered `first_number`..`last_number` (one year, both included) as
    `post_invoices` books them, but set-based: the entries are made in SQL from the invoice
    rows, numbered from the locked journal counter in invoice-number order. An invoice
    already booked, or whose every amount is zero, books nothing. Returns how many entries
    were written. Raises `LedgerError` (writing nothing) for numbers of two years, a service
    without a revenue account or an invoice whose total is not its nets plus VAT."""
    year = _year_of(first_number, "first_number")
    if _year_of(last_number, "last_number") != year:
        raise LedgerError(f"last_number: {last_number} is not of {year}, as {first_number}")
    revenue = dict(chart.revenue)
    revenue.setdefault(INTEREST_SERVICE, chart.roles["interest_revenue"])
    with conn.transaction():
        sync_chart(conn, chart)
        last = lock_counters(conn, (year,))[year]
        conn.execute(_BULK_ENTRIES)
        conn.execute("TRUNCATE pg_temp.bulk_invoice_entries")
        row = conn.execute(_BULK_LINES, {
            "first": first_number, "last": last_number, "year": year, "last_seq": last,
            "max_seq": MAX_SEQ, "services": list(revenue), "accounts": list(revenue.values()),
            "receivables": chart.roles["receivables"], "vat_payable": chart.roles["vat_payable"],
        }).fetchone()
        assert row is not None
        reason, entries = row[0], int(row[1])
        if reason is not None:
            raise LedgerError(reason)
        if entries:
            conn.execute(_BULK_POST, {"topic": LEDGER, "year": year})
    return entries


def _year_of(number: str, field: str) -> int:
    head, _, seq = number.partition("-")
    if not (len(head) == 4 and head.isdigit() and len(seq) == 6 and seq.isdigit()):
        raise LedgerError(f"{field}: an invoice number YYYY-NNNNNN, got {number!r}")
    return int(head)


# ---- payments, set-based (a bank statement of tens of thousands) ----------------------

_BULK_PAYMENT_ENTRIES = """
CREATE TEMPORARY TABLE IF NOT EXISTS pg_temp.bulk_payment_entries (
    entry_number text, year integer, seq integer, entry_date date, source_document text,
    description text, no bigint
) ON COMMIT DROP
"""

# The payments in the order given, each once, those of kind 'payment' not yet booked,
# numbered per year of payment in that order; two lines each (channel debit, receivables
# credit with the customer), as `entry_for_payment` makes them.
_BULK_PAYMENT_LINES = """
WITH s AS (
    SELECT * FROM unnest(%(ids)s::text[], %(invoices)s::text[]) WITH ORDINALITY
                  AS s(payment_id, invoice_number, no)
), firsts AS (
    SELECT DISTINCT ON (payment_id) * FROM s ORDER BY payment_id, no
), todo AS (  -- by the primary key, one look-up each (`OFFSET 0`: the payments were
              -- just written, the statistics do not know them; a join planned on them
              -- compared every payment of the statement with every other)
    SELECT f.no, p.payment_id, p.customer_id, p.paid_on, p.amount_fen, f.invoice_number,
           extract(year FROM p.paid_on)::int AS year
    FROM firsts f
    CROSS JOIN LATERAL (SELECT * FROM payments x WHERE x.payment_id = f.payment_id
                        OFFSET 0) p
    WHERE p.kind = 'payment'
      AND NOT EXISTS (SELECT 1 FROM journal_entries e
                      WHERE e.kind = 'payment' AND e.source_document = p.payment_id)
), numbered AS (
    SELECT t.*, c.last_seq + row_number() OVER (PARTITION BY t.year ORDER BY t.no) AS seq
    FROM todo t JOIN unnest(%(years)s::int[], %(lasts)s::int[]) AS c(year, last_seq)
         USING (year)
), named AS (
    SELECT n.*, n.year::text || '-' || lpad(n.seq::text, 6, '0') AS entry_number
    FROM numbered n
), written_lines AS (
    INSERT INTO journal_lines (entry_number, line_no, account, customer_id, debit_fen,
                               credit_fen)
    SELECT entry_number, 1, %(channel_account)s, NULL, amount_fen, 0 FROM named
    UNION ALL
    SELECT entry_number, 2, %(receivables)s, customer_id, 0, amount_fen FROM named
), kept AS (
    INSERT INTO pg_temp.bulk_payment_entries
    SELECT entry_number, year, seq, paid_on, payment_id,
           left('Uplata ' || payment_id || coalesce(' za račun ' || invoice_number, ''), 200),
           no
    FROM named
)
SELECT year, max(seq), count(*) FROM named GROUP BY year
"""

_BULK_PAYMENT_POST = """
INSERT INTO journal_entries (entry_number, year, seq, entry_date, kind, source_document,
                             description)
SELECT entry_number, year, seq, entry_date, 'payment', source_document, description
FROM pg_temp.bulk_payment_entries ORDER BY no
"""
_BULK_PAYMENT_EVENTS = """
INSERT INTO outbox_events (topic, key, document)
SELECT %(topic)s, entry_number, entry_number FROM pg_temp.bulk_payment_entries ORDER BY no
"""


def post_payment_ids(conn: psycopg.Connection, payments: Sequence[tuple[str, str | None]],
                     *, channel: str, chart: Chart) -> int:
    """Book recorded payments — (payment id, the invoice its reference named or None), all
    received through `channel` — as `post_payments` books them, but set-based: the entries
    are made in SQL from the payment rows, numbered per year in the order given. A payment
    already booked (or listed twice, or not of kind 'payment') books nothing. Returns how
    many entries were written."""
    if not payments:
        return 0
    ids = [p for p, _ in payments]
    with conn.transaction():
        sync_chart(conn, chart)
        years = [int(r[0]) for r in conn.execute(  # by the primary key, as in the lines
            "SELECT DISTINCT extract(year FROM p.paid_on)::int FROM unnest(%s::text[]) AS s(id)"
            " CROSS JOIN LATERAL (SELECT paid_on FROM payments x WHERE x.payment_id = s.id"
            " OFFSET 0) p", (ids,))]
        last = lock_counters(conn, years)
        conn.execute(_BULK_PAYMENT_ENTRIES)
        conn.execute("TRUNCATE pg_temp.bulk_payment_entries")
        rows = conn.execute(_BULK_PAYMENT_LINES, {
            "ids": ids, "invoices": [i for _, i in payments],
            "years": list(last), "lasts": list(last.values()),
            "channel_account": chart.channel_account(channel),
            "receivables": chart.roles["receivables"],
        }).fetchall()
        for year, top, _ in rows:
            if int(top) > MAX_SEQ:
                raise LedgerError(f"journal entry numbers of {year} would pass {MAX_SEQ}")
        written = sum(int(n) for _, _, n in rows)
        if written:
            conn.execute(_BULK_PAYMENT_POST)
            conn.execute(_BULK_PAYMENT_EVENTS, {"topic": LEDGER})
            conn.execute(
                "UPDATE journal_counters c SET last_seq = v.seq FROM unnest(%s::int[], %s::int[])"
                " AS v(year, seq) WHERE c.year = v.year",
                ([int(r[0]) for r in rows], [int(r[1]) for r in rows]))
    return written
