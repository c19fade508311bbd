"""Drift reconciled (issue #14, item 4): what changed on GitHub, Linear and Jira while the
bot heard nothing is read back by the reconcile pass and decided on as its webhooks would
have been. Against the recording fake GitHub (issues with `since`, pulls by update, ETags
and 304s), the Linear and Jira fakes, real Postgres and Redis, and the real engine."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from adapters.base import NormalizedEvent, StatusChanged, TicketUpserted
from bot.config.states import State
from bot.deps import AfterCommit, Deps
from bot.engine.jobs import WorkflowReactor
from bot.intake.backfill import backfill_repository
from bot.intake.reconcile import pass_minutes, reconcile, reconcile_cron
from bot.intake.reconcile.github import reconcile_github
from bot.intake.reconcile.marks import OVERLAP, mark_name
from bot.intake.reconcile.trackers import Paging, reconcile_jira, reconcile_linear
from bot.jobs import RECONCILE_CRON
from bot.processes.worker import COMMANDS, control_crons
from bot.registry import TrackerClients
from bot.settings import Settings
from bot.tables.mirror import PullRequest, Ticket
from bot.tables.sync import SyncMark
from bot.tables.workflow import Activity, OutboxEffect, TicketState
from harness_store.db import transaction
from runner.contract import MACHINES_SET, machine_key, run_cancel_key
from runner.machine import MachineFacts
from tests.conftest import OpenWorld
from tests.fakes.github_api import FakeGitHubAPI, FakeRepo
from tests.fakes.jira_server import FakeJira
from tests.fakes.linear_api import FakeLinear
from tests.support.lifecycle import FULL_NAME, WRITER, World

Json = dict[str, Any]
IngestAll = Callable[[], Awaitable[list[str]]]

INSTALLATION = 77
LINEAR_ROUTE = f"linear: {{teams: {{ENG: {{repo: {FULL_NAME}, workflow: coder}}}}}}\n"
JIRA_ROUTE = f"jira: {{projects: {{PROJ: {{repo: {FULL_NAME}}}}}}}\n"
_seconds = itertools.count(1)


def by_hand() -> str:
    """Now, a second later each time, on GitHub's clock: when a change nobody told us of
    was made (after everything the bot saw; the lifecycle world's webhooks are older)."""
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=next(_seconds))
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def closed_by_hand(issue: Json) -> None:
    at = by_hand()
    issue.update(state="closed", state_reason="not_planned", closed_at=at, updated_at=at)


def merged_by_hand(repo: FakeRepo, pull: Json) -> None:
    """Merged on GitHub; the issues list shows the PR closed and merged too."""
    at = by_hand()
    pull.update(state="closed", merged=True, merged_at=at, closed_at=at, updated_at=at)
    as_issue = next(i for i in repo.issues if i["number"] == pull["number"])
    as_issue.update(state="closed", closed_at=at, updated_at=at)
    as_issue["pull_request"]["merged_at"] = at


async def machine_online(deps: Deps, name: str = "m1") -> None:
    """A runner's registry entry: runs are sent to its queue (nobody takes them here)."""
    facts = MachineFacts(
        name=name, labels=[], capacity=8, clis={"command": "1.0"}, sandbox="bubblewrap 0.8.0"
    )
    await deps.redis.hset(machine_key(name), mapping=facts.to_redis())  # type: ignore[misc]  # redis-py's union return
    await deps.redis.sadd(MACHINES_SET, name)  # type: ignore[misc]


@asynccontextmanager
async def bot_without_worker(open_world: OpenWorld, **options: Any) -> AsyncIterator[World]:
    """The control plane with its engine, minus the worker: webhooks are ingested in-process
    (`ingest_all`), runs go to a registered machine's queue. What reconcile is for: the
    webhooks a test does not send are the ones missed while the bot was down."""
    async with open_world(runners=0, workers=0, **options) as w:
        w.deps.workflow = WorkflowReactor(w.engine, COMMANDS)
        await machine_online(w.deps)
        yield w


