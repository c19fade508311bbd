"""Slash commands in comments (DESIGN §5): what a command is (`Spec`), the set a process
knows (`Commands`, built by the composition root from bot/engine/commands/handlers.py),
and how a comment's commands are acknowledged and carried out.

A new comment (or a new issue's body) is parsed by `bot.engine.commands.parse`; each known command
is checked against its author's permission (`bot.engine.access`) and carried out inside
the ingest transaction, so a redelivered webhook never runs it twice. Acknowledgements
are outbox effects keyed by the comment: 👀 on receipt, 🚀 when the action took effect,
👎 and one reply naming the permission when refused, 😕 and a reply quoting the command
when it could not be done. Unknown `/words` are left alone: other bots share the thread.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.repo import RepoConfig
from bot.effects.kinds import EffectKind
from bot.effects.outbox import add_effect
from bot.engine.access import Actor, GitHubPermissions, Level, PermissionSource, decide
from bot.engine.commands.parse import ParsedCommand, parse_commands, quote
from bot.engine.context import BOT, Engine, Followups, Loaded
from bot.engine.decision import Decision
from bot.engine.tracker_tickets import (
    TrackerPermissions,
    access_hint,
    is_tracker,
    lane,
    tracker_comment,
    tracker_reaction,
)

log = structlog.get_logger(__name__)

Args = Literal["none", "optional", "required"]


@dataclass(frozen=True)
class Outcome:
    """What a command did: `done` (🚀) or not (😕), and what to reply, if anything."""

    done: bool
    reply: str | None = None


@dataclass
class Context:
    """Everything a command's handler may use: the decision on its ticket (whose row is
    locked), who wrote the command, the command, and every command there is."""

    decision: Decision
    actor: Actor
    command: ParsedCommand
    commands: Commands

    @property
    def session(self) -> AsyncSession:
        return self.decision.session

    @property
    def engine(self) -> Engine:
        return self.decision.engine

    @property
    def loaded(self) -> Loaded:
        return self.decision.loaded

    @property
    def config(self) -> RepoConfig | None:
        return self.decision.config

    @property
    def followups(self) -> Followups:
        return self.decision.followups


Handler = Callable[[Context], Awaitable[Outcome]]


@dataclass(frozen=True)
class Spec:
    name: str
    usage: str  # "/retry [guidance…]"
    summary: str
    needs: Level
    args: Args
    handler: Handler = field(compare=False)

    def bad_args(self, args: str) -> bool:
        return (self.args == "none" and bool(args)) or (self.args == "required" and not args)


class Commands:
    """The commands a process answers, by name, in the order `/help` lists them."""

    def __init__(self, specs: Iterable[Spec]) -> None:
        self._specs: dict[str, Spec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"two commands are named /{spec.name}")
            self._specs[spec.name] = spec

    def get(self, name: str) -> Spec | None:
        return self._specs.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[Spec]:
        return iter(self._specs.values())


# --- a comment's commands ----------------------------------------------------------------------


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


async def run_commands(
    session: AsyncSession,
    engine: Engine,
    loaded: Loaded,
    source: Source,
    followups: Followups,
    commands: Commands,
) -> int:
    """Carry out the comment's known commands; how many there were."""
    found = [parsed for parsed in parse_commands(source.body) if parsed.name in commands]
    if not found or loaded.repo is None or loaded.repo.installation_id is None:
        return 0
    repo, installation = loaded.repo, loaded.repo.installation_id
    config = (await engine.config_of(repo)).config
    decision = Decision(session, engine, loaded, config, followups)
    if source.author.kind == BOT:
        # Bots (ours included) are not answered at all, so two bots never talk in circles;
        # one listed under `commands.<name>.users` may use that command.
        found = [parsed for parsed in found if _listed(config, parsed.name, source.author)]
        if not found:
            return 0
    permissions: PermissionSource = GitHubPermissions(
        engine.github, repo.full_name, installation, cache=engine.permissions
    )
    if is_tracker(loaded.ticket):
        permissions = TrackerPermissions(
            permissions, mapped=source.mapped, allow_all=source.allow_all
        )
    await _react(session, loaded, source, "eyes", followups)
    for parsed in found:
        spec = commands.get(parsed.name)
        assert spec is not None  # found holds known commands only
        with structlog.contextvars.bound_contextvars(command=parsed.name):
            outcome, reaction = await _one(decision, source, parsed, spec, permissions, commands)
        await _react(session, loaded, source, reaction, followups)
        if outcome.reply:
            await _reply(session, loaded, source, parsed, outcome.reply, followups)
        log.info("command", name=parsed.name, done=outcome.done, actor=source.author.login)
    return len(found)


def _listed(config: RepoConfig | None, name: str, actor: Actor) -> bool:
    access = config.commands.get(name) if config is not None else None
    return access is not None and actor.login.casefold() in {u.casefold() for u in access.users}


async def _one(
    decision: Decision,
    source: Source,
    parsed: ParsedCommand,
    spec: Spec,
    permissions: PermissionSource,
    commands: Commands,
) -> tuple[Outcome, str]:
    loaded, config = decision.loaded, decision.config
    assert loaded.repo is not None  # checked by the caller
    access = config.commands.get(spec.name) if config is not None else None
    verdict = await decide(
        permissions,
        command=spec.name,
        needs=spec.needs,
        actor=source.author,
        access=access,
        repo=loaded.repo.full_name,
    )
    if not verdict.allowed:
        hint = ""
        if is_tracker(loaded.ticket) and not (source.mapped or source.allow_all):
            hint = access_hint(loaded.ticket.source)
        return Outcome(False, f"🚫 {verdict.reason}{hint}"), "-1"
    if spec.bad_args(parsed.args):
        return Outcome(False, f"Usage: `{spec.usage}` — {spec.summary}"), "confused"
    context = Context(decision, source.author, parsed, commands)
    outcome = await spec.handler(context)
    return outcome, "rocket" if outcome.done else "confused"


async def _react(
    session: AsyncSession, loaded: Loaded, source: Source, content: str, followups: Followups
) -> None:
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


async def _reply(
    session: AsyncSession,
    loaded: Loaded,
    source: Source,
    parsed: ParsedCommand,
    text: str,
    followups: Followups,
) -> None:
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
