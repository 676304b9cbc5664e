"""Price consumption pieces: quantity × the energy price in force on the piece's local day.

Vectorized: pieces are grouped by (tariff, register, day) with `np.unique`; each distinct
key is priced once from the catalog and the price is broadcast back to every piece.
Tariffs and registers come in as integer codes into name lists (-1 = no tariff).
Amounts are integer nano-KM (quantity in thousandths × price in micro-KM), never rounded
here: rounding happens once, per invoice line.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from rating import RatingError
from rating.calendar import day_from_index
from rating.catalog import Catalog

I64 = npt.NDArray[np.int64]


def energy_prices(
    catalog: Catalog,
    tariff_idx: I64,
    tariff_names: Sequence[str],
    register_idx: I64,
    register_names: Sequence[str],
    days: I64,
) -> I64:
    """Unit price in micro-KM per piece; 0 where no contract or no energy component applies."""
    if len(days) == 0:
        return np.zeros(0, dtype=np.int64)
    n_reg = max(len(register_names), 1)
    first = int(days.min())
    span = int(days.max()) - first + 1
    key = ((tariff_idx + 1) * n_reg + register_idx) * span + (days - first)
    uniq, inverse = np.unique(key, return_inverse=True)
    prices = np.zeros(len(uniq), dtype=np.int64)
    for k, u in enumerate(uniq.tolist()):
        rest, day = divmod(u, span)
        t, r = divmod(rest, n_reg)
        if t == 0:
            continue
        d = day_from_index(day + first)
        try:
            version = catalog.version_on(tariff_names[t - 1], d)
        except RatingError:
            continue
        comp = version.energy_component(register_names[r], d)
        if comp is not None:
            prices[k] = comp.price_micro
    return prices[inverse.reshape(-1)]


def rate_pieces(quantity_milli: I64, price_micro: I64) -> I64:
    """Amount in nano-KM per piece."""
    return quantity_milli * price_micro


def sum_by_group(values: I64, group: I64) -> tuple[I64, I64]:
    """Exact int64 sums of `values` per distinct `group` → (groups, sums)."""
    order = np.argsort(group, kind="stable")
    g = group[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    return g[starts], np.add.reduceat(values[order], starts)
