"""The real agent CLIs, installed from the npm registry at pinned versions for the tests.

Each is installed once per checkout under `.tools/agent-clis/` (npm's own cache makes a
fresh clone fast). Where npm is missing or no registry is reachable, the tests that need
the CLI skip and say why; any other install failure fails them.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path
from typing import Literal

import pytest

CliName = Literal["claude", "codex", "gemini"]

# Pinned: flags and event shapes change between releases (../shared/AGENT-CLIS.md).
PACKAGES: dict[CliName, tuple[str, str]] = {
    "claude": ("@anthropic-ai/claude-code", "2.1.330"),
    "codex": ("@openai/codex", "0.169.0"),
    "gemini": ("@google/gemini-cli", "0.61.0"),
}

ROOT = Path(__file__).resolve().parents[2] / ".tools" / "agent-clis"
INSTALL_TIMEOUT = 900
# npm's error codes when it cannot reach a registry at all.
_OFFLINE_CODES = (
    "ENOTFOUND",
    "EAI_AGAIN",
    "ECONNREFUSED",
    "ECONNRESET",
    "ETIMEDOUT",
    "ENETUNREACH",
)


def agent_cli(name: CliName) -> Path:
    """Path of the pinned CLI's executable, installing it first if needed; skips the
    calling test when it cannot be installed here."""
    package, version = PACKAGES[name]
    prefix = ROOT / f"{name}-{version}"
    binary = prefix / "node_modules" / ".bin" / name
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(f"npm is not installed: cannot install {package}@{version}")
    prefix.mkdir(parents=True, exist_ok=True)
    with (ROOT / f".{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # xdist-style parallel sessions install once
        if binary.exists():
            return binary
        try:
            done = subprocess.run(
                [
                    npm,
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--prefix",
                    str(prefix),
                    f"{package}@{version}",
                ],
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"npm install {package}@{version} took over {INSTALL_TIMEOUT} s")
        if done.returncode != 0 or not binary.exists():
            tail = (done.stderr or done.stdout)[-800:]
            if any(code in tail for code in _OFFLINE_CODES):
                # No registry here: as good as no npm. Any other failure is a real one.
                pytest.skip(f"the npm registry is unreachable: cannot install {package}@{version}")
            pytest.fail(f"npm install {package}@{version} failed: {tail}")
    return binary
