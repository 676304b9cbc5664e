"""Turn validated intervals into rated intervals and daily rollup rows (pure numpy).

Each interval between two accepted reads is split at local midnight (exactly), every
day piece is priced with the tariff of the contract in force that day, and the pieces
are summed back per interval (stored in `consumption_intervals`) and per metering point,
register and day (added to `daily_consumption`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rating.catalog import Catalog
from rating.rater import energy_prices, rate_pieces, sum_by_group
from rating.split import DayPieces, split_at_local_midnight
from stream.vee import Interval, MeterInfo

I64 = npt.NDArray[np.int64]
IntervalKey = tuple[str, str, int]  # meter_id, register, end_at


@dataclass
class RatedIntervals:
    intervals: Sequence[Interval]
    meters: dict[str, MeterInfo]
    pieces: DayPieces
    tariff_idx: I64
    tariff_names: list[str]
    register_idx: I64  # per interval
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
        key = (iv_mp[s] * n_reg + self.register_idx[s]) * n_days + (days - first_day)
        groups, qty = sum_by_group(self.pieces.quantity_milli[mask], key)
        _, amount = sum_by_group(self.amounts[mask], key)
        _, count = sum_by_group(np.ones(len(key), dtype=np.int64), key)
        mp_list = list(mp_names)
        rows: list[tuple[object, ...]] = []
        for g, q, a, c in zip(groups.tolist(), qty.tolist(), amount.tolist(), count.tolist(),
                              strict=True):
            rest, day = divmod(g, n_days)
            mp_i, r = divmod(rest, n_reg)
            mp, service = mp_list[mp_i]
            rows.append((mp, service, self.register_names[r], day + first_day, q, a, c))
        return rows


def rate_intervals(
    intervals: Sequence[Interval], meters: dict[str, MeterInfo], catalog: Catalog
) -> RatedIntervals | None:
    if not intervals:
        return None
    n = len(intervals)
    start = np.fromiter((iv.start_at for iv in intervals), np.int64, n)
    end = np.fromiter((iv.end_at for iv in intervals), np.int64, n)
    qty = np.fromiter((iv.quantity_milli for iv in intervals), np.int64, n)
    pieces = split_at_local_midnight(start, end, qty)
    reg_names: dict[str, int] = {}
    register_idx = np.fromiter(
        (reg_names.setdefault(iv.register, len(reg_names)) for iv in intervals), np.int64, n
    )
    tariff_idx, tariff_names = _tariffs_of_pieces(intervals, meters, pieces)
    register_names = list(reg_names)
    prices = energy_prices(
        catalog, tariff_idx, tariff_names, register_idx[pieces.source], register_names, pieces.day
    )
    amounts = rate_pieces(pieces.quantity_milli, prices)
    return RatedIntervals(
        intervals, meters, pieces, tariff_idx, tariff_names, register_idx, register_names,
        prices, amounts,
    )  # fmt: skip


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
