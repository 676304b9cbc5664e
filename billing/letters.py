"""Collection letters as PDF (reportlab): reminder (opomena), second reminder with a
disconnection warning (opomena pred isključenje) and the disconnection order (nalog za
isključenje, for field staff).

Letters are rendered on demand from the trace row of their step (`collection_steps`): the
row keeps the amounts, invoices and metering points the letter states, so printing a letter
again gives the same text. Fonts come from `billing.invoice_pdf` (DejaVu Sans on reportlab's
font path, for č, ć, đ, š, ž; otherwise Helvetica with those letters transliterated).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import psycopg
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas

from billing import BillingError
from billing.invoice_pdf import _ASCII, DEFAULT_FONT, _fonts  # the one font helper
from rating.money import format_km

TITLES = {
    "reminder": "OPOMENA",
    "warning": "OPOMENA PRED ISKLJUČENJE",
    "disconnection": "NALOG ZA ISKLJUČENJE",
    "legal": "OBAVIJEST O PODNOŠENJU TUŽBE",
}


@dataclass(frozen=True)
class Letter:
    step: str
    letter_ref: str
    step_on: date
    customer_id: str
    name: str
    address: str
    overdue_fen: int
    days_overdue: int
    interest_fen: int
    detail: dict[str, Any]


def font_names() -> tuple[str, str, bool]:
    """(regular, bold, unicode?): the invoice PDF's fonts (DejaVu Sans or Helvetica)."""
    return _fonts(DEFAULT_FONT)


def body_lines(letter: Letter) -> list[str]:
    """The letter's text, line by line (also what tests read)."""
    d = letter.detail
    total = letter.overdue_fen + letter.interest_fen
    lines = [
        f"Broj: {letter.letter_ref}    Datum: {letter.step_on.strftime('%d.%m.%Y')}",
        f"Kupac: {letter.customer_id} {letter.name}",
        f"Adresa: {letter.address}",
        "",
        f"Dospjeli neplaćeni dug: {format_km(letter.overdue_fen)} KM"
        f" ({letter.days_overdue} dana od dospijeća najstarijeg računa).",
    ]
    if letter.interest_fen:
        lines.append(f"Obračunata zatezna kamata ovom opomenom: "
                     f"{format_km(letter.interest_fen)} KM (ukupno obračunato do danas: "
                     f"{d.get('interest_accrued', '0.00')} KM).")
    lines += ["", "Neplaćeni računi:"]
    lines += [f"  {i['number']}  dospio {i['due_on']}  otvoreno {i['open']} KM"
              for i in d.get("invoices", [])]
    within = int(d.get("pay_within_days") or 0)
    deadline = (letter.step_on + timedelta(days=within)).strftime("%d.%m.%Y")
    lines.append("")
    if letter.step == "reminder":
        lines.append(f"Molimo da iznos od {format_km(total)} KM uplatite do {deadline}.")
    elif letter.step == "warning":
        fees = d.get("fees") or {}
        lines += [f"Ako iznos od {format_km(total)} KM ne uplatite do {deadline}, isporuka će",
                  "biti obustavljena, a ponovno priključenje se naplaćuje",
                  f"({fees.get('meter', '?')} KM na brojilu, {fees.get('pole', '?')} KM na stubu)."]
    elif letter.step == "disconnection":
        lines.append("Obustaviti isporuku na mjernim mjestima:")
        lines += [f"  {p['metering_point_id']}  {p['service']}  brojilo {p['meter_id'] or '-'}"
                  f"  {p['address']}" for p in d.get("points", [])]
    else:
        lines.append("Potraživanje je predato nadležnom sudu radi naplate.")
    return lines


def render_letter(letter: Letter) -> bytes:
    """The letter as a one-page A4 PDF."""
    regular, bold, unicode = font_names()

    def text(s: str) -> str:
        return s if unicode else s.translate(_ASCII)

    buf = io.BytesIO()
    pdf = Canvas(buf, pagesize=A4, invariant=True)
    pdf.setTitle(text(f"{TITLES[letter.step]} {letter.letter_ref}"))
    width, height = A4
    y = height - 25 * mm
    pdf.setFont(bold, 11)
    pdf.drawString(20 * mm, y, text('JP "Komunalno Brčko" d.o.o.'))
    y -= 15 * mm
    pdf.setFont(bold, 14)
    pdf.drawString(20 * mm, y, text(TITLES[letter.step]))
    y -= 10 * mm
    pdf.setFont(regular, 10)
    for line in body_lines(letter):
        if y < 20 * mm:
            pdf.showPage()
            pdf.setFont(regular, 10)
            y = height - 20 * mm
        pdf.drawString(20 * mm, y, text(line))
        y -= 5.5 * mm
    pdf.showPage()
    pdf.save()
    return buf.getvalue()


def load_letter(conn: psycopg.Connection, letter_ref: str) -> Letter:
    row = conn.execute(
        """SELECT s.step, s.letter_ref, s.step_on, s.customer_id, c.name,
                  coalesce(c.address, ''), s.overdue_fen, s.days_overdue, s.interest_fen,
                  s.detail
           FROM collection_steps s JOIN customers c USING (customer_id)
           WHERE s.letter_ref = %s""", (letter_ref,)).fetchone()
    if row is None:
        raise BillingError(f"letter_ref: no letter {letter_ref!r}")
    return Letter(*row)


def letter_pdf(conn: psycopg.Connection, letter_ref: str) -> bytes:
    return render_letter(load_letter(conn, letter_ref))
