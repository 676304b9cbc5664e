"""The invoice as a PDF (reportlab): header, customer, metering points, lines per service and
register, VAT breakdown, total, due date and the payment slip (uplatnica) block.

Text is Bosnian in Latin script (``lang="en"``: English labels; line descriptions come from
the tariff catalog as they are). The font is a TrueType font found on reportlab's font
search path (DejaVu Sans by default, which has č ć đ š ž); without one the PDF falls back
to Helvetica and writes c c dj s z. Rendering is pure: the invoice is a plain dict (see
`render_invoice_pdf`), `load_invoice` reads one from the database.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cache
from typing import Any

import psycopg
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from reportlab.platypus.flowables import Flowable

from billing import BillingError
from billing.accounts import service_key
from billing.invoice_text import LABELS, REGISTERS, SERVICES, UNITS
from billing.reference import is_valid_bih_account
from rating.money import format_km, format_price, format_quantity

DEFAULT_FONT = "DejaVuSans.ttf"
_FALLBACK = ("Helvetica", "Helvetica-Bold")
_ASCII = str.maketrans({"č": "c", "ć": "c", "š": "s", "ž": "z", "Č": "C", "Ć": "C",
                        "Š": "S", "Ž": "Z", "đ": "dj", "Đ": "Dj"})


class InvoicePdfError(BillingError):
    """The invoice or the utility's data cannot make a correct PDF; names the field."""


@dataclass(frozen=True)
class UtilityInfo:
    account: str  # the utility's BiH account (16 digits), checked by MOD 97-10
    name: str = 'JP "Komunalno Brčko" d.o.o.'
    address: str = "Brčko distrikt BiH"
    id_number: str | None = None  # identifikacioni broj (JIB)
    vat_number: str | None = None  # PDV broj
    bank: str | None = None
    phone: str | None = None
    email: str | None = None


@cache
def _fonts(font_file: str | None) -> tuple[str, str, bool]:
    """(regular, bold, unicode?) — the TTF and its -Bold sibling if found, else Helvetica."""
    if font_file is None:
        return (*_FALLBACK, False)
    stem = font_file.rsplit(".", 1)[0]
    try:
        pdfmetrics.registerFont(TTFont(stem, font_file))
    except TTFError:
        return (*_FALLBACK, False)
    try:
        pdfmetrics.registerFont(TTFont(f"{stem}-Bold", f"{stem}-Bold.ttf"))
        return stem, f"{stem}-Bold", True
    except TTFError:
        return stem, stem, True


def render_invoice_pdf(invoice: Mapping[str, Any], *, utility: UtilityInfo, lang: str = "bs",
                       font: str | None = DEFAULT_FONT) -> bytes:
    """The PDF of `invoice`: keys number, period, issued_on, due_on (dates or ISO text),
    customer_id, customer_name, customer_address (optional), payment_reference, net_fen,
    vat_fen, total_fen, lines (service, metering_point_id, description, register,
    quantity_milli, unit, unit_price_micro, amount_fen, vat_rate), vat_rows (vat_rate,
    base_fen, vat_fen) and metering_points (metering_point_id, address; optional).
    `font`: a TTF file name on reportlab's search path, None for Helvetica."""
    if lang not in LABELS:
        raise InvoicePdfError(f"lang: must be one of {', '.join(LABELS)}, got {lang!r}")
    if not is_valid_bih_account(utility.account):
        raise InvoicePdfError(f"utility.account: not a valid BiH account (16 digits, MOD 97-10):"
                              f" {utility.account!r}")
    inv = _checked(invoice)
    regular, bold, unicode = _fonts(font)
    r = _Renderer(lang, regular, bold, unicode)
    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm,
                            topMargin=12 * mm, bottomMargin=12 * mm, invariant=True,
                            title=r.t(f"{r.label('invoice')} {inv['number']}"),
                            author=r.t(utility.name), lang="bs-BA" if lang == "bs" else "en")
    doc.build(r.story(inv, utility))
    return buf.getvalue()


_REQUIRED = ("number", "period", "issued_on", "due_on", "customer_id", "customer_name",
             "payment_reference", "net_fen", "vat_fen", "total_fen", "lines", "vat_rows")


