"""Issue #17, item 4: a run's page shows its cost — while it runs, what the runner priced its
usage at so far (the newest usage event), against its budget; once over, the cost it
reported, with why part of it could not be priced."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from bot.deps import Deps
from bot.tables.workflow import RunEvent, RunState
from harness_store.db import transaction
from runner.contract import RunResult, RunStatus
from tests.support.board import add_run, add_ticket
from tests.support.run_streams import T0


def cost_cell(html: str) -> str:
    start = html.index('<th scope="row">Cost</th>')
    return html[start : html.index("</tr>", start)]


async def test_a_running_run_shows_its_priced_usage_so_far_against_its_budget(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    ticket = await add_ticket(deps, "acme/api#3", state="in_progress")
    await add_run(deps, "r1", ticket, spec={"limits": {"budget_usd": 2.0}})
    events: list[dict[str, Any]] = [
        {"kind": "usage", "usage": {"input_tokens": 100_000}, "cost_usd": 0.4},
        {"kind": "text", "text": "working"},
        {"kind": "usage", "usage": {"input_tokens": 200_000}, "cost_usd": 0.8},
        {"kind": "heartbeat"},
    ]
    async with transaction(deps.sessions) as session:
        session.add_all(
            RunEvent(run_id="r1", seq=seq, kind=event["kind"], event=event, at=T0)
            for seq, event in enumerate(events, start=1)
        )

    cell = cost_cell((await client.get("/runs/r1")).text)

    assert "≈ $0.80 so far" in cell
    assert "(priced from the usage it streams)" in cell
    assert "of its $2.00 budget" in cell


async def test_a_run_with_no_usage_yet_shows_no_estimate(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    ticket = await add_ticket(deps, "acme/api#4", state="in_progress")
    await add_run(deps, "r2", ticket)
    cell = cost_cell((await client.get("/runs/r2")).text)
    assert "so far" not in cell
    assert "budget" not in cell
    assert '<span class="muted">—</span>' in cell


async def test_a_finished_run_shows_its_cost_and_what_could_not_be_priced(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    ticket = await add_ticket(deps, "acme/api#5", state="in_review")
    note = "cost not priced: no price for 'acme-coder-9' (add it under `prices:`)"
    result = RunResult(
        run_id="r3",
        status=RunStatus.SUCCEEDED,
        cost_usd=1.25,
        cost_note=note,
        started_at=T0,
        finished_at=T0 + timedelta(minutes=3),
    )
    await add_run(deps, "r3", ticket, state=RunState.FINISHED, result=result)
    async with transaction(deps.sessions) as session:
        session.add(
            RunEvent(
                run_id="r3", seq=1, kind="usage", event={"kind": "usage", "cost_usd": 0.2}, at=T0
            )
        )
    cell = cost_cell((await client.get("/runs/r3")).text)
    assert "$1.25" in cell  # the reported cost, not the last estimate
    assert "so far" not in cell
    assert "no price for &#39;acme-coder-9&#39;" in cell
