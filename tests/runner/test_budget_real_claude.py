"""Issue #17, item 4: a dollar budget holds for a CLI that streams its usage — the real Claude
Code CLI (pinned, from npm) against the scripted model server, each model turn reporting
enough input tokens that the priced cost crosses the budget at the second turn. The runner
stops it there, before a third model call, and the work done so far is committed and pushed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.contract import AgentConfig, EventKind, Limits, RunStatus
from runner.pricing import shipped_prices
from tests.fakes.model_server import ModelServer, Scenario, Step, ToolCall
from tests.support.agent_clis import agent_cli
from tests.support.git_repos import branch_files, make_remote, show
from tests.support.runs import run, spec_for

TURN_TOKENS = 100_000  # input tokens each turn reports
BUDGET = 0.6


def bash(command: str) -> ToolCall:
    return ToolCall("Bash", {"command": command, "description": command})


def expensive_steps() -> Scenario:
    return Scenario(
        steps=[
            Step(tool_calls=(bash("printf 'one\\n' > one.txt"),), input_tokens=TURN_TOKENS),
            Step(tool_calls=(bash("printf 'two\\n' > two.txt"),), input_tokens=TURN_TOKENS),
            Step(tool_calls=(bash("printf 'three\\n' > three.txt"),), input_tokens=TURN_TOKENS),
            Step(text="Wrote three files.", input_tokens=TURN_TOKENS),
        ]
    )


async def test_a_dollar_budget_stops_claude_code_within_one_turn(tmp_path: Path) -> None:
    claude = str(agent_cli("claude"))
    remote = make_remote(tmp_path)
    prices = shipped_prices()["anthropic"]
    with ModelServer(expensive_steps()) as server:
        agent = AgentConfig.model_validate(
            {
                "cli": "claude_code",
                "binary": claude,
                "env": {"ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": "sk-test"},
                "max_turns": 10,
                "prices": prices,
            }
        )
        spec = spec_for(
            remote,
            [],
            agent=agent,
            limits=Limits(
                wall_seconds=120, stall_seconds=60, budget_usd=BUDGET, kill_grace_seconds=2
            ),
        )
        result, events = await run(tmp_path, spec)
        requests = server.model_requests()

    model = str(requests[0].body["model"])  # the pinned release's default model
    price = prices[model]
    per_turn = TURN_TOKENS * price.input / 1_000_000
    assert per_turn < BUDGET < 2 * per_turn + 0.01  # so the second turn crosses it

    assert result.status is RunStatus.OVER_BUDGET, result.error
    assert result.error_class == "over_budget"
    assert result.cost_usd is not None
    # Stopped at most one model turn over the budget, and before asking for a third.
    assert BUDGET <= result.cost_usd < BUDGET + per_turn
    assert result.error == f"budget spent: ${result.cost_usd:.4f} of the ${BUDGET:g} budget"
    assert len(requests) == 2
    # The live cost rode on each turn's usage event.
    costs = [event.cost_usd for event in events if event.kind is EventKind.USAGE]
    assert costs[0] == pytest.approx(per_turn, rel=0.01)
    assert costs[-1] == pytest.approx(result.cost_usd)
    # The work done before the stop is on the pushed branch.
    assert result.pushed
    assert show(remote, "openase/7-add-hello", "one.txt") == "one"
    assert "three.txt" not in branch_files(remote, "openase/7-add-hello")
    assert result.cost_note is None
