"""Issue #15, least-privilege tokens, end to end (tests/support/lifecycle.py's world: real
runner processes): each run's git token is minted for it alone (its repository's contents,
read-only for `/ask`), and once the run is over it is nowhere: not in any Redis key, not in
the run's row or events, not in a page, not in a log of the control plane or the runner."""

from __future__ import annotations

import json
from typing import Any

import httpx
from arq.constants import in_progress_key_prefix, job_key_prefix
from sqlalchemy import select
from structlog.testing import capture_logs

from bot.config.states import State
from bot.tables.workflow import Run, RunEvent
from tests.conftest import OpenWorld
from tests.support.lifecycle import World
from tests.support.redis_scan import key_count, keys_holding

WRITE = {"repositories": ["hello"], "permissions": {"contents": "write"}}
READ = {"repositories": ["hello"], "permissions": {"contents": "read"}}


def run_tokens(w: World) -> dict[str, Any]:
    """The tokens minted for runs (a body asks for less than the installation's all)."""
    return {token: scope for token, scope in w.fake.token_scopes.items() if scope}


async def job_over(w: World, run_id: str) -> bool:
    """arq is through with the run's job (after its result went out, it ends)."""
    redis = w.deps.redis
    return not await redis.exists(job_key_prefix + run_id, in_progress_key_prefix + run_id)


async def assert_nowhere(w: World, client: httpx.AsyncClient, token: str, run: Run) -> None:
    await w.until(lambda: job_over(w, run.id), what="arq to be through with the run's job")
    assert await key_count(w.deps.redis) > 0  # the scan below looks at something
    assert await keys_holding(w.deps.redis, token) == []
    assert run.spec["git_token"] is None
    assert token not in json.dumps(run.spec)
    async with w.deps.sessions() as session:
        events = (
            await session.scalars(select(RunEvent.event).where(RunEvent.run_id == run.id))
        ).all()
    assert events
    assert token not in json.dumps(list(events))
    for path in (
        f"/runs/{run.id}",
        f"/tickets/{run.ticket_id}",
        f"/api/v1/runs/{run.id}",
        f"/api/v1/runs/{run.id}/events",
        f"/api/v1/tickets/{run.ticket_id}/activity",
    ):
        page = await client.get(path)
        assert page.status_code == 200, path
        assert token not in page.text, path


async def test_a_runs_token_is_its_own_and_outlives_the_run_nowhere(
    open_world: OpenWorld, client: httpx.AsyncClient
) -> None:
    with capture_logs() as logs:
        async with open_world() as w:
            w.add_issue(1, "Add a PASS file", "Please add it.")
            await w.label(1, "openase")
            await w.reach(1, State.IN_REVIEW)

            assert list(run_tokens(w).values()) == [WRITE]
            (token,) = run_tokens(w)
            (run,) = await w.runs(1)
            await assert_nowhere(w, client, token, run)
    assert logs
    assert all(token not in repr(entry) for entry in logs)
    for runner in w.runners:
        assert "execute_run" in runner.log.read_text()  # arq's lines name the job
        assert token not in runner.log.read_text()


async def test_an_ask_run_gets_a_read_only_token_that_outlives_it_nowhere(
    open_world: OpenWorld, client: httpx.AsyncClient
) -> None:
    with capture_logs() as logs:
        async with open_world() as w:
            w.add_issue(2, "A question", "add PASS")
            await w.comment(2, "/ask What does src/app.py print?")

            async def answered() -> bool:
                return any("I did the work" in body for body in w.bot_comments(2))

            await w.until(answered, what="the answer")
            assert list(run_tokens(w).values()) == [READ]
            (token,) = run_tokens(w)
            (run,) = await w.runs(2)
            assert run.spec["push"] is False
            await assert_nowhere(w, client, token, run)
    assert all(token not in repr(entry) for entry in logs)
    for runner in w.runners:
        assert token not in runner.log.read_text()
