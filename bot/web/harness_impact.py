"""What each version of a harness did: runs, success rate, attempts per ticket, cost and time
to PR, as a chart and a table, and two versions side by side (the numbers' query:
bot/web/impact_queries.py).

Route:
    GET /harnesses/{name}/impact?a=N&b=M    every version; with a and b, those two compared
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from bot.api.request import deps_of
from bot.web.charts import Chart, bar, dollars, number, percent
from bot.web.harness_kinds import HARNESSES, context, current_or_404, name_of, version_number
from bot.web.impact_queries import VersionImpact, harness_impact
from bot.web.pages import bad_request, html_endpoint, page, reader

# (label, how a version's numbers show it)
_ROWS: tuple[tuple[str, Callable[[VersionImpact], str]], ...] = (
    ("Runs", lambda v: str(v.runs)),
    ("Success rate", lambda v: percent(v.success_rate)),
    ("Attempts per ticket", lambda v: number(v.attempts_per_ticket, 2)),
    ("Cost", lambda v: dollars(v.cost_usd)),
    ("Cost per run", lambda v: dollars(v.cost_per_run)),
    ("Time to PR, p50 (hours)", lambda v: number(v.to_pr_p50, 2)),
)


def _version_param(request: Request, name: str) -> int | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise bad_request(request, f"{name}: give it at most once")
    if not values or values[0] == "":
        return None
    found = version_number(values[0])
    if found is None:
        raise bad_request(request, f"{name}: must be a version number, got {values[0][:40]!r}")
    return found


async def impact(request: Request) -> Response:
    """Every version's numbers; with `a` and `b`, a side-by-side table of those two."""
    reader(request)
    name = name_of(request, HARNESSES)
    unknown = sorted(set(request.query_params) - {"a", "b"})
    if unknown:
        raise bad_request(request, f"{unknown[0]}: unknown query parameter; expected a or b")
    a, b = _version_param(request, "a"), _version_param(request, "b")
    async with deps_of(request).sessions() as session:
        current = await current_or_404(request, session, HARNESSES, name)
        versions = await harness_impact(session, name)
    for label, asked in (("a", a), ("b", b)):
        if asked is not None and asked > current.version:
            raise bad_request(
                request, f"{label}: {name} has no version {asked} (the newest is {current.version})"
            )
    by_number = {v.version: v for v in versions}
    compared: list[tuple[str, str, str]] = []
    if a is not None and b is not None:
        left, right = _or_empty(by_number, a), _or_empty(by_number, b)
        compared = [(label, show(left), show(right)) for label, show in _ROWS]
    labels = [f"v{v.version}" for v in versions]
    chart = Chart(
        "impact",
        "Success rate and attempts per ticket by version",
        bar(
            f"{name}: success rate (%) and attempts per ticket",
            labels,
            {
                "success rate %": [
                    None if v.success_rate is None else v.success_rate * 100 for v in versions
                ],
                "attempts per ticket": [v.attempts_per_ticket for v in versions],
            },
        ),
        ("Version", *(label for label, _ in _ROWS)),
        [(f"v{v.version}", tuple(show(v) for _, show in _ROWS)) for v in versions],
    )
    values = context(
        HARNESSES,
        title=f"Harness {name}: impact",
        name=name,
        current=current,
        chart=chart,
        a=a,
        b=b,
        compared=compared,
    )
    return page(request, "harness_impact.html", values)


def _or_empty(by_number: dict[int, VersionImpact], version: int) -> VersionImpact:
    return by_number.get(version) or VersionImpact(version, 0, 0, 0, 0, 0.0, None, 0)


impact_page = html_endpoint(impact)
