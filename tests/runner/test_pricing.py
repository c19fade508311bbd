"""Issue #17, item 4: the shipped price table, how a model name finds its price, and each
CLI's parser keeping the run's cost current from the usage it streams (recorded streams of
the pinned CLIs, tests/runner/agent_cases)."""

from __future__ import annotations

import pytest

from runner.agents import agent_for
from runner.agents.base import StreamParser
from runner.contract import AgentCli, AgentEvent, EventKind, ModelPrice, Usage
from runner.pricing import Meter, find_price, match_model, shipped_prices
from tests.runner.agent_cases import claude_code, codex, gemini

ANTHROPIC = shipped_prices()["anthropic"]
OPENAI = shipped_prices()["openai"]
GOOGLE = shipped_prices()["google"]


def test_the_shipped_table_prices_the_models_the_clis_use() -> None:
    assert set(shipped_prices()) == {"anthropic", "openai", "google"}
    for model in (
        "claude-opus-4-5",
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
        "claude-opus-5-5",  # the pinned Claude Code's default
    ):
        assert model in ANTHROPIC
    for model in ("gpt-5", "gpt-5-codex", "gpt-5.5", "o3", "o4-mini", "gpt-4.1", "gpt-4.1-mini"):
        assert model in OPENAI
    for model in ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite"):
        assert model in GOOGLE
    assert ANTHROPIC["claude-sonnet-4-5"] == ModelPrice(
        input=3.0, output=15.0, cache_read=0.3, cache_write=3.75
    )
    for prices in shipped_prices().values():
        for price in prices.values():
            # Output never cheaper than input, a cache hit never dearer than a miss.
            assert price.output >= price.input >= price.cache_read


@pytest.mark.parametrize(
    ("model", "row"),
    [
        ("claude-sonnet-4-5", "claude-sonnet-4-5"),  # exact
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),  # a dated id
        ("claude-opus-4-20250514", "claude-opus-4"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),  # the longer id wins
        ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),  # Vertex spelling
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("o3-2025-04-16", "o3"),
        ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("gemini-2.5-flash-preview-09-2025", "gemini-2.5-flash"),
        ("gemini-2.5-flash-lite-preview-06-17", "gemini-2.5-flash-lite"),
        # A newer version of a family is not an older one: said, not guessed.
        ("claude-sonnet-4-9", None),
        ("gpt-5.9", None),
        ("claude-sonnet-4-5[1m]", None),
        ("gpt-5x", None),
        ("llama-4", None),
    ],
)
def test_a_model_finds_its_row_exactly_else_by_the_longest_known_prefix(
    model: str, row: str | None
) -> None:
    table = {**ANTHROPIC, **OPENAI, **GOOGLE}
    assert match_model(table, model) == row
    assert find_price(table, model) == (table[row] if row else None)


def test_find_price_without_a_model_is_none() -> None:
    assert find_price(ANTHROPIC, None) is None
    assert find_price({}, "claude-sonnet-4-5") is None


def test_a_price_costs_each_kind_of_token_at_its_rate() -> None:
    price = ModelPrice(input=3.0, output=15.0, cache_read=0.3, cache_write=3.75)
    usage = Usage(
        input_tokens=1_000_000,
        output_tokens=100_000,
        cache_read_tokens=2_000_000,
        cache_write_tokens=400_000,
    )
    assert price.cost(usage) == pytest.approx(3.0 + 1.5 + 0.6 + 1.5)


def feed(parser: StreamParser, lines: list[str]) -> list[AgentEvent]:
    return [event for line in lines for event in parser.feed(line)]


def parser_for(cli: AgentCli, meter: Meter) -> StreamParser:
    return agent_for(cli).parser(meter)


def test_claude_code_prices_each_message_at_the_model_it_names() -> None:
    parser = parser_for("claude_code", Meter(ANTHROPIC, budget_usd=1.0))
    *turns, result = claude_code.WRITE_RUN

    events = feed(parser, turns)

    # Two messages of claude-opus-5-5 ($4 in, $20 out), 100 in + 1 out each.
    usage = [event for event in events if event.kind is EventKind.USAGE]
    assert [event.cost_usd for event in usage] == pytest.approx([0.00042, 0.00084])
    assert parser.state.cost_usd == pytest.approx(0.00084)
    assert parser.state.cost_note is None
    # The CLI's own total, which counts its helper calls too, is the run's final cost.
    (final,) = parser.feed(result)
    assert final.cost_usd == parser.state.cost_usd == 0.0016


