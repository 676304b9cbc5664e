"""`close_hooks.number_range`: after-write steps select a close's invoices by the range of
their numbers only when the numbers really are that whole range."""

from datetime import date

from billing.close_hooks import WrittenInvoice, number_range


def _w(number: str) -> WrittenInvoice:
    return WrittenInvoice(number, "C1", "2026-10", date(2026, 11, 1), date(2026, 11, 16),
                          100, 17, 117)


def test_consecutive_numbers_of_one_year_give_their_range() -> None:
    written = [_w(f"2026-{n:06d}") for n in range(41, 46)]
    assert number_range(written) == ("2026-000041", "2026-000045")
    assert number_range([_w("2026-000007")]) == ("2026-000007", "2026-000007")


def test_anything_else_gives_none() -> None:
    assert number_range([]) is None
    assert number_range([_w("2026-000001"), _w("2026-000003")]) is None  # a gap
    assert number_range([_w("2026-000002"), _w("2026-000001")]) is None  # descending
    assert number_range([_w("2026-999999"), _w("2027-000001")]) is None  # two years
    assert number_range([_w("2026-000001"), _w("2026-000001")]) is None  # twice
    assert number_range([_w("CN-2026-000001")]) is None  # not an invoice number
