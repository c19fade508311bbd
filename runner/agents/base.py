"""What every agent CLI module provides: an `Invocation` (argv, scrubbed env, stdin) for a
run, and a `StreamParser` that turns the CLI's stdout lines into `AgentEvent`s and, when the
process exits on its own, classifies the end as an `Outcome`.

Limits the runner enforces from outside (wall time, stall, budget, cancel) never reach the
parser: the runner decides those statuses itself.

Below the protocol: what the CLI modules share, so each keeps only its CLI's own facts
(private HOME, prompt on stdin, session options, JSON-line reading, the usual endings).
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from runner.contract import AgentCli, AgentConfig, AgentEvent, EventKind, Limits, RunStatus, Usage
from runner.pricing import Meter

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
    question: str | None = None  # status needs_input: what the agent asked


@dataclass
class StreamState:
    """Running totals a parser keeps; the runner reads them for budgets and the result."""

    usage: Usage = field(default_factory=Usage)
    # Priced per model turn by the parser's Meter (the CLI's own total, where it reports
    # one, replaces it at the end); None while nothing could be priced.
    cost_usd: float | None = None
    cost_note: str | None = None  # why the cost leaves tokens out (a model with no price)
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

    def parser(self, meter: Meter | None = None) -> StreamParser:
        """A parser for one run; `meter` prices its usage (none: the cost stays unknown)."""
        ...


# --- helpers the CLI modules share ------------------------------------------------------

TOOL_RESULT_LIMIT = 4096  # characters of a tool's output kept in its event
STDERR_LIMIT = 500  # characters of the end of stderr quoted in an error


def make_home(run: AgentRun, folder: str | None = None) -> Path:
    """Create the run's private HOME with the TMPDIR `scrubbed_env` names, and the `folder`
    in it where the CLI keeps its settings; returns that folder (HOME without one)."""
    path = run.home / folder if folder else run.home
    path.mkdir(parents=True, exist_ok=True)
    (run.home / "tmp").mkdir(parents=True, exist_ok=True)
    return path


def session_args(run: AgentRun) -> list[str]:
    """Go on with the session the config names, else start the one the runner chose; Claude
    Code and Gemini CLI spell both options alike."""
    if run.config.resume_session_id:
        return ["--resume", run.config.resume_session_id]
    if run.session_id:
        return ["--session-id", run.session_id]
    return []


def prompt_on_stdin(run: AgentRun, argv: list[str], extra_env: dict[str, str]) -> Invocation:
    """The prompt goes on stdin: argv would cap it at 128 KB and a leading "-" in a ticket
    body would read as an option."""
    env = scrubbed_env(run.home, run.config, extra=extra_env)
    return Invocation(argv=argv, env=env, stdin=run.prompt.encode())


def log_event(line: str) -> AgentEvent:
    return AgentEvent(kind=EventKind.LOG, text=line)


def keep_end(text: str) -> str:
    """The end of a long output: that is where a failing command says why."""
    if len(text) <= TOOL_RESULT_LIMIT:
        return text
    cut = len(text) - TOOL_RESULT_LIMIT
    return f"[... {cut} earlier characters]\n" + text[cut:]


def token_count(raw: Mapping[str, Any], key: str) -> int:
    """A count from the CLI's usage record; 0 where it is missing or not a number."""
    value = raw.get(key)
    return value if isinstance(value, int) else 0


def stderr_end(stderr_tail: str) -> str:
    return stderr_tail.strip()[-STDERR_LIMIT:]


def with_stderr(reason: str, stderr_tail: str) -> str:
    """`reason`, followed by the end of what the CLI printed on stderr, if anything."""
    tail = stderr_end(stderr_tail)
    return f"{reason}: {tail}" if tail else reason


def reported_failure(error: str, *, api: bool) -> Outcome:
    """A run the CLI reported as failed: by the model API (worth a retry) or by the agent."""
    if api:
        return Outcome(status=RunStatus.API_ERROR, error=error, error_class="api_error")
    return Outcome(status=RunStatus.AGENT_ERROR, error=error, error_class="agent_error")


def no_result(name: str, exit_code: int, stderr_tail: str) -> Outcome:
    """The CLI exited before it reported how the run ended: stderr says why, if anything."""
    reason = f"{name} exited with code {exit_code} without a result"
    return Outcome(
        status=RunStatus.AGENT_ERROR,
        error=with_stderr(reason, stderr_tail),
        error_class="no_result",
    )


def exited_after_success(name: str, exit_code: int, summary: str | None) -> Outcome:
    return Outcome(
        status=RunStatus.AGENT_ERROR,
        summary=summary,
        error=f"{name} exited with code {exit_code} after reporting success",
        error_class="exit_code",
    )


def max_turns_reached(summary: str | None, error: str | None) -> Outcome:
    return Outcome(
        status=RunStatus.MAX_TURNS,
        summary=summary,
        error=error or "reached the maximum number of turns",
        error_class="max_turns",
    )


class JsonLinesParser(ABC):
    """The parsers of the CLIs that print one JSON object a line. A line that is not an
    object, or one of a shape this version of the CLI does not know, becomes a LOG event:
    `feed` never raises."""

    def __init__(self, meter: Meter | None = None) -> None:
        self.state = StreamState()
        self.meter = meter or Meter()

    def _priced(self, key: str, usage: Usage, model: str | None = None) -> list[AgentEvent]:
        """Price one model turn (a later report under the same key replaces it) and keep
        the state's cost current; the LOG event saying a model has no price, once."""
        events = self.meter.turn(key, usage, model)
        self.state.cost_usd = self.meter.cost_usd
        self.state.cost_note = self.meter.note
        return events

    def feed(self, line: str) -> list[AgentEvent]:
        text = line.strip()
        if not text:
            return []
        try:
            data = json.loads(text)
        except ValueError:
            return self._unreadable(line)
        if not isinstance(data, dict):
            return self._unreadable(line)
        try:
            return self._event(data)
        except (AttributeError, KeyError, TypeError, ValueError):
            return self._unreadable(line)  # a JSON shape this version does not know

    @abstractmethod
    def _event(self, data: dict[str, Any]) -> list[AgentEvent]:
        """The events of one JSON object the CLI printed."""

    @abstractmethod
    def finish(self, exit_code: int, stderr_tail: str) -> Outcome: ...

    def _unreadable(self, line: str) -> list[AgentEvent]:
        return [log_event(line)]

    def _note_session(self, session_id: Any) -> None:
        """Keep the id the CLI names; a line that names none leaves the known one."""
        self.state.session_id = session_id or self.state.session_id

    def _session_event(self, session_id: Any, data: dict[str, Any] | None = None) -> AgentEvent:
        self._note_session(session_id)
        return AgentEvent(kind=EventKind.SESSION, session_id=self.state.session_id, data=data or {})