def test_claude_code_counts_a_message_repeated_on_each_block_once() -> None:
    parser = parser_for("claude_code", Meter(ANTHROPIC))
    feed(parser, claude_code.BASH_RUN_MIDDLE)  # one message: three lines, usage repeated
    assert parser.state.usage == Usage(input_tokens=100, output_tokens=1)
    assert parser.state.cost_usd == pytest.approx(
        ANTHROPIC["claude-opus-5-5"].cost(Usage(input_tokens=100, output_tokens=1))
    )


def test_claude_code_says_once_that_a_model_has_no_price_when_a_budget_is_set() -> None:
    parser = parser_for("claude_code", Meter({}, budget_usd=2.0))
    *turns, result = claude_code.WRITE_RUN

    events = feed(parser, turns)

    logs = [event for event in events if event.kind is EventKind.LOG]
    assert len(logs) == 1  # two messages of the model, one word about it
    assert logs[0].is_error
    assert logs[0].text is not None
    assert "no price for 'claude-opus-5-5'" in logs[0].text
    assert "$2 budget cannot count those tokens" in logs[0].text
    assert parser.state.cost_usd is None
    assert parser.state.cost_note == logs[0].text
    parser.feed(result)
    assert parser.state.cost_usd == 0.0016  # the CLI knew its own price


def test_without_a_budget_an_unpriced_model_is_noted_in_the_result_only() -> None:
    parser = parser_for("claude_code", Meter({}))
    events = feed(parser, claude_code.WRITE_RUN[:-1])
    assert not [event for event in events if event.kind is EventKind.LOG]
    assert parser.state.cost_note is not None
    assert "no price for 'claude-opus-5-5'" in parser.state.cost_note


def test_codex_prices_the_thread_totals_at_the_configured_model() -> None:
    parser = parser_for("codex", Meter(OPENAI, "gpt-5.5"))
    events = feed(parser, codex.WRITE_RUN)
    # 400 in ($5) + 80 out ($30) per million.
    (usage,) = [event for event in events if event.kind is EventKind.USAGE]
    assert usage.cost_usd == pytest.approx(0.002 + 0.0024)
    (result,) = [event for event in events if event.kind is EventKind.RESULT]
    assert result.cost_usd == pytest.approx(0.0044)


def test_codex_without_a_configured_model_says_so_rather_than_guess() -> None:
    parser = parser_for("codex", Meter(OPENAI, None, budget_usd=1.0))
    events = feed(parser, codex.WRITE_RUN)
    (log,) = [event for event in events if event.data.get("cost") == "unpriced"]
    assert log.text is not None
    assert "no model named" in log.text
    assert parser.state.cost_usd is None


def test_gemini_prices_each_model_of_its_stats() -> None:
    parser = parser_for("gemini", Meter(GOOGLE))
    events = feed(parser, gemini.WRITE_RUN)
    # gemini-2.5-pro: 300 in ($1.25) + 60 out ($10) per million.
    (usage,) = [event for event in events if event.kind is EventKind.USAGE]
    assert usage.cost_usd == pytest.approx(0.000375 + 0.0006)
    assert parser.state.cost_usd == pytest.approx(0.000975)


def test_gemini_without_a_breakdown_prices_the_run_at_its_default_model() -> None:
    parser = parser_for("gemini", Meter(GOOGLE))
    result = gemini.WRITE_RUN[-1].replace(
        ',"models":{"gemini-2.5-pro":{"total_tokens":360,"input_tokens":300,'
        '"output_tokens":60,"cached":0,"input":300}}',
        "",
    )
    assert '"models"' not in result
    feed(parser, [*gemini.WRITE_RUN[1:-1], result])  # no init line naming the model either
    assert parser.state.cost_usd == pytest.approx(0.000975)


def test_a_command_agent_streams_no_usage_to_price() -> None:
    parser = parser_for("command", Meter(ANTHROPIC, "claude-sonnet-4-5", budget_usd=1.0))
    events = feed(parser, ["working", "done"])
    assert [event.kind for event in events] == [EventKind.LOG, EventKind.LOG]
    assert parser.state.cost_usd is None
    assert parser.state.cost_note is None