def _checked(invoice: Mapping[str, Any]) -> dict[str, Any]:
    inv = dict(invoice)
    for key in _REQUIRED:
        if inv.get(key) in (None, ""):
            raise InvoicePdfError(f"invoice.{key}: is required")
    for key in ("issued_on", "due_on"):
        if isinstance(inv[key], str):
            try:
                inv[key] = date.fromisoformat(inv[key])
            except ValueError:
                raise InvoicePdfError(f"invoice.{key}: not a date: {inv[key]!r}") from None
    for key in ("net_fen", "vat_fen", "total_fen"):
        if not isinstance(inv[key], int) or isinstance(inv[key], bool):
            raise InvoicePdfError(f"invoice.{key}: must be an integer number of feninga")
    if inv["net_fen"] + inv["vat_fen"] != inv["total_fen"]:
        raise InvoicePdfError("invoice.total_fen: is not net_fen + vat_fen")
    return inv


class _Renderer:
    def __init__(self, lang: str, regular: str, bold: str, unicode: bool) -> None:
        self.lang, self.unicode = lang, unicode
        self.body = ParagraphStyle("body", fontName=regular, fontSize=8.5, leading=11)
        self.small = ParagraphStyle("small", parent=self.body, fontSize=7.5, leading=9.5)
        self.strong = ParagraphStyle("strong", parent=self.body, fontName=bold)
        self.strong_right = ParagraphStyle("strong_right", parent=self.strong, alignment=2)
        self.title = ParagraphStyle("title", parent=self.body, fontName=bold, fontSize=15,
                                    leading=19)
        self.regular, self.bold = regular, bold

    def t(self, text: str) -> str:
        return text if self.unicode else text.translate(_ASCII)

    def label(self, key: str) -> str:
        return LABELS[self.lang][key]

    def p(self, text: str, style: ParagraphStyle | None = None) -> Paragraph:
        escaped = self.t(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return Paragraph(escaped.replace("\n", "<br/>"), style or self.body)

    def km(self, fen: int) -> str:
        return self.number(format_km(fen))

    def number(self, text: str) -> str:
        """'1234.56' → '1.234,56' in Bosnian, '1,234.56' in English."""
        sign, digits = ("-", text[1:]) if text.startswith("-") else ("", text)
        whole, _, frac = digits.partition(".")
        groups = f"{int(whole):,}"
        if self.lang == "bs":
            return sign + groups.replace(",", ".") + ("," + frac if frac else "")
        return sign + groups + ("." + frac if frac else "")

    def day(self, d: date) -> str:
        return f"{d:%d.%m.%Y}." if self.lang == "bs" else d.isoformat()

    def story(self, inv: dict[str, Any], u: UtilityInfo) -> list[Flowable]:
        L = self.label
        ids = " · ".join(x for x in (u.id_number and f"{L('id_number')} {u.id_number}",
                                     u.vat_number and f"{L('vat_number')} {u.vat_number}") if x)
        contact = " · ".join(x for x in (u.phone, u.email) if x)
        head = [self.p(u.name, self.strong), self.p(u.address, self.small)]
        head += [self.p(x, self.small) for x in (ids, contact) if x]
        customer = f"{inv['customer_name']}\n{inv.get('customer_address') or ''}".strip()
        facts = [
            (L("customer_code"), inv["customer_id"]), (L("period"), inv["period"]),
            (L("issued_on"), self.day(inv["issued_on"])), (L("due_on"), self.day(inv["due_on"])),
            (L("reference"), inv["payment_reference"]),
        ]
        out: list[Flowable] = [
            self._grid([[head, [self.p(L("customer"), self.small),
                                self.p(customer, self.strong)]]], [95 * mm, 85 * mm]),
            Spacer(1, 5 * mm),
            self.p(f"{L('invoice')} {inv['number']}", self.title), Spacer(1, 2 * mm),
            self._grid([[self.p(k, self.small), self.p(v, self.strong)] for k, v in facts],
                       [40 * mm, 60 * mm]),
        ]
        points = inv.get("metering_points") or []
        if points:
            text = "\n".join(f"{m['metering_point_id']} – {m.get('address') or ''}"
                             for m in points)
            out += [Spacer(1, 3 * mm), self.p(L("metering_points"), self.small), self.p(text)]
        out += [Spacer(1, 4 * mm), self._lines(inv["lines"]), Spacer(1, 3 * mm),
                self._totals(inv), Spacer(1, 8 * mm), self._slip(inv, u)]
        return out

    def _grid(self, rows: list[list[Any]], widths: list[float], boxed: bool = False) -> Table:
        table = Table(rows, colWidths=widths, hAlign="LEFT")
        style: list[tuple[Any, ...]] = [("VALIGN", (0, 0), (-1, -1), "TOP"),
                                        ("LEFTPADDING", (0, 0), (-1, -1), 2)]
        if boxed:
            style += [("BOX", (0, 0), (-1, -1), 0.8, colors.black),
                      ("INNERGRID", (0, 0), (-1, -1), 0.3, colors.grey)]
        table.setStyle(TableStyle(style))
        return table

    def _lines(self, lines: list[Mapping[str, Any]]) -> Table:
        L = self.label
        rows: list[list[Any]] = [[self.p(L(k), self.small) for k in (
            "description", "metering_point", "register", "quantity", "unit", "price", "amount",
            "vat_rate")]]
        header_rows = []
        for service in sorted({ln["service"] for ln in lines}, key=service_key):
            header_rows.append(len(rows))
            rows.append([self.p(SERVICES[self.lang].get(service, service), self.strong)])
            for ln in (x for x in lines if x["service"] == service):
                reg = ln.get("register")
                rows.append([
                    self.p(ln["description"]), self.p(ln.get("metering_point_id") or ""),
                    self.p(f"{reg} {REGISTERS[self.lang].get(reg, '')}".strip() if reg else ""),
                    self.number(format_quantity(int(ln["quantity_milli"]))),
                    self.t(UNITS[self.lang].get(ln["unit"], ln["unit"])),
                    self.number(format_price(int(ln["unit_price_micro"]))),
                    self.km(int(ln["amount_fen"])), _rate(ln["vat_rate"])])
        table = Table(rows, colWidths=[55 * mm, 20 * mm, 20 * mm, 20 * mm, 12 * mm, 20 * mm,
                                       20 * mm, 13 * mm], repeatRows=1)
        style: list[tuple[Any, ...]] = [
                 ("FONTNAME", (0, 0), (-1, -1), self.regular), ("FONTSIZE", (0, 0), (-1, -1), 8),
                 ("ALIGN", (3, 1), (-1, -1), "RIGHT"), ("VALIGN", (0, 0), (-1, -1), "TOP"),
                 ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.black),
                 ("LINEBELOW", (0, -1), (-1, -1), 0.8, colors.black)]
        for i in header_rows:
            style += [("SPAN", (0, i), (-1, i)), ("BACKGROUND", (0, i), (-1, i),
                                                  colors.HexColor("#eeeeee"))]
        table.setStyle(TableStyle(style))
        return table

    def _totals(self, inv: dict[str, Any]) -> Table:
        L = self.label
        rows = [[self.p(f"{L('vat_base')} {_rate(v['vat_rate'])} %"), self.km(int(v["base_fen"])),
                 self.p(f"{L('vat')} {_rate(v['vat_rate'])} %"), self.km(int(v["vat_fen"]))]
                for v in inv["vat_rows"]]
        if len(rows) != 1:  # with one rate its row is already the sum
            rows.append([self.p(L("net")), self.km(inv["net_fen"]), self.p(L("vat")),
                         self.km(inv["vat_fen"])])
        credit = _credit(inv)
        if credit:
            rows.append([self.p(L("invoice_total")), "", "", f"{self.km(inv['total_fen'])} KM"])
            rows.append([self.p(L("credit_applied")), "", "", f"−{self.km(credit)} KM"])
        rows.append([self.p(L("total"), self.strong), "", "",
                     self.p(f"{self.km(inv['total_fen'] - credit)} KM", self.strong_right)])
        table = Table(rows, colWidths=[45 * mm, 25 * mm, 45 * mm, 35 * mm], hAlign="RIGHT")
        table.setStyle(TableStyle([
            ("FONTNAME", (0, 0), (-1, -1), self.regular), ("FONTSIZE", (0, 0), (-1, -1), 8.5),
            ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
            ("LINEABOVE", (0, -1), (-1, -1), 1, colors.black)]))
        return table

    def _slip(self, inv: dict[str, Any], u: UtilityInfo) -> Table:
        L = self.label
        acc = "".join(ch for ch in u.account if ch.isdigit())
        account = f"{acc[:3]}-{acc[3:6]}-{acc[6:14]}-{acc[14:]}"
        payer = f"{inv['customer_name']}\n{inv.get('customer_address') or ''}".strip()
        purpose = f"{L('purpose')} {inv['number']} ({inv['period']})"
        recipient = u.name + (f"\n{u.bank}" if u.bank else "")
        cells = [
            [self.p(L("slip"), self.strong), ""],
            [self.p(f"{L('payer')}\n{payer}"), self.p(f"{L('recipient_account')}\n{account}",
                                                      self.strong)],
            [self.p(f"{L('purpose_label')}\n{purpose}"),
             self.p(f"{L('amount_km')}\n{self.km(inv['total_fen'] - _credit(inv))}",
                    self.strong)],
            [self.p(f"{L('recipient')}\n{recipient}"),
             self.p(f"{L('reference')}\n{inv['payment_reference']}", self.strong)],
            [self.p(f"{L('customer_code')}: {inv['customer_id']}"),
             self.p(f"{L('due_on')}: {self.day(inv['due_on'])}")],
        ]
        table = self._grid(cells, [95 * mm, 85 * mm], boxed=True)
        table.setStyle(TableStyle([("SPAN", (0, 0), (-1, 0))]))
        return table


