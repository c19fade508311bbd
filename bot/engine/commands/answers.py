"""Answers to the agent's open question (bot/engine/questions.py) from the thread:
`/answer TEXT`, or, while a question is open, the next plain comment by someone who may
answer (write access on GitHub, or what the control config allows a Linear or Jira user).
Anyone else's comment is not an answer: it is noted in the activity log and left alone,
so a passer-by cannot steer the agent."""

from __future__ import annotations

import structlog

from bot.engine.access import Level, decide
from bot.engine.commands.registry import Context, Outcome
from bot.engine.commands.run import Source, permissions_for, react
from bot.engine.context import BOT, Loaded
from bot.engine.decision import Decision, Reacting
from bot.engine.questions import give_answer

log = structlog.get_logger(__name__)

ANSWER = "answer"  # the command, and the name `commands:` in .github/openase.yml lists it by


async def answer(context: Context) -> Outcome:
    """`/answer TEXT`."""
    why = await give_answer(context.decision, context.actor, context.command.args, how="/answer")
    return Outcome(why is None, why)


async def answer_from_comment(r: Reacting, loaded: Loaded, source: Source) -> bool:
    """Take a comment without commands on a ticket whose agent waits for an answer as the
    answer, if its author may give one; whether it was."""
    row, repo = loaded.state, loaded.repo
    if row is None or not row.needs_input or repo is None or repo.installation_id is None:
        return False
    if source.author.kind == BOT or not source.body.strip():
        return False  # our own question, another bot's chatter
    config = (await r.engine.config_of(repo)).config
    decision = Decision(r.session, r.engine, loaded, config, r.followups)
    verdict = await decide(
        permissions_for(decision, source),
        command=ANSWER,
        needs=Level.WRITE,
        actor=source.author,
        access=config.commands.get(ANSWER) if config is not None else None,
        repo=repo.full_name,
    )
    if not verdict.allowed:
        decision.note(
            "answer",
            f"a comment by {source.author.mention} is not taken as the answer: {verdict.reason}",
        )
        return False
    why = await give_answer(decision, source.author, source.body, how="a comment")
    if why is not None:
        log.info("answer_not_taken", reason=why)
        return False
    await react(decision, source, "rocket")
    return True