async def running(w: World, ingest_all: IngestAll, numbers: Sequence[int]) -> dict[int, str]:
    """Issues `numbers`, labelled `openase` by a writer: each one's run in flight."""
    for number in numbers:
        w.add_issue(number, f"Issue {number}")
        await w.label(number, "openase")
    await ingest_all()
    runs = {}
    for number in numbers:
        row = await w.state(number)
        assert row is not None
        assert (row.state, row.run_id is not None) == (State.IN_PROGRESS, True)
        runs[number] = str(row.run_id)
    return runs


async def github_pass(w: World) -> int:
    done = await reconcile(
        w.deps, github=w.engine.github, trackers=TrackerClients(), control=w.engine.control
    )
    return done.changes["github"]


async def what_followed(deps: Deps, key: str) -> tuple[list[str], list[str]]:
    """The kinds of outbox effects and the activity lines of a ticket, in order."""
    async with deps.sessions() as session:
        ticket_id = await session.scalar(select(Ticket.id).where(Ticket.key == key))
        effects = await session.scalars(
            select(OutboxEffect.kind)
            .where(OutboxEffect.ticket_id == ticket_id)
            .order_by(OutboxEffect.id)
        )
        notes = await session.scalars(
            select(Activity.message).where(Activity.ticket_id == ticket_id).order_by(Activity.id)
        )
        return list(effects), list(notes)


async def effects_and_notes(deps: Deps) -> tuple[int, int]:
    async with deps.sessions() as session:
        effects = await session.scalar(select(func.count()).select_from(OutboxEffect))
        notes = await session.scalar(select(func.count()).select_from(Activity))
        return int(effects or 0), int(notes or 0)


def list_answers(github_api: FakeGitHubAPI, since: int = 0) -> list[tuple[str, int]]:
    """(path, status) of every issues or pulls list asked from the `since`th request on."""
    return [
        (request.url.path.rsplit("/", 1)[-1], response.status_code)
        for request, response in github_api.answers[since:]
        if request.url.path.endswith(("/issues", "/pulls"))
    ]


# --- GitHub: the engine reacts as to the webhook ------------------------------------------------


async def test_an_issue_closed_while_the_bot_was_down_cancels_its_run_as_the_webhook_does(
    open_world: OpenWorld, ingest_all: IngestAll
) -> None:
    async with bot_without_worker(open_world) as w:
        runs = await running(w, ingest_all, [1, 2])
        await w.close_issue(1)  # the bot listens
        await ingest_all()
        closed_by_hand(w.issue(2))  # nobody listens: no webhook

        assert await github_pass(w) == 1

        for number in (1, 2):
            row = await w.state(number)
            assert row is not None
            assert (row.state, row.run_id) == (State.CANCELED, None)
            cancel = await w.deps.redis.get(run_cancel_key(runs[number]))
            assert cancel == b"the issue was closed"
        heard, missed = [await what_followed(w.deps, f"{FULL_NAME}#{n}") for n in (1, 2)]
        assert missed == heard  # the same effects and the same story, line by line
        assert missed[1][-1] == "in_progress → canceled: issue closed"

        # Read again: all known, so no reaction and no effect; then nothing is even sent.
        before = await effects_and_notes(w.deps)
        assert await github_pass(w) == 0
        asked = len(w.fake.answers)
        remaining = w.fake.rate_remaining
        assert await github_pass(w) == 0
        assert list_answers(w.fake, asked) == [("issues", 304), ("pulls", 304)]
        assert w.fake.rate_remaining == remaining  # 304s are free
        assert await effects_and_notes(w.deps) == before


