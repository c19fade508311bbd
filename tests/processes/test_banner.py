"""What `openase up` prints once it serves: every URL and the secret, apart from the log
lines, and commands a user can paste as they are, however `openase` was started."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from bot.processes.up import openase_command, startup_banner
from bot.settings import Settings


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_after_make_run_the_commands_are_the_venvs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    executable(tmp_path / ".venv" / "bin" / "openase")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [".venv/bin/openase", "up"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", machine="m1")

    banner = startup_banner(settings, "http://127.0.0.1:2080", "s3cret")

    lines = banner.splitlines()
    assert lines[1] == lines[-1] == "─" * 78  # set apart from the log lines around it
    assert "  webhook URL     http://127.0.0.1:2080/webhooks/github" in lines
    assert "  webhook secret  s3cret" in lines
    assert "  local runner    m1 (queue openase:runs:m1)" in lines
    assert "    .venv/bin/openase doctor" in lines
    assert "    .venv/bin/openase app manifest --url URL" in lines


def test_openase_on_path_is_named_plainly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed = executable(tmp_path / "bin" / "openase")
    monkeypatch.setenv("PATH", f"{installed.parent}{os.pathsep}/usr/bin")
    monkeypatch.setattr(sys, "argv", [str(installed), "up"])
    assert openase_command() == "openase"


def test_a_path_outside_here_is_absolute_and_quoted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = executable(tmp_path / "my tools" / "openase")
    here = tmp_path / "project"
    here.mkdir()
    monkeypatch.chdir(here)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr(sys, "argv", [str(elsewhere), "up"])
    assert openase_command() == f"'{elsewhere}'"


def test_started_as_a_module_it_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/somewhere/bot/processes/cli.py", "up"])
    assert openase_command() == f"{sys.executable} -m bot.processes.cli"
