"""Issue #17, item 1: the agent asks a person, the ticket waits, a writer's answer resumes
the work — end to end through signed webhooks, the recording fake GitHub API and real
`openase runner` processes running the `command` agent of tests/support/lifecycle.py, whose
`[ask]` marker makes it write a question to $OPENASE_QUESTION_FILE and stop."""

from __future__ import annotations

import html
import textwrap
from typing import TypeVar

import httpx
from sqlalchemy import select

from adapters.notify import webhook
from bot.config.control import ControlConfig, parse_control_config
from bot.config.states import QUESTION_LABEL, State
from bot.tables.workflow import Activity, TicketState
from tests.conftest import OpenWorld
from tests.support.git_repos import show
from tests.support.lifecycle import FULL_NAME, WRITER, World, repo_config
from tests.support.receivers import receivers
from tests.web.test_web_actions import press, signed_in

T = TypeVar("T")
QUESTION = "Which colour should the button be"
STATUS_MARKER = "<!-- openase:status -->"


async def _async(value: T) -> T:
    return value


async def _waiting(w: World, number: int) -> TicketState | None:
    row = await w.state(number)
    return row if row is not None and row.needs_input else None


async def _noted(w: World, kind: str, words: str) -> Activity | None:
    async with w.deps.sessions() as session:
        rows = (await session.scalars(select(Activity).where(Activity.kind == kind))).all()
    return next((row for row in rows if words in row.message), None)


def _question_comments(w: World, number: int) -> list[str]:
    return [body for body in w.bot_comments(number) if "The agent has a question" in body]


async def test_the_agent_asks_a_reader_is_ignored_and_a_writers_reply_resumes_it(
    open_world: OpenWorld,
) -> None:
    async with open_world() as w:
        w.add_issue(7, "Colour the button", "[ask] Colour the button as we agreed.")
        await w.label(7, "openase")

        row = await w.until(lambda: _waiting(w, 7), what="the agent's question")
        assert row.state == State.IN_PROGRESS
        assert row.run_id is None
        assert (row.question or "").startswith(QUESTION)
        (first,) = await w.runs(7)
        assert first.status == "needs_input"
        assert first.result is not None
        assert first.result["question"].startswith(QUESTION)
        # The work so far is committed and pushed while it waits.
        assert show(w.remote, "openase/7", "DRAFT") == "half done"
        await w.until(lambda: _async(QUESTION_LABEL in w.labels(7)), what="the needs-input label")
        asked = await w.until(lambda: _async(_question_comments(w, 7)), what="the question")
        assert len(asked) == 1
        # Quoted, with its mention defused (the agent's text pings no one), and how to answer.
        assert "> Which colour should the button be, @\u200bbob: red or blue?" in asked[0]
        assert "/answer" in asked[0]
        assert "write access to octo/hello" in asked[0]
        status = await w.until(
            lambda: _async(
                next(
                    (c for c in w.bot_comments(7) if STATUS_MARKER in c and QUESTION in c),
                    None,
                )
            ),
            what="the status comment showing the question",
        )
        assert "waits for the answer" in status
        # GitHub's check for the pushed commit says a person must act, not that it failed.
        checks = w.check_runs(str(first.result["head_sha"]))
        assert checks["openase"]["conclusion"] == "action_required"

        # Someone without write access comments: not an answer.
        await w.comment(7, "Green, obviously.", by="mallory")
        await w.until(lambda: _noted(w, "answer", "@mallory is not taken"), what="the refusal")
        still = await w.state(7)
        assert still is not None
        assert still.needs_input
        assert len(await w.runs(7)) == 1

        # The writer's plain comment is the answer; the same ticket goes on to review.
        await w.comment(7, "Blue, please: it is the brand colour.", by=WRITER)
        row = await w.reach(7, State.IN_REVIEW, within=90)
        assert not row.needs_input
        assert row.question is None
        first, second = await w.runs(7)
        assert (first.status, second.status) == ("needs_input", "succeeded")
        answered = show(w.remote, str(row.head_sha), "ANSWER")
        # The prompt carried the question and the answer, fenced, the answer by its author.
        assert QUESTION in answered
        assert "Blue, please: it is the brand colour." in answered
        assert f"answer by @{WRITER}" in answered
        assert "Green, obviously." not in answered
        await w.until(lambda: _async(QUESTION_LABEL not in w.labels(7)), what="the label gone")
        assert len(_question_comments(w, 7)) == 1
        assert await _noted(w, "answer", f"@{WRITER} answered the agent's question")