async def test_a_pr_merged_by_hand_while_the_bot_was_down_finishes_its_ticket(
    open_world: OpenWorld, ingest_all: IngestAll
) -> None:
    async with bot_without_worker(open_world) as w:
        await running(w, ingest_all, [1, 2, 3])
        # Writers open PRs fixing #2 and #3 (the bot hears of them) and merge the one for #3.
        known = w.fake.add_pull(w.repo, 12, title="Fix 2", body="Fixes #2", updated_at=w.now())
        heard = w.fake.add_pull(w.repo, 13, title="Fix 3", body="Fixes #3", updated_at=w.now())
        for pull in (known, heard):
            payload = {"action": "opened", "number": pull["number"], "pull_request": pull}
            await w.send("pull_request", payload | w.envelope(WRITER))
        await w.merge_by_hand(heard)
        await ingest_all()
        # While the bot is down: #2's PR is merged, and one for #1 is opened and merged.
        merged_by_hand(w.repo, known)
        unseen = w.fake.add_pull(w.repo, 11, title="Fix 1", body="Fixes #1", updated_at=by_hand())
        merged_by_hand(w.repo, unseen)

        assert await github_pass(w) == 2

        for number in (1, 2, 3):
            row = await w.state(number)
            assert row is not None
            assert row.state == State.DONE
        stories = [await what_followed(w.deps, f"{FULL_NAME}#{n}") for n in (1, 2, 3)]
        assert [effects for effects, _ in stories] == [stories[2][0]] * 3
        assert [notes[-1] for _, notes in stories] == [
            f"in_progress → done: PR #{pr} merged" for pr in (11, 12, 13)
        ]
        async with w.deps.sessions() as session:
            merged = await session.scalars(
                select(PullRequest.number).where(PullRequest.merged.is_(True))
            )
            assert sorted(merged) == [11, 12, 13]


# --- GitHub: marks, `since`, ETags, rate limits --------------------------------------------------


class RecordingReactor:
    """The engine as ingest sees it, recording what it is asked to decide on."""

    def __init__(self) -> None:
        self.reactions: list[list[NormalizedEvent]] = []

    async def react(
        self, session: AsyncSession, events: Sequence[NormalizedEvent], installation_id: int | None
    ) -> AfterCommit:
        self.reactions.append(list(events))

        async def nothing_follows() -> None:
            return None

        return nothing_follows


@pytest.fixture
def reactor(deps: Deps) -> RecordingReactor:
    recording = RecordingReactor()
    deps.workflow = recording
    return recording


async def mirrored(deps: Deps, github_api: FakeGitHubAPI, name: str, repo_id: int) -> FakeRepo:
    """A repository with issues 1-4, backfilled into the mirror (GitHub's clock: March)."""
    if INSTALLATION not in github_api.installations:
        github_api.add_installation(INSTALLATION, "acme")
    repo = github_api.add_repo(name, repo_id, INSTALLATION)
    for number in range(1, 5):
        github_api.add_issue(
            repo, number, title=f"issue {number}", updated_at=f"2024-03-01T10:0{number}:00Z"
        )
    await backfill_repository(deps, name)
    return repo


def retitled_by_hand(repo: FakeRepo, number: int) -> str:
    at = by_hand()
    next(i for i in repo.issues if i["number"] == number).update(
        title=f"issue {number}, retitled", updated_at=at
    )
    return at


async def mark_of(deps: Deps, name: str) -> datetime | None:
    async with deps.sessions() as session:
        return await session.scalar(select(SyncMark.at).where(SyncMark.name == name))


async def titles(deps: Deps) -> list[str]:
    async with deps.sessions() as session:
        return sorted(await session.scalars(select(Ticket.title)))


