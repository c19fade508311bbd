"""`openase harness …` and `openase skill …`: push, inspect, diff, roll back and pin the
versions in the harness store.

Like `gh`, the commands are clients of the server's JSON API (`/api/v1/harnesses`,
`/api/v1/skills`): OPENASE_URL, else this machine's own server, with OPENASE_ADMIN_TOKEN as
the bearer token. `render` stays on this machine and `pin`/`unpin` work on the database of
OPENASE_DATABASE_URL (or of a running `openase up`) directly. A refusal is one line on
stderr: exit status 2 for a malformed argument or a missing or wrong token, 1 for something
not found, content the server refuses, or a server or database out of reach.
Heavy imports (httpx, SQLAlchemy, Jinja) wait until a command runs, so `openase --help`
stays quick: this module holds the parsers, `bot.harness.args` the argument checks,
`bot.harness.commands` the commands, `bot.harness.client` the API client and
`bot.harness.db` the database access, all imported only when a command runs.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from bot.errors import OpenaseError
from harness_store.errors import HarnessStoreError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bot.settings import Settings
    from harness_store.names import Kind

    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

# --- parsers -------------------------------------------------------------------------------


def add_parsers(commands: Subparsers) -> None:
    """Add `harness` and `skill` with their subcommands to the `openase` parser."""
    _add_harness(commands)
    _add_skill(commands)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the `harness` or `skill` command `args` describes."""
    # Imported when a command runs, not when the parsers are built: the commands pull in
    # httpx, SQLAlchemy and Jinja, which `openase --help` has no use for.
    from bot.harness.commands import COMMANDS

    try:
        return COMMANDS[args.handler](args, settings)
    except HarnessStoreError as error:
        raise OpenaseError(str(error)) from None


_SERVER = (
    "Talks to the server at OPENASE_URL (default: this machine's `openase up` or `openase "
    "serve`), sending OPENASE_ADMIN_TOKEN as the bearer token; the server needs that token "
    "for every change."
)
_DATABASE = (
    "`render`, `pin` and `unpin` need no server: they use OPENASE_DATABASE_URL, or else the "
    "database of an `openase up` running with the same OPENASE_DATA_DIR."
)


def _add_harness(commands: Subparsers) -> None:
    group = _group(
        commands,
        "harness",
        f"Harnesses are the versioned Jinja templates of an agent's instructions. {_SERVER} "
        f"{_DATABASE}",
    )
    _command(group, "list", "every harness with its current version")
    show = _command(group, "show", "print a harness (its current version by default)")
    show.add_argument("ref", metavar="NAME[@VERSION]")
    show.add_argument("--meta", action="store_true", help="print version, hash, author instead")
    _add_history_and_diff(group)
    push = _command(group, "push", "publish a template as NAME's next version", ["publish"])
    push.add_argument("name", metavar="NAME")
    push.add_argument("file", metavar="FILE", help="the template ('-' reads standard input)")
    _add_authoring(push)
    _add_rollback(group)
    render = _command(group, "render", "render with sample variables (stores nothing)")
    render.add_argument("ref", metavar="NAME[@VERSION]")
    render.add_argument("--attempt", metavar="N", help="1 by default")
    pin = _command(group, "pin", "run a mirrored ticket with this harness version")
    pin.add_argument("ticket", metavar="OWNER/REPO#NUMBER")
    pin.add_argument("ref", metavar="NAME[@VERSION]", help="the current version by default")
    pin.add_argument("--author", metavar="A", help="recorded as who pinned it")
    unpin = _command(group, "unpin", "let a ticket use the default harness again")
    unpin.add_argument("ticket", metavar="OWNER/REPO#NUMBER")


def _add_skill(commands: Subparsers) -> None:
    group = _group(
        commands,
        "skill",
        "Skills are versioned folders given to agents: SKILL.md with name and description "
        f"front matter, plus any text files. {_DATABASE}",
    )
    _command(group, "list", "every skill with its current version")
    show = _command(group, "show", "list a skill's files (current version by default)")
    show.add_argument("ref", metavar="NAME[@VERSION]")
    show.add_argument("--file", metavar="PATH", help="print this file instead")
    show.add_argument("--meta", action="store_true", help="print version, hash, author instead")
    _add_history_and_diff(group)
    push = _command(group, "push", "publish a skill folder as NAME's next version", ["publish"])
    push.usage = "%(prog)s [-h] [--message M] [--author A] [NAME] DIR"
    push.add_argument("name", metavar="NAME", help="the skill's name (default: DIR's name)")
    push.add_argument("dir", metavar="DIR", nargs="?", help="the folder")
    _add_authoring(push)
    _add_rollback(group)
    export = _command(group, "export", "write a version into a new or empty folder")
    export.add_argument("ref", metavar="NAME[@VERSION]")
    export.add_argument("dir", metavar="DIR")


def _group(commands: Subparsers, kind: Kind, description: str) -> Subparsers:
    help_ = f"list, show, diff, push and roll back {kind} versions"
    parser = commands.add_parser(kind, help=help_, description=description)
    return parser.add_subparsers(dest=f"{kind}_command", metavar="COMMAND", required=True)


def _command(
    group: Subparsers, name: str, help_: str, aliases: Sequence[str] = ()
) -> argparse.ArgumentParser:
    """A subcommand; `run` finds its handler by `name`, so building parsers imports none."""
    parser = group.add_parser(
        name, help=help_, description=help_[0].upper() + help_[1:] + ".", aliases=aliases
    )
    parser.set_defaults(handler=name)
    return parser


def _add_history_and_diff(group: Subparsers) -> None:
    history = _command(group, "history", "the versions of NAME, newest first")
    history.add_argument("name", metavar="NAME")
    diff = _command(group, "diff", "unified diff from version V1 to V2 of NAME")
    diff.add_argument("name", metavar="NAME")
    diff.add_argument("old", metavar="V1")
    diff.add_argument("new", metavar="V2")


def _add_rollback(group: Subparsers) -> None:
    rollback = _command(group, "rollback", "publish again what VERSION held")
    rollback.add_argument("name", metavar="NAME")
    rollback.add_argument("version", metavar="VERSION")
    _add_authoring(rollback)


def _add_authoring(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--message", "-m", metavar="M", help="why it changed")
    parser.add_argument("--author", metavar="A", help="recorded author (default: $USER, else cli)")
