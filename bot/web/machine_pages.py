"""`/machines`: every runner — what it registered in Redis (bot.engine.runs.machines), the
runs it has in hand, whether an admin paused or is draining it — and machines known only
from past runs, greyed with when they were last seen. `/machines/{name}` adds its recent
runs and who paused, resumed or drained it. `POST /machines/{name}` (admin only, CSRF
checked) pauses, resumes or drains it; the engine honours that from PostgreSQL
(bot.engine.runs.machine_controls).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import structlog
from redis.exceptions import RedisError
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bot.api.request import deps_of
from bot.engine.runs.machine_controls import ACTIONS, Control, controls, in_flight, set_control
from bot.engine.runs.machines import Machine, registered
from bot.tables.machines import ControlState, MachineAction, MachineControl
from bot.tables.mirror import Ticket
from bot.tables.workflow import Run, RunState
from bot.web.pages import admin_action, html_endpoint, is_admin, not_found, page
from harness_store.db import transaction

log = structlog.get_logger(__name__)

RECENT_RUNS = 50
RECENT_ACTIONS = 20
LIVE = (RunState.QUEUED, RunState.RUNNING)


def size(count: int) -> str:
    """Bytes for a reader: "12.3 GB"; "—" when the runner did not say."""
    if count <= 0:
        return "—"
    amount = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if amount < 1024:
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TB"


def age(seconds: float) -> str:
    """How long ago, in the largest unit that fits."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


@dataclass
class MachineView:
    """One row of the page: a registered machine, or one known from runs or controls only."""

    name: str
    facts: Machine | None
    control: Control | None
    now: float
    last_run_at: datetime | None = None
    runs: list[str] = field(default_factory=list)  # ids of its queued and running runs

    @property
    def url(self) -> str:
        return f"/machines/{quote(self.name, safe='')}"

    @property
    def online(self) -> bool:
        return self.facts is not None and self.facts.fresh(self.now)

    @property
    def last_seen(self) -> datetime | None:
        """The last heartbeat, else the last run on it; None when it never said."""
        seen = [self.last_run_at] if self.last_run_at else []
        if self.facts is not None:
            seen.append(datetime.fromtimestamp(self.facts.heartbeat_at, UTC))
        return max(seen) if seen else None

    @property
    def heartbeat(self) -> str:
        if self.facts is None:
            return "not registered"
        return age(self.now - self.facts.heartbeat_at)

    @property
    def state(self) -> str:
        """active, paused or draining."""
        if self.control is None:
            return ControlState.ACTIVE.value
        if self.control.state == ControlState.DRAINING:
            return "draining"
        return self.control.state.value

    @property
    def sandbox(self) -> str:
        if self.facts is None:
            return "—"
        if self.facts.sandbox:
            return self.facts.sandbox
        return "cannot sandbox" + (
            f": {self.facts.sandbox_problem}" if self.facts.sandbox_problem else ""
        )

    @property
    def condition(self) -> str:
        if self.facts is None:
            return "not registered (its entry expired: stopped, or cut off from Redis)"
        return self.facts.condition(self.now) or "healthy"

    @property
    def disk(self) -> str:
        return size(self.facts.disk_free_bytes) if self.facts else "—"

    @property
    def memory(self) -> str:
        return size(self.facts.memory_available_bytes) if self.facts else "—"


# Each machine's newest run, one index probe per machine (ix_runs_machine_queued_at): the
# names come from a skip scan over that index, never from grouping every run.
_LAST_RUNS = """
WITH RECURSIVE machines(name) AS (
    SELECT min(machine) FROM runs
    UNION ALL
    SELECT (SELECT min(machine) FROM runs WHERE machine > machines.name)
    FROM machines WHERE machines.name IS NOT NULL
)
SELECT name, (SELECT max(queued_at) FROM runs WHERE machine = machines.name)
FROM machines WHERE name IS NOT NULL"""
_LAST_RUN = "SELECT machine, max(queued_at) FROM runs WHERE machine = :name GROUP BY machine"


