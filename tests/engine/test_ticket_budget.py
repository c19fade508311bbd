"""Issue #17, item 4, end to end through signed webhooks, real `openase runner` processes and
the real Claude Code CLI against the scripted model server (each model turn reports 100,000
input tokens, which Claude Code prices at about $0.40):

- a ticket budget (`limits.ticket_budget_usd`) counts every run: once the first attempt has
  spent it, the failed gate's retry is not started — the ticket fails with one comment
  saying spent against budget and how to go on, and `budget_exceeded` goes out once;
- it counts every relay stage too: the next stage does not start once the first has spent
  that stage's ticket budget;
- a run's own budget stops the agent mid-run, and `budget_exceeded` goes out for it.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from bot.config.control import ControlConfig, parse_control_config
from bot.config.states import State
from tests.conftest import OpenWorld
from tests.fakes.model_server import ModelServer, Scenario, Step, ToolCall
from tests.support.agent_clis import agent_cli
from tests.support.lifecycle import SANDBOX, World, repo_config
from tests.support.receivers import Receivers, receivers

T = TypeVar("T")
SECRET = "whsec-budget-not-real"
TOKENS = 100_000


def claude_control(url: str, limits: str = "") -> str:
    return textwrap.dedent(
        f"""\
        providers:
          claude:
            cli: claude_code
            env: {{ANTHROPIC_BASE_URL: "{url}", ANTHROPIC_API_KEY: sk-test}}
            {limits}
        defaults:
          provider: claude
        """
    )


def listen(w: World, got: Receivers) -> None:
    """Send budget_exceeded and ticket_failed to a signed webhook receiver."""
    rules = textwrap.dedent(
        f"""\
        providers: {{x: {{cli: command, argv: [x]}}}}
        notifications:
          channels:
            audit: {{kind: webhook, url: "{got.url}/hook", secret: "${{SECRET}}"}}
          rules:
            - {{events: [budget_exceeded, ticket_failed], channels: [audit]}}
        """
    )
    parsed = parse_control_config(rules, file="control.yml", environ={"SECRET": SECRET})
    assert isinstance(parsed, ControlConfig), parsed
    w.engine.control = w.engine.control.model_copy(update={"notifications": parsed.notifications})


@contextmanager
def scripted(*steps: Step) -> Iterator[ModelServer]:
    with ModelServer(Scenario(steps=list(steps))) as server:
        yield server


async def events_received(w: World, got: Receivers, count: int) -> dict[str, list[Any]]:
    def by_event() -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for request in got.accepted("/hook"):
            out.setdefault(request.json()["event"], []).append(request.json())
        return out

    await w.until(
        lambda: _async(by_event() if len(got.accepted("/hook")) >= count else None),
        within=90,
        what=f"{count} notifications",
    )
    await asyncio.sleep(2)  # anything sent twice would arrive by now
    return by_event()


async def test_a_spent_ticket_budget_stops_further_attempts(open_world: OpenWorld) -> None:
    claude = agent_cli("claude")
    # The agent changes nothing, so the gate (a PASS file) fails and a retry is due.
    with scripted(Step(text="Looked; nothing to change.", input_tokens=TOKENS)) as model:
        config = (
            repo_config(max_attempts=3)
            .replace("provider: script", "provider: claude")
            .replace("backoff_seconds: 1", "backoff_seconds: 1, ticket_budget_usd: 0.3")
        )
        async with (
            receivers() as got,
            open_world(
                config=config, control=claude_control(model.url), path_prefix=claude.parent
            ) as w,
        ):
            listen(w, got)
            w.add_issue(1, "Add a PASS file", "Please add it.")
            await w.label(1, "openase")
            row = await w.reach(1, State.FAILED, within=120)
            received = await events_received(w, got, 2)
            runs = await w.runs(1)
            comments = [c for c in w.bot_comments(1) if "OpenASE stopped this ticket" in c]
            labels = w.labels(1)
            status = await w.until(
                lambda: _async(next((c for c in w.bot_comments(1) if "budget |" in c), None)),
                what="the status comment with the budget",
            )

    assert len(runs) == 1, await w.story()  # the retry was never started
    (run,) = runs
    assert run.result is not None
    assert run.result["status"] == "gates_failed"
    spent = run.result["cost_usd"]
    assert 0.3 <= spent < 0.5  # Claude Code's own total for the one turn
    assert row.cost_usd == spent
    spent_text = f"${spent:,.2f} of its $0.30 budget"
    assert row.last_failure == f"Stopped: the ticket has spent {spent_text}."
    (comment,) = comments
    assert spent_text in comment
    assert "raise `limits.ticket_budget_usd` in `.github/openase.yml`" in comment
    assert "`/retry`" in comment
    assert "openase/failed" in labels
    assert f"| Cost so far | {spent_text} |" in status
    assert sorted(received) == ["budget_exceeded", "ticket_failed"]
    (budget,) = received["budget_exceeded"]
    assert budget["reason"] == f"the ticket has spent {spent_text}; no further run starts"
    assert budget["state"] == State.FAILED
    assert len(received["ticket_failed"]) == 1


RELAY = f"""\
workflows:
  design:
    trigger_labels: [openase]
    provider: claude
    skills: []
    harness: docs
    finish: build
    {SANDBOX}
  build:
    pickup: build
    provider: claude
    skills: []
    limits: {{ticket_budget_usd: 0.3}}
    {SANDBOX}
