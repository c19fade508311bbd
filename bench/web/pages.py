"""Every page of bot/web/routes.py the bench reads, with what it is asked about.

Not timed: the live streams (`/tickets/events`, `/activity/events`, `/runs/{id}/events`:
server-sent events that stay open), the POST forms, `/login/github` and its callback, and
the setup callback (redirects to and from GitHub), and the editors (`…/new`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from bench.web.measure import Page
from bench.web.rows import COMMON_WORD, HARNESS_NAMES, RARE_WORD, REPO_NAMES
from bench.web.seed import Seeded

CHARTS = "/metrics/dashboard/charts"


def pages(seeded: Seeded, versions: int, harnesses: int) -> list[Page]:
    repo, other = REPO_NAMES[0], REPO_NAMES[1]
    last, small_harness = versions, HARNESS_NAMES[harnesses - 1]
    today = datetime.now(UTC).date()
    span = f"from={today - timedelta(days=13)}&to={today}"
    out = [Page("home", "/"), Page("login", "/login")]
    out += [
        Page("board", "/tickets"),
        Page("board", f"/tickets?repo={repo}"),
        Page("board", "/tickets?source=github"),
    ]
    listed = [
        "",
        f"?q={COMMON_WORD}",
        f"?q={RARE_WORD}",
        f"?q={quote(COMMON_WORD + ' -cache')}&sort=newest",
        f"?repo={other}",
        "?state=in_review",
        "?label=bug",
        "?workflow=coder",
        "?source=github",
        "?machine=m1",
        "?machine=tiny",
        "?sort=oldest",
        "?sort=newest",
        "?sort=oldest&after=5000",
        f"?q={COMMON_WORD}&state=done&repo={repo}",
    ]
    out += [Page("list", f"/tickets/list{query}") for query in listed]
    out += [
        Page("ticket", f"/tickets/{seeded.small_ticket}"),
        Page("ticket", f"/tickets/{seeded.busy_ticket}"),
        Page("ticket by key", f"/tickets/{seeded.small_key}"),
        Page("ticket by key", f"/tickets/{seeded.busy_key}"),
        Page("run", f"/runs/{quote(seeded.small_run, safe='')}"),
        Page("run", f"/runs/{quote(seeded.busy_run, safe='')}"),
        Page("machines", "/machines"),
        Page("machine", "/machines/tiny"),
        Page("machine", "/machines/m1"),
        Page("machine", "/machines/retired-7"),
    ]
    activity = [
        "",
        *(f"?type={kind}" for kind in ("state", "run", "effect", "command", "config", "delivery")),
        f"?repo={repo}",
        "?workflow=coder",
        f"?before={quote(seeded.activity_cursor)}",
    ]
    out += [Page("activity", f"/activity{query}") for query in activity]
    # Substring searches read a window of the log first (bot.web.activity_page).
    searches = [
        "?person=octocat",
        "?q=timeout",
        f"?q={quote('#' + seeded.small_key.rsplit('/', 1)[-1])}",
        "?q=no-such-line",
        f"?q=no-such-line&before={quote(seeded.activity_cursor)}",
        f"?type=state&repo={repo}&q=review",
    ]
    out += [Page("activity search", f"/activity{query}") for query in searches]
    dashboard = [
        "",
        f"?repo={repo}",
        "?workflow=coder",
        "?provider=codex",
        "?harness=coder",
        f"?harness=coder@{last}",
        "?days=7",
        "?days=90",
        f"?{span}",
        f"?repo={other}&workflow=coder&provider=claude&days=90",
    ]
    out += [Page("dashboard", f"/metrics/dashboard{query}") for query in dashboard]
    # Each chart is its own image request (its query, then pygal): all seven unfiltered, and
    # one per query behind them (done tickets, runs, gate failures) with each filter.
    charts = ("done", "lead-time", "first-pass", "gates", "outcomes", "cost-per-day")
    out += [
        Page("dashboard chart", f"{CHARTS}/{name}.svg") for name in (*charts, "cost-per-ticket")
    ]
    out += [
        Page("dashboard chart", f"{CHARTS}/{name}.svg{query}")
        for query in dashboard[1:]
        for name in ("lead-time", "cost-per-day", "gates")
    ]
    out += [
        Page("impact", "/harnesses/coder/impact"),
        Page("impact", f"/harnesses/{small_harness}/impact"),
        Page("impact", f"/harnesses/coder/impact?a=1&b={last}"),
        Page("harnesses", "/harnesses"),
        Page("harness", "/harnesses/coder"),
        Page("harness version", f"/harnesses/coder/versions/{last}"),
        Page("harness diff", f"/harnesses/coder/diff?from=1&to={last}&view=split"),
        Page("skills", "/skills"),
        Page("skill", "/skills/run-tests"),
        Page("skill version", "/skills/run-tests/versions/2"),
        Page("skill diff", "/skills/run-tests/diff?from=1&to=5"),
        Page("harnesses api", "/api/v1/harnesses"),
    ]
    return out
