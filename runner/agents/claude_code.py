"""Claude Code in print mode (`claude -p`), read through its `stream-json` output.

Facts this relies on (measured on 2.1.330, see AGENT-CLIS.md): each content block of an
assistant message arrives as its own `assistant` line carrying the message's usage so far
(its input, and output as of its start); with `--include-partial-messages` the raw
`stream_event` lines follow, whose `message_delta` has the message's whole output count;
the final `result` line holds the run's usage and cost; an API failure ends with
`subtype: "success"` but `is_error: true`, so `is_error` is what counts.
"""

from __future__ import annotations

import re
from typing import Any

from runner.agents.base import (
    TOOL_RESULT_LIMIT,
    AgentRun,
    Invocation,
    JsonLinesParser,
    Outcome,
    exited_after_success,
    make_home,
    max_turns_reached,
    no_result,
    prompt_on_stdin,
    reported_failure,
    session_args,
    token_count,
)
from runner.contract import AgentCli, AgentEvent, EventKind, RunStatus, Usage
from runner.pricing import Meter

# Tools that run without asking: print mode has nobody to ask, so anything else is denied.
ALLOWED_TOOLS = "Bash Read Edit Write Glob Grep"

# Quiet flags: with these Claude Code connects only to the model's base URL.
QUIET_ENV = {
    "DISABLE_TELEMETRY": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
    # Its default retries an unreachable or failing API for minutes; a run should fail fast
    # and let the control plane decide on a retry. AgentConfig.env may override it.
    "CLAUDE_CODE_MAX_RETRIES": "0",
}

# How Claude Code words a failed model call in its result text (e.g. "API Error: 500 ...",
# "Failed to authenticate. API Error: 401 ...", "API Error: Connection refused ...").
_API_FAILURE = re.compile(
    r"API Error|authenticat|connection (?:refused|error|reset)|ECONN|ETIMEDOUT|overloaded",
    re.IGNORECASE,
)


class ClaudeCode:
    cli: AgentCli = "claude_code"
    default_binary = "claude"
    skills_dir = ".claude/skills"

    def invocation(self, run: AgentRun, binary: str) -> Invocation:
        config = run.config
        make_home(run)
        argv = [
            binary,
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            # Raw stream events too: only their message_delta lines say how many output tokens
            # a model turn produced, so the cost of each turn is known as it ends.
            "--include-partial-messages",
            # acceptEdits + an allow-list works as root, where bypassing permissions is refused.
            "--permission-mode",
            "acceptEdits",
            "--allowedTools",
            ALLOWED_TOOLS,
        ]
        if config.max_turns is not None:
            argv += ["--max-turns", str(config.max_turns)]
        if config.model:
            argv += ["--model", config.model]
        if run.instructions:
            # The "=" form keeps a harness that starts with "-" from reading as an option.
            argv.append(f"--append-system-prompt={run.instructions}")
        argv += session_args(run)
        argv += config.extra_args
        return prompt_on_stdin(run, argv, QUIET_ENV)

    def parser(self, meter: Meter | None = None) -> ClaudeCodeParser:
        return ClaudeCodeParser(meter)


