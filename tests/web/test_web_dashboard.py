"""The metrics dashboard and a harness's impact page: tickets, runs and their activity log
seeded with known outcomes, costs and times; the tables under the charts carry the numbers,
the charts are SVG holding the series, filters narrow, bad filters are a 400 naming the
filter, hostile names stay text, and the page costs the same queries however full it is."""

from __future__ import annotations

import base64
import html as html_lib
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from bot.deps import Deps
from bot.engine.results import mark_over
from bot.tables.stats import count_run
from bot.tables.workflow import Activity, Run, RunState, TicketState
from bot.web.dashboard_charts import SOURCES
from harness_store.db import transaction
from harness_store.store import publish_harness
from runner.contract import HookResult, RunResult, RunStatus
from tests.support.board import add_repo, add_ticket

HOSTILE_REPO = 'evil/<script>alert("repo")</script>'
TODAY = datetime.combine(datetime.now(UTC).date(), time(), UTC)
# Two days a few days back, so the default range (the last 30 days) holds both.
D1 = TODAY - timedelta(days=3) + timedelta(hours=1)
D2 = TODAY - timedelta(days=2) + timedelta(hours=1)
H = timedelta(hours=1)


def a_hook(name: str, exit_code: int) -> dict[str, Any]:
    return {
        "phase": "on_complete",
        "name": name,
        "on_failure": "block",
        "exit_code": exit_code,
        "duration_s": 1.0,
    }


async def a_run(
    deps: Deps,
    run_id: str,
    ticket_id: int,
    queued_at: datetime,
    *,
    status: RunStatus | None,
    cost: float | None,
    harness_version_id: int | None,
    provider: str = "anthropic",
    workflow: str = "coder",
    hooks: tuple[dict[str, Any], ...] = (),
) -> None:
    """A run queued at `queued_at`; with a `status`, its result taken as the engine takes
    one (which counts it in the dashboard's rollups)."""
    async with transaction(deps.sessions) as session:
        session.add(
            Run(
                id=run_id,
                ticket_id=ticket_id,
                workflow=workflow,
                attempt=1,
                machine="m1",
                state=RunState.RUNNING,
                spec={"_provider": provider},
                harness_version_id=harness_version_id,
                queued_at=queued_at,
                started_at=queued_at,
            )
        )
    if status is None:
        return
    result = RunResult(
        run_id=run_id,
        status=status,
        hook_results=tuple(HookResult.model_validate(hook) for hook in hooks),
        cost_usd=cost,
        started_at=queued_at,
        finished_at=queued_at + H / 2,
    )
    async with transaction(deps.sessions) as session:
        over = await mark_over(session, run_id, result)
        assert over is not None
        await count_run(session, over)


async def moves(deps: Deps, ticket_id: int, *steps: tuple[datetime, str, str, str | None]) -> None:
    """The ticket's state changes: (when, old, new, run id), logged, and their first moments
    stamped on its state row as the engine does."""
    async with transaction(deps.sessions) as session:
        row = await session.get(TicketState, ticket_id)
        assert row is not None
        for at, old, new, run_id in steps:
            for name, entered in (
                ("labelled_at", new != "backlog"),
                ("pr_at", new == "in_review"),
                ("done_at", new == "done"),
            ):
                if entered and getattr(row, name) is None:
                    setattr(row, name, at)
            session.add(
                Activity(
                    ticket_id=ticket_id,
                    run_id=run_id,
                    kind="state",
                    message=f"{old} → {new}",
                    data={"old": old, "new": new},
                    at=at,
                )
            )


