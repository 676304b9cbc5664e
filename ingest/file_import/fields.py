"""Field checks for import records: each raises FieldError naming the field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from ingest import IngestError

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
ID_RULE = "1–64 letters, digits, '.', '_' or '-' (starting with a letter or digit)"
OBIS_PATTERN = re.compile(r"^[0-9]{1,3}(\.[0-9]{1,3}){1,3}$")
# PostgreSQL text cannot hold NUL, and one-line fields have no business with control
# characters or lone surrogates: refuse them here rather than fail the whole transaction.
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


class FieldError(IngestError):
    """One record is invalid; the message starts with the field's name."""


Record = Mapping[str, Any]


def as_record(obj: Any, allowed: frozenset[str]) -> Record:
    if not isinstance(obj, Mapping):
        raise FieldError("record: must be a JSON object")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise FieldError(f"{unknown[0]}: unknown field (allowed: {', '.join(sorted(allowed))})")
    return obj


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def text(rec: Record, name: str, *, required: bool = True, max_len: int = 200) -> str | None:
    value = rec.get(name)
    if _missing(value):
        if required:
            raise FieldError(f"{name}: is required")
        return None
    if not isinstance(value, str):
        raise FieldError(f"{name}: must be a string")
    value = value.strip()
    if _BAD_CHARS.search(value):
        raise FieldError(f"{name}: must not contain control characters")
    if len(value) > max_len:
        raise FieldError(f"{name}: longer than {max_len} characters")
    return value


def ident(rec: Record, name: str) -> str:
    value = rec.get(name)
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise FieldError(f"{name}: must be {ID_RULE}, got {_show(value)}")
    return value


def key_of(rec: Any, name: str) -> str | None:
    """The record's natural key for the report, if it has a usable one."""
    if isinstance(rec, Mapping):
        value = rec.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)[:64]
    return None


def choice(rec: Record, name: str, options: tuple[str, ...]) -> str:
    value = rec.get(name)
    if value not in options:
        raise FieldError(f"{name}: must be one of {', '.join(options)}, got {_show(value)}")
    return str(value)


def integer(
    rec: Record, name: str, *, lo: int, hi: int, required: bool = False, default: int | None = None
) -> int | None:
    value = rec.get(name)
    if value is None:
        if required and default is None:
            raise FieldError(f"{name}: is required")
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(f"{name}: must be a whole number, got {_show(value)}")
    if not lo <= value <= hi:
        raise FieldError(f"{name}: must be between {lo} and {hi}, got {value}")
    return value


def decimal(
    rec: Record, name: str, *, lo: Decimal, hi: Decimal, places: int, round_to: bool = False
) -> Decimal | None:
    """An optional decimal (number or decimal string). More than `places` decimals is an
    error unless `round_to` (coordinates are rounded to the database's precision)."""
    value = rec.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise FieldError(f"{name}: must be a number or a decimal string")
    try:
        dec = Decimal(str(value))
    except InvalidOperation as exc:
        raise FieldError(f"{name}: not a number: {_show(value)}") from exc
    if not dec.is_finite():
        raise FieldError(f"{name}: not a finite number")
    quantum = Decimal(1).scaleb(-places)
    rounded = dec.quantize(quantum)
    if rounded != dec and not round_to:
        raise FieldError(f"{name}: has more than {places} decimals")
    if not lo <= rounded <= hi:
        raise FieldError(f"{name}: must be between {lo} and {hi}, got {dec}")
    return rounded


def day(rec: Record, name: str, *, required: bool = True) -> date | None:
    value = rec.get(name)
    if value is None:
        if required:
            raise FieldError(f"{name}: is required")
        return None
    if not isinstance(value, str):
        raise FieldError(f"{name}: must be a date string YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise FieldError(f"{name}: not a date (YYYY-MM-DD): {_show(value)}") from exc


def instant(rec: Record, name: str, *, required: bool = True) -> datetime | None:
    """An RFC 3339 timestamp with an offset (e.g. 2025-01-01T00:00:00+01:00)."""
    value = rec.get(name)
    if value is None:
        if required:
            raise FieldError(f"{name}: is required")
        return None
    if not isinstance(value, str):
        raise FieldError(f"{name}: must be an RFC 3339 timestamp string")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError as exc:
        raise FieldError(f"{name}: not an RFC 3339 timestamp: {_show(value)}") from exc
    if ts.tzinfo is None:
        raise FieldError(f"{name}: must carry a UTC offset (e.g. +01:00 or Z)")
    return ts


def _show(value: Any) -> str:
    return repr(value)[:60]
