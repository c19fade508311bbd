"""Activity and live output: a ticket's activity log, a run with its result and events, and
the run's events as Server-Sent Events, persisted first, then live from the runner's stream.

Events are written by the real runner sink (RedisEventSink) and persisted by the control
plane's own collect_events. httpx's ASGITransport returns a response only once the app has
sent all of it, so live tailing is tested on the stream generator and the HTTP route end to
end on runs that are already over.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import httpx
import pytest
from pydantic import SecretStr

from bot.api.request import encode_cursor
from bot.api.runs import event_stream
from bot.deps import Deps
from bot.engine.runs.events import collect_events
from bot.tables.mirror import Ticket
from bot.tables.workflow import Activity, Run, RunState
from harness_store.db import transaction
from runner.contract import AgentEvent, HookResult, RunResult, RunStatus, Usage
from tests.support.browser import served
from tests.support.outages import client_for, redis_down
from tests.support.run_streams import SSE, T0, Received, emit, finish, parse_sse, runner_sink

API = "/api/v1"


async def add_ticket(deps: Deps, number: int = 1) -> int:
    async with transaction(deps.sessions) as session:
        ticket = Ticket(
            source="github", external_id=f"o/r#{number}", key=f"o/r#{number}", state="open"
        )
        session.add(ticket)
        await session.flush()
        return ticket.id


async def add_run(
    deps: Deps, run_id: str, ticket_id: int, *, state: RunState = RunState.RUNNING
) -> None:
    async with transaction(deps.sessions) as session:
        session.add(
            Run(
                id=run_id,
                ticket_id=ticket_id,
                workflow="coder",
                attempt=2,
                machine="m1",
                state=state,
                spec={},
                queued_at=T0,
            )
        )


def a_result(run_id: str) -> RunResult:
    return RunResult(
        run_id=run_id,
        status=RunStatus.GATES_FAILED,
        branch="openase/1",
        head_sha="a" * 40,
        pushed=True,
        hook_results=(
            HookResult(
                phase="on_complete",
                name="tests",
                on_failure="block",
                exit_code=1,
                duration_s=2.5,
                output_tail="FAILED test_x.py::test_y\n1 failed",
            ),
            HookResult(
                phase="on_complete", name="lint", on_failure="warn", exit_code=0, duration_s=1
            ),
        ),
        usage=Usage(input_tokens=10, output_tokens=5),
        cost_usd=0.25,
        machine="m1",
        started_at=T0 + timedelta(minutes=1),
        finished_at=T0 + timedelta(minutes=8),
    )


# -- activity ------------------------------------------------------------------------------


async def test_activity_is_oldest_first_and_paged(client: httpx.AsyncClient, deps: Deps) -> None:
    ticket_id = await add_ticket(deps)
    other = await add_ticket(deps, 2)
    async with transaction(deps.sessions) as session:
        rows = [
            Activity(ticket_id=ticket_id, kind="state", message="todo -> in_progress", at=T0),
            Activity(ticket_id=other, kind="state", message="someone else's", at=T0),
            Activity(
                ticket_id=ticket_id,
                kind="run",
                run_id="r1",
                message="run r1 started on m1",
                data={"machine": "m1"},
                at=T0 + timedelta(seconds=1),
            ),
            *(
                Activity(ticket_id=ticket_id, kind="effect", message=f"label {n}", at=T0)
                for n in range(3)
            ),
        ]
        session.add_all(rows)
        await session.flush()
        ids = [row.id for row in rows if row.ticket_id == ticket_id]

    path = f"{API}/tickets/{ticket_id}/activity"
    first = (await client.get(path, params={"limit": 2})).json()
    assert first["ticket_id"] == ticket_id
    assert first["activity"][1] == {
        "id": ids[1],
        "at": "2026-03-01T09:00:01+00:00",
        "kind": "run",
        "message": "run r1 started on m1",
        "run_id": "r1",
        "data": {"machine": "m1"},
    }
    seen = [item["id"] for item in first["activity"]]
    cursor = first["next_cursor"]
    while cursor is not None:
        body = (await client.get(path, params={"limit": 2, "cursor": cursor})).json()
        seen += [item["id"] for item in body["activity"]]
        cursor = body["next_cursor"]
    assert seen == ids  # oldest first, every row once, none of the other ticket's

    everything = (await client.get(path)).json()
    assert [a["message"] for a in everything["activity"]][:2] == [
        "todo -> in_progress",
        "run r1 started on m1",
    ]
    assert everything["next_cursor"] is None


async def test_activity_of_a_quiet_ticket_and_of_none(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    ticket_id = await add_ticket(deps)
    response = await client.get(f"{API}/tickets/{ticket_id}/activity")
    assert response.json() == {"ticket_id": ticket_id, "activity": [], "next_cursor": None}
    response = await client.get(f"{API}/tickets/{ticket_id + 1}/activity")
    assert response.status_code == 404
    assert response.json() == {"error": f"id: no ticket {ticket_id + 1}"}


# -- runs ----------------------------------------------------------------------------------


async def test_run_with_result_and_events(client: httpx.AsyncClient, deps: Deps) -> None:
    ticket_id = await add_ticket(deps)
    await add_run(deps, "r1", ticket_id)
    async with runner_sink(deps, "r1") as sink:
        await emit(sink, "one", "two", "three")
    assert await collect_events(deps.redis, deps.sessions, "r1") == 3
    result = a_result("r1")
    await finish(deps, "r1", result)

    body = (await client.get(f"{API}/runs/r1")).json()
    events = body.pop("events")
    assert body == {
        "id": "r1",
        "ticket_id": ticket_id,
        "workflow": "coder",
        "attempt": 2,
        "machine": "m1",
        "state": "finished",
        "status": "gates_failed",
        "queued_at": "2026-03-01T09:00:00+00:00",
        "started_at": body["started_at"],  # set by collect_events from the first event
        "finished_at": "2026-03-01T09:08:00+00:00",
        "last_heartbeat_at": body["last_heartbeat_at"],
        "cost_usd": 0.25,
        "harness_version_id": None,
        "result": result.to_wire(),
        "events_next_after": None,
    }
    assert body["started_at"] is not None
    assert body["last_heartbeat_at"] is not None
    [tests, lint] = body["result"]["hook_results"]
    assert (tests["name"], tests["exit_code"], tests["output_tail"]) == (
        "tests",
        1,
        "FAILED test_x.py::test_y\n1 failed",
    )
    assert lint["on_failure"] == "warn"
    assert [(e["seq"], e["kind"], e["text"], e["run_id"]) for e in events] == [
        (1, "text", "one", "r1"),
        (2, "text", "two", "r1"),
        (3, "text", "three", "r1"),
    ]
    assert AgentEvent.from_wire(events[0]).text == "one"  # the wire form, as is


async def test_run_events_are_paged_by_seq(client: httpx.AsyncClient, deps: Deps) -> None:
    await add_run(deps, "r2", await add_ticket(deps))
    async with runner_sink(deps, "r2") as sink:
        await emit(sink, *(f"e{n}" for n in range(1, 6)))
    await collect_events(deps.redis, deps.sessions, "r2")

    body = (await client.get(f"{API}/runs/r2", params={"events_limit": 2})).json()
    assert ([e["seq"] for e in body["events"]], body["events_next_after"]) == ([1, 2], 2)
    assert body["result"] is None
    assert body["state"] == "running"

    seqs: list[int] = []
    after: int | None = 0
    while after is not None:
        page = await client.get(f"{API}/runs/r2/events", params={"after": after, "limit": 2})
        assert page.status_code == 200, page.text
        seqs += [e["seq"] for e in page.json()["events"]]
        assert page.json()["run_id"] == "r2"
        after = page.json()["next_after"]
    assert seqs == [1, 2, 3, 4, 5]
    tail = (await client.get(f"{API}/runs/r2/events", params={"after": 4})).json()
    assert ([e["text"] for e in tail["events"]], tail["next_after"]) == (["e5"], None)


@pytest.mark.parametrize(
    ("path", "accept"),
    [
        ("/runs/nope", "application/json"),
        ("/runs/nope/events", "application/json"),
        ("/runs/nope/events?after=3", "text/event-stream"),
        ("/runs/nope/events", "text/html, text/event-stream;q=0.9"),
    ],
)
async def test_unknown_run_is_404(client: httpx.AsyncClient, path: str, accept: str) -> None:
    response = await client.get(API + path, headers={"Accept": accept})
    assert response.status_code == 404
    assert response.json() == {"error": "id: no run 'nope'"}


@pytest.mark.parametrize(
    ("path", "headers", "named"),
    [
        ("/tickets/x/activity", {}, "id: "),
        ("/tickets/{ticket}/activity?limit=0", {}, "limit: "),
        ("/tickets/{ticket}/activity?cursor=garbage", {}, "cursor: malformed"),
        ("/tickets/{ticket}/activity?cursor={tickets_cursor}", {}, "cursor: belongs to another"),
        ("/tickets/{ticket}/activity?after=1", {}, "after: unknown query parameter"),
        ("/runs/bad%20id", {}, "id: malformed run id"),
        ("/runs/r3?events_limit=1001", {}, "events_limit: must be between 1 and 1000"),
        ("/runs/r3?events_limit=many", {}, "events_limit: must be an integer"),
        ("/runs/r3?limit=5", {}, "limit: unknown query parameter"),
        ("/runs/r3/events?after=-1", {}, "after: must be an event seq"),
        ("/runs/r3/events?after=1&after=2", {}, "after: give it at most once"),
        ("/runs/r3/events?limit=0", {}, "limit: must be between 1 and 1000"),
        ("/runs/r3/events?cursor=x", {}, "cursor: unknown query parameter"),
        ("/runs/r3/events?limit=5", SSE, "limit: unknown query parameter"),
        ("/runs/r3/events?after=x", SSE, "after: must be an event seq"),
        ("/runs/r3/events", {**SSE, "Last-Event-ID": "abc"}, "Last-Event-ID: must be"),
    ],
)
async def test_bad_parameter_is_400_naming_it(
    client: httpx.AsyncClient, deps: Deps, path: str, headers: dict[str, str], named: str
) -> None:
    ticket = await add_ticket(deps)
    await add_run(deps, "r3", ticket)
    url = API + path.format(ticket=ticket, tickets_cursor=encode_cursor("tickets", 5))
    response = await client.get(url, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(named), response.json()


async def test_admin_token_guards_runs_and_activity(deps: Deps) -> None:
    ticket = await add_ticket(deps)
    await add_run(deps, "r4", ticket, state=RunState.LOST)
    settings = deps.settings.model_copy(update={"admin_token": SecretStr("tok")})
    async with client_for(dataclasses.replace(deps, settings=settings)) as http:
        for path in (f"/tickets/{ticket}/activity", "/runs/r4", "/runs/r4/events"):
            assert (await http.get(API + path, headers=SSE)).status_code == 401
        ok = await http.get(API + "/runs/r4/events", headers={**SSE, "Authorization": "Bearer tok"})
    assert ok.status_code == 200
    assert parse_sse(ok.text)[-1]["event"] == "end"


# -- live events (SSE) ---------------------------------------------------------------------


async def test_stream_sends_persisted_then_live_events_and_ends(deps: Deps) -> None:
    await add_run(deps, "r5", await add_ticket(deps))
    received = Received()
    async with runner_sink(deps, "r5") as sink:
        await emit(sink, "persisted 1", "persisted 2")
        assert await collect_events(deps.redis, deps.sessions, "r5") == 2
        await emit(sink, "only in redis")  # not yet persisted

        task = asyncio.create_task(received.read(event_stream(deps, "r5", 0, block_ms=50)))
        await received.wait_for(3)
        await emit(sink, "live 4", "live 5")
        await received.wait_for(5)
        await asyncio.sleep(0.2)
        assert not task.done()  # the run is still going: the stream waits for more
    await finish(deps, "r5", a_result("r5"))
    async with asyncio.timeout(5):
        await task

    messages = received.messages
    assert [(m.get("id"), m["event"]) for m in messages] == [
        *((str(n), "text") for n in range(1, 6)),
        (None, "end"),
    ]
    texts = [AgentEvent.model_validate_json(m["data"]).text for m in messages[:5]]
    assert texts == ["persisted 1", "persisted 2", "only in redis", "live 4", "live 5"]
    assert messages[-1]["data"] == '{"run_id":"r5","state":"finished","status":"gates_failed"}'


async def test_stream_resumes_after_a_seq_without_repeats(deps: Deps) -> None:
    await add_run(deps, "r6", await add_ticket(deps))
    async with runner_sink(deps, "r6") as sink:
        await emit(sink, *(f"e{n}" for n in range(1, 5)))
        await collect_events(deps.redis, deps.sessions, "r6")
        await emit(sink, "e5")
    await finish(deps, "r6")  # lost: no result

    received = Received()
    await received.read(event_stream(deps, "r6", 3, block_ms=50))
    messages = received.messages
    assert [m.get("id") for m in messages] == ["4", "5", None]
    assert messages[-1]["data"] == '{"run_id":"r6","state":"lost","status":null}'


async def test_stream_keeps_alive_and_stops_when_the_client_leaves(deps: Deps) -> None:
    await add_run(deps, "r7", await add_ticket(deps))
    gone = asyncio.Event()

    async def disconnected() -> bool:
        return gone.is_set()

    received = Received()
    stream = event_stream(
        deps, "r7", 0, disconnected=disconnected, block_ms=50, keepalive_seconds=0.2
    )
    task = asyncio.create_task(received.read(stream))
    await received.wait_for(1)
    assert received.messages[0] == {"comment": "keepalive"}
    gone.set()
    async with asyncio.timeout(2):
        await task  # ended without an `end`: the run is still going, the client left
    assert all(m == {"comment": "keepalive"} for m in received.messages)


async def test_event_stream_over_http(client: httpx.AsyncClient, deps: Deps) -> None:
    await add_run(deps, "r8", await add_ticket(deps))
    async with runner_sink(deps, "r8") as sink:
        await emit(sink, "a", "b")
        await collect_events(deps.redis, deps.sessions, "r8")
        await emit(sink, "c")  # a straggler the control plane has not persisted yet
    await finish(deps, "r8", a_result("r8"))

    response = await client.get(f"{API}/runs/r8/events", headers=SSE)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    messages = parse_sse(response.text)
    assert [(m.get("id"), m["event"]) for m in messages] == [
        ("1", "text"),
        ("2", "text"),
        ("3", "text"),
        (None, "end"),
    ]
    assert AgentEvent.model_validate_json(messages[2]["data"]).text == "c"

    # An EventSource reconnecting sends Last-Event-ID, which wins over ?after=.
    resumed = await client.get(
        f"{API}/runs/r8/events", params={"after": 0}, headers={**SSE, "Last-Event-ID": "2"}
    )
    assert [m.get("id") for m in parse_sse(resumed.text)] == ["3", None]
    after = await client.get(f"{API}/runs/r8/events", params={"after": 1}, headers=SSE)
    assert [m.get("id") for m in parse_sse(after.text)] == ["2", "3", None]


async def test_event_stream_is_live_over_a_real_connection(deps: Deps) -> None:
    await add_run(deps, "r9", await add_ticket(deps))
    async with (
        runner_sink(deps, "r9") as sink,
        served(deps) as url,
        httpx.AsyncClient(base_url=url, timeout=5) as http,
    ):
        await emit(sink, "before")
        await collect_events(deps.redis, deps.sessions, "r9")
        async with http.stream("GET", f"{API}/runs/r9/events", headers=SSE) as response:
            assert response.status_code == 200
            lines = response.aiter_lines()

            async def next_message() -> dict[str, str]:
                block = []
                async with asyncio.timeout(5):
                    while (line := await anext(lines)) != "":
                        block.append(line)
                return parse_sse("\n".join(block))[0]

            assert (await next_message())["id"] == "1"  # persisted
            await emit(sink, "while watching")
            live = await next_message()  # arrives while the response is still open
            assert (live["id"], live["event"]) == ("2", "text")
            assert AgentEvent.model_validate_json(live["data"]).text == "while watching"
            await finish(deps, "r9", a_result("r9"))
            assert (await next_message())["event"] == "end"


async def test_stream_reports_a_redis_outage_after_the_persisted_events(deps: Deps) -> None:
    await add_run(deps, "r10", await add_ticket(deps))
    async with runner_sink(deps, "r10") as sink:
        await emit(sink, "kept")
    await collect_events(deps.redis, deps.sessions, "r10")
    received = Received()
    async with redis_down(deps) as broken:
        await received.read(event_stream(broken, "r10", 0, block_ms=50))
    assert [(m.get("id"), m["event"]) for m in received.messages] == [
        ("1", "text"),
        (None, "error"),
    ]
    assert received.messages[1]["data"] == '{"error":"stream interrupted; reconnect"}'
