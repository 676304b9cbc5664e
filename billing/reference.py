"""Check digits by ISO 7064 MOD 97-10: BiH bank accounts, IBAN and our payment reference.

A number carrying MOD 97-10 check digits is ≡ 1 (mod 97). Changing any single digit
changes the number by k·10^i (0 < |k| ≤ 9), which 97 (a prime) never divides, so every
single-digit typo is caught; so is every swap of two adjacent different digits.

The payment reference (poziv na broj) on our payment slip: ``YY SSSSSS CC`` — the last two
digits of the invoice year, the 6-digit invoice sequence and two MOD 97-10 check digits.
A reference read back from a bank statement names exactly one invoice.
"""

from __future__ import annotations

from billing import BillingError

REFERENCE_LENGTH = 10
_SEPARATORS = str.maketrans("", "", " -")


def mod97_check_digits(digits: str) -> str:
    """Two check digits that make ``digits + check`` ≡ 1 (mod 97): 98 − (digits·100 mod 97)."""
    if not digits or not digits.isascii() or not digits.isdigit():
        raise BillingError(f"check digits need a string of digits, got {digits!r}")
    return f"{98 - int(digits + '00') % 97:02d}"


def mod97_valid(digits: str) -> bool:
    """True when the last two digits are the MOD 97-10 check of the rest."""
    return (
        len(digits) > 2 and digits.isascii() and digits.isdigit() and int(digits) % 97 == 1
    )


def _compact(text: str) -> str:
    return text.translate(_SEPARATORS)


def is_valid_bih_account(account: str) -> bool:
    """16 digits ``BBB PPP KKKKKKKK CC`` (spaces or dashes allowed), CC by MOD 97-10."""
    if not isinstance(account, str):
        return False
    digits = _compact(account)
    return len(digits) == 16 and mod97_valid(digits)


def iban_check_digits(country: str, bban: str) -> str:
    """IBAN check digits (ISO 13616): MOD 97-10 over BBAN + country letters as numbers."""
    if len(country) != 2 or not country.isascii() or not country.isalpha():
        raise BillingError(f"country must be two letters, got {country!r}")
    letters = "".join(str(ord(ch) - ord("A") + 10) for ch in country.upper())
    return mod97_check_digits(bban + letters)


def bih_iban(account: str) -> str:
    """``BA39`` + the 16-digit account. Always 39: the account is ≡ 1 (mod 97) by its own
    check digits, so BA's IBAN check is 98 − ((10⁶ + 111000) mod 97) = 39."""
    if not is_valid_bih_account(account):
        raise BillingError(f"account: not a valid BiH account (16 digits, MOD 97-10): {account!r}")
    digits = _compact(account)
    return f"BA{iban_check_digits('BA', digits)}{digits}"


def make_payment_reference(year: int, seq: int) -> str:
    """2026, 1 → '2600000126': YY + 6-digit invoice sequence + MOD 97-10 check digits."""
    if not 2000 <= year <= 2099:
        raise BillingError(f"year: must be 2000–2099, got {year}")
    if not 1 <= seq <= 999_999:
        raise BillingError(f"seq: must be 1–999999, got {seq}")
    body = f"{year % 100:02d}{seq:06d}"
    return body + mod97_check_digits(body)


def parse_payment_reference(text: str) -> tuple[int, int]:
    """Payment reference → (two-digit year, invoice sequence). Spaces and dashes are ignored;
    a wrong length, a non-digit or a wrong check digit raises `BillingError` with the reason."""
    if not isinstance(text, str):
        raise BillingError(f"reference: must be a string, got {type(text).__name__}")
    digits = _compact(text.strip())
    if not digits:
        raise BillingError("reference: is empty")
    if not digits.isascii() or not digits.isdigit():
        raise BillingError(f"reference: only digits allowed, got {text!r}")
    if len(digits) != REFERENCE_LENGTH:
        raise BillingError(
            f"reference: must have {REFERENCE_LENGTH} digits, got {len(digits)} in {text!r}"
        )
    if int(digits) % 97 != 1:
        raise BillingError(f"reference: wrong check digits in {text!r} (typo?)")
    seq = int(digits[2:8])
    if seq == 0:
        raise BillingError(f"reference: invoice sequence 000000 does not exist in {text!r}")
    return int(digits[:2]), seq
