"""`openase harness …` and `openase skill …` end to end: `bot.processes.cli.main` as a client of the
real app, served by uvicorn on 127.0.0.1 over a real Postgres (`render`, `pin` and `unpin`
use the database directly).

`main` blocks (and `render`/`pin` run their own event loop), so each call runs in a worker
thread while the test's loop serves the app.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
from collections.abc import AsyncIterator, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from structlog.testing import capture_logs

from bot.deps import Deps
from bot.processes.cli import main
from bot.settings import Settings
from bot.tables.mirror import Repository, Ticket
from harness_store.builtin_content import builtin_harnesses
from harness_store.db import transaction
from harness_store.models import HarnessVersion, SkillVersion, TicketHarnessPin
from harness_store.seed import seed_builtins
from tests.conftest import Services
from tests.support.browser import served

V1 = "# {{ ticket.key }}\n\nFix it.\nKeep it small.\n"
V2 = "# {{ ticket.key }}\n\nFix it well.\nKeep it small.\n"
SKILL_MD = "---\nname: lint\ndescription: Run the linters.\n---\n\nRun `scripts/run.sh`.\n"
TOKEN = "admin-token-for-tests"


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


def _main(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse's own usage errors
        return int(exit_.code or 0)


class Openase:
    """Runs `openase ARGS…` in-process and captures what it printed."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    async def __call__(self, *argv: str | Path) -> Outcome:
        self.capsys.readouterr()
        code = await asyncio.to_thread(_main, [str(arg) for arg in argv])
        out, err = self.capsys.readouterr()
        return Outcome(code, out, err)

    async def refused(self, code: int, *argv: str | Path) -> str:
        """Run a command expected to fail; its one stderr line."""
        done = await self(*argv)
        assert (done.code, done.out) == (code, ""), done
        assert done.err.startswith("openase: "), done.err
        assert done.err.count("\n") == 1, done.err  # one line, no traceback
        return done.err.removeprefix("openase: ").rstrip("\n")


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No OPENASE_* from the caller; a data dir nobody runs `up` in; a known $USER."""
    for name in list(os.environ):
        if name.startswith("OPENASE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OPENASE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("USER", "tester")
    # Tests of `up` or `serve` earlier in the process leave logging configured as those
    # commands do; a harness command's own process never configures it, so httpx's
    # per-request INFO lines never reach its stderr.
    httpx_log = logging.getLogger("httpx")
    level = httpx_log.level
    httpx_log.setLevel(logging.WARNING)
    yield
    httpx_log.setLevel(level)


def _with_token(deps: Deps, monkeypatch: pytest.MonkeyPatch, token: str | None) -> None:
    """The served app's settings: `served` reads them from `deps`."""
    settings: Settings = deps.settings.model_copy(
        update={"admin_token": None if token is None else SecretStr(token)}
    )
    monkeypatch.setattr(deps, "settings", settings)


@dataclass(frozen=True)
class Server:
    url: str
    logs: list[MutableMapping[str, Any]]  # what the app logged (kept off the CLI's stdout)


@pytest.fixture
async def server(
    environment: None, deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Server]:
    """The app with an admin token, on 127.0.0.1 over the test database."""
    _with_token(deps, monkeypatch, TOKEN)
    with capture_logs() as logs:
        async with served(deps) as url:
            yield Server(url, logs)


@pytest.fixture
def openase(
    server: Server,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Openase:
    """The CLI talking to `server` with its token (and to the test database)."""
    monkeypatch.setenv("OPENASE_URL", server.url)
    monkeypatch.setenv("OPENASE_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("OPENASE_DATABASE_URL", services.database_url)
    return Openase(capsys)


async def _count(deps: Deps, model: type[HarnessVersion] | type[SkillVersion]) -> int:
    async with deps.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model)) or 0


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _skill_dir(root: Path, script: str, name: str = "lint", skill_md: str = SKILL_MD) -> Path:
    folder = root / name
    (folder / "scripts").mkdir(parents=True)
    (folder / "SKILL.md").write_text(skill_md)
    (folder / "scripts" / "run.sh").write_text(script)
    return folder