async def seed(deps: Deps) -> None:
    """A: first pass (PR after 2 h, merged after 5 h, $1). B: a review sent it back and a
    run failed the `tests` gate (PR after 4 h, merged after 10 h, $2). C, in a hostile
    repository, on another provider and workflow (1 h, 3 h, $2). D: still running. E: done
    two months ago ($4)."""
    await add_repo(deps, 1, "acme/api")
    await add_repo(deps, 2, HOSTILE_REPO)
    async with transaction(deps.sessions) as session:
        v1 = (await publish_harness(session, "coder", "One.", author="ann")).id
        v2 = (await publish_harness(session, "coder", "Two.", author="ann")).id
    ok, failed = RunStatus.SUCCEEDED, RunStatus.GATES_FAILED
    a = await add_ticket(deps, "acme/api#1", repo_id=1, state="done")
    await a_run(deps, "r-a1", a, D1, status=ok, cost=1.0, harness_version_id=v1)
    await moves(
        deps,
        a,
        (D1, "new", "todo", None),
        (D1 + 2 * H, "in_progress", "in_review", "r-a1"),
        (D1 + 5 * H, "merging", "done", None),
    )
    b = await add_ticket(deps, "acme/api#2", repo_id=1, state="done")
    await a_run(deps, "r-b1", b, D1, status=ok, cost=0.5, harness_version_id=v1)
    await a_run(
        deps,
        "r-b2",
        b,
        D1 + 5 * H,
        status=failed,
        cost=0.5,
        harness_version_id=v2,
        hooks=(a_hook("lint", 0), a_hook("tests", 1)),
    )
    await a_run(deps, "r-b3", b, D1 + 6 * H, status=ok, cost=1.0, harness_version_id=v2)
    await moves(
        deps,
        b,
        (D1, "new", "todo", None),
        (D1 + 4 * H, "in_progress", "in_review", "r-b1"),
        (D1 + 5 * H, "in_review", "todo", None),
        (D1 + 8 * H, "in_progress", "in_review", "r-b3"),
        (D1 + 10 * H, "merging", "done", None),
    )
    c = await add_ticket(deps, "evil#3", repo_id=2, state="done")
    await a_run(
        deps,
        "r-c1",
        c,
        D2,
        status=ok,
        cost=2.0,
        harness_version_id=v2,
        provider="openai",
        workflow="docs",
    )
    await moves(
        deps,
        c,
        (D2, "new", "todo", None),
        (D2 + H, "in_progress", "in_review", "r-c1"),
        (D2 + 3 * H, "merging", "done", None),
    )
    d = await add_ticket(deps, "acme/api#4", repo_id=1, state="in_progress")
    await a_run(deps, "r-d1", d, TODAY - 2 * H, status=None, cost=None, harness_version_id=v2)
    await moves(deps, d, (TODAY - 2 * H, "new", "todo", None))
    old = TODAY - timedelta(days=60)
    e = await add_ticket(deps, "acme/api#5", repo_id=1, state="done")
    await a_run(deps, "r-e1", e, old, status=ok, cost=4.0, harness_version_id=None)
    await moves(
        deps,
        e,
        (old, "new", "todo", None),
        (old + H, "in_progress", "in_review", "r-e1"),
        (old + 2 * H, "merging", "done", None),
    )


def table(html: str, key: str) -> list[list[str]]:
    """The rows of the table under chart `key`, as text."""
    found = re.search(rf'<table class="numbers" data-chart="{key}">(.*?)</table>', html, re.S)
    assert found, f"no table for {key}"
    body = found.group(1).split("<tbody>", 1)[1]
    return [
        [html_lib.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in cells]
        for cells in (
            re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
        )
    ]


def totals(html: str) -> dict[str, str]:
    found = re.search(r'<table class="props" id="totals">(.*?)</table>', html, re.S)
    assert found
    pairs = re.findall(r'<th scope="row">(.*?)</th><td>(.*?)</td>', found.group(1))
    return {html_lib.unescape(k): html_lib.unescape(v) for k, v in pairs}


def svgs(html: str) -> dict[str, ET.Element]:
    """Each chart's SVG, parsed, by the chart's key."""
    charts = {}
    for key, uri in re.findall(
        r'<figure class="chart" id="chart-([\w-]+)".*?<img src="([^"]+)"', html, re.S
    ):
        prefix = "data:image/svg+xml;charset=utf-8;base64,"
        assert uri.startswith(prefix)
        svg = base64.b64decode(uri[len(prefix) :])
        charts[key] = ET.fromstring(svg)  # noqa: S314 -- our own page's SVG, not untrusted
    return charts


