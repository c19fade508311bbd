"""The ticket board, a ticket's page and a run's page, and their live updates (SSE): real
rows in Postgres, the runner's real Redis stream, hostile text escaped, the reads policy.

httpx's ASGITransport returns a response only once the app has sent all of it, so streams
that never end (the board) are read from their generators and over a real connection."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from bot.deps import Deps
from bot.tables.mirror import PullRequest, Ticket
from bot.tables.workflow import Activity, Run, RunEvent, RunState
from bot.web.board import BoardFilters, Card, database_now
from bot.web.live_events import board_changes, run_output
from bot.web.ticket_pages import ACTIVITY_PAGE
from harness_store.db import make_engine, make_sessionmaker, transaction
from harness_store.store import pin_harness, publish_harness, publish_skill, record_run_versions
from tests.support.board import (
    HOSTILE,
    SKILL_MD,
    a_result,
    add_repo,
    add_run,
    add_ticket,
    hook,
    move,
)
from tests.support.browser import served
from tests.support.outages import redis_down
from tests.support.run_streams import T0, Received, emit, finish, parse_sse, runner_sink
from tests.support.signing_in import sign_in


def column_of(html: str, state: str) -> str:
    """The board column of `state`, as HTML."""
    found = re.search(
        rf'<section class="column" data-state="{state}".*?</section>', html, flags=re.S
    )
    assert found, f"no column {state}"
    return found.group(0)


def card_ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<li class="card" id="ticket-(\d+)"', html)]


# -- the board -------------------------------------------------------------------------------


async def test_the_board_groups_tickets_by_state(client: httpx.AsyncClient, deps: Deps) -> None:
    await add_repo(deps, 1, "acme/api")
    todo = await add_ticket(deps, "acme/api#1", repo_id=1, title="Add login")
    held = await add_ticket(deps, "acme/api#2", repo_id=1, state="in_progress", held=True)
    done = await add_ticket(deps, "acme/api#3", repo_id=1, state="done", attempt=3)
    stage = await add_ticket(deps, "ENG-4", source="linear", state="security_review")
    untracked = await add_ticket(deps, "acme/api#5", repo_id=1, state=None)

    page = await client.get("/tickets")
    assert page.status_code == 200
    html = page.text
    assert card_ids(column_of(html, "todo")) == [todo]
    assert card_ids(column_of(html, "in_progress")) == [held]
    assert card_ids(column_of(html, "done")) == [done]
    assert card_ids(column_of(html, "security_review")) == [stage]
    # An open issue the engine never took up is in the backlog.
    assert card_ids(column_of(html, "backlog")) == [untracked]
    for empty in ("in_review", "merging", "canceled", "failed"):
        assert card_ids(column_of(html, empty)) == []

    todo_card = column_of(html, "todo")
    assert 'href="/tickets/acme/api/1"' in todo_card  # by its key; /tickets/{todo} works too
    assert "acme/api#1" in todo_card
    assert "Add login" in todo_card
    assert '<span class="repo">acme/api</span>' in todo_card
    assert 'class="flag held"' not in todo_card  # a card says only what applies
    assert '<span class="flag held">held</span>' in column_of(html, "in_progress")
    assert '<span class="attempt">3</span>' in column_of(html, "done")
    assert '<span class="repo">linear</span>' in column_of(html, "security_review")
    assert '<h2 id="col-in_progress">In progress <span class="count muted">1</span></h2>' in html
    # The live stream picks up where this read left off; the script is a file (CSP).
    assert re.search(r'data-events="/tickets/events\?since=2\d{3}-[^"]+"', html)
    assert '<script src="/static/live.js" defer></script>' in html
    assert "<script>" not in html


async def test_cards_say_how_long_it_runs_its_pr_what_it_waits_on_and_why_it_failed(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    await add_repo(deps, 1, "acme/api")
    running = await add_ticket(deps, "acme/api#1", repo_id=1, state="in_progress")
    review = await add_ticket(
        deps,
        "acme/api#2",
        repo_id=1,
        state="in_review",
        pr_number=17,
        checks=[
            {"name": "openase/tests", "passed": True, "gate": "block"},
            {"name": "openase/lint <x>", "passed": False, "gate": "warn"},
        ],
    )
    waiting = await add_ticket(
        deps, "acme/api#3", repo_id=1, waiting="no runner can sandbox runs <here>"
    )
    failed = await add_ticket(
        deps, "acme/api#4", repo_id=1, state="failed", last_failure="tests failed\nmore"
    )
    blocked_id = await add_ticket(
        deps,
        "acme/api#6",
        repo_id=1,
        waiting="⏳ Waiting for acme/api#1, acme/web#9 to close first.",
    )
    closed = await add_ticket(deps, "acme/api#5", repo_id=1, state=None)
    async with transaction(deps.sessions) as session:
        await session.execute(update(Ticket).where(Ticket.id == closed).values(state="closed"))

    html = (await client.get("/tickets")).text

    card = html[html.index(f'id="ticket-{running}"') :]
    assert re.match(
        r'[^>]*>.*?<span class="since muted">running <span class="for">0 min</span>, since <time',
        card,
        re.S,
    )
    assert (
        '<a class="pr" href="https://github.example/acme/api/pull/17">PR #<span '
        'class="pr-number">17</span></a>'
    ) in html
    waits = html[html.index(f'id="ticket-{waiting}"') :]
    assert (
        '<span class="waiting">waiting: <span class="why">no runner can sandbox runs '
        '&lt;here&gt;</span><span class="links"> → <a href="/machines">machines</a></span></span>'
    ) in waits
    blocked = html[html.index(f'id="ticket-{blocked_id}"') :]
    assert (
        '<span class="links"> → <a href="/tickets/acme/api/1">acme/api#1</a>'
        ' → <a href="/tickets/acme/web/9">acme/web#9</a></span>'
    ) in blocked
    fails = html[html.index(f'id="ticket-{failed}"') :]
    assert '<span class="failure bad">failed: <span class="why">tests failed</span>' in fails
    checked = html[html.index(f'id="ticket-{review}"') :]
    assert (
        '<span class="checks">checks <span class="tally">1/2</span>:<span class="list"> '
        '<span class="ok">✓ tests</span> <span class="bad">✗ lint &lt;x&gt;</span></span></span>'
    ) in checked
    running_card = card[: card.index("</li>")]
    assert 'class="checks"' not in running_card  # no finished run yet: nothing to show
    assert closed not in card_ids(html)  # closed before anyone started it: not on the board
    assert review in card_ids(column_of(html, "in_review"))


async def test_the_board_filters_by_repo_and_source(client: httpx.AsyncClient, deps: Deps) -> None:
    await add_repo(deps, 1, "acme/api")
    await add_repo(deps, 2, "acme/web")
    api = await add_ticket(deps, "acme/api#1", repo_id=1)
    web_ticket = await add_ticket(deps, "acme/web#1", repo_id=2)
    linear = await add_ticket(deps, "ENG-1", source="linear", repo_id=1)

    by_repo = await client.get("/tickets", params={"repo": "ACME/api", "source": ""})
    assert sorted(card_ids(by_repo.text)) == sorted([api, linear])
    assert 'value="ACME/api"' in by_repo.text  # the form keeps what was asked
    both = await client.get("/tickets", params={"repo": "acme/api", "source": "github"})
    assert card_ids(both.text) == [api]
    assert '<option value="github" selected>' in both.text
    assert "repo=acme%2Fapi&amp;source=github&amp;since=" in both.text
    by_source = await client.get("/tickets?source=linear")
    assert card_ids(by_source.text) == [linear]
    none = await client.get("/tickets?repo=nobody/here")
    assert card_ids(none.text) == []
    assert "No tickets match these filters" in none.text
    assert web_ticket in card_ids((await client.get("/tickets")).text)

    for bad in ("/tickets?repo=not-a-repo", "/tickets?source=email", "/tickets/events?source=x"):
        refused = await client.get(bad)
        assert refused.status_code == 400, bad
    assert (await client.get("/tickets/events?since=yesterday")).status_code == 400
    resumed = await client.get("/tickets/events", headers={"Last-Event-ID": "2026-03-01T09:00"})
    assert resumed.status_code == 400  # no time zone


async def test_hostile_ticket_text_is_escaped(client: httpx.AsyncClient, deps: Deps) -> None:
    ticket = await add_ticket(
        deps,
        "acme/api#1",
        title=HOSTILE,
        html_url="javascript:alert(1)",
        state="todo",
        waiting=HOSTILE,
        last_failure=HOSTILE,
    )
    async with transaction(deps.sessions) as session:
        session.add(Activity(ticket_id=ticket, kind="command", message=HOSTILE))
    for path in ("/tickets", f"/tickets/{ticket}"):
        html = (await client.get(path)).text
        assert HOSTILE not in html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
        assert "javascript:" not in html  # not a link at all


# -- a ticket's page -------------------------------------------------------------------------


async def test_the_ticket_page_shows_state_pr_checks_runs_activity_and_pin(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    await add_repo(deps, 1, "acme/api")
    ticket = await add_ticket(
        deps,
        "acme/api#7",
        repo_id=1,
        title="Add login",
        html_url="https://github.example/acme/api/issues/7",
        state="in_review",
        attempt=2,
        cost_usd=1.25,
        pr_number=12,
        held=True,
        waiting="no runner is registered",
    )
    async with transaction(deps.sessions) as session:
        session.add(
            PullRequest(id=900, repository_id=1, number=12, title="Login form", state="open")
        )
        await publish_harness(session, "coder", "Be careful.", author="ann")
        await publish_harness(session, "coder", "Be very careful.", author="ann")
        await pin_harness(session, ticket, "coder", 1)
    await add_run(deps, "r-old", ticket, state=RunState.FINISHED, result=a_result("r-old"))
    checked = a_result("r-new", hook("tests", 1, "1 failed"), hook("lint", 0, on_failure="warn"))
    await add_run(deps, "r-new", ticket, state=RunState.FINISHED, result=checked)
    async with transaction(deps.sessions) as session:
        await session.execute(
            update(Run).where(Run.id == "r-new").values(queued_at=T0 + timedelta(hours=1))
        )
        session.add_all(
            [
                Activity(ticket_id=ticket, kind="state", message="todo -> in_progress", at=T0),
                Activity(
                    ticket_id=ticket,
                    kind="run",
                    run_id="r-new",
                    message="run started on m1",
                    at=T0 + timedelta(minutes=1),
                ),
            ]
        )

    page = await client.get(f"/tickets/{ticket}")
    assert page.status_code == 200
    html = page.text
    assert '<h1><span class="muted">acme/api#7</span> Add login</h1>' in html
    assert '<a href="https://github.example/acme/api/issues/7">' in html
    assert "<strong>In review</strong>" in html
    assert "<td>$1.25</td>" in html
    assert "<strong>On hold.</strong>" in html
    assert "Waiting: no runner is registered" in html
    assert '<a href="https://github.example/acme/api/pull/12">#12</a>' in html
    assert "Login form" in html
    assert '<a href="/harnesses/coder/versions/1">coder@1</a>' in html

    checks = html[html.index('id="checks"') : html.index('id="runs"')]
    assert 'href="/runs/r-new"' in checks  # the newest run with a result
    assert re.search(r"openase/tests</code></td>\s*<td><span class=\"bad\">failed", checks)
    assert re.search(r"openase/lint</code></td>\s*<td><span class=\"ok\">passed", checks)
    assert "blocking" in checks
    assert "warn only" in checks

    runs = html[html.index('id="runs"') : html.index('id="activity"')]
    assert runs.index('href="/runs/r-new"') < runs.index('href="/runs/r-old"')
    activity = html[html.index('id="activity"') :]
    assert activity.index("todo -&gt; in_progress") < activity.index("run started on m1")
    assert '<a href="/runs/r-new">run r-new</a>' in activity
    assert '<time datetime="2026-03-01T09:00:00+00:00">2026-03-01 09:00:00 UTC</time>' in activity


async def test_the_activity_log_is_paged(client: httpx.AsyncClient, deps: Deps) -> None:
    await add_repo(deps, 1, "acme/api")
    ticket = await add_ticket(deps, "acme/api#1", repo_id=1)
    async with transaction(deps.sessions) as session:
        rows = [
            Activity(ticket_id=ticket, kind="effect", message=f"step {n:03}", at=T0)
            for n in range(ACTIVITY_PAGE + 5)
        ]
        session.add_all(rows)
        await session.flush()
        last_on_first_page = rows[ACTIVITY_PAGE - 1].id

    first = (await client.get(f"/tickets/{ticket}")).text
    assert "step 000" in first
    assert f"step {ACTIVITY_PAGE - 1:03}" in first
    assert f"step {ACTIVITY_PAGE:03}" not in first
    more = f"/tickets/acme/api/1?after={last_on_first_page}#activity"
    assert f'<a href="{more}">More activity</a>' in first
    rest = (await client.get(more.split("#")[0])).text
    assert re.findall(r"step \d+", rest) == [
        f"step {n:03}" for n in range(ACTIVITY_PAGE, ACTIVITY_PAGE + 5)
    ]
    assert "More activity" not in rest
    assert "From the beginning" in rest


async def test_unknown_ids_are_404_and_bad_ids_400(client: httpx.AsyncClient, deps: Deps) -> None:
    quiet = await add_ticket(deps, "acme/api#1", state=None)
    page = await client.get(f"/tickets/{quiet}")
    assert "not in a workflow" in page.text
    assert "No runs yet." in page.text
    for path, status in [
        (f"/tickets/{quiet + 1}", 404),
        ("/tickets/abc", 400),
        ("/tickets/0", 400),
        ("/tickets/99999999999999999999", 400),
        (f"/tickets/{quiet}?after=x", 400),
        ("/runs/nope", 404),
        ("/runs/bad%20id", 400),
        ("/runs/nope/events", 404),
        ("/runs/bad%20id/events", 400),
        ("/runs/nope/events?after=-1", 400),
    ]:
        response = await client.get(path)
        assert response.status_code == status, path
    assert "There is no ticket" in (await client.get(f"/tickets/{quiet + 1}")).text


# -- a run's page -----------------------------------------------------------------------------


async def test_the_run_page_shows_versions_hooks_and_output(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    ticket = await add_ticket(deps, "acme/api#3", title="Fix the build", state="in_progress")
    result = a_result("r1", hook("tests", 1, f"FAILED {HOSTILE}"), hook("lint", 0))
    await add_run(deps, "r1", ticket, state=RunState.FINISHED, result=result)
    async with transaction(deps.sessions) as session:
        harness = await publish_harness(session, "coder", "v1", author="ann")
        await publish_harness(session, "coder", "v2", author="ann")  # current, but not used
        skill = await publish_skill(session, "lint", {"SKILL.md": SKILL_MD}, author="ann")
        await record_run_versions(
            session, "r1", harness_version_id=harness.id, skill_version_ids=[skill.id]
        )
        events: list[tuple[str, dict[str, Any]]] = [
            ("phase", {"text": "agent"}),
            ("text", {"text": f"I will fix it {HOSTILE}"}),
            ("heartbeat", {}),
            ("tool_call", {"tool": "Bash", "input": {"command": "make"}}),
            ("tool_result", {"text": "make: ok", "is_error": False}),
            ("usage", {"usage": {"input_tokens": 10, "output_tokens": 5}, "cost_usd": 0.5}),
        ]
        session.add_all(
            RunEvent(run_id="r1", seq=seq, kind=kind, event={"kind": kind, **event}, at=T0)
            for seq, (kind, event) in enumerate(events, start=1)
        )

    page = await client.get("/runs/r1")
    assert page.status_code == 200
    html = page.text
    assert '<a href="/tickets/acme/api/3">← acme/api#3</a>' in html
    assert "finished (gates_failed)" in html
    assert "<td>m1</td>" in html
    assert "<td>$0.50</td>" in html
    assert '<a href="/harnesses/coder/versions/1">coder@1</a>' in html
    assert '<a href="/skills/lint/versions/1">lint@1</a>' in html
    assert "a blocking hook failed" in html

    hooks = html[html.index('id="hooks"') : html.index('id="output-heading"')]
    assert re.search(
        r"<code>tests</code></td>\s*<td>on_complete</td>\s*<td><span class=\"bad\">failed", hooks
    )
    assert "<td>1</td>" in hooks  # the exit code
    assert "<td>2.5 s</td>" in hooks
    assert "<pre>FAILED &lt;script&gt;" in hooks
    assert re.search(r"<details open><summary>Output of <code>tests</code>", hooks)
    assert HOSTILE not in html

    # Folded by phase like a CI log, each line with its time (T0 is 09:00:00 UTC).
    output = html[html.index('id="output"') :]
    fold = output[output.index("<details") : output.index("</details>")]
    assert '<summary><span class="ts">09:00:00</span> <strong>agent</strong>' in fold
    lines = fold[fold.index("<pre>") + 5 : fold.index("</pre>")].strip().splitlines()
    stamp = '<span class="ts">09:00:00</span> '
    assert lines == [
        stamp + "text: I will fix it &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;",
        stamp + "tool_call: Bash({&#34;command&#34;: &#34;make&#34;})",
        stamp + "tool_result: make: ok",
        stamp + "usage: 15 tokens, $0.5000",
    ]
    assert re.search(r'<th scope="row">Duration</th><td>(\d+ min )?\d+ s</td>', html)
    assert "data-live-run" not in html  # the run is over: nothing to follow
    assert "live.js" not in html


async def test_a_running_run_is_followed_from_its_last_event(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    ticket = await add_ticket(deps, "acme/api#3")
    spec = {"harness": {"name": "coder", "version": 4}, "skills": [{"name": "lint", "version": 2}]}
    await add_run(deps, "r2", ticket, spec=spec)
    async with transaction(deps.sessions) as session:
        session.add(RunEvent(run_id="r2", seq=7, kind="heartbeat", event={}, at=T0))
    html = (await client.get("/runs/r2")).text
    assert 'data-live-run data-events="/runs/r2/events?after=7"' in html
    assert '<script src="/static/live.js" defer></script>' in html
    # No versions recorded (an older run): the spec still names them.
    assert '<a href="/harnesses/coder/versions/4">coder@4</a>' in html
    assert '<a href="/skills/lint/versions/2">lint@2</a>' in html
    assert "No hook has reported yet." in html


# -- who may read ------------------------------------------------------------------------------


async def test_reads_behind_the_login_stay_there(web: httpx.AsyncClient, deps: Deps) -> None:
    ticket = await add_ticket(deps, "acme/api#1", title="Secret plans")
    await add_run(deps, "r3", ticket, state=RunState.LOST)
    for path in ("/tickets", f"/tickets/{ticket}", "/runs/r3"):
        refused = await web.get(path)
        assert refused.status_code == 303, path
        assert refused.headers["location"].startswith("/login?next=")
        assert "Secret plans" not in refused.text
    for path in ("/tickets/events", "/runs/r3/events"):
        assert (await web.get(path)).status_code == 401, path
    await sign_in(web)
    assert "Secret plans" in (await web.get("/tickets")).text
    assert "Secret plans" in (await web.get(f"/tickets/{ticket}")).text
    assert (await web.get("/runs/r3")).status_code == 200
    # The run is over, so its stream ends and ASGITransport can hand the whole of it back.
    stream = await web.get("/runs/r3/events", headers={"Accept": "text/event-stream"})
    assert stream.status_code == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert parse_sse(stream.text) == [{"event": "end", "data": '{"state":"lost","status":null}'}]


# -- live updates ----------------------------------------------------------------------------


def tickets_in(messages: list[dict[str, str]]) -> list[tuple[int, str]]:
    found = []
    for message in messages:
        if message.get("event") == "ticket":
            card = json.loads(message["data"])
            found.append((card["id"], card["state"]))
    return found


async def test_the_board_stream_sends_each_changed_ticket_once(deps: Deps) -> None:
    await add_repo(deps, 1, "acme/api")
    await add_repo(deps, 2, "acme/web")
    mine = await add_ticket(deps, "acme/api#1", repo_id=1, title=HOSTILE)
    other = await add_ticket(deps, "acme/web#1", repo_id=2)
    async with deps.sessions() as session:
        since = await database_now(session)
    received = Received()
    stream = board_changes(deps, BoardFilters(repo="acme/api"), since, poll_seconds=0.05)
    task = asyncio.create_task(received.read(stream))
    try:
        # Changes just before `since` are sent once more (a transaction's clock is when it
        # began), and never again while unchanged.
        await received.wait_for(1)
        await asyncio.sleep(0.3)
        assert tickets_in(received.messages) == [(mine, "todo")]
        await move(deps, mine, state="in_progress", attempt=1)
        await move(deps, other, state="done")
        await received.wait_for(2)
        await asyncio.sleep(0.3)
    finally:
        task.cancel()
    assert tickets_in(received.messages) == [(mine, "todo"), (mine, "in_progress")]
    card = json.loads(received.messages[-1]["data"])
    assert datetime.fromisoformat(card.pop("since")) > since  # when it entered its state
    assert card == {
        "id": mine,
        "key": "acme/api#1",
        "title": HOSTILE,  # JSON for live.js, which sets it as text
        "repo": "acme/api",
        "source": "github",
        "state": "in_progress",
        "attempt": 1,
        "held": False,
        "needs_input": False,
        "waiting": None,
        "failure": None,
        "pr_number": None,
        "pr_url": None,
        "checks": [],
        "waiting_links": [],
        "url": "/tickets/acme/api/1",
    }
    assert datetime.fromisoformat(received.messages[-1]["id"]) > since


async def test_the_board_stream_is_live_over_a_real_connection(deps: Deps) -> None:
    ticket = await add_ticket(deps, "acme/api#1")
    async with deps.sessions() as session:
        since = await database_now(session)
    async with served(deps) as url, httpx.AsyncClient(base_url=url, timeout=5) as http:
        path = "/tickets/events"
        async with http.stream("GET", path, params={"since": since.isoformat()}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.aiter_lines()

            async def next_card() -> dict[str, Any]:
                block = []
                while (line := await anext(lines)) != "":
                    block.append(line)
                [message] = parse_sse("\n".join(block))
                assert message["event"] == "ticket"
                card: dict[str, Any] = json.loads(message["data"])
                return card

            async with asyncio.timeout(5):
                # Created just before `since`: sent once more, as the page may have missed it.
                assert (await next_card())["state"] == "todo"
                await move(deps, ticket, state="in_review", held=True)
                card = await next_card()  # arrives while the response is still open
    assert (card["id"], card["state"], card["held"]) == (ticket, "in_review", True)


async def test_the_run_stream_sends_persisted_then_live_lines(deps: Deps) -> None:
    ticket = await add_ticket(deps, "acme/api#1")
    await add_run(deps, "r4", ticket)
    received = Received()
    async with runner_sink(deps, "r4") as sink:
        await emit(sink, "already shown")
        async with transaction(deps.sessions) as session:
            session.add(RunEvent(run_id="r4", seq=1, kind="text", event={"kind": "text"}, at=T0))
        task = asyncio.create_task(received.read(run_output(deps, "r4", 1, block_ms=50)))
        await asyncio.sleep(0.2)
        assert received.messages == []  # seq 1 was on the page already
        await emit(sink, f"live {HOSTILE}")
        await received.wait_for(1)
    await finish(deps, "r4", a_result("r4"))
    async with asyncio.timeout(5):
        await task
    [live, end] = received.messages
    assert (live["id"], live["event"]) == ("2", "output")
    data = json.loads(live["data"])
    assert re.fullmatch(r"\d\d:\d\d:\d\d", data.pop("at"))  # when the runner emitted it
    assert data == {"seq": 2, "kind": "text", "line": f"text: live {HOSTILE}"}
    assert end == {"event": "end", "data": '{"state":"finished","status":"gates_failed"}'}


async def test_the_run_stream_says_when_redis_is_lost(deps: Deps) -> None:
    await add_run(deps, "r5", await add_ticket(deps, "acme/api#1"))
    async with transaction(deps.sessions) as session:
        session.add(RunEvent(run_id="r5", seq=1, kind="log", event={"text": "kept"}, at=T0))
    received = Received()
    async with redis_down(deps) as broken:
        await received.read(run_output(broken, "r5", 0, block_ms=50))
    [kept, interrupted] = received.messages
    assert json.loads(kept["data"])["line"] == "log: kept"
    assert interrupted["event"] == "interrupted"  # not "error": EventSource's own event name


async def test_a_database_outage_is_a_503_page(
    deps: Deps, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = make_engine("postgresql://openase@127.0.0.1:1/openase")
    monkeypatch.setattr(deps, "sessions", make_sessionmaker(nowhere))
    try:
        for path in ("/tickets", "/tickets/1", "/runs/r1"):
            answer = await client.get(path)
            assert answer.status_code == 503, path
            assert "The database is unavailable" in answer.text
    finally:
        await nowhere.dispose()


def test_a_card_says_how_long_it_has_run() -> None:
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    card = Card(1, "acme/api#1", "t", "acme/api", "github", "in_progress", 1, False, False)
    assert card.running_for(now) == ""
    started = replace(card, since=(now - timedelta(hours=2, minutes=5, seconds=59)).isoformat())
    assert started.running_for(now) == "2 h 5 min"
    assert replace(card, since=now.isoformat()).running_for(now) == "0 min"
