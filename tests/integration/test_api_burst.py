"""A burst of portal calls larger than the connection pool plus the worker threads is
answered, not stalled: waiting for a pooled connection must not take the threads that the
requests already holding a connection need for their next step."""

from __future__ import annotations

import asyncio

import anyio.to_thread
import httpx
import psycopg
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool

from api.main import create_app
from app.settings import Settings
from tests.integration.test_api_portal import PW_A, START, seed

BURST = 40


def test_burst_beyond_pool_and_threads_is_answered(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        seed(conn)
    with ConnectionPool(db_url, min_size=2, max_size=2, timeout=8, open=True) as pool:
        app = create_app(Settings(), pool, clock=lambda: START)
        with TestClient(app, base_url="https://testserver") as client:
            resp = client.post("/api/v1/portal/login",
                               json={"customer_id": "100001", "password": PW_A})
            assert resp.status_code == 200, resp.text
            cookies = dict(client.cookies)

        async def burst() -> list[int]:
            # 3 worker threads and 2 connections for 40 concurrent calls
            anyio.to_thread.current_default_thread_limiter().total_tokens = 3
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="https://testserver",
                                         cookies=cookies, timeout=60) as c:
                answers = await asyncio.gather(
                    *(c.get("/api/v1/portal/summary" if i % 2 else "/api/v1/portal/consumption")
                      for i in range(BURST)))
            return [r.status_code for r in answers]

        # stalled, the waiters hit the pool's 8 s timeout and their calls fail with 5xx
        assert asyncio.run(burst()) == [200] * BURST
