"""Reading camt.053 statements and the payments CSV (pure)."""

from __future__ import annotations

from datetime import date

import pytest

from billing.bank_parse import (
    StatementError,
    find_customer_code,
    find_reference,
    parse_camt053,
    parse_csv,
)
from billing.reference import make_payment_reference

REF_1 = make_payment_reference(2026, 1)  # 2600000126
IBAN = "BA391549990000000099"


def ntry(amount: str, *, side: str = "CRDT", status: str = "BOOK", ref: str | None = "R-1",
         day: str = "2026-04-10", tx: str = "", ccy: str = "BAM", v08: bool = False,
         extra: str = "") -> str:
    sts = f"<Sts><Cd>{status}</Cd></Sts>" if v08 else f"<Sts>{status}</Sts>"
    acct_ref = f"<AcctSvcrRef>{ref}</AcctSvcrRef>" if ref else ""
    details = f"<NtryDtls>{tx}</NtryDtls>" if tx else ""
    return (f'<Ntry><Amt Ccy="{ccy}">{amount}</Amt><CdtDbtInd>{side}</CdtDbtInd>{extra}{sts}'
            f"<BookgDt><Dt>{day}</Dt></BookgDt><ValDt><Dt>{day}</Dt></ValDt>{acct_ref}"
            f"<BkTxCd/>{details}</Ntry>")


def txd(*, strd: str | None = None, ustrd: str | None = None, debtor: str | None = None,
        amount: str | None = None, ref: str | None = None, e2e: str | None = None,
        v08: bool = False) -> str:
    refs = (f"<Refs>{f'<AcctSvcrRef>{ref}</AcctSvcrRef>' if ref else ''}"
            f"{f'<EndToEndId>{e2e}</EndToEndId>' if e2e else ''}</Refs>")
    amt = ""
    if amount is not None:
        amt = (f'<Amt Ccy="BAM">{amount}</Amt>' if v08
               else f'<AmtDtls><TxAmt><Amt Ccy="BAM">{amount}</Amt></TxAmt></AmtDtls>')
    party = ""
    if debtor:
        party = (f"<RltdPties><Dbtr><Pty><Nm>{debtor}</Nm></Pty></Dbtr></RltdPties>" if v08
                 else f"<RltdPties><Dbtr><Nm>{debtor}</Nm></Dbtr></RltdPties>")
    rmt = ""
    if strd is not None:
        rmt += f"<Strd><CdtrRefInf><Tp><CdOrPrtry><Cd>SCOR</Cd></CdOrPrtry></Tp><Ref>{strd}</Ref>" \
               "</CdtrRefInf></Strd>"
    if ustrd is not None:
        rmt += f"<Ustrd>{ustrd}</Ustrd>"
    return f"<TxDtls>{refs}{amt}{party}{f'<RmtInf>{rmt}</RmtInf>' if rmt else ''}</TxDtls>"


def camt(entries: str, version: str = "02", account: str = IBAN) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.{version}">'
        "<BkToCstmrStmt><GrpHdr><MsgId>MSG-1</MsgId><CreDtTm>2026-04-11T06:00:00</CreDtTm>"
        "</GrpHdr><Stmt><Id>STMT-2026-04-10</Id><CreDtTm>2026-04-11T06:00:00</CreDtTm>"
        f"<Acct><Id><IBAN>{account}</IBAN></Id><Ccy>BAM</Ccy></Acct>{entries}</Stmt>"
        "</BkToCstmrStmt></Document>"
    ).encode()


def test_camt_02_fields() -> None:
    st = parse_camt053(camt(
        ntry("81.49", ref="E-1", tx=txd(strd="26 000001 26", debtor="Amra Hodžić"))
        + ntry("10.00", ref="E-2", tx=txd(ustrd="Račun za struju, šifra kupca: 100002"))
        + ntry("5.00", ref=None, tx=txd(e2e="E2E-77", ustrd="2600000127"))  # typo
        + ntry("3.00", ref="E-4")  # no details: the entry itself
    ))
    assert (st.format, st.statement_id, st.account) == ("camt.053.001.02", "STMT-2026-04-10",
                                                         IBAN)
    assert (st.ignored, st.errors) == ([], [])
    t1, t2, t3, t4 = st.transactions
    assert (t1.transaction_id, t1.paid_on, t1.amount_fen, t1.currency, t1.reference,
            t1.customer_code, t1.payer_name) == (
        "E-1", date(2026, 4, 10), 8149, "BAM", REF_1, None, "Amra Hodžić")
    assert t1.where == "Stmt[1]/Ntry[1]/TxDtls[1]"
    assert (t2.reference, t2.customer_code) == (None, "100002")
    assert t2.remittance == "Račun za struju, šifra kupca: 100002"
    assert (t3.transaction_id, t3.reference) == ("E2E-77", None)
    assert (t4.transaction_id, t4.amount_fen, t4.where) == ("E-4", 300, "Stmt[1]/Ntry[4]")


