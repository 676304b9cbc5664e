"""Money and quantity in exact integers.

Amounts are integer feninga (1 KM = 100 feninga). Quantities are integer thousandths of
their unit (Wh for kWh, litres for m³): a register with three decimals is exact.
Unit prices are integer micro-KM (1e-6 KM), six decimals, enough for any published tariff.
The one rounding rule: per invoice line, half up (away from zero), to the fening.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

MILLI = 1000
MICRO = 1_000_000
_NANO_PER_FEN = 10_000_000  # 1 fening = 1e-2 KM = 1e7 nano-KM


def round_half_up_div(numerator: int, denominator: int) -> int:
    """Integer division rounded half away from zero."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    sign = -1 if numerator < 0 else 1
    q, r = divmod(abs(numerator), denominator)
    if 2 * r >= denominator:
        q += 1
    return sign * q


def line_amount_fen(quantity_milli: int, price_micro: int) -> int:
    """Amount of one invoice line: quantity × unit price, rounded half up to the fening."""
    return round_half_up_div(quantity_milli * price_micro, _NANO_PER_FEN)


def nano_to_fen(amount_nano: int) -> int:
    return round_half_up_div(amount_nano, _NANO_PER_FEN)


def vat_fen(net_fen: int, rate_percent: Decimal) -> int:
    """VAT on a net amount at a percentage rate, half up to the fening."""
    scaled = int((Decimal(net_fen) * rate_percent).to_integral_value(ROUND_HALF_UP))
    return round_half_up_div(scaled, 100)


_MAX_ADJUSTED = 18  # |exponent| bound: '1e999999' would take minutes to scale


def _in_range(value: Decimal, text: object) -> Decimal:
    if value.is_finite() and value and abs(value.adjusted()) > _MAX_ADJUSTED:
        raise ValueError(f"out of range: {str(text)[:40]!r}")
    return value


def parse_price_micro(text: str | int | Decimal) -> int:
    """'0.1578' → 157800 micro-KM. Rejects more than six decimals rather than rounding."""
    try:
        value = _in_range(Decimal(str(text)), text)
    except InvalidOperation as exc:
        raise ValueError(f"not a price: {text!r}") from exc
    if not value.is_finite():
        raise ValueError(f"not a price: {text!r}")
    micro = value * MICRO
    if micro != micro.to_integral_value():
        raise ValueError(f"price {text!r} has more than 6 decimals")
    return int(micro)


def parse_quantity_milli(text: str | int | float | Decimal) -> int:
    """'1234.567' → 1234567. Rejects more than three decimals, NaN and infinities."""
    if isinstance(text, bool):
        raise ValueError(f"not a quantity: {text!r}")
    try:
        value = _in_range(Decimal(str(text)), text)
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {text!r}") from exc
    if not value.is_finite():
        raise ValueError(f"not a finite number: {text!r}")
    milli = value * MILLI
    if milli != milli.to_integral_value():
        raise ValueError(f"value {text!r} has more than 3 decimals")
    return int(milli)


def parse_amount_fen(text: str | int | Decimal) -> int:
    """'45.00' → 4500. Rejects more than two decimals."""
    try:
        value = _in_range(Decimal(str(text)), text)
    except InvalidOperation as exc:
        raise ValueError(f"not an amount: {text!r}") from exc
    if not value.is_finite():
        raise ValueError(f"not an amount: {text!r}")
    fen = value * 100
    if fen != fen.to_integral_value():
        raise ValueError(f"amount {text!r} has more than 2 decimals")
    return int(fen)


def format_km(fen: int) -> str:
    """4500 → '45.00'; -5 → '-0.05'."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def format_quantity(milli: int) -> str:
    sign = "-" if milli < 0 else ""
    whole, frac = divmod(abs(milli), MILLI)
    return f"{sign}{whole}.{frac:03d}"


def format_price(micro: int) -> str:
    """157800 → '0.1578'; 2500000 → '2.50' (at least two decimals, at most six)."""
    value = (Decimal(micro) / MICRO).normalize()
    if value.as_tuple().exponent > -2:  # type: ignore[operator]
        value = value.quantize(Decimal("0.01"))
    return f"{value:f}"
