"""Two real `openase worker` processes, started after downtime against the fake GitHub over
HTTP: their schedules cron (run at start, as in production) files the missed slot's issue
once, with nothing in the test running the cron."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.deps import Deps
from bot.tables.schedules import ScheduleSlot, SlotOutcome
from harness_store.db import transaction
from tests.conftest import Services
from tests.fakes.github_http import served_github
from tests.support import helpers
from tests.support.schedules import REPO_ID, scheduled_repo

APP_ID = 4242
CONFIG = """\
workflows:
  coder: {trigger_labels: [openase]}
schedules:
  - name: nightly-scan
    cron: "0 3 * * *"
    title: "Nightly scan ({{ date }})"
    workflow: coder
"""


def _passes(logs: list[Path]) -> int:
    """How many passes of the schedules cron the workers finished: arq logs `← schedules`,
    JSON-escaped in the log lines."""
    return sum(log.read_text().count(r"\u2190 schedules") for log in logs)


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bot.processes.cli", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def test_two_worker_processes_file_a_missed_slot_once(
    deps: Deps, services: Services, tmp_path: Path
) -> None:
    key = helpers.test_private_key()
    async with served_github(private_key_pem=key, app_id=APP_ID) as github:
        repo = await scheduled_repo(deps, github.fake, CONFIG)
        now = datetime.now(UTC)
        due = now.replace(hour=3, minute=0, second=0, microsecond=0)
        due = due if due <= now else due - timedelta(days=1)
        # An earlier worker saw the schedule days ago; none has run since.
        async with transaction(deps.sessions) as session:
            session.add(
                ScheduleSlot(
                    scope=f"github:{REPO_ID}",
                    repository_id=REPO_ID,
                    schedule="nightly-scan",
                    slot_at=due - timedelta(days=3),
                    outcome=SlotOutcome.FIRST_SEEN,
                )
            )
        env = {
            **os.environ,
            "OPENASE_DATABASE_URL": services.database_url,
            "OPENASE_REDIS_URL": services.redis_url,
            "OPENASE_DATA_DIR": str(tmp_path / "data"),
            "OPENASE_GITHUB_APP_ID": str(APP_ID),
            "OPENASE_GITHUB_PRIVATE_KEY": key,
            "OPENASE_GITHUB_API_URL": github.api_url,
        }
        env.pop("OPENASE_CONFIG", None)
        logs = [tmp_path / f"worker-{n}.log" for n in (1, 2)]
        workers = [_start_worker(env, log) for log in logs]
        try:
            filed: list[dict[str, Any]] = []
            deadline = time.monotonic() + 30
            while not filed:
                for worker, log in zip(workers, logs, strict=True):
                    assert worker.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, logs[0].read_text()[-3000:]
                await asyncio.sleep(0.2)
                filed = [i for i in repo.issues if "openase:schedule" in (i.get("body") or "")]
            async with deps.sessions() as session:
                outcomes = (
                    await session.execute(
                        select(ScheduleSlot.slot_at, ScheduleSlot.outcome).order_by(ScheduleSlot.id)
                    )
                ).all()
            # Each process enqueued the cron at its start; whichever worker ran each, both
            # passes ran to their end, and one of them filed.
            deadline = time.monotonic() + 15
            while _passes(logs) < 2:
                assert time.monotonic() < deadline, [log.read_text()[-2000:] for log in logs]
                await asyncio.sleep(0.2)
        finally:
            for worker in workers:
                os.killpg(worker.pid, signal.SIGTERM)
            for worker in workers:
                worker.wait(timeout=30)
        (issue,) = [i for i in repo.issues if "openase:schedule" in (i.get("body") or "")]
        assert issue["title"] == f"Nightly scan ({due:%Y-%m-%d})"
        assert [label["name"] for label in issue["labels"]] == ["openase"]
        assert outcomes[1:] == [(due, SlotOutcome.FILED)]
