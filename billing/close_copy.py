"""How the close writes: drafts rendered as COPY text (`Rendered`), the COPY of invoices,
lines and VAT rows, the ledger totals and the hooks' view of what was written. Split out of
`billing.closer`, which re-exports these names."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import NamedTuple

import psycopg

from billing.calculation import InvoiceDraft
from billing.close_hooks import WrittenInvoice
from billing.copy_text import copy_field as _text
from billing.ledger import InvoiceTotals
from billing.reference import make_payment_reference


class Rendered(NamedTuple):
    """A draft as the close writes it: its totals, net per service (for the ledger) and
    its lines and VAT rows as COPY text, without the invoice number (given at writing)."""

    customer_id: str
    period: str
    net_fen: int
    vat_fen: int
    total_fen: int
    nets: tuple[tuple[str, int], ...]
    lines: str  # "line_no\tservice\t…" rows joined by "\n"
    vat: str  # "vat_rate\tbase_fen\tvat_fen" rows joined by "\n"


def _render(d: InvoiceDraft) -> Rendered:
    """`d` as the close writes it. Each line is formatted without escaping; the text is then
    checked as a whole — as many backslashes as NULL registers, 10 tabs a line, one newline
    between lines, no carriage return and no "None" (a NULL field would show as that) — and
    only a draft failing the check is formatted again, each field escaped where it needs it
    (NULL as \\N): the same text either way."""
    nets: dict[str, int] = {}
    rows = []
    nulls = 0
    for no, ln in enumerate(d.lines, start=1):
        service, amount, register = ln.service, ln.amount_fen, ln.register
        nets[service] = nets.get(service, 0) + amount
        if register is None:
            nulls += 1
            register = _NULL
        rows.append(f"{no}\t{service!s}\t{ln.metering_point_id!s}\t{ln.component!s}"
                    f"\t{register!s}\t{ln.description!s}\t{ln.quantity_milli}\t{ln.unit!s}"
                    f"\t{ln.unit_price_micro}\t{amount}\t{ln.vat_rate!s}")
    lines = "\n".join(rows)
    if (lines.count("\\") != nulls or lines.count("\t") != 10 * len(rows)
            or lines.count("\n") != len(rows) - 1 or "\r" in lines or "None" in lines):
        rows = []  # the careful way: each field escaped where it needs it
        for no, ln in enumerate(d.lines, start=1):
            service, mp, component, register = (ln.service, ln.metering_point_id,
                                                ln.component, ln.register)
            description, unit = ln.description, ln.unit
            text = f"{service}{mp}{component}{register}{description}{unit}"
            if ("\\" in text or "\t" in text or "\n" in text or "\r" in text
                    or None in (service, mp, component, description, unit)):
                t = _text  # escapes, NULLs
                rows.append(f"{no}\t{t(service)}\t{t(mp)}\t{t(component)}\t{t(register)}"
                            f"\t{t(description)}\t{ln.quantity_milli}\t{t(unit)}"
                            f"\t{ln.unit_price_micro}\t{ln.amount_fen}\t{t(ln.vat_rate)}")
            else:  # nothing to escape in this line: the fields as they are
                rows.append(f"{no}\t{service!s}\t{mp!s}\t{component!s}"
                            f"\t{_NULL if register is None else register!s}\t{description!s}"
                            f"\t{ln.quantity_milli}\t{unit!s}\t{ln.unit_price_micro}"
                            f"\t{ln.amount_fen}\t{ln.vat_rate!s}")
        lines = "\n".join(rows)
    if len(d.vat) == 1:
        v = d.vat[0]
        vat = f"{v.vat_rate!s}\t{v.base_fen}\t{v.vat_fen}"
    else:
        vat = "\n".join([f"{v.vat_rate!s}\t{v.base_fen}\t{v.vat_fen}" for v in d.vat])
    return Rendered(d.customer_id, d.period, d.net_fen, d.vat_fen, d.total_fen,
                    tuple(nets.items()), lines, vat)


_NULL = "\\N"


def _written(drafts: Sequence[Rendered], issued_on: date, payment_days: int, last_seq: int
             ) -> list[WrittenInvoice]:
    due_on = issued_on + timedelta(days=payment_days)
    return [WrittenInvoice(f"{issued_on.year}-{seq:06d}", d.customer_id, d.period, issued_on,
                           due_on, d.net_fen, d.vat_fen, d.total_fen)
            for seq, d in enumerate(drafts, start=last_seq + 1)]



def _ledger_totals(drafts: Sequence[InvoiceDraft | Rendered], issued_on: date, last_seq: int
                   ) -> list[InvoiceTotals]:
    out = []
    for seq, d in enumerate(drafts, start=last_seq + 1):
        r = d if isinstance(d, Rendered) else _render(d)
        out.append(InvoiceTotals(f"{issued_on.year}-{seq:06d}", r.customer_id, issued_on,
                                 dict(r.nets), r.vat_fen, r.total_fen))
    return out


class DocumentCopy(NamedTuple):
    """A chunk's invoices, lines and VAT rows as COPY text, ready to send."""

    invoices: str
    lines: str
    vat: str


