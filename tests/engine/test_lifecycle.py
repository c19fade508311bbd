"""Whole lifecycles, driven only through signed webhooks, against the recording fake GitHub
API and real runner processes executing the `command` agent (tests/support/lifecycle.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import select

from bot.config.states import State
from bot.deps import Deps
from bot.engine.runs import tracking as run_tracking
from bot.settings import Settings
from bot.tables.mirror import Repository, Ticket
from bot.tables.workflow import Activity, Run, TicketState
from tests.conftest import OpenWorld
from tests.fakes.model_server import ModelServer, Scenario, Step, ToolCall
from tests.support.agent_clis import agent_cli
from tests.support.browser import served
from tests.support.git_repos import git, show
from tests.support.helpers import github_example
from tests.support.lifecycle import CONFINED, FULL_NAME, WRITER, World, repo_config

T = TypeVar("T")
Json = dict[str, Any]


async def test_a_labelled_issue_becomes_a_reviewed_merged_pr(open_world: OpenWorld) -> None:
    async with open_world() as w:
        w.add_issue(1, "Add a PASS file", "Please add it.")
        await w.label(1, "openase")

        row = await w.reach(1, State.IN_REVIEW)
        pull = await w.until(lambda: _async(w.pull_for(1)), what="the PR")
        assert pull["base"]["ref"] == "main"
        assert "Closes #1" in pull["body"]
        assert row.head_sha == pull["head"]["sha"]
        # The board's card shows the run's gates (bot.engine.results keeps them).
        assert row.checks == [{"name": "openase/tests", "passed": True, "gate": "block"}]
        checks = await w.until(
            lambda: _async(
                w.check_runs(pull["head"]["sha"])
                if len(w.check_runs(pull["head"]["sha"])) == 2
                else None
            ),
            what="two check runs",
        )
        assert checks["openase/tests"]["conclusion"] == "success"
        assert checks["openase"]["conclusion"] == "success"
        await w.until(lambda: _async("openase/in-review" in w.labels(1)), what="in-review label")

        await w.review(pull, "approved")
        await w.reach(1, State.DONE)
        await w.until(lambda: _async(w.fake.merges), what="the merge")
        assert w.fake.merges[0]["sha"] == pull["head"]["sha"]
        await w.until(lambda: _async(w.issue(1)["state"] == "closed"), what="the issue to close")
        await w.until(lambda: _async("openase/done" in w.labels(1)), what="the done label")
        status = [c for c in w.bot_comments(1) if "<!-- openase:status -->" in c]
        assert len(status) == 1


async def _async(value: T) -> T:
    return value


async def test_a_failing_gate_is_retried_with_its_output_and_then_passes(
    open_world: OpenWorld,
) -> None:
    async with open_world() as w:
        w.add_issue(2, "Flaky start", "[fail-first] add the PASS file")
        await w.label(2, "openase")

        row = await w.reach(2, State.IN_REVIEW)
        runs = await w.runs(2)
        assert [run.status for run in runs] == ["gates_failed", "succeeded"]
        assert [run.attempt for run in runs] == [1, 2]
        assert row.attempt == 2
        # The second attempt was told what the gate said.
        assert "the PASS file is missing" in (runs[1].spec["previous_failure"] or "")
        failed_sha = runs[0].result["head_sha"] if runs[0].result else None
        assert failed_sha
        checks = await w.until(
            lambda: _async(
                w.check_runs(failed_sha) if len(w.check_runs(failed_sha)) == 2 else None
            ),
            what="the failed attempt's check runs",
        )
        gate = checks["openase/tests"]
        assert gate["conclusion"] == "failure"
        assert gate["_actions"][0]["identifier"] == "retry"
        annotations = w.fake.annotations[gate["id"]]
        assert annotations[0]["path"] == "src/app.py"
        assert annotations[0]["start_line"] == 3
        assert checks["openase"]["conclusion"] == "failure"
        await w.until(lambda: _async(w.pull_for(2)), what="the PR")
        assert len(w.repo.pulls) == 1


async def test_the_last_failed_attempt_gives_up_with_a_comment(open_world: OpenWorld) -> None:
    config = repo_config(max_attempts=2)
    async with open_world(config=config) as w:
        w.add_issue(3, "Impossible", "[never-pass]")
        await w.label(3, "openase")

        row = await w.reach(3, State.FAILED)
        assert row.attempt == 2
        assert "the PASS file is missing" in (row.last_failure or "")
        assert [run.status for run in await w.runs(3)] == ["gates_failed", "gates_failed"]
        gave_up = await w.until(
            lambda: _async([c for c in w.bot_comments(3) if "gave up" in c]),
            what="the gave-up comment",
        )
        assert len(gave_up) == 1
        assert "the PASS file is missing" in gave_up[0]
        await w.until(lambda: _async("openase/failed" in w.labels(3)), what="failed label")
        assert w.repo.pulls == []


async def test_changes_requested_send_the_review_to_the_agent_and_update_the_pr(
    open_world: OpenWorld,
) -> None:
    async with open_world() as w:
        w.add_issue(4, "Reviewed work", "add PASS")
        await w.label(4, "openase")
        first = await w.reach(4, State.IN_REVIEW)
        pull = await w.until(lambda: _async(w.pull_for(4)), what="the PR")
        await w.until(lambda: _pr_known(w, 4), what="the PR number to be recorded")

        comment = {"path": "src/app.py", "line": 1, "body": "Say hello to the world."}
        await w.review(pull, "changes_requested", "Please greet properly.", comments=[comment])

        await w.until(lambda: _moved_on(w, 4, first.head_sha), what="a second reviewed commit")
        second = await w.reach(4, State.IN_REVIEW)
        runs = await w.runs(4)
        assert len(runs) == 2
        prompt, harness = runs[1].spec["prompt"], runs[1].spec["harness"]["text"]
        # The review's words are in the prompt, fenced and labelled; never in the harness.
        feedback = prompt.split("## Review feedback to address", 1)[1]
        assert "@alice reviewed the pull request (changes requested)." in feedback
        assert "**review by @alice**:\n\n```text\nPlease greet properly.\n```" in feedback
        assert (
            "**review comment by @alice on src/app.py:1**:\n\n```text\nSay hello to the world.\n```"
        ) in feedback
        for written in ("Please greet", "Say hello", "Reviewed work"):
            assert written not in harness
        reviewed = show(w.remote, str(second.head_sha), "REVIEWED")
        assert "Please greet properly." in reviewed
        assert len(w.repo.pulls) == 1  # the same PR, updated

        await w.review(w.pull_for(4) or pull, "approved")
        await w.reach(4, State.DONE)
        assert w.fake.merges[-1]["sha"] == second.head_sha


async def test_redelivered_and_echoed_webhooks_change_nothing(open_world: OpenWorld) -> None:
    async with open_world() as w:
        w.add_issue(5, "Once only", "add PASS")
        await w.label(5, "openase", delivery="same-delivery")
        await w.label(5, "openase", delivery="same-delivery")  # GitHub's redelivery
        await w.label(5, "openase")  # the label event again, as a new delivery
        row = await w.reach(5, State.IN_REVIEW)
        await w.until(lambda: _async(w.pull_for(5)), what="the PR")

        # The bot's own label change, echoed late by GitHub, does not move the ticket.
        await w.label(5, "openase/todo", by="openase[bot]", bot=True)
        # A human may not claim the agent is working: the engine puts its label back.
        await w.label(5, "openase/in-progress")
        await w.until(lambda: _version_above(w, 5, row.version), what="the label to be restored")
        after = await w.state(5)
        assert after is not None
        assert after.state == State.IN_REVIEW
        assert len(await w.runs(5)) == 1
        assert len(w.repo.pulls) == 1


async def test_closing_the_issue_cancels_the_running_agent(open_world: OpenWorld) -> None:
    async with open_world() as w:
        w.add_issue(6, "Never mind", "[slow] add PASS")
        await w.label(6, "openase")
        await w.reach(6, State.IN_PROGRESS)
        await w.until(lambda: _run_state(w, 6, "running"), what="the agent to start")

        await w.close_issue(6)
        await w.reach(6, State.CANCELED)
        await w.until(lambda: _run_status(w, 6, "canceled"), what="the run to stop")
        assert w.repo.pulls == []


async def test_two_workflows_relay_one_ticket(open_world: OpenWorld) -> None:
    relay = """\
