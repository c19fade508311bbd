"""`/runs/{id}`: one run — its state, machine, cost (while it runs, as its usage events priced
it; against its budget) and times, the exact harness and skill versions it was given, its
hook results, and the agent's output so far (followed live by live.js through
bot.web.live_events)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from bot.api.request import ApiError, deps_of
from bot.api.runs import parse_run_id
from bot.tables.mirror import Ticket
from bot.tables.workflow import Run, RunEvent, RunState, TicketState
from bot.web.pages import Refused, bad_request, html_endpoint, not_found, page, reader
from bot.web.ticket_actions import action_context, said
from bot.web.ticket_keys import ticket_path
from harness_store.models import HarnessVersion, RunVersions, SkillVersion
from runner.contract import HookResult

# The page shows the newest OUTPUT_LIMIT lines; the JSON API has every event.
OUTPUT_LIMIT = 1000
TEXT_LIMIT = 4000
HIDDEN_KINDS = frozenset({"heartbeat"})  # liveness only: nothing for a reader
LIVE_STATES = frozenset({RunState.QUEUED, RunState.RUNNING})


def _clip(text: str, limit: int = TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def event_time(event: dict[str, Any], stored: datetime | None = None) -> str:
    """HH:MM:SS (UTC) of an event (AgentEvent wire form, else when it was stored)."""
    try:
        at = datetime.fromisoformat(str(event["at"]))
    except (KeyError, ValueError):
        if stored is None:
            return ""
        at = stored
    return at.astimezone(UTC).strftime("%H:%M:%S")


@dataclass(frozen=True)
class OutputLine:
    at: str  # HH:MM:SS
    text: str


@dataclass
class Phase:
    """One fold of the run's output, as a CI log has: a runner phase and the lines after it."""

    name: str  # "preparing", "agent", "hooks", … ("start" before the first phase event)
    at: str
    detail: str = ""
    lines: list[OutputLine] = field(default_factory=list)
    failed: bool = False  # an error line in it: shown open
    open: bool = False


def phases_of(events: list[tuple[str, dict[str, Any], datetime | None]]) -> list[Phase]:
    """The output folded by phase: each `phase` event opens a fold, its lines follow it."""
    folds: list[Phase] = []
    for kind, event, stored in events:
        at = event_time(event, stored)
        if kind == "phase":
            data = event.get("data") or {}
            detail = _clip(", ".join(f"{key} {value}" for key, value in data.items()), 300)
            folds.append(Phase(str(event.get("text") or "?"), at, detail))
            continue
        if not folds:
            folds.append(Phase("start", at))
        folds[-1].lines.append(OutputLine(at, output_line(kind, event)))
        folds[-1].failed = folds[-1].failed or bool(event.get("is_error"))
    # Open: folds with an error, and the last one that has anything to show.
    with_lines = [fold for fold in folds if fold.lines]
    for fold in folds:
        fold.open = fold.failed or (bool(with_lines) and fold is with_lines[-1])
    return folds


def output_line(kind: str, event: dict[str, Any]) -> str:
    """One event of a run (AgentEvent wire form) as the line the run page shows."""
    text = str(event.get("text") or "")
    if kind == "tool_call":
        arguments = json.dumps(event.get("input") or {}, ensure_ascii=False)
        message = f"{event.get('tool') or '?'}({_clip(arguments, 500)})"
    elif kind == "tool_result":
        message = ("error: " if event.get("is_error") else "") + _clip(text)
    elif kind == "usage":
        usage = event.get("usage") or {}
        tokens = sum(int(usage.get(name) or 0) for name in ("input_tokens", "output_tokens"))
        cost = event.get("cost_usd")
        message = f"{tokens} tokens" + (f", ${float(cost):.4f}" if cost is not None else "")
    elif kind == "session":
        message = str(event.get("session_id") or "")
    elif kind == "phase":
        data = event.get("data") or {}
        message = text + (" " + json.dumps(data, ensure_ascii=False) if data else "")
    else:
        message = _clip(text)
    return f"{kind}: {message}"


@dataclass(frozen=True)
class VersionLink:
    kind: str  # harness | skill
    name: str
    version: int

    @property
    def url(self) -> str:
        folder = "harnesses" if self.kind == "harness" else "skills"
        return f"/{folder}/{quote(self.name, safe='')}/versions/{self.version}"

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


