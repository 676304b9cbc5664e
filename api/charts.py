"""Server-side SVG bar charts (pure: data in, markup out; no script, no inline style).

The chart is drawn in a small coordinate system (``viewBox`` 400 × 230) so that its
text stays readable when a phone scales it to the screen's width; the stylesheet only
sets its width. Colours and font sizes are SVG attributes (a ``style`` attribute would
break the Content-Security-Policy). Each bar carries a ``<title>`` (a tooltip with the
exact value); the whole chart is one image for assistive technology (``role="img"``,
named by its own ``<title>`` and ``<desc>``); the page gives the same data as a table.

Values are integers in minor units (thousandths of a kWh, feninga …); ``scale`` is the
number of minor units in one unit and ``axis_text(value, decimals)`` writes a tick.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from api import i18n
from billing.accounts import METERED_UNITS, ServiceMonth, service_key
from rating.calendar import previous_period

WIDTH, HEIGHT = 400, 230
LEFT, RIGHT, TOP, BOTTOM = 56, 18, 26, 42  # margins around the plot area
FONT = 14
BAR_FILL, LAST_FILL, GRID, INK = "#2f6fb0", "#0b3d6b", "#c9d1d9", "#24292f"
_ID = re.compile(r"^[a-z][a-z0-9-]{0,40}$")


@dataclass(frozen=True, slots=True)
class Bar:
    label: str  # short axis label, e.g. "mar"
    year: str  # printed under the label where the year changes, e.g. "2026"
    name: str  # full name for the tooltip, e.g. "mart 2026"
    value: int | None  # minor units; None = no data (no bar is drawn)
    text: str  # the value as the reader should see it, e.g. "412,345 kWh"


def nice_step(top: int, ticks: int = 4) -> int:
    """The smallest step of 1, 2 or 5 × 10ⁿ (≥ 1) giving at most ``ticks`` steps to ``top``."""
    if ticks < 1:
        raise ValueError("ticks: must be at least 1")
    if top <= 0:
        return 1
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            if -(-top // step) <= ticks:
                return step
        magnitude *= 10


def tick_decimals(step: int, scale: int) -> int:
    """Decimals needed to write multiples of ``step`` minor units in whole units."""
    decimals = 0
    unit = scale
    while step % unit and unit > 1 and unit % 10 == 0:
        unit //= 10
        decimals += 1
    return decimals


def label_every(count: int, room: int) -> int:
    """Label every n-th bar so that at most ``room`` labels are printed."""
    return max(1, -(-count // max(room, 1)))


def _num(x: float) -> str:
    text = f"{x:.1f}"
    return text[:-2] if text.endswith(".0") else text


def bar_chart(
    bars: Sequence[Bar],
    *,
    chart_id: str,
    title: str,
    desc: str,
    unit_label: str,
    scale: int,
    axis_text: Callable[[int, int], str],
) -> str:
    """An accessible SVG bar chart; the last bar is drawn darker (the newest month)."""
    if not _ID.match(chart_id):
        raise ValueError(f"chart_id: must be lower-case letters, digits and '-', got {chart_id!r}")
    if scale < 1:
        raise ValueError("scale: must be at least 1")
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    base_y = TOP + plot_h
    top_value = max((max(b.value, 0) for b in bars if b.value is not None), default=0)
    reach = max(top_value, scale)  # the axis reaches at least one whole unit
    step = nice_step(reach)
    ticks = -(-reach // step)
    axis_max = step * ticks
    decimals = tick_decimals(step, scale)
    t_id, d_id = f"{chart_id}-title", f"{chart_id}-desc"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' role="img" aria-labelledby="{t_id} {d_id}" id="{chart_id}"'
        f' font-family="system-ui, sans-serif" font-size="{FONT}">',
        f'<title id="{t_id}">{escape(title)}</title>',
        f'<desc id="{d_id}">{escape(desc)}</desc>',
        f'<text x="4" y="{FONT + 2}" fill="{INK}" class="unit">{escape(unit_label)}</text>',
    ]
    for i in range(ticks + 1):
        value = step * i
        y = base_y - plot_h * value / axis_max
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_num(y)}" y2="{_num(y)}"'
            f' stroke="{GRID}" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{_num(y + FONT / 3)}" text-anchor="end" fill="{INK}"'
            f' class="tick">{escape(axis_text(value, decimals))}</text>'
        )
    if bars:
        slot = plot_w / len(bars)
        width = max(slot * 0.72, 1.0)
        every = label_every(len(bars), room=int(plot_w // (FONT * 2.6)))
        last_year = ""
        for i, bar in enumerate(bars):
            x = LEFT + slot * i + (slot - width) / 2
            if bar.value is not None:
                h = plot_h * max(bar.value, 0) / axis_max
                fill = LAST_FILL if i == len(bars) - 1 else BAR_FILL
                out.append(
                    f'<rect class="bar" x="{_num(x)}" y="{_num(base_y - h)}"'
                    f' width="{_num(width)}" height="{_num(h)}" fill="{fill}">'
                    f"<title>{escape(bar.name)}: {escape(bar.text)}</title></rect>"
                )
            if (len(bars) - 1 - i) % every == 0:  # the newest month is always labelled
                cx = _num(x + width / 2)
                out.append(
                    f'<text x="{cx}" y="{base_y + FONT + 4}" text-anchor="middle"'
                    f' fill="{INK}" class="month">{escape(bar.label)}</text>'
                )
                if bar.year != last_year:
                    out.append(
                        f'<text x="{cx}" y="{base_y + 2 * FONT + 6}" text-anchor="middle"'
                        f' fill="{INK}" class="year">{escape(bar.year)}</text>'
                    )
                    last_year = bar.year
    out.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{base_y}" y2="{base_y}"'
        f' stroke="{INK}" stroke-width="1"/>'
    )
    out.append("</svg>")
    return "".join(out)


# ---- the portal's consumption charts ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MonthRow:
    period: str
    name: str  # "mart 2026"
    quantity: str  # "412,345 kWh" (or "–")
    amount: str  # "48,40 KM" (or "–")


@dataclass(frozen=True, slots=True)
class ServiceChart:
    service: str
    title: str
    svg: str
    rows: list[MonthRow]  # the same data as a table, oldest first


def _axis_number(value: int, decimals: int, *, scale: int, lang: str) -> str:
    return i18n.number(value, scale, lang, decimals)


def months_ending(last_period: str, count: int) -> list[str]:
    """``count`` consecutive periods ending with ``last_period``, oldest first."""
    periods = [last_period]
    while len(periods) < count:
        periods.append(previous_period(periods[-1]))
    return periods[::-1]


def service_charts(
    series: Sequence[tuple[str, str, ServiceMonth]], last_period: str, months: int, lang: str
) -> list[ServiceChart]:
    """One chart per service over the ``months`` periods ending ``last_period``; a month
    without an invoice has no bar. Metered services show their quantity (kWh, m³), the
    others (waste) their amount with VAT, since their quantity is one per month."""
    periods = months_ending(last_period, months)
    found = {(p, s): m for p, s, m in series}
    services = sorted({s for _, s, _ in series}, key=service_key)
    fmt = i18n.Formats(lang)
    charts = []
    for service in services:
        metered = service in METERED_UNITS
        unit_label = i18n.unit(METERED_UNITS[service], lang) if metered else "KM"
        scale = 1000 if metered else 100
        bars, rows = [], []
        for period in periods:
            month = found.get((period, service))
            name = i18n.period_name(period, lang)
            short = i18n.period_name(period, lang, short=True).split(" ")[0]
            if month is None:
                value, shown = None, i18n.text(lang, "no_data")
                rows.append(MonthRow(period, name, "–", "–"))
            else:
                qty = fmt.qty(month.quantity_milli, month.unit)
                amount = i18n.money(month.amount_fen, lang)
                value = month.quantity_milli if metered else month.amount_fen
                shown = qty if metered else amount
                rows.append(MonthRow(period, name, qty, amount))
            bars.append(Bar(short, period[:4], name, value, shown))
        title = f"{i18n.text(lang, 'svc_' + service)} ({unit_label})"
        top = max((b.value for b in bars if b.value is not None), default=0)
        desc = i18n.text(
            lang, "chart_desc",
            first=i18n.period_name(periods[0], lang), last=i18n.period_name(periods[-1], lang),
            max=f"{i18n.number(top, scale, lang, 3 if metered else 2)} {unit_label}",
        )
        chart_id = re.sub(r"[^a-z0-9-]", "-", f"chart-{service}".lower())[:40]
        svg = bar_chart(
            bars, chart_id=chart_id, title=title, desc=desc,
            unit_label=unit_label, scale=scale,
            axis_text=functools.partial(_axis_number, scale=scale, lang=lang),
        )
        charts.append(ServiceChart(service, title, svg, rows))
    return charts