async def test_a_pass_reads_since_the_mark_and_moves_it_to_the_newest_change(
    deps: Deps, github_api: FakeGitHubAPI, reactor: RecordingReactor
) -> None:
    repo = await mirrored(deps, github_api, "acme/widgets", 555)
    changed_at = retitled_by_hand(repo, 2)
    asked = len(github_api.requests)

    first = await reconcile_github(deps, deps.github_app(), datetime.now(UTC))

    assert (first.changes, first.scopes, first.cut_short) == (1, 1, [])
    lists = github_api.requests[asked:]
    issues, pulls = [r for r in lists if r.url.path.endswith(("/issues", "/pulls"))]
    # The newest change the backfill saw (10:04), less the overlap; PRs newest first.
    assert dict(issues.url.params) == {
        "state": "all",
        "sort": "updated",
        "direction": "asc",
        "since": "2024-03-01T09:59:00Z",
        "per_page": "100",
    }
    assert dict(pulls.url.params) == {
        "state": "all",
        "sort": "updated",
        "direction": "desc",
        "per_page": "100",
    }
    [[upserted, *rest]] = reactor.reactions
    assert isinstance(upserted, TicketUpserted)
    assert (upserted.action, upserted.ticket.title, rest) == ("edited", "issue 2, retitled", [])
    assert await mark_of(deps, mark_name("github", 555)) == datetime.fromisoformat(changed_at)

    asked = len(github_api.requests)
    second = await reconcile_github(deps, deps.github_app(), datetime.now(UTC))
    assert (second.changes, len(reactor.reactions)) == (0, 1)
    since = datetime.fromisoformat(changed_at) - OVERLAP
    [issues] = [r for r in github_api.requests[asked:] if r.url.path.endswith("/issues")]
    assert issues.url.params["since"] == since.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_a_rate_limit_keeps_the_mark_and_the_next_pass_goes_on_from_it(
    deps: Deps, github_api: FakeGitHubAPI, reactor: RecordingReactor
) -> None:
    one = await mirrored(deps, github_api, "acme/one", 555)
    two = await mirrored(deps, github_api, "acme/two", 556)
    for number in (3, 4):
        retitled_by_hand(one, number)  # the newest: on the second page of acme/one's issues
    retitled_by_hand(two, 1)
    github_api.max_per_page = 2
    exhausted = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()))}
    github_api.queue(
        403,
        {"message": "API rate limit exceeded for installation."},
        path_regex=r"^/repositories/555/issues$",  # the next page's link
        headers=exhausted,
    )
    marks = [mark_name("github", 555), mark_name("github", 556)]

    asked = len(github_api.requests)
    with capture_logs() as logs:
        first = await reconcile_github(deps, deps.github_app(), datetime.now(UTC))

    assert (first.changes, first.cut_short) == (0, ["acme/one", "acme/two"])
    [limited] = [e for e in logs if e["event"] == "reconcile_rate_limited"]  # said once
    assert limited["installation_id"] == INSTALLATION
    start = await mark_of(deps, marks[0])
    assert start == datetime(2024, 3, 1, 10, 4, tzinfo=UTC)  # where it began, not moved
    assert await mark_of(deps, marks[1]) is None  # the installation's other repository waits
    assert not any("/acme/two/" in r.url.path for r in github_api.requests[asked:])

    asked = len(github_api.answers)
    second = await reconcile_github(deps, deps.github_app(), datetime.now(UTC))

    assert (second.changes, second.cut_short, second.scopes) == (3, [], 2)
    assert list_answers(github_api, asked)[:3] == [("issues", 304), ("issues", 200), ("pulls", 200)]
    one_titles = ["issue 1", "issue 2", "issue 3, retitled", "issue 4, retitled"]
    two_titles = ["issue 1, retitled", "issue 2", "issue 3", "issue 4"]
    assert await titles(deps) == sorted([*one_titles, *two_titles])
    moved = [await mark_of(deps, mark) for mark in marks]
    assert all(mark is not None and mark > start for mark in moved)


async def test_a_repository_the_app_lost_is_skipped_with_a_log_line(
    deps: Deps, github_api: FakeGitHubAPI, reactor: RecordingReactor
) -> None:
    await mirrored(deps, github_api, "acme/widgets", 555)
    kept = await mirrored(deps, github_api, "acme/kept", 556)
    retitled_by_hand(kept, 1)
    github_api.repos.pop("acme/widgets")  # uninstalled from it (or it was deleted)

    with capture_logs() as logs:
        report = await reconcile_github(deps, deps.github_app(), datetime.now(UTC))

    assert (report.changes, report.cut_short) == (1, ["acme/widgets"])
    [skipped] = [e for e in logs if e["event"] == "reconcile_repository_skipped"]
    assert skipped["repository"] == "acme/widgets"
    assert "404" in skipped["error"]
    assert (await titles(deps)).count("issue 1, retitled") == 1  # acme/kept's


# --- Linear and Jira ---------------------------------------------------------------------------


async def ticket_state(w: World, key: str) -> tuple[str | None, str | None]:
    async with w.deps.sessions() as session:
        row = (
            await session.execute(
                select(TicketState.state, TicketState.run_id)
                .join(Ticket, Ticket.id == TicketState.ticket_id)
                .where(Ticket.key == key)
            )
        ).one_or_none()
        return (row.state, row.run_id) if row is not None else (None, None)


