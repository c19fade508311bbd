"""Issue #16, actions on a ticket's page, end to end: the real app's form posts, the control
worker carrying each out as its slash command (tests/support/lifecycle.py's world: a real
worker and runner, the recording fake GitHub), the outcome on the page, the activity log
naming the person, and nothing done twice or done by someone who may not."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from bot.config.states import State
from bot.engine.jobs import resend_actions
from bot.tables.actions import ActionState, TicketAction
from bot.tables.workflow import Activity
from bot.web.live_events import ticket_changes
from bot.web.session import SESSION_COOKIE, encode, new_session
from bot.web.ticket_live import fingerprint
from tests.conftest import OpenWorld
from tests.support.lifecycle import WRITER, World


@asynccontextmanager
async def signed_in(
    w: World, client: httpx.AsyncClient, user: str, kind: str = "github"
) -> AsyncIterator[str]:
    """`client` with a session of `user` (a GitHub login, or the admin); its CSRF token."""
    session = new_session(user, kind)
    client.cookies.set(SESSION_COOKIE, encode(w.deps.settings, session), domain="openase.test")
    try:
        yield session.csrf
    finally:
        client.cookies.clear()


async def running(w: World, number: int, title: str) -> int:
    """A ticket whose (slow) agent is at work; its id."""
    w.add_issue(number, title, "[slow] add PASS")
    await w.label(number, "openase")
    await w.reach(number, State.IN_PROGRESS)
    return await w.ticket_id(number)


def nonce_for(page: str, action: str) -> str:
    """The one-time nonce of `action`'s form on a rendered page."""
    form = re.search(
        r'name="nonce" value="([^"]+)">\s*<input type="hidden" name="action" value="'
        + action
        + '"',
        page,
    )
    assert form, f"no {action} form on the page"
    return form.group(1)


async def press(
    client: httpx.AsyncClient,
    csrf: str,
    ticket: int,
    action: str,
    *,
    page: str = "",
    **fields: str,
) -> httpx.Response:
    """Press `action` as the page's form does: its nonce from `page` (fetched if not given)."""
    page = page or (await client.get(f"/tickets/{ticket}")).text
    data = {"csrf": csrf, "nonce": nonce_for(page, action), "action": action, **fields}
    return await client.post(f"/tickets/{ticket}/actions", data=data)


async def activity(w: World, ticket: int) -> list[str]:
    async with w.deps.sessions() as session:
        rows = await session.scalars(
            select(Activity.message).where(Activity.ticket_id == ticket).order_by(Activity.id)
        )
        return list(rows.all())


async def test_run_hold_and_approve_from_the_page_as_the_slash_commands_do(
    open_world: OpenWorld, client: httpx.AsyncClient
) -> None:
    async with open_world() as w:
        w.add_issue(1, "Add a PASS file", "Please add it.")
        await w.open_issue(1)
        ticket = await w.ticket_id(1)
        async with signed_in(w, client, WRITER) as csrf:
            page = (await client.get(f"/tickets/{ticket}")).text
            assert 'value="run"' in page
            assert 'value="approve"' not in page

            ran = await press(client, csrf, ticket, "run", page=page)
            assert ran.status_code == 303
            assert ran.headers["location"].startswith("/tickets/octo/hello/1?action=")
            shown = await client.get(ran.headers["location"])
            assert f"Run by @{WRITER}: done." in shown.text

            await w.reach(1, State.IN_REVIEW)
            held = await press(client, csrf, ticket, "hold")
            assert "Hold by @alice: done." in (await client.get(held.headers["location"])).text
            assert (await w.state(1)).held  # type: ignore[union-attr]
            approved = await press(client, csrf, ticket, "approve")
            assert (
                "Approve by @alice: done." in (await client.get(approved.headers["location"])).text
            )
            assert (await w.state(1)).approved  # type: ignore[union-attr]
        log = await activity(w, ticket)
        assert f"@{WRITER} pressed Run on the web page" in log
        assert f"@{WRITER} pressed Hold on the web page" in log
        assert any(f"/run by @{WRITER}" in line for line in log)
        assert "On hold." in (await client.get(f"/tickets/{ticket}")).text


async def test_a_reader_is_refused_and_nothing_changes(
    open_world: OpenWorld, client: httpx.AsyncClient
) -> None:
    async with open_world() as w:
        w.fake.permissions["mallory"] = "read"
        w.add_issue(2, "Not yours", "add PASS")
        await w.open_issue(2)
        ticket = await w.ticket_id(2)
        async with signed_in(w, client, "mallory") as csrf:
            refused = await press(client, csrf, ticket, "run", workflow="default")
            page = (await client.get(refused.headers["location"])).text
        assert "Run by @mallory: refused." in page
        assert "needs write access to octo/hello (you have read)" in page
        assert await w.state(2) is None
        assert await w.runs(2) == []
        log = await activity(w, ticket)
        assert any(line.startswith("@mallory pressed Run on the web page") for line in log)
        assert any("refused: `/run` needs write access" in line for line in log)
        assert w.bot_comments(2) == []  # the page answers; the issue hears nothing