def svg_text(svg: ET.Element) -> str:
    return " ".join("".join(element.itertext()) for element in svg.iter())


D1_DAY, D2_DAY = D1.date().isoformat(), D2.date().isoformat()


async def test_the_dashboard_shows_the_numbers_under_each_chart(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    await seed(deps)
    page = await client.get("/metrics/dashboard")
    assert page.status_code == 200
    html = page.text
    assert table(html, "done") == [[D1_DAY, "2"], [D2_DAY, "1"]]
    # Label → PR: A 2 h, B 4 h on D1; C 1 h. Label → merge: 5 h, 10 h; 3 h.
    assert table(html, "lead-time") == [
        [D1_DAY, "3.0", "3.8", "7.5", "9.5"],
        [D2_DAY, "1.0", "1.0", "3.0", "3.0"],
    ]
    assert table(html, "first-pass") == [[D1_DAY, "2", "1", "50 %"], [D2_DAY, "1", "1", "100 %"]]
    assert table(html, "gates") == [["tests", "1"]]
    assert table(html, "outcomes") == [["succeeded", "4"], ["gates_failed", "1"], ["running", "1"]]
    cost_days = table(html, "cost-per-day")
    assert cost_days[:2] == [[D1_DAY, "4", "$3.00"], [D2_DAY, "1", "$2.00"]]
    assert [row[1:] for row in cost_days[2:]] == [["1", "$0.00"]]  # D, still running
    assert table(html, "cost-per-ticket") == [
        [D1_DAY, "2", "$3.00", "$1.50"],
        [D2_DAY, "1", "$2.00", "$2.00"],
    ]
    assert totals(html) == {
        "Tickets done": "3",
        "First-pass rate": "67 %",
        "Label → PR, p50 / p90 (hours)": "2.0 / 3.6",
        "Label → merge, p50 / p90 (hours)": "5.0 / 9.0",
        "Cost per ticket done": "$1.67",
        "Runs": "6",
        "Cost of the runs": "$5.00",
    }
    assert '<a href="/metrics/dashboard">Metrics</a>' in html  # in the main navigation


async def images(client: httpx.AsyncClient, html: str) -> dict[str, ET.Element]:
    """Each chart's image, fetched from the URL the page gives it and parsed, by key."""
    charts = {}
    for key, src in re.findall(
        r'<figure class="chart" id="chart-([\w-]+)".*?<img src="([^"]+)"', html, re.S
    ):
        image = await client.get(html_lib.unescape(src))
        assert image.status_code == 200, image.text
        assert image.headers["content-type"] == "image/svg+xml"
        assert "default-src 'none'" in image.headers["content-security-policy"]
        charts[key] = ET.fromstring(image.content)  # noqa: S314 -- our own chart's SVG
    return charts


async def test_the_charts_are_svg_images_holding_their_series(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    await seed(deps)
    html = (await client.get("/metrics/dashboard")).text
    charts = await images(client, html)
    assert list(charts) == [
        "done",
        "lead-time",
        "first-pass",
        "gates",
        "outcomes",
        "cost-per-day",
        "cost-per-ticket",
    ]
    for svg in charts.values():
        assert svg.tag == "{http://www.w3.org/2000/svg}svg"
        assert not any(e.tag.endswith("script") for e in svg.iter())  # works without JS
    lead = svg_text(charts["lead-time"])
    for series in ("label → PR p50", "label → PR p90", "label → merge p50", "label → merge p90"):
        assert series in lead
    assert "tests" in svg_text(charts["gates"])
    assert "gates_failed" in svg_text(charts["outcomes"])
    assert "<script" not in html.replace("<script src=", "")  # no inline script on the page


async def test_a_chart_takes_the_pages_filters(client: httpx.AsyncClient, deps: Deps) -> None:
    await seed(deps)
    html = (await client.get("/metrics/dashboard?workflow=docs&days=7")).text
    assert '<img src="/metrics/dashboard/charts/outcomes.svg?workflow=docs&amp;days=7"' in html
    outcomes = svg_text((await images(client, html))["outcomes"])
    assert "succeeded" in outcomes
    assert "gates_failed" not in outcomes  # B's, on the coder workflow
    assert (await client.get("/metrics/dashboard/charts/nothing.svg")).status_code == 404
    bad = await client.get("/metrics/dashboard/charts/done.svg?days=5")
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("query", "done", "outcomes"),
    [
        ("repo=acme/api", 2, [["succeeded", "3"], ["gates_failed", "1"], ["running", "1"]]),
        ("workflow=docs", 1, [["succeeded", "1"]]),
        ("provider=openai", 1, [["succeeded", "1"]]),
        # A ticket counts when one of its runs matches: A and B had runs on version 1.
        ("harness=coder@1", 2, [["succeeded", "2"]]),
        ("harness=coder", 3, [["succeeded", "4"], ["gates_failed", "1"], ["running", "1"]]),
        ("days=7", 3, [["succeeded", "4"], ["gates_failed", "1"], ["running", "1"]]),
        ("days=90", 4, [["succeeded", "5"], ["gates_failed", "1"], ["running", "1"]]),
        (f"from={D2_DAY}&to={D2_DAY}", 1, [["succeeded", "1"]]),
        (f"from={D1_DAY}&to={D1_DAY}&repo=", 2, [["succeeded", "3"], ["gates_failed", "1"]]),
    ],
)
async def test_filters_narrow_the_numbers(
    client: httpx.AsyncClient, deps: Deps, query: str, done: int, outcomes: list[list[str]]
) -> None:
    await seed(deps)
    page = await client.get(f"/metrics/dashboard?{query}")
    assert page.status_code == 200, page.text
    assert totals(page.text)["Tickets done"] == str(done)
    assert table(page.text, "outcomes") == outcomes


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("days=5", "days: unknown value &#39;5&#39;; expected one of: 7, 30, 90"),
        ("from=2026-13-01", "from: expected a date as YYYY-MM-DD, got &#39;2026-13-01&#39;"),
        ("to=yesterday", "to: expected a date as YYYY-MM-DD"),
        ("from=2026-03-02&to=2026-03-01", "from: 2026-03-02 is after to: 2026-03-01"),
        ("from=2024-01-01&to=2026-01-01", "from: the range is at most 366 days"),
        ("days=7&from=2026-03-01", "days: give either days or from/to, not both"),
        ("harness=coder@x", "harness: expected NAME or NAME@VERSION"),
        ("repo=" + "a" * 201, "repo: at most 200 characters"),
        ("repo=a&repo=b", "repo: give it at most once"),
        ("state=done", "state: unknown filter"),
    ],
)
async def test_a_bad_filter_is_a_400_naming_it(
    client: httpx.AsyncClient, query: str, message: str
) -> None:
    page = await client.get(f"/metrics/dashboard?{query}")
    assert page.status_code == 400
    assert message in page.text


