"""The `billing` command line against a real database (BILLING_DATABASE_URL)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from app.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "import-example.json"


def test_load_close_and_demo_data(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BILLING_DATABASE_URL", db_url)
    assert main(["load", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "readings" in out and "nothing rejected" in out
    assert main(["load", str(EXAMPLE)]) == 0  # the same file again changes nothing
    assert "created" in capsys.readouterr().out
    with psycopg.connect(db_url) as conn:
        periods = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT to_char(local_day, 'YYYY-MM') FROM daily_consumption ORDER BY 1"
            )
        ]
    period = periods[0]
    assert main(["close", "--period", period, "--issued-on", "2030-01-01"]) == 0
    first = capsys.readouterr().out
    assert "2 invoices created" in first
    assert main(["close", "--period", period, "--issued-on", "2030-01-02"]) == 0
    assert "0 invoices created, 2 already existed" in capsys.readouterr().out
    assert main(["close", "--period", "2026-13"]) == 2
    assert "error" in capsys.readouterr().err
    assert main(["gateway-token", "gw-test"]) == 0
    assert len(capsys.readouterr().out.strip()) >= 32


def test_demo_data_small(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BILLING_DATABASE_URL", db_url)
    assert main(["demo-data", "--customers", "12", "--months", "3", "--end-period", "2026-06"]) == 0
    out = capsys.readouterr().out
    assert "closed 2026-06: 12 invoices" in out
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM invoices").fetchone() == (36,)
        paid = conn.execute("SELECT count(*) FROM payments").fetchone()
        assert paid is not None and 20 <= paid[0] <= 36
        demo = conn.execute("SELECT count(*) FROM payments WHERE customer_id = '100001'").fetchone()
        assert demo == (2,)  # the newest invoice stays open


def test_collections_and_aging_commands(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BILLING_DATABASE_URL", db_url)
    assert main(["demo-data", "--customers", "40", "--months", "4", "--end-period", "2026-06"]) == 0
    capsys.readouterr()
    assert main(["collections", "--date", "2026-08-20"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("collections 2026-08-20:") and "accounts examined" in out
    assert main(["aging", "--as-of", "2026-08-20"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[0] == "customer" and lines[-1].startswith("TOTAL")
    with psycopg.connect(db_url) as conn:
        open_fen = conn.execute(
            "SELECT (SELECT coalesce(sum(total_fen), 0) FROM invoices)"
            " - (SELECT coalesce(sum(amount_fen), 0) FROM payments)"
        ).fetchone()
    total_fen = int(Decimal(lines[-1].split()[-1]) * 100)
    assert open_fen is not None and open_fen[0] > 0
    # interest charged by the run comes on top of what invoices minus payments leave open
    assert total_fen >= open_fen[0]
    assert total_fen == sum(int(Decimal(line.split()[-1]) * 100) for line in lines[1:-1])


def test_ledger_and_pdf_commands(
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("BILLING_DATABASE_URL", db_url)
    assert main(["demo-data", "--customers", "10", "--months", "2", "--end-period", "2026-06"]) == 0
    capsys.readouterr()
    assert main(["trial-balance", "--as-of", "2026-12-31"]) == 0
    total = capsys.readouterr().out.splitlines()[-1].split()
    assert total[0] == "TOTAL" and total[1] == total[2] and Decimal(total[1]) > 0
    out = tmp_path / "journal.csv"
    assert main(["ledger-export", "--period", "2026", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) > 10
    with psycopg.connect(db_url) as conn:
        number = conn.execute("SELECT min(invoice_number) FROM invoices").fetchone()
    assert number is not None
    pdf = tmp_path / "invoice.pdf"
    assert main(["invoice-pdf", number[0], "--out", str(pdf)]) == 0
    assert pdf.read_bytes().startswith(b"%PDF")
    assert main(["invoice-pdf", "1999-999999"]) == 2


def test_operator_create(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    monkeypatch.setenv("BILLING_DATABASE_URL", db_url)
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough secret\n"))
    assert main(["operator-create", "amra", "--roles", "billing,legal"]) == 0
    assert "created with roles" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["operator-create", "bojan", "--roles", "clerk"]) == 2
    assert "password" in capsys.readouterr().err
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM operators").fetchone() == (1,)


@pytest.mark.parametrize("argv", [
    ["close", "--period", "2026-03", "--issued-on", "2026-13-01"],
    ["aging", "--as-of", "yesterday"],
    ["reverse-payment", "P1", "--reason", "x", "--operator", "y", "--on", "1.4.2026"],
    ["rebill", "--tariff", "EL-HH", "--from", "2026-02-30", "--to", "2026-03-31",
     "--document", "d.json", "--reason", "r"],
])
def test_a_bad_date_is_a_usage_error_naming_the_option(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "not a date YYYY-MM-DD" in capsys.readouterr().err
