"""Projects (v2) boards through the GitHub App client, against the GraphQL fake (which
checks each document against GitHub's schema): the documents sent, the variables, and how
GraphQL's errors inside a 200 become the client's errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.base import CodeHost, ProjectItemInfo
from adapters.errors import RateLimited, RequestRejected, TransientError
from adapters.github.client import GitHubApp
from adapters.github.projects import ISSUE_ITEMS, ITEM_NODE, SET_OPTION
from bot.settings import Settings
from tests.fakes.github_api import FakeGitHubAPI, FakeRepo
from tests.fakes.github_graphql import FakeGitHubGraphQL

INSTALLATION = 77
REPO = "acme/widgets"


@pytest.fixture
def widgets(github_api: FakeGitHubAPI) -> FakeRepo:
    github_api.add_installation(INSTALLATION, "acme")
    repo = github_api.add_repo(REPO, 555, INSTALLATION)
    github_api.add_issue(repo, 7, title="Add a widget")
    return repo


@pytest.fixture
def boards(github_api: FakeGitHubAPI) -> FakeGitHubGraphQL:
    return FakeGitHubGraphQL(github_api)


@pytest.fixture
def app(settings: Settings) -> GitHubApp:
    return GitHubApp(
        api_url=settings.api_url,
        app_id=settings.github_app_id or 0,
        private_key=settings.github_private_key_pem() or "",
    )


@pytest.fixture
def host(app: GitHubApp) -> CodeHost:
    return app


def graphql_sent(github_api: FakeGitHubAPI) -> list[Any]:
    """The JSON body of each request to the GraphQL endpoint (beside /api/v3 on GHES)."""
    return [
        json.loads(request.content)
        for request in github_api.requests
        if request.method == "POST" and request.url.path == "/api/graphql"
    ]


async def test_the_cards_of_an_issue(
    host: CodeHost, github_api: FakeGitHubAPI, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    roadmap = boards.add_board("Roadmap")
    card = boards.add_card(roadmap, widgets, 7, status="Todo")
    hidden = boards.add_board("Someone's own board")
    hidden.readable = False
    boards.add_card(hidden, widgets, 7)

    found = await host.project_items_of_issue(REPO, 7, INSTALLATION, field="Status", first=20)

    assert [item["id"] for item in found.items] == [card.id]
    (item,) = found.items
    assert item["project"]["title"] == "Roadmap"
    assert item["project"]["field"]["id"] == roadmap.field_id
    assert [o["name"] for o in item["project"]["field"]["options"]] == [
        "Todo",
        "In Progress",
        "Done",
    ]
    assert item["fieldValueByName"]["name"] == "Todo"
    assert found.hidden == 1
    assert [error["type"] for error in found.forbidden] == ["FORBIDDEN"]
    variables = {"owner": "acme", "name": "widgets", "number": 7, "field": "Status", "first": 20}
    assert graphql_sent(github_api) == [{"query": ISSUE_ITEMS, "variables": variables}]


async def test_an_issue_github_does_not_know_is_a_404(
    host: CodeHost, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    with pytest.raises(RequestRejected, match="Could not resolve to an Issue") as caught:
        await host.project_items_of_issue(REPO, 99, INSTALLATION, field="Status", first=20)
    assert caught.value.status == 404
    assert "the project items of acme/widgets#99" in str(caught.value)


async def test_a_card_is_put_in_a_column(
    host: CodeHost, github_api: FakeGitHubAPI, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    board = boards.add_board("Roadmap")
    card = boards.add_card(board, widgets, 7, status="Todo")
    option = board.option_id("Done")

    assert await host.set_project_item_option(
        board.id, card.id, board.field_id, option, INSTALLATION
    )

    assert boards.status_of(card) == "Done"
    variables = {"project": board.id, "item": card.id, "field": board.field_id, "option": option}
    assert graphql_sent(github_api) == [{"query": SET_OPTION, "variables": variables}]


async def test_a_board_the_app_may_not_write_refuses_the_move(
    host: CodeHost, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    board = boards.add_board("Roadmap")
    board.writable = False
    card = boards.add_card(board, widgets, 7, status="Todo")

    moved = await host.set_project_item_option(
        board.id, card.id, board.field_id, board.option_id("Done"), INSTALLATION
    )

    assert moved is False
    assert boards.status_of(card) == "Todo"


async def test_what_a_card_is(
    host: CodeHost, github_api: FakeGitHubAPI, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    board = boards.add_board("Roadmap")
    card = boards.add_card(board, widgets, 7, status="In Progress")
    draft = boards.add_card(board, None, None)

    assert await host.project_item(card.id, INSTALLATION, field="Status") == ProjectItemInfo(
        item_id=card.id, project_id=board.id, repo=REPO, number=7, status="In Progress"
    )
    assert await host.project_item(draft.id, INSTALLATION, field="Status") == ProjectItemInfo(
        item_id=draft.id, project_id=board.id, repo=None, number=None, status=None
    )
    assert await host.project_item("PVTI_gone", INSTALLATION, field="Status") is None
    assert graphql_sent(github_api)[0] == {
        "query": ITEM_NODE,
        "variables": {"id": card.id, "field": "Status"},
    }


async def test_a_card_on_a_board_out_of_reach_is_refused(
    host: CodeHost, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    board = boards.add_board("Private roadmap")
    board.readable = False
    card = boards.add_card(board, widgets, 7, status="Todo")

    with pytest.raises(RequestRejected, match=f"GitHub refused project item {card.id}") as caught:
        await host.project_item(card.id, INSTALLATION, field="Status")
    assert caught.value.status == 403


# --- errors inside a 200 ---------------------------------------------------------------------


async def test_a_graphql_rate_limit_waits_for_its_reset(
    app: GitHubApp, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    message = f"API rate limit exceeded for installation ID {INSTALLATION}."
    boards.fail_next([{"type": "RATE_LIMITED", "message": message}])

    with pytest.raises(RateLimited, match="GitHub GraphQL rate limit") as caught:
        await app.graphql(ITEM_NODE, {"id": "PVTI_x", "field": "Status"}, INSTALLATION, "it")
    assert caught.value.retry_at > datetime.now(UTC) + timedelta(minutes=50)  # resets in 1h


async def test_other_graphql_errors_are_transient(
    app: GitHubApp, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    boards.fail_next([{"message": "Something went wrong while executing your query."}])

    with pytest.raises(TransientError, match="GitHub GraphQL, a card: Something went wrong"):
        await app.graphql(ITEM_NODE, {"id": "PVTI_x", "field": "Status"}, INSTALLATION, "a card")


async def test_the_fake_refuses_documents_github_would_refuse(
    app: GitHubApp, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    misspelt = ISSUE_ITEMS.replace("fieldValueByName", "fieldValueByNam")
    variables = {"owner": "acme", "name": "widgets", "number": 7, "field": "Status", "first": 5}
    with pytest.raises(TransientError, match="Field 'fieldValueByNam' doesn't exist"):
        await app.graphql(misspelt, variables, INSTALLATION, "a misspelt query")

    with pytest.raises(TransientError, match=r"Variable \$number of type Int! was provided"):
        await app.graphql(ISSUE_ITEMS, {**variables, "number": "7"}, INSTALLATION, "it")

    wrong_type = (
        'mutation M($o: ID!) { updateProjectV2ItemFieldValue(input: {projectId: "P", '
        'itemId: "I", fieldId: "F", value: {singleSelectOptionId: $o}}) { clientMutationId } }'
    )
    with pytest.raises(TransientError, match=r"Type mismatch on variable \$o"):
        await app.graphql(wrong_type, {"o": "x"}, INSTALLATION, "a mutation")
    assert boards.mutations == []
