"""SVG bar charts and the portal's number formats (pure)."""

from __future__ import annotations

import re
from decimal import Decimal
from xml.etree import ElementTree

import pytest

from api import i18n
from api.charts import (
    BOTTOM,
    HEIGHT,
    TOP,
    Bar,
    bar_chart,
    label_every,
    months_ending,
    nice_step,
    service_charts,
    tick_decimals,
)
from billing.accounts import ServiceMonth

NS = "{http://www.w3.org/2000/svg}"
BOTTOM_Y = HEIGHT - BOTTOM  # base line of the plot (HEIGHT - BOTTOM)


def chart(bars: list[Bar], **kw: object) -> ElementTree.Element:
    args: dict = {"chart_id": "chart-x", "title": "Struja (kWh)", "desc": "opis",
                  "unit_label": "kWh", "scale": 1000,
                  "axis_text": lambda v, d: i18n.number(v, 1000, "bs", d)}
    args.update(kw)
    return ElementTree.fromstring(bar_chart(bars, **args))


def bar(value: int | None, label: str = "mar", name: str = "mart 2026") -> Bar:
    return Bar(label, "2026", name, value, "x")


def rects(svg: ElementTree.Element) -> list[ElementTree.Element]:
    return svg.findall(f"{NS}rect")


def test_nice_step() -> None:
    assert nice_step(0) == 1
    assert nice_step(-5) == 1
    assert nice_step(4) == 1
    assert nice_step(5) == 2
    assert nice_step(9) == 5  # 4 steps of 2 are 8 < 9
    assert nice_step(412_345) == 200_000  # three ticks: 0 … 600 kWh
    assert nice_step(400_000) == 100_000
    assert nice_step(400_001) == 200_000
    assert nice_step(1053, ticks=2) == 1000
    with pytest.raises(ValueError, match="ticks"):
        nice_step(10, ticks=0)


def test_tick_decimals_and_labels() -> None:
    assert tick_decimals(200_000, 1000) == 0
    assert tick_decimals(500, 1000) == 1
    assert tick_decimals(20, 1000) == 2
    assert tick_decimals(5, 100) == 2
    assert tick_decimals(1, 1) == 0
    assert label_every(24, 8) == 3
    assert label_every(2, 8) == 1
    assert label_every(5, 0) == 5


def test_bars_are_proportional_and_carry_their_value() -> None:
    svg = chart([Bar("feb", "2026", "februar 2026", 200_000, "200 kWh"),
                 Bar("mar", "2026", "mart 2026", 400_000, "400 kWh")])
    first, second = rects(svg)
    h1, h2 = float(first.get("height", 0)), float(second.get("height", 0))
    assert h2 == pytest.approx(2 * h1)
    assert float(second.get("y", 0)) + h2 == pytest.approx(BOTTOM_Y)
    assert float(second.get("y", 0)) == pytest.approx(TOP)  # 400 is the top tick exactly
    assert [r.findtext(f"{NS}title") for r in (first, second)] == [
        "februar 2026: 200 kWh", "mart 2026: 400 kWh"]
    assert first.get("fill") != second.get("fill")  # the newest month stands out
    ticks = [t.text for t in svg.iter(f"{NS}text") if t.get("class") == "tick"]
    assert ticks == ["0", "100", "200", "300", "400"]


def test_accessible_name_and_escaping() -> None:
    svg_text = bar_chart(
        [Bar("<b>", "2026", 'a "quoted" & <tag>', 5, "<5>")], chart_id="chart-water",
        title="Voda & <kanal>", desc="Opis <desc>", unit_label="m³", scale=1000,
        axis_text=lambda v, d: str(v))
    svg = ElementTree.fromstring(svg_text)  # well-formed despite the markup in the data
    assert svg.get("role") == "img"
    assert svg.get("aria-labelledby") == "chart-water-title chart-water-desc"
    assert svg.findtext(f"{NS}title") == "Voda & <kanal>"
    assert svg.findtext(f"{NS}desc") == "Opis <desc>"
    assert "<tag>" not in svg_text and "&lt;tag&gt;" in svg_text
    assert "style" not in svg_text and "<script" not in svg_text


def test_missing_zero_and_negative_values() -> None:
    svg = chart([bar(None), bar(0), bar(-500), bar(1000)])
    heights = [float(r.get("height", 0)) for r in rects(svg)]
    assert len(heights) == 3  # no bar for a month without data
    assert heights[:2] == [0, 0]  # negative values sit on the base line
    assert heights[2] > 0
    empty = chart([])
    assert rects(empty) == []
    ticks = [t.text for t in empty.iter(f"{NS}text") if t.get("class") == "tick"]
    assert ticks == ["0,0", "0,5", "1,0"]  # the axis reaches at least one whole unit
    nothing = chart([bar(None), bar(None)])
    assert rects(nothing) == []