async def tracker_pass(w: World, trackers: TrackerClients) -> dict[str, int]:
    done = await reconcile(w.deps, github=None, trackers=trackers, control=w.engine.control)
    return done.changes


async def test_a_linear_issue_opened_then_closed_while_the_bot_was_down(
    open_world: OpenWorld, linear_fake: FakeLinear, tracker_clients: TrackerClients
) -> None:
    linear_fake.add_team("ENG", "Engineering")
    routed = {"control_extra": LINEAR_ROUTE, "trackers": tracker_clients}
    async with bot_without_worker(open_world, **routed) as w:
        issue = linear_fake.add_issue("ENG", "Add a PASS file", labels=["openase"])

        assert await tracker_pass(w, tracker_clients) == {"linear": 1}
        state, run_id = await ticket_state(w, "ENG-1")
        assert (state, run_id is not None) == (State.IN_PROGRESS, True)

        linear_fake.move_by_hand(issue["id"], "Canceled")  # its webhook never arrives
        assert await tracker_pass(w, tracker_clients) == {"linear": 1}

        assert await ticket_state(w, "ENG-1") == (State.CANCELED, None)
        assert await w.deps.redis.get(run_cancel_key(str(run_id))) == b"the issue was closed"
        asked = [v for op, v in linear_fake.calls if op == "IssuesChangedSince"]
        assert asked[0]["teamKey"] == "ENG"
        assert (asked[0]["last"], asked[0]["before"]) == (50, None)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", asked[0]["since"])
        assert await tracker_pass(w, tracker_clients) == {"linear": 0}


async def test_a_jira_issue_opened_then_done_while_the_bot_was_down(
    open_world: OpenWorld, jira_fake: FakeJira, tracker_clients: TrackerClients
) -> None:
    jira_fake.add_project("PROJ", "Project")
    routed = {"control_extra": JIRA_ROUTE, "trackers": tracker_clients}
    async with bot_without_worker(open_world, **routed) as w:
        issue = jira_fake.add_issue("PROJ", "Add a PASS file", labels=["openase"])

        assert await tracker_pass(w, tracker_clients) == {"jira": 1}
        state, run_id = await ticket_state(w, issue["key"])
        assert (state, run_id is not None) == (State.IN_PROGRESS, True)

        jira_fake.move_by_hand(issue["key"], "Done")  # its webhook never arrives
        assert await tracker_pass(w, tracker_clients) == {"jira": 1}

        assert await ticket_state(w, issue["key"]) == (State.CANCELED, None)
        assert await w.deps.redis.get(run_cancel_key(str(run_id))) == b"the issue was closed"
        searched = [query["jql"][0] for path, query in jira_fake.queries if "search" in path]
        assert searched[0] == 'project = "PROJ" AND updated >= "-5m" ORDER BY updated ASC'
        assert await tracker_pass(w, tracker_clients) == {"jira": 0}


