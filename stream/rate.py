"""Turn validated intervals into rated intervals and daily rollup rows (pure numpy).

Each interval between two accepted reads is split at local midnight (exactly), every
day piece is priced with the tariff of the contract in force that day, and the pieces
are summed back per interval (stored in `consumption_intervals`) and per metering point,
register and day (added to `daily_consumption`).

Load-profile meters (an electricity meter whose only active-energy register is the total
1.8.0, read every 15 minutes or hour): their day pieces are split once more at the TOU
band changes of the tariff in force that day (`rating.tou.rate_profile`, vectorized), and
each band piece is rolled up under the register that prices its band — 1.8.1 (VT) or
1.8.2 (MT) — so `daily_consumption` looks exactly like a two-register meter's and the
close prices it the same way. A tariff with the scheme `single` keeps 1.8.0 (and must
price 1.8.0). `consumption_intervals` keeps the raw interval under 1.8.0 (one row per
pair of reads, the evidence that matches the meter): its amount is the sum of its band
pieces, its price the one of its last piece. A meter that also has 1.8.1 or 1.8.2
registers reports its own bands: its 1.8.0 is not split (it stays a check total).

Sundays and holidays are MT all day; the default holiday calendar is the District-law
list (`default_holidays`); the religious and state-level days are the utility's call.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

from rating.calendar import FIRST_DAY, LAST_DAY
from rating.catalog import Catalog
from rating.holidays import HolidayCalendar, brcko_holidays
from rating.rater import energy_prices, rate_pieces, sum_by_group
from rating.split import DayPieces, split_at_local_midnight
from rating.tou import BAND_REGISTERS, rate_profile
from stream.vee import Interval, MeterInfo

I64 = npt.NDArray[np.int64]
IntervalKey = tuple[str, str, int]  # meter_id, register, end_at
PROFILE_REGISTER = "1.8.0"
_OWN_BANDS = frozenset(BAND_REGISTERS[1:])


@cache
def default_holidays() -> HolidayCalendar:
    """The confirmed (District-law) holidays of every year of the calendar."""
    years = range(FIRST_DAY.year, LAST_DAY.year + 1)
    return HolidayCalendar.of(h for h in brcko_holidays(years) if h.confirmed)


def is_profile(register: str, meter: MeterInfo) -> bool:
    """Is this a 1.8.0 interval to be split into the TOU bands?"""
    return (
        register == PROFILE_REGISTER
        and meter.service == "electricity"
        and not _OWN_BANDS.intersection(meter.registers)
    )


@dataclass
class RatedIntervals:
    intervals: Sequence[Interval]
    meters: dict[str, MeterInfo]
    pieces: DayPieces  # pieces of each interval together, in interval order
    tariff_idx: I64  # per piece
    tariff_names: list[str]
    register_idx: I64  # per piece: the register it is rolled up under
    register_names: list[str]
    prices: I64
    amounts: I64

    def interval_rows(self) -> list[tuple[object, ...]]:
        """One row per interval: its total quantity and amount, the tariff of its last day."""
        src = self.pieces.source
        last_piece = np.flatnonzero(np.r_[src[1:] != src[:-1], True])
        first_piece = np.r_[0, last_piece[:-1] + 1]
        amount = np.add.reduceat(self.amounts, first_piece)
        rows: list[tuple[object, ...]] = []
        for k, iv in enumerate(self.intervals):
            meter = self.meters[iv.meter_id]
            lp = int(last_piece[k])
            t = int(self.tariff_idx[lp])
            rows.append((
                iv.meter_id, iv.register, iv.start_at, iv.end_at, int(self.pieces.day[lp]),
                meter.metering_point_id, meter.service,
                self.tariff_names[t] if t >= 0 else None,
                iv.quantity_milli, int(self.prices[lp]), int(amount[k]),
            ))  # fmt: skip
        return rows

    def daily_rows(self, inserted: Collection[IntervalKey] | None) -> list[tuple[object, ...]]:
        """Rollup rows (mp, service, register, day index, quantity, amount, pieces) from the
        pieces of the intervals that were inserted (`None` = all of them)."""
        src = self.pieces.source
        if inserted is None:
            mask = np.ones(len(src), dtype=bool)
        else:
            keep = np.fromiter(
                ((iv.meter_id, iv.register, iv.end_at) in inserted for iv in self.intervals),
                bool,
                len(self.intervals),
            )
            mask = keep[src]
        if not mask.any():
            return []
        mp_names: dict[tuple[str | None, str], int] = {}
        iv_mp = np.fromiter(
            (
                mp_names.setdefault(
                    (self.meters[iv.meter_id].metering_point_id, self.meters[iv.meter_id].service),
                    len(mp_names),
                )
                for iv in self.intervals
            ),
            np.int64,
            len(self.intervals),
        )
        s = src[mask]
        days = self.pieces.day[mask]
        first_day = int(days.min())
        n_days = int(days.max()) - first_day + 1
        n_reg = len(self.register_names)
        key = (iv_mp[s] * n_reg + self.register_idx[mask]) * n_days + (days - first_day)
        groups, qty = sum_by_group(self.pieces.quantity_milli[mask], key)
        _, amount = sum_by_group(self.amounts[mask], key)
        _, count = sum_by_group(np.ones(len(key), dtype=np.int64), key)
        mp_list = list(mp_names)
        rows: list[tuple[object, ...]] = []
        for g, q, a, c in zip(
            groups.tolist(), qty.tolist(), amount.tolist(), count.tolist(), strict=True
        ):
            rest, day = divmod(g, n_days)
            mp_i, r = divmod(rest, n_reg)
            mp, service = mp_list[mp_i]
            rows.append((mp, service, self.register_names[r], day + first_day, q, a, c))
        return rows


def rate_intervals(
    intervals: Sequence[Interval],
    meters: dict[str, MeterInfo],
    catalog: Catalog,
    holidays: HolidayCalendar | None = None,
) -> RatedIntervals | None:
    if not intervals:
        return None
    n = len(intervals)
    start = np.fromiter((iv.start_at for iv in intervals), np.int64, n)
    end = np.fromiter((iv.end_at for iv in intervals), np.int64, n)
    qty = np.fromiter((iv.quantity_milli for iv in intervals), np.int64, n)
    days = split_at_local_midnight(start, end, qty)
    reg_names: dict[str, int] = {}
    iv_register = np.fromiter(
        (reg_names.setdefault(iv.register, len(reg_names)) for iv in intervals), np.int64, n
    )
    tariff_idx, tariff_names = _tariffs_of_pieces(intervals, meters, days)
    profile_kinds: dict[tuple[str, str], bool] = {}
    profile_iv = np.fromiter(
        (
            profile_kinds.setdefault(
                (iv.meter_id, iv.register), is_profile(iv.register, meters[iv.meter_id])
            )
            for iv in intervals
        ),
        bool,
        n,
    )
    profile = profile_iv[days.source]
    if not profile.any():
        pieces, register_idx = days, iv_register[days.source]
        register_names = list(reg_names)
        prices = energy_prices(
            catalog, tariff_idx, tariff_names, register_idx, register_names, pieces.day
        )
    else:
        band_register = np.array(
            [reg_names.setdefault(r, len(reg_names)) for r in BAND_REGISTERS], dtype=np.int64
        )
        register_names = list(reg_names)
        pieces, tariff_idx, register_idx, prices = _split_profile_pieces(
            days, profile, tariff_idx, tariff_names, iv_register, band_register,
            register_names, catalog, holidays or default_holidays(),
        )  # fmt: skip
    amounts = rate_pieces(pieces.quantity_milli, prices)
    return RatedIntervals(
        intervals, meters, pieces, tariff_idx, tariff_names, register_idx, register_names,
        prices, amounts,
    )  # fmt: skip


def _split_profile_pieces(
    days: DayPieces,
    profile: npt.NDArray[np.bool_],
    tariff_idx: I64,
    tariff_names: list[str],
    iv_register: I64,
    band_register: I64,
    register_names: list[str],
    catalog: Catalog,
    holidays: HolidayCalendar,
) -> tuple[DayPieces, I64, I64, I64]:
    """Replace every profile day piece by its band pieces (in place, order kept); price the
    other day pieces by their own register. Returns pieces, tariff, register and price."""
    sel = np.flatnonzero(profile)
    rest = np.flatnonzero(~profile)
    rated = rate_profile(
        catalog, days.start_at[sel], days.end_at[sel], days.quantity_milli[sel],
        tariff_idx[sel], tariff_names, holidays, at_midnight=False,
    )  # fmt: skip
    bp = rated.pieces
    per_day = np.bincount(bp.source, minlength=len(sel)).astype(np.int64)
    counts = np.ones(len(days.day), dtype=np.int64)
    counts[sel] = per_day
    first = np.cumsum(counts) - counts
    rank = np.arange(len(bp.source), dtype=np.int64) - np.repeat(
        np.cumsum(per_day) - per_day, per_day
    )
    at_rest = first[rest]
    origin = sel[bp.source]  # the day piece each band piece comes from
    at_band = first[origin] + rank
    total = int(counts.sum())
    out = {
        name: np.empty(total, dtype=np.int64)
        for name in ("source", "start", "end", "day", "qty", "tariff", "register", "price")
    }
    for name, day_values, band_values in (
        ("source", days.source, days.source[origin]),
        ("start", days.start_at, bp.start_at),
        ("end", days.end_at, bp.end_at),
        ("day", days.day, bp.day),
        ("qty", days.quantity_milli, bp.quantity_milli),
        ("tariff", tariff_idx, tariff_idx[origin]),
    ):
        out[name][at_rest] = day_values[rest]
        out[name][at_band] = band_values
    out["register"][at_rest] = iv_register[days.source[rest]]
    out["register"][at_band] = band_register[bp.band]
    out["price"][at_rest] = energy_prices(
        catalog, tariff_idx[rest], tariff_names, iv_register[days.source[rest]],
        register_names, days.day[rest],
    )  # fmt: skip
    out["price"][at_band] = rated.price_micro
    pieces = DayPieces(out["source"], out["start"], out["end"], out["day"], out["qty"])
    return pieces, out["tariff"], out["register"], out["price"]


def _tariffs_of_pieces(
    intervals: Sequence[Interval], meters: dict[str, MeterInfo], pieces: DayPieces
) -> tuple[I64, list[str]]:
    """Tariff code index per piece from the contract in force on its day (-1: none)."""
    meter_names: dict[str, int] = {}
    iv_meter = np.fromiter(
        (meter_names.setdefault(iv.meter_id, len(meter_names)) for iv in intervals),
        np.int64,
        len(intervals),
    )
    piece_meter = iv_meter[pieces.source]
    order = np.argsort(piece_meter, kind="stable")
    sorted_meters = piece_meter[order]
    starts = np.flatnonzero(np.r_[True, sorted_meters[1:] != sorted_meters[:-1]])
    ends = np.r_[starts[1:], len(order)]
    names = list(meter_names)
    tariff_idx = np.full(len(piece_meter), -1, dtype=np.int64)
    codes: dict[str, int] = {}
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        sel = order[a:b]
        days = pieces.day[sel]
        for span in meters[names[int(sorted_meters[a])]].contracts:
            inside = (days >= span.first_day) & (days < span.end_day)
            if inside.any():
                tariff_idx[sel[inside]] = codes.setdefault(span.tariff_code, len(codes))
    return tariff_idx, list(codes)
