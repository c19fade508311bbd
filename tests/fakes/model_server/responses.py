"""The OpenAI Responses API, streamed (what Codex calls at `POST /v1/responses`)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from tests.fakes.model_server.scenario import Scenario, Step, ToolCall

# Items the model produced; everything else in `input` (user and developer messages, tool
# outputs) comes from the client.
_MODEL_ITEMS = {"function_call", "custom_tool_call", "local_shell_call", "reasoning"}
_CALL_ID = re.compile(r"^call_(\d{3})_\d{2}$")


def call_id(turn: int, index: int) -> str:
    """Unique within a conversation, the same on every replay, and naming its turn."""
    return f"call_{turn:03d}_{index:02d}"


def _is_model_item(item: dict[str, Any]) -> bool:
    if item.get("type") in _MODEL_ITEMS:
        return True
    return item.get("type", "message") == "message" and item.get("role") == "assistant"


def turns_so_far(body: dict[str, Any]) -> int:
    """How many model turns the request's `input` already holds.

    A turn is a run of model items; tool outputs may sit between the calls of one turn, so
    a call whose id names the same turn as the call before it does not start a new one.
    """
    items = body.get("input")
    if not isinstance(items, list):
        return 0
    turns = 0
    in_turn = False
    last_call_turn: str | None = None
    for item in items:
        if not isinstance(item, dict):
            continue
        if not _is_model_item(item):
            in_turn = False
            if item.get("type", "message") == "message":
                last_call_turn = None
            continue
        match = _CALL_ID.match(str(item.get("call_id", "")))
        same_turn = match is not None and match.group(1) == last_call_turn
        if not in_turn and not same_turn:
            turns += 1
        in_turn = True
        if match is not None:
            last_call_turn = match.group(1)
    return turns


def reply(body: dict[str, Any], scenario: Scenario) -> Iterator[bytes]:
    """The SSE events of one scripted response."""
    turn = turns_so_far(body)
    step = scenario.step(turn)
    events = _Events()
    response: dict[str, Any] = {
        "id": f"resp_{turn:03d}",
        "object": "response",
        "created_at": 0,
        "status": "in_progress",
        "model": body.get("model", "gpt-scripted"),
        "output": [],
    }
    yield events.emit("response.created", response=response)
    output: list[dict[str, Any]] = []
    for index, item in enumerate(_items(step, turn)):
        yield from _item_events(events, index, item)
        output.append(item)
    usage = {
        "input_tokens": step.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": step.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": step.input_tokens + step.output_tokens,
    }
    completed = {**response, "status": "completed", "output": output, "usage": usage}
    yield events.emit("response.completed", response=completed)


def _items(step: Step, turn: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if step.text is not None:
        items.append(
            {
                "id": f"msg_{turn:03d}",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": step.text, "annotations": []}],
            }
        )
    items.extend(_call_item(call, turn, index) for index, call in enumerate(step.tool_calls))
    return items


def _call_item(call: ToolCall, turn: int, index: int) -> dict[str, Any]:
    ident = call_id(turn, index)
    if call.raw is not None:  # a freeform tool such as apply_patch takes plain text
        return {
            "id": f"ctc_{turn:03d}_{index:02d}",
            "type": "custom_tool_call",
            "status": "completed",
            "call_id": ident,
            "name": call.name,
            "input": call.raw,
        }
    return {
        "id": f"fc_{turn:03d}_{index:02d}",
        "type": "function_call",
        "status": "completed",
        "call_id": ident,
        "name": call.name,
        "arguments": json.dumps(call.input),
    }


def _item_events(events: _Events, index: int, item: dict[str, Any]) -> Iterator[bytes]:
    if item["type"] == "message":
        text = item["content"][0]["text"]
        yield events.emit(
            "response.output_item.added",
            output_index=index,
            item={**item, "status": "in_progress", "content": []},
        )
        yield events.emit(
            "response.output_text.delta",
            item_id=item["id"],
            output_index=index,
            content_index=0,
            delta=text,
        )
    else:
        yield events.emit(
            "response.output_item.added", output_index=index, item={**item, "status": "in_progress"}
        )
    yield events.emit("response.output_item.done", output_index=index, item=item)


class _Events:
    """Numbers the events of one response, as the API does."""

    def __init__(self) -> None:
        self.sequence = 0

    def emit(self, kind: str, **fields: Any) -> bytes:
        data = json.dumps(
            {"type": kind, "sequence_number": self.sequence, **fields}, ensure_ascii=False
        )
        self.sequence += 1
        return f"event: {kind}\ndata: {data}\n\n".encode()
