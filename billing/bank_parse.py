"""Reading bank statements (pure): ISO 20022 camt.053 and the payments CSV.

Both give `BankTransaction`s (credits to our account) plus report lines for what was left
out on purpose (debits, pending or reversed entries, zero amounts) and for what could not
be read (the field is named); one bad entry never hides the good ones.
`billing.bank_import` records the transactions; the formats are in docs/bank-import.md.

camt.053 (versions 001.02 to 001.08 and later of the same shape; namespace-aware) is
parsed with no DTD, no entity expansion and no external references (see `_xml_root`).
The remittance information gives the payment reference: the first 10-digit number (spaces
or dashes allowed) whose MOD 97-10 check digits are right; failing that, a structured
reference as written (its defect becomes the reason if nothing else matches). A customer
code is taken from text such as ``šifra kupca 100001`` or from a remittance that is only
6–9 digits.
"""

from __future__ import annotations

import csv
import gc
import io
import pyexpat
import re
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from xml.etree.ElementTree import Element, ParseError, TreeBuilder, XMLParser

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from billing import BillingError
from billing.reference import mod97_valid
from rating.money import parse_amount_fen

CAMT_NS = re.compile(r"^\{(urn:iso:std:iso:20022:tech:xsd:camt\.053\.001\.([0-9]{2}))\}Document$")
CSV_COLUMNS = ("transaction_id", "paid_on", "amount", "reference", "customer_code", "payer_name")
NOT_PROVIDED = "NOTPROVIDED"
_REF_CANDIDATE = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){9}(?![0-9])")
_CODE_TAG = re.compile(r"(?i)(?:šifra|sifra|kupac|kupca|korisnik|potro[sš]a[cč]\w*)\D{0,15}"
                       r"([0-9]{6,10})(?![0-9])")
_ONLY_CODE = re.compile(r"^\s*([0-9]{6,9})\s*$")
_CSV_AMOUNT = re.compile(r"^[0-9]+(?:[.,][0-9]{1,2})?$")
_SAFE_EXPAT = pyexpat.version_info >= (2, 4, 1)
_DMY = re.compile(r"^([0-9]{1,2})\.([0-9]{1,2})\.([0-9]{4})\.?$")


class StatementError(BillingError):
    """The whole file is unreadable (not XML, not camt.053, no header …)."""


@dataclass(frozen=True, slots=True)
class BankTransaction:
    transaction_id: str  # the bank's reference: unique per account
    paid_on: date
    amount_fen: int
    currency: str
    reference: str | None  # payment reference (poziv na broj) or the structured one as written
    customer_code: str | None
    payer_name: str | None
    remittance: str  # all remittance text, for the clerk
    where: str  # "Stmt[1]/Ntry[3]/TxDtls[1]" or "line 4"


@dataclass
class ParsedStatement:
    format: str  # camt.053.001.NN | csv
    statement_id: str | None
    account: str | None  # the statement's account (IBAN or other id)
    transactions: list[BankTransaction] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def find_reference(text: str) -> str | None:
    """The first 10-digit payment reference with valid check digits in `text`, compacted."""
    for m in _REF_CANDIDATE.finditer(text):
        digits = re.sub(r"[ -]", "", m.group())
        if mod97_valid(digits) and digits[2:8] != "000000":
            return digits
    return None


def find_customer_code(text: str) -> str | None:
    m = _CODE_TAG.search(text) or _ONLY_CODE.match(text)
    return m.group(1) if m else None


# ---- camt.053 -----------------------------------------------------------------------


class _UnsafeXml(ValueError):
    pass


class _NoDtd(TreeBuilder):
    """ElementTree's C parser calls `doctype` at ``<!DOCTYPE``, before any declaration."""

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise _UnsafeXml("DTDs are forbidden")