def test_camt_08_fields_and_batch_entries() -> None:
    batch = (txd(ref="TX-A", amount="20.00", strd=REF_1, debtor="Nedim K.", v08=True)
             + txd(amount="5.50", strd="100001", v08=True))
    st = parse_camt053(camt(ntry("25.50", ref="B-1", tx=batch, v08=True), version="08"))
    assert st.format == "camt.053.001.08"
    a, b = st.transactions
    assert (a.transaction_id, a.amount_fen, a.reference, a.payer_name) == (
        "TX-A", 2000, REF_1, "Nedim K.")
    # no own reference in a batch: the entry's, numbered; a bare code is the customer code
    assert (b.transaction_id, b.amount_fen, b.reference, b.customer_code) == (
        "B-1/2", 550, None, "100001")


def test_camt_left_out_and_unreadable_entries_are_reported() -> None:
    st = parse_camt053(camt(
        ntry("12.00", side="DBIT", ref="D-1")
        + ntry("12.00", status="PDNG", ref="P-1")
        + ntry("12.00", ref="V-1", extra="<RvslInd>true</RvslInd>")
        + ntry("0.00", ref="Z-1")
        + ntry("7,50", ref="C-1")
        + ntry("7.50", ref=None, tx=txd(e2e="NOTPROVIDED"))
        + ntry("7.50", ref="N-1", day="2026-02-30")
        + ntry("2.00", ref="OK-1")
    ))
    assert st.ignored == [
        "Stmt[1]/Ntry[1] (D-1, 12.00 BAM): DBIT: only credits are payments",
        "Stmt[1]/Ntry[2] (P-1, 12.00 BAM): status PDNG: only booked entries are payments",
        "Stmt[1]/Ntry[3] (V-1, 12.00 BAM): a reversal, not a payment",
        "Stmt[1]/Ntry[4] (Z-1): amount 0.00: nothing paid",
    ]
    assert st.errors == [
        "Stmt[1]/Ntry[5]: Amt: must be an amount such as 45.20, got '7,50'",
        "Stmt[1]/Ntry[6]/TxDtls[1]: Refs/AcctSvcrRef: no transaction reference (nor EndToEndId)",
        "Stmt[1]/Ntry[7]: BookgDt/Dt: not a date: '2026-02-30'",
    ]
    assert [t.transaction_id for t in st.transactions] == ["OK-1"]


def test_foreign_currency_is_kept_with_its_currency() -> None:
    st = parse_camt053(camt(ntry("10.00", ref="F-1", ccy="EUR")))
    assert st.transactions[0].currency == "EUR"


@pytest.mark.parametrize(("data", "why"), [
    (b"<Document><BkToCstmrStmt/></Document>", "root must be a camt.053 Document"),
    (camt("").replace(b"camt.053.001.02", b"camt.052.001.02"), "root must be a camt.053"),
    (b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>'
     b"</BkToCstmrStmt></Document>", "no statement in the file"),
    (camt("").replace(b"<IBAN>" + IBAN.encode() + b"</IBAN>", b""), "the account is missing"),
    (camt("", account="BA39" + "1" * 31), "Acct/Id: more than 34 characters"),
    (b"<Document><unclosed></Document>", "not well-formed"),
    (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
     b"<Document>&b;</Document>", "unsafe XML"),
    (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
     b"<Document>&x;</Document>", "unsafe XML"),
])
def test_unreadable_statements(data: bytes, why: str) -> None:
    with pytest.raises(StatementError, match=why):
        parse_camt053(data)


def test_find_reference_and_customer_code() -> None:
    assert find_reference("Poziv na broj: 26-000001-26, hvala") == REF_1
    assert find_reference("2600000127") is None  # wrong check digits
    assert find_reference("12600000126") is None  # part of a longer number
    assert find_reference("ref 0000000097") is None  # sequence 000000 does not exist
    assert find_customer_code("Sifra potrosaca 1234567") == "1234567"
    assert find_customer_code(" 100001 ") == "100001"
    assert find_customer_code("račun 100001 za mart") is None  # a number without a tag


def test_find_reference_compact_and_written_forms_agree() -> None:
    for seq in (1, 2, 99, 123456):
        ref = make_payment_reference(2026, seq)
        assert find_reference(ref) == ref
        assert find_reference(f"{ref[:2]} {ref[2:8]}-{ref[8:]}") == ref
        wrong = ref[:9] + str((int(ref[9]) + 1) % 10)
        assert find_reference(wrong) is None
    assert find_reference("0000000001") is None  # 000000 names no invoice


