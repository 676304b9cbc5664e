"""Sections `customers` and `metering_points`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ingest.file_import.fields import FieldError, as_record, choice, decimal, ident, integer, text
from ingest.file_import.simple import Row, Table

CUSTOMER_ID = re.compile(r"^[0-9]{6,10}$")
KINDS = ("household", "business", "public")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ()/\-]{4,24}$")

CUSTOMER_FIELDS = frozenset(
    {"customer_id", "name", "kind", "address", "email", "phone", "password", "password_hash"}
)
METERING_POINT_FIELDS = frozenset(
    {"metering_point_id", "address", "latitude", "longitude", "household_members", "area_m2"}
)


@dataclass(frozen=True)
class PlainPassword:
    """A password from the file, to be hashed (never stored as given)."""

    value: str

    def __repr__(self) -> str:  # never print a password
        return "PlainPassword(***)"


def customer_id(value: Any, name: str = "customer_id") -> str:
    if not isinstance(value, str) or not CUSTOMER_ID.match(value):
        raise FieldError(f"{name}: must be a string of 6–10 digits, got {repr(value)[:40]}")
    return value


def parse_customer(obj: Any) -> Row:
    rec = as_record(obj, CUSTOMER_FIELDS)
    cid = customer_id(rec.get("customer_id"))
    name = text(rec, "name")
    kind = choice(rec, "kind", KINDS)
    address = text(rec, "address", required=False, max_len=300)
    email = text(rec, "email", required=False, max_len=254)
    if email is not None and not _EMAIL.match(email):
        raise FieldError(f"email: not an e-mail address: {email[:60]!r}")
    phone = text(rec, "phone", required=False, max_len=30)
    if phone is not None and not _PHONE.match(phone):
        raise FieldError("phone: digits, spaces and + ( ) / - only")
    password: PlainPassword | str | None = None
    if rec.get("password") is not None and rec.get("password_hash") is not None:
        raise FieldError("password: give either password or password_hash, not both")
    if rec.get("password") is not None:
        plain = rec["password"]
        if not isinstance(plain, str) or not 1 <= len(plain) <= 200:
            raise FieldError("password: must be a string of 1–200 characters")
        password = PlainPassword(plain)
    elif rec.get("password_hash") is not None:
        password = _argon2_hash(rec["password_hash"])
    return (cid, name, kind, address, email, phone, password)


def _argon2_hash(value: Any) -> str:
    from argon2 import extract_parameters
    from argon2.exceptions import InvalidHashError

    if not isinstance(value, str) or not value.startswith("$argon2"):
        raise FieldError("password_hash: must be an argon2 hash ($argon2id$…)")
    try:
        extract_parameters(value)
    except (InvalidHashError, ValueError) as exc:
        raise FieldError("password_hash: not a valid argon2 hash") from exc
    return value


def resolve_password(row: Row, stored: Row | None) -> Row:
    """Absent password: keep the stored one. A plain password that the stored hash already
    verifies keeps that hash (so a re-import changes nothing); otherwise it is hashed."""
    from api.security import hash_password, verify_password

    password = row[-1]
    stored_hash = stored[-1] if stored is not None else None
    if password is None:
        final = stored_hash
    elif isinstance(password, PlainPassword):
        if stored_hash is not None and verify_password(stored_hash, password.value):
            final = stored_hash
        else:
            final = hash_password(password.value)
    else:
        final = password
    return (*row[:-1], final)


def parse_metering_point(obj: Any) -> Row:
    rec = as_record(obj, METERING_POINT_FIELDS)
    mp = ident(rec, "metering_point_id")
    address = text(rec, "address", max_len=300)
    lat = decimal(rec, "latitude", lo=Decimal(-90), hi=Decimal(90), places=6, round_to=True)
    lon = decimal(rec, "longitude", lo=Decimal(-180), hi=Decimal(180), places=6, round_to=True)
    if (lat is None) != (lon is None):
        raise FieldError("latitude: give both latitude and longitude, or neither")
    members = integer(rec, "household_members", lo=0, hi=100)
    area = decimal(rec, "area_m2", lo=Decimal(0), hi=Decimal(1_000_000), places=2)
    return (mp, address, lat, lon, members, area)


CUSTOMERS = Table(
    section="customers",
    table="customers",
    columns=("customer_id", "name", "kind", "address", "email", "phone", "password_hash"),
    parse=parse_customer,
    resolve=resolve_password,
)

METERING_POINTS = Table(
    section="metering_points",
    table="metering_points",
    columns=(
        "metering_point_id",
        "address",
        "latitude",
        "longitude",
        "household_members",
        "area_m2",
    ),
    parse=parse_metering_point,
)
