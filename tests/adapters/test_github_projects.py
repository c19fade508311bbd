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
from adapters.github.transport import graphql_url
from bot.registry import Clients
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


# --- the fake answers what GitHub would, word for word ---------------------------------------


async def _post(settings: Settings, query: str, variables: dict[str, Any] | None = None) -> Any:
    """The fake's answer to one document, as GitHub's JSON."""
    github = Clients().github_app(settings)
    body = {"query": query, "variables": variables or {}}
    url = graphql_url(github.api_url)
    return (await github.request("POST", url, installation_id=INSTALLATION, json=body)).json()


REPO_FIELD = 'repository(owner: "acme", name: "widgets")'
MUTATE = "mutation { updateProjectV2ItemFieldValue(input: %s) { clientMutationId } }"
INPUT = "UpdateProjectV2ItemFieldValueInput"


@pytest.mark.parametrize(
    ("query", "refusals"),
    [
        pytest.param(
            '{ repository(owner: "acme") { id } }',
            [
                (
                    "missingRequiredArguments",
                    "Field 'repository' is missing required arguments: name",
                )
            ],
            id="missing argument",
        ),
        pytest.param(
            '{ repository(owner: "acme", name: "widgets", bogus: 1) { id } }',
            [("argumentNotAccepted", "Field 'repository' doesn't accept argument 'bogus'")],
            id="unknown argument",
        ),
        pytest.param(
            f"{{ {REPO_FIELD} {{ name {{ length }} }} }}",
            [
                (
                    "selectionMismatch",
                    "Selections can't be made on scalars (field 'name' returns String)",
                )
            ],
            id="selection on a scalar",
        ),
        pytest.param(
            f"{{ {REPO_FIELD} {{ issue(number: 7) }} }}",
            [
                (
                    "selectionMismatch",
                    "Field 'issue' of type 'Issue' must have a selection of subfields. "
                    "Try 'issue { ... }'.",
                )
            ],
            id="no selection on an object",
        ),
        pytest.param(
            '{ node(id: "x") { ... on Bogus { id } } }',
            [("undefinedType", "No such type Bogus, so it can't be a fragment condition")],
            id="unknown fragment type",
        ),
        pytest.param(
            '{ node(id: "x") { ... on ProjectV2SingleSelectFieldOption { id } } }',
            [
                (
                    "cannotSpreadFragment",
                    "Fragment on ProjectV2SingleSelectFieldOption can't be spread inside Node",
                )
            ],
            id="impossible fragment",
        ),
        pytest.param(
            "query Q { node(id: $id) { id } }",
            [("variableNotDefined", "Variable $id is used by Q but not declared")],
            id="undeclared variable",
        ),
        pytest.param(
            'query Q($x: Strin) { node(id: "x") { id } }',
            [
                ("variableNotUsed", "Variable $x is declared by Q but not used"),
                ("variableRequiresValidType", "Strin isn't a defined input type (on $x)"),
            ],
            id="unused variable of an unknown type",
        ),
        pytest.param(
            f'{{ {REPO_FIELD} {{ issue(number: "7") {{ id }} }} }}',
            [
                (
                    "argumentLiteralsIncompatible",
                    "argument 'number' on Field 'issue' has an invalid value (\"7\"). "
                    "Expected type 'Int!'.",
                )
            ],
            id="string for an Int",
        ),
        pytest.param(
            '{ repository(owner: null, name: "widgets") { id } }',
            [
                (
                    "argumentLiteralsIncompatible",
                    "argument 'owner' on Field 'repository' has an invalid value (null)",
                )
            ],
            id="null for a String!",
        ),
        pytest.param(
            '{ node(id: "x") { ... on ProjectV2Item { '
            'fieldValueByName(name: ["S"]) { __typename } } } }',
            [
                (
                    "argumentLiteralsIncompatible",
                    "argument 'name' on Field 'fieldValueByName' has an invalid value ([\"S\"]). "
                    "Expected type 'String!'.",
                )
            ],
            id="list for a String",
        ),
        pytest.param(
            MUTATE % '{projectId: "P", itemId: "I", value: {date: "tomorrow"}, bogus: 1}',
            [
                (
                    "missingRequiredInputObjectAttribute",
                    f"Argument 'fieldId' on InputObject '{INPUT}' is required",
                ),
                (
                    "argumentLiteralsIncompatible",
                    "argument 'date' on InputObject 'ProjectV2FieldValue' has an invalid value "
                    "(\"tomorrow\"). Expected type 'Date'.",
                ),
                ("argumentNotAccepted", f"InputObject '{INPUT}' doesn't accept argument 'bogus'"),
            ],
            id="input object fields",
        ),
        pytest.param(
            MUTATE % '"P"',
            [
                (
                    "argumentLiteralsIncompatible",
                    "argument 'input' on Field 'updateProjectV2ItemFieldValue' has an invalid "
                    f"value. Expected type '{INPUT}!'.",
                )
            ],
            id="string for an input object",
        ),
        pytest.param(  # graphql-ruby words it otherwise; refused all the same
            f"{{ {REPO_FIELD} {{ id @bogus }} }}",
            [(None, "Unknown directive '@bogus'.")],
            id="unknown directive",
        ),
        pytest.param(
            f"{{ {REPO_FIELD} {{ id }}", [(None, "Unexpected end of document")], id="unclosed"
        ),
        pytest.param(
            f"{{ {REPO_FIELD} {{ }} }}",
            [(None, 'Parse error on "}" at [1, 48]')],
            id="empty selection",
        ),
    ],
)
async def test_the_fake_refuses_as_github_words_it(
    settings: Settings,
    boards: FakeGitHubGraphQL,
    widgets: FakeRepo,
    query: str,
    refusals: list[tuple[str | None, str]],
) -> None:
    answer = await _post(settings, query)

    assert "data" not in answer  # refused before anything ran
    errors = answer["errors"]
    assert [(e.get("extensions", {}).get("code"), e["message"]) for e in errors] == refusals
    assert boards.mutations == []


