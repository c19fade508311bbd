"""Issue #17, item 1 (its last point): a review asking for changes, and an answer to the
agent's question, resume the agent's own session — proved with the real Claude Code CLI
against the scripted model server: the second run is started with the first run's session
id, and the model's request for it carries the first conversation (the scenario's turns
go on from where they stopped, which they only do when the conversation is there)."""

from __future__ import annotations

from typing import Any, TypeVar

from bot.config.states import State
from tests.conftest import OpenWorld
from tests.fakes.model_server import ModelServer, Scenario, Step, ToolCall
from tests.support.agent_clis import agent_cli
from tests.support.lifecycle import repo_config

T = TypeVar("T")


async def _async(value: T) -> T:
    return value


def bash(command: str) -> ToolCall:
    return ToolCall("Bash", {"command": command, "description": command})


# One attempt of the coder workflow, run by the real Claude Code CLI.
CONFIG = repo_config(max_attempts=1).replace("provider: script", "provider: claude")


def control_for(model_url: str) -> str:
    """The control config: Claude Code against the scripted model server."""
    return (
        "providers:\n  claude:\n    cli: claude_code\n"
        f'    env: {{ANTHROPIC_BASE_URL: "{model_url}", ANTHROPIC_API_KEY: sk-test}}\n'
        "defaults:\n  provider: claude\n"
    )


async def test_a_review_resumes_the_claude_code_session(open_world: OpenWorld) -> None:
    claude = agent_cli("claude")
    scenario = Scenario(
        steps=[
            Step(tool_calls=(bash("printf 'first\\n' > PASS"),)),
            Step(text="Added the PASS file."),
            # Reached only by a request that carries the two turns above.
            Step(tool_calls=(bash("printf 'reviewed\\n' >> PASS"),)),
            Step(text="Addressed the review: PASS now says so."),
        ]
    )
    with ModelServer(scenario) as model:
        async with open_world(
            config=CONFIG, control=control_for(model.url), path_prefix=claude.parent
        ) as w:
            w.add_issue(1, "Add a PASS file", "Please add it.")
            await w.label(1, "openase")
            await w.reach(1, State.IN_REVIEW, within=120)
            pull: Any = await w.until(lambda: _async(w.pull_for(1)), what="the PR")
            first_requests = len(model.model_requests())

            await w.review(pull, "changes_requested", "Say in PASS that it was reviewed.")
            await w.until(lambda: _second_over(w, 1), what="the second run to end", within=120)
            await w.reach(1, State.IN_REVIEW, within=120)
            first, second = await w.runs(1)

    assert first.result is not None
    session = first.result["session_id"]
    assert session
    assert second.spec["agent"]["resume_session_id"] == session
    assert "Say in PASS that it was reviewed." in second.spec["prompt"]
    resumed = model.model_requests()[first_requests:]
    assert resumed, "the second run asked the model nothing"
    # The resumed request holds the first run's conversation, answer included.
    assert "Added the PASS file." in resumed[0].text
    assert second.result is not None
    assert second.result["summary"] == "Addressed the review: PASS now says so."


async def _second_over(w: Any, number: int) -> bool:
    runs = await w.runs(number)
    return len(runs) >= 2 and runs[1].result is not None


async def test_an_answer_resumes_the_claude_code_session(open_world: OpenWorld) -> None:
    claude = agent_cli("claude")
    scenario = Scenario(
        steps=[
            # The ask-a-human skill's way: the question into the run's file, then stop.
            Step(
                tool_calls=(
                    bash('printf "Red or blue?\\n" > "$OPENASE_QUESTION_FILE"; echo draft > D'),
                )
            ),
            Step(text="I asked which colour; waiting for the answer."),
            # Reached only by a request that carries the two turns above.
            Step(tool_calls=(bash("printf 'blue\\n' > PASS"),)),
            Step(text="Used the answer: PASS says blue."),
        ]
    )
    with ModelServer(scenario) as model:
        async with open_world(
            config=CONFIG, control=control_for(model.url), path_prefix=claude.parent
        ) as w:
            w.add_issue(2, "Colour the PASS file", "Ask which colour, then write it.")
            await w.label(2, "openase")

            async def waiting() -> bool:
                row = await w.state(2)
                return row is not None and row.needs_input

            await w.until(waiting, what="the question", within=120)
            row = await w.state(2)
            assert row is not None
            assert row.question == "Red or blue?"
            first_requests = len(model.model_requests())

            await w.comment(2, "Blue, please.")
            await w.until(lambda: _second_over(w, 2), what="the second run to end", within=120)
            await w.reach(2, State.IN_REVIEW, within=120)
            first, second = await w.runs(2)

    assert first.status == "needs_input"
    assert first.result is not None
    session = first.result["session_id"]
    assert session
    assert second.spec["agent"]["resume_session_id"] == session
    assert "Blue, please." in second.spec["prompt"]
    resumed = model.model_requests()[first_requests:]
    assert resumed, "the second run asked the model nothing"
    # The resumed request holds the first run's conversation and the answer.
    assert "I asked which colour; waiting for the answer." in resumed[0].text
    assert "Blue, please." in resumed[0].text
    assert second.result is not None
    assert second.result["summary"] == "Used the answer: PASS says blue."