workflows:
  design:
    trigger_labels: [openase]
    provider: script
    skills: []
    harness: docs
    finish: build
    hooks:
      on_complete:
        - {name: notes, run: "test -f attempts.txt"}
  build:
    pickup: build
    provider: script
    skills: []
    approval: none
    hooks:
      on_complete:
        - {name: tests, run: "test -f PASS"}
"""
    async with open_world(config=relay) as w:
        w.add_issue(7, "Design then build", "add PASS")
        await w.label(7, "openase")

        await w.reach(7, State.DONE)  # approval: none, so it merges by itself
        runs = await w.runs(7)
        assert [run.workflow for run in runs] == ["design", "build"]
        assert [run.spec["harness"]["name"] for run in runs] == ["docs", "coder"]
        assert runs[1].spec["hooks"]["on_complete"][0]["name"] == "tests"
        story = await w.story()
        assert "in_progress → build: design done; build next" in story
        assert "build → in_progress: build attempt 1" in story


async def _pr_known(w: World, number: int) -> bool:
    row = await w.state(number)
    return row is not None and row.pr_number is not None


async def _moved_on(w: World, number: int, sha: str | None) -> bool:
    row = await w.state(number)
    return row is not None and row.state == State.IN_REVIEW and row.head_sha != sha


async def _version_above(w: World, number: int, version: int) -> bool:
    row = await w.state(number)
    return row is not None and row.version > version


async def _run_state(w: World, number: int, state: str) -> bool:
    return any(run.state == state for run in await w.runs(number))


async def _run_status(w: World, number: int, status: str) -> bool:
    return any(run.status == status for run in await w.runs(number))


# Stopping the worker mid-job is the point: arq's half-used Redis pipelines of the jobs it
# was running are then collected unclosed, which Python reports as an unraisable warning.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_killed_worker_and_runner_lose_nothing(
    open_world: OpenWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Declared lost as soon as its liveness key (30 s) is gone, not 45 s after that.
    monkeypatch.setattr(run_tracking, "LOST_AFTER", timedelta(seconds=2))
    async with open_world() as w:
        w.add_issue(8, "Survive", "[slow-first] add PASS")
        await w.label(8, "openase")
        await w.until(lambda: _run_state(w, 8, "running"), what="the agent to start")

        await w.stop_worker(graceful=False)  # the control plane goes down mid-run ...
        first = w.runners[0]
        first.kill()  # ... and so does the machine, agent and all
        await first.process.wait()
        await w.start_runner("m2")
        await w.start_worker()

        row = await w.reach(8, State.IN_REVIEW, within=90)
        runs = await w.runs(8)
        assert [(run.machine, run.state) for run in runs] == [
            ("m1", "lost"),
            ("m2", "finished"),
        ]
        assert row.attempt == 2
        assert "stopped sending heartbeats" in (runs[1].spec["previous_failure"] or "")
        await w.until(lambda: _async(w.pull_for(8)), what="the PR")


async def test_twenty_issues_at_once_respect_the_concurrency_limit_with_two_workers(
    open_world: OpenWorld, deps: Deps
) -> None:
    config = repo_config(repo_concurrency=3)
    # Two runners, and two control workers deciding at once.
    async with open_world(config=config, runners=2, workers=2, agent_sleep=1.0) as w:
        for number in range(1, 21):
            w.add_issue(number, f"Ticket {number}", "[slow] add PASS")
        await asyncio.gather(*(w.label(number, "openase") for number in range(1, 21)))

        most = 0

        async def all_in_review() -> bool:
            nonlocal most
            async with deps.sessions() as session:
                states = (await session.scalars(select(TicketState.state))).all()
            most = max(most, sum(state == State.IN_PROGRESS for state in states))
            return len(states) == 20 and all(state == State.IN_REVIEW for state in states)

        await w.until(all_in_review, within=120, what="all twenty in review")
        assert most == 3
        async with deps.sessions() as session:
            machines = set((await session.scalars(select(Run.machine))).all())
            runs = (await session.scalars(select(Run))).all()
        assert machines == {"m1", "m2"}
        assert len(runs) == 20
        assert all(run.status == "succeeded" for run in runs)


async def test_claude_code_takes_a_labelled_issue_to_a_merged_pr(open_world: OpenWorld) -> None:
    claude = agent_cli("claude")  # the pinned real CLI from npm
    write = ToolCall("Bash", {"command": "printf 'ok\\n' > PASS", "description": "add PASS"})
    scenario = Scenario(steps=[Step(tool_calls=(write,)), Step(text="Added the PASS file.")])
    with ModelServer(scenario) as model:
        control = f"""\
