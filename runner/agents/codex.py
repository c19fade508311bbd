"""Codex (`codex exec --json`), read through its JSONL event stream.

Facts this relies on (measured on 0.169.0, see AGENT-CLIS.md):
- `-c developer_instructions=...` reaches the model as a developer message after Codex's
  own instructions, which it keeps; `model_instructions_file` would replace them.
- With `-` as the prompt it is read from stdin verbatim, for new and resumed threads.
- Skills are discovered under `<workspace>/.codex/skills` (and `.agents/skills`).
- `turn.completed` carries the thread's token totals so far (a resumed thread includes its
  earlier runs); Codex reports no cost.
- Model-call failures end with `turn.failed`; `error` events before it may be retries
  ("Reconnecting... 2/5") that recover. An unreachable server is retried without end,
  one "Reconnecting... waiting for network" error about every 10 s: after OFFLINE_LIMIT of
  them in a row the parser gives up (`state.gave_up`) and the runner stops Codex.

Provider convention for `AgentConfig.env`: `OPENAI_BASE_URL` (with its `/v1`, as OpenAI's
SDKs take it) selects an `openase` provider that POSTs to `<base>/responses`, authenticated
with `OPENAI_API_KEY` when set;
`CODEX_MAX_RETRIES` (ours, like Claude Code's CLAUDE_CODE_MAX_RETRIES; default 0) sets its
request and stream retries. Without a base URL Codex uses its built-in OpenAI provider and
that provider's own retries.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import SecretStr

from runner.agents.base import (
    AgentRun,
    Invocation,
    JsonLinesParser,
    Outcome,
    keep_end,
    make_home,
    prompt_on_stdin,
    reported_failure,
    token_count,
    with_stderr,
)
from runner.contract import AgentCli, AgentEvent, EventKind, RunStatus, Usage
from runner.pricing import Meter

PROVIDER = "openase"
BASE_URL_VAR = "OPENAI_BASE_URL"
API_KEY_VAR = "OPENAI_API_KEY"
MAX_RETRIES_VAR = "CODEX_MAX_RETRIES"

# No plugin marketplace, analytics or update check: nothing but the model's base URL.
QUIET_CONFIG = {
    "features.plugins": "false",
    "analytics.enabled": "false",
    "check_for_update_on_startup": "false",
}

_OFFLINE = "waiting for network"
OFFLINE_LIMIT = 3  # about 30 s of Codex retrying a server it cannot reach

# How Codex words a failed model call: "unexpected status 401 Unauthorized: ...", "exceeded
# retry limit, last status: 429 ...", "stream disconnected before completion", "We're
# currently experiencing high demand" (its text for a 5xx), or the provider's JSON error.
_API_FAILURE = re.compile(
    r"\bstatus\b|retry limit|stream|disconnect|connection|network|error sending request"
    r"|high demand|overloaded|rate limit|quota|usage limit|unauthori[sz]ed|forbidden"
    r"|api key|timed? ?out|^\s*\{.*\"error\"",
    re.IGNORECASE | re.DOTALL,
)


class Codex:
    cli: AgentCli = "codex"
    default_binary = "codex"
    skills_dir = ".codex/skills"

    def invocation(self, run: AgentRun, binary: str) -> Invocation:
        config = run.config
        codex_home = make_home(run, ".codex")
        settings = dict(QUIET_CONFIG)
        if config.model:
            settings["model"] = toml_string(config.model)
        if run.instructions:
            settings["developer_instructions"] = toml_string(run.instructions)
        settings.update(_provider(config.env))
        argv = [
            binary,
            "exec",
            "--json",
            "--skip-git-repo-check",
            "-C",
            str(run.workspace),
            # The runner isolates the run; Codex's own sandbox would make .git read-only.
            "--dangerously-bypass-approvals-and-sandbox",
        ]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        argv += config.extra_args
        if config.resume_session_id:
            argv += ["resume", config.resume_session_id]
        argv.append("-")  # the prompt: read from stdin
        return prompt_on_stdin(run, argv, {"CODEX_HOME": str(codex_home)})

    def parser(self, meter: Meter | None = None) -> CodexParser:
        return CodexParser(meter)


def _provider(env: dict[str, SecretStr]) -> dict[str, str]:
    """`-c` settings for a provider at the base URL `env` names; none without one."""
    base_url = env.get(BASE_URL_VAR)
    if base_url is None:
        return {}
    fields = {
        "name": toml_string("OpenASE"),
        "base_url": toml_string(base_url.get_secret_value()),
        "wire_api": toml_string("responses"),
    }
    if API_KEY_VAR in env:
        fields["env_key"] = toml_string(API_KEY_VAR)
    # Fail fast by default, as the Claude Code module does: the control plane decides on a
    # retry of the run, while Codex's own backoff would hold a dead run for half a minute.
    retries = env.get(MAX_RETRIES_VAR, SecretStr("0")).get_secret_value().strip()
    count = str(int(retries)) if retries.isdigit() else "0"
    fields["request_max_retries"] = fields["stream_max_retries"] = count
    table = ",".join(f"{key}={value}" for key, value in fields.items())
    return {"model_provider": toml_string(PROVIDER), f"model_providers.{PROVIDER}": f"{{{table}}}"}


def toml_string(text: str) -> str:
    """`text` as a TOML basic string: `-c` values are parsed as TOML, so a bare harness
    reading `true` or `[x]` would otherwise turn into something else."""
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif (ord(char) < 0x20 and char != "\t") or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


class CodexParser(JsonLinesParser):
    """JSONL events -> AgentEvents; keeps the thread id, token totals and the last message."""

    def __init__(self, meter: Meter | None = None) -> None:
        super().__init__(meter)
        self.completed = False  # a turn.completed arrived
        self.failure: str | None = None  # the turn.failed message
        self.last_error: str | None = None  # the latest `error` event (may be a retry)
        self._started: set[str] = set()  # items whose TOOL_CALL went out at item.started
        self._offline = 0  # "waiting for network" errors since the last sign of progress

    def _event(self, data: dict[str, Any]) -> list[AgentEvent]:
        kind = data.get("type")
        if kind != "error":
            self._offline = 0
        if kind == "thread.started":
            return [self._session_event(data.get("thread_id"))]
        if kind in ("item.started", "item.updated", "item.completed"):
            item = data.get("item")
            if isinstance(item, dict):
                return self._item(item, done=kind == "item.completed")
            return []
        if kind == "turn.completed":
            return self._turn_completed(data)
        if kind == "turn.failed":
            error = data.get("error") or {}
            self.failure = str(error.get("message") or "the turn failed")
            return [AgentEvent(kind=EventKind.RESULT, text=self.failure, is_error=True)]
        if kind == "error":
            self.last_error = str(data.get("message") or "")
            if _OFFLINE in self.last_error:
                self._offline += 1
                if self._offline >= OFFLINE_LIMIT:
                    self.state.gave_up = f"the model API is unreachable: {self.last_error}"
            return [AgentEvent(kind=EventKind.LOG, text=self.last_error, is_error=True)]
        return []  # turn.started

    def _item(self, item: dict[str, Any], done: bool) -> list[AgentEvent]:
        kind = item.get("type")
        item_id = str(item.get("id", ""))
        if kind == "agent_message":
            if not done or not item.get("text"):
                return []
            self.state.final_text = str(item["text"])
            return [AgentEvent(kind=EventKind.TEXT, text=self.state.final_text)]
        if kind == "error":  # a warning Codex goes on after, e.g. an ignored setting
            return [AgentEvent(kind=EventKind.LOG, text=item.get("message"), is_error=True)]
        call = _tool_call(item)
        if call is None:
            return []  # reasoning, todo lists: nothing a run report needs
        events: list[AgentEvent] = []
        if item_id not in self._started:
            self._started.add(item_id)
            events.append(call)
        if done:
            events.append(_tool_result(item))
        return events

    def _turn_completed(self, data: dict[str, Any]) -> list[AgentEvent]:
        self.completed = True
        raw = data.get("usage")
        events: list[AgentEvent] = []
        if isinstance(raw, dict):
            self.state.usage = _usage(raw)
            # The thread's totals so far, at the configured model (Codex names none).
            events = self._priced("thread", self.state.usage)
        return [
            *events,
            AgentEvent(kind=EventKind.USAGE, usage=self.state.usage, cost_usd=self.state.cost_usd),
            AgentEvent(
                kind=EventKind.RESULT,
                text=self.state.final_text,
                is_error=False,
                usage=self.state.usage,
                cost_usd=self.state.cost_usd,
                session_id=self.state.session_id,
            ),
        ]

    def finish(self, exit_code: int, stderr_tail: str) -> Outcome:
        error = self.failure or (self.last_error if exit_code != 0 else None)
        if error is not None:
            return reported_failure(error, api=bool(_API_FAILURE.search(error)))
        if exit_code == 0 and self.completed and self.state.final_text:
            return Outcome(status=RunStatus.SUCCEEDED, summary=self.state.final_text)
        if exit_code == 0 and self.completed:
            reason = "codex finished without a final message"
        else:
            reason = f"codex exited with code {exit_code} without finishing its turn"
        return Outcome(
            status=RunStatus.AGENT_ERROR,
            summary=self.state.final_text,
            error=with_stderr(reason, stderr_tail),
            error_class="no_result",
        )


def _tool_call(item: dict[str, Any]) -> AgentEvent | None:
    kind = item.get("type")
    arguments: dict[str, Any]
    if kind == "command_execution":
        tool, arguments = "shell", {"command": item.get("command")}
    elif kind == "file_change":
        tool, arguments = "apply_patch", {"changes": item.get("changes") or []}
    elif kind == "mcp_tool_call":
        tool = f"{item.get('server')}.{item.get('tool')}"
        raw = item.get("arguments")
        arguments = raw if isinstance(raw, dict) else {}
    elif kind == "web_search":
        tool, arguments = "web_search", {"query": item.get("query")}
    else:
        return None
    return AgentEvent(kind=EventKind.TOOL_CALL, tool=tool, tool_id=item.get("id"), input=arguments)


def _tool_result(item: dict[str, Any]) -> AgentEvent:
    kind = item.get("type")
    failed = item.get("status") == "failed"
    data: dict[str, Any] = {}
    text: str | None = None
    if kind == "command_execution":
        exit_code = item.get("exit_code")
        data["exit_code"] = exit_code
        failed = failed or (isinstance(exit_code, int) and exit_code != 0)
        text = keep_end(str(item.get("aggregated_output") or ""))
    elif kind == "file_change":
        data["changes"] = item.get("changes") or []
    elif kind == "mcp_tool_call":
        error = item.get("error")
        failed = failed or bool(error)
        text = keep_end(json.dumps(error or item.get("result"), ensure_ascii=False))
    return AgentEvent(
        kind=EventKind.TOOL_RESULT, tool_id=item.get("id"), text=text, is_error=failed, data=data
    )


def _usage(raw: dict[str, Any]) -> Usage:
    """Responses-API counting: input includes the cached part and output the reasoning."""
    cached = token_count(raw, "cached_input_tokens")
    return Usage(
        input_tokens=max(token_count(raw, "input_tokens") - cached, 0),
        output_tokens=token_count(raw, "output_tokens"),
        cache_read_tokens=cached,
        cache_write_tokens=token_count(raw, "cache_write_input_tokens"),
    )
