"""The commands of `openase harness|skill`: each parses its arguments, runs one transaction
and prints what it found or did."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bot.errors import ConfigError, OpenaseError
from bot.harness_cli import Ref, default_author, parse_name, parse_ref, parse_ticket, parse_version
from bot.harness_db import (
    current_of,
    diff_of,
    fetch,
    fetch_harness,
    fetch_skill,
    find_ticket,
    in_transaction,
    names_of,
    versions_of,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from bot.settings import Settings
    from harness_store.models import HarnessVersion, SkillVersion
    from harness_store.names import Kind

Handler = Callable[[argparse.Namespace, "Settings"], int]

_SAMPLE_REPO = "example/project"
_SAMPLE_NUMBER = 1
_STDIN = "-"


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


# Handlers by subcommand name: the parsers store only the name (`args.handler`), so
# building them imports nothing from here.
COMMANDS: dict[str, Handler] = {
    "list": _list,
    "history": _history,
    "diff": _diff,
    "rollback": _rollback,
    "show": _show,
    "publish": _publish,
    "render": _render,
    "pin": _pin,
    "unpin": _unpin,
    "export": _export,
}
