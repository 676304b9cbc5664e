"""MOD 97-10 check digits: BiH accounts, BA39 IBANs and our payment reference."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing import BillingError
from billing.reference import (
    bih_iban,
    iban_check_digits,
    is_valid_bih_account,
    make_payment_reference,
    mod97_check_digits,
    parse_payment_reference,
)

# The IBAN registry's example for Bosnia and Herzegovina.
REGISTRY_ACCOUNT = "1290079401028494"


def test_check_digits_worked_by_hand() -> None:
    # 26000001 = 97 · 268041 + 24; 2400 = 97 · 24 + 72; 98 − 72 = 26
    assert mod97_check_digits("26000001") == "26"
    # 26123456 = 97 · 269313 + 95; 9500 = 97 · 97 + 91; 98 − 91 = 7 → zero-padded
    assert mod97_check_digits("26123456") == "07"
    assert make_payment_reference(2026, 1) == "2600000126"
    assert make_payment_reference(2026, 123456) == "2612345607"


def test_check_digits_reject_non_digits() -> None:
    for bad in ("", "12a4", "١٢٣"):
        with pytest.raises(BillingError):
            mod97_check_digits(bad)


def test_bih_account_and_iban() -> None:
    assert is_valid_bih_account(REGISTRY_ACCOUNT)
    assert is_valid_bih_account("129 007 94010284 94")
    assert is_valid_bih_account("129-007-94010284-94")
    assert not is_valid_bih_account("1290079401028495")  # wrong check digits
    assert not is_valid_bih_account("129007940102849")  # 15 digits
    assert not is_valid_bih_account("12900794010284x4")
    assert bih_iban("129-007-94010284-94") == "BA391290079401028494"
    with pytest.raises(BillingError, match="account"):
        bih_iban("1290079401028495")


def test_iban_check_digits_of_known_ibans() -> None:
    # ISO 13616 examples: GB82 WEST 1234 5698 7654 32, DE89 3704 0044 0532 0130 00
    # (letters of the bank code become numbers: W=32 E=14 S=28 T=29)
    assert iban_check_digits("GB", "32142829" + "12345698765432") == "82"
    assert iban_check_digits("DE", "370400440532013000") == "89"


@given(st.from_regex(r"[0-9]{14}", fullmatch=True))
def test_every_bih_iban_starts_ba39(first14: str) -> None:
    account = first14 + mod97_check_digits(first14)
    assert is_valid_bih_account(account)
    assert iban_check_digits("BA", account) == "39"
    assert bih_iban(account).startswith("BA39")


def test_parse_round_trip_and_separators() -> None:
    assert parse_payment_reference("2600000126") == (26, 1)
    assert parse_payment_reference(" 26-000001-26 ") == (26, 1)
    assert parse_payment_reference("26 123456 07") == (26, 123456)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("260000012", "must have 10 digits, got 9"),
        ("26000001260", "must have 10 digits, got 11"),
        ("26000O0126", "only digits"),
        ("2600000127", "wrong check digits"),
        ("", "is empty"),
        ("2600 00012", "must have 10 digits, got 9"),
    ],
)
def test_parse_rejects_with_reason(text: str, reason: str) -> None:
    with pytest.raises(BillingError, match=reason):
        parse_payment_reference(text)


def test_parse_rejects_sequence_zero_and_non_string() -> None:
    body = "26000000"
    with pytest.raises(BillingError, match="000000"):
        parse_payment_reference(body + mod97_check_digits(body))
    with pytest.raises(BillingError, match="must be a string"):
        parse_payment_reference(2600000126)  # type: ignore[arg-type]


@pytest.mark.parametrize(("year", "seq"), [(1999, 1), (2100, 1), (2026, 0), (2026, 1_000_000)])
def test_make_refuses_out_of_range(year: int, seq: int) -> None:
    with pytest.raises(BillingError):
        make_payment_reference(year, seq)


@pytest.mark.parametrize(("year", "seq"), [(2026, 1), (2026, 123456), (2099, 999999), (2000, 7)])
def test_every_single_digit_typo_is_caught(year: int, seq: int) -> None:
    """Exhaustive: each of the 10 positions × 9 wrong digits."""
    ref = make_payment_reference(year, seq)
    assert parse_payment_reference(ref) == (year % 100, seq)
    for pos in range(len(ref)):
        for digit in "0123456789":
            if digit == ref[pos]:
                continue
            typo = ref[:pos] + digit + ref[pos + 1 :]
            with pytest.raises(BillingError, match="check digits"):
                parse_payment_reference(typo)


@given(st.integers(2000, 2099), st.integers(1, 999_999), st.integers(0, 8))
def test_adjacent_transpositions_are_caught(year: int, seq: int, pos: int) -> None:
    ref = make_payment_reference(year, seq)
    if ref[pos] == ref[pos + 1]:
        return
    swapped = ref[:pos] + ref[pos + 1] + ref[pos] + ref[pos + 2 :]
    with pytest.raises(BillingError, match="check digits"):
        parse_payment_reference(swapped)


@given(st.integers(2000, 2099), st.integers(1, 999_999))
def test_round_trip(year: int, seq: int) -> None:
    ref = make_payment_reference(year, seq)
    assert len(ref) == 10 and ref.isdigit()
    assert parse_payment_reference(ref) == (year % 100, seq)