def _xml_root(data: bytes) -> Element:
    """The document's root. With expat ≥ 2.4.1 (entity amplification limits) ElementTree's
    C parser is used with any DTD refused at its first token, so no entity can be declared
    or expanded and nothing external is fetched; it is ~7× faster than defusedxml's Python
    parser (~70 µs an entry), which stays the fallback for an older expat."""
    if _SAFE_EXPAT:
        parser = XMLParser(target=_NoDtd())
        parser.feed(data)
        root: Element = parser.close()
        return root
    return fromstring(data, forbid_dtd=True)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Building a tree of a million elements triggers the cyclic garbage collector again
    and again, each pass walking every live object of the process: 2–4× the parse time.
    A parsed statement holds no reference cycles, so the collector is paused meanwhile."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse_camt053(data: bytes) -> ParsedStatement:
    with _no_cyclic_gc():
        return _parse_camt053(data)


def _parse_camt053(data: bytes) -> ParsedStatement:
    try:
        root = _xml_root(data)
    except (ParseError, DefusedXmlException, _UnsafeXml) as exc:
        raise StatementError(f"camt.053: not well-formed or unsafe XML: {exc}") from None
    m = CAMT_NS.match(root.tag)
    if not m:
        raise StatementError(f"camt.053: the root must be a camt.053 Document, got {root.tag!r}")
    x = _Camt(m.group(1))
    out = ParsedStatement(f"camt.053.001.{m.group(2)}", None, None)
    statements = x.all(root, "BkToCstmrStmt/Stmt")
    if not statements:
        raise StatementError("camt.053: BkToCstmrStmt/Stmt: no statement in the file")
    ids = []
    for s_no, stmt in enumerate(statements, start=1):
        account = x.text(stmt, "Acct/Id/IBAN") or x.text(stmt, "Acct/Id/Othr/Id")
        if account is None:
            raise StatementError(f"camt.053: Stmt[{s_no}]/Acct/Id: the account is missing")
        if out.account not in (None, account):
            raise StatementError("camt.053: statements of more than one account in one file")
        out.account = account
        ids.append(x.text(stmt, "Id") or f"Stmt[{s_no}]")
        for n_no, ntry in enumerate(x.all(stmt, "Ntry"), start=1):
            x.entry(out, ntry, f"Stmt[{s_no}]/Ntry[{n_no}]")
    out.statement_id = " ".join(ids)[:200]
    return out