providers:
  claude:
    cli: claude_code
    model: claude-sonnet-4-5
    env: {{ANTHROPIC_BASE_URL: "{model.url}", ANTHROPIC_API_KEY: sk-test}}
    limits: {{wall_seconds: 180, stall_seconds: 120}}
defaults:
  provider: claude
"""
        config = repo_config(approval="none").replace("provider: script", "provider: claude")
        config = config.replace("skills: []", "skills: [run-tests]")
        async with open_world(config=config, control=control, path_prefix=claude.parent) as w:
            w.add_issue(9, "Add a PASS file", "The gate wants a PASS file at the root.")
            await w.label(9, "openase")

            row = await w.reach(9, State.DONE, within=180)
            (run,) = await w.runs(9)
            assert run.status == "succeeded"
            assert run.result is not None
            assert run.result["summary"] == "Added the PASS file."
            assert show(w.remote, str(row.head_sha), "PASS") == "ok"
            # The rendered harness and the ticket reached the model.
            request = model.model_requests()[0].text
            assert "Add a PASS file" in request
            assert "run-tests" in request
            await w.until(lambda: _async(w.fake.merges), what="the merge")


async def test_retry_on_a_failed_check_run_starts_the_ticket_again(
    open_world: OpenWorld, settings: Settings
) -> None:
    config = repo_config(max_attempts=1)
    async with open_world(config=config) as w:
        w.add_issue(10, "Second chance", "[fail-first] add PASS")
        await w.label(10, "openase")
        await w.reach(10, State.FAILED)
        (failed,) = await w.runs(10)
        assert failed.result is not None
        sha = failed.result["head_sha"]
        gate = await w.until(
            lambda: _async(w.check_runs(sha).get("openase/tests")), what="the failed check run"
        )

        example = github_example("check_run", "requested_action")
        check = {
            **example["check_run"],
            "id": gate["id"],
            "name": gate["name"],
            "external_id": gate["external_id"],
            "head_sha": sha,
            "app": {**example["check_run"]["app"], "id": settings.github_app_id},
        }
        await w.send(
            "check_run",
            {
                "action": "requested_action",
                "check_run": check,
                "requested_action": {"identifier": "retry"},
                **w.envelope(WRITER),
            },
        )
        await w.reach(10, State.IN_REVIEW)
        runs = await w.runs(10)
        assert [run.status for run in runs] == ["gates_failed", "succeeded"]
        assert "Retry requested by @alice" in await w.story()


async def test_the_projects_board_follows_the_ticket(open_world: OpenWorld) -> None:
    async with open_world() as w:
        assert w.boards is not None
        board = w.boards.add_board("Roadmap", ("Todo", "In Progress", "In Review", "Done"))
        w.add_issue(11, "On the board", "add PASS")
        card = w.boards.add_card(board, w.repo, 11, status="Todo")
        await w.label(11, "openase")
        await w.reach(11, State.IN_REVIEW)
        boards = w.boards
        await w.until(
            lambda: _async(boards.status_of(card) == "In Review"), what="the card to move"
        )
        moved_to = [m["value"]["singleSelectOptionId"] for m in boards.mutations]
        assert board.option_id("In Review") in moved_to

        # A human drags the card to Done: the ticket follows.
        card.option_id = board.option_id("Done")
        example = github_example("projects_v2_item", "edited")
        item = {
            **example["projects_v2_item"],
            "node_id": card.id,
            "project_node_id": board.id,
            "content_type": "Issue",
            "content_node_id": "I_kwDOtest11",
        }
        await w.send(
            "projects_v2_item",
            {**example, "projects_v2_item": item, **w.envelope(WRITER)},
        )
        await w.reach(11, State.DONE)


async def test_an_invalid_config_is_explained_on_the_issue_and_nothing_runs(
    open_world: OpenWorld, tmp_path: Path
) -> None:
    broken = repo_config().replace("max_attempts: 3", "max_attempts: lots")
    async with open_world(config=broken) as w:
        w.add_issue(12, "Misconfigured", "add PASS")
        await w.label(12, "openase")
        said = await w.until(
            lambda: _async([c for c in w.bot_comments(12) if "cannot run this ticket" in c]),
            what="the config comment",
        )
        assert len(said) == 1
        assert "workflows.coder.max_attempts" in said[0]
        assert ".github/openase.yml" in said[0]
        assert await w.runs(12) == []
        waiting = await w.until(lambda: _waiting(w, 12), what="the config wait")
        assert "openase.yml" in (waiting.waiting or "")

        # Someone fixes the file on the default branch: the ticket starts by itself.
        fix = tmp_path / "fix"
        git(tmp_path, "clone", "-q", str(w.remote), str(fix))
        (fix / ".github" / "openase.yml").write_text(repo_config())
        git(fix, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "fix config")
        git(fix, "push", "-q", "origin", "main")
        await w.reach(12, State.IN_REVIEW)
        assert len([c for c in w.bot_comments(12) if "cannot run this ticket" in c]) == 1


async def test_a_repository_without_config_gets_the_default_workflow(open_world: OpenWorld) -> None:
    async with open_world(config="") as w:
        w.add_issue(13, "Defaults", "add PASS")
        await w.label(13, "openase")
        await w.reach(13, State.IN_REVIEW)
        (run,) = await w.runs(13)
        assert run.workflow == "coder"
        assert run.spec["harness"]["name"] == "coder"
        # The workflow's default skills, and the built-in every run gets.
        assert [skill["name"] for skill in run.spec["skills"]] == [
            "run-tests",
            "commit-message",
            "ask-a-human",
        ]


async def test_a_config_github_will_not_serve_is_waited_for_never_defaulted(
    open_world: OpenWorld,
) -> None:
    """GitHub failing on the file (5xx) is no absent file: the ticket waits, says why once,
    and runs with the repository's own gates once GitHub answers again."""
    async with open_world() as w:
        for _ in range(400):  # every read while the test looks, and more
            w.fake.queue(503, {"message": "Service Unavailable"}, path_regex=r".*/contents/.*")
        w.add_issue(40, "Gated", "add PASS")
        await w.label(40, "openase")
        row = await w.until(
            lambda: _waiting_for(w, 40, "Waiting to read `.github/openase.yml`"),
            what="the wait for the config",
        )
        assert "GitHub did not answer" in (row.waiting or "")
        await asyncio.sleep(4)  # a dispatch tick or two retry meanwhile
        assert await w.runs(40) == []
        assert row.state == State.TODO

        w.fake.queued.clear()  # GitHub answers again
        await w.reach(40, State.IN_REVIEW)
        (run,) = await w.runs(40)
        assert [hook["name"] for hook in run.spec["hooks"]["on_complete"]] == ["tests"]
        waits = [line for line in await _activity_lines(w, 40) if "Waiting to read" in line]
        assert len(waits) == 1  # said once, not once per retry


