"""The commands of `openase harness|skill`: each parses its arguments, makes one request to
the server's API (`render`, `pin` and `unpin`: one database transaction) and prints what it
found or did.

The harness store's modules (SQLAlchemy, Jinja) are imported inside the commands that use
them, so the commands that only talk to the API start without them."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.errors import ConfigError, OpenaseError
from bot.harness.args import Ref, default_author, parse_name, parse_ref, parse_ticket, parse_version
from bot.harness.client import StoreClient, api_path
from bot.harness.db import fetch_harness, find_ticket, in_transaction

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from bot.settings import Settings
    from harness_store.models import HarnessVersion
    from harness_store.names import Kind

Handler = Callable[[argparse.Namespace, "Settings"], int]

_SAMPLE_REPO = "example/project"
_SAMPLE_NUMBER = 1
_STDIN = "-"


# --- output --------------------------------------------------------------------------------


def when(moment: str) -> str:
    """An ISO timestamp from the API as listings show it (UTC, to the minute)."""
    return datetime.fromisoformat(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


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


def metadata(version: Mapping[str, Any]) -> str:
    """A version's facts as the API gives them, one `key: value` a line."""
    message = version["message"].replace("\n", "\n  ")
    return (
        f"name: {version['name']}\nversion: {version['version']}\n"
        f"hash: {version['content_hash']}\nauthor: {version['author']}\n"
        f"created_at: {version['created_at']}\nmessage: {message}"
    )


def _write(text: str) -> None:
    """Print stored text exactly as stored, so `show > FILE; publish FILE` is a no-op."""
    sys.stdout.write(text)
    sys.stdout.flush()


# --- commands for both kinds (through the server's API) ---------------------------------------


def _plural(kind: Kind) -> str:
    return "harnesses" if kind == "harness" else "skills"


def _version_path(kind: Kind, ref: Ref) -> str:
    if ref.version is None:
        return api_path(_plural(kind), ref.name)
    return api_path(_plural(kind), ref.name, "versions", ref.version)


def _list(args: argparse.Namespace, settings: Settings) -> int:
    kind: Kind = args.command
    with StoreClient(settings) as client:
        items = client.get(_plural(kind))[_plural(kind)]
    if not items:
        print(f"no {_plural(kind)} in the store")
        return 0
    rows = [
        [
            item["name"],
            str(item["current_version"]),
            str(item["versions"]),
            item["author"],
            when(item["updated_at"]),
        ]
        for item in items
    ]
    print(table(["NAME", "CURRENT", "VERSIONS", "AUTHOR", "UPDATED"], rows))
    return 0


def _history(args: argparse.Namespace, settings: Settings) -> int:
    kind: Kind = args.command
    name = parse_name(kind, args.name)
    with StoreClient(settings) as client:
        versions = client.get(api_path(_plural(kind), name, "versions"))["versions"]
    rows = [
        [
            str(v["version"]),
            v["content_hash"][:12],
            v["author"],
            when(v["created_at"]),
            first_line(v["message"]),
        ]
        for v in versions
    ]
    print(table(["VERSION", "HASH", "AUTHOR", "DATE", "MESSAGE"], rows))
    return 0


def _diff(args: argparse.Namespace, settings: Settings) -> int:
    kind: Kind = args.command
    name = parse_name(kind, args.name)
    old, new = parse_version(args.old, "V1"), parse_version(args.new, "V2")
    with StoreClient(settings) as client:
        diff = client.get(api_path(_plural(kind), name, "diff"), {"from": old, "to": new})["diff"]
    _write(diff or "no differences\n")
    return 0


def _rollback(args: argparse.Namespace, settings: Settings) -> int:
    kind: Kind = args.command
    name = parse_name(kind, args.name)
    version = parse_version(args.version)
    body = {"version": version, "author": args.author or default_author()}
    if args.message:
        body["message"] = args.message
    with StoreClient(settings) as client:
        done = client.post(api_path(_plural(kind), name, "rollback"), body)
    label = f"{done['name']}@{done['version']}"
    if done["created"]:
        print(f"published {label} (equal to {name}@{version})")
    else:
        print(f"unchanged: {label} already equals version {version}")
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    kind: Kind = args.command
    ref = parse_ref(kind, args.ref)
    with StoreClient(settings) as client:
        found = client.get(_version_path(kind, ref))
    if args.meta:
        print(metadata(found))
    elif kind == "harness":
        _write(found["content"])
    else:
        _show_files(f"{found['name']}@{found['version']}", found["files"], args.file)
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