class _Camt:
    """Namespace-aware look-ups in one camt.053 document, and the reading of its entries.

    Paths are plain child steps ("Refs/AcctSvcrRef"). An entry and each of its transaction
    details are indexed once (path → elements, in document order), so its twenty-odd
    look-ups are dictionary hits; ElementPath cost ~20 µs a look-up.
    """

    def __init__(self, namespace: str) -> None:
        self.prefix = f"{{{namespace}}}"
        self._paths: dict[str, tuple[str, ...]] = {}
        self._indexed: dict[int, dict[str, list[Element]]] = {}

    def _q(self, path: str) -> tuple[str, ...]:
        tags = self._paths.get(path)
        if tags is None:
            tags = self._paths[path] = tuple(self.prefix + p for p in path.split("/"))
        return tags

    def index(self, el: Element, within: Element | None = None) -> None:
        """Index `el`'s subtree for the look-ups that follow (until the next entry). With
        `within` (an indexed ancestor of which `el` is the only element on its path), the
        ancestor's index is reused."""
        if within is not None:
            outer = self._indexed[id(within)]
            base = next(p for p, found in outer.items() if found[0] is el) + "/"
            self._indexed[id(el)] = {p[len(base):]: found for p, found in outer.items()
                                     if p.startswith(base)}
            return
        paths: dict[str, list[Element]] = defaultdict(list)
        prefix, cut = self.prefix, len(self.prefix)

        def walk(node: Element, base: str) -> None:  # pre-order: document order per path
            for child in node:
                tag = child.tag
                path = base + (tag[cut:] if tag.startswith(prefix) else tag)
                paths[path].append(child)
                if len(child):
                    walk(child, path + "/")

        walk(el, "")
        self._indexed[id(el)] = paths

    def find(self, el: Element, path: str) -> Element | None:
        found = self.all(el, path)
        return found[0] if found else None

    def all(self, el: Element, path: str) -> list[Element]:
        indexed = self._indexed.get(id(el))
        if indexed is not None:
            return indexed.get(path, [])
        nodes = [el]
        for tag in self._q(path):
            nodes = [child for node in nodes for child in node if child.tag == tag]
            if not nodes:
                break
        return nodes

    def texts(self, el: Element, path: str) -> list[str]:
        return [t.text.strip() for t in self.all(el, path) if t.text and t.text.strip()]

    def text(self, el: Element, path: str) -> str | None:
        found = self.texts(el, path)
        return found[0] if found else None

    def entry(self, out: ParsedStatement, ntry: Element, where: str) -> None:
        self._indexed.clear()
        self.index(ntry)
        status = self.text(ntry, "Sts/Cd") or self.text(ntry, "Sts")
        side = self.text(ntry, "CdtDbtInd")
        ref = self.text(ntry, "AcctSvcrRef")
        amt = self.find(ntry, "Amt")
        ccy = amt.get("Ccy", "?") if amt is not None else "?"
        label = f"{where} ({ref or 'no AcctSvcrRef'}, {self.text(ntry, 'Amt')} {ccy})"
        if side != "CRDT":
            out.ignored.append(f"{label}: {side or 'no CdtDbtInd'}: only credits are payments")
            return
        if status != "BOOK":
            out.ignored.append(f"{label}: status {status}: only booked entries are payments")
            return
        if (self.text(ntry, "RvslInd") or "").lower() == "true":
            out.ignored.append(f"{label}: a reversal, not a payment")
            return
        day = (self.text(ntry, "BookgDt/Dt") or self.text(ntry, "BookgDt/DtTm")
               or self.text(ntry, "ValDt/Dt"))
        details = self.all(ntry, "NtryDtls/TxDtls")
        for t_no, tx in enumerate(details or [ntry], start=1):
            if details:
                self.index(tx, within=ntry if len(details) == 1 else None)
            at = f"{where}/TxDtls[{t_no}]" if details else where
            txid = self.text(tx, "Refs/AcctSvcrRef")
            if txid is None and ref is not None:
                txid = ref if len(details) <= 1 else f"{ref}/{t_no}"
            e2e = self.text(tx, "Refs/EndToEndId")
            if txid is None and e2e and e2e.upper() != NOT_PROVIDED:
                txid = e2e
            try:
                if txid is None:
                    raise ValueError("Refs/AcctSvcrRef: no transaction reference"
                                     " (nor EndToEndId)")
                self.transaction(out, ntry, tx if details else None, at, day, txid,
                                 len(details) <= 1)
            except ValueError as exc:
                out.errors.append(f"{at}: {exc}")

    def transaction(self, out: ParsedStatement, ntry: Element, tx: Element | None, at: str,
                    day: str | None, txid: str, single: bool) -> None:
        if tx is not None and (self.text(tx, "CdtDbtInd") or "CRDT") != "CRDT":
            out.ignored.append(f"{at} ({txid}): a debit inside a credit entry: ignored")
            return
        amt = None
        if tx is not None:
            amt = self.find(tx, "Amt")
            if amt is None:
                amt = self.find(tx, "AmtDtls/TxAmt/Amt")
        if amt is None and single:
            amt = self.find(ntry, "Amt")
        if amt is None:
            raise ValueError("Amt: the amount is missing")
        amount_fen = _amount(amt.text or "", "Amt")
        if amount_fen == 0:
            out.ignored.append(f"{at} ({txid}): amount 0.00: nothing paid")
            return
        paid_on = _day(day, "BookgDt/Dt")
        src = tx if tx is not None else ntry
        strd = self.texts(src, "RmtInf/Strd/CdtrRefInf/Ref")
        remittance = " ".join([*strd, *self.texts(src, "RmtInf/Ustrd"),
                               *self.texts(src, "RmtInf/Strd/AddtlRmtInf")])
        reference = find_reference(remittance) or (strd[0][:35] if strd else None)
        if reference is not None and _ONLY_CODE.match(reference):
            reference = None  # a customer code written as the reference
        payer = None
        for path in ("Dbtr/Nm", "Dbtr/Pty/Nm", "UltmtDbtr/Nm", "UltmtDbtr/Pty/Nm"):
            payer = payer or self.text(src, f"RltdPties/{path}")
        out.transactions.append(BankTransaction(
            txid[:64], paid_on, amount_fen, amt.get("Ccy", "").strip().upper() or "?",
            reference, find_customer_code(remittance), payer[:140] if payer else None,
            remittance[:500], at))