class ClaudeCodeParser(JsonLinesParser):
    """stream-json lines -> events; keeps usage, cost, session id and the final result."""

    def __init__(self, meter: Meter | None = None) -> None:
        super().__init__(meter)
        self.result: dict[str, Any] | None = None
        self._last_text: str | None = None  # the summary when a run ends without a result text
        # Usage per assistant message id: every block of a message repeats its usage.
        self._message_usage: dict[str, Usage] = {}
        # The message each (sub)agent is streaming: (id, model) by parent_tool_use_id.
        self._streaming: dict[str | None, tuple[str, str | None]] = {}

    def _event(self, data: dict[str, Any]) -> list[AgentEvent]:
        kind = data.get("type")
        if kind == "system" and data.get("subtype") == "init":
            return [self._session_event(data.get("session_id"))]
        if kind == "assistant":
            return self._assistant(data)
        if kind == "user":
            return self._tool_results(data)
        if kind == "result":
            return [self._result(data)]
        if kind == "stream_event":
            return self._stream_event(data)
        return []  # hook, status and rate-limit lines: nothing a run report needs

    def _assistant(self, data: dict[str, Any]) -> list[AgentEvent]:
        message = data.get("message") or {}
        extra = _subagent(data)
        events: list[AgentEvent] = []
        for block in message.get("content") or []:
            if block.get("type") == "text" and block.get("text"):
                api_failure = bool(data.get("is_api_error_message"))
                if not api_failure and not extra:
                    self._last_text = block["text"]
                events.append(
                    AgentEvent(
                        kind=EventKind.TEXT,
                        text=block["text"],
                        is_error=True if api_failure else None,
                        data=extra,
                    )
                )
            elif block.get("type") == "tool_use":
                events.append(
                    AgentEvent(
                        kind=EventKind.TOOL_CALL,
                        tool=block.get("name"),
                        tool_id=block.get("id"),
                        input=block.get("input") or {},
                        data=extra,
                    )
                )
        usage = message.get("usage")
        if isinstance(usage, dict) and message.get("id"):
            # Each message names its model (a subagent's may differ from the run's).
            model = message.get("model")
            events += self._message(
                str(message["id"]), _usage(usage), model if isinstance(model, str) else None
            )
        return events

    def _stream_event(self, data: dict[str, Any]) -> list[AgentEvent]:
        """A raw API stream event: a message's start names it and has its input, its delta
        has its output."""
        event = data.get("event") or {}
        parent = data.get("parent_tool_use_id")
        if event.get("type") == "message_start":
            message = event.get("message") or {}
            if not message.get("id"):
                return []
            model = message.get("model")
            self._streaming[parent] = (
                str(message["id"]),
                model if isinstance(model, str) else None,
            )
            # Its input is known (and billed) as the turn starts: priced before it goes on.
            usage = message.get("usage")
            if not isinstance(usage, dict):
                return []
            return self._message(str(message["id"]), _usage(usage), self._streaming[parent][1])
        streaming = self._streaming.get(parent)
        if (
            event.get("type") == "message_delta"
            and streaming
            and isinstance(event.get("usage"), dict)
        ):
            return self._message(streaming[0], _usage(event["usage"]), streaming[1])
        return []  # content deltas: the assistant lines carry the content

    def _message(self, key: str, usage: Usage, model: str | None) -> list[AgentEvent]:
        """What is known of one message's usage so far (counts only grow: the largest of
        each), priced; a USAGE event when the run's totals moved."""
        known = self._message_usage.get(key, Usage())
        turn = Usage(
            input_tokens=max(known.input_tokens, usage.input_tokens),
            output_tokens=max(known.output_tokens, usage.output_tokens),
            cache_read_tokens=max(known.cache_read_tokens, usage.cache_read_tokens),
            cache_write_tokens=max(known.cache_write_tokens, usage.cache_write_tokens),
        )
        before = self.state.usage
        self._message_usage[key] = turn
        self.state.usage = sum(self._message_usage.values(), Usage())
        events = self._priced(key, turn, model)
        if self.state.usage != before:
            events.append(
                AgentEvent(
                    kind=EventKind.USAGE, usage=self.state.usage, cost_usd=self.state.cost_usd
                )
            )
        return events

    def _tool_results(self, data: dict[str, Any]) -> list[AgentEvent]:
        content = (data.get("message") or {}).get("content")
        if not isinstance(content, list):
            return []  # a plain user message (the prompt, a skill's body)
        return [
            AgentEvent(
                kind=EventKind.TOOL_RESULT,
                tool_id=block.get("tool_use_id"),
                text=_truncate(_text_of(block.get("content"))),
                is_error=bool(block.get("is_error")),
                data=_subagent(data),
            )
            for block in content
            if isinstance(block, dict) and block.get("type") == "tool_result"
        ]

    def _result(self, data: dict[str, Any]) -> AgentEvent:
        self.result = data
        text = _result_text(data)
        final = data.get("result")
        self.state.final_text = final if isinstance(final, str) and final else self._last_text
        self._note_session(data.get("session_id"))
        cost = data.get("total_cost_usd")
        if isinstance(cost, int | float) and (cost > 0 or self.state.cost_usd is None):
            # Claude Code's own total also counts calls no stream line shows (its small
            # helper requests), so it replaces the per-turn estimate.
            self.state.cost_usd = float(cost)
        # The result's usage covers the whole run, including the last message's output
        # tokens that the per-block lines were sent before.
        if isinstance(data.get("usage"), dict):
            self.state.usage = _usage(data["usage"])
        details = {
            key: data[key]
            for key in ("subtype", "num_turns", "duration_ms", "terminal_reason")
            if data.get(key) is not None
        }
        if data.get("permission_denials"):
            details["permission_denials"] = len(data["permission_denials"])
        return AgentEvent(
            kind=EventKind.RESULT,
            text=text,
            is_error=bool(data.get("is_error")),
            usage=self.state.usage,
            cost_usd=self.state.cost_usd,
            session_id=self.state.session_id,
            data=details,
        )

    def finish(self, exit_code: int, stderr_tail: str) -> Outcome:
        result = self.result
        if result is None:
            return no_result("claude", exit_code, stderr_tail)
        text = _result_text(result)
        if result.get("subtype") == "error_max_turns":
            return max_turns_reached(self.state.final_text, text)
        if result.get("is_error"):
            if _is_api_failure(result, text):
                return reported_failure(text or "the model API failed", api=True)
            return reported_failure(
                text or f"claude reported an error ({result.get('subtype')})", api=False
            )
        if exit_code != 0:
            return exited_after_success("claude", exit_code, self.state.final_text)
        return Outcome(status=RunStatus.SUCCEEDED, summary=self.state.final_text)


def _is_api_failure(result: dict[str, Any], text: str | None) -> bool:
    if result.get("terminal_reason") == "api_error" or result.get("api_error_status"):
        return True
    return bool(text and _API_FAILURE.search(text))


def _result_text(data: dict[str, Any]) -> str | None:
    """The final message, or what went wrong when there is none (max turns, bad resume)."""
    text = data.get("result")
    if isinstance(text, str) and text:
        return text
    errors = [str(error) for error in data.get("errors") or []]
    return "; ".join(errors) or None


def _usage(raw: dict[str, Any]) -> Usage:
    return Usage(
        input_tokens=token_count(raw, "input_tokens"),
        output_tokens=token_count(raw, "output_tokens"),
        cache_read_tokens=token_count(raw, "cache_read_input_tokens"),
        cache_write_tokens=token_count(raw, "cache_creation_input_tokens"),
    )


def _text_of(content: Any) -> str:
    """A tool result's content: a string, or blocks of which the text ones count."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(block.get("text", ""))
            for block in content
            if isinstance(block, dict) and block.get("type") == "text"
        )
    return ""


def _truncate(text: str) -> str:
    if len(text) <= TOOL_RESULT_LIMIT:
        return text
    return text[:TOOL_RESULT_LIMIT] + f"\n[... {len(text) - TOOL_RESULT_LIMIT} more characters]"


def _subagent(data: dict[str, Any]) -> dict[str, Any]:
    parent = data.get("parent_tool_use_id")
    return {"parent_tool_use_id": parent} if parent else {}
