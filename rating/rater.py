"""Price consumption pieces: quantity × the energy price in force on the piece's local day.

Vectorized: pieces are grouped by (tariff, register, day) with `np.unique`; each distinct
key is priced once from the catalog and the price is broadcast back to every piece.
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
    tariff_codes: Sequence[str | None],
    registers: Sequence[str],
    days: I64,
) -> I64:
    """Unit price in micro-KM per piece; 0 where no contract or no energy component applies."""
    n = len(days)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    t_index: dict[str | None, int] = {}
    r_index: dict[str, int] = {}
    t_codes = np.fromiter((t_index.setdefault(t, len(t_index)) for t in tariff_codes), np.int64, n)
    r_codes = np.fromiter((r_index.setdefault(r, len(r_index)) for r in registers), np.int64, n)
    span = int(days.max()) + 1
    key = (t_codes * len(r_index) + r_codes) * span + days
    uniq, inverse = np.unique(key, return_inverse=True)
    t_names = list(t_index)
    r_names = list(r_index)
    prices = np.zeros(len(uniq), dtype=np.int64)
    for k, u in enumerate(uniq.tolist()):
        rest, day = divmod(u, span)
        t, r = divmod(rest, len(r_index))
        tariff = t_names[t]
        if tariff is None:
            continue
        d = day_from_index(day)
        try:
            version = catalog.version_on(tariff, d)
        except RatingError:
            continue
        comp = version.energy_component(r_names[r], d)
        if comp is not None:
            prices[k] = comp.price_micro
    return prices[inverse.reshape(-1)]


def rate_pieces(quantity_milli: I64, price_micro: I64) -> I64:
    """Amount in nano-KM per piece."""
    return quantity_milli * price_micro