_COPY_INVOICES = ("COPY invoices (invoice_number, year, seq, customer_id, period, kind,"
                  " issued_on, due_on, net_fen, vat_fen, total_fen, payment_reference,"
                  " status) FROM STDIN")
_COPY_LINES = ("COPY invoice_lines (invoice_number, line_no, service, metering_point_id,"
               " component, register, description, quantity_milli, unit, unit_price_micro,"
               " amount_fen, vat_rate) FROM STDIN")
_COPY_VAT = "COPY invoice_vat (invoice_number, vat_rate, base_fen, vat_fen) FROM STDIN"


def _format(drafts: Sequence[InvoiceDraft | Rendered], issued_on: date, payment_days: int,
            last_seq: int) -> DocumentCopy:
    """The COPY text of the invoices numbered from ``last_seq + 1``, their lines and VAT
    rows (pure: the closer formats the next chunk while this one is being written)."""
    year = issued_on.year
    tail = f"\t{issued_on.isoformat()}\t{(issued_on + timedelta(days=payment_days)).isoformat()}"
    numbered = [(f"{year}-{seq:06d}", seq, d if isinstance(d, Rendered) else _render(d))
                for seq, d in enumerate(drafts, start=last_seq + 1)]
    t = _text
    invoices = "".join(
        f"{number}\t{year}\t{seq}\t{t(r.customer_id)}\t{t(r.period)}\tinvoice{tail}\t"
        f"{r.net_fen}\t{r.vat_fen}\t{r.total_fen}\t{make_payment_reference(year, seq)}"
        "\tfinalized\n"
        for number, seq, r in numbered)
    lines = "".join(f"{number}\t" + r.lines.replace("\n", f"\n{number}\t") + "\n"
                    for number, _, r in numbered if r.lines)
    vat = "".join(f"{number}\t" + r.vat.replace("\n", f"\n{number}\t") + "\n"
                  for number, _, r in numbered if r.vat)
    return DocumentCopy(invoices, lines, vat)


def _send(conn: psycopg.Connection, copy: DocumentCopy) -> None:
    """COPY a chunk formatted by `_format`."""
    with conn.cursor() as cur:
        for statement, text in ((_COPY_INVOICES, copy.invoices), (_COPY_LINES, copy.lines),
                                (_COPY_VAT, copy.vat)):
            if text:
                with cur.copy(statement) as out:
                    out.write(text)


def _write(conn: psycopg.Connection, drafts: Sequence[InvoiceDraft | Rendered],
           issued_on: date, payment_days: int, last_seq: int) -> None:
    """COPY the invoices numbered from ``last_seq + 1``, their lines and VAT rows."""
    _send(conn, _format(drafts, issued_on, payment_days, last_seq))
