"""Repositories, tickets, runs and results written straight into the tables, for the tests
of the pages that show them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import update

from bot.deps import Deps
from bot.tables.mirror import Repository, Ticket
from bot.tables.workflow import Run, RunState, TicketState
from harness_store.db import transaction
from runner.contract import HookResult, RunResult, RunStatus
from tests.support.run_streams import T0

HOSTILE = '<script>alert("x")</script>'


SKILL_MD = "---\nname: lint\ndescription: Run the linters.\n---\n\n# Lint\n"


async def add_repo(deps: Deps, repo_id: int, full_name: str) -> None:
    async with transaction(deps.sessions) as session:
        session.add(
            Repository(
                id=repo_id, full_name=full_name, html_url=f"https://github.example/{full_name}"
            )
        )


async def add_ticket(
    deps: Deps,
    key: str,
    *,
    repo_id: int | None = None,
    source: str = "github",
    title: str = "A ticket",
    state: str | None = "todo",
    html_url: str | None = None,
    **fields: Any,
) -> int:
    """A mirrored ticket, in workflow state `state` (None: not in a workflow)."""
    async with transaction(deps.sessions) as session:
        number = key.rpartition("#")[2] if source == "github" else key.rpartition("-")[2]
        ticket = Ticket(
            source=source,
            external_id=key,
            key=key,
            number=int(number) if number.isdigit() else None,
            repository_id=repo_id,
            title=title,
            state="open",
            html_url=html_url,
        )
        session.add(ticket)
        await session.flush()
        if state is not None:
            session.add(TicketState(ticket_id=ticket.id, state=state, workflow="coder", **fields))
        return ticket.id


async def move(deps: Deps, ticket_id: int, **values: Any) -> None:
    async with transaction(deps.sessions) as session:
        await session.execute(
            update(TicketState).where(TicketState.ticket_id == ticket_id).values(**values)
        )


async def add_run(
    deps: Deps,
    run_id: str,
    ticket_id: int,
    *,
    state: RunState = RunState.RUNNING,
    result: RunResult | None = None,
    spec: dict[str, Any] | None = None,
) -> None:
    async with transaction(deps.sessions) as session:
        session.add(
            Run(
                id=run_id,
                ticket_id=ticket_id,
                workflow="coder",
                attempt=2,
                machine="m1",
                state=state,
                status=result.status.value if result else None,
                spec=spec or {},
                result=result.to_wire() if result else None,
                cost_usd=result.cost_usd if result else None,
                queued_at=T0,
                started_at=T0 + timedelta(minutes=1),
                finished_at=result.finished_at if result else None,
            )
        )


def hook(name: str, exit_code: int, output: str = "", *, on_failure: str = "block") -> HookResult:
    return HookResult.model_validate(
        {
            "phase": "on_complete",
            "name": name,
            "on_failure": on_failure,
            "exit_code": exit_code,
            "duration_s": 2.5,
            "output_tail": output,
        }
    )


def a_result(run_id: str, *hooks: HookResult) -> RunResult:
    return RunResult(
        run_id=run_id,
        status=RunStatus.GATES_FAILED,
        hook_results=hooks,
        cost_usd=0.5,
        error="a blocking hook failed",
        started_at=T0 + timedelta(minutes=1),
        finished_at=T0 + timedelta(minutes=8),
    )
