"""Contract of topic ``meter.reads.v1``: one register reading of one meter.

JSON shape (one object per read)::

    {"meter_id": "E-100001", "register": "1.8.1", "read_at": "2026-03-01T00:00:00+01:00",
     "value": "1234.567", "unit": "kWh", "source": "amr"}

``value`` is the cumulative register value (number or decimal string, at most three
decimals). ``read_at`` is RFC 3339 with an offset; precision is one second.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rating.money import parse_quantity_milli
from schemas import SchemaError

TOPIC = "meter.reads.v1"
SOURCES = frozenset({"amr", "manual", "self", "estimate"})
UNITS = frozenset({"kWh", "kvarh", "kW", "m3"})
_REGISTER = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){1,3}")
_METER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?"
    r"(Z|[+-][0-9]{2}:[0-5][0-9])",
    re.IGNORECASE,
)
MAX_VALUE_MILLI = 10**15  # a register of 12 digits with three decimals
_PLAIN_DECIMAL = re.compile(r"0*([0-9]{1,12})(?:\.([0-9]{1,3})0*)?")


def _value_milli(value: int | float | str) -> int:
    """Fast path for the usual '1234.567' or integer; everything else through Decimal."""
    if isinstance(value, int):
        return value * 1000
    if isinstance(value, str):
        m = _PLAIN_DECIMAL.fullmatch(value)
        if m is None:
            raise ValueError("must be a plain decimal such as 1234.567 (at most 3 decimals)")
        frac = m.group(2) or ""
        return int(m.group(1)) * 1000 + int(frac.ljust(3, "0") or 0)
    return parse_quantity_milli(value)


@dataclass(frozen=True, slots=True)
class MeterRead:
    meter_id: str
    register: str
    read_at: int  # UTC epoch seconds
    value_milli: int
    unit: str
    source: str


# Memos of strings already found valid: a batch of AMR reads repeats the same read_at,
# register and meter ids many times. Bounded: cleared when they grow past _MEMO_LIMIT.
_MEMO_LIMIT = 200_000
_valid_meter_ids: set[str] = set()
_valid_registers: set[str] = set()
_read_at_epoch: dict[str, int] = {}


def _read_at(read_at: Any) -> int:
    epoch = _read_at_epoch.get(read_at) if isinstance(read_at, str) else None
    if epoch is not None:
        return epoch
    if not isinstance(read_at, str) or not _RFC3339.fullmatch(read_at):
        raise SchemaError(
            "read_at: must be an RFC 3339 timestamp with offset, e.g. 2026-03-01T00:00:00+01:00"
        )
    try:
        ts = datetime.fromisoformat(read_at.upper())
    except ValueError as exc:
        raise SchemaError(f"read_at: not an RFC 3339 timestamp: {read_at[:40]!r}") from exc
    if ts.tzinfo is None:
        raise SchemaError("read_at: must carry a UTC offset (e.g. +01:00 or Z)")
    if len(_read_at_epoch) > _MEMO_LIMIT:
        _read_at_epoch.clear()
    epoch = _read_at_epoch[read_at] = int(ts.timestamp())
    return epoch


def _checked(value: Any, valid: set[str], pattern: re.Pattern[str], message: str) -> str:
    if isinstance(value, str) and value in valid:
        return value
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise SchemaError(message)
    if len(valid) > _MEMO_LIMIT:
        valid.clear()
    valid.add(value)
    return value


def decode_read(obj: Any) -> MeterRead:
    """Validate one read object; raises SchemaError naming the field."""
    if not isinstance(obj, dict):
        raise SchemaError("read: must be a JSON object")
    get = obj.get
    meter_id = _checked(
        get("meter_id"),
        _valid_meter_ids,
        _METER_ID,
        "meter_id: must be 1–64 letters, digits, '.', '_' or '-'",
    )
    register = _checked(
        get("register"),
        _valid_registers,
        _REGISTER,
        "register: must be an OBIS code such as 1.8.1 or 8.0",
    )
    read_at = _read_at(get("read_at"))
    value = get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SchemaError("value: must be a number or a decimal string")
    try:
        value_milli = _value_milli(value)
    except ValueError as exc:
        raise SchemaError(f"value: {exc}") from exc
    if value_milli < 0:
        raise SchemaError("value: a cumulative register value cannot be negative")
    if value_milli >= MAX_VALUE_MILLI:
        raise SchemaError("value: too large for any register")
    unit = get("unit")
    if not isinstance(unit, str) or unit not in UNITS:
        raise SchemaError(f"unit: must be one of {', '.join(sorted(UNITS))}")
    source = get("source", "amr")
    if not isinstance(source, str) or source not in SOURCES:
        raise SchemaError(f"source: must be one of {', '.join(sorted(SOURCES))}")
    gateway = get("gateway_id")
    if gateway is not None and not isinstance(gateway, str):
        raise SchemaError("gateway_id: must be a string")
    return MeterRead(meter_id, register, read_at, value_milli, unit, source)


def encode_read(read: MeterRead) -> dict[str, Any]:
    return {
        "meter_id": read.meter_id,
        "register": read.register,
        "read_at": datetime.fromtimestamp(read.read_at, UTC).isoformat().replace("+00:00", "Z"),
        "value": f"{read.value_milli // 1000}.{read.value_milli % 1000:03d}",
        "unit": read.unit,
        "source": read.source,
    }
