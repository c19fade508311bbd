"""The metrics dashboard: what the bot got done and what it cost, as server-drawn SVG charts
with their numbers as tables (the queries and what they read: bot/web/metrics_queries.py).

Routes:
    GET /metrics/dashboard?repo=&workflow=&provider=&harness=NAME[@N]&days=7|30|90
                          (or from=YYYY-MM-DD&to=YYYY-MM-DD)
    GET /metrics/dashboard/charts/{name}.svg?(the same filters)
The page's SQL and each chart's are a fixed few statements (bot/web/metrics_queries.py);
a chart is drawn (pygal) by its own image request, so the page waits for no drawing.
`/metrics` itself is Prometheus's (bot/api).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from bot.api.request import deps_of
from bot.web.charts import Chart, dollars, number, percent
from bot.web.dashboard_charts import SOURCES, done_figures, gate_figures, run_figures
from bot.web.metrics_queries import (
    Filters,
    done_tickets,
    filter_choices,
    gate_failures,
    runs_in_range,
)
from bot.web.pages import bad_request, html_endpoint, not_found, page, reader

PATH = "/metrics/dashboard"
CHARTS = f"{PATH}/charts"
RANGES = ("7", "30", "90")
DEFAULT_DAYS = 30
LONGEST = timedelta(days=366)
_PARAMS = ("repo", "workflow", "provider", "harness", "days", "from", "to")
_LIMITS = {"repo": 200, "workflow": 64, "provider": 64, "harness": 200}
_HARNESS = re.compile(r"([^@\s]+)(?:@([0-9]{1,9}))?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class Asked:
    """The filters as asked (for the form) and as the queries take them."""

    values: dict[str, str]
    filters: Filters

    @property
    def any(self) -> bool:
        return bool(self.values)


def _params(request: Request) -> dict[str, str]:
    """The query string, strictly: unknown or repeated names are refused; empty is unset
    (the filter form sends every field)."""
    params = request.query_params
    for name in params:
        if name not in _PARAMS:
            raise bad_request(
                request, f"{name}: unknown filter; expected one of: {', '.join(_PARAMS)}"
            )
        if len(params.getlist(name)) > 1:
            raise bad_request(request, f"{name}: give it at most once")
    return {name: value for name, value in params.items() if value != ""}


def _date(request: Request, name: str, value: str) -> date:
    try:
        if not _DATE.fullmatch(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise bad_request(
            request, f"{name}: expected a date as YYYY-MM-DD, got {value[:40]!r}"
        ) from None


def parse_filters(request: Request, now: datetime) -> Asked:
    """The request's filters; a bad one is a 400 page naming it."""
    values = _params(request)
    for name, limit in _LIMITS.items():
        if len(values.get(name, "")) > limit:
            raise bad_request(request, f"{name}: at most {limit} characters")
    harness = version = None
    if "harness" in values:
        found = _HARNESS.fullmatch(values["harness"])
        if found is None:
            raise bad_request(request, "harness: expected NAME or NAME@VERSION, e.g. coder@3")
        harness = found.group(1)
        version = int(found.group(2)) if found.group(2) else None
    since, until = _range(request, values, now)
    filters = Filters(
        since=since,
        until=until,
        repo=values.get("repo"),
        workflow=values.get("workflow"),
        provider=values.get("provider"),
        harness=harness,
        harness_version=version,
    )
    return Asked(values, filters)


def _range(request: Request, values: dict[str, str], now: datetime) -> tuple[datetime, datetime]:
    first, last = values.get("from"), values.get("to")
    if "days" in values:
        if first or last:
            raise bad_request(request, "days: give either days or from/to, not both")
        if values["days"] not in RANGES:
            raise bad_request(
                request,
                f"days: unknown value {values['days'][:40]!r}; expected one of: "
                + ", ".join(RANGES),
            )
        return _last_days(now, int(values["days"]))
    if first is None and last is None:
        return _last_days(now, DEFAULT_DAYS)
    end = _date(request, "to", last) if last else now.date()
    start = _date(request, "from", first) if first else end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise bad_request(request, f"from: {start} is after to: {end}")
    since = datetime.combine(start, time(), UTC)
    until = datetime.combine(end + timedelta(days=1), time(), UTC)
    if until - since > LONGEST:
        raise bad_request(request, f"from: the range is at most {LONGEST.days} days")
    return since, until


def _last_days(now: datetime, days: int) -> tuple[datetime, datetime]:
    """The last `days` whole UTC days, today included (the rollups count by day)."""
    tomorrow = datetime.combine(now.date() + timedelta(days=1), time(), UTC)
    return tomorrow - timedelta(days=days), tomorrow


async def dashboard(request: Request) -> Response:
    """The tables for the filters asked, each under its chart's image."""
    reader(request)
    asked = parse_filters(request, datetime.now(UTC))
    filters = asked.filters
    async with deps_of(request).sessions() as session:
        choices = await filter_choices(session)
        days, total = await done_tickets(session, filters)
        per_day, outcomes = await runs_in_range(session, filters)
        gates = await gate_failures(session, filters)
    figures = {
        figure.key: figure
        for figure in (
            *done_figures(days),
            *run_figures(per_day, outcomes),
            *gate_figures(gates),
        )
    }
    query = f"?{urlencode(asked.values)}" if asked.values else ""
    charts = [
        Chart(key, figure.title, f"{CHARTS}/{key}.svg{query}", figure.columns, figure.rows)
        for key in SOURCES
        for figure in (figures[key],)
    ]
    values = {
        "title": "Metrics",
        "asked": asked,
        "choices": choices,
        "ranges": RANGES,
        "total": total,
        "runs": sum(d.runs for d in per_day),
        "cost": sum(d.cost_usd for d in per_day),
        "charts": charts,
        "since": filters.since,
        "last_day": filters.until - timedelta(days=1),
        "percent": percent,
        "dollars": dollars,
        "number": number,
    }
    return page(request, "dashboard.html", values)


async def dashboard_chart(request: Request) -> Response:
    """One chart's SVG for the filters asked: its one query, then pygal."""
    reader(request)
    name = request.path_params["name"]
    source = SOURCES.get(name)
    if source is None:
        raise not_found(request, f"The dashboard has no chart {name[:40]!r}.")
    asked = parse_filters(request, datetime.now(UTC))
    async with deps_of(request).sessions() as session:
        figures = await source(session, asked.filters)
    (figure,) = (figure for figure in figures if figure.key == name)
    return Response(
        figure.draw(),
        media_type="image/svg+xml",
        headers={
            # Opened on its own, the image may style itself and do nothing else.
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff",
        },
    )


dashboard_page = html_endpoint(dashboard)
chart_image = html_endpoint(dashboard_chart)