async def test_hostile_names_stay_text(client: httpx.AsyncClient, deps: Deps) -> None:
    await seed(deps)
    html = (await client.get("/metrics/dashboard")).text
    assert "<script>alert" not in html
    assert "evil/&lt;script&gt;alert(&#34;repo&#34;)&lt;/script&gt;" in html  # an option
    asked = await client.get("/metrics/dashboard", params={"repo": HOSTILE_REPO})
    assert asked.status_code == 200
    assert "<script>alert" not in asked.text
    assert totals(asked.text)["Tickets done"] == "1"
    bad = await client.get("/metrics/dashboard", params={"from": "<script>x</script>"})
    assert bad.status_code == 400
    assert "<script>x" not in bad.text


async def test_lead_time_is_read_from_the_moments_on_the_state_row(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    """A ticket whose moments the migration or the engine stored counts with no activity
    rows; one reopened and done again counts on the day of its first done."""
    await add_repo(deps, 1, "acme/api")
    first = await add_ticket(
        deps, "acme/api#1", repo_id=1, state="done", labelled_at=D1, pr_at=D1 + H, done_at=D2
    )
    await a_run(
        deps, "r-1", first, D1, status=RunStatus.SUCCEEDED, cost=1.0, harness_version_id=None
    )
    await moves(deps, first, (D2 + H, "done", "todo", None), (D2 + 2 * H, "merging", "done", None))
    html = (await client.get("/metrics/dashboard")).text
    assert table(html, "done") == [[D2_DAY, "1"]]
    assert table(html, "lead-time") == [[D2_DAY, "1.0", "1.0", "24.0", "24.0"]]
    assert table(html, "first-pass") == [[D2_DAY, "1", "1", "100 %"]]


@contextmanager
def counting(deps: Deps) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(deps.engine.sync_engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(deps.engine.sync_engine, "before_cursor_execute", count)


async def test_the_page_costs_the_same_queries_however_full(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    paths = ["/metrics/dashboard", *(f"/metrics/dashboard/charts/{key}.svg" for key in SOURCES)]
    empty, full = [], []
    for path in paths:
        with counting(deps) as statements:
            assert (await client.get(f"{path}?workflow=coder")).status_code == 200
        empty.append(len(statements))
    await seed(deps)
    for path in paths:
        with counting(deps) as statements:
            assert (await client.get(f"{path}?workflow=coder")).status_code == 200
        full.append(len(statements))
    assert full == empty
    assert full[0] <= 6  # the page: filter choices, done tickets, runs, gate failures
    assert max(full[1:]) <= 2  # a chart: its one query


# -- a harness's impact ----------------------------------------------------------------------


async def test_the_impact_page_shows_each_version_and_compares_two(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    await seed(deps)
    versions = await client.get("/harnesses/coder")
    assert 'href="/harnesses/coder/impact"' in versions.text

    page = await client.get("/harnesses/coder/impact")
    assert page.status_code == 200
    # v1: r-a1 and r-b1, both succeeded, PR after 2 h and 4 h. v2: r-b2 failed its gates,
    # r-b3 (PR after 2 h) and r-c1 (1 h) succeeded, r-d1 still runs: 4 runs on 3 tickets.
    assert table(page.text, "impact") == [
        ["v1", "2", "100 %", "1.00", "$1.50", "$0.75", "3.00"],
        ["v2", "4", "67 %", "1.33", "$3.50", "$0.88", "1.50"],
    ]
    assert "success rate %" in svg_text(svgs(page.text)["impact"])
    assert 'id="impact-compare"' not in page.text

    compared = await client.get("/harnesses/coder/impact?a=1&b=2")
    assert compared.status_code == 200
    found = re.search(r'<table id="impact-compare">(.*?)</table>', compared.text, re.S)
    assert found
    rows = re.findall(r'<th scope="row">(.*?)</th><td>(.*?)</td><td>(.*?)</td>', found.group(1))
    assert rows == [
        ("Runs", "2", "4"),
        ("Success rate", "100 %", "67 %"),
        ("Attempts per ticket", "1.00", "1.33"),
        ("Cost", "$1.50", "$3.50"),
        ("Cost per run", "$0.75", "$0.88"),
        ("Time to PR, p50 (hours)", "3.00", "1.50"),
    ]


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("a=x&b=2", 400, "a: must be a version number"),
        ("a=1&b=9", 400, "b: coder has no version 9 (the newest is 2)"),
        ("a=1&c=2", 400, "c: unknown query parameter"),
    ],
)
async def test_a_bad_comparison_is_a_400(
    client: httpx.AsyncClient, deps: Deps, query: str, status: int, message: str
) -> None:
    await seed(deps)
    page = await client.get(f"/harnesses/coder/impact?{query}")
    assert page.status_code == status
    assert message in page.text


async def test_an_unknown_harness_has_no_impact_page(client: httpx.AsyncClient) -> None:
    page = await client.get("/harnesses/nobody/impact")
    assert page.status_code == 404