async def test_a_refusal_says_where_as_github_does(
    settings: Settings, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    query = f'query Q {{\n  {REPO_FIELD} {{\n    issue(number: "7") {{ id }}\n  }}\n}}'

    assert (await _post(settings, query))["errors"] == [
        {
            "path": ["query Q", "repository", "issue"],  # response keys, down to the field
            "extensions": {"code": "argumentLiteralsIncompatible"},
            "locations": [{"line": 3, "column": 5}],
            "message": "argument 'number' on Field 'issue' has an invalid value (\"7\"). "
            "Expected type 'Int!'.",
        }
    ]


async def test_the_fake_refuses_variables_that_do_not_fit_as_github_words_it(
    settings: Settings, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    query = (
        "mutation M($input: UpdateProjectV2ItemFieldValueInput!) {\n"
        "  updateProjectV2ItemFieldValue(input: $input) { clientMutationId }\n}"
    )
    given = {"projectId": "P", "itemId": "I", "value": {"number": "one"}, "bogus": 1}

    assert (await _post(settings, query, {"input": given}))["errors"] == [
        {
            "extensions": {
                "value": given,
                "problems": [
                    {"path": ["fieldId"], "explanation": "Expected value to not be null"},
                    {
                        "path": ["bogus"],
                        "explanation": "Field is not defined on UpdateProjectV2ItemFieldValueInput",
                    },
                    {
                        "path": ["value", "number"],
                        "explanation": 'Could not coerce value "one" to Float',
                    },
                ],
            },
            "locations": [{"line": 1, "column": 12}],  # the variable's definition
            "message": "Variable $input of type UpdateProjectV2ItemFieldValueInput! was "
            "provided invalid value",
        }
    ]
    assert boards.mutations == []


async def test_the_fake_runs_what_github_runs_beyond_what_we_send(
    settings: Settings, boards: FakeGitHubGraphQL, widgets: FakeRepo
) -> None:
    # Named fragments, directives and list literals: graphql-core runs them all.
    card = boards.add_card(boards.add_board("Roadmap"), widgets, 7, status="Todo")
    query = """
    query Card($id: ID!, $status: Boolean!) { card: node(id: $id) { __typename ...Card } }
    fragment Card on ProjectV2Item {
      id type
      project {
        title
        field(name: "Status") {
          ... on ProjectV2SingleSelectField { options(names: ["Done", "Todo"]) { name } }
        }
      }
      status: fieldValueByName(name: "Status") @include(if: $status) {
        ... on ProjectV2ItemFieldSingleSelectValue { name }
      }
    }
    """

    assert await _post(settings, query, {"id": card.id, "status": True}) == {
        "data": {
            "card": {
                "__typename": "ProjectV2Item",
                "id": card.id,
                "type": "ISSUE",
                "project": {
                    "title": "Roadmap",
                    "field": {"options": [{"name": "Todo"}, {"name": "Done"}]},
                },
                "status": {"name": "Todo"},
            }
        }
    }