async def test_publish_list_show_history_diff_and_rollback(
    openase: Openase, tmp_path: Path
) -> None:
    # `publish` is the older name of `push`.
    first = await openase("harness", "publish", "coder", _file(tmp_path, "a.md", V1), "-m", "new")
    assert (first.code, first.out, first.err) == (0, "published coder@1\n", "")
    second = await openase("harness", "push", "coder", _file(tmp_path, "b.md", V2))
    assert second.out == "published coder@2\n"
    again = await openase("harness", "push", "coder", tmp_path / "b.md", "--author", "bob")
    assert (again.code, again.out) == (0, "unchanged: coder@2 already has this content\n")

    listing = (await openase("harness", "list")).out.splitlines()
    assert listing[0].split() == ["NAME", "CURRENT", "VERSIONS", "AUTHOR", "UPDATED"]
    assert listing[1].split()[:4] == ["coder", "2", "2", "tester"]
    assert len(listing) == 2

    assert (await openase("harness", "show", "coder")).out == V2
    assert (await openase("harness", "show", "coder@1")).out == V1
    meta = (await openase("harness", "show", "coder@1", "--meta")).out
    assert f"hash: {hashlib.sha256(V1.encode()).hexdigest()}\n" in meta
    for line in ("name: coder", "version: 1", "author: tester", "message: new", "created_at: "):
        assert line in meta

    history = (await openase("harness", "history", "coder")).out.splitlines()
    assert history[0].split() == ["VERSION", "HASH", "AUTHOR", "DATE", "MESSAGE"]
    assert [row.split()[0] for row in history[1:]] == ["2", "1"]
    assert history[2].split()[1] == hashlib.sha256(V1.encode()).hexdigest()[:12]
    assert history[2].endswith("  new")

    diff = (await openase("harness", "diff", "coder", "1", "2")).out
    assert diff.startswith("--- coder@1\n+++ coder@2\n")
    assert "-Fix it.\n+Fix it well.\n" in diff
    assert (await openase("harness", "diff", "coder", "2", "2")).out == "no differences\n"

    rolled = await openase("harness", "rollback", "coder", "1")
    assert (rolled.code, rolled.out) == (0, "published coder@3 (equal to coder@1)\n")
    assert (await openase("harness", "show", "coder")).out == V1
    history = (await openase("harness", "history", "coder")).out.splitlines()
    assert history[1].endswith("  roll back to version 1")
    again = await openase("harness", "rollback", "coder", "1", "-m", "really")
    assert again.out == "unchanged: coder@3 already equals version 1\n"


async def test_show_then_publish_is_unchanged(openase: Openase, tmp_path: Path) -> None:
    no_newline = "{{ ticket.key }} without a final newline"
    await openase("harness", "push", "docs", _file(tmp_path, "d.md", no_newline))
    shown = (await openase("harness", "show", "docs")).out
    assert shown == no_newline
    again = await openase("harness", "push", "docs", _file(tmp_path, "e.md", shown))
    assert again.out == "unchanged: docs@1 already has this content\n"


async def test_publish_reads_standard_input(
    openase: Openase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(V1))
    assert (await openase("harness", "push", "coder", "-")).out == "published coder@1\n"
    assert (await openase("harness", "show", "coder")).out == V1


async def test_every_built_in_harness_renders(openase: Openase, deps: Deps) -> None:
    async with transaction(deps.sessions) as session:
        await seed_builtins(session)
    for name in builtin_harnesses():
        done = await openase("harness", "render", name, "--attempt", "2")
        assert (done.code, done.err) == (0, ""), name
        assert "example/project#1" in done.out


