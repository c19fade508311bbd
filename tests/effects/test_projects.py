"""Projects (v2) boards: which column stands for which state, the outbox performer that moves
a card (through the real outbox, against the GraphQL fake), and resolving a moved card."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.errors import RequestRejected
from bot.config.states import State
from bot.deps import Deps
from bot.effects.kinds import EffectKind
from bot.effects.outbox import add_effect
from bot.effects.perform import perform_pending
from bot.effects.projects import (
    ProjectItem,
    resolve_item,
    state_for_option,
    status_option_for,
)
from bot.processes.worker import PERFORMERS
from bot.registry import Clients
from bot.settings import Settings
from bot.tables.workflow import EffectStatus, OutboxEffect
from harness_store.db import transaction
from tests.fakes.github_api import FakeGitHubAPI, FakeRepo
from tests.fakes.github_graphql import FakeGitHubGraphQL
from tests.support.helpers import github_example

INSTALLATION = 77
REPO = "acme/widgets"
STATES = [*State, "security_review"]  # the canonical states and one custom relay stage


@pytest.fixture
def widgets(github_api: FakeGitHubAPI) -> FakeRepo:
    github_api.add_installation(INSTALLATION, "acme")
    repo = github_api.add_repo(REPO, 555, INSTALLATION)
    github_api.add_issue(repo, 7, title="Add a widget", labels=("openase",))
    return repo


@pytest.fixture
def boards(github_api: FakeGitHubAPI) -> FakeGitHubGraphQL:
    return FakeGitHubGraphQL(github_api)


async def _move(
    deps: Deps, state: str, *, key: str = "project:1#1", number: int = 7
) -> OutboxEffect:
    """Decide one project-status effect, perform what is due, and return its row."""
    payload = {"repo": REPO, "number": number, "state": state}
    async with transaction(deps.sessions) as session:
        await _add(session, key, payload)
    await _perform(deps)
    return await _row(deps, key)


async def _add(session: AsyncSession, key: str, payload: dict[str, Any]) -> None:
    assert await add_effect(
        session,
        key=key,
        kind=EffectKind.PROJECT_STATUS,
        payload=payload,
        ticket_id=None,
        installation_id=INSTALLATION,
    )


async def _perform(deps: Deps) -> None:
    await perform_pending(deps, PERFORMERS)


async def _row(deps: Deps, key: str) -> OutboxEffect:
    async with deps.sessions() as session:
        return (
            await session.execute(select(OutboxEffect).where(OutboxEffect.key == key))
        ).scalar_one()


async def _make_due(deps: Deps) -> None:
    async with transaction(deps.sessions) as session:
        await session.execute(
            update(OutboxEffect)
            .where(OutboxEffect.status == EffectStatus.PENDING)
            .values(not_before=OutboxEffect.created_at)
        )


# --- columns and states -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "options", "expected"),
    [
        ("in_progress", ["Todo", "In progress", "Done"], "In progress"),
        ("in_progress", ["Todo", "In Progress", "Done"], "In Progress"),
        ("in_progress", ["in-progress"], "in-progress"),
        ("in_progress", ["IN_PROGRESS"], "IN_PROGRESS"),
        ("todo", ["Todo"], "Todo"),
        ("todo", ["To do"], "To do"),
        ("todo", ["To-do"], "To-do"),
        ("backlog", ["Backlog", "Todo"], "Backlog"),
        ("in_review", ["In review"], "In review"),
        ("in_review", ["Review"], "Review"),
        ("in_review", ["Review", "In Review"], "In Review"),  # its own name beats the alias
        ("merging", ["Merging"], "Merging"),
        ("done", ["Todo", "Done"], "Done"),
        ("canceled", ["Canceled"], "Canceled"),
        ("canceled", ["Cancelled"], "Cancelled"),
        ("failed", ["Failed"], "Failed"),
        ("security_review", ["Security review"], "Security review"),
        ("in_review", ["Todo", "In Progress", "Done"], None),  # GitHub's default board
        ("done", [], None),
        ("todo", ["Todo ", " TODO"], "Todo "),  # look-alikes: the first wins
    ],
)
def test_status_option_for(state: str, options: list[str], expected: str | None) -> None:
    assert status_option_for(state, options) == expected


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("In Progress", "in_progress"),
        ("in progress", "in_progress"),
        ("To do", "todo"),
        ("To-do", "todo"),
        ("Todo", "todo"),
        ("Backlog", "backlog"),
        ("Review", "in_review"),
        ("In review", "in_review"),
        ("Merging", "merging"),
        ("Done", "done"),
        ("Cancelled", "canceled"),
        ("Canceled", "canceled"),
        ("Failed", "failed"),
        ("Security Review", "security_review"),
        ("Shipped", None),
        ("", None),
    ],
)
def test_state_for_option(option: str, expected: str | None) -> None:
    assert state_for_option(option, STATES) == expected


def test_a_stage_named_like_an_alias_wins_over_the_alias() -> None:
    assert state_for_option("Review", [*State, "review"]) == "review"
    assert state_for_option("Review", list(State)) == "in_review"
    assert state_for_option("In progress", ["todo", "done"]) is None  # not a state here


@pytest.mark.parametrize("state", STATES)
def test_every_state_round_trips_through_its_column(state: str) -> None:
    columns = ["Backlog", "To do", "In Progress", "Review", "Merging", "Done"]
    columns += ["Cancelled", "Failed", "Security review"]
    option = status_option_for(state, columns)
    assert option is not None
    assert state_for_option(option, STATES) == state


# --- moving the card (through the outbox) -----------------------------------------------------


async def test_the_card_moves_to_the_states_column(
    deps: Deps, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    board = boards.add_board("Roadmap")
    card = boards.add_card(board, widgets, 7, status="Todo")

    row = await _move(deps, "in_progress")

    assert row.status == EffectStatus.DONE, row.last_error
    assert boards.status_of(card) == "In Progress"
    assert boards.mutations == [
        {
            "projectId": board.id,
            "itemId": card.id,
            "fieldId": board.field_id,
            "value": {"singleSelectOptionId": board.option_id("In Progress")},
        }
    ]
    assert boards.operations == ["ProjectItemsOfIssue", "SetProjectStatus"]
    assert row.result is not None
    assert row.result["summary"] == "project status In Progress on 1 board"
    assert row.result["moved"] == 1
    assert row.result["boards"] == [
        {
            "project": "Roadmap",
            "project_id": board.id,
            "item_id": card.id,
            "option": "In Progress",
            "moved": True,
        }
    ]


async def test_a_card_already_in_its_column_is_not_touched(
    deps: Deps, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    board = boards.add_board("Roadmap", ["Todo", "In progress", "Done"])
    card = boards.add_card(board, widgets, 7, status="In progress")

    row = await _move(deps, "in_progress")

    assert row.status == EffectStatus.DONE, row.last_error
    assert boards.mutations == []  # no write, so no projects_v2_item.edited echo either
    assert boards.status_of(card) == "In progress"
    assert row.result is not None
    assert row.result["summary"] == "project status already In progress"
    assert row.result["moved"] == 0


async def test_a_card_in_an_alias_column_counts_as_there(
    deps: Deps, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    # A person put it in "Review" (in_review); the board also has "In review": left alone.
    board = boards.add_board("Roadmap", ["Todo", "Review", "In review", "Done"])
    card = boards.add_card(board, widgets, 7, status="Review")

    row = await _move(deps, "in_review")

    assert row.status == EffectStatus.DONE, row.last_error
    assert boards.mutations == []
    assert boards.status_of(card) == "Review"


async def test_performing_again_after_a_crash_moves_nothing_twice(
    deps: Deps, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    board = boards.add_board("Roadmap")
    card = boards.add_card(board, widgets, 7, status="Todo")
    await _move(deps, "done")

    async with transaction(deps.sessions) as session:  # as if the worker died before "done"
        await session.execute(
            update(OutboxEffect).values(status=EffectStatus.PENDING, result=None, done_at=None)
        )
    await _make_due(deps)
    await _perform(deps)

    row = await _row(deps, "project:1#1")
    assert row.status == EffectStatus.DONE
    assert len(boards.mutations) == 1
    assert boards.status_of(card) == "Done"


async def test_an_issue_on_no_board_is_done_with_nothing_to_do(
    deps: Deps, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    other = boards.add_board("Other team")
    elsewhere = boards.add_card(other, widgets, 8)  # another issue's card
    archived = boards.add_card(other, widgets, 7, status="Todo")
    archived.archived = True  # archived cards are not moved

    row = await _move(deps, "in_progress")

    assert row.status == EffectStatus.DONE, row.last_error
    assert boards.mutations == []
    assert boards.operations == ["ProjectItemsOfIssue"]
    assert row.result is not None
    assert row.result["summary"] == "no project board"
    assert row.result["boards"] == []
    assert boards.status_of(elsewhere) is None


async def test_the_card_moves_on_every_board_with_a_column_for_the_state(
    deps: Deps, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    roadmap = boards.add_board("Roadmap")
    team = boards.add_board("Team", ["Backlog", "Ready", "In progress", "In review", "Done"])
    on_roadmap = boards.add_card(roadmap, widgets, 7, status="Todo")
    on_team = boards.add_card(team, widgets, 7)  # no status yet

    row = await _move(deps, "in_progress")

    assert row.status == EffectStatus.DONE, row.last_error
    assert (boards.status_of(on_roadmap), boards.status_of(on_team)) == (
        "In Progress",
        "In progress",
    )
    assert [m["itemId"] for m in boards.mutations] == [on_roadmap.id, on_team.id]
    assert row.result is not None
    assert row.result["moved"] == 2
    assert row.result["summary"] == "project status In Progress, In progress on 2 boards"


async def test_boards_without_a_column_for_the_state_are_left_alone(
    deps: Deps, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    plain = boards.add_board("Plain")  # Todo, In Progress, Done: no review column
    no_field = boards.add_board("No status", field_name=None)
    text_field = boards.add_board("Text status", single_select=False)
    closed = boards.add_board("Old", ["Todo", "In review"])
    closed.closed = True
    for board in (plain, no_field, text_field, closed):
        boards.add_card(board, widgets, 7)

    row = await _move(deps, "in_review")

    assert row.status == EffectStatus.DONE, row.last_error
    assert boards.mutations == []
    assert row.result is not None
    assert [b["reason"] for b in row.result["boards"]] == [
        "no Status column for in_review",
        "no single-select Status field",
        "no single-select Status field",
        "board closed",
    ]
    assert row.result["summary"] == "no Status column for in_review on 4 boards"


async def test_a_custom_stage_moves_to_its_own_column(
    deps: Deps, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    board = boards.add_board("Roadmap", ["Todo", "In progress", "Security review", "Done"])
    card = boards.add_card(board, widgets, 7, status="In progress")

    row = await _move(deps, "security_review")

    assert row.status == EffectStatus.DONE, row.last_error
    assert boards.status_of(card) == "Security review"


async def test_a_board_the_app_may_not_read_refuses_with_the_permission_to_grant(
    deps: Deps, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    board = boards.add_board("Private roadmap")
    board.readable = False
    boards.add_card(board, widgets, 7, status="Todo")

    row = await _move(deps, "in_progress")

    assert row.status == EffectStatus.FAILED
    assert row.attempts == 1  # not retried: granting a permission is a person's job
    assert "Resource not accessible by integration" in (row.last_error or "")
    assert "organization_projects" in (row.last_error or "")
    assert boards.mutations == []
    assert row.result is not None
    assert row.result["forbidden"] is True


async def test_a_board_the_app_may_read_but_not_write_refuses(
    deps: Deps, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    board = boards.add_board("Roadmap")
    board.writable = False
    card = boards.add_card(board, widgets, 7, status="Todo")

    row = await _move(deps, "in_progress")

    assert row.status == EffectStatus.FAILED
    assert row.attempts == 1
    assert "organization_projects: read and write" in (row.last_error or "")
    assert boards.status_of(card) == "Todo"
    assert len(boards.mutations) == 1  # tried once


async def test_a_board_out_of_reach_does_not_stop_the_others(
    deps: Deps, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    hidden = boards.add_board("Someone's own board")
    hidden.readable = False
    boards.add_card(hidden, widgets, 7, status="Todo")
    roadmap = boards.add_board("Roadmap")
    card = boards.add_card(roadmap, widgets, 7, status="Todo")

    row = await _move(deps, "done")

    assert row.status == EffectStatus.DONE, row.last_error
    assert boards.status_of(card) == "Done"
    assert row.result is not None
    assert row.result["hidden"] == 1
    assert row.result["summary"] == "project status Done on 1 board (1 board not accessible)"


async def test_a_server_error_is_retried_by_the_outbox(
    deps: Deps, github_api: FakeGitHubAPI, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    board = boards.add_board("Roadmap")
    card = boards.add_card(board, widgets, 7, status="Todo")
    github_api.queue(502, {"message": "Bad Gateway"}, method="POST", path_regex="^/graphql$")

    row = await _move(deps, "in_progress")

    assert row.status == EffectStatus.PENDING
    assert row.attempts == 1
    assert "502" in (row.last_error or "")
    assert boards.status_of(card) == "Todo"

    await _make_due(deps)
    await _perform(deps)
    row = await _row(deps, "project:1#1")
    assert (row.status, row.attempts) == (EffectStatus.DONE, 2)
    assert boards.status_of(card) == "In Progress"


async def test_a_graphql_error_in_a_200_is_retried(
    deps: Deps, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    board = boards.add_board("Roadmap")
    card = boards.add_card(board, widgets, 7, status="Todo")
    # What GitHub answers when a query times out on its side.
    boards.fail_next(
        [
            {
                "message": "Something went wrong while executing your query. Please include "
                "`0400:3A0B:1C2D` when reporting this issue."
            }
        ]
    )

    row = await _move(deps, "in_progress")
    assert row.status == EffectStatus.PENDING
    assert "Something went wrong" in (row.last_error or "")

    await _make_due(deps)
    await _perform(deps)
    assert (await _row(deps, "project:1#1")).status == EffectStatus.DONE
    assert boards.status_of(card) == "In Progress"


async def test_a_graphql_rate_limit_waits_for_its_reset(
    deps: Deps, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    boards.add_card(boards.add_board("Roadmap"), widgets, 7, status="Todo")
    message = f"API rate limit exceeded for installation ID {INSTALLATION}."
    boards.fail_next([{"type": "RATE_LIMITED", "message": message}])

    row = await _move(deps, "in_progress")

    assert row.status == EffectStatus.PENDING
    assert row.attempts == 0  # a rate limit is not a failed try
    assert row.not_before > datetime.now(UTC) + timedelta(minutes=50)  # the fake resets in 1h


async def test_an_issue_github_does_not_know_fails_at_once(
    deps: Deps, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    row = await _move(deps, "in_progress", number=99)

    assert row.status == EffectStatus.FAILED
    assert row.attempts == 1
    assert "Could not resolve to an Issue with the number of 99" in (row.last_error or "")


# --- resolving a card a person moved ----------------------------------------------------------


async def test_resolve_item_names_the_issue_and_its_column(
    settings: Settings, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    webhook = github_example("projects_v2_item", "edited")["projects_v2_item"]
    board = boards.add_board("Roadmap")
    boards.add_card(board, widgets, 7, status="In Progress", card_id=webhook["node_id"])

    item = await resolve_item(Clients().github_app(settings), INSTALLATION, webhook["node_id"])

    assert item == ProjectItem(
        item_id=webhook["node_id"],
        project_id=board.id,
        repo=REPO,
        number=7,
        status="In Progress",
    )
    assert state_for_option(item.status or "", STATES) == "in_progress"


async def test_resolve_item_of_cards_without_an_issue_or_a_status(
    settings: Settings, github_api: FakeGitHubAPI, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    github_api.add_pull(widgets, 12, title="A PR")
    board = boards.add_board("Roadmap")
    unset = boards.add_card(board, widgets, 7)
    pull = boards.add_card(board, widgets, 12, status="Done", content_type="PullRequest")
    draft = boards.add_card(board, None, None, status="Todo")
    github = Clients().github_app(settings)

    assert await resolve_item(github, INSTALLATION, unset.id) == ProjectItem(
        item_id=unset.id, project_id=board.id, repo=REPO, number=7, status=None
    )
    assert await resolve_item(github, INSTALLATION, pull.id) == ProjectItem(
        item_id=pull.id, project_id=board.id, repo=None, number=None, status="Done"
    )
    assert await resolve_item(github, INSTALLATION, draft.id) == ProjectItem(
        item_id=draft.id, project_id=board.id, repo=None, number=None, status="Todo"
    )
    assert await resolve_item(github, INSTALLATION, "PVTI_gone") is None


async def test_resolve_item_on_a_board_out_of_reach_is_rejected(
    settings: Settings, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    board = boards.add_board("Private roadmap")
    board.readable = False
    card = boards.add_card(board, widgets, 7, status="Todo")

    with pytest.raises(RequestRejected) as caught:
        await resolve_item(Clients().github_app(settings), INSTALLATION, card.id)
    assert caught.value.status == 403