async def run_versions(
    session: AsyncSession, run: Run
) -> tuple[VersionLink | None, list[VersionLink]]:
    """The harness and skill versions the run was given: recorded ids, else its spec."""
    recorded = await session.scalar(select(RunVersions).where(RunVersions.run_id == run.id))
    harness_id = recorded.harness_version_id if recorded is not None else run.harness_version_id
    harness = None
    if harness_id is not None:
        row = await session.get(HarnessVersion, harness_id)
        if row is not None:
            harness = VersionLink("harness", row.name, row.version)
    skills: list[VersionLink] = []
    if recorded is not None and recorded.skill_version_ids:
        rows = await session.scalars(
            select(SkillVersion)
            .where(SkillVersion.id.in_(recorded.skill_version_ids))
            .order_by(SkillVersion.name)
        )
        skills = [VersionLink("skill", row.name, row.version) for row in rows]
    spec = run.spec or {}
    if harness is None:
        harness = _spec_link("harness", spec.get("harness"))
    if recorded is None and not skills:
        found = (_spec_link("skill", item) for item in spec.get("skills") or [])
        skills = [link for link in found if link is not None]
    return harness, skills


def _spec_link(kind: str, value: object) -> VersionLink | None:
    if not isinstance(value, dict):
        return None
    name, version = value.get("name"), value.get("version")
    if not isinstance(name, str) or not isinstance(version, int):
        return None
    return VersionLink(kind, name, version)


def hook_results(run: Run) -> list[HookResult]:
    hooks = []
    for raw in (run.result or {}).get("hook_results") or []:
        try:
            hooks.append(HookResult.model_validate(raw))
        except ValueError:
            continue  # a result of an older runner
    return hooks


@html_endpoint
async def run_page(request: Request) -> Response:
    try:
        reader(request)
        try:
            run_id = parse_run_id(request.path_params["id"])
        except ApiError:
            raise bad_request(request, "That is not a run id.") from None
        async with deps_of(request).sessions() as session:
            context = await _run_context(request, session, run_id)
    except Refused as refused:
        return refused.response
    return page(request, "run.html", context)


async def live_cost(session: AsyncSession, run_id: str) -> float | None:
    """The cost the run's newest usage event carries (the runner prices each model turn),
    or None before one has."""
    event = await session.scalar(
        select(RunEvent.event)
        .where(RunEvent.run_id == run_id, RunEvent.kind == "usage")
        .order_by(RunEvent.seq.desc())
        .limit(1)
    )
    cost = event.get("cost_usd") if isinstance(event, dict) else None
    return float(cost) if isinstance(cost, int | float) else None


def _duration(run: Run) -> str | None:
    """How long it ran ("1 min 5 s"), once it has finished."""
    if run.started_at is None or run.finished_at is None:
        return None
    seconds = max(0, round((run.finished_at - run.started_at).total_seconds()))
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


async def _run_context(request: Request, session: AsyncSession, run_id: str) -> dict[str, Any]:
    run = await session.get(Run, run_id)
    if run is None:
        raise not_found(request, f"There is no run {run_id}.")
    ticket = await session.get(Ticket, run.ticket_id)
    harness, skills = await run_versions(session, run)
    shown = (
        await session.execute(
            select(RunEvent.seq, RunEvent.kind, RunEvent.event, RunEvent.at)
            .where(RunEvent.run_id == run_id, RunEvent.kind.not_in(HIDDEN_KINDS))
            .order_by(RunEvent.seq.desc())
            .limit(OUTPUT_LIMIT + 1)
        )
    ).all()
    last_seq = await session.scalar(select(func.max(RunEvent.seq)).where(RunEvent.run_id == run_id))
    result = run.result or {}
    state = await session.get(TicketState, run.ticket_id)
    limits = (run.spec or {}).get("limits") or {}
    return {
        **action_context(request),
        "outcome": await said(request, session, run.ticket_id),
        # Cancel stops the ticket's run in flight (`/cancel`): only offered on that run.
        "cancellable": state is not None and state.run_id == run.id and run.state in LIVE_STATES,
        "title": f"Run {run.id}",
        "run": run,
        "ticket": ticket,
        "ticket_url": ticket_path(ticket.source, ticket.key, ticket.id) if ticket else None,
        "harness": harness,
        "skills": skills,
        "hooks": hook_results(run),
        "error": result.get("error"),
        "summary": result.get("summary"),
        "phases": phases_of(
            [(kind, event, at) for _, kind, event, at in reversed(shown[:OUTPUT_LIMIT])]
        ),
        "duration": _duration(run),
        # Until the run reports its cost, what its usage events priced it at so far.
        "estimate": await live_cost(session, run_id) if run.cost_usd is None else None,
        "budget": limits.get("budget_usd"),
        "cost_note": result.get("cost_note"),
        "output_cut": len(shown) > OUTPUT_LIMIT,
        "live": run.state in LIVE_STATES,
        "events_url": f"/runs/{quote(run.id, safe='')}/events?after={last_seq or 0}",
    }