async def test_a_renamed_default_branch_is_followed(open_world: OpenWorld) -> None:
    """`main` renamed to `trunk` without a webhook: the config comes from `trunk`, the run
    starts from it and the mirror learns the new name."""
    async with open_world() as w:
        git(w.root, "--git-dir", str(w.remote), "branch", "-m", "main", "trunk")
        git(w.root, "--git-dir", str(w.remote), "symbolic-ref", "HEAD", "refs/heads/trunk")
        w.repo.data["default_branch"] = "trunk"
        w.add_issue(41, "Renamed", "add PASS")
        await w.label(41, "openase")
        await w.reach(41, State.IN_REVIEW)
        (run,) = await w.runs(41)
        assert run.spec["base_branch"] == "trunk"
        assert [hook["name"] for hook in run.spec["hooks"]["on_complete"]] == ["tests"]
        async with w.deps.sessions() as session:
            branch = await session.scalar(
                select(Repository.default_branch).where(Repository.full_name == FULL_NAME)
            )
        assert branch == "trunk"


async def test_a_default_branch_that_is_gone_leaves_the_ticket_waiting(
    open_world: OpenWorld,
) -> None:
    async with open_world() as w:
        git(w.root, "--git-dir", str(w.remote), "branch", "-m", "main", "elsewhere")
        w.add_issue(42, "Nowhere", "add PASS")
        await w.label(42, "openase")
        row = await w.until(
            lambda: _waiting_for(w, 42, "has no default branch `main`"),
            what="the wait for a default branch",
        )
        assert row.state == State.TODO
        assert await w.runs(42) == []


