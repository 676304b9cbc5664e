"""HTTP batch ingest of meter reads from authenticated gateways.

Body: a JSON array of read objects (``schemas.meter_reads``) or ``{"reads": [...]}``.
The whole batch goes through ``stream.pipeline.process_reads`` in one transaction; bad
reads are rejected one by one (with reasons, kept in ``rejected_reads``) while the good
ones of the same batch are stored.

With Kafka configured (``app.state.read_producer``), reads that pass the contract are
sent to ``meter.reads.v1`` and answered ``queued`` once Kafka acknowledged them; the
workers validate them against the meter's history. Reads that break the contract are
answered ``rejected`` and kept in ``rejected_reads`` as on the embedded path.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request

from api import BadRequest, PayloadTooLarge
from api.deps import Conn, Gateway, Now
from app.metrics import LAST_INGEST, READS_ACCEPTED, READS_DUPLICATE, READS_RECEIVED, READS_REJECTED
from schemas import SchemaError
from schemas.meter_reads import decode_read
from stream.pipeline import process_reads, rejected_row
from stream.sink_postgres import write_batch

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
    request: Request,
    gateway_id: Gateway,
    reads: Annotated[list[Any], Depends(read_batch)],
    conn: Conn,
    now: Now,
) -> dict[str, Any]:
    channel = f"http:{gateway_id}"
    READS_RECEIVED.labels("http").inc(len(reads))
    producer = getattr(request.app.state, "read_producer", None)
    if producer is not None:
        return _queue_on_kafka(producer, conn, reads, gateway_id, int(now.timestamp()))
    with conn.transaction():
        result = process_reads(conn, reads, channel=channel, now=int(now.timestamp()))
    READS_ACCEPTED.labels("http").inc(result.accepted)
    READS_DUPLICATE.labels("http").inc(result.duplicates)
    for reason, n in result.reasons.items():
        READS_REJECTED.labels("http", reason[:60]).inc(n)
    if result.accepted:
        LAST_INGEST.set(now.timestamp())
    return {
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "rejected": result.rejected,
        "results": [
            {"index": i, "status": o.status, "reason": o.reason}
            for i, o in enumerate(result.outcomes)
        ],
    }


def _queue_on_kafka(
    producer: Any, conn: Any, reads: list[Any], gateway_id: str, now: int
) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    good: list[dict[str, Any]] = []
    refused = []
    for i, obj in enumerate(reads):
        try:
            decode_read(obj)
        except SchemaError as exc:
            results.append({"index": i, "status": "rejected", "reason": str(exc)})
            refused.append(rejected_row(obj, str(exc)))
            READS_REJECTED.labels("http", str(exc).split(":")[0]).inc()
            continue
        good.append({**obj, "gateway_id": gateway_id})
        results.append({"index": i, "status": "queued", "reason": None})
    if refused:
        with conn.transaction():
            write_batch(
                conn,
                received_at=now,
                channel=f"http:{gateway_id}",
                readings=(),
                state=(),
                rejected=refused,
            )
    if good:
        producer.produce_read_objects(good)
    return {
        "queued": len(good),
        "accepted": 0,
        "duplicates": 0,
        "rejected": len(refused),
        "results": results,
    }