def _credit(inv: Mapping[str, Any]) -> int:
    """Customer credit applied to the invoice: the slip asks for the total less it."""
    return max(0, min(int(inv.get("credit_applied_fen") or 0), int(inv["total_fen"])))


def _rate(rate: Any) -> str:
    return f"{Decimal(str(rate)).normalize():f}"


def load_invoice(conn: psycopg.Connection, number: str, customer_id: str | None = None
                 ) -> dict[str, Any] | None:
    """The invoice as `render_invoice_pdf` wants it; None if unknown (or, with
    `customer_id`, someone else's)."""
    head = conn.execute(
        """SELECT i.invoice_number, i.period, i.issued_on, i.due_on, i.customer_id, c.name,
                  c.address, i.payment_reference, i.net_fen, i.vat_fen, i.total_fen
           FROM invoices i JOIN customers c USING (customer_id)
           WHERE i.invoice_number = %s AND (%s::text IS NULL OR i.customer_id = %s)""",
        (number, customer_id, customer_id)).fetchone()
    if head is None:
        return None
    keys = ("number", "period", "issued_on", "due_on", "customer_id", "customer_name",
            "customer_address", "payment_reference", "net_fen", "vat_fen", "total_fen")
    inv: dict[str, Any] = dict(zip(keys, head, strict=True))
    credit = conn.execute("SELECT coalesce(-sum(amount_fen), 0) FROM customer_credit_moves"
                          " WHERE invoice_number = %s", (number,)).fetchone()
    inv["credit_applied_fen"] = int(credit[0]) if credit else 0
    cur = conn.execute(
        """SELECT service, metering_point_id, description, register, quantity_milli, unit,
                  unit_price_micro, amount_fen, vat_rate
           FROM invoice_lines WHERE invoice_number = %s ORDER BY line_no""", (number,))
    names = [d.name for d in cur.description or []]
    inv["lines"] = [dict(zip(names, row, strict=True)) for row in cur]
    inv["vat_rows"] = [
        {"vat_rate": r[0], "base_fen": r[1], "vat_fen": r[2]} for r in conn.execute(
            "SELECT vat_rate, base_fen, vat_fen FROM invoice_vat WHERE invoice_number = %s"
            " ORDER BY vat_rate", (number,))]
    inv["metering_points"] = [
        {"metering_point_id": r[0], "address": r[1]} for r in conn.execute(
            """SELECT DISTINCT m.metering_point_id, m.address FROM invoice_lines l
               JOIN metering_points m USING (metering_point_id)
               WHERE l.invoice_number = %s ORDER BY 1""", (number,))]
    return inv
