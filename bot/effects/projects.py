"""GitHub Projects (v2) boards: the card's Status column follows the ticket's workflow state,
and a card a person moves moves the ticket (DESIGN §4, issue #4).

Projects v2 is GraphQL only. A board is matched by its columns, not configured: a state
goes to the option of the board's single-select "Status" field named like it ("In
progress" for `in_progress`, "To do" for `todo`, ...). A board without such a column is
left alone, so a board with columns of its own ("Ready", "Shipped") never blocks the bot.

Moving a card is idempotent: a card already in its column is not touched (no mutation, no
`projects_v2_item.edited` echo), and setting an option twice changes nothing anyway.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NotRequired, TypedDict

import httpx

from adapters.errors import RateLimited, RequestRejected, TransientError
from bot.config.states import State
from bot.effects.outbox import EffectContext, EffectRefused
from bot.registry import GitHubApp, graphql_url

Json = dict[str, Any]

STATUS_FIELD = "Status"  # the field GitHub's board templates give every project
MAX_BOARDS = 20  # boards one issue is looked up on; more than a handful is unheard of
# GitHub's GraphQL rate limit answer without a reset header: it asks for a minute.
RATE_LIMIT_WAIT = timedelta(seconds=60)

# Column names besides the state's own that mean the same. Names are compared normalised
# (case, spaces, '-' and '_' ignored), so "To-do" and "In Progress" need no entry.
ALIASES: Mapping[str, tuple[str, ...]] = {
    State.IN_REVIEW: ("Review",),
    State.CANCELED: ("Cancelled",),
}

PERMISSION_HINT = (
    "the App needs the organization permission Projects (organization_projects: read and "
    "write) on the board's organization, accepted on the installation; repository_projects "
    "covers only classic projects, and boards owned by a personal account are out of a "
    "GitHub App's reach"
)

ISSUE_ITEMS = """
query ProjectItemsOfIssue($owner: String!, $name: String!, $number: Int!, $field: String!,
                          $first: Int!) {
  repository(owner: $owner, name: $name) {
    issue(number: $number) {
      id
      projectItems(first: $first, includeArchived: false) {
        nodes {
          id
          project {
            id
            title
            closed
            field(name: $field) {
              ... on ProjectV2SingleSelectField { id name options { id name } }
            }
          }
          fieldValueByName(name: $field) {
            ... on ProjectV2ItemFieldSingleSelectValue { name optionId }
          }
        }
      }
    }
  }
}
"""

SET_OPTION = """
mutation SetProjectStatus($project: ID!, $item: ID!, $field: ID!, $option: String!) {
  updateProjectV2ItemFieldValue(input: {projectId: $project, itemId: $item, fieldId: $field,
                                        value: {singleSelectOptionId: $option}}) {
    projectV2Item { id }
  }
}
"""

ITEM_NODE = """
query ProjectItemNode($id: ID!, $field: String!) {
  node(id: $id) {
    ... on ProjectV2Item {
      id
      project { id }
      content { ... on Issue { number repository { nameWithOwner } } }
      fieldValueByName(name: $field) {
        ... on ProjectV2ItemFieldSingleSelectValue { name }
      }
    }
  }
}
"""


class ProjectStatusPayload(TypedDict):
    repo: str  # OWNER/NAME
    number: int  # the issue
    state: str  # a canonical state or a custom stage
    field: NotRequired[str]  # the single-select field; default "Status"


@dataclass(frozen=True)
class ProjectItem:
    """A card on a board, as a `projects_v2_item.edited` webhook's item resolves."""

    item_id: str
    project_id: str | None
    repo: str | None  # OWNER/NAME of the issue on the card; None for PRs and drafts
    number: int | None  # the issue's number; None for PRs and draft issues
    status: str | None  # the Status option it sits in; None when unset


# --- matching columns and states -------------------------------------------------------------


def _normal(name: str) -> str:
    return re.sub(r"[\s_-]+", "", name).casefold()


def status_option_for(state: str, options: Sequence[str]) -> str | None:
    """The option of a board's Status field standing for `state`; None when it has none."""
    by_name: dict[str, str] = {}
    for option in options:
        by_name.setdefault(_normal(option), option)  # the first of look-alikes wins
    for name in (state, *ALIASES.get(state, ())):
        found = by_name.get(_normal(name))
        if found is not None:
            return found
    return None


def state_for_option(option: str, states: Sequence[str]) -> str | None:
    """The state a Status option stands for (a person moved the card); None if none does."""
    wanted = _normal(option)
    # A state's own name first: a custom stage called "review" beats in_review's alias.
    for state in states:
        if _normal(state) == wanted:
            return state
    for state in states:
        if any(_normal(alias) == wanted for alias in ALIASES.get(state, ())):
            return state
    return None


