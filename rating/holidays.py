"""Public and religious holidays that count as a whole MT day (like Sunday) in TOU rating.

The list is configuration, not law encoded in code: `brcko_holidays(years)` builds the
default list, every entry says on what basis it is there and whether that basis is
confirmed; an operator can replace it with a plain document read by `parse_holidays`.

What was checked (Zakon o praznicima Brčko distrikta BiH, Sl. glasnik BD 19/2002 and
19/2022): the District holidays are New Year 1–2 January, District Day 8 March and Labour
Day 1–2 May; a District holiday falling on a Sunday moves to the next working day
(art. 5). Independence Day (1 March) and Statehood Day (25 November) come from a state-level
law and are reported as working days in Brčko: listed, marked unconfirmed. Religious
holidays (Christmas and Easter of both calendars, Ramazanski and Kurban bajram) are
non-working days for believers, not for everyone: listed, marked unconfirmed — whether
the tariff treats them as MT days is the utility's call. Easter dates are computed; the
bajram dates are a per-year table (2027 is the announced astronomical date, unconfirmed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from rating import RatingError

I64 = npt.NDArray[np.int64]
EPOCH_DAY = date(1970, 1, 1)
BASES = ("district_law", "state_law", "religious")

_DISTRICT = (((1, 1), "Nova godina"), ((1, 2), "Nova godina (drugi dan)"),
             ((3, 8), "Dan uspostavljanja Brčko distrikta BiH"),
             ((5, 1), "Praznik rada"), ((5, 2), "Praznik rada (drugi dan)"))  # fmt: skip
_STATE = (((3, 1), "Dan nezavisnosti BiH"), ((11, 25), "Dan državnosti BiH"))
_FIXED_RELIGIOUS = (((1, 7), "Božić (pravoslavni)"), ((12, 25), "Božić (katolički)"))
# First day of each bajram; the flag says whether the date was announced (2027: computed).
BAJRAM: dict[int, tuple[tuple[date, str, bool], ...]] = {
    2024: ((date(2024, 4, 10), "Ramazanski bajram", True),
           (date(2024, 6, 16), "Kurban bajram", True)),
    2025: ((date(2025, 3, 30), "Ramazanski bajram", True),
           (date(2025, 6, 6), "Kurban bajram", True)),
    2026: ((date(2026, 3, 20), "Ramazanski bajram", True),
           (date(2026, 5, 27), "Kurban bajram", True)),
    2027: ((date(2027, 3, 9), "Ramazanski bajram", False),
           (date(2027, 5, 16), "Kurban bajram", False)),
}  # fmt: skip


class HolidayError(RatingError):
    """A holiday document is invalid; the message names the field."""


@dataclass(frozen=True)
class Holiday:
    day: date
    name: str
    basis: str  # district_law | state_law | religious
    confirmed: bool  # is it confirmed that this day is a non-working day in Brčko District?


@dataclass(frozen=True, eq=False)
class HolidayCalendar:
    """The MT-all-day dates as sorted epoch-day numbers (days since 1970-01-01)."""

    days: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @classmethod
    def of(cls, days: Iterable[date | Holiday]) -> HolidayCalendar:
        nums = {(d.day if isinstance(d, Holiday) else d).toordinal() for d in days}
        offset = EPOCH_DAY.toordinal()
        return cls(np.array(sorted(n - offset for n in nums), dtype=np.int64))

    def __contains__(self, d: object) -> bool:
        if not isinstance(d, date):
            return False
        n = (d - EPOCH_DAY).days
        i = int(np.searchsorted(self.days, n))
        return i < len(self.days) and int(self.days[i]) == n

    def mask(self, epoch_days: I64) -> npt.NDArray[np.bool_]:
        """True where the epoch-day number is a holiday (one gather over a dense table)."""
        if len(epoch_days) == 0 or len(self.days) == 0:
            return np.zeros(len(epoch_days), dtype=bool)
        lo, hi = int(epoch_days.min()), int(epoch_days.max())
        table = np.zeros(hi - lo + 1, dtype=bool)
        inside = self.days[(self.days >= lo) & (self.days <= hi)]
        table[inside - lo] = True
        return table[epoch_days - lo]


def easter_gregorian(year: int) -> date:
    """Western (Catholic) Easter Sunday, anonymous Gregorian algorithm."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (b - (b + 8) // 25 + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    m = (32 + 2 * e + 2 * i - h - k) % 7
    n = (a + 11 * h + 22 * m) // 451
    month, day = divmod(h + m - 7 * n + 114, 31)
    return date(year, month, day + 1)


