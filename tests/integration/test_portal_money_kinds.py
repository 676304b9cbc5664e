"""The portal's summary and consumption after #5's money kinds: a reversal is not the
customer's "last payment", and late-payment interest is not a consumed service."""

from __future__ import annotations

import psycopg
from psycopg_pool import ConnectionPool

from tests.integration.test_api_portal import (
    APR_B,
    PW_B,
    START,
    Clock,
    insert_invoice,
    login,
    make_client,
    pay,
    seed,
)


def test_reversal_and_interest_stay_out_of_the_customer_figures(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        seed(conn)
        interest = ("interest", None, "late_payment_interest", None, 1000, "month", 2000, 200)
        insert_invoice(conn, "2026-000005", "100002", "2026-05", "2026-06-02", "2026-06-17",
                       [*APR_B, interest])
        pay(conn, "P-B2", "100002", "2026-06-05", 1500)
        conn.execute(
            "INSERT INTO payments (payment_id, customer_id, paid_on, amount_fen, channel, kind,"
            " reverses, reason, operator) VALUES ('STORNO/P-B2', '100002', '2026-06-07',"
            " -1500, 'bank', 'reversal', 'P-B2', 'wrong customer', 'test')")
    with ConnectionPool(db_url, min_size=1, max_size=2, open=True) as pool, \
            make_client(pool, Clock(START)) as client:
        login(client, "100002", PW_B)
        body = client.get("/api/v1/portal/summary").json()
        assert body["last_payment"] == {"date": "2026-06-05", "amount": "15.00"}
        assert body["last_month"]["period"] == "2026-05"
        assert "interest" not in body["last_month"]["services"]
        assert set(body["last_month"]["services"]) == set(body["previous_month"]["services"])
        series = client.get("/api/v1/portal/consumption").json()
        assert "interest" not in str(series)