async def test_the_admin_may_act_and_is_named_without_an_at(
    open_world: OpenWorld, client: httpx.AsyncClient
) -> None:
    async with open_world() as w:
        w.add_issue(3, "Admin's", "add PASS")
        await w.open_issue(3)
        ticket = await w.ticket_id(3)
        async with signed_in(w, client, "admin", "admin") as csrf:
            pinned = await press(client, csrf, ticket, "harness", harness="coder")
            page = (await client.get(pinned.headers["location"])).text
        assert "Pin harness by the admin: done." in page
        assert "The next runs use harness `coder@1`." in page
        assert "coder@1" in page  # the Pinned harness row
        log = await activity(w, ticket)
        assert "The admin pressed Pin harness on the web page: coder" in log
        assert not any("@admin" in line for line in log)


async def test_not_possible_in_this_state_says_why(
    open_world: OpenWorld, client: httpx.AsyncClient
) -> None:
    async with open_world() as w:
        w.add_issue(4, "Too early", "add PASS")
        await w.open_issue(4)
        ticket = await w.ticket_id(4)
        async with signed_in(w, client, WRITER) as csrf:
            page = (await client.get(f"/tickets/{ticket}")).text
            data = {"csrf": csrf, "nonce": nonce_for(page, "run"), "action": "approve"}
            answer = await client.post(f"/tickets/{ticket}/actions", data=data)
            shown = (await client.get(answer.headers["location"])).text
        assert "Approve by @alice: not done." in shown
        assert "There is nothing to approve: the ticket is `not started`." in shown


async def test_a_form_sent_twice_acts_once(
    open_world: OpenWorld, client: httpx.AsyncClient
) -> None:
    async with open_world() as w:
        ticket = await running(w, 5, "Once")
        async with signed_in(w, client, WRITER) as csrf:
            page = (await client.get(f"/tickets/{ticket}")).text
            first = await press(client, csrf, ticket, "cancel", page=page)
            second = await press(client, csrf, ticket, "cancel", page=page)
            assert first.headers["location"] == second.headers["location"]
            data = {"csrf": csrf, "nonce": nonce_for(page, "cancel"), "action": "hold"}
            reused = await client.post(f"/tickets/{ticket}/actions", data=data)
            assert reused.status_code == 400
            assert "this form was already used" in reused.text
        await w.reach(5, State.CANCELED)
        log = await activity(w, ticket)
        assert sum("pressed Cancel" in line for line in log) == 1


async def test_bad_forms_get_a_precise_400_and_store_nothing(
    open_world: OpenWorld, client: httpx.AsyncClient
) -> None:
    async with open_world() as w:
        w.add_issue(6, "Bad input", "add PASS")
        await w.open_issue(6)
        ticket = await w.ticket_id(6)
        signed_out = await client.post(f"/tickets/{ticket}/actions", data={"action": "run"})
        assert signed_out.status_code == 303
        assert signed_out.headers["location"] == f"/login?next=%2Ftickets%2F{ticket}"
        async with signed_in(w, client, WRITER) as csrf:
            page = (await client.get(f"/tickets/{ticket}")).text
            forged = await client.post(
                f"/tickets/{ticket}/actions",
                data={"csrf": "forged-token-value", "nonce": "n" * 20, "action": "run"},
            )
            assert forged.status_code == 403
            cases = {
                "action must be one of": {"action": "merge"},
                "harness: ": {"action": "harness", "harness": "not a harness!"},
                "question: write the question": {"action": "ask", "question": "  "},
                "guidance: at most 4000 characters": {"action": "retry", "guidance": "x" * 4001},
                "workflow: a workflow": {"action": "run", "workflow": "../../etc"},
                "nonce: the form": {"action": "run", "nonce": "short"},
            }
            for expected, fields in cases.items():
                data = {"csrf": csrf, "nonce": nonce_for(page, "run"), **fields}
                answer = await client.post(f"/tickets/{ticket}/actions", data=data)
                assert answer.status_code == 400, expected
                assert expected in answer.text, answer.text
            missing = await client.post(
                "/tickets/999999/actions",
                data={"csrf": csrf, "nonce": "m" * 20, "action": "hold"},
            )
            assert missing.status_code == 404
        async with w.deps.sessions() as session:
            assert (await session.scalars(select(TicketAction))).all() == []


