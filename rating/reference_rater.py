"""A plain per-row reference for `rating.tou.rate_profile`, for the benchmark and the tests.

Written the obvious way, independently of the vectorized engine: local time through
zoneinfo, the VT windows read on the local clock (one hour later in summer), Sunday and
holidays by the local date, the tariff looked up in the catalog for every piece. It must
agree with the engine to the last Wh and nano-KM.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from rating import RatingError
from rating.calendar import LOCAL_TZ, day_index
from rating.catalog import Catalog
from rating.tou import BAND_REGISTERS, MT, SCHEMES, SINGLE, VT

Row = tuple[int, int, int, str | None]  # start_at, end_at, quantity_milli, tariff code


@dataclass(frozen=True)
class RefPiece:
    source: int
    start_at: int
    end_at: int
    day: int  # local day index (rating.calendar)
    band: int
    quantity_milli: int
    price_micro: int
    amount_nano: int


def _local(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC).astimezone(LOCAL_TZ)


def band_at(epoch: int, scheme: str, holidays: Collection[date]) -> int:
    """The band of one instant, read on the local clock."""
    windows = SCHEMES[scheme]
    if not windows:
        return SINGLE
    local = _local(epoch)
    if local.weekday() == 6 or local.date() in holidays:
        return MT
    shift = 1 if local.dst() else 0  # the windows are fixed in winter time
    for a, b in windows:
        if a + shift <= local.hour < b + shift:
            return VT
    return MT


def _scheme(catalog: Catalog, tariff: str | None, day: date) -> str:
    if tariff is None:
        return "single"
    try:
        return catalog.version_on(tariff, day).tou_scheme or "single"
    except RatingError:
        return "single"


def _price(catalog: Catalog, tariff: str | None, scheme: str, band: int, day: date) -> int:
    if tariff is None:
        return 0
    try:
        version = catalog.version_on(tariff, day)
    except RatingError:
        return 0
    if scheme == "single" and band != SINGLE:
        return 0
    comp = version.energy_component(BAND_REGISTERS[band], day)
    return 0 if comp is None else comp.price_micro


def reference_rate(
    catalog: Catalog,
    rows: Sequence[Row],
    holidays: Collection[date],
    *,
    at_midnight: bool = True,
) -> list[RefPiece]:
    out: list[RefPiece] = []
    for i, (start, end, quantity, tariff) in enumerate(rows):
        if end <= start:
            raise RatingError(f"rows[{i}]: the interval must end after it starts")
        scheme = _scheme(catalog, tariff, _local(start).date())
        cuts = [start]
        t = (start // 3600 + 1) * 3600  # bands and midnights change on whole hours only
        while t < end:
            changed = band_at(t, scheme, holidays) != band_at(t - 1, scheme, holidays)
            if at_midnight and _local(t).date() != _local(t - 1).date():
                changed = True
            if changed:
                cuts.append(t)
            t += 3600
        cuts.append(end)
        span = end - start
        done = 0
        for a, b in zip(cuts, cuts[1:], strict=False):
            cumulative = quantity * (b - start) // span
            piece = cumulative - done
            done = cumulative
            band = band_at(a, scheme, holidays)
            day = _local(a).date()
            price = _price(catalog, tariff, scheme, band, day)
            out.append(RefPiece(i, a, b, day_index(day), band, piece, price, piece * price))
    return out
