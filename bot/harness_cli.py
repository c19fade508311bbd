"""`openase harness …` and `openase skill …`: publish, inspect, diff, roll back and pin the
versions in the harness store.

Each command is one transaction on the database of OPENASE_DATABASE_URL (or of a running
`openase up`), and prints only after it committed. A refusal is one line on stderr: exit
status 2 for a malformed argument, 1 for something not found or content the store refuses.
Heavy imports (SQLAlchemy, Jinja) wait until a command runs, so `openase --help` stays quick.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from bot.errors import ConfigError, OpenaseError
from harness_store.errors import HarnessStoreError, InvalidName

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from bot.models import Ticket
    from bot.settings import Settings
    from harness_store.models import HarnessVersion, Kind, SkillVersion
    from harness_store.store import NameSummary

    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

T = TypeVar("T")
Handler = Callable[[argparse.Namespace, "Settings"], int]

# Version numbers are Postgres integers: nine digits keep every accepted one in range.
_NUMBER = re.compile(r"[0-9]{1,9}")
_SAMPLE_REPO = "example/project"
_SAMPLE_NUMBER = 1
_STDIN = "-"
_UNDEFINED_TABLE = "42P01"  # the SQLSTATE of a missing table: not migrated yet


@dataclass(frozen=True)
class Ref:
    """NAME or NAME@VERSION as written on the command line."""

    name: str
    version: int | None = None


def parse_version(value: str, what: str = "VERSION") -> int:
    """A version number from the command line; `ConfigError` unless a whole number >= 1."""
    if not _NUMBER.fullmatch(value) or int(value) < 1:
        raise ConfigError(f"{what} must be a whole number from 1 (for example 3), got {value!r}")
    return int(value)


def parse_name(kind: Kind, value: str) -> str:
    """A harness or skill name from the command line; `ConfigError` when malformed."""
    from harness_store.models import validate_name

    try:
        return validate_name(kind, value)
    except InvalidName as error:
        raise ConfigError(str(error)) from None


def parse_ref(kind: Kind, value: str) -> Ref:
    """NAME or NAME@VERSION; `ConfigError` naming the expected form otherwise."""
    name, at, version = value.partition("@")
    if at and not (_NUMBER.fullmatch(version) and int(version) >= 1):
        raise ConfigError(
            f"expected NAME or NAME@VERSION with VERSION a whole number from 1 (for example "
            f"{'coder' if kind == 'harness' else 'run-tests'}@3), got {value!r}"
        )
    return Ref(parse_name(kind, name), int(version) if at else None)


def parse_ticket(value: str) -> tuple[str, int]:
    """OWNER/REPO#NUMBER as (full name, number)."""
    from bot.cli import repository

    full_name, hash_, number = value.rpartition("#")
    try:
        if not hash_ or not _NUMBER.fullmatch(number) or int(number) < 1:
            raise argparse.ArgumentTypeError("")
        repository(full_name)
    except argparse.ArgumentTypeError:
        raise ConfigError(
            f"expected OWNER/REPO#NUMBER (for example octocat/hello-world#12), got {value!r}"
        ) from None
    return full_name, int(number)


def default_author() -> str:
    """Who a version is recorded as being by when --author is not given."""
    return os.environ.get("USER", "").strip() or "cli"


# --- parsers -------------------------------------------------------------------------------


def add_parsers(commands: Subparsers) -> None:
    """Add `harness` and `skill` with their subcommands to the `openase` parser."""
    _add_harness(commands)
    _add_skill(commands)


_DATABASE = (
    "Uses OPENASE_DATABASE_URL, or else the database of an `openase up` running with the same "
    "OPENASE_DATA_DIR."
)