async def test_an_action_whose_job_was_lost_is_sent_again_and_a_stale_one_dropped(
    open_world: OpenWorld, client: httpx.AsyncClient
) -> None:
    async with open_world() as w:
        ticket = await running(w, 7, "Lost job")
        old = datetime.now(UTC) - timedelta(seconds=30)
        async with w.deps.sessions() as session, session.begin():
            # As the web process leaves them when Redis was away: stored, never enqueued.
            lost = TicketAction(
                ticket_id=ticket,
                request="lost-job-" + "x" * 16,
                command="hold",
                args="",
                actor=WRITER,
                actor_kind="github",
                created_at=old,
            )
            stale = TicketAction(
                ticket_id=ticket,
                request="stale-job-" + "x" * 16,
                command="cancel",
                args="",
                actor=WRITER,
                actor_kind="github",
                created_at=old - timedelta(minutes=15),
            )
            session.add_all([lost, stale])
        assert await resend_actions(w.engine) == 1

        async def carried_out() -> bool:
            async with w.deps.sessions() as session:
                row = await session.get(TicketAction, lost.id)
                return row is not None and row.state == ActionState.DONE

        await w.until(carried_out, what="the lost action carried out")
        row = await w.state(7)
        assert row is not None
        assert row.held
        assert row.state == State.IN_PROGRESS
        async with w.deps.sessions() as session:
            dropped = await session.get(TicketAction, stale.id)
        assert dropped is not None
        assert dropped.state == ActionState.EXPIRED
        page = (await client.get(f"/tickets/{ticket}?action={stale.id}")).text
        assert "Cancel by @alice: dropped." in page
        assert "press it again if it is still wanted" in page


async def test_cancel_on_the_run_page_and_ask_answers_in_the_thread(
    open_world: OpenWorld, client: httpx.AsyncClient
) -> None:
    async with open_world() as w:
        ticket = await running(w, 8, "Stop and ask")
        (run,) = await w.runs(8)
        async with signed_in(w, client, WRITER) as csrf:
            run_page = (await client.get(f"/runs/{run.id}")).text
            assert "Cancel this run" in run_page
            data = {
                "csrf": csrf,
                "nonce": nonce_for(run_page, "cancel"),
                "action": "cancel",
                "next": f"/runs/{run.id}",
            }
            canceled = await client.post(f"/tickets/{ticket}/actions", data=data)
            assert canceled.headers["location"].startswith(f"/runs/{run.id}?action=")
            assert (
                "Cancel by @alice: done." in (await client.get(canceled.headers["location"])).text
            )
            await w.reach(8, State.CANCELED)

            asked = await press(client, csrf, ticket, "ask", question="What does src/app.py print?")
            location = asked.headers["location"]
            assert location.startswith(f"/runs/t{ticket}-ask-")
            answer_run = location.split("?")[0].removeprefix("/runs/")
        answer = await w.until(
            lambda: _first(w.bot_comments(8), "> /ask What does src/app.py print?"),
            what="the answer in the thread",
        )
        assert f"@{WRITER} " in answer
        page = (await client.get(f"/runs/{answer_run}")).text
        assert "The agent&#39;s summary" in page or "The agent's summary" in page


async def _first(comments: list[str], text: str) -> str | None:
    return next((comment for comment in comments if text in comment), None)


async def test_the_ticket_page_follows_its_changes(
    open_world: OpenWorld, client: httpx.AsyncClient
) -> None:
    async with open_world() as w:
        w.add_issue(9, "Watched", "add PASS")
        await w.open_issue(9)
        ticket = await w.ticket_id(9)
        page = (await client.get(f"/tickets/{ticket}")).text
        # The page carries the fingerprint it was rendered with (the world's outbox may move
        # it on meanwhile: the stream then says so, which is the point).
        rendered = re.search(r'data-fingerprint="([^"]+)"', page)
        assert rendered is not None
        assert f'data-events="/tickets/{ticket}/events"' in page
        stream = ticket_changes(w.deps, ticket, poll_seconds=0.05)
        async with aclosing(stream):
            first = await anext(stream)
            assert first.split("\n")[1] == "event: changed"
            async with w.deps.sessions() as session:
                before = await fingerprint(session, ticket)
            await w.label(9, "openase")
            await w.reach(9, State.IN_REVIEW)
            changed = await asyncio.wait_for(anext(stream), 30)
            while f'"fingerprint":"{before}"' in changed:  # sent before the label's changes
                changed = await asyncio.wait_for(anext(stream), 30)
        assert "event: changed" in changed
        refreshed = (await client.get(f"/tickets/{ticket}")).text
        assert "In review" in refreshed
        assert f'data-fingerprint="{before}"' not in refreshed
        assert (await client.get("/tickets/abc/events")).status_code == 400
        assert (await client.get("/tickets/999999/events")).status_code == 404