async def _activity_lines(w: World, number: int) -> list[str]:
    async with w.deps.sessions() as session:
        ticket_id = await session.scalar(select(Ticket.id).where(Ticket.number == number))
        rows = await session.scalars(
            select(Activity.message).where(Activity.ticket_id == ticket_id).order_by(Activity.id)
        )
        return list(rows.all())


async def test_a_blocked_ticket_waits_for_its_blocker_to_close(open_world: OpenWorld) -> None:
    async with open_world() as w:
        w.add_issue(14, "Foundation", "comes first")
        await w.open_issue(14)
        await w.until(lambda: _mirrored(w, 14), what="#14 in the mirror")
        w.add_issue(15, "Building on it", "Blocked by #14. add PASS")
        await w.label(15, "openase")
        row = await w.until(lambda: _waiting(w, 15), what="#15 to wait")
        assert "octo/hello#14" in (row.waiting or "")
        assert await w.runs(15) == []

        await w.close_issue(14)
        await w.reach(15, State.IN_REVIEW)


async def _waiting(w: World, number: int) -> TicketState | None:
    row = await w.state(number)
    return row if row is not None and row.waiting else None


async def test_rerun_requested_on_the_check_reruns_only_the_gates(open_world: OpenWorld) -> None:
    async with open_world() as w:
        w.add_issue(16, "Check again", "add PASS")
        await w.label(16, "openase")
        row = await w.reach(16, State.IN_REVIEW)
        sha = str(row.head_sha)
        await w.until(lambda: _async(len(w.check_runs(sha)) == 2), what="the check runs")

        await w.rerequest(sha)
        await w.until(lambda: _two_runs(w, 16), what="a second run")
        again = await w.reach(16, State.IN_REVIEW)
        runs = await w.runs(16)
        assert runs[1].spec["agent"]["argv"] == ["true"]  # no agent: the gates only
        assert runs[1].status == "succeeded"
        assert again.head_sha == sha  # nothing new was committed
        assert len(w.repo.pulls) == 1


