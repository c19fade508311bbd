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
from typing import Any, NotRequired, TypedDict

from adapters.base import CodeHost
from adapters.errors import RequestRejected
from bot.config.states import State
from bot.effects.outbox import EffectContext, EffectRefused

Json = dict[str, Any]

STATUS_FIELD = "Status"  # the field GitHub's board templates give every project
MAX_BOARDS = 20  # boards one issue is looked up on; more than a handful is unheard of

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
    what = f"the project items of {repo}#{number}"
    try:
        cards = await ctx.github.project_items_of_issue(
            repo, number, ctx.installation(), field=field, first=MAX_BOARDS
        )
    except RequestRejected as exc:
        if exc.status == 404:  # deleted or transferred: asking again will not bring it back
            raise EffectRefused(str(exc), {"moved": 0, "summary": "issue not found"}) from exc
        raise
    items, hidden = cards.items, cards.hidden
    if cards.forbidden and not items:
        raise _refused(f"reading {what}", cards.forbidden, {"moved": 0, "hidden": hidden})
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
    try:
        moved = await ctx.github.set_project_item_option(
            project["id"], item["id"], status["id"], option_id, ctx.installation()
        )
    except RequestRejected as exc:
        if exc.status != 404:
            raise
        return {**board, "option": wanted, "reason": "card gone"}  # removed since we looked
    if not moved:
        return {**board, "option": wanted, "reason": "forbidden"}
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
    github: CodeHost, installation_id: int, item_node_id: str, *, field: str = STATUS_FIELD
) -> ProjectItem | None:
    """The issue and Status option of a card (`projects_v2_item` webhooks carry neither).

    None when the item is gone or is not a project item. Raises RequestRejected (403) when
    the App may not read the board, RateLimited or TransientError as GitHub requests do.
    """
    found = await github.project_item(item_node_id, installation_id, field=field)
    if found is None:
        return None
    return ProjectItem(
        item_id=found.item_id,
        project_id=found.project_id,
        repo=found.repo,
        number=found.number,
        status=found.status,
    )


# --- errors ------------------------------------------------------------------------------------


def _messages(errors: list[Json]) -> str:
    said = dict.fromkeys(str(e.get("message") or e.get("type") or "error") for e in errors)
    return "; ".join(list(said)[:3])[:500]


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