async def test_render_uses_sample_variables_and_reports_the_failing_line(
    openase: Openase, tmp_path: Path, deps: Deps
) -> None:
    template = (
        "{{ ticket.key }} in {{ repository.full_name }}, attempt {{ attempt }}\n"
        "{% if attempt > 1 %}Again.{% endif %}\n"
    )
    await openase("harness", "push", "coder", _file(tmp_path, "t.md", template))
    plain = await openase("harness", "render", "coder")
    assert (plain.code, plain.out) == (0, "example/project#1 in example/project, attempt 1\n")
    third = await openase("harness", "render", "coder@1", "--attempt", "3")
    assert third.out == "example/project#1 in example/project, attempt 3\nAgain.\n"

    broken = "Fine first line.\nThen {{ ticket.nope }}.\n"
    await openase("harness", "push", "coder", _file(tmp_path, "u.md", broken))
    error = await openase.refused(1, "harness", "render", "coder")
    assert error.startswith("coder@2 does not render: line 2:")
    assert "ticket.nope" in error
    assert await _count(deps, HarnessVersion) == 2  # rendering stored nothing


async def test_an_invalid_template_is_refused_with_its_line_and_nothing_stored(
    openase: Openase, tmp_path: Path, deps: Deps
) -> None:
    broken = _file(tmp_path, "broken.md", "line one\n{{ ticket.key \n")
    error = await openase.refused(1, "harness", "push", "coder", broken)
    assert error.startswith("harness 'coder' is not a valid template: line 2:")
    assert await _count(deps, HarnessVersion) == 0

    await openase("harness", "push", "coder", _file(tmp_path, "ok.md", V1))
    await openase.refused(1, "harness", "push", "coder", broken)
    unsafe = _file(tmp_path, "unsafe.md", "ok\n{% include 'x' %}\n")
    error = await openase.refused(1, "harness", "push", "coder", unsafe)
    assert "line 2: harness templates cannot extend, include or import" in error
    assert await _count(deps, HarnessVersion) == 1
    assert (await openase("harness", "show", "coder")).out == V1

    error = await openase.refused(2, "harness", "push", "coder", tmp_path / "missing.md")
    assert error.startswith(f"{tmp_path / 'missing.md'}: ")


async def test_skill_publish_show_diff_rollback_and_export(
    openase: Openase, tmp_path: Path
) -> None:
    folder = _skill_dir(tmp_path / "src", "ruff check .\n")
    first = await openase("skill", "push", "lint", folder, "-m", "first")
    assert (first.code, first.out) == (0, "published lint@1\n")
    (folder / "scripts" / "run.sh").write_text("ruff check .\nmypy .\n")
    (folder / "notes.md").write_text("Runs in CI too.\n")
    assert (await openase("skill", "push", "lint", folder)).out == "published lint@2\n"
    # With DIR alone (and as `publish`) the folder's name is the skill's.
    same = await openase("skill", "publish", folder)
    assert same.out == "unchanged: lint@2 already has this content\n"

    listing = (await openase("skill", "list")).out.splitlines()
    assert listing[1].split()[:4] == ["lint", "2", "2", "tester"]
    shown = (await openase("skill", "show", "lint")).out.splitlines()
    assert [line.split() for line in shown] == [
        [str(len(SKILL_MD)), "SKILL.md"],
        ["16", "notes.md"],
        ["20", "scripts/run.sh"],
    ]
    script = await openase("skill", "show", "lint@1", "--file", "scripts/run.sh")
    assert script.out == "ruff check .\n"
    error = await openase.refused(1, "skill", "show", "lint@1", "--file", "notes.md")
    assert error == "skill lint@1 has no file 'notes.md'; it has SKILL.md, scripts/run.sh"
    assert "version: 2" in (await openase("skill", "show", "lint", "--meta")).out

    diff = (await openase("skill", "diff", "lint", "1", "2")).out
    assert "--- /dev/null\n+++ lint@2/notes.md\n" in diff
    assert "--- lint@1/scripts/run.sh\n+++ lint@2/scripts/run.sh\n" in diff
    assert "+mypy .\n" in diff
    history = (await openase("skill", "history", "lint")).out.splitlines()
    assert [row.split()[0] for row in history[1:]] == ["2", "1"]

    exported = await openase("skill", "export", "lint@2", tmp_path / "out" / "lint")
    assert exported.out == f"exported lint@2 to {tmp_path / 'out' / 'lint'} (3 files)\n"
    assert (
        tmp_path / "out" / "lint" / "scripts" / "run.sh"
    ).read_text() == "ruff check .\nmypy .\n"
    again = await openase("skill", "push", tmp_path / "out" / "lint")
    assert again.out == "unchanged: lint@2 already has this content\n"  # a faithful round trip
    error = await openase.refused(2, "skill", "export", "lint@1", tmp_path / "out" / "lint")
    assert "not empty" in error
    assert (tmp_path / "out" / "lint" / "notes.md").exists()  # nothing overwritten or removed

    (tmp_path / "empty").mkdir()
    assert (await openase("skill", "export", "lint@1", tmp_path / "empty")).code == 0
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == ["SKILL.md", "scripts"]

    rolled = await openase("skill", "rollback", "lint", "1", "--message", "CI is slow")
    assert rolled.out == "published lint@3 (equal to lint@1)\n"
    assert "message: CI is slow" in (await openase("skill", "show", "lint", "--meta")).out
    assert (await openase("skill", "show", "lint")).out.count("\n") == 2


