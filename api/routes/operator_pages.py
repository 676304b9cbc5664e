"""Operator screens (operator auth, server-rendered, no script needed):

/ops (city-wide consumption of the last 24 hours, pipeline health, open alerts) ·
/ops/map (metering points as SVG dots, same data as the GeoJSON below) ·
/ops/customers?q= (search) · /ops/customers/{id} (the clerk's view of one customer) ·
GET /api/v1/ops/metering-points.geojson (RFC 7946 FeatureCollection).
"""

from __future__ import annotations

import math
from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from api.charts import Bar, bar_chart
from api.deps import Conn, Now, Operator, Today
from api.i18n import Formats, text
from api.ops_queries import (
    city_hourly,
    customer_file,
    metering_points_geojson,
    pipeline_health,
    search_customers,
)
from api.routes.pages import page_lang, render
from rating.calendar import LOCAL_TZ

router = APIRouter(include_in_schema=False)
SERVICE_COLORS = {"electricity": "#b45309", "water": "#1d4ed8", "waste": "#15803d",
                  "mixed": "#7c3aed", "none": "#6b7280"}
ALERT_COLOR = "#dc2626"
MAP_W, MAP_H, PAD = 800, 560, 24
UNITS = {"electricity": "kWh", "water": "m3", "waste": ""}


@router.get("/api/v1/ops/metering-points.geojson", include_in_schema=True, tags=["operator"])
def metering_points(_op: Operator, conn: Conn) -> Response:
    return JSONResponse(metering_points_geojson(conn), media_type="application/geo+json")


def _render(request: Request, name: str, context: dict[str, Any], status: int = 200
            ) -> Response:
    """The portal's renderer plus ``o(bs, en)``: operator texts written in place."""
    lang = page_lang(request)

    def o(bs: str, en: str) -> str:
        return en if lang == "en" else bs

    return render(request, name, {"o": o, **context}, status=status)


def _hourly_charts(hourly: dict[str, list[Any]], lang: str) -> list[dict[str, str]]:
    fmt = Formats(lang)
    charts = []
    for svc, hours in hourly.items():
        unit = UNITS.get(svc, "")
        bars = []
        for start, qty in hours:
            local = start.astimezone(LOCAL_TZ)
            bars.append(Bar(label=f"{local:%H}", year="", name=f"{local:%d.%m. %H}h",
                            value=qty, text=fmt.qty(qty, unit)))
        name = text(lang, f"svc_{svc}")
        svg = bar_chart(bars, chart_id=f"hourly-{svc}", title=name, desc=f"{name}: 24 h",
                        unit_label=fmt.unit(unit) if unit else "",
                        scale=1000, axis_text=lambda v, d: f"{v / 1000:.{d}f}")
        charts.append({"service": svc, "svg": svg,
                       "total": fmt.qty(sum(q for _s, q in hours), unit)})
    return charts


@router.get("/ops")
def dashboard(request: Request, _op: Operator, conn: Conn, now: Now) -> Response:
    lang = page_lang(request)
    return _render(request, "ops_dashboard.html", {
        "charts": _hourly_charts(city_hourly(conn, now), lang),
        "health": pipeline_health(conn, now), "now": now, "active": "ops"})


def map_svg(collection: dict[str, Any]) -> str:
    """An equirectangular projection fitted to the points (x scaled by cos(latitude))."""
    points = [(f["geometry"]["coordinates"], f["properties"]) for f in collection["features"]]
    if not points:
        return ""
    lons = [c[0] for c, _p in points]
    lats = [c[1] for c, _p in points]
    kx = math.cos(math.radians((min(lats) + max(lats)) / 2))
    span_x = max((max(lons) - min(lons)) * kx, 1e-6)
    span_y = max(max(lats) - min(lats), 1e-6)
    scale = min((MAP_W - 2 * PAD) / span_x, (MAP_H - 2 * PAD) / span_y)
    dots = []
    for (lon, lat), props in points:
        x = PAD + (lon - min(lons)) * kx * scale
        y = MAP_H - PAD - (lat - min(lats)) * scale
        fill = SERVICE_COLORS.get(props["service"], SERVICE_COLORS["none"])
        alerts = props["open_alerts"]
        ring = (f' stroke="{ALERT_COLOR}" stroke-width="3"' if alerts else
                ' stroke="#ffffff" stroke-width="1"')
        tip = escape(f"{props['metering_point_id']} · {props['address']} · "
                     f"{', '.join(props['services']) or '-'} · alerts {alerts}")
        dots.append(f'<circle class="mp" data-id="{escape(props["metering_point_id"])}"'
                    f' cx="{x:.1f}" cy="{y:.1f}" r="{7 if alerts else 5}" fill="{fill}"{ring}>'
                    f"<title>{tip}</title></circle>")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {MAP_W} {MAP_H}"'
            f' class="ops-map" role="img" aria-label="metering points">'
            f'<rect width="{MAP_W}" height="{MAP_H}" fill="#f8fafc"/>' + "".join(dots) + "</svg>")


@router.get("/ops/map")
def map_page(request: Request, _op: Operator, conn: Conn) -> Response:
    collection = metering_points_geojson(conn)
    return _render(request, "ops_map.html", {
        "svg": map_svg(collection), "count": len(collection["features"]),
        "colors": SERVICE_COLORS, "alert_color": ALERT_COLOR, "active": "map"})


@router.get("/ops/customers")
def customers(request: Request, _op: Operator, conn: Conn,
              q: Annotated[str, Query(max_length=100)] = "") -> Response:
    return _render(request, "ops_customers.html",
                  {"q": q, "found": search_customers(conn, q), "active": "customers"})


@router.get("/ops/customers/{customer_id}")
def customer(customer_id: str, request: Request, _op: Operator, conn: Conn,
             today: Today) -> Response:
    found = customer_file(conn, customer_id, today) if len(customer_id) <= 20 else None
    if found is None:
        return _render(request, "ops_customers.html",
                      {"q": customer_id, "found": [], "missing": True, "active": "customers"},
                      status=404)
    return _render(request, "ops_customer.html", {"c": found, "active": "customers"})
