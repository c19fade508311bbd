"""Pacing each installation's content-creating GitHub requests (bot/effects/pacing.py): a
small budget from the settings, a clock the tests move instead of sleeping, the real outbox
against real PostgreSQL and the respx fake of GitHub."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from structlog.testing import capture_logs

from adapters.errors import Paced
from adapters.github.client import GitHubApp
from adapters.github.transport import graphql_url
from bot.deps import Deps
from bot.effects.kinds import EffectKind
from bot.effects.outbox import add_effect
from bot.effects.pacing import HOUR, MARGIN, MINUTE, WriteLimits, WritePacer
from bot.effects.perform import perform_pending
from bot.processes.worker import PERFORMERS
from bot.settings import Settings
from bot.tables.workflow import EffectStatus, GitHubWrite
from harness_store.db import transaction
from tests.fakes.github_api import FakeGitHubAPI, FakeRepo
from tests.fakes.github_graphql import FakeGitHubGraphQL
from tests.support.helpers import TEST_API_URL
from tests.support.helpers import test_private_key as app_private_key
from tests.support.outbox import make_due, outbox_rows

INSTALLATION = 77
OTHER = 78  # an installation with a budget of its own
REPO = "acme/widgets"
WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")


@dataclass
class Clock:
    """The pacer's time: moved by the test."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC))


def _limits(monkeypatch: pytest.MonkeyPatch, per_minute: int, per_hour: int = 500) -> WriteLimits:
    """The limits as an operator sets them: OPENASE_GITHUB_WRITES_PER_MINUTE / _PER_HOUR."""
    monkeypatch.setenv("OPENASE_GITHUB_WRITES_PER_MINUTE", str(per_minute))
    monkeypatch.setenv("OPENASE_GITHUB_WRITES_PER_HOUR", str(per_hour))
    return WriteLimits.of(Settings(_env_file=None))


@pytest.fixture
def widgets(github_api: FakeGitHubAPI) -> FakeRepo:
    github_api.add_installation(INSTALLATION, "acme")
    repo = github_api.add_repo(REPO, 555, INSTALLATION)
    for number in range(1, 10):
        github_api.add_issue(repo, number, title=f"issue {number}")
    return repo


async def _decide(
    deps: Deps, key: str, payload: dict[str, Any], *, kind: str = EffectKind.COMMENT
) -> None:
    async with transaction(deps.sessions) as session:
        await add_effect(
            session,
            key=key,
            kind=kind,
            payload=payload,
            ticket_id=None,
            installation_id=INSTALLATION,
        )


async def _replies(deps: Deps, *numbers: int) -> None:
    for number in numbers:
        await _decide(deps, f"reply:{number}", {"repo": REPO, "number": number, "body": "hi"})


def _writes(github_api: FakeGitHubAPI) -> list[tuple[str, Any]]:
    """The content-creating requests GitHub saw as an installation (token minting is the
    App's, and creates no content)."""
    return [
        call
        for method in WRITE_METHODS
        for call in github_api.calls(method)
        if not call[0].endswith("/access_tokens")
    ]


async def _perform(deps: Deps, pacer: WritePacer) -> int:
    return await perform_pending(deps, PERFORMERS, pacer=pacer)


