"""Carrying out a comment's commands: each known one is checked against its author's
permission and run by its handler inside the ingest transaction, so a redelivered webhook
never runs it twice. Acknowledgements are outbox effects keyed by the comment: 👀 on
receipt, 🚀 when the action took effect, 👎 and one reply naming the permission when
refused, 😕 and a reply quoting the command when it could not be done. Unknown `/words`
are left alone: other bots share the thread."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from bot.config.repo import RepoConfig
from bot.effects.kinds import EffectKind
from bot.effects.outbox import add_effect
from bot.engine.access import Actor, GitHubPermissions, PermissionSource, decide
from bot.engine.commands.parse import ParsedCommand, parse_commands, quote
from bot.engine.commands.registry import Commands, Context, Outcome, Spec
from bot.engine.context import BOT, Loaded
from bot.engine.decision import Decision, Reacting
from bot.engine.tracker_tickets import (
    TrackerPermissions,
    access_hint,
    is_tracker,
    lane,
    tracker_comment,
    tracker_reaction,
)

log = structlog.get_logger(__name__)

REFUSED = "-1"  # the reaction to a command its author may not use (👎)


@dataclass(frozen=True)
class Source:
    """Where the commands were written: a comment (reactions go on it) or an issue body."""

    body: str
    author: Actor
    comment_id: int | None  # None: the issue's own body (or a Linear or Jira comment)
    key: str  # names the comment in effect keys: f"c{id}" or f"i{ticket}"
    # A Linear or Jira comment: its id, and whether config maps its author to a GitHub
    # login (whose permission then decides) or allows them every command.
    tracker_comment_id: str | None = None
    mapped: bool = True
    allow_all: bool = False


async def run_commands(r: Reacting, loaded: Loaded, source: Source, commands: Commands) -> int:
    """Carry out the comment's known commands; how many there were."""
    found = [parsed for parsed in parse_commands(source.body) if parsed.name in commands]
    if not found or loaded.repo is None or loaded.repo.installation_id is None:
        return 0
    config = (await r.engine.config_of(loaded.repo)).config
    decision = Decision(r.session, r.engine, loaded, config, r.followups)
    if source.author.kind == BOT:
        # Bots (ours included) are not answered at all, so two bots never talk in circles;
        # one listed under `commands.<name>.users` may use that command.
        found = [parsed for parsed in found if _listed(config, parsed.name, source.author)]
        if not found:
            return 0
    permissions = permissions_for(decision, source)
    await react(decision, source, "eyes")
    for parsed in found:
        spec = commands.get(parsed.name)
        assert spec is not None  # found holds known commands only
        with structlog.contextvars.bound_contextvars(command=parsed.name):
            hint = ""
            if is_tracker(loaded.ticket) and not (source.mapped or source.allow_all):
                hint = access_hint(loaded.ticket.source)
            outcome, reaction = await carry_out_command(
                decision, source.author, parsed, spec, permissions, commands, hint=hint
            )
        await react(decision, source, reaction)
        if outcome.reply:
            await _reply(decision, source, parsed, outcome.reply)
        log.info("command", name=parsed.name, done=outcome.done, actor=source.author.login)
    return len(found)


def permissions_for(decision: Decision, source: Source) -> PermissionSource:
    """Who may do what, asked of GitHub for the ticket's repository (a tracker's user: as
    the control config maps them)."""
    engine, loaded = decision.engine, decision.loaded
    repo = loaded.repo
    assert repo is not None  # checked by the callers
    assert repo.installation_id is not None
    permissions: PermissionSource = GitHubPermissions(
        engine.github, repo.full_name, repo.installation_id, cache=engine.permissions
    )
    if is_tracker(loaded.ticket):
        permissions = TrackerPermissions(
            permissions, mapped=source.mapped, allow_all=source.allow_all
        )
    return permissions


def _listed(config: RepoConfig | None, name: str, actor: Actor) -> bool:
    access = config.commands.get(name) if config is not None else None
    return access is not None and actor.login.casefold() in {u.casefold() for u in access.users}


async def carry_out_command(
    decision: Decision,
    actor: Actor,
    parsed: ParsedCommand,
    spec: Spec,
    permissions: PermissionSource,
    commands: Commands,
    *,
    hint: str = "",
    admin: bool = False,
) -> tuple[Outcome, str]:
    """One command: its author's permission checked (the web page's admin may do all),
    then its handler. The outcome, and the reaction that acknowledges it: 🚀 done, 😕 not
    possible, 👎 refused (`hint` follows the refusal)."""
    loaded, config = decision.loaded, decision.config
    assert loaded.repo is not None  # checked by the caller
    if not admin:
        access = config.commands.get(spec.name) if config is not None else None
        verdict = await decide(
            permissions,
            command=spec.name,
            needs=spec.needs,
            actor=actor,
            access=access,
            repo=loaded.repo.full_name,
        )
        if not verdict.allowed:
            return Outcome(False, f"🚫 {verdict.reason}{hint}"), REFUSED
    if spec.bad_args(parsed.args):
        return Outcome(False, f"Usage: `{spec.usage}` — {spec.summary}"), "confused"
    context = Context(decision, actor, parsed, commands)
    outcome = await spec.handler(context)
    return outcome, "rocket" if outcome.done else "confused"


async def react(decision: Decision, source: Source, content: str) -> None:
    """Acknowledge the comment (or issue body) with a reaction, once per `content`."""
    session, loaded, followups = decision.session, decision.loaded, decision.followups
    repo = loaded.repo
    assert repo is not None
    if is_tracker(loaded.ticket):
        if source.tracker_comment_id is not None:
            await tracker_reaction(
                session,
                loaded.ticket,
                key=f"reaction:{loaded.ticket.id}:{source.key}:{content}"[:255],
                comment_id=source.tracker_comment_id,
                content=content,
            )
            followups.outbox.add(lane(loaded.ticket))
        return
    payload: dict[str, object] = {"repo": repo.full_name, "content": content}
    if source.comment_id is not None:
        payload["comment_id"] = source.comment_id
    else:
        payload["number"] = loaded.ticket.number
    await add_effect(
        session,
        key=f"reaction:{source.key}:{content}",
        kind=EffectKind.REACTION,
        payload=payload,
        ticket_id=loaded.ticket.id,
        installation_id=repo.installation_id,
    )
    followups.outbox.add(repo.installation_id)


async def _reply(decision: Decision, source: Source, parsed: ParsedCommand, text: str) -> None:
    session, loaded, followups = decision.session, decision.loaded, decision.followups
    repo = loaded.repo
    assert repo is not None
    if is_tracker(loaded.ticket):
        await tracker_comment(
            session,
            loaded.ticket,
            key=f"reply:{loaded.ticket.id}:{source.key}:{parsed.line_number}"[:255],
            body=f"{quote(parsed.line)}\n\n@{source.author.login} {text}",
        )
        followups.outbox.add(lane(loaded.ticket))
        return
    await add_effect(
        session,
        key=f"reply:{source.key}:{parsed.line_number}",
        kind=EffectKind.COMMENT,
        payload={
            "repo": repo.full_name,
            "number": loaded.ticket.number,
            "body": f"{quote(parsed.line)}\n\n@{source.author.login} {text}",
        },
        ticket_id=loaded.ticket.id,
        installation_id=repo.installation_id,
    )
    followups.outbox.add(repo.installation_id)
