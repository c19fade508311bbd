"""Whole lifecycles, driven only through signed webhooks, against the recording fake GitHub
API and real runner processes executing the `command` agent (tests/lifecycle.py)."""

from __future__ import annotations

from pathlib import Path

from bot.deps import Deps
from bot.settings import Settings
from bot.states import State
from tests.conftest import Services
from tests.fakes.github_api import FakeGitHubAPI
from tests.helpers import GitHubWebhookSender
from tests.lifecycle import world


async def test_a_labelled_issue_becomes_a_reviewed_merged_pr(
    deps: Deps,
    settings: Settings,
    github_api: FakeGitHubAPI,
    github: GitHubWebhookSender,
    services: Services,
    tmp_path: Path,
) -> None:
    async with world(deps, settings, github_api, github, tmp_path, services.redis_url) as w:
        w.add_issue(1, "Add a PASS file", "Please add it.")
        await w.label(1, "openase")

        row = await w.reach(1, State.IN_REVIEW)
        pull = await w.until(lambda: _async(w.pull_for(1)), what="the PR")
        assert pull["base"]["ref"] == "main"
        assert "Closes #1" in pull["body"]
        assert row.head_sha == pull["head"]["sha"]
        checks = await w.until(
            lambda: _async(w.check_runs(pull["head"]["sha"]) if len(w.check_runs(pull["head"]["sha"])) == 2 else None),
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


async def _async(value: object) -> object:
    return value
