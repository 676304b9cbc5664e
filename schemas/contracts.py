"""Every Kafka topic's contract: the JSON Schema (``schemas/json/<topic>.schema.json``, the
source of truth), a validator, and the matching Python types.

``validate(topic, obj)`` raises :class:`schemas.SchemaError` naming the JSON path of the first
error (``$.lines[1].amount: …``). Validators are compiled with fastjsonschema on first use.
Two rules that JSON Schema cannot express are checked here as well: a ledger entry balances
(debits = credits) and an invoice's total is net + vat.
"""

import json
import math
import re
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

import fastjsonschema

from schemas import SchemaError

SCHEMA_DIR = Path(__file__).parent / "json"


def _load() -> dict[str, dict[str, Any]]:
    topics: dict[str, dict[str, Any]] = {}
    for path in sorted(SCHEMA_DIR.glob("*.schema.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        name = path.name.removesuffix(".schema.json")
        if doc.get("x-topic") != name:
            raise RuntimeError(f"{path.name}: x-topic must be {name!r}")
        topics[name] = doc
    return topics


TOPICS: dict[str, dict[str, Any]] = _load()
"""Topic name → its JSON Schema (a dict; do not mutate)."""

READS = "meter.reads.v1"
READS_DLQ = "meter.reads.dlq.v1"
INTERVALS = "consumption.intervals.v1"
RATED = "consumption.rated.v1"
ALERTS = "meter.alerts.v1"
INVOICES = "billing.invoices.v1"
PAYMENTS = "billing.payments.v1"
LEDGER = "ledger.entries.v1"


# --- Python types of the non-read topics (reads: schemas.meter_reads.MeterRead) ------------


class DeadLetterV1(TypedDict):
    original_b64: str
    source: str
    reason: str
    received_at: str
    truncated: NotRequired[bool]
    original_size: NotRequired[int]
    mqtt_topic: NotRequired[str | None]
    kafka_topic: NotRequired[str | None]
    kafka_partition: NotRequired[int | None]
    kafka_offset: NotRequired[int | None]


class ConsumptionIntervalV1(TypedDict):
    meter_id: str
    register: str
    start_at: str
    end_at: str
    local_day: str
    metering_point_id: str
    service: Literal["electricity", "water"]
    quantity: str


class RatedIntervalV1(ConsumptionIntervalV1):
    tariff_code: str | None
    unit_price: str
    amount: str


AlertKind = Literal[
    "leak", "reverse_energy", "tamper", "zero_drop", "communication_loss", "high_consumption"
]


class MeterAlertV1(TypedDict):
    alert_id: str
    meter_id: str
    kind: AlertKind
    state: Literal["open", "acknowledged", "closed"]
    opened_at: str
    detail: str
    register: NotRequired[str | None]
    metering_point_id: NotRequired[str | None]
    closed_at: NotRequired[str | None]


class InvoiceLineV1(TypedDict):
    line_no: int
    service: Literal["electricity", "water", "waste"]
    component: str
    description: str
    quantity: str
    unit: str
    unit_price: str
    amount: str
    vat_rate: str
    metering_point_id: NotRequired[str | None]
    register: NotRequired[str | None]


class VatLineV1(TypedDict):
    vat_rate: str
    base: str
    vat: str


class InvoiceV1(TypedDict):
    number: str
    customer_id: str
    period: str
    issued_on: str
    due_on: str
    currency: Literal["BAM"]
    net: str
    vat: str
    total: str
    payment_reference: str
    lines: list[InvoiceLineV1]
    vat_breakdown: NotRequired[list[VatLineV1]]


class PaymentV1(TypedDict):
    payment_id: str
    customer_id: str
    paid_on: str
    amount: str
    reference: str | None
    channel: str
    status: Literal["received", "matched", "unmatched", "reversed"]
    currency: NotRequired[Literal["BAM"]]
    kind: NotRequired[Literal["payment", "reversal", "refund"]]  # absent: a payment


class SourceDocumentV1(TypedDict):
    type: Literal["invoice", "payment", "reversal", "adjustment", "opening"]
    id: str


class LedgerLineV1(TypedDict):
    account: str
    debit: str
    credit: str
    customer_id: NotRequired[str]


class LedgerEntryV1(TypedDict):
    entry_no: str
    entry_date: str
    source_document: SourceDocumentV1
    lines: list[LedgerLineV1]
    description: NotRequired[str]


TYPES: dict[str, type] = {
    READS_DLQ: DeadLetterV1,
    INTERVALS: ConsumptionIntervalV1,
    RATED: RatedIntervalV1,
    ALERTS: MeterAlertV1,
    INVOICES: InvoiceV1,
    PAYMENTS: PaymentV1,
    LEDGER: LedgerEntryV1,
}
"""Topic → TypedDict of one message (every topic except meter.reads.v1)."""


# --- validation --------------------------------------------------------------------------


@cache
def _validator(topic: str) -> Callable[[Any], Any]:
    return fastjsonschema.compile(TOPICS[topic], use_formats=False)


def validate(topic: str, obj: Any) -> None:
    """Check one message against its topic's contract; raise SchemaError naming the path."""
    if topic not in TOPICS:
        raise SchemaError(f"unknown topic {topic!r}; known: {', '.join(sorted(TOPICS))}")
    try:
        _validator(topic)(obj)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise SchemaError(_describe(exc)) from None
    except (ArithmeticError, ValueError):  # multipleOf on NaN or ±inf (stdlib json allows them)
        raise SchemaError(f"{_non_finite(obj, '$')}: must be a finite number") from None
    extra = _EXTRA_RULES.get(topic)
    if extra is not None:
        extra(obj)


def _non_finite(obj: Any, path: str) -> str:
    """Path of the first NaN or infinity in a decoded message."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return path
    items = (
        obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    )
    for key, value in items:
        found = _non_finite(value, f"{path}.{key}" if isinstance(key, str) else f"{path}[{key}]")
        if found:
            return found
    return ""


def _json_path(name: str) -> str:
    # fastjsonschema names the value "data.lines[1].amount"; we say "$.lines[1].amount".
    return "$" + name[len("data") :] if name.startswith("data") else name


def _describe(exc: fastjsonschema.JsonSchemaValueException) -> str:
    path = _json_path(exc.name or "data")
    definition = exc.definition if isinstance(exc.definition, dict) else {}
    if exc.rule == "required" and isinstance(exc.value, dict):
        missing = [k for k in definition.get("required", []) if k not in exc.value]
        if missing:
            return f"{path}.{missing[0]}: is required"
    what = exc.message
    if what.startswith(exc.name or "\0"):
        what = what[len(exc.name or "") :].strip()
    if exc.rule in {"pattern", "anyOf"}:
        what = "has the wrong form"
    hint = definition.get("description") or _ref_description(definition)
    return f"{path}: {what}" + (f" ({hint})" if hint and exc.rule != "required" else "")


def _ref_description(definition: dict[str, Any]) -> str | None:
    ref = definition.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.removeprefix("#/$defs/")
        for doc in TOPICS.values():
            found = doc.get("$defs", {}).get(name)
            if found:
                return str(found.get("description", "")) or None
    return None


def _check_ledger_balanced(obj: Any) -> None:
    debit = sum((Decimal(line["debit"]) for line in obj["lines"]), Decimal(0))
    credit = sum((Decimal(line["credit"]) for line in obj["lines"]), Decimal(0))
    if debit != credit:
        raise SchemaError(f"$.lines: debits {debit} ≠ credits {credit}: the entry must balance")
    for i, line in enumerate(obj["lines"]):
        d, c = Decimal(line["debit"]), Decimal(line["credit"])
        if (d == 0) == (c == 0):
            raise SchemaError(
                f"$.lines[{i}]: exactly one of debit and credit must be above zero ({d}, {c})"
            )


def _check_invoice_total(obj: Any) -> None:
    if Decimal(obj["net"]) + Decimal(obj["vat"]) != Decimal(obj["total"]):
        raise SchemaError(f"$.total: {obj['total']} ≠ net {obj['net']} + vat {obj['vat']}")


_EXTRA_RULES: dict[str, Callable[[Any], None]] = {
    LEDGER: _check_ledger_balanced,
    INVOICES: _check_invoice_total,
}

READ_AT_PATTERN = re.compile(
    TOPICS[READS]["properties"]["read_at"]["pattern"].removesuffix("$") + r"\Z"
)
"""The read_at form of the reads contract, ready for Python (``$`` made strict)."""