async def test_an_invalid_skill_folder_is_refused_and_nothing_stored(
    openase: Openase, tmp_path: Path, deps: Deps
) -> None:
    wrong_name = _skill_dir(tmp_path / "a", "x\n", name="Lint_Tool")
    assert "invalid skill name 'Lint_Tool'" in await openase.refused(
        1, "skill", "publish", wrong_name
    )
    mismatch = _skill_dir(tmp_path / "b", "x\n", name="format")
    error = await openase.refused(1, "skill", "publish", mismatch)
    assert error.startswith("SKILL.md: front matter name 'lint' must equal the skill's name")
    no_front_matter = _skill_dir(tmp_path / "c", "x\n", skill_md="# Lint\n")
    error = await openase.refused(1, "skill", "publish", no_front_matter)
    assert error.startswith("SKILL.md must start with YAML front matter")
    error = await openase.refused(2, "skill", "publish", tmp_path / "nowhere")
    assert "not a folder" in error
    assert await _count(deps, SkillVersion) == 0


async def _mirrored_ticket(deps: Deps) -> int:
    async with transaction(deps.sessions) as session:
        session.add(Repository(id=7, full_name="Octo/Hello"))
        await session.flush()
        ticket = Ticket(
            source="github",
            external_id="9001",
            repository_id=7,
            number=12,
            key="Octo/Hello#12",
            state="open",
        )
        session.add(ticket)
        await session.flush()
        return ticket.id


async def _pin(deps: Deps, ticket_id: int) -> tuple[str, int, str | None] | None:
    async with deps.sessions() as session:
        pin = await session.get(TicketHarnessPin, ticket_id)
        return None if pin is None else (pin.harness_name, pin.harness_version, pin.pinned_by)