def _amount(raw: str, name: str) -> int:
    value = raw.strip()
    if not re.fullmatch(r"[0-9]+(\.[0-9]{1,2})?", value):
        raise ValueError(f"{name}: must be an amount such as 45.20, got {raw!r}")
    return parse_amount_fen(value)


def _day(raw: str | None, name: str) -> date:
    if raw is None:
        raise ValueError(f"{name}: the booking date is missing")
    m = _DMY.match(raw.strip())
    try:
        if m:
            return date(int(m.group(3)), int(m.group(2)), int(m.group(1)))
        return date.fromisoformat(raw.strip()[:10])
    except ValueError:
        raise ValueError(f"{name}: not a date: {raw!r}") from None


# ---- CSV ----------------------------------------------------------------------------


def parse_csv(data: bytes) -> ParsedStatement:
    """The payments CSV: a header naming at least transaction_id, paid_on and amount
    (any order, extra columns ignored), comma or semicolon separated, UTF-8."""
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise StatementError(f"csv: not UTF-8 (byte {exc.start}): save the file as UTF-8"
                             ) from None
    first_line = content.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    reader = csv.DictReader(io.StringIO(content, newline=""), delimiter=delimiter)
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in CSV_COLUMNS[:3] if c not in header]
    if missing:
        raise StatementError(f"csv: header: missing column(s) {', '.join(missing)}"
                             f" (expected {', '.join(CSV_COLUMNS)})")
    reader.fieldnames = header
    out = ParsedStatement("csv", None, None)
    for row in reader:
        where = f"line {reader.line_num}"
        try:
            _csv_row(out, row, where)
        except ValueError as exc:
            out.errors.append(f"{where}: {exc}")
    return out


def _csv_row(out: ParsedStatement, row: dict[str, Any], where: str) -> None:
    def cell(name: str) -> str:
        value = row.get(name)
        return value.strip() if isinstance(value, str) else ""

    if not any(cell(c) for c in CSV_COLUMNS):
        return  # a blank line
    txid = cell("transaction_id")
    if not txid or len(txid) > 64 or not txid.isprintable():
        raise ValueError("transaction_id: 1–64 printable characters required")
    raw_amount = cell("amount")
    if raw_amount.startswith("-"):
        out.ignored.append(f"{where} ({txid}): negative amount {raw_amount}: not a payment")
        return
    if not _CSV_AMOUNT.match(raw_amount):
        raise ValueError(f"amount: must be such as 45.20 or 45,20, got {raw_amount!r}")
    amount_fen = parse_amount_fen(raw_amount.replace(",", "."))
    if amount_fen == 0:
        out.ignored.append(f"{where} ({txid}): amount 0: nothing paid")
        return
    paid_on = _day(cell("paid_on") or None, "paid_on")
    given_ref, code = cell("reference"), cell("customer_code")
    reference = find_reference(given_ref) or (given_ref[:35] or None)
    if not code:
        code = find_customer_code(given_ref) or ""
    if reference is not None and _ONLY_CODE.match(reference):
        reference = None  # it was the customer code
    out.transactions.append(BankTransaction(
        txid, paid_on, amount_fen, "BAM", reference, code or None,
        cell("payer_name")[:140] or None, given_ref[:500], where))