def _add_harness(commands: Subparsers) -> None:
    group = _group(
        commands,
        "harness",
        f"Harnesses are the versioned Jinja templates of an agent's instructions. {_DATABASE}",
    )
    _command(group, "list", _list, "every harness with its current version")
    show = _command(group, "show", _show, "print a harness (its current version by default)")
    show.add_argument("ref", metavar="NAME[@VERSION]")
    show.add_argument("--meta", action="store_true", help="print version, hash, author instead")
    _add_history_and_diff(group)
    publish = _command(group, "publish", _publish, "check a template and publish it")
    publish.add_argument("name", metavar="NAME")
    publish.add_argument("file", metavar="FILE", help="the template ('-' reads standard input)")
    _add_authoring(publish)
    _add_rollback(group)
    render = _command(group, "render", _render, "render with sample variables (stores nothing)")
    render.add_argument("ref", metavar="NAME[@VERSION]")
    render.add_argument("--ticket-title", default="Example ticket", metavar="T")
    render.add_argument("--attempt", metavar="N", help="1, or 2 with --previous-failure")
    render.add_argument("--previous-failure", metavar="TEXT")
    pin = _command(group, "pin", _pin, "run a mirrored ticket with this harness version")
    pin.add_argument("ticket", metavar="OWNER/REPO#NUMBER")
    pin.add_argument("ref", metavar="NAME[@VERSION]", help="the current version by default")
    pin.add_argument("--author", metavar="A", help="recorded as who pinned it")
    unpin = _command(group, "unpin", _unpin, "let a ticket use the default harness again")
    unpin.add_argument("ticket", metavar="OWNER/REPO#NUMBER")


def _add_skill(commands: Subparsers) -> None:
    group = _group(
        commands,
        "skill",
        "Skills are versioned folders given to agents: SKILL.md with name and description "
        f"front matter, plus any text files. {_DATABASE}",
    )
    _command(group, "list", _list, "every skill with its current version")
    show = _command(group, "show", _show, "list a skill's files (current version by default)")
    show.add_argument("ref", metavar="NAME[@VERSION]")
    show.add_argument("--file", metavar="PATH", help="print this file instead")
    show.add_argument("--meta", action="store_true", help="print version, hash, author instead")
    _add_history_and_diff(group)
    publish = _command(group, "publish", _publish, "check a skill folder and publish it")
    publish.add_argument("dir", metavar="DIR", help="the folder; its name is the skill's name")
    _add_authoring(publish)
    _add_rollback(group)
    export = _command(group, "export", _export, "write a version into a new or empty folder")
    export.add_argument("ref", metavar="NAME[@VERSION]")
    export.add_argument("dir", metavar="DIR")


def _group(commands: Subparsers, kind: Kind, description: str) -> Subparsers:
    help_ = f"list, show, diff, publish and roll back {kind} versions"
    parser = commands.add_parser(kind, help=help_, description=description)
    return parser.add_subparsers(dest=f"{kind}_command", metavar="COMMAND", required=True)


def _command(group: Subparsers, name: str, handler: Handler, help_: str) -> argparse.ArgumentParser:
    parser = group.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".")
    parser.set_defaults(handler=handler)
    return parser


def _add_history_and_diff(group: Subparsers) -> None:
    history = _command(group, "history", _history, "the versions of NAME, newest first")
    history.add_argument("name", metavar="NAME")
    diff = _command(group, "diff", _diff, "unified diff from version V1 to V2 of NAME")
    diff.add_argument("name", metavar="NAME")
    diff.add_argument("old", metavar="V1")
    diff.add_argument("new", metavar="V2")


def _add_rollback(group: Subparsers) -> None:
    rollback = _command(group, "rollback", _rollback, "publish again what VERSION held")
    rollback.add_argument("name", metavar="NAME")
    rollback.add_argument("version", metavar="VERSION")
    _add_authoring(rollback)


