"""`openase try` runs the agent in the same sandbox a real run gets, unless --no-sandbox."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.processes.cli import main
from runner.sandbox import bwrap
from tests.support.canary import home_canary
from tests.support.git_repos import git

AGENT = """
import json, pathlib, sys
secret = pathlib.Path(sys.argv[1])
try:
    seen = secret.read_text()
except OSError as error:
    seen = f"refused: {error}"
pathlib.Path("seen.txt").write_text(seen)
print(json.dumps({"seen": seen}))
"""


@pytest.fixture
def canary() -> Iterator[Path]:
    with home_canary("the user's secret") as path:
        yield path


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "commit", "-q", "--allow-empty", "-m", "initial")
    return repo


def test_try_confines_the_agent_by_default_and_no_sandbox_opts_out(
    tmp_path: Path, canary: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    support = asyncio.run(bwrap.probe())
    if not support.available:
        pytest.skip(f"bubblewrap cannot confine here: {support.problem}")
    repo = _repo(tmp_path)
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "agent.py").write_text(AGENT)
    argv = f"{sys.executable} {agents / 'agent.py'} {canary}"
    common = ["try", "--repo", str(repo), "--agent", "command", "--argv", argv, "--json"]

    # Without --sandbox-read the script itself is out of sight: the note says what to add.
    main([*common, "look around"])
    assert f"--sandbox-read {agents}" in capsys.readouterr().err

    code = main([*common, "--sandbox-read", str(agents), "look around"])
    confined = json.loads(capsys.readouterr().out)
    assert code == 0, confined
    branch = confined["branch"]
    assert git(repo, "show", f"{branch}:seen.txt").startswith("refused: ")

    code = main([*common, "--no-sandbox", "look around"])
    open_run = json.loads(capsys.readouterr().out)
    assert code == 0, open_run
    assert git(repo, "show", f"{open_run['branch']}:seen.txt") == "the user's secret"