async def test_a_human_merge_means_done_and_late_events_change_nothing(
    open_world: OpenWorld,
) -> None:
    async with open_world() as w:
        w.add_issue(17, "Merged by hand", "add PASS")
        await w.label(17, "openase")
        await w.reach(17, State.IN_REVIEW)
        pull = await w.until(lambda: _async(w.pull_for(17)), what="the PR")
        await w.until(lambda: _pr_known(w, 17), what="the PR number to be recorded")

        await w.merge_by_hand(pull)
        await w.reach(17, State.DONE)
        # An approval that GitHub delivers late moves nothing and merges nothing.
        await w.review(pull, "approved")
        await w.label(17, "openase")

        # Out of order: an issue closed at t2, then its `labeled` of t1 arrives.
        w.add_issue(18, "Closed first", "add PASS")
        issue = w.issue(18)
        labelled_at = w.now()
        await w.close_issue(18)
        issue.update(state="open", updated_at=labelled_at)
        await w.label(18, "openase", at=labelled_at)

        await asyncio.sleep(2)  # let anything that would (wrongly) start, start
        assert (await w.state(17)).state == State.DONE  # type: ignore[union-attr]
        assert w.fake.merges == []
        assert len(await w.runs(17)) == 1
        assert await w.runs(18) == []


async def _two_runs(w: World, number: int) -> bool:
    return len(await w.runs(number)) == 2


async def test_gates_show_in_progress_on_the_commit_while_they_run(open_world: OpenWorld) -> None:
    slow_gate = repo_config().replace('run: "test -f PASS', 'run: "sleep 5; test -f PASS')
    async with open_world(config=slow_gate) as w:
        w.add_issue(19, "Slow tests", "add PASS")
        await w.label(19, "openase")

        def in_progress() -> dict[str, Json] | None:
            runs = [r for r in w.fake.check_runs.values() if r["status"] == "in_progress"]
            return {r["name"]: r for r in runs} if len(runs) == 2 else None

        running = await w.until(lambda: _async(in_progress()), what="in-progress check runs")
        assert set(running) == {"openase/tests", "openase"}
        row = await w.reach(19, State.IN_REVIEW)
        done = w.check_runs(str(row.head_sha))
        await w.until(
            lambda: _async(all(r["status"] == "completed" for r in done.values())),
            what="the check runs to complete",
        )
        # The same two check runs, completed in place.
        assert {r["id"] for r in done.values()} == {r["id"] for r in running.values()}
        assert {r["conclusion"] for r in done.values()} == {"success"}


