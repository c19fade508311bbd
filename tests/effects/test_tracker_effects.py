"""The outbox's Linear and Jira performers against the recording fakes of both trackers
(Linear's GraphQL schema through respx, Jira's REST API on 127.0.0.1): what each changes on
the tracker, that doing it again duplicates nothing, and how each failure surfaces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from pydantic import AnyHttpUrl, SecretStr
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.errors import RateLimited, RequestRejected
from bot.config.states import State
from bot.deps import Deps
from bot.effects.outbox import EffectContext, EffectRefused, add_effect
from bot.effects.perform import perform_pending
from bot.effects.trackers import (
    JIRA_LANE,
    LINEAR_LANE,
    PERFORMERS,
    TrackerEffect,
    jira_comment,
    jira_labels,
    jira_link,
    jira_state,
    jira_status_comment,
    linear_comment,
    linear_labels,
    linear_link,
    linear_reaction,
    linear_state,
    linear_status_comment,
)
from bot.errors import ConfigError
from bot.registry import GitHubApp, TrackerClients
from bot.tables.workflow import EffectStatus, OutboxEffect
from harness_store.db import transaction
from tests.fakes.jira_server import FakeJira
from tests.fakes.linear_api import FakeLinear

Json = dict[str, Any]
STATUS_LABELS = ["openase/todo", "openase/in-progress", "openase/in-review", "openase/done"]


@pytest.fixture
def linear_fake(linear_fake: FakeLinear) -> FakeLinear:
    linear_fake.add_team("ENG", "Engineering")
    return linear_fake


@pytest.fixture
def jira_fake(jira_fake: FakeJira) -> FakeJira:
    jira_fake.add_project("PROJ", "Project")
    return jira_fake


@pytest.fixture
def clients(tracker_clients: TrackerClients) -> TrackerClients:
    return tracker_clients


class Perform:
    """Runs a performer as the outbox would, with `previous` as the scope's last result."""

    def __init__(self, clients: TrackerClients, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.clients = clients
        self.sessions = sessions

    def context(self, kind: str, previous: Json | None = None) -> EffectContext:
        return EffectContext(
            id=1,
            key=f"{kind}:1#1",
            kind=kind,
            ticket_id=None,
            installation_id=LINEAR_LANE if kind.startswith("linear") else JIRA_LANE,
            attempt=1,
            progress=None,
            previous=previous,
            github=cast(GitHubApp, None),  # tracker effects never reach GitHub
            sessions=self.sessions,
            trackers=self.clients,
        )


@pytest.fixture
def perform(clients: TrackerClients, session_deps: Deps) -> Perform:
    return Perform(clients, session_deps.sessions)


def operations(fake: FakeLinear) -> list[str]:
    return [name for name, _ in fake.calls]


def test_every_effect_kind_has_its_performer() -> None:
    assert set(PERFORMERS) == set(TrackerEffect)


# --- Linear: state -------------------------------------------------------------------------------


def _state_payload(issue: Json, names: list[str], type_: str | None = None) -> Json:
    return {
        "issue_id": issue["id"],
        "team_id": issue["teamId"],
        "state": State.IN_REVIEW,
        "names": names,
        "type": type_,
    }


def _state_of(fake: FakeLinear, issue: Json) -> str:
    stored = fake.issues[issue["id"]]
    states = fake.teams[stored["teamId"]]["states"]
    return str(next(state["name"] for state in states if state["id"] == stored["stateId"]))


async def test_linear_moves_to_the_first_name_the_team_has_in_any_case(
    perform: Perform, linear_fake: FakeLinear
) -> None:
    issue = linear_fake.add_issue("ENG", "Add a widget")
    payload = _state_payload(issue, ["Code Review", "in review"], "started")

    result = await linear_state(perform.context("linear_state"), payload)

    assert result == {"moved": True, "state": "In Review", "summary": "moved to In Review"}
    assert _state_of(linear_fake, issue) == "In Review"
    assert operations(linear_fake) == ["TeamStates", "MoveIssue"]


async def test_linear_falls_back_on_the_first_state_of_the_type(
    perform: Perform, linear_fake: FakeLinear
) -> None:
    team = linear_fake.team("ENG")
    for state in team["states"]:  # a team that renamed its started states
        state["name"] = {"In Progress": "Doing", "In Review": "Checking"}.get(
            state["name"], state["name"]
        )
    issue = linear_fake.add_issue("ENG", "Add a widget")

    result = await linear_state(
        perform.context("linear_state"), _state_payload(issue, ["In Review"], "started")
    )

    assert result["moved"] is True
    assert result["state"] == "Doing"
    assert _state_of(linear_fake, issue) == "Doing"


async def test_linear_without_such_a_state_leaves_the_issue_alone(
    perform: Perform, linear_fake: FakeLinear
) -> None:
    issue = linear_fake.add_issue("ENG", "Add a widget", state="Backlog")

    result = await linear_state(perform.context("linear_state"), _state_payload(issue, ["QA"]))

    assert result == {"moved": False, "summary": "team has no state for in_review"}
    assert _state_of(linear_fake, issue) == "Backlog"
    assert "MoveIssue" not in operations(linear_fake)


async def test_a_rate_limited_linear_answer_raises_rate_limited(
    perform: Perform, linear_fake: FakeLinear
) -> None:
    issue = linear_fake.add_issue("ENG", "Add a widget")
    reset = linear_fake.rate_limit(reset_in=120)

    with pytest.raises(RateLimited) as raised:
        await linear_state(perform.context("linear_state"), _state_payload(issue, ["Done"]))

    assert abs(raised.value.retry_at - reset) < timedelta(milliseconds=2)
    assert _state_of(linear_fake, issue) == "Todo"


async def test_the_outbox_defers_a_rate_limited_effect_to_linears_reset(
    deps: Deps,
    linear_fake: FakeLinear,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The outbox builds the process's tracker clients from settings, as a worker does.
    monkeypatch.setattr(
        deps,
        "settings",
        deps.settings.model_copy(
            update={
                "linear_api_key": SecretStr(linear_fake.api_key),
                "linear_api_url": AnyHttpUrl(linear_fake.url),
            }
        ),
    )
    try:
        issue = linear_fake.add_issue("ENG", "Add a widget")
        async with transaction(deps.sessions) as session:
            await add_effect(
                session,
                key="tstate:1#1",
                kind=TrackerEffect.LINEAR_STATE,
                payload=_state_payload(issue, ["Done"]),
                ticket_id=None,
                installation_id=LINEAR_LANE,
            )
        reset = linear_fake.rate_limit(reset_in=300)

        await perform_pending(deps, PERFORMERS, installations=[LINEAR_LANE])

        row = await _effect(deps, "tstate:1#1")
        assert row.status == EffectStatus.PENDING
        assert row.attempts == 0  # a rate limit does not count against the effect
        assert abs(row.not_before - reset) < timedelta(seconds=1)
        assert row.last_error is not None
        assert "rate limited" in row.last_error
        assert _state_of(linear_fake, issue) == "Todo"

        # Once Linear's bucket refills, the same effect goes through.
        async with transaction(deps.sessions) as session:
            await session.execute(update(OutboxEffect).values(not_before=datetime.now(UTC)))
        await perform_pending(deps, PERFORMERS, installations=[LINEAR_LANE])
        assert (await _effect(deps, "tstate:1#1")).status == EffectStatus.DONE
        assert _state_of(linear_fake, issue) == "Done"
    finally:
        await deps.clients.aclose()


async def _effect(deps: Deps, key: str) -> OutboxEffect:
    async with deps.sessions() as session:
        return (
            await session.execute(select(OutboxEffect).where(OutboxEffect.key == key))
        ).scalar_one()


# --- Linear: labels, comments, reactions, links --------------------------------------------------


def _label_names(fake: FakeLinear, issue: Json) -> list[str]:
    return [fake.labels[i]["name"] for i in fake.issues[issue["id"]]["labelIds"]]


async def test_linear_status_label_is_created_added_and_the_others_removed(
    perform: Perform, linear_fake: FakeLinear
) -> None:
    issue = linear_fake.add_issue("ENG", "Add a widget", labels=["openase", "openase/todo"])
    payload = {
        "issue_id": issue["id"],
        "team_id": issue["teamId"],
        "add": "openase/in-progress",
        "remove": [name for name in STATUS_LABELS if name != "openase/in-progress"],
        "color": "fbca04",
    }

    result = await linear_labels(perform.context("linear_labels"), payload)

    assert result["added"] == "openase/in-progress"
    assert result["removed"] == ["openase/todo"]
    assert _label_names(linear_fake, issue) == ["openase", "openase/in-progress"]
    created = [lb for lb in linear_fake.labels.values() if lb["name"] == "openase/in-progress"]
    assert [(lb["color"], lb["teamId"]) for lb in created] == [("#fbca04", issue["teamId"])]

    # Again: the issue already carries it, so nothing is written.
    before = len(linear_fake.calls)
    again = await linear_labels(perform.context("linear_labels"), payload)
    assert (again["added"], again["removed"]) == (None, [])
    assert operations(linear_fake)[before:] == ["Issue"]
    assert _label_names(linear_fake, issue) == ["openase", "openase/in-progress"]


async def test_linear_reuses_a_workspace_label_of_another_case(
    perform: Perform, linear_fake: FakeLinear
) -> None:
    existing = linear_fake.add_label("OpenASE/In-Review")  # a workspace label
    issue = linear_fake.add_issue("ENG", "Add a widget", labels=["openase/in-progress"])

    await linear_labels(
        perform.context("linear_labels"),
        {
            "issue_id": issue["id"],
            "team_id": issue["teamId"],
            "add": "openase/in-review",
            "remove": STATUS_LABELS,  # the one to add is never removed
        },
    )

    assert _label_names(linear_fake, issue) == ["OpenASE/In-Review"]
    assert "CreateLabel" not in operations(linear_fake)
    assert existing["id"] in linear_fake.issues[issue["id"]]["labelIds"]


async def test_linear_status_comment_is_posted_edited_and_reposted_when_deleted(
    perform: Perform, linear_fake: FakeLinear
) -> None:
    issue = linear_fake.add_issue("ENG", "Add a widget")
    fields = {"issue_id": issue["id"], "team_id": issue["teamId"]}

    first = await linear_status_comment(
        perform.context("linear_status_comment"), fields | {"body": "Queued"}
    )
    assert first["created"] is True
    [comment] = linear_fake.comments
    assert (comment["id"], comment["body"]) == (first["comment_id"], "Queued")
    assert comment["userId"] == linear_fake.viewer["id"]
    assert first["url"] == comment["url"]

    second = await linear_status_comment(
        perform.context("linear_status_comment", previous=first), fields | {"body": "Working"}
    )
    assert (second["created"], second["comment_id"]) == (False, first["comment_id"])
    assert [c["body"] for c in linear_fake.comments] == ["Working"]

    linear_fake.remove_comment(first["comment_id"])  # someone deleted it in Linear
    third = await linear_status_comment(
        perform.context("linear_status_comment", previous=second), fields | {"body": "Review"}
    )
    assert third["created"] is True
    assert third["comment_id"] != first["comment_id"]
    assert [(c["id"], c["body"]) for c in linear_fake.comments] == [(third["comment_id"], "Review")]


async def test_linear_status_comment_the_bot_may_not_edit_is_not_duplicated(
    perform: Perform, linear_fake: FakeLinear
) -> None:
    issue = linear_fake.add_issue("ENG", "Add a widget")
    human = linear_fake.add_comment(issue["id"], "my comment")  # not the bot's to edit

    with pytest.raises(RequestRejected) as raised:
        await linear_status_comment(
            perform.context("linear_status_comment", previous={"comment_id": human["id"]}),
            {"issue_id": issue["id"], "team_id": issue["teamId"], "body": "Queued"},
        )

    assert raised.value.status == 403
    assert [c["body"] for c in linear_fake.comments] == ["my comment"]


async def test_linear_one_off_comment(perform: Perform, linear_fake: FakeLinear) -> None:
    issue = linear_fake.add_issue("ENG", "Add a widget")

    result = await linear_comment(
        perform.context("linear_comment"), {"issue_id": issue["id"], "body": "> /run\n\n@ada ok"}
    )

    [comment] = linear_fake.comments
    assert result["comment_id"] == comment["id"]
    assert comment["body"] == "> /run\n\n@ada ok"


async def test_linear_reaction_on_a_comment(perform: Perform, linear_fake: FakeLinear) -> None:
    issue = linear_fake.add_issue("ENG", "Add a widget")
    command = linear_fake.add_comment(issue["id"], "/run")

    result = await linear_reaction(
        perform.context("linear_reaction"), {"comment_id": command["id"], "content": "eyes"}
    )

    [reaction] = linear_fake.reactions
    assert (reaction["commentId"], reaction["emoji"]) == (command["id"], "eyes")
    assert result["reaction_id"] == reaction["id"]
    with pytest.raises(EffectRefused, match="unknown reaction 'heart'"):
        await linear_reaction(
            perform.context("linear_reaction"), {"comment_id": command["id"], "content": "heart"}
        )


async def test_linear_link_twice_is_one_attachment(
    perform: Perform, linear_fake: FakeLinear
) -> None:
    issue = linear_fake.add_issue("ENG", "Add a widget")
    url = "https://github.com/acme/api/pull/9"
    payload = {"issue_id": issue["id"], "url": url, "title": "acme/api#9: Add a widget"}

    await linear_link(perform.context("linear_link"), payload)
    result = await linear_link(perform.context("linear_link"), payload | {"title": "renamed"})

    assert result["url"] == url
    assert [(a["issueId"], a["url"], a["title"]) for a in linear_fake.attachments] == [
        (issue["id"], url, "renamed")
    ]


async def test_linear_effects_refuse_a_payload_without_the_issue(perform: Perform) -> None:
    with pytest.raises(EffectRefused, match="'issue_id'"):
        await linear_comment(perform.context("linear_comment"), {"body": "hi"})


async def test_effects_of_an_unconfigured_tracker_fail_with_what_to_set(
    session_deps: Deps,
) -> None:
    nothing = Perform(TrackerClients(), session_deps.sessions)
    with pytest.raises(ConfigError, match="OPENASE_LINEAR_API_KEY"):
        await linear_comment(nothing.context("linear_comment"), {"issue_id": "x", "body": "b"})
    with pytest.raises(ConfigError, match="OPENASE_JIRA_URL"):
        await jira_comment(nothing.context("jira_comment"), {"key": "PROJ-1", "body": "b"})


# --- Jira ----------------------------------------------------------------------------------------


def _status(fake: FakeJira, key: str) -> str:
    return str(fake.issues[key]["fields"]["status"]["name"])


async def test_jira_moves_by_status_name(perform: Perform, jira_fake: FakeJira) -> None:
    key = jira_fake.add_issue("PROJ", "Add a widget")["key"]
    payload = {"key": key, "state": State.IN_PROGRESS, "names": ["in progress"]}

    result = await jira_state(perform.context("jira_state"), payload)
    assert result == {"moved": True, "status": "In Progress", "summary": "→ in progress"}
    assert _status(jira_fake, key) == "In Progress"

    again = await jira_state(perform.context("jira_state"), payload)
    assert again["moved"] is False
    assert again["status"] == "In Progress"
    assert jira_fake.comments[key] == []


async def test_jira_takes_the_first_name_the_workflow_can_reach(
    perform: Perform, jira_fake: FakeJira
) -> None:
    key = jira_fake.add_issue("PROJ", "Add a widget", status="Done")["key"]  # Done only reopens

    result = await jira_state(
        perform.context("jira_state"),
        {"key": key, "state": State.TODO, "names": ["In Progress", "To Do", "Open"]},
    )

    assert result["moved"] is True
    assert result["status"] == "To Do"
    assert _status(jira_fake, key) == "To Do"
    assert jira_fake.comments[key] == []


async def test_jira_without_a_transition_says_so_once_and_does_not_move(
    perform: Perform, jira_fake: FakeJira
) -> None:
    key = jira_fake.add_issue("PROJ", "Add a widget", status="Done")["key"]

    result = await jira_state(
        perform.context("jira_state"),
        {"key": key, "state": State.IN_REVIEW, "names": ["In Review", "Code Review"]},
    )

    assert result["moved"] is False
    assert result["available"] == ["Reopen → To Do"]
    assert _status(jira_fake, key) == "Done"
    [comment] = jira_fake.comments[key]
    assert comment["author"]["accountId"] == jira_fake.api_user["accountId"]
    body = comment["body"]
    assert f"could not move {key} to In Review or Code Review (in_review)" in body
    assert "from Done" in body
    assert "Available: Reopen → To Do" in body
    assert "jira.states" in body


async def test_jira_without_configured_names_does_nothing(
    perform: Perform, jira_fake: FakeJira
) -> None:
    key = jira_fake.add_issue("PROJ", "Add a widget")["key"]
    before = len(jira_fake.requests)

    result = await jira_state(
        perform.context("jira_state"), {"key": key, "state": State.FAILED, "names": []}
    )

    assert result == {"moved": False, "summary": "no status configured"}
    assert len(jira_fake.requests) == before


async def test_jira_status_label_replaces_the_others(perform: Perform, jira_fake: FakeJira) -> None:
    key = jira_fake.add_issue("PROJ", "Add a widget", labels=["openase", "openase/todo"])["key"]
    payload = {
        "key": key,
        "add": "openase/in-review",
        "remove": STATUS_LABELS,  # includes the one to add: it must not be removed
        "color": "0e8a16",
    }

    result = await jira_labels(perform.context("jira_labels"), payload)
    assert result["added"] == "openase/in-review"
    assert "openase/in-review" not in result["removed"]
    assert jira_fake.issues[key]["fields"]["labels"] == ["openase", "openase/in-review"]

    await jira_labels(perform.context("jira_labels"), payload)
    assert jira_fake.issues[key]["fields"]["labels"] == ["openase", "openase/in-review"]


async def test_jira_status_comment_is_posted_edited_and_reposted_when_deleted(
    perform: Perform, jira_fake: FakeJira
) -> None:
    key = jira_fake.add_issue("PROJ", "Add a widget")["key"]

    first = await jira_status_comment(
        perform.context("jira_status_comment"), {"key": key, "body": "*OpenASE* · Queued"}
    )
    assert first["created"] is True
    assert first["url"] == f"{jira_fake.url}/browse/{key}?focusedCommentId={first['comment_id']}"
    second = await jira_status_comment(
        perform.context("jira_status_comment", previous=first), {"key": key, "body": "Working"}
    )
    assert (second["created"], second["comment_id"]) == (False, first["comment_id"])
    assert [(c["id"], c["body"]) for c in jira_fake.comments[key]] == [
        (first["comment_id"], "Working")
    ]

    jira_fake.remove_comment(key, first["comment_id"])
    third = await jira_status_comment(
        perform.context("jira_status_comment", previous=second), {"key": key, "body": "Review"}
    )
    assert third["created"] is True
    assert third["comment_id"] != first["comment_id"]
    assert [(c["id"], c["body"]) for c in jira_fake.comments[key]] == [
        (third["comment_id"], "Review")
    ]


async def test_jira_one_off_comment(perform: Perform, jira_fake: FakeJira) -> None:
    key = jira_fake.add_issue("PROJ", "Add a widget")["key"]

    result = await jira_comment(
        perform.context("jira_comment"), {"key": key, "body": "bq. /run\n\n@ada queued"}
    )

    [comment] = jira_fake.comments[key]
    assert result["comment_id"] == comment["id"]
    assert comment["body"] == "bq. /run\n\n@ada queued"


async def test_jira_remote_link_is_idempotent(perform: Perform, jira_fake: FakeJira) -> None:
    key = jira_fake.add_issue("PROJ", "Add a widget")["key"]
    url = "https://github.com/acme/api/pull/9"

    await jira_link(perform.context("jira_link"), {"key": key, "url": url, "title": "PR #9"})
    await jira_link(perform.context("jira_link"), {"key": key, "url": url, "title": "PR #9 (v2)"})

    [link] = jira_fake.remote_links[key]
    assert link["globalId"] == url
    assert link["object"] == {"url": url, "title": "PR #9 (v2)"}


async def test_a_rate_limited_jira_answer_raises_rate_limited(
    perform: Perform, jira_fake: FakeJira
) -> None:
    key = jira_fake.add_issue("PROJ", "Add a widget")["key"]
    jira_fake.rate_limit(retry_after=45)
    started = datetime.now(UTC)

    with pytest.raises(RateLimited) as raised:
        await jira_comment(perform.context("jira_comment"), {"key": key, "body": "hello"})

    assert timedelta(seconds=44) < raised.value.retry_at - started < timedelta(seconds=50)
    assert jira_fake.comments[key] == []
