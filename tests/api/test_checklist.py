"""`openase doctor` and the checklist behind it: all green on a ready deployment, then each
check failing in turn with its one-line fix; against real Postgres and Redis, the runner
registry a runner writes, and the fake GitHub (`GET /app`, the delivery log)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import delete

from bot.api.checklist import Check, blocked, checklist
from bot.deps import Deps
from bot.effects.kinds import EffectKind
from bot.effects.outbox import add_effect
from bot.effects.perform import perform_pending
from bot.processes.cli import main
from bot.processes.worker import PERFORMERS
from bot.settings import Settings
from bot.tables.mirror import Delivery, DeliveryStatus, Installation, Repository
from harness_store.db import transaction
from runner.contract import MACHINES_SET, machine_key
from runner.machine import MachineFacts
from tests.conftest import Services
from tests.fakes.github_api import FakeGitHubAPI
from tests.support.outages import postgres_down, redis_down

SCRIPT = """\
providers:
  script:
    cli: command
    argv: ["python3", "agent.py", "{prompt_file}"]
  claude:
    cli: claude_code
defaults:
  provider: script
"""


@pytest.fixture
def control(tmp_path: Path) -> Path:
    path = tmp_path / "control.yml"
    path.write_text(SCRIPT)
    return path


@pytest.fixture
async def ready(
    deps: Deps, github_api: FakeGitHubAPI, control: Path, monkeypatch: pytest.MonkeyPatch
) -> Deps:
    """A deployment with everything in place: the App installed on a repository that
    delivered something, and a runner online with the `command` agent."""
    github_api.add_installation(77, "acme")
    async with transaction(deps.sessions) as session:
        session.add(Installation(id=77, account_login="acme", account_type="Organization"))
        await session.flush()
        session.add(Repository(id=5, full_name="acme/api", installation_id=77))
        session.add(
            Delivery(
                source="github",
                delivery_id=str(uuid.uuid4()),
                event="issues",
                status=DeliveryStatus.DONE,
                payload={},
            )
        )
    await runner_online(deps, "m1", {"command": "any"})
    use(monkeypatch, deps, config=control)
    return deps


def use(monkeypatch: pytest.MonkeyPatch, deps: Deps, **changes: object) -> Settings:
    """These settings for the rest of the test (the session's Deps get theirs back after)."""
    changed = deps.settings.model_copy(update=changes)
    monkeypatch.setattr(deps, "settings", changed)
    return changed


async def runner_online(deps: Deps, name: str, clis: dict[str, str]) -> None:
    facts = MachineFacts(name=name, labels=[], capacity=2, clis=clis, sandbox="bubblewrap 0.8.0")
    await deps.redis.hset(machine_key(name), mapping=facts.to_redis())  # type: ignore[misc]  # redis-py's union return
    await deps.redis.sadd(MACHINES_SET, name)  # type: ignore[misc]


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


async def test_a_ready_deployment_is_all_green(ready: Deps) -> None:
    checks = await checklist(ready.settings, ready)

    failing = [check for check in checks if not check.ok]
    assert [check.name for check in failing] == ["provider claude"]  # not the default one
    assert not blocked(checks)
    named = by_name(checks)
    assert named["GitHub App"].detail.startswith("openase (id 4242)")
    assert named["installations"].detail == "1 installation(s), 1 repositories"
    assert named["runners"].detail == "m1 (command any)"
    assert named["provider script"].detail == "command on m1; passes no variables"
    assert "no online runner has claude_code" in named["provider claude"].detail
    assert named["deliveries"].detail.startswith("last received")


async def test_a_store_that_is_down_fails_with_its_fix(ready: Deps) -> None:
    async with postgres_down(ready) as broken:
        named = by_name(await checklist(broken.settings, broken))
    assert not named["database"].ok
    assert named["database"].fix == (
        "check that PostgreSQL runs and OPENASE_DATABASE_URL points at it"
    )
    assert "installations" not in named  # nothing is read from a database that is down
    async with redis_down(ready) as broken:
        named = by_name(await checklist(broken.settings, broken))
    assert not named["redis"].ok
    assert named["database"].ok


async def test_without_urls_the_stores_say_what_to_set(settings: Settings) -> None:
    bare = settings.model_copy(update={"data_dir": Path("/nonexistent/openase")})
    named = by_name(await checklist(bare, None))
    assert not named["database"].ok
    assert named["database"].fix == "start `openase up`, or set OPENASE_DATABASE_URL"
    assert named["GitHub App"].ok  # what needs no database is still checked


async def test_an_app_that_is_missing_or_refused_fails(
    ready: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    unset = use(monkeypatch, ready, github_app_id=None)
    named = by_name(await checklist(unset, ready))
    assert (named["GitHub App"].ok, named["GitHub App"].detail) == (False, "not configured")
    assert "OPENASE_GITHUB_APP_ID" in (named["GitHub App"].fix or "")
    assert f"{unset.base_url}/setup" in (named["GitHub App"].fix or "")
    assert named["GitHub App"].action == ("/setup", "Register the GitHub App")

    wrong = use(monkeypatch, ready, github_app_id=9999)  # GitHub refuses its JWT
    named = by_name(await checklist(wrong, ready))
    assert named["GitHub App"].detail == "GitHub refused the App's token (HTTP 401)"
    assert blocked(list(named.values()))


async def test_no_webhook_secret_fails(
    ready: Deps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = use(monkeypatch, ready, github_webhook_secret=None, data_dir=tmp_path / "empty")
    check = by_name(await checklist(bare, ready))["webhook secret"]
    assert (check.ok, check.blocking) == (False, True)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "webhook-secret").write_text("generated\n")
    assert by_name(await checklist(bare, ready))["webhook secret"].ok


async def test_failed_deliveries_in_githubs_log_are_a_warning(
    ready: Deps, github_api: FakeGitHubAPI
) -> None:
    github_api.delivery_log.add(str(uuid.uuid4()), "issues", {}, status_code=0)
    checks = await checklist(ready.settings, ready)
    check = by_name(checks)["deliveries"]
    assert (check.ok, check.blocking) == (False, False)
    assert "GitHub logged 1 failed in the last 24 h" in check.detail
    assert "/webhooks/github reachable from GitHub" in (check.fix or "")
    assert not blocked(checks)


async def test_no_installation_no_runner_no_agent_cli_each_block(ready: Deps) -> None:
    async with transaction(ready.sessions) as session:
        await session.execute(delete(Repository))
    named = by_name(await checklist(ready.settings, ready))
    assert not named["installations"].ok
    assert named["installations"].fix == (
        "install the App on a repository: https://ghe.example.test/apps/openase/installations/new"
    )

    await ready.redis.delete(MACHINES_SET)
    named = by_name(await checklist(ready.settings, ready))
    assert named["runners"].fix == (
        "start one: `openase runner --machine NAME` (`openase up` runs one itself)"
    )
    assert (named["provider script"].ok, named["provider script"].blocking) == (False, True)

    await runner_online(ready, "m2", {"claude_code": "2.1.0"})  # but not `command`
    named = by_name(await checklist(ready.settings, ready))
    assert named["runners"].ok
    assert not named["provider script"].ok
    # Claude Code is there, but its provider passes no credential.
    assert named["provider claude"].detail == (
        "claude_code on m2, but the agent gets none of ANTHROPIC_API_KEY, CLAUDE_CODE_OAUTH_TOKEN"
    )


async def test_a_runner_cut_off_or_back_from_an_outage_says_so(ready: Deps) -> None:
    now = time.time()
    back = MachineFacts(
        name="m1", labels=[], capacity=2, clis={"command": "any"}, sandbox="bubblewrap 0.8.0"
    )
    back.redis_outage_seconds, back.redis_back_at, back.events_dropped = 42.0, now - 4.6, 3
    quiet = MachineFacts(
        name="m2", labels=[], capacity=2, clis={"command": "any"}, sandbox="bubblewrap 0.8.0"
    )
    quiet.heartbeat_at = now - 39.6  # its hash not expired yet: cut off a moment ago
    # (.4 s short of the whole seconds expected: the checklist takes time on a busy machine)
    for facts in (back, quiet):
        await ready.redis.hset(machine_key(facts.name), mapping=facts.to_redis())  # type: ignore[misc]  # redis-py's union return
        await ready.redis.sadd(MACHINES_SET, facts.name)  # type: ignore[misc]

    runners = by_name(await checklist(ready.settings, ready))["runners"]

    assert runners.ok  # m1 is online
    assert runners.detail == (
        "m1 (command any; reconnected 5 s ago after a 42 s Redis outage; 3 run events dropped); "
        "m2 (command any; no heartbeat for 40 s (cut off or stopped))"
    )


async def test_a_runner_that_cannot_sandbox_is_a_warning_with_the_fix(ready: Deps) -> None:
    named = by_name(await checklist(ready.settings, ready))
    assert named["sandbox"].ok
    assert named["sandbox"].detail == "every live runner confines runs (bubblewrap 0.8.0)"

    unable = MachineFacts(name="m9", labels=[], capacity=2, clis={"command": "any"})
    unable.sandbox_problem = "bubblewrap (bwrap) is not on PATH: install bubblewrap"
    await ready.redis.hset(machine_key("m9"), mapping=unable.to_redis())  # type: ignore[misc]  # redis-py's union return
    await ready.redis.sadd(MACHINES_SET, "m9")  # type: ignore[misc]
    named = by_name(await checklist(ready.settings, ready))

    assert not named["sandbox"].ok
    assert not named["sandbox"].blocking
    assert named["sandbox"].detail == (
        "m9 cannot sandbox runs and take only workflows with `sandbox: off`"
    )
    assert named["sandbox"].fix == "bubblewrap (bwrap) is not on PATH: install bubblewrap"
    assert "m9 (command any; cannot sandbox runs: bubblewrap" in named["runners"].detail


async def test_effects_waiting_on_a_failing_github_installation_are_a_warning(
    ready: Deps, github_api: FakeGitHubAPI
) -> None:
    assert by_name(await checklist(ready.settings, ready))["effects"].ok
    repo = github_api.add_repo("acme/api", 5, 77)
    github_api.add_issue(repo, 1, title="one")
    async with transaction(ready.sessions) as session:
        for n in (1, 2, 3):
            await add_effect(
                session,
                key=f"reply:{n}",
                kind=EffectKind.COMMENT,
                payload={"repo": "acme/api", "number": 1, "body": f"reply {n}"},
                ticket_id=None,
                installation_id=77,
            )
    github_api.queue(502, {"message": "Bad Gateway"}, method="POST", path_regex="/comments$")
    await perform_pending(ready, PERFORMERS)

    effects = by_name(await checklist(ready.settings, ready))["effects"]

    assert (effects.ok, effects.blocking) == (False, False)
    assert effects.detail.startswith("github installation 77: 3 waiting, the oldest decided ")
    assert "(error: TransientError: " in effects.detail
    assert "502" in effects.detail
    assert effects.fix is not None
    assert effects.fix.startswith("nothing to do unless it lasts")


async def test_a_tracker_out_of_reach_is_a_warning(
    ready: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(
        monkeypatch,
        ready,
        linear_api_key=SecretStr("lin_api_x"),
        linear_api_url="http://127.0.0.1:9/graphql",  # nothing listens there
    )
    checks = await checklist(ready.settings, ready)
    linear = by_name(checks)["Linear"]
    assert (linear.ok, linear.blocking) == (False, False)
    assert linear.fix == "check OPENASE_LINEAR_API_KEY and the URL"


async def test_openase_doctor_prints_the_checklist_and_exits_by_it(
    ready: Deps,
    services: Services,
    settings: Settings,
    control: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in {
        "OPENASE_DATABASE_URL": services.database_url,
        "OPENASE_REDIS_URL": services.redis_url,
        "OPENASE_GITHUB_APP_ID": str(settings.github_app_id),
        "OPENASE_GITHUB_PRIVATE_KEY": settings.github_private_key_pem() or "",
        "OPENASE_GITHUB_API_URL": settings.api_url,
        "OPENASE_GITHUB_WEBHOOK_SECRET": "s3cret",
        "OPENASE_CONFIG": str(control),
    }.items():
        monkeypatch.setenv(name, value)

    assert await asyncio.to_thread(main, ["doctor"]) == 0
    out = capsys.readouterr().out
    assert "  ok    GitHub App" in out
    assert "  warn  provider claude" in out
    assert out.rstrip().endswith("openase doctor: ready")
    assert "s3cret" not in out

    await ready.redis.delete(MACHINES_SET)
    assert await asyncio.to_thread(main, ["doctor"]) == 1
    out = capsys.readouterr().out
    assert "  FAIL  runners" in out
    assert "fix: start one: `openase runner --machine NAME`" in out
