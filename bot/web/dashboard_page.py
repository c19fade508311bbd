"""The metrics dashboard: what the bot got done and what it cost, as server-drawn SVG charts
with their numbers as tables (the queries and what they read: bot/web/metrics_queries.py).

Route:
    GET /metrics/dashboard?repo=&workflow=&provider=&harness=NAME[@N]&days=7|30|90
                          (or from=YYYY-MM-DD&to=YYYY-MM-DD)
`/metrics` itself is Prometheus's (bot/api).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from starlette.requests import Request
from starlette.responses import Response

from bot.api.request import deps_of
from bot.web.charts import Chart, bar, dollars, line, number, percent
from bot.web.metrics_queries import (
    Filters,
    done_tickets,
    filter_choices,
    gate_failures,
    runs_in_range,
)
from bot.web.pages import bad_request, html_endpoint, page, reader

PATH = "/metrics/dashboard"
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
        return now - timedelta(days=int(values["days"])), now
    if first is None and last is None:
        return now - timedelta(days=DEFAULT_DAYS), now
    end = _date(request, "to", last) if last else now.date()
    start = _date(request, "from", first) if first else end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise bad_request(request, f"from: {start} is after to: {end}")
    since = datetime.combine(start, time(), UTC)
    until = datetime.combine(end + timedelta(days=1), time(), UTC)
    if until - since > LONGEST:
        raise bad_request(request, f"from: the range is at most {LONGEST.days} days")
    return since, until


async def dashboard(request: Request) -> Response:
    """The charts and tables for the filters asked."""
    reader(request)
    asked = parse_filters(request, datetime.now(UTC))
    filters = asked.filters
    async with deps_of(request).sessions() as session:
        choices = await filter_choices(session)
        days, total = await done_tickets(session, filters)
        per_day, outcomes = await runs_in_range(session, filters)
        gates = await gate_failures(session, filters)
    done_labels = [day.day.isoformat() for day in days if day.day is not None]
    run_labels = [day.day.isoformat() for day in per_day]
    charts = [
        Chart(
            "done",
            "Tickets done per day",
            bar("Tickets done per day", done_labels, {"done": [d.done for d in days]}),
            ("Day", "Done"),
            [(label, (str(d.done),)) for label, d in zip(done_labels, days, strict=True)],
        ),
        Chart(
            "lead-time",
            "Lead time (hours): label → PR and label → merge",
            line(
                "Lead time (hours)",
                done_labels,
                {
                    "label → PR p50": [d.to_pr_p50 for d in days],
                    "label → PR p90": [d.to_pr_p90 for d in days],
                    "label → merge p50": [d.to_merge_p50 for d in days],
                    "label → merge p90": [d.to_merge_p90 for d in days],
                },
            ),
            ("Day merged", "→ PR p50", "→ PR p90", "→ merge p50", "→ merge p90"),
            [
                (
                    label,
                    tuple(
                        number(v)
                        for v in (d.to_pr_p50, d.to_pr_p90, d.to_merge_p50, d.to_merge_p90)
                    ),
                )
                for label, d in zip(done_labels, days, strict=True)
            ],
        ),
        Chart(
            "first-pass",
            "First-pass rate (done with no failed gate and no change request)",
            line(
                "First-pass rate (%)",
                done_labels,
                {"first pass %": [_pct(d.first_pass_rate) for d in days]},
            ),
            ("Day", "Done", "First pass", "Rate"),
            [
                (label, (str(d.done), str(d.first_pass), percent(d.first_pass_rate)))
                for label, d in zip(done_labels, days, strict=True)
            ],
        ),
        Chart(
            "gates",
            "Gate failures per hook",
            bar(
                "Gate failures per hook",
                [name for name, _ in gates],
                {"failures": [count for _, count in gates]},
            ),
            ("Hook", "Failures"),
            [(name, (str(count),)) for name, count in gates],
        ),
        Chart(
            "outcomes",
            "Runs by outcome",
            bar(
                "Runs by outcome",
                [name for name, _ in outcomes],
                {"runs": [count for _, count in outcomes]},
            ),
            ("Outcome", "Runs"),
            [(name, (str(count),)) for name, count in outcomes],
        ),
        Chart(
            "cost-per-day",
            "Cost per day (USD)",
            bar("Cost per day (USD)", run_labels, {"cost": [d.cost_usd for d in per_day]}),
            ("Day", "Runs", "Cost"),
            [
                (label, (str(d.runs), dollars(d.cost_usd)))
                for label, d in zip(run_labels, per_day, strict=True)
            ],
        ),
        Chart(
            "cost-per-ticket",
            "Cost per ticket done (USD, every run of the ticket)",
            line(
                "Cost per ticket done (USD)",
                done_labels,
                {"cost per ticket": [d.cost_per_ticket for d in days]},
            ),
            ("Day", "Done", "Cost", "Per ticket"),
            [
                (label, (str(d.done), dollars(d.cost_usd), dollars(d.cost_per_ticket)))
                for label, d in zip(done_labels, days, strict=True)
            ],
        ),
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
        "until": filters.until,
        "percent": percent,
        "dollars": dollars,
        "number": number,
    }
    return page(request, "dashboard.html", values)


def _pct(rate: float | None) -> float | None:
    return None if rate is None else rate * 100


dashboard_page = html_endpoint(dashboard)