async def test_a_question_survives_a_restart_is_reminded_and_answered_by_command(
    open_world: OpenWorld,
) -> None:
    config = repo_config().replace(
        "limits: {backoff_seconds: 1", "limits: {remind_after_seconds: 2, backoff_seconds: 1"
    )
    async with open_world(config=config) as w:
        w.add_issue(8, "Colour the link", "[ask] Colour the link.")
        await w.label(8, "openase")
        await w.until(lambda: _waiting(w, 8), what="the agent's question")

        # The control plane goes away and comes back: the question is state, not memory.
        await w.stop_worker()
        await w.start_worker()
        reminder = await w.until(
            lambda: _async(
                next((c for c in w.bot_comments(8) if "Still waiting for an answer" in c), None)
            ),
            what="the reminder",
            within=30,
        )
        assert QUESTION in reminder
        row = await w.state(8)
        assert row is not None
        assert row.needs_input
        assert row.reminded_at is not None

        # A command works too, and a second answer finds nothing left to answer.
        await w.comment(8, "/answer Red.", by=WRITER)
        row = await w.reach(8, State.IN_REVIEW, within=90)
        assert "Red." in show(w.remote, str(row.head_sha), "ANSWER")
        made = await w.comment(8, "/answer Blue after all.", by=WRITER)
        await w.until(
            lambda: _async(
                next(
                    (c for c in w.bot_comments(8) if "has no open question" in c),
                    None,
                )
            ),
            what="the reply that nothing waits for an answer",
        )
        assert "confused" in w.reactions_on(made)
        reminders = [c for c in w.bot_comments(8) if "Still waiting for an answer" in c]
        assert len(reminders) == 1


async def test_the_ticket_page_shows_the_question_and_its_answer_form_resumes_the_agent(
    open_world: OpenWorld, client: httpx.AsyncClient
) -> None:
    async with open_world() as w:
        w.add_issue(9, "Colour the header", "[ask] Colour the header.")
        await w.label(9, "openase")
        await w.until(lambda: _waiting(w, 9), what="the agent's question")
        ticket = await w.ticket_id(9)

        anonymous = (await client.get(f"/tickets/{ticket}")).text
        assert "The agent asked a question" in anonymous
        assert "Which colour should the button be, @bob: red or blue?" in html.unescape(anonymous)
        assert 'value="answer"' not in anonymous  # signed out: no forms
        async with signed_in(w, client, WRITER) as csrf:
            page = (await client.get(f"/tickets/{ticket}")).text
            assert 'id="answer"' in page
            empty = await press(client, csrf, ticket, "answer", page=page, answer="  ")
            assert empty.status_code == 400
            assert "answer: write the answer" in empty.text
            answered = await press(client, csrf, ticket, "answer", answer="Green.")
            assert answered.status_code == 303
            shown = (await client.get(answered.headers["location"])).text
            assert f"Answer by @{WRITER}: done." in shown
        row = await w.reach(9, State.IN_REVIEW, within=90)
        assert "Green." in show(w.remote, str(row.head_sha), "ANSWER")
        assert await _noted(w, "command", f"@{WRITER} pressed Answer on the web page")


async def test_a_question_is_notified_once_signed(open_world: OpenWorld) -> None:
    secret = "whsec-questions-not-real"
    async with receivers(hook=1) as got, open_world() as w:
        rules = textwrap.dedent(
            f"""\
            providers: {{x: {{cli: command, argv: [x]}}}}
            notifications:
              channels:
                audit: {{kind: webhook, url: "{got.url}/hook", secret: "${{SECRET}}"}}
              rules:
                - {{events: [needs_input], channels: [audit]}}
            """
        )
        parsed = parse_control_config(rules, file="control.yml", environ={"SECRET": secret})
        assert isinstance(parsed, ControlConfig), parsed
        w.engine.control = w.engine.control.model_copy(
            update={"notifications": parsed.notifications}
        )
        w.add_issue(10, "Colour the footer", "[ask] Colour the footer.")
        await w.label(10, "openase")
        sent = await w.until(
            lambda: _async(got.accepted("/hook") or None), what="the needs_input notification"
        )
        await w.until(lambda: _async(len(got.tried("/hook")) >= 2 or None), what="the retry")
        (notified,) = sent
        body = notified.json()
        assert body["event"] == "needs_input"
        assert body["reason"].startswith(f"The agent asks: {QUESTION}")
        assert body["ticket"]["key"] == f"{FULL_NAME}#10"
        assert webhook.verify(secret, notified.body, notified.headers["x-openase-signature-256"])
        assert len(got.tried("/hook")) == 2  # refused once, then sent once
