"""Operator screens (operator auth, server-rendered, no script needed):

/ops (city-wide consumption of the last 24 hours, pipeline health, open alerts) ·
/ops/map (metering points as SVG dots, same data as the GeoJSON below) ·
/ops/customers?q= (search) · /ops/customers/{id} (the clerk's view of one customer) ·
/ops/alerts (active meter alerts; a clerk acknowledges one with a form) ·
GET /api/v1/ops/metering-points.geojson (RFC 7946 FeatureCollection).

A browser without an operator session is sent to ``/ops/prijava`` (``api.deps.page_operator``);
API clients (bearer token) get a 401 as before. A browser whose operator lacks the role of
an ``/ops`` page or form gets a 403 page with a way back (`OpsRoute`); API clients and the
JSON routes keep the JSON 403.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine, Mapping
from html import escape
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from api.charts import Bar, bar_chart
from api.deps import Conn, MissingRole, Now, Operator, OpsPage, Today
from api.i18n import Formats, text
from api.operators import OperatorIdentity, ops_csrf, required_roles
from api.ops_queries import (
    city_hourly,
    customer_file,
    metering_points_geojson,
    pipeline_health,
    search_customers,
)
from api.routes import alerts as alert_calls
from api.routes.pages import page_lang, redirect, render
from rating.calendar import LOCAL_TZ


class OpsRoute(APIRoute):
    """A route whose `MissingRole` is answered to a browser (``Accept: text/html``) with the
    403 page when its path is an ``/ops`` page; every other answer is unchanged."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not self.path.startswith("/ops"):
            return handler

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except MissingRole as exc:
                if "text/html" not in request.headers.get("accept", ""):
                    raise
                return forbidden_page(request, exc.needed)

        return route


router = APIRouter(include_in_schema=False, route_class=OpsRoute)
SERVICE_COLORS = {"electricity": "#b45309", "water": "#1d4ed8", "waste": "#15803d",
                  "mixed": "#7c3aed", "none": "#6b7280"}
ALERT_COLOR = "#dc2626"
MAP_W, MAP_H, PAD = 800, 560, 24
UNITS = {"electricity": "kWh", "water": "m3", "waste": ""}


@router.get("/api/v1/ops/metering-points.geojson", include_in_schema=True, tags=["operator"])
def metering_points(_op: Operator, conn: Conn) -> Response:
    return JSONResponse(metering_points_geojson(conn), media_type="application/geo+json")


def ops_render(request: Request, name: str, context: dict[str, Any], status: int = 200,
               who: OperatorIdentity | None = None,
               keep: Mapping[str, str] | None = None) -> Response:
    """The portal's renderer plus ``o(bs, en)`` (operator texts written in place), the
    operator's name, what the menu may show, the logout form's CSRF token for a browser
    session, and the link to the other language: it keeps the query (`keep` when given,
    else the request's own) but ``lang``."""
    lang = page_lang(request)

    def o(bs: str, en: str) -> str:
        return en if lang == "en" else bs

    kept = list(keep.items()) if keep is not None else [
        (k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    other = "bs" if lang == "en" else "en"
    return render(request, name, {
        "o": o, "operator": who.username if who else None,
        "may_alerts": bool(who and who.may(required_roles("GET", "/ops/alerts"))),
        "ops_csrf": ops_csrf(who.token) if who and who.via == "cookie" and who.token else None,
        "other_lang_href": "?" + urlencode([*kept, ("lang", other)]),
        **context}, status=status)


def forbidden_page(request: Request, needed: frozenset[str]) -> Response:
    """403 in the page's language: which roles would do, and the way back to ``/ops``."""
    context: dict[str, Any] = {"needed": sorted(needed)}
    if request.method != "GET":  # a refused form: its address shows no page in a language
        other = "bs" if page_lang(request) == "en" else "en"
        context["other_lang_href"] = f"/ops?lang={other}"
    return ops_render(request, "ops_forbidden.html", context, status=403)


def to_login(request: Request) -> Response:
    """A browser without an operator session goes to the login, and back here after."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return redirect(f"/ops/prijava?next={quote(target, safe='/')}")


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
def dashboard(request: Request, who: OpsPage, conn: Conn, now: Now) -> Response:
    if who is None:
        return to_login(request)
    lang = page_lang(request)
    return ops_render(request, "ops_dashboard.html", {
        "charts": _hourly_charts(city_hourly(conn, now), lang),
        "health": pipeline_health(conn, now), "now": now, "active": "ops"}, who=who)


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
def map_page(request: Request, who: OpsPage, conn: Conn) -> Response:
    if who is None:
        return to_login(request)
    collection = metering_points_geojson(conn)
    return ops_render(request, "ops_map.html", {
        "svg": map_svg(collection), "count": len(collection["features"]),
        "colors": SERVICE_COLORS, "alert_color": ALERT_COLOR, "active": "map"}, who=who)


@router.get("/ops/customers")
def customers(request: Request, who: OpsPage, conn: Conn,
              q: Annotated[str, Query(max_length=100)] = "") -> Response:
    if who is None:
        return to_login(request)
    return ops_render(request, "ops_customers.html",
                      {"q": q, "found": search_customers(conn, q), "active": "customers"},
                      who=who)


@router.get("/ops/customers/{customer_id}")
def customer(customer_id: str, request: Request, who: OpsPage, conn: Conn,
             today: Today) -> Response:
    if who is None:
        return to_login(request)
    found = customer_file(conn, customer_id, today) if len(customer_id) <= 20 else None
    if found is None:
        return ops_render(request, "ops_customers.html",
                          {"q": customer_id, "found": [], "missing": True,
                           "active": "customers"}, status=404, who=who)
    return ops_render(request, "ops_customer.html", {"c": found, "active": "customers"},
                      who=who)


ALERTS_SHOWN = 200


def active_alerts(conn: Conn) -> list[dict[str, Any]]:
    """Open and acknowledged alerts, newest first."""
    rows = conn.execute(
        """SELECT alert_id, meter_id, metering_point_id, register, kind, state, opened_at,
                  last_seen_at, acknowledged_by
           FROM meter_alerts WHERE state <> 'closed'
           ORDER BY opened_at DESC, alert_id DESC LIMIT %s""", (ALERTS_SHOWN,)).fetchall()
    names = ("alert_id", "meter_id", "metering_point_id", "register", "kind", "state",
             "opened_at", "last_seen_at", "acknowledged_by")
    return [dict(zip(names, r, strict=True)) for r in rows]


@router.get("/ops/alerts")
def alerts_page(request: Request, who: OpsPage, conn: Conn) -> Response:
    if who is None:
        return to_login(request)
    done = request.query_params.get("ok")
    return ops_render(request, "ops_alerts.html", {
        "alerts": active_alerts(conn), "done": done if done and done.isdigit() else None,
        "active": "alerts"}, who=who)


@router.post("/ops/alerts/{alert_id}/potvrdi")
def acknowledge_alert(alert_id: int, who: Operator, conn: Conn, now: Now) -> Response:
    """The form of the alerts page (CSRF checked and audited by ``Operator``)."""
    alert_calls.acknowledge(alert_id, who, conn, now,
                            alert_calls.AcknowledgeRequest(operator=who.username))
    return redirect(f"/ops/alerts?ok={alert_id}")