# --- the performer ------------------------------------------------------------------------------


async def set_project_status(ctx: EffectContext, payload: Json) -> Json:
    """Move the issue's card on every board with a column for the state (outbox performer)."""
    repo, number, state = _repo(payload), _int(payload, "number"), _str(payload, "state")
    field = payload.get("field") or STATUS_FIELD
    if not isinstance(field, str):
        raise EffectRefused("payload field 'field' must be a string")
    owner, name = repo.split("/")
    variables = {"owner": owner, "name": name, "number": number, "field": field}
    what = f"the project items of {repo}#{number}"
    try:
        data, forbidden = await graphql(
            ctx.github, ctx.installation(), ISSUE_ITEMS, {**variables, "first": MAX_BOARDS}, what
        )
    except RequestRejected as exc:
        if exc.status == 404:  # deleted or transferred: asking again will not bring it back
            raise EffectRefused(str(exc), {"moved": 0, "summary": "issue not found"}) from exc
        raise
    issue = (data.get("repository") or {}).get("issue") or {}
    nodes = (issue.get("projectItems") or {}).get("nodes") or []
    # An item the App may not read comes back null (its project is non-null in the schema).
    items = [node for node in nodes if isinstance(node, dict) and node.get("project")]
    hidden = len(nodes) - len(items)
    if forbidden and not items:
        raise _refused(f"reading {what}", forbidden, {"moved": 0, "hidden": hidden})
    boards = [await _move(ctx, item, state, field) for item in items]
    refused = [board for board in boards if board.get("reason") == "forbidden"]
    if refused and not any(board["moved"] or board.get("already") for board in boards):
        raise _refused(f"moving the card of {repo}#{number}", [], {"moved": 0, "boards": boards})
    return {
        "repo": repo,
        "number": number,
        "state": state,
        "moved": sum(1 for board in boards if board["moved"]),
        "hidden": hidden,
        "boards": boards,
        "summary": _summary(boards, state, field, hidden + len(refused)),
    }


async def _move(ctx: EffectContext, item: Json, state: str, field: str) -> Json:
    """Put one card in the state's column, unless it is there or the board has none."""
    project = item["project"]
    board: Json = {"project": project.get("title"), "project_id": project.get("id")}
    board.update(item_id=item.get("id"), option=None, moved=False)
    if project.get("closed"):
        return {**board, "reason": "board closed"}
    status = project.get("field") or {}  # {} when the field is not single-select
    options = [o for o in status.get("options") or [] if isinstance(o, dict)]
    if not status.get("id"):
        return {**board, "reason": f"no single-select {field} field"}
    current = (item.get("fieldValueByName") or {}).get("name")
    if isinstance(current, str) and state_for_option(current, [state]) == state:
        return {**board, "option": current, "already": True}
    wanted = status_option_for(state, [str(o.get("name")) for o in options])
    if wanted is None:
        return {**board, "reason": f"no {field} column for {state}"}
    option_id = next(o["id"] for o in options if o.get("name") == wanted)
    variables = {
        "project": project["id"],
        "item": item["id"],
        "field": status["id"],
        "option": option_id,
    }
    try:
        data, forbidden = await graphql(
            ctx.github, ctx.installation(), SET_OPTION, variables, f"moving card {item['id']}"
        )
    except RequestRejected as exc:
        if exc.status != 404:
            raise
        return {**board, "option": wanted, "reason": "card gone"}  # removed since we looked
    if forbidden:
        return {**board, "option": wanted, "reason": "forbidden"}
    if not data.get("updateProjectV2ItemFieldValue"):
        raise TransientError(f"GitHub GraphQL, moving card {item['id']}: no result")
    return {**board, "option": wanted, "moved": True}


def _summary(boards: list[Json], state: str, field: str, unreachable: int) -> str:
    moved = [b for b in boards if b["moved"]]
    already = [b for b in boards if b.get("already")]
    reached = [b for b in boards if b.get("reason") != "forbidden"]
    if moved:
        text = f"project status {_names(moved)} on {_count(moved)}"
    elif already:
        text = f"project status already {_names(already)}"
    elif reached:
        text = f"no {field} column for {state} on {_count(reached)}"
    else:
        text = "no project board" if not unreachable else "no project board within reach"
    if unreachable:
        text += f" ({unreachable} board{'s' if unreachable > 1 else ''} not accessible)"
    return text


def _names(boards: list[Json]) -> str:
    return ", ".join(dict.fromkeys(str(b["option"]) for b in boards))


def _count(boards: list[Json]) -> str:
    return f"{len(boards)} board{'s' if len(boards) > 1 else ''}"


