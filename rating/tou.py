"""Time-of-use bands (VT/MT) and the vectorized rating of load-profile intervals.

The VT windows are fixed in UTC+1 (winter time) and move on the local clock in summer, so
the band of an instant needs no time-zone table: shift the UTC instant by one hour and
read the hour. Sundays and holidays are MT all day. Their day is taken in UTC+1 too: it
differs from the local (summer-time) day only between 23:00 and 24:00 local time, an hour
that is MT in every scheme (checked below), so the band comes out the same.

Every band change and every local midnight falls on a whole UTC hour (Europe/Sarajevo is
UTC+1/UTC+2), which lets a batch be rated through small per-hour tables built once:
band, local day and "a cut starts here" per hour of the batch's span, then one gather per
interval (a batch in which no interval crosses a whole hour, e.g. 15-minute profiles, is
priced straight from a (tariff, hour) table). Load-profile intervals (register 1.8.0) are
split at band changes (and local midnight) exactly like `rating.split`: quantity shared by
seconds, cumulative flooring, the pieces of an interval always add up to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from rating import RatingError
from rating.calendar import day_from_index, local_day_of, local_midnights
from rating.holidays import HolidayCalendar

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rating.catalog import Catalog

I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]
SINGLE, VT, MT = 0, 1, 2  # band 0: a single-rate tariff has no bands
BAND_REGISTERS = ("1.8.0", "1.8.1", "1.8.2")  # register that prices each band
# VT windows as [from, to) hours in UTC+1; everything else is MT.
SCHEMES: dict[str, tuple[tuple[int, int], ...]] = {
    "households": ((7, 13), (16, 22)),
    "other": ((6, 22),),
    "single": (),
}
SCHEME_NAMES = tuple(SCHEMES)
_HOUR = 3600
_DAY = 86400


@cache
def _hour_bands() -> tuple[I8, I8]:
    """(band per scheme and UTC+1 hour, band on a Sunday or holiday per scheme)."""
    table = np.zeros((len(SCHEMES), 24), dtype=np.int8)
    free = np.zeros(len(SCHEMES), dtype=np.int8)
    for s, windows in enumerate(SCHEMES.values()):
        if windows:
            table[s, :] = MT
            free[s] = MT
            for a, b in windows:
                table[s, a:b] = VT
            if table[s, 23] == VT:  # the day of 23:00 UTC+1 differs from the local day
                raise RatingError("a TOU scheme must be MT from 23:00 UTC+1")
    return table, free


def scheme_codes(scheme: str | npt.ArrayLike, n: int) -> I64:
    """A scheme name for all, or one integer code (index into SCHEME_NAMES) per element."""
    if isinstance(scheme, str):
        if scheme not in SCHEMES:
            raise RatingError(f"scheme: must be one of {', '.join(SCHEME_NAMES)}, got {scheme!r}")
        return np.full(n, SCHEME_NAMES.index(scheme), dtype=np.int64)
    codes = np.asarray(scheme, dtype=np.int64)
    if codes.shape != (n,) or (n and (codes.min() < 0 or codes.max() >= len(SCHEMES))):
        raise RatingError(f"scheme: need {n} codes in 0..{len(SCHEMES) - 1}")
    return codes


def tou_band(epochs: I64, scheme: str | npt.ArrayLike, holidays: HolidayCalendar) -> I8:
    """Band of each instant (UTC epoch seconds): 1 = VT, 2 = MT (0 for scheme 'single')."""
    epochs = np.asarray(epochs, dtype=np.int64)
    codes = scheme_codes(scheme, len(epochs))
    table, free = _hour_bands()
    wall = epochs + _HOUR  # the UTC+1 clock
    day = wall // _DAY
    hour = (wall - day * _DAY) // _HOUR
    off = ((day + 3) % 7 == 6) | holidays.mask(day)  # 1970-01-01 was a Thursday
    return np.where(off, free[codes], table[codes, hour]).astype(np.int8)


@cache
def _midnights_on_whole_hours() -> bool:
    return bool((local_midnights() % _HOUR == 0).all())


@dataclass(frozen=True)
class _Grid:
    """Per-hour tables over [h0, h0 + 3600·H): band per scheme, local day, cuts."""

    h0: int
    band: I8  # (schemes, H)
    day: I64  # (H,) local day index of rating.calendar
    cum: I64  # (schemes, H + 1): cuts at hours < k
    cut_hours: I64  # hour indices of the cuts, scheme after scheme
    cut_offset: I64  # (schemes,) where each scheme's cuts begin in cut_hours


def _grid(first: int, end: int, holidays: HolidayCalendar, at_midnight: bool) -> _Grid:
    if not _midnights_on_whole_hours():
        raise RatingError("local midnights must fall on whole UTC hours")
    h0 = first // _HOUR * _HOUR
    n_hours = -((h0 - end) // _HOUR)
    starts = h0 + _HOUR * np.arange(n_hours, dtype=np.int64)
    day = local_day_of(starts)
    band = np.stack([tou_band(starts, name, holidays) for name in SCHEME_NAMES])
    cut = np.zeros(band.shape, dtype=bool)
    cut[:, 1:] = band[:, 1:] != band[:, :-1]
    if at_midnight:
        cut[:, 1:] |= day[1:] != day[:-1]
    cum = np.zeros((len(SCHEMES), n_hours + 1), dtype=np.int64)
    np.cumsum(cut, axis=1, out=cum[:, 1:])
    cut_offset = np.r_[0, np.cumsum(cum[:, -1])[:-1]].astype(np.int64)
    return _Grid(h0, band, day, cum, np.flatnonzero(cut.ravel()) % n_hours, cut_offset)


@dataclass(frozen=True)
class BandPieces:
    source: I64  # index of the interval each piece comes from
    start_at: I64
    end_at: I64
    day: I64  # local day index (rating.calendar)
    band: I8  # SINGLE / VT / MT
    quantity_milli: I64


def split_at_band_changes(
    start_at: I64,
    end_at: I64,
    quantity_milli: I64,
    scheme: str | npt.ArrayLike,
    holidays: HolidayCalendar,
    *,
    at_midnight: bool = True,
) -> BandPieces:
    """Split intervals where their band changes (and at local midnight unless told not to);
    `scheme` is one name or a code per interval. Pieces come in interval order."""
    start_at, end_at = np.asarray(start_at, np.int64), np.asarray(end_at, np.int64)
    quantity_milli = np.asarray(quantity_milli, np.int64)
    if not (len(start_at) == len(end_at) == len(quantity_milli)):
        raise RatingError("start_at, end_at and quantity_milli must have the same length")
    codes = scheme_codes(scheme, len(start_at))
    if len(start_at) == 0:
        z = np.zeros(0, dtype=np.int64)
        return BandPieces(z, z, z, z, z.astype(np.int8), z)
    if np.any(end_at <= start_at):
        raise RatingError("end_at: every interval must end after it starts")
    g = _grid(int(start_at.min()), int(end_at.max()), holidays, at_midnight)
    return _split(g, start_at, end_at, quantity_milli, codes)


def _split(g: _Grid, start: I64, end: I64, qty: I64, codes: I64) -> BandPieces:
    n_hours = g.day.shape[0]
    first_hour = (start - g.h0) // _HOUR
    row = codes * (n_hours + 1)
    cum = g.cum.ravel()
    before = cum[row + first_hour + 1]  # cuts at or before the interval's start
    count = cum[row - ((g.h0 - end) // _HOUR)] - before  # cuts strictly inside
    flat_band = g.band.ravel()
    cross = np.flatnonzero(count)
    if len(cross) == 0:  # nothing to split: each interval is its own piece
        band = flat_band[codes * n_hours + first_hour]
        return BandPieces(np.arange(len(start), dtype=np.int64), start, end,
                          g.day[first_hour], band, qty)  # fmt: skip
    counts = count + 1
    first_piece = np.cumsum(counts) - counts  # where each interval's pieces begin
    source = np.repeat(np.arange(len(start), dtype=np.int64), counts)
    p_start, p_end, p_qty = (np.empty(len(source), dtype=np.int64) for _ in range(3))
    whole = count == 0  # the intervals that stay whole are copied over
    at = first_piece[whole]
    p_start[at], p_end[at], p_qty[at] = start[whole], end[whole], qty[whole]
    k = counts[cross]  # the others are cut, as in rating.split
    src = np.repeat(cross, k)
    j = np.arange(int(k.sum()), dtype=np.int64) - np.repeat(np.cumsum(k) - k, k)
    s, e, q = start[src], end[src], qty[src]
    cut_at = g.cut_offset[codes[src]] + before[src] + j - 1  # this piece starts at that cut
    cut_epochs = g.h0 + _HOUR * g.cut_hours
    last = len(cut_epochs) - 1
    ps = np.where(j == 0, s, cut_epochs[np.clip(cut_at, 0, last)])
    pe = np.where(j == count[src], e, cut_epochs[np.clip(cut_at + 1, 0, last)])
    span = e - s
    whole_q, rest = np.divmod(q, span)  # floor(q · secs / span) without int64 overflow
    cum_q = whole_q * (pe - s) + (rest * (pe - s)) // span
    at = first_piece[src] + j
    p_start[at], p_end[at] = ps, pe
    p_qty[at] = cum_q - np.where(j == 0, 0, np.roll(cum_q, 1))
    hour = (p_start - g.h0) // _HOUR
    return BandPieces(source, p_start, p_end, g.day[hour],
                      flat_band[codes[source] * n_hours + hour], p_qty)  # fmt: skip


@dataclass(frozen=True)
class RatedBandPieces:
    pieces: BandPieces
    price_micro: I64  # per piece; 0 where no tariff or no energy component applies
    amount_nano: I64  # quantity_milli × price_micro, not rounded (rounding is per line)

    def registers(self) -> list[str]:
        """The register each piece is billed on: 1.8.1 (VT), 1.8.2 (MT) or 1.8.0."""
        return [BAND_REGISTERS[b] for b in self.pieces.band.tolist()]


def rate_profile(
    catalog: Catalog,
    start_at: I64,
    end_at: I64,
    quantity_milli: I64,
    tariff_idx: I64,
    tariff_names: Sequence[str],
    holidays: HolidayCalendar,
    *,
    at_midnight: bool = True,
) -> RatedBandPieces:
    """Rate single-register (1.8.0) load-profile intervals: split at band changes and local
    midnight, price every piece with the tariff version, season and band of its day.

    `tariff_idx` gives each interval's tariff (index into `tariff_names`, -1 = none); its
    TOU scheme is the one of the version in force on the interval's first day. A tariff
    without a scheme is single-rate: priced on 1.8.0, never split at band changes.
    """
    start_at, end_at = np.asarray(start_at, np.int64), np.asarray(end_at, np.int64)
    quantity_milli, tariff_idx = np.asarray(quantity_milli, np.int64), np.asarray(tariff_idx)
    n = len(start_at)
    if not (len(end_at) == len(quantity_milli) == len(tariff_idx) == n):
        raise RatingError("start_at, end_at, quantity_milli and tariff_idx: lengths differ")
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return RatedBandPieces(split_at_band_changes(z, z, z, "single", holidays), z, z)
    if np.any(end_at <= start_at):
        raise RatingError("end_at: every interval must end after it starts")
    if tariff_idx.min() < -1 or tariff_idx.max() >= len(tariff_names):
        raise RatingError("tariff_idx: must be -1 or an index into tariff_names")
    g = _grid(int(start_at.min()), int(end_at.max()), holidays, at_midnight)
    d0, n_hours = int(g.day[0]), len(g.day)
    schemes, prices = _tariff_tables(catalog, tariff_names, d0, int(g.day[-1]) - d0 + 1)
    # per (tariff + 1, hour of the batch): scheme, band and price of that hour
    hour_day = g.day - d0
    scheme_th = schemes[:, hour_day]
    band_th = g.band[scheme_th, np.arange(n_hours)]
    price_th = prices[np.arange(len(prices))[:, None], hour_day[None, :], band_th]
    t = tariff_idx.astype(np.int64) + 1  # row 0 = no tariff
    hour = start_at - g.h0
    hour //= _HOUR
    last_hour = end_at - (g.h0 + 1)
    last_hour //= _HOUR
    row = t * n_hours
    row += hour
    if np.array_equal(hour, last_hour):  # no interval crosses a whole hour: none to split
        pieces = BandPieces(np.arange(n, dtype=np.int64), start_at, end_at, g.day[hour],
                            band_th.ravel()[row], quantity_milli)  # fmt: skip
        price = price_th.ravel()[row]
    else:
        pieces = _split(g, start_at, end_at, quantity_milli, scheme_th.ravel()[row])
        n_days = schemes.shape[1]
        key = (t[pieces.source] * n_days + (pieces.day - d0)) * 3 + pieces.band
        price = prices.ravel()[key]
    return RatedBandPieces(pieces, price, pieces.quantity_milli * price)


def _tariff_tables(catalog: Catalog, names: Sequence[str], d0: int, n_days: int) -> tuple[I64, I64]:
    """Scheme code per (tariff + 1, day) and price per (tariff + 1, day, band)."""
    schemes = np.full((len(names) + 1, n_days), SCHEME_NAMES.index("single"), dtype=np.int64)
    prices = np.zeros((len(names) + 1, n_days, 3), dtype=np.int64)
    for t, name in enumerate(names, start=1):
        for k in range(n_days):
            day = day_from_index(d0 + k)
            try:
                version = catalog.version_on(name, day)
            except RatingError:
                continue
            scheme = version.tou_scheme or "single"
            schemes[t, k] = SCHEME_NAMES.index(scheme)
            bands = (SINGLE,) if scheme == "single" else (VT, MT)
            for band in bands:
                comp = version.energy_component(BAND_REGISTERS[band], day)
                if comp is not None:
                    prices[t, k, band] = comp.price_micro
    return schemes, prices
