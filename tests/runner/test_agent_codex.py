"""Codex: what only its module does (commands and patches as tool events, retries and
warnings that do not fail a run, the provider and settings it passes as TOML, giving up on
an unreachable API). The contract all agent modules keep is in test_agent_contract.py."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from pydantic import SecretStr

from runner.agents.codex import OFFLINE_LIMIT, Codex, CodexParser, toml_string
from runner.contract import AgentConfig, EventKind, RunStatus, Usage
from tests.fakes.model_server.responses import turns_so_far
from tests.runner.agent_cases.base import agent_run, kinds, parse
from tests.runner.agent_cases.codex import (
    IGNORED_SETTING,
    RECONNECTING,
    WAITING_FOR_NETWORK,
    WRITE_RUN,
)


def test_a_recorded_run_reports_commands_patches_and_their_results() -> None:
    _, events = parse("codex", WRITE_RUN)

    _, first, call, result, _, failed, patch, patched, last, usage, _ = events
    assert first.text == "Writing the file."
    assert (call.tool, call.tool_id) == ("shell", "item_1")
    assert call.input == {"command": "/bin/bash -lc \"printf 'hi\\\\n' > hello.txt && echo wrote\""}
    assert (result.tool_id, result.text, result.is_error) == ("item_1", "wrote\n", False)
    assert result.data == {"exit_code": 0}
    assert (failed.text, failed.is_error, failed.data) == ("oops\n", True, {"exit_code": 3})
    changes = [{"path": "/tmp/cx/repo/notes.txt", "kind": "add"}]
    assert (patch.tool, patch.input) == ("apply_patch", {"changes": changes})
    assert (patched.tool_id, patched.is_error, patched.data) == (
        "item_3",
        False,
        {"changes": changes},
    )
    assert last.text == "Wrote hello.txt."
    assert usage.usage == Usage(input_tokens=400, output_tokens=80)


def test_a_retry_that_recovers_still_succeeds() -> None:
    parser, events = parse("codex", [*WRITE_RUN[:2], RECONNECTING, *WRITE_RUN[2:]])
    assert events[1].kind is EventKind.LOG
    assert events[1].is_error is True
    assert parser.finish(0, "").status is RunStatus.SUCCEEDED


def test_an_exit_after_connection_errors_is_an_api_error() -> None:
    parser, _ = parse("codex", [*WRITE_RUN[:2], WAITING_FOR_NETWORK, WAITING_FOR_NETWORK])
    outcome = parser.finish(1, "")
    assert outcome.status is RunStatus.API_ERROR
    assert outcome.error is not None
    assert "error sending request" in outcome.error


def test_a_warning_item_is_a_log_and_does_not_fail_the_run() -> None:
    parser, events = parse("codex", [WRITE_RUN[0], IGNORED_SETTING, *WRITE_RUN[1:]])
    assert events[1].kind is EventKind.LOG
    assert events[1].text is not None
    assert "experimental_instructions_file" in events[1].text
    assert parser.finish(0, "").status is RunStatus.SUCCEEDED


def test_a_tool_call_seen_only_completed_still_gets_its_call_event() -> None:
    _, events = parse("codex", [WRITE_RUN[4]])
    assert kinds(events) == [EventKind.TOOL_CALL, EventKind.TOOL_RESULT]


def test_the_parser_gives_up_on_an_api_it_keeps_failing_to_reach() -> None:
    offline = json.dumps(
        {"type": "error", "message": "Reconnecting... waiting for network (Connection failed)"}
    )
    parser = CodexParser()
    for _ in range(OFFLINE_LIMIT - 1):
        parser.feed(offline)
    parser.feed(json.dumps({"type": "turn.started"}))  # progress resets the count
    for _ in range(OFFLINE_LIMIT - 1):
        parser.feed(offline)
    assert parser.state.gave_up is None
    parser.feed(offline)
    assert parser.state.gave_up is not None
    assert parser.state.gave_up.startswith("the model API is unreachable: Reconnecting")


# --- settings -----------------------------------------------------------------------------


def test_the_provider_takes_retries_from_the_run_and_needs_no_key(tmp_path: Path) -> None:
    config = AgentConfig(
        cli="codex",
        env={
            "OPENAI_BASE_URL": SecretStr("http://127.0.0.1:1/v1"),
            "CODEX_MAX_RETRIES": SecretStr("3"),
        },
    )
    argv = Codex().invocation(agent_run(tmp_path, config), "codex").argv
    (provider,) = [arg for arg in argv if arg.startswith("model_providers.")]
    table = tomllib.loads(provider.replace("model_providers.openase=", "provider = ", 1))
    assert table["provider"] == {
        "name": "OpenASE",
        "base_url": "http://127.0.0.1:1/v1",
        "wire_api": "responses",
        "request_max_retries": 3,
        "stream_max_retries": 3,
    }


@pytest.mark.parametrize(
    "text",
    [
        "true",
        "[section]\nkey = 1",
        'say "hi" \\ back\\slash',
        "tabs\tand\r\nnewlines, \x00 nul, \x1b escape, \x7f delete",
        "unicode é 😀 and a leading -dash",
    ],
)
def test_toml_strings_survive_codex_config_parsing(text: str) -> None:
    assert tomllib.loads(f"value = {toml_string(text)}")["value"] == text


def test_the_fake_server_counts_a_turn_once_however_its_tool_outputs_interleave() -> None:
    def call(call_id: str) -> dict[str, str]:
        return {"type": "function_call", "call_id": call_id, "name": "exec_command"}

    def output(call_id: str) -> dict[str, str]:
        return {"type": "function_call_output", "call_id": call_id, "output": "ok"}

    user = {"type": "message", "role": "user", "content": []}
    assistant = {"type": "message", "role": "assistant", "content": []}
    history = [
        user,
        *(call("call_000_00"), output("call_000_00"), call("call_000_01"), output("call_000_01")),
        {"type": "reasoning", "summary": []},
        assistant,
        call("call_001_00"),
        output("call_001_00"),
        assistant,
        user,  # a resumed thread's next prompt
    ]
    assert [turns_so_far({"input": history[:n]}) for n in (1, 5, 9, 10, 11)] == [0, 1, 2, 3, 3]