def test_camt_details_debit_value_date_and_remittance_pieces() -> None:
    debit = txd(ref="TX-D", amount="1.00").replace("<Refs>", "<CdtDbtInd>DBIT</CdtDbtInd><Refs>")
    ustrd = txd(ref="TX-U", amount="2.00", ustrd="za mart")
    ustrd = ustrd.replace("<Ustrd>za mart</Ustrd>",
                          "<Ustrd>za mart</Ustrd><Ustrd> šifra kupca 100002</Ustrd>")
    entry = ntry("3.00", ref="B-9", tx=debit + ustrd).replace(
        "<BookgDt><Dt>2026-04-10</Dt></BookgDt>", "")  # no booking date: the value date
    st = parse_camt053(camt(entry + ntry("1" * 16 + ".00", ref="H-1")))
    assert st.ignored == ["Stmt[1]/Ntry[1]/TxDtls[1] (TX-D): a debit inside a credit entry:"
                          " ignored"]
    assert st.errors == ["Stmt[1]/Ntry[2]: amount: more than 15 digits before the decimal"
                         " point, got '1111111111111111.00'"]
    [t] = st.transactions
    assert (t.transaction_id, t.paid_on, t.amount_fen, t.customer_code, t.remittance) == (
        "TX-U", date(2026, 4, 10), 200, "100002", "za mart šifra kupca 100002")


CSV_OK = (
    "transaction_id,paid_on,amount,reference,customer_code,payer_name\n"
    f"P-1,2026-04-10,81.49,{REF_1},,Amra H.\n"
    "P-2,2026-04-11,10,,100002,\n"
    "\n"
    "P-3,2026-04-11,4.00,100001,,\n"
)


def test_csv_rows() -> None:
    st = parse_csv(CSV_OK.encode())
    assert (st.format, st.errors, st.ignored) == ("csv", [], [])
    assert [(t.transaction_id, t.paid_on, t.amount_fen, t.reference, t.customer_code,
             t.payer_name, t.where) for t in st.transactions] == [
        ("P-1", date(2026, 4, 10), 8149, REF_1, None, "Amra H.", "line 2"),
        ("P-2", date(2026, 4, 11), 1000, None, "100002", None, "line 3"),
        ("P-3", date(2026, 4, 11), 400, None, "100001", None, "line 5"),
    ]


def test_csv_semicolons_decimal_comma_local_dates_and_bom() -> None:
    text = ("\ufeffAmount;Paid_On;Transaction_ID;Reference;Napomena\n"
            "45,20;10.04.2026.;PO-1;26 000001 26;x\n")
    st = parse_csv(text.encode())
    t = st.transactions[0]
    assert (t.transaction_id, t.paid_on, t.amount_fen, t.reference) == (
        "PO-1", date(2026, 4, 10), 4520, REF_1)


def test_csv_bad_rows_are_named_and_the_rest_kept() -> None:
    text = ("transaction_id,paid_on,amount,reference\n"
            ",2026-04-10,1.00,\n"
            "B-2,2026-04-31,1.00,\n"
            "B-3,2026-04-10,1.234,\n"
            "B-4,2026-04-10,-5.00,\n"
            "B-5,2026-04-10,0.00,\n"
            "B-6,2026-04-10,1.00,\n")
    st = parse_csv(text.encode())
    assert st.errors == [
        "line 2: transaction_id: 1–64 printable characters required",
        "line 3: paid_on: not a date: '2026-04-31'",
        "line 4: amount: must be such as 45.20 or 45,20, got '1.234'",
    ]
    assert st.ignored == ["line 5 (B-4): negative amount -5.00: not a payment",
                          "line 6 (B-5): amount 0: nothing paid"]
    assert [t.transaction_id for t in st.transactions] == ["B-6"]


@pytest.mark.parametrize(("data", "why"), [
    (b"id,date,amount\n1,2026-04-10,1.00\n", "missing column.s. transaction_id, paid_on"),
    ("transaction_id,paid_on,amount\nš,2026-04-10,1\n".encode("cp1250"), "not UTF-8 .byte 30."),
])
def test_unreadable_csv(data: bytes, why: str) -> None:
    with pytest.raises(StatementError, match=why):
        parse_csv(data)


@pytest.mark.parametrize("data", [
    b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
    b"<Document>&b;</Document>",
    b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b"<Document>&x;</Document>",
])
def test_the_defusedxml_fallback_for_an_old_expat_refuses_dtds(
        data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """With an expat older than 2.4.1 the statement is parsed by defusedxml instead: it
    must refuse the same attacks and read the same statement."""
    import billing.bank_parse as bank_parse
    good = camt(ntry("81.49", ref="E-1", tx=txd(strd="26 000001 26", debtor="Amra Hodžić")))
    fast = parse_camt053(good)
    monkeypatch.setattr(bank_parse, "_SAFE_EXPAT", False)
    assert parse_camt053(good) == fast
    with pytest.raises(StatementError, match="unsafe XML"):
        parse_camt053(data)
