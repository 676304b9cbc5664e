"""Reads that arrive after their period was closed, and operator edits of a closed
period's consumption: the next close bills the difference, the closed invoice stays as
it was (real PostgreSQL, clock pinned by the issue dates)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest

from billing.adjustments import rebill_after_write, rebill_lines, waiting_periods
from billing.closer import CloseResult, close_period
from tests.integration.test_close import MARCH_READS, push, read, seed


def close(conn: psycopg.Connection, period: str, issued_on: date) -> CloseResult:
    return close_period(conn, period, issued_on=issued_on, line_sources=[rebill_lines],
                        after_write=[rebill_after_write])


@pytest.fixture
def conn(db_url: str):
    with psycopg.connect(db_url) as c:
        seed(c)
        c.commit()
        yield c


def invoice_rows(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT * FROM invoices i JOIN invoice_lines l USING (invoice_number)"
                        " ORDER BY invoice_number, line_no").fetchall()


def corrections(conn: psycopg.Connection, customer: str, period: str
                ) -> list[tuple[str, str, int, int]]:
    return [(r[0], r[1], r[2], r[3]) for r in conn.execute(
        "SELECT l.component, l.description, l.quantity_milli, l.amount_fen"
        " FROM invoices i JOIN invoice_lines l USING (invoice_number)"
        " WHERE i.customer_id = %s AND i.period = %s AND l.component LIKE 'korekcija:%%'"
        " ORDER BY l.line_no", (customer, period))]


def test_reads_of_a_closed_month_are_billed_on_the_next_invoice(
    conn: psycopg.Connection,
) -> None:
    res = close(conn, "2026-03", date(2026, 4, 1))  # no reads yet: fees only
    assert res.invoices_created == 3
    conn.commit()
    march = invoice_rows(conn)
    push(conn, MARCH_READS)  # the AMR head-end delivers March late
    # streaming the current month queues nothing (no invoice for April exists)
    push(conn, [read("E1", "1.8.1", "1213.000", "2026-04-02T00:00:00+02:00")])
    assert conn.execute("SELECT metering_point_id, service, period FROM rebill_queue"
                        " ORDER BY 1, 2").fetchall() == [
        ("MP1", "electricity", "2026-03"), ("MP1", "water", "2026-03"),
        ("MP2", "electricity", "2026-03")]  # MP9 has no contract: nothing to rebill
    close(conn, "2026-04", date(2026, 5, 1))
    # the same figures the March invoice would have had (tests/integration/test_close.py)
    got = corrections(conn, "100001", "2026-04")
    assert [(c[0], c[2], c[3]) for c in got] == [
        ("korekcija:energy_vt_higher", 212_345, 3351),
        ("korekcija:energy_mt_higher", 98_765, 779),
        ("korekcija:water_sewage", 12_500, 1335)]
    assert got[0][1].startswith("Korekcija za 2026-03: ")
    assert got[0][1].endswith("obračunato 0.000 kWh, prema očitanjima 212.345 kWh")
    assert [(c[2], c[3]) for c in corrections(conn, "100002", "2026-04")] == [(10_000, 158)]
    assert invoice_rows(conn)[:len(march)] == march  # the March invoices did not change
    assert conn.execute("SELECT count(*) FROM rebill_queue").fetchone() == (0,)
    # the ledger books the adjustment under the service of its line
    water = conn.execute(
        "SELECT i.invoice_number, sum(l.amount_fen) FROM invoices i JOIN invoice_lines l"
        " USING (invoice_number) WHERE i.customer_id = '100001' AND i.period = '2026-04'"
        " AND l.service = 'water' GROUP BY 1").fetchone()
    assert water is not None and water[1] >= 1335 + 250  # + April's water estimate
    booked = conn.execute(
        "SELECT sum(l.credit_fen) FROM journal_entries e JOIN journal_lines l"
        " USING (entry_number) WHERE e.source_document = %s AND l.account = '6011'",
        (water[0],)).fetchone()
    assert booked == (water[1],)


def test_operator_edit_of_a_closed_month_credits_on_the_next_invoice(
    conn: psycopg.Connection,
) -> None:
    push(conn, MARCH_READS)
    push(conn, [read("E1", "1.8.1", "1300.000", "2026-05-01T00:00:00+02:00"),
                read("E1", "1.8.2", "2150.000", "2026-05-01T00:00:00+02:00")])
    close(conn, "2026-03", date(2026, 4, 1))
    # a read edit re-flows the consumption of 10 March: 10 kWh less VT
    conn.execute("UPDATE daily_consumption SET quantity_milli = quantity_milli - 10000"
                 " WHERE metering_point_id = 'MP1' AND register = '1.8.1'"
                 " AND local_day = '2026-03-10'")
    assert conn.execute("SELECT period, cause FROM rebill_queue").fetchall() == [
        ("2026-03", "data")]
    close(conn, "2026-04", date(2026, 5, 1))
    assert [(c[0], c[2], c[3]) for c in corrections(conn, "100001", "2026-04")] == [
        ("korekcija:energy_vt_higher", -10_000, -158)]
    # an edit that removes a day's rows altogether is seen too
    conn.execute("DELETE FROM daily_consumption WHERE metering_point_id = 'MP1'"
                 " AND register = '1.8.2' AND local_day = '2026-04-05'")
    close(conn, "2026-05", date(2026, 6, 1))
    got = corrections(conn, "100001", "2026-05")
    assert [c[0] for c in got] == ["korekcija:energy_mt_lower"]
    assert got[0][2] < 0 and got[0][1].startswith("Korekcija za 2026-04: ")


def test_moved_out_customer_is_invoiced_for_a_late_debit_and_a_credit_waits(
    conn: psycopg.Connection,
) -> None:
    conn.execute("UPDATE contracts SET valid_to = '2026-03-31' WHERE contract_id = 'C2E'")
    push(conn, [read("E2", "1.8.1", "10.000", "2026-03-11T00:00:00+01:00"),
                read("E2", "1.8.1", "20.000", "2026-04-01T00:00:00+02:00")])
    close(conn, "2026-03", date(2026, 4, 1))
    edit = ("UPDATE daily_consumption SET quantity_milli = quantity_milli + %s"
            " WHERE metering_point_id = 'MP2' AND local_day = '2026-03-20'")
    conn.execute(edit, (5000,))
    close(conn, "2026-04", date(2026, 5, 1))
    # no contract in April, yet an invoice with the one adjustment line
    row = conn.execute("SELECT net_fen, vat_fen, total_fen FROM invoices"
                       " WHERE customer_id = '100002' AND period = '2026-04'").fetchone()
    assert row == (79, 13, 92)  # 5 kWh × 0.1578 = 0.789 → 0.79; VAT 0.1343 → 0.13
    # an edit the other way: a net credit cannot be an invoice: it waits in the queue
    conn.execute(edit, (-20_000,))
    res = close(conn, "2026-05", date(2026, 6, 1))
    assert "100002" not in res.skipped
    assert conn.execute("SELECT count(*) FROM invoices WHERE customer_id = '100002'"
                        " AND period = '2026-05'").fetchone() == (0,)
    assert waiting_periods(conn) == [("MP2", "electricity", "2026-03")]
    # back with a contract from June: the June invoice absorbs the credit
    conn.execute("INSERT INTO contracts VALUES ('C2E2', '100002', 'MP2', 'electricity',"
                 " 'EL-HH', '2026-06-01', NULL)")
    close(conn, "2026-06", date(2026, 7, 1))
    got = corrections(conn, "100002", "2026-06")
    assert [(c[2], c[3]) for c in got] == [(-20_000, -316)]
    total = conn.execute("SELECT total_fen FROM invoices WHERE customer_id = '100002'"
                         " AND period = '2026-06'").fetchone()
    assert total is not None and total[0] >= 0
    assert waiting_periods(conn) == []


def test_a_change_while_its_period_is_rebilled_waits_and_is_not_lost(db_url: str) -> None:
    """The close that re-rates March holds March's lock to its commit: an edit of March's
    consumption meanwhile waits, then queues March again for the next close."""
    edit = ("UPDATE daily_consumption SET quantity_milli = quantity_milli + %s"
            " WHERE metering_point_id = 'MP1' AND register = '1.8.1' AND local_day = %s")
    with psycopg.connect(db_url) as a:
        seed(a)
        push(a, MARCH_READS)
        close(a, "2026-03", date(2026, 4, 1))
        a.execute(edit, (1000, "2026-03-10"))
        a.commit()
        a.execute("SELECT 1")  # an outer transaction: the close's commit is held back
        close(a, "2026-04", date(2026, 5, 1))  # not committed yet: March stays locked
        done = threading.Event()

        def late_edit() -> None:
            with psycopg.connect(db_url) as b:
                b.execute(edit, (2000, "2026-03-11"))
                b.commit()
            done.set()

        worker = threading.Thread(target=late_edit)
        worker.start()
        assert not done.wait(1.5)  # the edit waits for the close
        a.commit()
        worker.join(10)
        assert done.is_set()
        assert a.execute("SELECT period FROM rebill_queue").fetchall() == [("2026-03",)]
        close(a, "2026-05", date(2026, 6, 1))
        assert [(c[2], c[3]) for c in corrections(a, "100001", "2026-04")] == [(1000, 16)]
        # 215.345 kWh × 0.1578 = 33.98 in all, of which 33.51 + 0.16 were billed: 0.31
        assert [(c[2], c[3]) for c in corrections(a, "100001", "2026-05")] == [(2000, 31)]


def test_a_read_edit_of_a_closed_month_is_billed_on_the_next_invoice(
    conn: psycopg.Connection,
) -> None:
    """End to end with the operator's read edit (stream.read_edits): the 1 April read of
    E1 1.8.1 was 10 kWh too high; March is invoiced, so April's invoice credits 10 kWh."""
    from stream.read_edits import apply_read_edit

    push(conn, MARCH_READS)
    close(conn, "2026-03", date(2026, 4, 1))
    march = invoice_rows(conn)
    read_at = int(datetime.fromisoformat("2026-04-01T00:00:00+02:00").timestamp())
    result = apply_read_edit(conn, meter_id="E1", register="1.8.1", read_at=read_at,
                             value="1202.345", reason="pogrešno očitanje", edited_by="ana",
                             now=datetime(2026, 4, 20, tzinfo=UTC))
    assert result.changed and result.invoiced_periods == ["2026-03"]
    assert conn.execute("SELECT metering_point_id, period FROM rebill_queue").fetchall() == [
        ("MP1", "2026-03")]
    close(conn, "2026-04", date(2026, 5, 1))
    assert [(c[0], c[2], c[3]) for c in corrections(conn, "100001", "2026-04")] == [
        ("korekcija:energy_vt_higher", -10_000, -158)]  # 202.345 × 0.1578 = 31.93 − 33.51
    assert invoice_rows(conn)[:len(march)] == march