async def test_writes_beyond_the_minutes_budget_wait_unsent_until_it_has_room(
    deps: Deps,
    github_api: FakeGitHubAPI,
    widgets: FakeRepo,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pacer = WritePacer(deps.sessions, _limits(monkeypatch, per_minute=3), clock=clock)
    await _replies(deps, 1, 2, 3, 4, 5)
    began = clock.now

    with capture_logs() as logs:
        assert await _perform(deps, pacer) == 3
        assert len(_writes(github_api)) == 3
        rows = await outbox_rows(deps)
        waiting = [rows["reply:4"], rows["reply:5"]]
        assert all(row.status == EffectStatus.PENDING for row in waiting)
        # Room comes when the first of the three leaves the minute (with the margin for
        # GitHub's clock and the network); not a failed try.
        assert all(row.not_before == began + MINUTE + MARGIN for row in waiting)
        assert all(row.not_before > datetime.now(UTC) for row in waiting)
        assert all(row.attempts == 0 for row in waiting)
        assert all("paced" in (row.last_error or "") for row in waiting)

        # The cron comes back within the minute (as if they were due): nothing goes out.
        clock.advance(MINUTE)
        await make_due(deps)
        assert await _perform(deps, pacer) == 0
        assert len(_writes(github_api)) == 3

        clock.advance(MARGIN)  # the minute has passed
        await make_due(deps)
        assert await _perform(deps, pacer) == 2

    assert len(_writes(github_api)) == 5
    rows = await outbox_rows(deps)
    assert {row.status for row in rows.values()} == {EffectStatus.DONE}
    assert all(row.attempts == 1 for row in rows.values())
    assert [len(github_api.comments_on(widgets, n)) for n in range(1, 6)] == [1] * 5
    # Said once when pacing began (not per effect, nor per round), once when it was over.
    [paced] = [log for log in logs if log["event"] == "github_writes_paced"]
    assert paced["installation_id"] == INSTALLATION
    assert paced["resumes_at"] == (began + MINUTE + MARGIN).isoformat()
    assert paced["log_level"] == "info"
    assert paced["waiting"] == 2
    [over] = [log for log in logs if log["event"] == "github_writes_unpaced"]
    assert over["installation_id"] == INSTALLATION


async def test_the_hour_limit_holds_too(
    deps: Deps,
    github_api: FakeGitHubAPI,
    widgets: FakeRepo,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pacer = WritePacer(deps.sessions, _limits(monkeypatch, 3, per_hour=5), clock=clock)
    await _replies(deps, 1, 2, 3, 4, 5, 6, 7, 8)
    began = clock.now

    assert await _perform(deps, pacer) == 3  # the minute's three
    for minute in range(1, 59):  # the next minute has room for two more, then none
        clock.advance(MINUTE + MARGIN)
        await make_due(deps)
        assert await _perform(deps, pacer) == (2 if minute == 1 else 0)
    assert len(_writes(github_api)) == 5
    rows = await outbox_rows(deps)
    waiting = [rows[f"reply:{n}"] for n in (6, 7, 8)]
    assert all(row.status == EffectStatus.PENDING for row in waiting)
    # The hour is full until the first write of it is an hour old.
    assert all(row.not_before == began + HOUR + MARGIN for row in waiting)

    clock.now = began + HOUR + MARGIN
    await make_due(deps)
    assert await _perform(deps, pacer) == 3
    assert len(_writes(github_api)) == 8


async def test_two_workers_together_never_exceed_the_budget(
    deps: Deps,
    github_api: FakeGitHubAPI,
    widgets: FakeRepo,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limits = _limits(monkeypatch, per_minute=3)
    # Two workers' outboxes: a pacer each, their state only in PostgreSQL.
    first = WritePacer(deps.sessions, limits, clock=clock)
    second = WritePacer(deps.sessions, limits, clock=clock)
    await _replies(deps, 1, 2, 3, 4, 5, 6, 7, 8)

    for _ in range(3):
        await make_due(deps)
        await asyncio.gather(_perform(deps, first), _perform(deps, second))
    assert len(_writes(github_api)) == 3

    clock.advance(MINUTE + MARGIN)
    for _ in range(3):
        await make_due(deps)
        await asyncio.gather(_perform(deps, first), _perform(deps, second))
    assert len(_writes(github_api)) == 6

    # Below the outbox's lock too: writers racing for the last slots get no more than there are.
    clock.advance(MINUTE + MARGIN)
    outcomes = await asyncio.gather(
        *(pacer.write(INSTALLATION) for pacer in (first, second) for _ in range(5)),
        return_exceptions=True,
    )
    assert sum(isinstance(outcome, int) for outcome in outcomes) == 3
    assert all(isinstance(o, Paced) for o in outcomes if not isinstance(o, int))
    # Each installation has its own budget.
    await first.write(OTHER)


async def test_a_write_counts_from_when_it_was_over(
    deps: Deps, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub counts a request when it arrives, which a busy process may delay by seconds
    after it was counted: from when it was over, it holds its window's place that long
    longer (a bench at full load saw 82 in GitHub's busiest minute before)."""
    pacer = WritePacer(deps.sessions, _limits(monkeypatch, per_minute=1), clock=clock)
    written = await pacer.write(INSTALLATION)
    clock.advance(timedelta(seconds=10))  # it took its time on the way
    await pacer.sent(written)

    clock.advance(MINUTE + MARGIN - timedelta(seconds=5))  # a minute after it started
    assert await pacer.room_at(INSTALLATION) is not None
    with pytest.raises(Paced):
        await pacer.write(INSTALLATION)
    clock.advance(timedelta(seconds=6))  # a minute after it was over
    assert await pacer.room_at(INSTALLATION) is None
    await pacer.write(INSTALLATION)


async def test_on_postgresqls_clock_a_write_is_logged_moved_when_over_and_old_ones_pruned(
    deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a test clock: PostgreSQL's time is read in the statements themselves (the
    count, the insert and the prune in as few round trips as they can be)."""
    async with transaction(deps.sessions) as session:
        now: datetime = (await session.execute(select(func.now()))).scalar_one()
        session.add(GitHubWrite(installation_id=INSTALLATION, at=now - HOUR - 2 * MARGIN))
        session.add(GitHubWrite(installation_id=INSTALLATION + 1, at=now - 2 * HOUR))
    pacer = WritePacer(deps.sessions, _limits(monkeypatch, per_minute=2))
    written = await pacer.write(INSTALLATION)
    async with deps.sessions() as session:
        rows = (
            await session.execute(
                select(GitHubWrite.id, GitHubWrite.installation_id, GitHubWrite.at)
            )
        ).all()
    # The installation's write out of every window is gone; another installation's stays.
    assert sorted((row.id == written, row.installation_id) for row in rows) == [
        (False, INSTALLATION + 1),
        (True, INSTALLATION),
    ]
    [logged] = [row.at for row in rows if row.id == written]
    await asyncio.sleep(0.05)
    await pacer.sent(written)
    async with deps.sessions() as session:
        moved = await session.scalar(select(GitHubWrite.at).where(GitHubWrite.id == written))
    assert moved is not None
    assert moved > logged  # counts from when it was over
    await pacer.write(INSTALLATION)
    with pytest.raises(Paced):  # two a minute: the third waits
        await pacer.write(INSTALLATION)


async def test_a_superseded_status_comment_waiting_on_pacing_is_skipped_unsent(
    deps: Deps,
    github_api: FakeGitHubAPI,
    widgets: FakeRepo,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pacer = WritePacer(deps.sessions, _limits(monkeypatch, per_minute=3), clock=clock)
    await _replies(deps, 2, 3, 4)
    assert await _perform(deps, pacer) == 3  # the budget is spent

    settled = []
    for version, state in enumerate(["in progress", "gates running", "in review"], start=1):
        body = {"repo": REPO, "number": 1, "body": f"state: {state}"}
        await _decide(deps, f"status:1#{version}", body, kind=EffectKind.STATUS_COMMENT)
        await make_due(deps)  # every revision is tried while the budget is spent
        settled.append(await _perform(deps, pacer))
    # Each older revision is skipped as soon as a newer one is decided, budget or not.
    assert settled == [0, 1, 1]
    assert len(_writes(github_api)) == 3
    rows = await outbox_rows(deps)
    assert rows["status:1#3"].status == EffectStatus.PENDING

    clock.advance(MINUTE + MARGIN)
    await make_due(deps)
    assert await _perform(deps, pacer) == 1

    [comment] = github_api.comments_on(widgets, 1)
    assert comment["body"].splitlines()[-1] == "state: in review"
    assert len(_writes(github_api)) == 4  # the newest revision's one request
    assert github_api.calls("PATCH") == []
    rows = await outbox_rows(deps)
    assert rows["status:1#1"].result == {"superseded_by": rows["status:1#2"].id}
    assert rows["status:1#2"].result == {"superseded_by": rows["status:1#3"].id}


async def test_reads_do_not_count(
    deps: Deps,
    github_api: FakeGitHubAPI,
    widgets: FakeRepo,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pacer = WritePacer(deps.sessions, _limits(monkeypatch, per_minute=3), clock=clock)
    await _replies(deps, 1)
    # Three more of the same reply (its marker): each finds the one posted, by reads alone.
    for again in range(3):
        payload = {"repo": REPO, "number": 1, "body": "hi", "marker": "reply:1"}
        await _decide(deps, f"reply:1:again:{again}", payload)
    await _replies(deps, 2, 3)

    assert await _perform(deps, pacer) == 6  # all in the same minute
    assert len(github_api.calls("GET")) >= 6
    assert len(_writes(github_api)) == 3
    assert len(github_api.comments_on(widgets, 1)) == 1
    # Minting the installation token (the App's POST) is not counted either.
    assert github_api.calls("POST", "/access_tokens$") != []
    async with deps.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(GitHubWrite)) == 3

    # Read as the installation, through the paced client, with the budget spent: not asked.
    github = deps.github_app().paced(pacer)
    assert await github.issue_label_names(REPO, 1, INSTALLATION) == []
    with pytest.raises(Paced):
        await github.add_issue_labels(REPO, 1, ["bug"], INSTALLATION)
    assert len(_writes(github_api)) == 3  # refused before it was sent


async def test_a_card_moved_counts_its_mutation_not_its_query(
    deps: Deps,
    github_api: FakeGitHubAPI,
    widgets: FakeRepo,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    boards = FakeGitHubGraphQL(github_api)
    card = boards.add_card(boards.add_board("Roadmap"), widgets, 7, status="Todo")
    pacer = WritePacer(deps.sessions, _limits(monkeypatch, per_minute=3), clock=clock)
    payload = {"repo": REPO, "number": 7, "state": "in_progress"}
    await _decide(deps, "project:7#1", payload, kind=EffectKind.PROJECT_STATUS)

    assert await _perform(deps, pacer) == 1
    assert boards.status_of(card) == "In Progress"
    assert boards.operations == ["ProjectItemsOfIssue", "SetProjectStatus"]
    async with deps.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(GitHubWrite)) == 1


@pytest.mark.parametrize(
    ("method", "path", "body", "counted"),
    [
        ("GET", "/repos/acme/widgets/issues/1/comments", None, False),
        ("POST", "/repos/acme/widgets/issues/1/comments", {"body": "hi"}, True),
        ("PATCH", "/repos/acme/widgets/issues/comments/5", {"body": "hi"}, True),
        ("PUT", "/repos/acme/widgets/pulls/3/merge", {}, True),
        ("DELETE", "/repos/acme/widgets/issues/1/labels/bug", None, True),
        ("POST", "graphql", {"query": "query Items { viewer { login } }"}, False),
        ("POST", "graphql", {"query": "{ viewer { login } }"}, False),
        ("POST", "graphql", {"query": "mutation Set { x }"}, True),
        ("POST", "graphql", {"query": "# why\n  mutation Set { x }"}, True),
        ("POST", "graphql", {"query": "query Q { mutation }"}, False),
    ],
)
def test_what_github_counts_as_content_creating(
    method: str, path: str, body: Any, counted: bool
) -> None:
    github = GitHubApp(api_url=TEST_API_URL, app_id=4242, private_key=app_private_key())
    target = graphql_url(TEST_API_URL) if path == "graphql" else TEST_API_URL + path
    assert github.creates_content(method, target, body) is counted


def test_the_limits_are_settings_above_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings(_env_file=None)
    assert WriteLimits.of(defaults) == WriteLimits(per_minute=80, per_hour=500)
    assert _limits(monkeypatch, 3, per_hour=40) == WriteLimits(per_minute=3, per_hour=40)
    monkeypatch.setenv("OPENASE_GITHUB_WRITES_PER_HOUR", "0")
    with pytest.raises(ValidationError, match="github_writes_per_hour"):
        Settings(_env_file=None)