def easter_orthodox(year: int) -> date:
    """Orthodox Easter Sunday (Julian computus) as a Gregorian date (valid 1900–2099)."""
    a, b, c = year % 4, year % 7, year % 19
    d = (19 * c + 15) % 30
    e = (2 * a + 4 * b - d + 34) % 7
    month, day = divmod(d + e + 114, 31)
    return date(year, month, day + 1) + timedelta(days=13)


def brcko_holidays(years: Iterable[int]) -> list[Holiday]:
    """The default list for the given years (see the module docstring for the basis)."""
    out: list[Holiday] = []
    for y in years:
        district = [Holiday(date(y, m, d), name, "district_law", True)
                    for (m, d), name in _DISTRICT]  # fmt: skip
        taken = {h.day for h in district}
        for h in list(district):  # art. 5: a District holiday on Sunday moves on
            if h.day.weekday() == 6:
                nxt = h.day + timedelta(days=1)
                while nxt in taken or nxt.weekday() >= 5:
                    nxt += timedelta(days=1)
                taken.add(nxt)
                district.append(Holiday(nxt, f"{h.name} (prenesen s nedjelje)", h.basis, True))
        out += district
        out += [Holiday(date(y, m, d), name, "state_law", False) for (m, d), name in _STATE]
        out += [Holiday(date(y, m, d), name, "religious", False)
                for (m, d), name in _FIXED_RELIGIOUS]  # fmt: skip
        for sunday, name in ((easter_gregorian(y), "Uskrs (katolički)"),
                             (easter_orthodox(y), "Vaskrs (pravoslavni)")):  # fmt: skip
            out.append(Holiday(sunday, name, "religious", False))
            out.append(Holiday(sunday + timedelta(days=1), f"{name}, drugi dan", "religious",
                               False))  # fmt: skip
        out += [Holiday(d, name if sure else f"{name} (datum nepotvrđen)", "religious", False)
                for d, name, sure in BAJRAM.get(y, ())]  # fmt: skip
    return sorted(out, key=lambda h: (h.day, h.name))


def parse_holidays(doc: Any) -> list[Holiday]:
    """A holiday list from a plain document: ``[{"date": "2026-03-08", "name": "…",
    "basis": "district_law", "confirmed": true}, …]``; errors name the entry and field."""
    if not isinstance(doc, list):
        raise HolidayError("holidays: must be a list")
    out = []
    for i, entry in enumerate(doc):
        where = f"holidays[{i}]"
        if not isinstance(entry, Mapping):
            raise HolidayError(f"{where}: must be an object")
        raw = entry.get("date")
        try:
            day = date.fromisoformat(str(raw))
        except ValueError as exc:
            raise HolidayError(f"{where}.date: not a date (YYYY-MM-DD): {raw!r}") from exc
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise HolidayError(f"{where}.name: is required")
        basis = entry.get("basis", "district_law")
        if basis not in BASES:
            raise HolidayError(f"{where}.basis: must be one of {', '.join(BASES)}")
        confirmed = entry.get("confirmed", True)
        if not isinstance(confirmed, bool):
            raise HolidayError(f"{where}.confirmed: must be true or false")
        out.append(Holiday(day, name.strip(), basis, confirmed))
    return out
