"""What every agent CLI module provides: an `Invocation` (argv, scrubbed env, stdin) for a
run, and a `StreamParser` that turns the CLI's stdout lines into `AgentEvent`s and, when the
process exits on its own, classifies the end as an `Outcome`.

Limits the runner enforces from outside (wall time, stall, budget, cancel) never reach the
parser: the runner decides those statuses itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from runner.contract import AgentCli, AgentConfig, AgentEvent, Limits, RunStatus, Usage

# Variables an agent process may inherit from the runner: none of them carries a secret.
# Everything else (App key, webhook secret, database URL, git token, the runner's own
# provider keys) stays out; provider settings come only from AgentConfig.env.
_INHERITED = ("PATH", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR")


def scrubbed_env(
    home: Path, config: AgentConfig, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The whole environment of an agent process: PATH and locale, a private HOME, the
    CLI's own quieting flags (`extra`), then the provider settings of the run."""
    env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    env["HOME"] = str(home)
    env["TMPDIR"] = str(home / "tmp")
    env["TERM"] = "dumb"
    env["NO_COLOR"] = "1"
    env.update(extra or {})
    env.update({key: value.get_secret_value() for key, value in config.env.items()})
    return env


@dataclass(frozen=True)
class AgentRun:
    """Everything an agent module needs to build its command line."""

    workspace: Path  # the git worktree; the agent's working directory
    home: Path  # private HOME, kept per ticket so sessions can be resumed
    prompt: str  # the task, with previous failure output when there was one
    instructions: str  # the rendered harness: the agent's standing instructions
    prompt_file: Path  # prompt and instructions written out (for `command` templates)
    config: AgentConfig
    ticket_key: str
    limits: Limits
    session_id: str | None = None  # a fresh id to start with, where the CLI accepts one


@dataclass(frozen=True)
class Invocation:
    argv: list[str]
    env: dict[str, str]
    stdin: bytes | None = None  # None: /dev/null


@dataclass
class Outcome:
    status: RunStatus
    summary: str | None = None
    error: str | None = None
    error_class: str | None = None


@dataclass
class StreamState:
    """Running totals a parser keeps; the runner reads them for budgets and the result."""

    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None
    session_id: str | None = None
    final_text: str | None = None
    # Set when the output shows the agent cannot get anywhere (e.g. it retries an unreachable
    # API forever); the runner then stops it and reports this as an API error.
    gave_up: str | None = None


class StreamParser(Protocol):
    state: StreamState

    def feed(self, line: str) -> list[AgentEvent]:
        """One stdout line (without the newline) -> zero or more events. Never raises on
        malformed input: an unparseable line becomes a LOG event."""
        ...

    def finish(self, exit_code: int, stderr_tail: str) -> Outcome:
        """Classify a process that exited on its own."""
        ...


class Agent(Protocol):
    cli: AgentCli
    default_binary: str  # looked up on PATH when AgentConfig.binary is unset
    skills_dir: str  # where this CLI discovers skills, relative to the workspace

    def invocation(self, run: AgentRun, binary: str) -> Invocation:
        """argv and env; may write files under run.home (CLI settings), never elsewhere."""
        ...

    def parser(self) -> StreamParser: ...