def _add_authoring(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--message", "-m", metavar="M", help="why it changed")
    parser.add_argument("--author", metavar="A", help="recorded author (default: $USER, else cli)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the `harness` or `skill` command `args` describes."""
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except HarnessStoreError as error:
        raise OpenaseError(str(error)) from None


# --- the database --------------------------------------------------------------------------


def database_url(settings: Settings) -> str:
    """OPENASE_DATABASE_URL, else the database of a running `openase up`."""
    from bot.embedded import EmbeddedPostgres
    from bot.services import postgres_dir

    url = settings.database_url or EmbeddedPostgres.running_url(postgres_dir(settings))
    if url is None:
        raise ConfigError(
            "OPENASE_DATABASE_URL is not set, and no `openase up` is running with data dir "
            f"{settings.data_dir} (OPENASE_DATA_DIR): set the URL or start `openase up` first"
        )
    return url


def in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one transaction: committed when it returns, rolled back when it raises."""
    return asyncio.run(_transact(database_url(settings), work))


async def _transact(url: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    from sqlalchemy.exc import SQLAlchemyError

    from harness_store.db import make_engine, make_sessionmaker, transaction

    engine = make_engine(url, pool_size=1)
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            return await work(session)
    except (SQLAlchemyError, OSError) as error:
        raise OpenaseError(_database_problem(error)) from None
    finally:
        await engine.dispose()


def _database_problem(error: BaseException) -> str:
    """One line about a database failure; asyncpg's messages never carry the password."""
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    detail = lines[0] if lines else type(original).__name__
    if isinstance(original, OSError):
        return f"cannot reach the database: {detail}"
    if getattr(original, "sqlstate", None) == _UNDEFINED_TABLE:
        return f"the database has no harness store yet ({detail}): run `openase migrate` first"
    return f"database: {detail}"


# The store's functions take the model class; a `kind` picks it here once, so the rest of
# this module never holds the class in a variable of union type mypy cannot resolve.


async def current_of(
    session: AsyncSession, kind: Kind, name: str
) -> HarnessVersion | SkillVersion | None:
    """The newest version of `name`, or None."""
    from harness_store import store
    from harness_store.models import HarnessVersion, SkillVersion

    if kind == "harness":
        return await store.current(session, HarnessVersion, name)
    return await store.current(session, SkillVersion, name)


async def fetch(session: AsyncSession, kind: Kind, ref: Ref) -> HarnessVersion | SkillVersion:
    """The version `ref` names: the current one when it names no version."""
    from harness_store import store
    from harness_store.errors import NameNotFound
    from harness_store.models import HarnessVersion, SkillVersion

    if ref.version is None:
        found = await current_of(session, kind, ref.name)
        if found is None:
            raise NameNotFound(f"no {kind} named {ref.name!r}")
        return found
    if kind == "harness":
        return await store.get_version(session, HarnessVersion, ref.name, ref.version)
    return await store.get_version(session, SkillVersion, ref.name, ref.version)


async def names_of(session: AsyncSession, kind: Kind) -> list[NameSummary]:
    """Every name of this kind, sorted."""
    from harness_store import store
    from harness_store.models import HarnessVersion, SkillVersion

    if kind == "harness":
        return await store.list_names(session, HarnessVersion)
    return await store.list_names(session, SkillVersion)


async def versions_of(
    session: AsyncSession, kind: Kind, name: str
) -> Sequence[HarnessVersion | SkillVersion]:
    """Every version of `name`, newest first."""
    from harness_store import store
    from harness_store.models import HarnessVersion, SkillVersion

    if kind == "harness":
        return await store.list_versions(session, HarnessVersion, name)
    return await store.list_versions(session, SkillVersion, name)


async def diff_of(session: AsyncSession, kind: Kind, name: str, old: int, new: int) -> str:
    """Unified diff from version `old` to version `new` of `name`."""
    from harness_store import store
    from harness_store.models import HarnessVersion, SkillVersion

    if kind == "harness":
        return await store.diff_versions(session, HarnessVersion, name, old, new)
    return await store.diff_versions(session, SkillVersion, name, old, new)


async def fetch_harness(session: AsyncSession, ref: Ref) -> HarnessVersion:
    from harness_store.models import HarnessVersion

    found = await fetch(session, "harness", ref)
    assert isinstance(found, HarnessVersion)  # fetch("harness") returns one
    return found


async def fetch_skill(session: AsyncSession, ref: Ref) -> SkillVersion:
    from harness_store.models import SkillVersion

    found = await fetch(session, "skill", ref)
    assert isinstance(found, SkillVersion)  # fetch("skill") returns one
    return found


# --- output --------------------------------------------------------------------------------


def when(moment: datetime) -> str:
    """A timestamp as listings show it (UTC, to the minute)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def first_line(message: str, width: int = 72) -> str:
    line = message.strip().split("\n", 1)[0]
    return line if len(line) <= width else line[: width - 1] + "…"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    everything = [list(header), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in everything) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(
            [*(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)), row[-1]]
        ).rstrip()
        for row in everything
    )


def metadata(version: HarnessVersion | SkillVersion) -> str:
    """The version's facts, one `key: value` a line."""
    message = version.message.replace("\n", "\n  ")
    return (
        f"name: {version.name}\nversion: {version.version}\nhash: {version.content_hash}\n"
        f"author: {version.author}\ncreated_at: {version.created_at.isoformat()}\n"
        f"message: {message}"
    )


def _write(text: str) -> None:
    """Print stored text exactly as stored, so `show > FILE; publish FILE` is a no-op."""
    sys.stdout.write(text)
    sys.stdout.flush()


# --- commands for both kinds -----------------------------------------------------------------


def _list(args: argparse.Namespace, settings: Settings) -> int:
    kind: Kind = args.command

    async def work(session: AsyncSession) -> list[list[str]]:
        rows = []
        for summary in await names_of(session, kind):
            latest = await fetch(session, kind, Ref(summary.name))
            rows.append(
                [
                    summary.name,
                    str(latest.version),
                    str(summary.versions),
                    latest.author,
                    when(latest.created_at),
                ]
            )
        return rows

    rows = in_transaction(settings, work)
    if not rows:
        print(f"no {'harnesses' if kind == 'harness' else 'skills'} in the store")
    else:
        print(table(["NAME", "CURRENT", "VERSIONS", "AUTHOR", "UPDATED"], rows))
    return 0


def _history(args: argparse.Namespace, settings: Settings) -> int:
    kind: Kind = args.command
    name = parse_name(kind, args.name)
    from harness_store.errors import NameNotFound

    async def work(session: AsyncSession) -> list[list[str]]:
        versions = await versions_of(session, kind, name)
        if not versions:
            raise NameNotFound(f"no {kind} named {name!r}")
        return [
            [
                str(v.version),
                v.content_hash[:12],
                v.author,
                when(v.created_at),
                first_line(v.message),
            ]
            for v in versions
        ]

    print(table(["VERSION", "HASH", "AUTHOR", "DATE", "MESSAGE"], in_transaction(settings, work)))
    return 0


def _diff(args: argparse.Namespace, settings: Settings) -> int:
    kind: Kind = args.command
    name = parse_name(kind, args.name)
    old, new = parse_version(args.old, "V1"), parse_version(args.new, "V2")

    async def work(session: AsyncSession) -> str:
        return await diff_of(session, kind, name, old, new)

    diff = in_transaction(settings, work)
    _write(diff or "no differences\n")
    return 0


def _rollback(args: argparse.Namespace, settings: Settings) -> int:
    kind: Kind = args.command
    name = parse_name(kind, args.name)
    version = parse_version(args.version)
    author = args.author or default_author()
    message = args.message or f"roll back to version {version}"
    from harness_store import store
    from harness_store.models import HarnessVersion

    async def work(session: AsyncSession) -> tuple[str, bool]:
        target = await fetch(session, kind, Ref(name, version))
        before = await fetch(session, kind, Ref(name))
        # Published through the public path (not store.rollback) so --message is kept.
        row: HarnessVersion | SkillVersion
        if isinstance(target, HarnessVersion):
            row = await store.publish_harness(
                session, name, target.content, author=author, message=message
            )
        else:
            row = await store.publish_skill(
                session, name, target.files, author=author, message=message
            )
        return row.label, row.id == before.id

    label, unchanged = in_transaction(settings, work)
    if unchanged:
        print(f"unchanged: {label} already equals version {version}")
    else:
        print(f"published {label} (equal to {name}@{version})")
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    kind: Kind = args.command
    ref = parse_ref(kind, args.ref)

    async def work(session: AsyncSession) -> HarnessVersion | SkillVersion:
        return await fetch(session, kind, ref)

    from harness_store.models import HarnessVersion

    found = in_transaction(settings, work)
    if args.meta:
        print(metadata(found))
    elif isinstance(found, HarnessVersion):
        _write(found.content)
    else:
        _show_files(found.label, found.files, args.file)
    return 0


def _show_files(label: str, files: dict[str, str], wanted: str | None) -> None:
    if wanted is None:
        sizes = {path: len(text.encode()) for path, text in files.items()}
        width = len(str(max(sizes.values(), default=0)))
        print("\n".join(f"{size:>{width}}  {path}" for path, size in sorted(sizes.items())))
        return
    if wanted not in files:
        raise OpenaseError(
            f"skill {label} has no file {wanted!r}; it has {', '.join(sorted(files))}"
        )
    _write(files[wanted])


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    kind: Kind = args.command
    author = args.author or default_author()
    message = args.message or ""
    from harness_store import store

    # Read and checked before connecting: a broken template or folder is reported even
    # when no database is reachable.
    if kind == "harness":
        name = parse_name(kind, args.name)
        content: str | dict[str, str] = store.normalize_harness(name, _read_text(args.file))
    else:
        name, content = _read_skill(args.dir)

    async def work(session: AsyncSession) -> tuple[str, bool]:
        before = await current_of(session, kind, name)
        row: HarnessVersion | SkillVersion
        if isinstance(content, str):
            row = await store.publish_harness(
                session, name, content, author=author, message=message
            )
        else:
            row = await store.publish_skill(session, name, content, author=author, message=message)
        return row.label, before is not None and row.id == before.id

    label, unchanged = in_transaction(settings, work)
    print(f"unchanged: {label} already has this content" if unchanged else f"published {label}")
    return 0


def _read_text(file: str) -> str:
    if file == _STDIN:
        return sys.stdin.read()
    try:
        data = Path(file).read_bytes()
    except OSError as error:
        raise ConfigError(f"{file}: {error.strerror or error}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise OpenaseError(f"{file}: not UTF-8 text; a harness is a text template") from None


def _read_skill(folder: str) -> tuple[str, dict[str, str]]:
    from harness_store.skills import read_skill_dir

    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(f"{folder}: not a folder (give the skill's folder, named after it)")
    try:
        return read_skill_dir(path)
    except OSError as error:
        raise ConfigError(f"{folder}: {error.strerror or error}") from None


# --- harness only ----------------------------------------------------------------------------


def _render(args: argparse.Namespace, settings: Settings) -> int:
    ref = parse_ref("harness", args.ref)
    failure: str | None = args.previous_failure
    attempt = (
        parse_version(args.attempt, "--attempt")
        if args.attempt is not None
        else 2
        if failure
        else 1
    )
    from harness_store.errors import RenderError
    from harness_store.render import RepositoryVars, TicketVars, render_harness

    async def work(session: AsyncSession) -> HarnessVersion:
        return await fetch_harness(session, ref)

    found = in_transaction(settings, work)
    try:
        text = render_harness(
            found.content,
            ticket=TicketVars(
                key=f"{_SAMPLE_REPO}#{_SAMPLE_NUMBER}",
                number=_SAMPLE_NUMBER,
                title=args.ticket_title,
                body="The sample ticket's description.",
                url=f"https://github.com/{_SAMPLE_REPO}/issues/{_SAMPLE_NUMBER}",
                labels=("openase",),
            ),
            repository=RepositoryVars(
                full_name=_SAMPLE_REPO,
                default_branch="main",
                clone_url=f"https://github.com/{_SAMPLE_REPO}.git",
            ),
            attempt=attempt,
            previous_failure=failure,
        )
    except RenderError as error:
        raise OpenaseError(f"{found.label} does not render: {error}") from None
    _write(text if text.endswith("\n") else text + "\n")
    return 0


async def find_ticket(session: AsyncSession, full_name: str, number: int) -> Ticket:
    """The mirrored issue OWNER/REPO#NUMBER (repository names compare case-insensitively)."""
    from sqlalchemy import func, select

    from bot.models import Repository, Ticket

    query = (
        select(Ticket)
        .join(Repository, Ticket.repository_id == Repository.id)
        .where(func.lower(Repository.full_name) == full_name.lower(), Ticket.number == number)
        # A renamed-away repository can leave an inactive row with the old name behind.
        .order_by(Repository.active.desc(), Ticket.id.desc())
        .limit(1)
    )
    ticket = (await session.execute(query)).scalar_one_or_none()
    if ticket is None:
        raise OpenaseError(
            f"{full_name}#{number} is not in the mirror: check the number, or run "
            f"`openase sync {full_name}` first"
        )
    return ticket


def _pin(args: argparse.Namespace, settings: Settings) -> int:
    full_name, number = parse_ticket(args.ticket)
    ref = parse_ref("harness", args.ref)
    pinned_by = args.author or default_author()
    from harness_store import store

    async def work(session: AsyncSession) -> tuple[str, str]:
        ticket = await find_ticket(session, full_name, number)
        pinned = await store.pin_harness(
            session, ticket.id, ref.name, ref.version, pinned_by=pinned_by
        )
        return ticket.key, pinned.label

    key, label = in_transaction(settings, work)
    print(f"pinned {key} to {label}")
    return 0


def _unpin(args: argparse.Namespace, settings: Settings) -> int:
    full_name, number = parse_ticket(args.ticket)
    from harness_store import store

    async def work(session: AsyncSession) -> tuple[str, str | None]:
        ticket = await find_ticket(session, full_name, number)
        pinned = await store.pinned_harness(session, ticket.id)
        await store.unpin_harness(session, ticket.id)
        return ticket.key, None if pinned is None else pinned.label

    key, label = in_transaction(settings, work)
    print(f"{key} had no pin" if label is None else f"unpinned {key} (was {label})")
    return 0


# --- skill only ------------------------------------------------------------------------------


def _export(args: argparse.Namespace, settings: Settings) -> int:
    ref = parse_ref("skill", args.ref)
    folder = Path(args.dir)
    _check_empty(folder)

    async def work(session: AsyncSession) -> SkillVersion:
        return await fetch_skill(session, ref)

    found = in_transaction(settings, work)
    try:
        written = write_new_folder(found.files, folder)
    except FileExistsError as error:
        raise OpenaseError(f"{error.filename}: already exists; export never overwrites") from None
    except OSError as error:
        raise OpenaseError(f"{args.dir}: {error.strerror or error}") from None
    print(f"exported {found.label} to {folder} ({written} files)")
    return 0


def _check_empty(folder: Path) -> None:
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise ConfigError(f"{folder}: exists and is not a folder; export writes a new folder")
    if folder.is_dir() and any(folder.iterdir()):
        raise ConfigError(f"{folder}: not empty; export writes only into a new or empty folder")


def write_new_folder(files: dict[str, str], folder: Path) -> int:
    """Write a skill's files into a new or empty `folder`, all or nothing; how many."""
    from harness_store.skills import write_skill_dir

    _check_empty(folder)
    existed = folder.is_dir()
    created = folder  # the outermost folder this call creates, removed again on failure
    while not created.parent.exists():
        created = created.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return len(write_skill_dir(files, folder))
    except BaseException:
        if existed:
            for child in folder.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        else:
            shutil.rmtree(created, ignore_errors=True)
        raise
