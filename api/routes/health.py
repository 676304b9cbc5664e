"""Liveness and database reachability for load balancers and the operator."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)
router = APIRouter()
DB_TIMEOUT_S = 2.0


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    """200 ``{"status": "ok"}`` when ``SELECT 1`` answers, else 503 ``unavailable``."""
    pool: ConnectionPool = request.app.state.pool
    try:
        with pool.connection(timeout=DB_TIMEOUT_S) as conn:
            conn.execute("SELECT 1").fetchone()
    except Exception as exc:  # any failure means: do not send traffic here
        log.warning("health check failed: %s", exc)
        return JSONResponse({"status": "unavailable"}, status_code=503)
    return JSONResponse({"status": "ok"})
