"""The run contract: wire round trips, secrets, and refusing another schema version."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from runner.contract import (
    SCHEMA_VERSION,
    AgentConfig,
    AgentEvent,
    ContractMismatch,
    EventKind,
    HarnessRef,
    HookResult,
    RepoRef,
    RunResult,
    RunSpec,
    RunStatus,
    TicketRef,
    Usage,
)


def spec() -> RunSpec:
    return RunSpec(
        run_id="r-1",
        ticket=TicketRef(key="octo/hello#1", number=1, title="Fix it"),
        repo=RepoRef(full_name="octo/hello", clone_url="https://ghe.example.test/octo/hello.git"),
        base_branch="main",
        work_branch="openase/1-fix-it",
        prompt="Fix it",
        harness=HarnessRef(name="coder", version=3, version_id=12, text="Be careful."),
        agent=AgentConfig.model_validate(
            {"cli": "claude_code", "env": {"ANTHROPIC_API_KEY": "sk-ant-secret"}}
        ),
        git_token=SecretStr("ghs_short_lived"),
    )


def test_a_spec_survives_the_wire_with_its_secrets() -> None:
    original = spec()
    wire = original.to_wire()
    assert wire["schema_version"] == SCHEMA_VERSION
    assert wire["git_token"] == "ghs_short_lived"
    assert wire["agent"]["env"] == {"ANTHROPIC_API_KEY": "sk-ant-secret"}
    assert RunSpec.from_wire(wire) == original


def test_secrets_never_show_in_repr_or_python_dumps() -> None:
    original = spec()
    for text in (repr(original), str(original), str(original.model_dump())):
        assert "ghs_short_lived" not in text
        assert "sk-ant-secret" not in text


def test_only_the_wire_form_carries_secrets_other_json_dumps_mask_them() -> None:
    """The run's row keeps `model_dump(mode="json")`: no token, the env masked."""
    original = spec()
    stored = original.model_dump(mode="json")
    assert stored["git_token"] is None
    assert stored["agent"]["env"] == {"ANTHROPIC_API_KEY": "**********"}
    for text in (json.dumps(stored), original.model_dump_json()):
        assert "ghs_short_lived" not in text
        assert "sk-ant-secret" not in text


@pytest.mark.parametrize(
    ("version", "hint"),
    [
        (SCHEMA_VERSION + 1, "this side is older: upgrade it"),
        (SCHEMA_VERSION - 1, "the sender is older"),
        (None, "does not speak the OpenASE run contract"),
        ("1", "does not speak the OpenASE run contract"),
    ],
)
def test_another_schema_version_is_refused_clearly(version: object, hint: str) -> None:
    wire: dict[str, Any] = spec().to_wire()
    wire["schema_version"] = version
    with pytest.raises(ContractMismatch, match=hint) as caught:
        RunSpec.from_wire(wire)
    assert f"this side speaks {SCHEMA_VERSION}" in str(caught.value)


def test_an_invalid_spec_names_every_bad_field() -> None:
    wire: dict[str, Any] = spec().to_wire()
    wire["limits"] = {"wall_seconds": -1}
    wire["surprise"] = True
    with pytest.raises(ContractMismatch) as caught:
        RunSpec.from_wire(wire)
    message = str(caught.value)
    assert "limits.wall_seconds" in message
    assert "surprise" in message
    assert "ghs_short_lived" not in message


def test_not_an_object_is_refused() -> None:
    with pytest.raises(ContractMismatch, match="expected a JSON object, got list"):
        RunSpec.from_wire([1, 2])


def test_a_result_round_trips_and_reports_gate_failures() -> None:
    now = datetime.now(UTC)
    result = RunResult(
        run_id="r-1",
        status=RunStatus.GATES_FAILED,
        hook_results=(
            HookResult(
                phase="on_complete", name="tests", on_failure="block", exit_code=1, duration_s=2
            ),
            HookResult(
                phase="on_complete", name="lint", on_failure="warn", exit_code=1, duration_s=1
            ),
            HookResult(
                phase="on_complete",
                name="slow",
                on_failure="block",
                exit_code=None,
                timed_out=True,
                duration_s=9,
            ),
        ),
        usage=Usage(input_tokens=10, output_tokens=5, cache_read_tokens=100),
        started_at=now,
        finished_at=now,
    )
    again = RunResult.from_wire(result.to_wire())
    assert again == result
    assert [hook.name for hook in again.gate_failures] == ["tests", "slow"]
    assert again.usage.total_tokens == 115
    assert not again.succeeded


def test_events_drop_empty_fields_on_the_wire() -> None:
    event = AgentEvent(kind=EventKind.TOOL_CALL, tool="Write", tool_id="t1", input={"path": "a"})
    wire = event.to_wire()
    assert "text" not in wire
    assert "usage" not in wire
    assert AgentEvent.from_wire(wire) == event