async def test_pin_and_unpin_a_mirrored_ticket(
    openase: Openase, tmp_path: Path, deps: Deps
) -> None:
    ticket_id = await _mirrored_ticket(deps)
    await openase("harness", "push", "coder", _file(tmp_path, "a.md", V1))
    await openase("harness", "push", "coder", _file(tmp_path, "b.md", V2))

    pinned = await openase("harness", "pin", "octo/hello#12", "coder@1")
    assert (pinned.code, pinned.out) == (0, "pinned Octo/Hello#12 to coder@1\n")
    assert await _pin(deps, ticket_id) == ("coder", 1, "tester")
    repinned = await openase("harness", "pin", "Octo/Hello#12", "coder", "--author", "ops")
    assert repinned.out == "pinned Octo/Hello#12 to coder@2\n"
    assert await _pin(deps, ticket_id) == ("coder", 2, "ops")

    error = await openase.refused(1, "harness", "pin", "octo/hello#12", "coder@9")
    assert error == "harness 'coder' has no version 9 (versions 1 to 2)"
    assert await _pin(deps, ticket_id) == ("coder", 2, "ops")  # the failed pin changed nothing
    error = await openase.refused(1, "harness", "pin", "octo/hello#13", "coder")
    assert error.startswith("octo/hello#13 is not in the mirror")
    assert "openase sync octo/hello" in error
    await openase.refused(1, "harness", "pin", "octo/other#12", "coder")

    unpinned = await openase("harness", "unpin", "octo/hello#12")
    assert unpinned.out == "unpinned Octo/Hello#12 (was coder@2)\n"
    assert await _pin(deps, ticket_id) is None
    assert (await openase("harness", "unpin", "octo/hello#12")).out == "Octo/Hello#12 had no pin\n"
    await openase.refused(1, "harness", "unpin", "octo/hello#13")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["harness", "show", "nope"], "no harness named 'nope'"),
        (["harness", "show", "coder@4"], "harness 'coder' has no version 4 (versions 1 to 1)"),
        (["harness", "history", "nope"], "no harness named 'nope'"),
        (["harness", "diff", "coder", "1", "2"], "harness 'coder' has no version 2"),
        (["harness", "rollback", "nope", "1"], "no harness named 'nope'"),
        (["harness", "render", "nope"], "no harness named 'nope'"),
        (["harness", "pin", "octo/hello#1", "nope"], "octo/hello#1 is not in the mirror"),
        (["skill", "show", "coder"], "no skill named 'coder'"),
        (["skill", "history", "nope"], "no skill named 'nope'"),
        (["skill", "export", "nope", "{tmp}/x"], "no skill named 'nope'"),
    ],
)
async def test_unknown_names_and_versions_exit_1(
    openase: Openase, tmp_path: Path, argv: list[str], message: str
) -> None:
    await openase("harness", "push", "coder", _file(tmp_path, "a.md", V1))
    error = await openase.refused(1, *(arg.format(tmp=tmp_path) for arg in argv))
    assert error.startswith(message)
    assert not (tmp_path / "x").exists()


async def test_an_empty_store_lists_nothing(openase: Openase) -> None:
    assert (await openase("harness", "list")).out == "no harnesses in the store\n"
    assert (await openase("skill", "list")).out == "no skills in the store\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["harness", "show", "coder@x"], "expected NAME or NAME@VERSION"),
        (["harness", "show", "coder@"], "expected NAME or NAME@VERSION"),
        (["harness", "show", "coder@0"], "expected NAME or NAME@VERSION"),
        (["harness", "show", "coder@1@2"], "expected NAME or NAME@VERSION"),
        (["skill", "show", "lint@-1"], "expected NAME or NAME@VERSION"),
        (["harness", "show", "Coder"], "invalid harness name 'Coder'"),
        (["harness", "history", "co der"], "invalid harness name 'co der'"),
        (["harness", "diff", "coder", "1", "two"], "V2 must be a whole number from 1"),
        (["skill", "rollback", "lint", "1.5"], "VERSION must be a whole number from 1"),
        (["harness", "render", "coder", "--attempt", "0"], "--attempt must be a whole number"),
        (["harness", "pin", "octo/hello", "coder"], "expected OWNER/REPO#NUMBER"),
        (["harness", "pin", "octo/hello#x", "coder"], "expected OWNER/REPO#NUMBER"),
        (["harness", "unpin", "octo#12"], "expected OWNER/REPO#NUMBER"),
        (["harness", "push", "Coder", "-"], "invalid harness name 'Coder'"),
        (["skill", "push", "Lint", "."], "invalid skill name 'Lint'"),
        (["skill", "push", "lint", "{tmp}/nowhere"], "not a folder"),
        (["skill", "export", "lint@x", "{tmp}/out"], "expected NAME or NAME@VERSION"),
    ],
)
async def test_malformed_arguments_exit_2_before_reaching_the_server(
    environment: None,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
    tmp_path: Path,
) -> None:
    # No server (nor database) configured: reaching for one would fail with exit status 1.
    error = await Openase(capsys).refused(2, *(arg.format(tmp=tmp_path) for arg in argv))
    assert message in error


