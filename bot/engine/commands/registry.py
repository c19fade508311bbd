"""Slash commands (DESIGN §5): what a command is (`Spec`: name, usage, who may use it, its
handler), the set a process knows (`Commands`, built by the composition root from
bot/engine/commands/handlers.py), and what a handler is given (`Context`). A comment's
commands are carried out by bot/engine/commands/run.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.repo import RepoConfig
from bot.engine.access import Actor, Level
from bot.engine.commands.parse import ParsedCommand
from bot.engine.context import Engine, Followups, Loaded
from bot.engine.decision import Decision

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
