"""HTTP batch ingest of meter reads from authenticated gateways.

Body: a JSON array of read objects (``schemas.meter_reads``) or ``{"reads": [...]}``.
The whole batch goes through ``stream.pipeline.process_reads`` in one transaction; bad
reads are rejected one by one (with reasons, kept in ``rejected_reads``) while the good
ones of the same batch are stored.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request

from api import BadRequest, PayloadTooLarge
from api.deps import Conn, Gateway, Now
from stream.pipeline import process_reads

router = APIRouter(prefix="/api/v1", tags=["ingest"])
MAX_READS = 10_000
MAX_BODY_BYTES = 8 * 1024 * 1024  # 10,000 reads of ~200 bytes fit several times over


async def read_batch(request: Request) -> list[Any]:
    """The list of read objects of the body; 413 above the limits, 400 if not JSON."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body larger than {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"request body larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    try:
        body = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from exc
    if isinstance(body, dict) and set(body) == {"reads"}:
        body = body["reads"]
    if not isinstance(body, list):
        raise BadRequest('body: must be a JSON array of reads or {"reads": [...]}')
    if len(body) > MAX_READS:
        raise PayloadTooLarge(
            f"too many reads: {len(body)} in one request, at most {MAX_READS}; split the batch"
        )
    return body


@router.post("/readings")
def post_readings(
    gateway_id: Gateway,
    reads: Annotated[list[Any], Depends(read_batch)],
    conn: Conn,
    now: Now,
) -> dict[str, Any]:
    with conn.transaction():
        result = process_reads(
            conn, reads, channel=f"http:{gateway_id}", now=int(now.timestamp())
        )
    return {
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "rejected": result.rejected,
        "results": [
            {"index": i, "status": o.status, "reason": o.reason}
            for i, o in enumerate(result.outcomes)
        ],
    }