async def test_without_a_database_pin_says_what_to_do(
    environment: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    error = await Openase(capsys).refused(2, "harness", "pin", "octo/hello#1", "coder")
    assert error.startswith("OPENASE_DATABASE_URL is not set, and no `openase up` is running")
    assert str(tmp_path / "data") in error


async def test_an_unreachable_database_is_one_line(
    environment: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Port 9 (discard) on loopback: nothing listens, so the connection is refused at once.
    monkeypatch.setenv("OPENASE_DATABASE_URL", "postgresql://u:secret-pw@127.0.0.1:9/db")
    error = await Openase(capsys).refused(1, "harness", "render", "coder")
    assert error.startswith("cannot reach the database: ")
    assert "secret-pw" not in error


def test_a_missing_argument_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["harness", "diff", "coder", "1"])
    assert exit_.value.code == 2
    assert "usage: openase harness diff" in capsys.readouterr().err


async def test_a_failed_export_leaves_no_folder_behind(openase: Openase, tmp_path: Path) -> None:
    # A file path the skill allows but this export cannot write (the whole path passes
    # PATH_MAX), after SKILL.md was already written.
    long_file = "r" * 100
    folder = _skill_dir(tmp_path / "src", "x\n")
    (folder / "scripts" / long_file).write_text("too deep to export\n")
    assert (await openase("skill", "push", "lint", folder)).out == "published lint@1\n"
    outer = tmp_path / "deep"
    target = outer
    while len(str(target)) < 3990:
        target /= "d" * 200
    target = Path(str(target)[:3990].rstrip("/"))
    error = await openase.refused(1, "skill", "export", "lint", target)
    assert error.endswith("File name too long")
    assert not outer.exists()  # SKILL.md and every folder made for it are gone again


async def test_an_unmigrated_database_says_to_migrate(
    openase: Openase, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from harness_store.db import make_engine

    engine = make_engine(services.database_url).execution_options(isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text("DROP DATABASE IF EXISTS openase_bare"))
            await connection.execute(text("CREATE DATABASE openase_bare"))
        bare = make_url(services.database_url).set(database="openase_bare")
        monkeypatch.setenv("OPENASE_DATABASE_URL", bare.render_as_string(hide_password=False))
        error = await openase.refused(1, "harness", "render", "coder")
        assert error.startswith("the database has no harness store yet (")
        assert error.endswith("): run `openase migrate` first")
    finally:
        async with engine.connect() as connection:
            await connection.execute(text("DROP DATABASE IF EXISTS openase_bare"))
        await engine.dispose()


# --- the CLI as a client: where the server is, tokens, and the server's refusals ------------


async def test_the_default_server_is_this_machines_own(
    server: Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # No OPENASE_URL: the server `openase up` would run with this OPENASE_HOST/PORT; one
    # bound to every address is reached on loopback.
    port = server.url.rsplit(":", 1)[1]
    monkeypatch.setenv("OPENASE_PORT", port)
    monkeypatch.setenv("OPENASE_HOST", "0.0.0.0")  # noqa: S104  # the setting, nothing binds it
    monkeypatch.setenv("OPENASE_ADMIN_TOKEN", TOKEN)
    done = await Openase(capsys)("harness", "list")
    assert (done.code, done.out) == (0, "no harnesses in the store\n")


async def test_an_unreachable_server_is_named_with_what_to_do(
    environment: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENASE_URL", "http://127.0.0.1:9/")  # discard port: refused at once
    openase = Openase(capsys)
    for argv in (
        ["harness", "list"],
        ["skill", "show", "lint"],
        ["harness", "diff", "a", "1", "2"],
    ):
        error = await openase.refused(1, *argv)
        assert error.startswith("cannot reach the openase server at http://127.0.0.1:9 (")
        assert error.endswith("start it with `openase up`, or set OPENASE_URL to a running server")


async def test_a_missing_or_wrong_token_says_to_set_it(
    server: Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    deps: Deps,
) -> None:
    monkeypatch.setenv("OPENASE_URL", server.url)
    openase = Openase(capsys)
    error = await openase.refused(2, "harness", "push", "coder", _file(tmp_path, "a.md", V1))
    assert error == (
        f"the server at {server.url} needs a token (Authorization: missing bearer token): "
        "set OPENASE_ADMIN_TOKEN to the server's admin token"
    )
    monkeypatch.setenv("OPENASE_ADMIN_TOKEN", "not-the-token")
    error = await openase.refused(2, "harness", "list")
    assert error.startswith(f"the server at {server.url} refused OPENASE_ADMIN_TOKEN (")
    assert "not-the-token" not in error
    assert await _count(deps, HarnessVersion) == 0


async def test_a_server_without_a_token_serves_reads_and_refuses_writes(
    environment: None,
    deps: Deps,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    _with_token(deps, monkeypatch, None)
    async with served(deps) as url:
        monkeypatch.setenv("OPENASE_URL", url)
        openase = Openase(capsys)
        assert (await openase("harness", "list")).out == "no harnesses in the store\n"
        error = await openase.refused(2, "harness", "push", "coder", _file(tmp_path, "a.md", V1))
        assert error.startswith(f"the server at {url} refused: writes need an admin token: set ")
        assert "OPENASE_ADMIN_TOKEN on the server" in error
    assert await _count(deps, HarnessVersion) == 0


async def test_the_servers_refusals_are_printed_as_it_says_them(
    openase: Openase, server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = _file(tmp_path, "a.md", V1)
    error = await openase.refused(1, "harness", "push", "coder", template, "-m", "m" * 4001)
    assert error == "message: longer than 4000 characters"
    huge = _file(tmp_path, "huge.md", "x" * (256 * 1024 + 1))
    error = await openase.refused(1, "harness", "push", "coder", huge)
    assert error == "content: larger than 262144 bytes"
    error = await openase.refused(1, "harness", "push", "coder", template, "--author", "a\tb")
    assert error.startswith("author: at most 200 characters, no control characters")

    monkeypatch.setenv("OPENASE_URL", server.url + "/not-openase")
    error = await openase.refused(1, "harness", "list")
    assert error == (
        f"{server.url}/not-openase answered 404 Not Found without an openase error: is "
        "OPENASE_URL an openase server?"
    )


async def test_push_names_a_skill_apart_from_its_folder_and_is_logged(
    openase: Openase, server: Server, tmp_path: Path
) -> None:
    folder = _skill_dir(tmp_path, "ruff check .\n", name="checked-out-copy")
    done = await openase(
        "skill", "push", "lint", folder, "-m", "from a checkout", "--author", "ann"
    )
    assert (done.code, done.out) == (0, "published lint@1\n")
    meta = (await openase("skill", "show", "lint", "--meta")).out
    assert "author: ann\n" in meta
    assert "message: from a checkout" in meta
    error = await openase.refused(1, "skill", "push", "format", folder)
    assert error.startswith("SKILL.md: front matter name 'lint' must equal the skill's name")

    published = [entry for entry in server.logs if entry["event"] == "store_version_published"]
    assert [(e["kind"], e["label"], e["author"]) for e in published] == [("skill", "lint@1", "ann")]
    assert TOKEN not in repr(server.logs)
