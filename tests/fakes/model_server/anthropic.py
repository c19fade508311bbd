"""The Anthropic Messages API, streamed (what Claude Code calls at `POST /v1/messages`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tests.fakes.model_server.scenario import Scenario, Step


def turns_so_far(body: dict[str, Any]) -> int:
    """How many model turns the request's history already holds."""
    messages = body.get("messages") or []
    return sum(1 for message in messages if message.get("role") == "assistant")


def tool_use_id(turn: int, index: int) -> str:
    """Unique within a conversation and the same on every replay of it."""
    return f"toolu_{turn:03d}_{index:02d}"


def reply(body: dict[str, Any], scenario: Scenario) -> Iterator[bytes]:
    """The SSE events of one scripted assistant message."""
    turn = turns_so_far(body)
    step = scenario.step(turn)
    yield _event(
        "message_start",
        message={
            "id": f"msg_{turn:03d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude-scripted"),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": step.input_tokens, "output_tokens": 1},
        },
    )
    for index, block in enumerate(_blocks(step, turn)):
        yield from _block(index, block)
    yield _event(
        "message_delta",
        delta={"stop_reason": "tool_use" if step.tool_calls else "end_turn", "stop_sequence": None},
        usage={"output_tokens": step.output_tokens},
    )
    yield _event("message_stop")


def _blocks(step: Step, turn: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if step.text is not None:
        blocks.append({"type": "text", "text": step.text})
    for index, call in enumerate(step.tool_calls):
        blocks.append(
            {
                "type": "tool_use",
                "id": tool_use_id(turn, index),
                "name": call.name,
                "input": call.input,
            }
        )
    return blocks


def _block(index: int, block: dict[str, Any]) -> Iterator[bytes]:
    if block["type"] == "text":
        start: dict[str, Any] = {"type": "text", "text": ""}
        delta: dict[str, Any] = {"type": "text_delta", "text": block["text"]}
    else:
        # The input arrives as JSON text in deltas; one delta holding all of it is valid.
        start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
    yield _event("content_block_start", index=index, content_block=start)
    yield _event("content_block_delta", index=index, delta=delta)
    yield _event("content_block_stop", index=index)


def _event(kind: str, **fields: Any) -> bytes:
    data = json.dumps({"type": kind, **fields}, ensure_ascii=False)
    return f"event: {kind}\ndata: {data}\n\n".encode()
