"""Gemini CLI: what only its module does (text deltas joined per turn, tool errors, refusals
to start, the settings file and the harness it writes under HOME). The contract all agent
modules keep is in test_agent_contract.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from runner.agents.gemini import REQUIRED_SETTINGS, Gemini, GeminiParser
from runner.contract import AgentConfig, EventKind, RunStatus, Usage
from tests.runner.agent_cases.base import agent_run, kinds, parse
from tests.runner.agent_cases.gemini import SESSION, WRITE_RUN


def test_a_recorded_run_joins_text_deltas_per_turn_and_reports_tools_and_usage() -> None:
    _, events = parse("gemini", WRITE_RUN)

    session, first, write, written, read, missing, last, usage, final = events
    assert (session.session_id, session.data) == (SESSION, {"model": "gemini-2.5-pro"})
    assert first.text == "Writing the file."
    assert (write.tool, write.tool_id) == ("write_file", "write_file__write_file_1795332178626_0")
    assert write.input == {"file_path": "hello.txt", "content": "hi\n"}
    assert (written.tool_id, written.is_error, written.text) == (write.tool_id, False, None)
    assert (read.tool, missing.tool_id, missing.is_error) == ("read_file", read.tool_id, True)
    assert missing.text == "File not found.\nFile not found: /tmp/gm/repo/missing.txt"
    assert missing.data == {"error_type": "file_not_found"}
    assert last.text == "Wrote hello.txt."
    assert usage.usage == Usage(input_tokens=300, output_tokens=60)
    assert final.data == {"duration_ms": 559, "tool_calls": 2}


@pytest.mark.parametrize(
    ("exit_code", "stderr", "cause"),
    [
        (41, "Invalid auth method selected.\n", "authentication"),
        (55, "Gemini CLI is not running in a trusted directory.\n", "untrusted workspace"),
        (52, "Invalid configuration in settings.json\n", "configuration"),
    ],
)
def test_refusals_to_start_are_config_errors(exit_code: int, stderr: str, cause: str) -> None:
    outcome = GeminiParser().finish(exit_code, stderr)
    assert (outcome.status, outcome.error_class) == (RunStatus.AGENT_ERROR, "agent_config")
    assert outcome.error == (
        f"gemini refused to start ({cause}, exit {exit_code}): {stderr.strip()}"
    )


def test_text_cut_off_without_a_result_is_kept_as_the_last_words() -> None:
    parser, events = parse("gemini", WRITE_RUN[:3])
    assert kinds(events) == [EventKind.SESSION]  # the text waits for its turn to end
    parser.finish(137, "")
    assert parser.state.final_text == "Writing "


def test_a_whole_message_and_a_warning_each_stand_alone() -> None:
    parser = GeminiParser()
    whole = '{"type":"message","role":"assistant","content":"All at once."}'
    (text,) = parser.feed(whole)
    assert (text.kind, text.text) == (EventKind.TEXT, "All at once.")
    (warning,) = parser.feed('{"type":"error","severity":"warning","message":"Loop detected"}')
    assert (warning.kind, warning.text, warning.is_error) == (EventKind.LOG, "Loop detected", True)


def test_a_line_that_is_not_json_is_a_log_after_the_pending_text() -> None:
    parser = GeminiParser()
    assert parser.feed(WRITE_RUN[2]) == []
    text, log = parser.feed("Warning: Basic terminal detected (TERM=dumb).")
    assert (text.kind, text.text) == (EventKind.TEXT, "Writing ")
    assert (log.kind, log.text) == (EventKind.LOG, "Warning: Basic terminal detected (TERM=dumb).")


# --- settings and the harness in HOME -------------------------------------------------------


def settings_of(home: Path) -> dict[str, object]:
    settings: dict[str, object] = json.loads((home / ".gemini" / "settings.json").read_text())
    return settings


def test_settings_choose_api_key_auth_one_attempt_and_keep_other_keys(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".gemini").mkdir(parents=True)
    (home / ".gemini" / "settings.json").write_text(
        json.dumps(
            {
                "security": {"auth": {"selectedType": "oauth-personal"}, "folderTrust": {}},
                "model": {"maxSessionTurns": 9},
                "ui": {"theme": "Dracula"},
            }
        )
    )

    Gemini().invocation(agent_run(tmp_path, AgentConfig(cli="gemini")), "gemini")

    settings = settings_of(home)
    assert settings == {
        "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {}},
        "model": {},  # an earlier run's turn limit does not linger
        "ui": {"theme": "Dracula"},
        "privacy": REQUIRED_SETTINGS["privacy"],
        "general": {**REQUIRED_SETTINGS["general"], "maxAttempts": 1},
        "telemetry": {"enabled": False},
    }


def test_settings_take_turns_and_attempts_from_the_run(tmp_path: Path) -> None:
    config = AgentConfig(cli="gemini", max_turns=12, env={"GEMINI_MAX_ATTEMPTS": SecretStr("40")})
    Gemini().invocation(agent_run(tmp_path, config), "gemini")
    settings = settings_of(tmp_path / "home")
    assert settings["model"] == {"maxSessionTurns": 12}
    general = settings["general"]
    assert isinstance(general, dict)
    assert general["maxAttempts"] == 10  # Gemini CLI's ceiling


def test_an_empty_harness_removes_the_one_of_an_earlier_run(tmp_path: Path) -> None:
    config = AgentConfig(cli="gemini")
    Gemini().invocation(agent_run(tmp_path, config), "gemini")
    Gemini().invocation(agent_run(tmp_path, config, instructions=""), "gemini")
    assert not (tmp_path / "home" / ".gemini" / "GEMINI.md").exists()
