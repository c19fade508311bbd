"""Gemini CLI in headless mode (`gemini -o stream-json`), read through its JSONL events.

Facts this relies on (measured on 0.61.0, see AGENT-CLIS.md):
- It needs `$HOME/.gemini/settings.json` choosing API-key auth (else exit 41) and a trusted
  workspace (`GEMINI_CLI_TRUST_WORKSPACE=true`, else exit 55).
- `$HOME/.gemini/GEMINI.md` (user-level context) reaches the model inside its system
  instruction, beside Gemini's own and without touching the repository: the harness goes
  there. Skills are discovered under `<workspace>/.gemini/skills` (and `.agents/skills`).
- With `-p ""` the prompt is read from stdin verbatim.
- Assistant text streams as `message` lines with `delta: true`; this parser joins the pieces
  of one model turn into a single TEXT event, sent when the turn moves on (a tool call, the
  result). Usage arrives only in the final `result` and covers this run alone.
- A failed model call ends with `result{status: "error"}` and exits with the HTTP status
  (mod 256); max session turns exits 53. Its default retries back off for minutes, so
  `general.maxAttempts` is 1 unless `GEMINI_MAX_ATTEMPTS` in `AgentConfig.env` (ours) says
  otherwise (1-10).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from runner.agents.base import (
    AgentRun,
    Invocation,
    JsonLinesParser,
    Outcome,
    exited_after_success,
    keep_end,
    log_event,
    make_home,
    max_turns_reached,
    no_result,
    prompt_on_stdin,
    reported_failure,
    session_args,
    token_count,
    with_stderr,
)
from runner.contract import AgentCli, AgentConfig, AgentEvent, EventKind, RunStatus, Usage
from runner.pricing import Meter

DEFAULT_MODEL = "gemini-2.5-pro"  # always named: the default "auto" first asks a router model
MAX_ATTEMPTS_VAR = "GEMINI_MAX_ATTEMPTS"

# Settings Gemini CLI needs to run headless and quiet; merged over whatever the file holds.
REQUIRED_SETTINGS: dict[str, Any] = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "privacy": {"usageStatisticsEnabled": False},
    "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
    "telemetry": {"enabled": False},
}

# Exit codes of Gemini CLI's fatal errors that mean "set up wrong", not "the task failed":
# 41 authentication, 52 configuration, 55 untrusted workspace.
_CONFIG_EXITS = {41: "authentication", 52: "configuration", 55: "untrusted workspace"}
_MAX_TURNS_EXIT = 53

# How a failed model call reads in the result: the API's JSON error ("code":500, "Status:"),
# a network failure ("fetch failed sending request"), or the quota hint after a 429. Every
# error arrives wrapped in "[API Error: ...]", so that prefix alone proves nothing.
_API_FAILURE = re.compile(
    r"\"code\":\s*\d{3}|\(Status: |\bHTTP \d{3}\b|fetch failed|ECONN|ETIMEDOUT|ENOTFOUND"
    r"|EAI_AGAIN|socket hang up|quota|rate limit|RESOURCE_EXHAUSTED|UNAVAILABLE"
    r"|UNAUTHENTICATED|PERMISSION_DENIED|API key|try again later",
    re.IGNORECASE,
)


class Gemini:
    cli: AgentCli = "gemini"
    default_binary = "gemini"
    skills_dir = ".gemini/skills"

    def invocation(self, run: AgentRun, binary: str) -> Invocation:
        config = run.config
        gemini_dir = make_home(run, ".gemini")
        write_settings(gemini_dir / "settings.json", config)
        context = gemini_dir / "GEMINI.md"
        if run.instructions:
            context.write_text(run.instructions, encoding="utf-8")
        else:
            context.unlink(missing_ok=True)  # a harness of an earlier run must not linger
        argv = [binary, "-m", config.model or DEFAULT_MODEL, "-o", "stream-json", "--yolo"]
        argv += session_args(run)
        argv += config.extra_args
        argv += ["-p", ""]  # headless; stdin holds the prompt
        return prompt_on_stdin(run, argv, {"GEMINI_CLI_TRUST_WORKSPACE": "true"})

    def parser(self, meter: Meter | None = None) -> GeminiParser:
        return GeminiParser(meter)


def write_settings(path: Path, config: AgentConfig) -> None:
    """Our settings merged into the file, keeping keys Gemini CLI or a person put there."""
    try:
        current = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        current = {}
    settings: dict[str, Any] = current if isinstance(current, dict) else {}
    _merge(settings, REQUIRED_SETTINGS)
    general = settings.setdefault("general", {})
    general["maxAttempts"] = _max_attempts(config.env.get(MAX_ATTEMPTS_VAR))
    model = settings.setdefault("model", {})
    if config.max_turns is None:
        model.pop("maxSessionTurns", None)
    else:
        model["maxSessionTurns"] = config.max_turns
    path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def _merge(into: dict[str, Any], values: dict[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, dict):
            if not isinstance(into.get(key), dict):
                into[key] = {}
            _merge(into[key], value)
        else:
            into[key] = value


def _max_attempts(value: SecretStr | None) -> int:
    """One attempt unless the run asks for more (Gemini CLI allows up to 10): its own
    backoff would hold a failing run for minutes, and the control plane decides on retries."""
    text = "" if value is None else value.get_secret_value().strip()
    return min(max(int(text), 1), 10) if text.isdigit() else 1


class GeminiParser(JsonLinesParser):
    """stream-json lines -> AgentEvents; keeps the session id, usage and the final result."""

    def __init__(self, meter: Meter | None = None) -> None:
        super().__init__(meter)
        # The invocation always names a model: the configured one, else DEFAULT_MODEL.
        self.meter.model = self.meter.model or DEFAULT_MODEL
        self.result: dict[str, Any] | None = None
        self._pieces: list[str] = []  # the current model turn's text so far

    def _unreadable(self, line: str) -> list[AgentEvent]:
        return [*self._flush(), log_event(line)]

    def _event(self, data: dict[str, Any]) -> list[AgentEvent]:
        kind = data.get("type")
        if kind == "message":
            if data.get("role") == "assistant":
                self._pieces.append(str(data.get("content") or ""))
                if not data.get("delta"):  # a whole message: nothing more will join it
                    return self._flush()
            return []  # the user's prompt, echoed
        events = self._flush()
        if kind == "init":
            model = {"model": data["model"]} if data.get("model") else {}
            if isinstance(data.get("model"), str):
                self.meter.model = data["model"]
            events.append(self._session_event(data.get("session_id"), model))
        elif kind == "tool_use":
            parameters = data.get("parameters")
            events.append(
                AgentEvent(
                    kind=EventKind.TOOL_CALL,
                    tool=data.get("tool_name"),
                    tool_id=data.get("tool_id"),
                    input=parameters if isinstance(parameters, dict) else {},
                )
            )
        elif kind == "tool_result":
            events.append(_tool_result(data))
        elif kind == "error":  # a warning the run goes on after
            events.append(AgentEvent(kind=EventKind.LOG, text=data.get("message"), is_error=True))
        elif kind == "result":
            events += self._result(data)
        return events

    def _flush(self) -> list[AgentEvent]:
        text = "".join(self._pieces)
        self._pieces = []
        if not text:
            return []
        self.state.final_text = text
        return [AgentEvent(kind=EventKind.TEXT, text=text)]

    def _result(self, data: dict[str, Any]) -> list[AgentEvent]:
        self.result = data
        stats = data.get("stats")
        events: list[AgentEvent] = []
        if isinstance(stats, dict):
            self.state.usage = _usage(stats)
            events += self._price_stats(stats)
            events.append(
                AgentEvent(
                    kind=EventKind.USAGE, usage=self.state.usage, cost_usd=self.state.cost_usd
                )
            )
        failed = data.get("status") != "success"
        details = {
            key: stats[key]
            for key in ("duration_ms", "tool_calls")
            if isinstance(stats, dict) and key in stats
        }
        events.append(
            AgentEvent(
                kind=EventKind.RESULT,
                text=_error_text(data) if failed else self.state.final_text,
                is_error=failed,
                usage=self.state.usage,
                cost_usd=self.state.cost_usd,
                session_id=self.state.session_id,
                data=details,
            )
        )
        return events

    def _price_stats(self, stats: dict[str, Any]) -> list[AgentEvent]:
        """The run's usage priced per model where the stats break it down (`models`, each
        model's own counts), else all at the run's model."""
        models = stats.get("models")
        if not isinstance(models, dict) or not models:
            return self._priced("run", self.state.usage)
        events: list[AgentEvent] = []
        for name, counts in models.items():
            if isinstance(counts, dict):
                events += self._priced(f"model:{name}", _usage(counts), str(name))
        return events

    def finish(self, exit_code: int, stderr_tail: str) -> Outcome:
        self._flush()  # a turn cut off without a result still counts as the last words
        result = self.result
        if exit_code in _CONFIG_EXITS:
            reason = f"gemini refused to start ({_CONFIG_EXITS[exit_code]}, exit {exit_code})"
            return Outcome(
                status=RunStatus.AGENT_ERROR,
                error=with_stderr(reason, stderr_tail),
                error_class="agent_config",
            )
        if exit_code == _MAX_TURNS_EXIT:
            return max_turns_reached(self.state.final_text, _error_text(result) if result else None)
        if result is None:
            return no_result("gemini", exit_code, stderr_tail)
        if result.get("status") != "success":
            error = _error_text(result) or f"gemini reported an error (exit {exit_code})"
            return reported_failure(error, api=bool(_API_FAILURE.search(error)))
        if exit_code != 0:
            return exited_after_success("gemini", exit_code, self.state.final_text)
        return Outcome(status=RunStatus.SUCCEEDED, summary=self.state.final_text)


def _tool_result(data: dict[str, Any]) -> AgentEvent:
    error = data.get("error")
    output = data.get("output")
    text = output if isinstance(output, str) else None
    if isinstance(error, dict) and error.get("message"):
        text = str(error["message"]) if text is None else f"{text}\n{error['message']}"
    return AgentEvent(
        kind=EventKind.TOOL_RESULT,
        tool_id=data.get("tool_id"),
        text=None if text is None else keep_end(text),
        is_error=data.get("status") != "success",
        data={"error_type": error["type"]} if isinstance(error, dict) and "type" in error else {},
    )


def _error_text(result: dict[str, Any]) -> str | None:
    error = result.get("error")
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return None


def _usage(stats: dict[str, Any]) -> Usage:
    """`input_tokens` includes the cached part; `input` is what was not cached."""
    cached = token_count(stats, "cached")
    if "input" in stats:
        fresh = token_count(stats, "input")
    else:
        fresh = max(token_count(stats, "input_tokens") - cached, 0)
    return Usage(
        input_tokens=fresh,
        output_tokens=token_count(stats, "output_tokens"),
        cache_read_tokens=cached,
    )