def _push(args: argparse.Namespace, settings: Settings) -> int:
    kind: Kind = args.command
    body: dict[str, object]
    # Read before connecting: a missing file is reported even when no server is up.
    if kind == "harness":
        name = parse_name(kind, args.name)
        body = {"content": _read_text(args.file)}
    else:
        name, files = _read_skill(args.name, args.dir)
        body = {"files": files}
    body["author"] = args.author or default_author()
    if args.message:
        body["message"] = args.message
    with StoreClient(settings) as client:
        done = client.post(api_path(_plural(kind), name, "versions"), body)
    label = f"{done['name']}@{done['version']}"
    print(
        f"published {label}" if done["created"] else f"unchanged: {label} already has this content"
    )
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


def _read_skill(name: str | None, folder: str | None) -> tuple[str, dict[str, str]]:
    """(name, files) of `[NAME] DIR`: with DIR alone, the folder's name is the skill's."""
    from harness_store.names import validate_name  # here, not on top: see the docstring
    from harness_store.skills import read_files

    if folder is None:
        folder, name = name, None
    assert folder is not None  # argparse requires the first positional
    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(f"{folder}: not a folder (give the skill's folder)")
    # A name given is an argument (exit 2 when malformed); a folder's is content (exit 1).
    name = (
        validate_name("skill", path.resolve().name) if name is None else parse_name("skill", name)
    )
    try:
        return name, read_files(path)
    except OSError as error:
        raise ConfigError(f"{folder}: {error.strerror or error}") from None


# --- harness only ----------------------------------------------------------------------------


def _render(args: argparse.Namespace, settings: Settings) -> int:
    ref = parse_ref("harness", args.ref)
    attempt = parse_version(args.attempt, "--attempt") if args.attempt is not None else 1
    from harness_store.errors import RenderError  # here, not on top: see the docstring
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
                url=f"https://github.com/{_SAMPLE_REPO}/issues/{_SAMPLE_NUMBER}",
                labels=("openase",),
            ),
            repository=RepositoryVars(
                full_name=_SAMPLE_REPO,
                default_branch="main",
                clone_url=f"https://github.com/{_SAMPLE_REPO}.git",
            ),
            attempt=attempt,
        )
    except RenderError as error:
        raise OpenaseError(f"{found.label} does not render: {error}") from None
    _write(text if text.endswith("\n") else text + "\n")
    return 0


def _pin(args: argparse.Namespace, settings: Settings) -> int:
    full_name, number = parse_ticket(args.ticket)
    ref = parse_ref("harness", args.ref)
    pinned_by = args.author or default_author()
    from harness_store import store  # here, not on top: see the docstring

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
    from harness_store import store  # here, not on top: see the docstring

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
    with StoreClient(settings) as client:
        found = client.get(_version_path("skill", ref))
    label = f"{found['name']}@{found['version']}"
    try:
        written = write_new_folder(found["files"], folder)
    except FileExistsError as error:
        raise OpenaseError(f"{error.filename}: already exists; export never overwrites") from None
    except OSError as error:
        raise OpenaseError(f"{args.dir}: {error.strerror or error}") from None
    print(f"exported {label} to {folder} ({written} files)")
    return 0


def _check_empty(folder: Path) -> None:
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise ConfigError(f"{folder}: exists and is not a folder; export writes a new folder")
    if folder.is_dir() and any(folder.iterdir()):
        raise ConfigError(f"{folder}: not empty; export writes only into a new or empty folder")


def write_new_folder(files: dict[str, str], folder: Path) -> int:
    """Write a skill's files into a new or empty `folder`, all or nothing; how many."""
    from harness_store.skills import write_skill_dir  # here, not on top: see the docstring

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
    "push": _push,
    "render": _render,
    "pin": _pin,
    "unpin": _unpin,
    "export": _export,
}
