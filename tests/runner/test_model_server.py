"""The scripted model server itself: routing, the Anthropic stream, step selection, failures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.model_server import ModelServer, Scenario, Step, ToolCall

WRITE = ToolCall("Write", {"file_path": "/w/hello.txt", "content": "hi\n"})
SCRIPT = Scenario(
    steps=[
        Step(text="Writing it.", tool_calls=(WRITE,), input_tokens=7, output_tokens=3),
        Step(text="All done."),
    ]
)


@pytest.fixture
def server() -> Iterator[ModelServer]:
    with ModelServer(SCRIPT) as running:
        yield running


def events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) pairs of an SSE body."""
    parsed = []
    for frame in response.text.split("\n\n"):
        if not frame.strip():
            continue
        lines = dict(line.split(": ", 1) for line in frame.splitlines())
        parsed.append((lines["event"], json.loads(lines["data"])))
    return parsed


def messages_call(server: ModelServer, messages: list[dict[str, Any]]) -> httpx.Response:
    body = {"model": "claude-test", "stream": True, "messages": messages}
    return httpx.post(f"{server.url}/v1/messages?beta=true", json=body, timeout=5)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def test_first_step_streams_text_then_tool_use_in_anthropic_order(server: ModelServer) -> None:
    response = messages_call(server, [user("write hello")])

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["connection"] == "close"
    names = [name for name, _ in events(response)]
    assert names == [
        "message_start",
        *["content_block_start", "content_block_delta", "content_block_stop"] * 2,
        "message_delta",
        "message_stop",
    ]
    parsed = dict(enumerate(data for _, data in events(response)))
    assert parsed[0]["message"]["model"] == "claude-test"
    assert parsed[0]["message"]["usage"]["input_tokens"] == 7
    assert parsed[2]["delta"] == {"type": "text_delta", "text": "Writing it."}
    tool_start = parsed[4]["content_block"]
    assert tool_start == {"type": "tool_use", "id": "toolu_000_00", "name": "Write", "input": {}}
    assert parsed[5]["delta"]["type"] == "input_json_delta"
    assert json.loads(parsed[5]["delta"]["partial_json"]) == WRITE.input
    assert parsed[7]["delta"]["stop_reason"] == "tool_use"
    assert parsed[7]["usage"] == {"output_tokens": 3}


def test_the_step_follows_the_number_of_assistant_turns_in_the_history(
    server: ModelServer,
) -> None:
    history = [user("write hello"), assistant("Writing it."), user("tool result")]

    second = events(messages_call(server, history))
    assert [data["delta"] for name, data in second if name == "content_block_delta"] == [
        {"type": "text_delta", "text": "All done."}
    ]
    assert second[-2][1]["delta"]["stop_reason"] == "end_turn"
    # Past the script's end the model only says it is done; the same history, the same reply.
    beyond = [*history, assistant("All done."), user("anything else?")]
    assert "Done." in messages_call(server, beyond).text
    assert events(messages_call(server, history)) == second


def test_tool_use_ids_are_unique_per_turn_and_stable_on_replay(server: ModelServer) -> None:
    server.scenario = Scenario(steps=[Step(tool_calls=(WRITE, WRITE)), Step(tool_calls=(WRITE,))])

    def ids(messages: list[dict[str, Any]]) -> list[str]:
        starts = [data for name, data in events(messages_call(server, messages))]
        return [
            data["content_block"]["id"] for data in starts if data["type"] == "content_block_start"
        ]

    first = ids([user("go")])
    second = ids([user("go"), assistant("x"), user("y")])
    assert first == ["toolu_000_00", "toolu_000_01"]
    assert second == ["toolu_001_00"]
    assert ids([user("go")]) == first


def test_fail_status_answers_an_anthropic_error_body(server: ModelServer) -> None:
    server.scenario = Scenario(fail_status=529)

    response = messages_call(server, [user("hi")])

    assert response.status_code == 529
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "api_error"
    assert "529" in body["error"]["message"]


def test_every_request_is_logged_with_lowercased_headers_and_parsed_body(
    server: ModelServer,
) -> None:
    messages_call(server, [user("the prompt")])
    httpx.head(f"{server.url}/", timeout=5)
    httpx.get(f"{server.url}/health", timeout=5)

    post, head, get = server.requests
    assert (post.method, post.path) == ("POST", "/v1/messages?beta=true")
    assert post.headers["content-type"] == "application/json"
    assert post.body["messages"] == [user("the prompt")]
    assert "the prompt" in post.text
    assert (head.method, head.path, head.body) == ("HEAD", "/", None)
    assert (get.method, get.path) == ("GET", "/health")
    assert server.model_requests() == [post]


def test_unknown_paths_answer_404_and_are_still_logged(server: ModelServer) -> None:
    response = httpx.post(f"{server.url}/v2/unknown", json={"x": 1}, timeout=5)

    assert response.status_code == 404
    assert server.requests[-1].path == "/v2/unknown"
    assert server.requests[-1].body == {"x": 1}
    assert server.model_requests() == []


def test_other_methods_answer_200_empty(server: ModelServer) -> None:
    response = httpx.get(f"{server.url}/", timeout=5)
    assert (response.status_code, response.content) == (200, b"")


def test_the_server_stops_listening_when_the_block_ends() -> None:
    with ModelServer(Scenario()) as server:
        url = server.url
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2)
