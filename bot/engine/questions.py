"""An agent's question to a person and its answer (issue #17): the engine's side of the
built-in `ask-a-human` skill.

A run that ends `needs_input` leaves its ticket in_progress with no run and the question
kept, flagged `needs_input` (out of the concurrency count: a ticket waiting for a person
holds no slot) and labelled `openase/needs-input`; the question is posted as a comment
saying how to answer, the status comment shows it, and the `needs_input` notification
goes out. `Decision.transition` keeps flag, label and question together: any move out of
in_progress drops all three.

An answer (the next comment by someone with write access, `/answer TEXT`, or the web
page's Answer) sends the ticket back to its workflow's pickup state with the question and
the answer in the next prompt; that run resumes the agent's own session (spec.py resumes
whenever the prompt carries feedback). A question no one answers is reminded once after
the workflow's `limits.remind_after_seconds`.

All of it is state in `ticket_states`, so it survives restarts; every step is a decision
in one transaction (a redelivered comment answers once).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import select

from adapters.errors import AdapterError
from bot.config.states import State
from bot.config.workflow import Workflow
from bot.engine.access import Actor
from bot.engine.context import Engine, Followups, load
from bot.engine.decision import Decision
from bot.engine.status_comment import quoted
from bot.engine.tracker_tickets import is_tracker
from bot.engine.untrusted import Untrusted, untrusted
from bot.tables.workflow import Run, TicketState
from harness_store.db import reading
from runner.contract import RunResult

log = structlog.get_logger(__name__)

ANSWER_LIMIT = 20_000  # characters of an answer in the prompt
EXCERPT = 300  # characters of the question a notification or a reminder quotes


def excerpt(text: str, limit: int = EXCERPT) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


async def asked(decision: Decision, workflow: Workflow, run: Run, result: RunResult) -> None:
    """The run stopped to ask: keep the ticket waiting for the answer and say so."""
    row, ticket = decision.row, decision.ticket
    assert row is not None
    question = (result.question or "").strip() or "(the agent left an empty question)"
    await decision.transition(
        State.IN_PROGRESS,
        reason=f"the agent asked a question in run {run.id}; waiting for an answer",
        run_id=None,
        needs_input=True,
        question=question,
        question_run_id=run.id,
        asked_at=datetime.now(UTC),
        reminded_at=None,
        next_attempt_at=None,
        waiting=None,
        workflow=workflow.name,
    )
    decision.note("question", f"the agent asks: {excerpt(question)}", run_id=run.id)
    who = _who_may_answer(decision)
    await decision.comment(
        key=f"question:{ticket.id}:{run.id}",
        body=(
            f"❓ **The agent has a question** and waits for the answer before it goes on "
            f"([run `{run.id}`]({decision.engine.run_url(run.id)})):\n\n{quoted(question)}\n\n"
            f"**To answer**, reply with a comment: the next comment from {who} is taken as "
            "the answer (or write `/answer` and the answer). The same agent session then "
            "continues with it. Comments from others are not answers."
        ),
    )
    await decision.notify("needs_input", f"The agent asks: {excerpt(question)}")


async def give_answer(decision: Decision, actor: Actor, text: str, *, how: str) -> str | None:
    """`actor` answers the open question with `text` (`how`: "a comment", "/answer", "the web
    page"): the ticket goes back to its pickup state to resume the session. None when done,
    else why it could not be."""
    row, flow = decision.row, decision.flow
    if row is None or not row.needs_input:
        return "the agent has no open question on this ticket."
    if flow is None:
        return (
            "the ticket's workflow is not in the repository's `.github/openase.yml` any more; "
            "`/retry` or `/run` it instead."
        )
    if not text.strip():
        return "the answer is empty."
    question = row.question or ""
    feedback = "\n".join(
        [
            "## The answer to your question",
            "",
            "You stopped to ask a person a question (the first block below); the second is "
            "their answer. Go on with the work where you left off, using the answer for what "
            "you asked.",
            "",
            untrusted(
                [
                    Untrusted("your question", question, limit=ANSWER_LIMIT),
                    Untrusted(f"answer by {actor.mention}", text.strip(), limit=ANSWER_LIMIT),
                ]
            ),
        ]
    )
    decision.note(
        "answer",
        f"{actor.mention} answered the agent's question ({how}): {excerpt(text)}",
        run_id=row.question_run_id,
    )
    await decision.send_back(
        flow,
        reason=f"{actor.mention} answered the agent's question; resuming its session",
        feedback=feedback,
        last_failure=None,
    )
    return None


async def remind_waiting(engine: Engine) -> list[Followups]:
    """Remind once of each question unanswered for its workflow's `remind_after_seconds`:
    what follows each reminder sent (the caller carries it out)."""
    now = datetime.now(UTC)
    async with reading(engine.deps.sessions) as session:
        waiting = (
            await session.execute(
                select(TicketState.ticket_id, TicketState.asked_at).where(
                    TicketState.needs_input.is_(True),
                    TicketState.reminded_at.is_(None),
                    TicketState.asked_at < now - timedelta(seconds=1),
                )
            )
        ).all()
    sent: list[Followups] = []
    for ticket_id, asked_at in waiting:
        if asked_at is None:
            continue
        followups = Followups(decision=f"remind:{ticket_id}")
        async with engine.deps.sessions() as session, session.begin():
            loaded = await load(session, ticket_id)
            if loaded is None or loaded.state is None or loaded.repo is None:
                continue
            try:
                decision = await Decision.on(session, engine, loaded, followups)
            except AdapterError as error:  # the config unreadable now: the next tick retries
                log.warning("reminder_waits", ticket_id=ticket_id, error=type(error).__name__)
                continue
            if await _remind(decision, asked_at, now):
                sent.append(followups)
    return sent


async def _remind(decision: Decision, asked_at: datetime, now: datetime) -> bool:
    row, flow = decision.row, decision.flow
    if row is None or not row.needs_input or row.reminded_at is not None:
        return False  # answered or reminded meanwhile
    after = flow.limits.remind_after_seconds if flow is not None else None
    if after is None or asked_at + timedelta(seconds=after) > now:
        return False
    waited = _duration(now - asked_at)
    question = row.question or ""
    await decision.transition(
        row.state,
        reason=f"reminded: the question has waited {waited} for an answer",
        relabel=False,
        reminded_at=now,
    )
    await decision.comment(
        key=f"question-reminder:{decision.ticket.id}:{row.question_run_id}",
        body=(
            f"⏰ **Still waiting for an answer** ({waited} so far):\n\n{quoted(question)}\n\n"
            f"Reply with a comment (from {_who_may_answer(decision)}) or `/answer` and the "
            "answer; `/cancel` if the ticket should not go on."
        ),
    )
    await decision.notify("needs_input", f"Still waiting ({waited}): {excerpt(question)}")
    return True


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes // 60
    return f"{hours} h" if hours < 48 else f"{hours // 24} days"


def _who_may_answer(decision: Decision) -> str:
    repo = decision.loaded.repo
    if is_tracker(decision.ticket):
        return "someone allowed to use OpenASE's commands here"
    return f"someone with write access to {repo.full_name}" if repo else "a maintainer"