def test_labels_leave_room_and_always_name_the_newest_month() -> None:
    bars = [Bar(f"m{i}", "2025" if i < 12 else "2026", f"month {i}", i * 1000, "x")
            for i in range(24)]
    svg = chart(bars)
    months = [t.text for t in svg.iter(f"{NS}text") if t.get("class") == "month"]
    years = [t.text for t in svg.iter(f"{NS}text") if t.get("class") == "year"]
    assert months[-1] == "m23"
    assert len(months) <= 9
    assert months == [f"m{i}" for i in range(2, 24, 3)]
    assert years == ["2025", "2026"]


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="chart_id"):
        chart([bar(1)], chart_id='x" onload="alert(1)')
    with pytest.raises(ValueError, match="scale"):
        chart([bar(1)], scale=0)


def test_service_charts_fill_24_months_and_chart_waste_by_amount() -> None:
    series = [
        ("2026-02", "electricity", ServiceMonth(300_000, "kWh", 5025)),
        ("2026-02", "waste", ServiceMonth(1000, "month", 1053)),
        ("2026-03", "electricity", ServiceMonth(412_345, "kWh", 4840)),
        ("2024-03", "electricity", ServiceMonth(1, "kWh", 1)),  # outside the window
    ]
    charts = service_charts(series, "2026-03", 24, "bs")
    assert [c.service for c in charts] == ["electricity", "waste"]
    elec, waste = charts
    assert elec.title == "Električna energija (kWh)"
    assert len(elec.rows) == 24
    assert (elec.rows[0].period, elec.rows[-1].period) == ("2024-04", "2026-03")
    assert elec.rows[-1].quantity == "412,345 kWh" and elec.rows[-1].amount == "48,40 KM"
    assert elec.rows[0].quantity == "–"
    assert len(re.findall("<rect", elec.svg)) == 2
    assert "mart 2026: 412,345 kWh" in elec.svg
    assert "najveća vrijednost 412,345 kWh" in elec.svg
    assert waste.title == "Odvoz smeća (KM)"
    assert "februar 2026: 10,53 KM" in waste.svg
    assert waste.rows[-1].amount == "–"  # no waste invoiced in March
    english = service_charts(series, "2026-03", 24, "en")[0]
    assert "March 2026: 412.345 kWh" in english.svg and english.title == "Electricity (kWh)"
    assert months_ending("2026-02", 3) == ["2025-12", "2026-01", "2026-02"]


def test_number_formats() -> None:
    assert i18n.money(123_456, "bs") == "1.234,56 KM"
    assert i18n.money(123_456_789, "en") == "1,234,567.89 KM"
    assert i18n.money(-5, "bs") == "-0,05 KM"
    assert i18n.number(412_345, 1000, "bs", 1) == "412,3"
    assert i18n.number(412_350, 1000, "bs", 1) == "412,4"  # half up
    assert i18n.number(-412_350, 1000, "en", 0) == "-412"
    assert i18n.number(-4, 1000, "bs", 2) == "0,00"  # no "-0,00"
    assert i18n.percent(-3.7, "bs") == "−3,7 %"
    assert i18n.percent(16.2, "en") == "+16.2%"
    assert i18n.percent(0.0, "bs") == "±0,0 %"
    assert i18n.percent(None, "bs") == "–"
    f = i18n.Formats("bs")
    assert f.qty(300_000, "kWh") == "300 kWh"
    assert f.qty(1_000_000, "kWh") == "1.000 kWh"
    assert f.qty(12_500, "m3") == "12,5 m³"
    assert f.qty(1000, "month") == "1 mj."
    assert f.price(1_068_376) == "1,068376"
    assert f.rate(Decimal("17.00")) == "17" and f.rate(Decimal("8.50")) == "8,5"
    assert i18n.pick_lang("en", "bs") == "en"
    assert i18n.pick_lang("de", "en") == "en"
    assert i18n.pick_lang(None, "xx") == "bs"
    assert i18n.text("en", "invoice_title", number="2026-1") == "Invoice 2026-1"
    assert i18n.text("bs", "no-such-key") == "no-such-key"
    with pytest.raises(ValueError):
        i18n.number(1, 0, "bs", 1)
