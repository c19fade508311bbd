"""The Gemini API, streamed (what Gemini CLI calls at
`POST /v1beta/models/MODEL:streamGenerateContent?alt=sse`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tests.fakes.model_server.scenario import Scenario, Step


def turns_so_far(body: dict[str, Any]) -> int:
    """How many model turns the request's `contents` already holds."""
    contents = body.get("contents") or []
    return sum(1 for content in contents if content.get("role") == "model")


def reply(body: dict[str, Any], scenario: Scenario) -> Iterator[bytes]:
    """The SSE chunks of one scripted model turn: the text in two pieces (as a real stream
    splits it), then the function calls with the finish reason and usage."""
    turn = turns_so_far(body)
    step = scenario.step(turn)
    if step.text:
        half = len(step.text) // 2
        for piece in (step.text[:half], step.text[half:]):
            if piece:
                yield _chunk([{"text": piece}])
    calls = [{"functionCall": {"name": c.name, "args": c.input}} for c in step.tool_calls]
    yield _chunk(calls, step=step, turn=turn)


def _chunk(parts: list[dict[str, Any]], step: Step | None = None, turn: int = 0) -> bytes:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    chunk: dict[str, Any] = {"candidates": [candidate]}
    if step is not None:  # the last chunk of the turn
        candidate["finishReason"] = "STOP"
        chunk["usageMetadata"] = {
            "promptTokenCount": step.input_tokens,
            "candidatesTokenCount": step.output_tokens,
            "totalTokenCount": step.input_tokens + step.output_tokens,
        }
        chunk["responseId"] = f"resp_{turn:03d}"
    return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()