def _refused(what: str, errors: list[Json], result: Json) -> EffectRefused:
    said = _messages(errors) or "Resource not accessible by integration"
    return EffectRefused(
        f"GitHub refused {what}: {said}; {PERMISSION_HINT}",
        {**result, "forbidden": True, "summary": f"no access to the project board ({what})"},
    )


# --- resolving a moved card ----------------------------------------------------------------------


async def resolve_item(
    github: GitHubApp, installation_id: int, item_node_id: str, *, field: str = STATUS_FIELD
) -> ProjectItem | None:
    """The issue and Status option of a card (`projects_v2_item` webhooks carry neither).

    None when the item is gone or is not a project item. Raises RequestRejected (403) when
    the App may not read the board, RateLimited or TransientError as GitHub requests do.
    """
    what = f"project item {item_node_id}"
    try:
        data, forbidden = await graphql(
            github, installation_id, ITEM_NODE, {"id": item_node_id, "field": field}, what
        )
    except RequestRejected as exc:
        if exc.status == 404:
            return None
        raise
    node = data.get("node")
    if forbidden and not node:
        raise RequestRejected(403, f"GitHub refused {what}: {_messages(forbidden)}")
    if not isinstance(node, dict) or "id" not in node:
        return None  # deleted meanwhile, or the id is not a ProjectV2Item
    content = node.get("content") or {}  # {} for pull requests and draft issues
    repo = (content.get("repository") or {}).get("nameWithOwner")
    number = content.get("number")
    status = (node.get("fieldValueByName") or {}).get("name")
    return ProjectItem(
        item_id=str(node["id"]),
        project_id=(node.get("project") or {}).get("id"),
        repo=repo if isinstance(repo, str) else None,
        number=number if isinstance(number, int) and isinstance(repo, str) else None,
        status=status if isinstance(status, str) else None,
    )


# --- GraphQL ------------------------------------------------------------------------------------


async def graphql(
    github: GitHubApp, installation_id: int, query: str, variables: Json, what: str
) -> tuple[Json, list[Json]]:
    """One GraphQL request as an installation: its data and FORBIDDEN errors (those parts
    are null). `what` names the request in error messages.

    GraphQL reports most failures inside a 200: a used-up limit raises RateLimited, what
    GitHub could not find RequestRejected (404), anything else TransientError (retried).
    """
    response = await github.request(
        "POST",
        graphql_url(github.api_url),
        installation_id=installation_id,
        json={"query": query, "variables": variables},
    )
    try:
        body = response.json()
    except ValueError:
        raise TransientError(
            f"GitHub GraphQL answered {what} with a body that is not JSON"
        ) from None
    if not isinstance(body, dict):
        raise TransientError(f"GitHub GraphQL answered {what} with no JSON object")
    errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
    forbidden = [e for e in errors if _forbidden(e)]
    others = [e for e in errors if not _forbidden(e)]
    if any(e.get("type") == "RATE_LIMITED" for e in others):
        raise RateLimited(_reset(response), f"GitHub GraphQL rate limit: {_messages(others)}")
    if any(e.get("type") == "NOT_FOUND" for e in others):
        raise RequestRejected(404, f"GitHub GraphQL, {what}: {_messages(others)}")
    if others:
        raise TransientError(f"GitHub GraphQL, {what}: {_messages(others)}")
    data = body.get("data")
    if not isinstance(data, dict):
        if forbidden:
            return {}, forbidden
        raise TransientError(f"GitHub GraphQL answered {what} without data")
    return data, forbidden


def _forbidden(error: Json) -> bool:
    message = str(error.get("message") or "")
    return error.get("type") in ("FORBIDDEN", "INSUFFICIENT_SCOPES") or (
        "not accessible by integration" in message
    )


def _messages(errors: list[Json]) -> str:
    said = dict.fromkeys(str(e.get("message") or e.get("type") or "error") for e in errors)
    return "; ".join(list(said)[:3])[:500]


def _reset(response: httpx.Response) -> datetime:
    raw = response.headers.get("x-ratelimit-reset", "")
    if raw.isdigit():
        return datetime.fromtimestamp(int(raw), UTC)
    return datetime.now(UTC) + RATE_LIMIT_WAIT


# --- payload fields ------------------------------------------------------------------------------

_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


def _repo(payload: Json) -> str:
    repo = _str(payload, "repo")
    if not _REPO.match(repo):
        raise EffectRefused(f"payload field 'repo' is not OWNER/NAME: {repo!r}")
    return repo


def _str(payload: Json, key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise EffectRefused(f"payload field {key!r} must be a non-empty string")
    return value


def _int(payload: Json, key: str) -> int:
    value = payload.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise EffectRefused(f"payload field {key!r} must be an integer")
    return value