"""


async def test_a_relay_stage_does_not_start_once_the_ticket_spent_its_budget(
    open_world: OpenWorld,
) -> None:
    claude = agent_cli("claude")
    with scripted(Step(text="Design written down.", input_tokens=TOKENS)) as model:
        async with open_world(
            config=RELAY, control=claude_control(model.url), path_prefix=claude.parent
        ) as w:
            w.add_issue(1, "Design then build", "Please.")
            await w.label(1, "openase")
            row = await w.reach(1, State.FAILED, within=120)
            await asyncio.sleep(2)
            runs = await w.runs(1)
            comments = [c for c in w.bot_comments(1) if "OpenASE stopped this ticket" in c]

    assert [run.workflow for run in runs] == ["design"], await w.story()
    assert runs[0].status == "succeeded"
    (comment,) = comments
    assert f"${row.cost_usd:,.2f} of its $0.30 budget" in comment
    assert "of the `build` workflow" in comment


async def test_a_run_stopped_at_its_budget_tells_the_channels(open_world: OpenWorld) -> None:
    claude = agent_cli("claude")
    bash = ToolCall("Bash", {"command": "printf 'x\\n' > PASS", "description": "write PASS"})
    with scripted(
        Step(tool_calls=(bash,), input_tokens=TOKENS), Step(text="Done.", input_tokens=TOKENS)
    ) as model:
        config = repo_config(max_attempts=1).replace("provider: script", "provider: claude")
        control = claude_control(model.url, limits="limits: {budget_usd: 0.25}")
        async with (
            receivers() as got,
            open_world(config=config, control=control, path_prefix=claude.parent) as w,
        ):
            listen(w, got)
            w.add_issue(1, "Add a PASS file", "Please add it.")
            await w.label(1, "openase")
            await w.reach(1, State.FAILED, within=120)
            received = await events_received(w, got, 2)
            runs = await w.runs(1)
        requests = model.model_requests()

    (run,) = runs
    assert run.result is not None
    assert run.result["status"] == "over_budget", await w.story()
    assert len(requests) == 1  # stopped after the first turn, before a second model call
    (budget,) = received["budget_exceeded"]
    assert budget["reason"].startswith(f"run {run.id} stopped: budget spent: $0.4")
    assert budget["reason"].endswith("of the $0.25 budget")
    assert len(received["ticket_failed"]) == 1


async def _async(value: T) -> T:
    return value