def linear_time(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


async def set_mark(deps: Deps, name: str, at: datetime) -> None:
    async with transaction(deps.sessions) as session:
        session.add(SyncMark(name=name, at=at))


async def test_linear_is_read_a_page_at_a_time_from_the_oldest_change(
    deps: Deps, linear_fake: FakeLinear, tracker_clients: TrackerClients, reactor: RecordingReactor
) -> None:
    linear = tracker_clients.linear_client()
    linear_fake.add_team("ENG", "Engineering")
    now = datetime.now(UTC)
    await set_mark(deps, mark_name("linear", "ENG"), now - timedelta(hours=2))
    for minutes in (60, 50, 40, 30, 20):  # changed ten minutes apart
        issue = linear_fake.add_issue("ENG", f"{minutes} minutes ago")
        issue["updatedAt"] = linear_time(now - timedelta(minutes=minutes))
    paging = Paging(size=2, pages=2)

    async def linear_pass() -> tuple[int, list[str]]:
        report = await reconcile_linear(deps, linear, ["ENG"], datetime.now(UTC), paging)
        return report.changes, report.cut_short

    assert await linear_pass() == (4, ["ENG"])  # the page bound: the four oldest
    fourth = now - timedelta(minutes=30)
    fourth = fourth.replace(microsecond=fourth.microsecond // 1000 * 1000)  # Linear's ms
    assert await mark_of(deps, mark_name("linear", "ENG")) == fourth
    linear_fake.rate_limit()
    with capture_logs() as logs:
        assert await linear_pass() == (0, ["ENG"])
    [limited] = [e for e in logs if e["event"] == "reconcile_rate_limited"]
    assert limited["source"] == "linear"
    assert await linear_pass() == (1, [])  # from the mark: the last, and one known again
    assert await titles(deps) == sorted(f"{m} minutes ago" for m in (60, 50, 40, 30, 20))
    opened = [events[0] for events in reactor.reactions]
    assert all(isinstance(e, TicketUpserted) and e.action == "opened" for e in opened)


async def test_jira_is_read_a_page_at_a_time_and_a_move_is_a_status_change(
    deps: Deps, jira_fake: FakeJira, tracker_clients: TrackerClients, reactor: RecordingReactor
) -> None:
    jira = tracker_clients.jira_client()
    jira_fake.add_project("PROJ", "Project")
    now = datetime.now(UTC)
    await set_mark(deps, mark_name("jira", "PROJ"), now - timedelta(hours=2))
    keys = []
    for minutes in (60, 50, 40):
        issue = jira_fake.add_issue("PROJ", f"{minutes} minutes ago")
        stamp = (now - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        jira_fake.issues[issue["key"]]["fields"]["updated"] = stamp
        keys.append(issue["key"])
    paging = Paging(size=2, pages=1)

    async def jira_pass() -> tuple[int, list[str]]:
        report = await reconcile_jira(deps, jira, ["PROJ"], datetime.now(UTC), paging)
        return report.changes, report.cut_short

    assert await jira_pass() == (2, ["PROJ"])
    jira_fake.rate_limit(retry_after=30)
    assert await jira_pass() == (0, ["PROJ"])
    assert await jira_pass() == (1, [])
    jira_fake.move_by_hand(keys[0], "In Progress")
    assert await jira_pass() == (1, [])
    moved = reactor.reactions[-1]
    assert [type(e).__name__ for e in moved] == ["TicketUpserted", "StatusChanged"]
    status = moved[1]
    assert isinstance(status, StatusChanged)
    assert (status.from_status, status.to_status) == ("To Do", "In Progress")


# --- the cron, its setting, /metrics --------------------------------------------------------------


async def test_the_cron_runs_a_pass_and_metrics_count_changes_by_source(
    deps: Deps, github_api: FakeGitHubAPI, client: httpx.AsyncClient
) -> None:
    repo = await mirrored(deps, github_api, "acme/widgets", 555)
    retitled_by_hand(repo, 1)

    assert await reconcile_cron({"deps": deps}) == {}  # no engine yet: nothing is read
    deps.workflow = RecordingReactor()
    assert await reconcile_cron({"deps": deps}) == {"github": 1}

    metrics = (await client.get("/metrics")).text
    assert 'openase_reconciled_changes_total{source="github"} 1.0' in metrics


def test_the_interval_is_a_setting_and_zero_turns_the_cron_off(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.reconcile_minutes == 10
    [job] = [job for job in control_crons(settings) if job.name == RECONCILE_CRON]
    assert (job.minute, job.run_at_startup, job.unique) == ({0, 10, 20, 30, 40, 50}, True, True)
    off = settings.model_copy(update={"reconcile_minutes": 0})
    assert RECONCILE_CRON not in {job.name for job in control_crons(off)}
    monkeypatch.setenv("OPENASE_RECONCILE_MINUTES", "15")
    assert pass_minutes(Settings(_env_file=None).reconcile_minutes) == {0, 15, 30, 45}
    monkeypatch.setenv("OPENASE_RECONCILE_MINUTES", "61")
    with pytest.raises(ValidationError, match="reconcile_minutes"):
        Settings(_env_file=None)
