"""Every slash command end to end: a signed `issue_comment` webhook in, reactions, replies
and state changes out, against the recording fake GitHub API and a real runner
(tests/support/lifecycle.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest

from bot.config.states import State
from tests.conftest import OpenWorld
from tests.fakes.model_server import ModelServer, Scenario, Step
from tests.support.agent_clis import agent_cli
from tests.support.lifecycle import WRITER, World, repo_config

T = TypeVar("T")
Json = dict[str, Any]


@pytest.fixture
async def w(open_world: OpenWorld) -> AsyncIterator[World]:
    async with open_world(config=repo_config(max_attempts=1)) as here:
        yield here


async def _async(value: T) -> T:
    return value


async def reacted(w: World, comment: Json, *contents: str) -> list[str]:
    return await w.until(
        lambda: _async(
            w.reactions_on(comment) if set(contents) <= set(w.reactions_on(comment)) else None
        ),
        what=f"reactions {contents}",
    )


async def replied(w: World, number: int, text: str) -> str:
    return await w.until(
        lambda: _async(next((c for c in w.bot_comments(number) if text in c), None)),
        what=f"a reply saying {text!r}",
    )


async def test_run_starts_the_agent_with_eyes_and_rocket(w: World) -> None:
    w.add_issue(1, "Started by a command", "add PASS")
    comment = await w.comment(1, "Let's go.\n/run")
    await w.reach(1, State.IN_REVIEW)
    assert await reacted(w, comment, "eyes", "rocket")


async def test_a_reader_is_refused_with_thumbs_down_and_one_reply(w: World) -> None:
    w.add_issue(2, "Not yours", "add PASS")
    comment = await w.comment(2, "/run\n/retry", by="mallory")
    reply = await replied(w, 2, "needs write access")
    assert "@mallory" in reply
    assert "> /run" in reply
    assert "-1" in await reacted(w, comment, "-1")
    await asyncio.sleep(1)
    assert await w.runs(2) == []
    assert await w.state(2) is None


async def test_unknown_words_code_and_edits_do_nothing_bad_args_get_usage(w: World) -> None:
    w.add_issue(3, "Noise", "add PASS")
    quiet = await w.comment(3, "/lgtm\n```\n/run\n```\n> /run\n<!-- /run -->")
    usage = await w.comment(3, "/cancel now please")
    reply = await replied(w, 3, "Usage: `/cancel`")
    assert "> /cancel now please" in reply
    assert await reacted(w, usage, "eyes", "confused")
    await w.edit_comment(3, quiet, "/run")  # edits never run commands
    await asyncio.sleep(1.5)
    assert w.reactions_on(quiet) == []
    assert await w.runs(3) == []


async def test_a_redelivered_comment_runs_its_command_once(w: World) -> None:
    w.add_issue(4, "Once", "add PASS")
    comment = await w.comment(4, "/run", delivery="same")
    await w.send_again("same")
    await w.reach(4, State.IN_REVIEW)
    assert len(await w.runs(4)) == 1
    assert sorted(w.reactions_on(comment)) == ["eyes", "rocket"]


async def test_retry_with_guidance_after_giving_up(w: World) -> None:
    w.add_issue(5, "Needs a hint", "[fail-first] add PASS")
    await w.label(5, "openase")
    await w.reach(5, State.FAILED)
    await w.comment(5, "/retry Look at the gate's output, then add the file.")
    await w.reach(5, State.IN_REVIEW)
    runs = await w.runs(5)
    assert len(runs) == 2
    assert "Look at the gate's output, then add the file." in runs[1].spec["prompt"]
    assert "the PASS file is missing" in (runs[1].spec["previous_failure"] or "")


async def test_cancel_stops_the_running_agent(w: World) -> None:
    w.add_issue(6, "Stop it", "[slow] add PASS")
    await w.label(6, "openase")
    await w.reach(6, State.IN_PROGRESS)
    comment = await w.comment(6, "/cancel")
    await w.reach(6, State.CANCELED)
    assert await reacted(w, comment, "rocket")

    async def stopped() -> bool:
        return any(run.status == "canceled" for run in await w.runs(6))

    await w.until(stopped, what="the run to stop")


async def test_status_and_help_answer_anyone(w: World) -> None:
    w.add_issue(7, "How is it going", "add PASS")
    await w.label(7, "openase")
    await w.reach(7, State.IN_REVIEW)
    await w.comment(7, "/status", by="mallory")
    status = await replied(w, 7, "> /status")
    assert "@mallory" in status
    assert "Ready for review" in status
    assert "Attempt" in status
    await w.comment(7, "/help", by="mallory")
    listing = await replied(w, 7, "these are the commands")
    for usage in ("/run [workflow]", "/retry [guidance…]", "/ask QUESTION", "/harness NAME"):
        assert usage in listing


async def test_hold_keeps_the_ticket_waiting_until_unhold(w: World) -> None:
    w.add_issue(8, "Not yet", "add PASS")
    await w.comment(8, "/run\n/hold")  # in order: started, then held at once
    await asyncio.sleep(1.5)
    row = await w.state(8)
    assert row is not None
    assert row.held
    if row.state == State.TODO:  # held before it was claimed: nothing ran
        assert await w.runs(8) == []
    await w.comment(8, "/unhold")
    await w.reach(8, State.IN_REVIEW)


async def test_harness_pins_the_next_runs(w: World) -> None:
    w.add_issue(9, "Use another harness", "add PASS")
    comment = await w.comment(9, "/harness reviewer@1")
    assert await reacted(w, comment, "rocket")
    await replied(w, 9, "harness `reviewer@1`")
    bad = await w.comment(9, "/harness nope@7")
    assert await reacted(w, bad, "confused")
    await w.comment(9, "/run coder")
    await w.reach(9, State.IN_REVIEW)
    (run,) = await w.runs(9)
    # The ticket's pin wins over the workflow's harness.
    assert (run.spec["harness"]["name"], run.spec["harness"]["version"]) == ("reviewer", 1)


async def test_approve_merges_what_a_writer_approves(w: World) -> None:
    w.add_issue(10, "Approve me", "add PASS")
    await w.label(10, "openase")
    row = await w.reach(10, State.IN_REVIEW)

    async def pr_known() -> bool:
        state = await w.state(10)
        return state is not None and state.pr_number is not None

    await w.until(pr_known, what="the PR number")
    await w.comment(10, "/approve", by="mallory")
    await replied(w, 10, "needs write access")
    await w.comment(10, "Looks good.\n/approve")
    await w.reach(10, State.DONE)
    assert w.fake.merges[0]["sha"] == row.head_sha


async def test_run_in_a_new_issue_body_starts_it(w: World) -> None:
    issue = w.add_issue(11, "From a template", "add PASS\n\n/run")
    issue["user"] = w.user(WRITER)  # the issue's author has write access
    await w.open_issue(11)
    await w.reach(11, State.IN_REVIEW)


async def test_ask_answers_without_changing_anything(w: World) -> None:
    w.add_issue(12, "A question", "add PASS")
    comment = await w.comment(12, "/ask What does src/app.py print?")
    answer = await replied(w, 12, "I did the work")
    assert "> /ask What does src/app.py print?" in answer
    assert await reacted(w, comment, "eyes", "rocket")
    (run,) = await w.runs(12)
    assert run.workflow == "ask"
    assert run.spec["push"] is False
    # The question and the ticket are in the prompt, fenced; the harness has neither.
    prompt = run.spec["prompt"]
    assert "**question by @alice**:\n\n```text\nWhat does src/app.py print?\n```" in prompt
    assert "**:\n\n```text\nA question\n```" in prompt  # the ticket's title
    for written in ("What does src/app.py print?", "A question", "add PASS"):
        assert written not in run.spec["harness"]["text"]
    row = await w.state(12)
    assert row is None or row.state == State.BACKLOG
    assert w.repo.pulls == []
    assert "openase/ask-12" not in w.repo.branches


async def test_bots_are_not_answered_unless_listed(w: World) -> None:
    w.add_issue(13, "Bots talking", "add PASS")
    ignored = await w.comment(13, "/run", by="renovate[bot]", kind="Bot")
    await asyncio.sleep(1.5)
    assert w.reactions_on(ignored) == []
    assert await w.runs(13) == []


async def test_a_listed_bot_may_use_its_command(open_world: OpenWorld) -> None:
    config = repo_config(extra='commands:\n  run: {users: ["renovate[bot]"]}\n')
    async with open_world(config=config) as here:
        here.add_issue(14, "Started by a bot", "add PASS")
        comment = await here.comment(14, "/run", by="renovate[bot]", kind="Bot")
        await here.reach(14, State.IN_REVIEW)
        assert await reacted(here, comment, "eyes", "rocket")


async def test_ask_with_claude_code_answers_and_resumes_its_session(open_world: OpenWorld) -> None:
    claude = agent_cli("claude")
    scenario = Scenario(steps=[Step(text="It prints hello."), Step(text="Yes, only that line.")])
    with ModelServer(scenario) as model:
        control = f"""\
providers:
  claude:
    cli: claude_code
    env: {{ANTHROPIC_BASE_URL: "{model.url}", ANTHROPIC_API_KEY: sk-test}}
defaults:
  provider: claude
"""
        async with open_world(config="", control=control, path_prefix=claude.parent) as here:
            here.add_issue(15, "Questions", "about app.py")
            await here.comment(15, "/ask What does src/app.py print?")
            first = await replied(here, 15, "It prints hello.")
            assert "> /ask What does src/app.py print?" in first
            await here.comment(15, "/ask Only that?")
            await replied(here, 15, "Yes, only that line.")
            runs = await here.runs(15)
            assert [run.workflow for run in runs] == ["ask", "ask"]
            assert runs[0].result is not None
            session = runs[0].result["session_id"]
            assert session
            assert runs[1].spec["agent"]["resume_session_id"] == session
            assert runs[1].spec["limits"]["budget_usd"] == 1.0
            # The second request carried the first exchange: the session was resumed.
            assert "It prints hello." in model.model_requests()[-1].text
            assert here.repo.pulls == []
