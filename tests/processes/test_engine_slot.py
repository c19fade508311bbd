"""The worker's engine when the GitHub App comes later: built as soon as the App is
registered, whether by this process (its Deps change) or by the web process beside it (the
data dir's record changes), and rebuilt when the App is replaced."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from bot.config.github_app import APP_FILE, save_app
from bot.deps import Deps
from bot.engine.jobs import WorkflowReactor
from bot.processes import engine_slot
from bot.processes.engine_slot import EngineSlot
from bot.processes.worker import COMMANDS
from bot.registry import RegisteredApp
from tests.support.helpers import test_private_key as app_private_key

SETTLE = "on_settled"


@pytest.fixture
def no_app(deps: Deps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Deps:
    """The shared Deps as a worker started before any App was registered sees them."""
    monkeypatch.setattr(
        deps,
        "settings",
        deps.settings.model_copy(
            update={"github_app_id": None, "github_private_key": None, "data_dir": tmp_path}
        ),
    )
    monkeypatch.setattr(engine_slot, "RECHECK_SECONDS", 0.0)
    return deps


def registered(app_id: int) -> RegisteredApp:
    return RegisteredApp(
        id=app_id,
        slug="openase",
        name="OpenASE",
        html_url="https://ghe.example.test/apps/openase",
        owner="octocat",
        client_id="Iv1.c",
        private_key=app_private_key(),
        webhook_secret="hook",
        client_secret="cs",
    )


async def test_an_app_stored_by_another_process_is_taken_up(no_app: Deps) -> None:
    ctx: dict[str, Any] = {}
    slot = EngineSlot(ctx, no_app, COMMANDS, settle_key=SETTLE)
    assert slot() is None
    assert no_app.workflow is None
    assert SETTLE not in ctx

    save_app(no_app.settings, registered(4242))  # the web process, elsewhere
    with capture_logs() as logs:
        engine = slot()
    assert engine is not None
    assert engine.app_id == 4242
    assert no_app.settings.github_app_id == 4242
    assert isinstance(no_app.workflow, WorkflowReactor)
    assert callable(ctx[SETTLE])
    assert [entry["app_id"] for entry in logs if entry["event"] == "engine_started"] == [4242]
    assert slot() is engine  # nothing changed: the same engine


async def test_a_replaced_app_gets_a_new_engine(no_app: Deps) -> None:
    slot = EngineSlot({}, no_app, COMMANDS, settle_key=SETTLE)
    save_app(no_app.settings, registered(4242))
    first = slot()
    assert first is not None
    path = no_app.settings.data_dir / APP_FILE
    save_app(no_app.settings, registered(4343))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a coarse clock
    second = slot()
    assert second is not None
    assert second is not first
    assert second.app_id == 4343


async def test_a_damaged_record_leaves_the_worker_as_it_was(no_app: Deps) -> None:
    slot = EngineSlot({}, no_app, COMMANDS, settle_key=SETTLE)
    (no_app.settings.data_dir / APP_FILE).write_text("{half a record")
    with capture_logs() as logs:
        assert slot() is None
    assert [entry["event"] for entry in logs] == ["stored_app_unreadable"]


async def test_an_engine_given_by_the_caller_is_kept(
    deps: Deps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = engine_slot.build_engine(deps)
    assert given is not None
    monkeypatch.setattr(deps, "settings", deps.settings.model_copy(update={"data_dir": tmp_path}))
    monkeypatch.setattr(engine_slot, "RECHECK_SECONDS", 0.0)
    slot = EngineSlot({}, deps, COMMANDS, settle_key=SETTLE, fixed=given)
    save_app(deps.settings, registered(9))
    assert slot() is given
    assert deps.settings.github_app_id == 4242
