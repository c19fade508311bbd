"""Each run's git token (issue #15): minted for that run alone, carried only by its queued
job, which expires before the token; a run whose job expired, or was never sent, is sent
again with a new token, not lost; a run with a result is not sent again."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from arq.constants import job_key_prefix
from arq.jobs import Job
from pydantic import SecretStr

from bot.deps import Deps
from bot.engine.context import Engine
from bot.engine.runs.resend import resend_queued
from bot.engine.runs.sending import RUN_TOKEN_SPARE
from bot.registry import TrackerClients
from bot.tables.mirror import Installation, Repository, Ticket
from bot.tables.workflow import Run, RunState
from runner.contract import RunResult, RunStatus, run_queue, run_result_key
from tests.fakes.github_api import FakeGitHubAPI
from tests.support.lifecycle import control_config
from tests.support.runs import spec_for

INSTALLATION = 4_711
REPO_ID = 9_001
MACHINE = "m1"
WRITE = {"repositories": ["hello"], "permissions": {"contents": "write"}}
READ = {"repositories": ["hello"], "permissions": {"contents": "read"}}


@pytest.fixture
def engine(deps: Deps, github_api: FakeGitHubAPI, tmp_path: Path) -> Engine:
    github_api.add_installation(INSTALLATION, "octo")
    github_api.add_repo("octo/hello", REPO_ID, INSTALLATION)
    return Engine(
        deps=deps,
        github=deps.github_app(),
        control=control_config(tmp_path / "agent.py"),
        trackers=TrackerClients(),
    )


async def queued_run(deps: Deps, run_id: str, *, push: bool = True, **beside: Any) -> None:
    """A run committed as queued a minute ago, its spec stored the way dispatch stores it."""
    spec = spec_for(
        Path("/nowhere/hello.git"),
        ["true"],
        run_id=run_id,
        push=push,
        git_token=SecretStr("ghs_" + "0" * 36),  # what the first send carried
    )
    async with deps.sessions() as session, session.begin():
        if await session.get(Installation, INSTALLATION) is None:
            session.add(Installation(id=INSTALLATION, account_login="octo", account_type="User"))
            session.add(
                Repository(id=REPO_ID, installation_id=INSTALLATION, full_name="octo/hello")
            )
            await session.flush()
        ticket = Ticket(
            source="github",
            external_id=run_id,
            key=f"octo/hello#{run_id}",
            state="open",
            repository_id=REPO_ID,
        )
        session.add(ticket)
        await session.flush()
        session.add(
            Run(
                id=run_id,
                ticket_id=ticket.id,
                workflow="coder",
                attempt=1,
                machine=MACHINE,
                state=RunState.QUEUED,
                spec={**spec.model_dump(mode="json"), "_provider": "script", **beside},
                queued_at=datetime.now(UTC) - timedelta(minutes=1),
            )
        )


async def queued_token(deps: Deps, run_id: str) -> str:
    """The git token in the run's queued job."""
    info = await Job(run_id, deps.redis, _queue_name=run_queue(MACHINE)).info()
    assert info is not None
    token: str = info.args[0]["git_token"]
    return token


async def test_a_queued_run_is_sent_again_with_a_new_token_of_its_own_once_its_job_expired(
    deps: Deps, engine: Engine, github_api: FakeGitHubAPI
) -> None:
    await queued_run(deps, "r1")
    async with deps.sessions() as session:
        row = await session.get(Run, "r1")
    assert row is not None
    assert row.spec["git_token"] is None  # the row keeps no token

    assert await resend_queued(engine) == 1
    first = await queued_token(deps, "r1")
    assert github_api.token_scopes[first] == WRITE
    # The job holds the token until a runner takes it: it expires before the token does.
    lives = timedelta(milliseconds=await deps.redis.pttl(job_key_prefix + "r1"))
    assert timedelta(hours=1) - RUN_TOKEN_SPARE - timedelta(minutes=1) < lives
    assert lives <= timedelta(hours=1) - RUN_TOKEN_SPARE

    # Still queued: no new token, nothing sent.
    assert await resend_queued(engine) == 0
    assert len(github_api.token_scopes) == 1

    # The job expired with its token unused: the run goes out again, with a new token.
    await deps.redis.delete(job_key_prefix + "r1")
    assert await resend_queued(engine) == 1
    second = await queued_token(deps, "r1")
    assert second != first
    assert github_api.token_scopes[second] == WRITE
    assert await deps.redis.zscore(run_queue(MACHINE), "r1") is not None


async def test_an_ask_run_is_sent_again_with_a_read_only_token(
    deps: Deps, engine: Engine, github_api: FakeGitHubAPI
) -> None:
    await queued_run(deps, "r2", push=False, _ask={"who": "alice", "line": "/ask why?"})
    assert await resend_queued(engine) == 1
    assert github_api.token_scopes[await queued_token(deps, "r2")] == READ


async def test_a_run_with_a_result_is_not_sent_again(
    deps: Deps, engine: Engine, github_api: FakeGitHubAPI
) -> None:
    await queued_run(deps, "r3")
    now = datetime.now(UTC)
    result = RunResult(run_id="r3", status=RunStatus.SUCCEEDED, started_at=now, finished_at=now)
    await deps.redis.set(run_result_key("r3"), json.dumps(result.to_wire()))
    assert await resend_queued(engine) == 0
    assert github_api.token_scopes == {}