async def _views(
    session: AsyncSession, machines: list[Machine], only: str | None = None
) -> list[MachineView]:
    """Every machine the page knows, registered ones first (drains that are over are stored
    as paused here, as the dispatcher would)."""
    sent = await in_flight(session)
    found = await controls(session, machines, sent)
    await session.commit()
    controlled = (await session.scalars(select(MachineControl.name))).all()
    live = select(Run.machine, Run.id).where(Run.state.in_(LIVE), Run.machine.is_not(None))
    if only is not None:
        live = live.where(Run.machine == only)
        last_runs = text(_LAST_RUN).bindparams(name=only)
    else:
        last_runs = text(_LAST_RUNS)
    last = {str(name): at for name, at in (await session.execute(last_runs)).all() if at}
    running: dict[str, list[str]] = {}
    for name, run_id in (await session.execute(live.order_by(Run.queued_at))).all():
        running.setdefault(str(name), []).append(run_id)
    now = time.time()
    registry = {machine.name: machine for machine in machines}
    names = sorted(registry) + sorted((set(last) | set(controlled)) - set(registry))
    if only is not None:
        names = [name for name in names if name == only]
    return [
        MachineView(
            name=name,
            facts=registry.get(name),
            control=found.get(name),
            now=now,
            last_run_at=last.get(name),
            runs=running.get(name, []),
        )
        for name in names
    ]


async def _registry(request: Request) -> tuple[list[Machine], str | None]:
    """The registered machines, or none and why (Redis is down: the page still shows the
    machines it knows from runs)."""
    try:
        return await registered(deps_of(request).redis), None
    except (RedisError, OSError):
        return [], "Redis does not answer: the runners' registrations cannot be read."


@html_endpoint
async def machines_page(request: Request) -> Response:
    admin = is_admin(request)
    machines, problem = await _registry(request)
    async with deps_of(request).sessions() as session:
        views = await _views(session, machines)
    context = {"title": "Machines", "machines": views, "problem": problem, "admin": admin}
    return page(request, "machines.html", context)


@html_endpoint
async def machine_page(request: Request) -> Response:
    admin = is_admin(request)
    name = request.path_params["name"]
    machines, problem = await _registry(request)
    async with deps_of(request).sessions() as session:
        views = await _views(session, machines, only=name)
        if not views:
            raise not_found(request, f"There is no machine named {name!r}.")
        runs = (
            await session.execute(
                select(
                    Run.id,
                    Run.state,
                    Run.status,
                    Run.workflow,
                    Run.attempt,
                    Run.queued_at,
                    Run.finished_at,
                    Ticket.id.label("ticket_id"),
                    Ticket.key,
                    Ticket.title,
                )
                .join(Ticket, Ticket.id == Run.ticket_id)
                .where(Run.machine == name)
                .order_by(Run.queued_at.desc(), Run.id)
                .limit(RECENT_RUNS)
            )
        ).all()
        actions = (
            await session.scalars(
                select(MachineAction)
                .where(MachineAction.machine == name)
                .order_by(MachineAction.id.desc())
                .limit(RECENT_ACTIONS)
            )
        ).all()
    context: dict[str, Any] = {
        "title": f"Machine {name}",
        "machine": views[0],
        "runs": runs,
        "actions": actions,
        "problem": problem,
        "admin": admin,
    }
    return page(request, "machine.html", context)


@html_endpoint
async def control_machine(request: Request) -> Response:
    """Pause, resume or drain: only the admin, with the form's CSRF token."""
    user, action, _ = await admin_action(
        request, tuple(ACTIONS), "pause, resume or drain a machine"
    )
    name = request.path_params["name"]
    machines, _ = await _registry(request)
    async with transaction(deps_of(request).sessions) as session:
        known = any(machine.name == name for machine in machines) or (
            await session.scalar(select(Run.id).where(Run.machine == name).limit(1))
            or await session.get(MachineControl, name)
        )
        if not known:
            raise not_found(request, f"There is no machine named {name!r}.")
        state = await set_control(session, name, action, user.label)
    log.info("machine_control", machine=name, action=action, state=state.value, by=user.label)
    return RedirectResponse(f"/machines/{quote(name, safe='')}", status_code=303)
