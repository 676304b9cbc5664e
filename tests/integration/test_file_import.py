"""The migration import file on a real PostgreSQL: counts, reasons, idempotence, edits."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from ingest import IngestError
from ingest.file_import import ImportReport, import_document, import_file

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "import-example.json"
NOW = int(datetime(2026, 4, 2, tzinfo=UTC).timestamp())
TABLES = (
    "tariff_versions",
    "customers",
    "metering_points",
    "meters",
    "meter_installations",
    "contracts",
    "readings",
    "consumption_intervals",
    "daily_consumption",
    "payments",
    "rejected_reads",
)


def example(*, payments: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(EXAMPLE.read_bytes())
    if not payments:
        doc.pop("payments")
    return doc


def counts(report: ImportReport) -> dict[str, tuple[int, int, int, int]]:
    return {
        name: (c.created, c.updated, c.unchanged, c.rejected)
        for name, c in report.sections.items()
        if c.total
    }


def reasons(report: ImportReport, section: str) -> dict[int, str]:
    return {r.index: r.reason for r in report.rejections if r.section == section}


def snapshot(conn: psycopg.Connection) -> dict[str, list[Any]]:
    return {
        t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2, 3").fetchall()  # noqa: S608
        for t in TABLES
        if t != "rejected_reads"
    }


@pytest.fixture
def conn(db_url: str):
    with psycopg.connect(db_url) as c:
        yield c


def test_example_file_loads_then_reload_changes_nothing(conn: psycopg.Connection) -> None:
    first = import_file(conn, EXAMPLE, now=NOW)
    assert first.rejections == []
    assert counts(first) == {
        "tariffs": (8, 0, 0, 0),
        "customers": (2, 0, 0, 0),
        "metering_points": (2, 0, 0, 0),
        "meters": (4, 0, 0, 0),
        "contracts": (6, 0, 0, 0),
        "readings": (192, 0, 0, 0),
        "payments": (1, 0, 0, 0),
    }
    # 6 register series × 31 days of March, split at local midnight
    assert conn.execute("SELECT count(*) FROM consumption_intervals").fetchone() == (186,)
    pw = conn.execute("SELECT password_hash FROM customers WHERE customer_id = '200001'").fetchone()
    assert pw is not None and pw[0].startswith("$argon2id$") and "promijeni" not in pw[0]
    assert conn.execute(
        "SELECT password_hash FROM customers WHERE customer_id = '200002'"
    ).fetchone() == (None,)
    before = snapshot(conn)

    again = import_file(conn, EXAMPLE, now=NOW + 3600)
    assert again.changed == 0 and again.rejected == 0
    assert counts(again) == {
        "tariffs": (0, 0, 8, 0),
        "customers": (0, 0, 2, 0),
        "metering_points": (0, 0, 2, 0),
        "meters": (0, 0, 4, 0),
        "contracts": (0, 0, 6, 0),
        "readings": (0, 0, 192, 0),
        "payments": (0, 0, 1, 0),
    }
    assert snapshot(conn) == before
    assert "nothing rejected" in again.summary()


def test_example_without_payments_module(conn: psycopg.Connection) -> None:
    report = import_document(conn, example(), now=NOW)
    assert report.rejected == 0 and report.sections["readings"].created == 192
    households = conn.execute(
        "SELECT household_members, latitude FROM metering_points ORDER BY 1"
    ).fetchall()
    assert [h[0] for h in households] == [4, None]
    area = conn.execute("SELECT area_m2 FROM metering_points WHERE area_m2 IS NOT NULL")
    assert str(area.fetchone()[0]) == "85.50"  # type: ignore[index]


def test_bad_records_rejected_with_reasons_and_neighbours_kept(
    conn: psycopg.Connection,
) -> None:
    doc = example()
    doc["tariffs"].append(
        {"tariff_code": "X-BAD", "service": "gas", "valid_from": "2025-01-01", "components": []}
    )
    doc["customers"] += [
        {"customer_id": "12ab", "name": "Loš ID", "kind": "household"},
        {"customer_id": "200003", "name": "Nepoznata vrsta", "kind": "alien"},
        {"customer_id": "200004", "name": "Nul\u0000bajt", "kind": "household"},
    ]
    nul_tariff = copy.deepcopy(doc["tariffs"][0])
    nul_tariff.update(valid_from="2026-01-01", name="EL\u0000HH")
    doc["tariffs"].append(nul_tariff)
    doc["metering_points"].append(
        {"metering_point_id": "MM-200003", "address": "Brka 3", "area_m2": "12.345"}
    )
    doc["meters"] += [
        {"meter_id": "E-200003", "service": "electricity", "digits": 6, "registers": []},
        {
            "meter_id": "V-200009",
            "service": "water",
            "digits": 5,
            "registers": ["8.0"],
            "installations": [
                {"metering_point_id": "MM-200003", "installed_at": "2025-06-01T00:00:00+02:00"}
            ],
        },
    ]
    doc["contracts"] += [
        {
            "contract_id": "200002-X",
            "customer_id": "200002",
            "metering_point_id": "MM-200002",
            "service": "electricity",
            "tariff_code": "EL-NEMA",
            "valid_from": "2025-06-01",
        },
        {
            "contract_id": "200001-EL2",
            "customer_id": "200001",
            "metering_point_id": "MM-200001",
            "service": "electricity",
            "tariff_code": "EL-HH",
            "valid_from": "2026-02-01",
            "valid_to": "2026-02-28",
        },
        {
            "contract_id": "200003-VO",
            "customer_id": "200003",
            "metering_point_id": "MM-200001",
            "service": "water",
            "tariff_code": "W-HH",
            "valid_from": "2025-01-01",
            "valid_to": "2025-05-31",
        },
        {
            "contract_id": "200002-VO2",
            "customer_id": "200002",
            "metering_point_id": "MM-200002",
            "service": "water",
            "tariff_code": "EL-OP",
            "valid_from": "2027-01-01",
        },
    ]
    doc["readings"] += [
        {
            "meter_id": "E-999999",
            "register": "1.8.1",
            "read_at": "2026-03-05T00:00:00+01:00",
            "value": "10.000",
            "unit": "kWh",
        },
        {
            "meter_id": "E-200003",
            "register": "1.8.1",
            "read_at": "2026-03-05T00:00:00+01:00",
            "value": "10.000",
            "unit": "kWh",
        },
    ]
    report = import_document(conn, doc, now=NOW)

    assert reasons(report, "tariffs") == {
        8: "service: must be one of electricity, water, waste, got 'gas'",
        9: "tariff: text must not contain NUL characters (\\u0000)",
    }
    assert reasons(report, "customers") == {
        2: "customer_id: must be a string of 6–10 digits, got '12ab'",
        3: "kind: must be one of household, business, public, got 'alien'",
        4: "name: must not contain control characters",
    }
    assert reasons(report, "metering_points") == {2: "area_m2: has more than 2 decimals"}
    assert reasons(report, "meters") == {
        4: "registers: must be a non-empty list of OBIS codes",
        5: "installations[0].metering_point_id: metering point MM-200003 was rejected "
        "(metering_points[2])",
    }
    got = reasons(report, "contracts")
    assert got[6] == "tariff_code: unknown tariff EL-NEMA"
    assert got[7].startswith("valid_from: overlaps contract 200001-EL (2025-06-01 – open)")
    assert got[8] == "customer_id: customer 200003 was rejected (customers[3])"
    assert got[9] == "tariff_code: EL-OP is a electricity tariff, the contract is for water"
    assert reasons(report, "readings") == {
        192: "meter_id: unknown meter E-999999",
        193: "meter_id: meter E-200003 was rejected (meters[4])",
    }
    keys = {(r.section, r.key) for r in report.rejections}
    assert ("customers", "12ab") in keys and ("contracts", "200001-EL2") in keys

    # every valid neighbour is in
    assert counts(report)["customers"] == (2, 0, 0, 3)
    assert counts(report)["contracts"] == (6, 0, 0, 4)
    assert counts(report)["readings"] == (192, 0, 0, 2)
    assert conn.execute("SELECT count(*) FROM readings").fetchone() == (192,)
    assert conn.execute(
        "SELECT count(*) FROM rejected_reads WHERE channel = 'file'"
    ).fetchone() == (2,)
    assert conn.execute("SELECT count(*) FROM tariff_versions").fetchone() == (8,)
    # the report serializes and prints
    assert orjson.loads(orjson.dumps(report.to_dict()))["rejected"] == report.rejected
    assert "customers[2] 12ab: customer_id" in report.summary()


def test_payments_with_bad_reference_are_rejected_neighbours_kept(
    conn: psycopg.Connection,
) -> None:
    from billing.reference import make_payment_reference

    doc = example(payments=True)
    doc["customers"].append({"customer_id": "200005", "name": "", "kind": "household"})
    pay = {"paid_on": "2026-03-21", "amount": "10.00"}
    doc["payments"] += [
        {"payment_id": "UPL-2026-000002", "reference": "9999999999", **pay},
        {"payment_id": "UPL-2026-000003", "customer_id": "200002", **pay, "amount": "12.50"},
        {"payment_id": "UPL-2026-000004", "reference": make_payment_reference(2026, 77), **pay},
        {"payment_id": "UPL-2026-000005", "customer_id": "200005", **pay},
        {"payment_id": "UPL-2026-000006", "customer_id": "200002", **pay, "amount": "-3.00"},
    ]
    report = import_document(conn, doc, now=NOW)
    assert counts(report)["payments"] == (2, 0, 0, 4)
    assert reasons(report, "payments") == {
        1: "reference: wrong check digits in '9999999999' (typo?)",
        3: "reference: no invoice carries reference '2600007789'",
        4: "customer_id: customer 200005 was rejected (customers[2])",
        5: "amount: must be greater than zero, got '-3.00'",
    }
    assert conn.execute("SELECT payment_id, amount_fen FROM payments ORDER BY 1").fetchall() == [
        ("UPL-2026-000001", 4500),
        ("UPL-2026-000003", 1250),
    ]
    again = import_document(conn, doc, now=NOW)
    assert counts(again)["payments"] == (0, 0, 2, 4)


def test_edits_update_master_data(conn: psycopg.Connection) -> None:
    import_document(conn, example(), now=NOW)
    hash_before = conn.execute(
        "SELECT password_hash FROM customers WHERE customer_id = '200001'"
    ).fetchone()
    doc = example()
    doc["customers"][1]["name"] = "Pekara Begić d.o.o."
    doc["metering_points"][0]["household_members"] = 5
    doc["contracts"][5]["valid_to"] = "2026-06-30"
    report = import_document(conn, doc, now=NOW)
    assert counts(report)["customers"] == (0, 1, 1, 0)
    assert counts(report)["metering_points"] == (0, 1, 1, 0)
    assert counts(report)["contracts"] == (0, 1, 5, 0)
    assert conn.execute("SELECT name FROM customers WHERE customer_id = '200002'").fetchone() == (
        "Pekara Begić d.o.o.",
    )
    # the same plain password keeps the stored hash (an argon2 hash is salted)
    assert (
        conn.execute("SELECT password_hash FROM customers WHERE customer_id = '200001'").fetchone()
        == hash_before
    )
    doc["customers"][0]["password"] = "novo-geslo-2026"
    report = import_document(conn, doc, now=NOW)
    assert counts(report)["customers"] == (0, 1, 1, 0)
    new_hash = conn.execute(
        "SELECT password_hash FROM customers WHERE customer_id = '200001'"
    ).fetchone()
    from api.security import verify_password

    assert new_hash is not None and new_hash != hash_before
    assert verify_password(new_hash[0], "novo-geslo-2026")


def test_facts_already_used_cannot_be_rewritten(conn: psycopg.Connection) -> None:
    import_document(conn, example(), now=NOW)  # meters and contracts now have rated reads
    doc = example()
    doc["tariffs"][0]["components"][0]["price"] = "0.9999"
    doc["meters"][0]["digits"] = 7
    doc["meters"][1]["installations"][0]["removed_at"] = "2026-03-10T00:00:00+01:00"
    doc["meters"][2]["installations"][0]["removed_at"] = "2026-04-01T12:00:00+02:00"
    doc["contracts"][0]["tariff_code"] = "EL-OP"
    doc["contracts"][1]["valid_to"] = "2026-03-15"
    doc["contracts"][3]["valid_to"] = "2026-04-30"
    report = import_document(conn, doc, now=NOW)
    assert reasons(report, "tariffs")[0].startswith(
        "tariff EL-HH valid_from 2024-01-01 is already loaded with other content"
    )
    meters = reasons(report, "meters")
    assert "digits cannot change" in meters[0]
    assert "removed_at: cannot be before the last reading" in meters[1]
    assert counts(report)["meters"] == (0, 1, 1, 2)
    contracts = reasons(report, "contracts")
    assert "only valid_to may change, not tariff_code" in contracts[0]
    assert contracts[1].startswith("valid_to: cannot end before 2026-03-31")
    assert counts(report)["contracts"] == (0, 1, 3, 2)
    assert conn.execute(
        "SELECT valid_to::text FROM contracts WHERE contract_id = '200002-EL'"
    ).fetchone() == ("2026-04-30",)
    assert conn.execute("SELECT digits FROM meters WHERE meter_id = 'E-200001'").fetchone() == (6,)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, got list"),
        (b'{"customers": [], "kupci": []}', "unknown top-level key(s) 'kupci'"),
        (b'{"readings": {"a": 1}}', "readings: must be a list of records, got dict"),
    ],
)
def test_top_level_errors_write_nothing(
    conn: psycopg.Connection, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(IngestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_file(conn, path, now=NOW)
    assert conn.execute("SELECT count(*) FROM customers").fetchone() == (0,)


def test_whole_file_is_one_transaction(conn: psycopg.Connection) -> None:
    doc = copy.deepcopy(example())
    doc["readings"].append(
        {
            "meter_id": "E-200001",
            "register": "1.8.1",
            "read_at": "2026-04-01T00:00:00+02:00",
            "value": "1.000",
            "unit": "kWh",
        }
    )
    conn.execute("SELECT 1")  # the caller's own transaction is open: import nests in it
    import_document(conn, doc, now=NOW)
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM customers").fetchone() == (0,)


def test_reads_from_the_future_are_quarantined_not_lost(conn: psycopg.Connection) -> None:
    # imported at noon on 31 March: the six reads of 1 April 00:00 are ahead of the clock
    noon = int(datetime(2026, 3, 31, 10, tzinfo=UTC).timestamp())
    report = import_document(conn, example(), now=noon)
    assert report.sections["readings"].created == 186
    held = reasons(report, "readings")
    assert len(held) == 6
    assert all(r.startswith("quarantined (") and "/api/v1/ops/quarantine" in r
               for r in held.values())
    row = conn.execute("SELECT count(*) FROM quarantined_reads").fetchone()
    assert row is not None and row[0] == 6