def test_a_meter_replaces_a_turn_reported_again() -> None:
    meter = Meter(ANTHROPIC, "claude-haiku-4-5")
    meter.turn("msg_1", Usage(input_tokens=1_000_000))
    meter.turn("msg_1", Usage(input_tokens=2_000_000))  # the same turn, more known of it
    meter.turn("msg_2", Usage(output_tokens=1_000_000), "claude-sonnet-4-5")
    assert meter.cost_usd == pytest.approx(2 * 1.0 + 15.0)


# Recorded from claude 2.1.330 with --include-partial-messages against the scripted server
# (a turn of 1,000 input and 300 output tokens; content deltas and status lines left out).
PARTIAL_TURN = [
    '{"type": "stream_event", "event": {"type": "message_start", "message": {"id": "msg_000", '
    '"type": "message", "role": "assistant", "model": "claude-opus-5-5", "content": [], '
    '"stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 1000, '
    '"output_tokens": 1}}}, "session_id": "6f3bb1dd-c3cf-4587-88e2-f8e2191c1141", '
    '"parent_tool_use_id": null, "uuid": "0b5e6c1e-4d0e-4a59-a3c0-1f1d0d9c2a11"}',
    '{"type": "assistant", "message": {"id": "msg_000", "type": "message", "role": '
    '"assistant", "model": "claude-opus-5-5", "content": [{"type": "tool_use", "id": '
    '"toolu_000_00", "name": "Bash", "input": {"command": "echo hi", "description": "x"}}], '
    '"stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 1000, '
    '"output_tokens": 1}}, "parent_tool_use_id": null, "session_id": '
    '"6f3bb1dd-c3cf-4587-88e2-f8e2191c1141"}',
    '{"type": "stream_event", "event": {"type": "message_delta", "delta": {"stop_reason": '
    '"tool_use", "stop_sequence": null}, "usage": {"output_tokens": 300}}, "session_id": '
    '"6f3bb1dd-c3cf-4587-88e2-f8e2191c1141", "parent_tool_use_id": null, "uuid": '
    '"9a1c7f2e-5b3d-4c8e-8f6a-2d4e6b8c0a13"}',
    '{"type": "stream_event", "event": {"type": "message_stop"}, "session_id": '
    '"6f3bb1dd-c3cf-4587-88e2-f8e2191c1141", "parent_tool_use_id": null, "uuid": '
    '"c4d2e8f0-1a3b-4c5d-9e7f-0a2b4c6d8e15"}',
]


def test_claude_code_prices_a_turns_output_when_its_message_delta_arrives() -> None:
    parser = parser_for("claude_code", Meter(ANTHROPIC, budget_usd=1.0))
    start, assistant, delta, stop = PARTIAL_TURN

    # Priced as the turn starts, before its content (a tool call) arrives.
    (started,) = parser.feed(start)
    assert started.cost_usd == pytest.approx(1000 * 4 / 1e6 + 1 * 20 / 1e6)
    assert feed(parser, [assistant])[-1].kind is EventKind.TOOL_CALL  # nothing new to price
    (usage,) = parser.feed(delta)
    # The whole output of the turn, at claude-opus-5-5's $20 a million.
    assert usage.kind is EventKind.USAGE
    assert usage.usage == Usage(input_tokens=1000, output_tokens=300)
    assert usage.cost_usd == pytest.approx(1000 * 4 / 1e6 + 300 * 20 / 1e6)
    assert parser.feed(stop) == []
    # A repeated assistant line of the same message does not undo what the delta said.
    feed(parser, [assistant])
    assert parser.state.usage == Usage(input_tokens=1000, output_tokens=300)


def test_a_subagents_stream_is_priced_at_its_own_model() -> None:
    parser = parser_for("claude_code", Meter(ANTHROPIC))
    start, _, delta, _ = PARTIAL_TURN
    sub_start = (
        start.replace('"msg_000"', '"msg_sub"')
        .replace("claude-opus-5-5", "claude-haiku-4-5")
        .replace('"parent_tool_use_id": null', '"parent_tool_use_id": "toolu_task"')
    )
    sub_delta = delta.replace('"parent_tool_use_id": null', '"parent_tool_use_id": "toolu_task"')
    feed(parser, [start, sub_start, sub_delta, delta])
    opus = ANTHROPIC["claude-opus-5-5"].cost(Usage(input_tokens=1000, output_tokens=300))
    haiku = ANTHROPIC["claude-haiku-4-5"].cost(Usage(input_tokens=1000, output_tokens=300))
    assert parser.state.cost_usd == pytest.approx(opus + haiku)