async def test_the_merge_waits_for_other_ci_to_go_green(open_world: OpenWorld) -> None:
    async with open_world() as w:
        w.add_issue(20, "Other CI too", "add PASS")
        await w.label(20, "openase")
        row = await w.reach(20, State.IN_REVIEW)
        sha = str(row.head_sha)
        pull = await w.until(lambda: _async(w.pull_for(20)), what="the PR")
        await w.until(lambda: _pr_known(w, 20), what="the PR number to be recorded")
        ci = w.fake.add_foreign_check_run(w.repo, sha, "ci/build")

        await w.review(pull, "approved")
        waiting = await w.until(lambda: _waiting(w, 20), what="the wait for CI")
        assert "ci/build" in (waiting.waiting or "")

        ci.update(status="completed", conclusion="failure")
        await w.checks_completed(ci)
        failed = await w.until(lambda: _waiting_for(w, 20, "did not pass"), what="CI failed")
        assert failed.state == State.IN_REVIEW
        assert w.fake.merges == []

        ci.update(conclusion="success")  # CI re-ran green
        await w.checks_completed(ci)
        await w.reach(20, State.DONE)
        assert w.fake.merges[0]["sha"] == sha


async def _waiting_for(w: World, number: int, text: str) -> TicketState | None:
    row = await w.state(number)
    return row if row is not None and text in (row.waiting or "") else None


async def _mirrored(w: World, number: int) -> bool:
    async with w.deps.sessions() as session:
        found = await session.scalar(select(Ticket.id).where(Ticket.number == number))
    return found is not None


async def test_a_human_push_to_the_pr_reruns_the_gates_on_it(
    open_world: OpenWorld, tmp_path: Path
) -> None:
    async with open_world() as w:
        w.add_issue(22, "Touched up by hand", "add PASS")
        await w.label(22, "openase")
        first = await w.reach(22, State.IN_REVIEW)
        pull = await w.until(lambda: _async(w.pull_for(22)), what="the PR")
        await w.until(lambda: _pr_known(w, 22), what="the PR number to be recorded")

        hand = tmp_path / "hand"
        git(tmp_path, "clone", "-q", "-b", "openase/22", str(w.remote), str(hand))
        (hand / "NOTES.md").write_text("a human was here\n")
        git(hand, "add", "NOTES.md")
        git(hand, "-c", "user.name=h", "-c", "user.email=h@h", "commit", "-qm", "notes")
        git(hand, "push", "-q", "origin", "openase/22")
        pushed = git(hand, "rev-parse", "HEAD").strip()
        pull["head"]["sha"] = pushed
        pull["updated_at"] = w.now()
        await w.send(
            "pull_request",
            {
                "action": "synchronize",
                "number": pull["number"],
                "pull_request": pull,
                "before": first.head_sha,
                "after": pushed,
                **w.envelope(WRITER),
            },
        )

        await w.until(lambda: _two_runs(w, 22), what="the gates to run again")
        again = await w.reach(22, State.IN_REVIEW)
        assert again.head_sha == pushed
        runs = await w.runs(22)
        assert runs[1].spec["agent"]["argv"] == ["true"]
        checks = await w.until(
            lambda: _async(w.check_runs(pushed) if len(w.check_runs(pushed)) == 2 else None),
            what="check runs on the pushed commit",
        )
        assert {run["conclusion"] for run in checks.values()} == {"success"}


@pytest.mark.skipif(
    not CONFINED, reason="bubblewrap cannot confine here (see tests/runner/sandbox)"
)
async def test_a_refused_connection_is_shown_on_the_run_page(open_world: OpenWorld) -> None:
    async with open_world() as w:
        w.add_issue(1, "Phone home", "[egress] then add the PASS file")
        await w.label(1, "openase")
        run_id = (await w.reach(1, "in_progress")).run_id
        assert run_id is not None
        await w.reach(1, "in_review")
        async with served(w.deps) as url, httpx.AsyncClient(base_url=url) as client:
            page = (await client.get(f"/runs/{run_id}")).text
    assert "the proxy said HTTP/1.1 403 Forbidden" in page
    assert (
        "sandbox: refused a connection to example.com:443 (not in this run&#39;s network "
        "allowlist)" in page
    )
