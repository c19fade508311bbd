"""The harness store against a real Postgres: versions, diff, rollback, pins, runs."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.deps import Deps
from bot.tables.mirror import Ticket
from harness_store import store
from harness_store.db import transaction
from harness_store.errors import (
    InvalidFrontMatter,
    InvalidHarness,
    InvalidName,
    InvalidSkill,
    InvalidSkillPath,
    NameNotFound,
    PublishConflict,
    SkillTooLarge,
    TicketNotFound,
    VersionNotFound,
)
from harness_store.models import HarnessVersion, RunVersions, SkillVersion, TicketHarnessPin
from harness_store.skills import (
    MAX_FILE_BYTES,
    MAX_FILES,
    files_hash,
    read_skill_dir,
    validate_skill,
    write_skill_dir,
)

SKILL_MD = "---\nname: lint\ndescription: Run the linters.\n---\n\n# Lint\n\nRun `ruff check .`\n"


def _skill(**extra: str) -> dict[str, str]:
    return {"SKILL.md": SKILL_MD, **extra}


async def _harness(deps: Deps, name: str, content: str, **kwargs: str) -> HarnessVersion:
    async with transaction(deps.sessions) as session:
        return await store.publish_harness(
            session, name, content, author=kwargs.get("author", "alice"), message="edit"
        )


async def _ticket(session: AsyncSession, number: int = 1) -> int:
    ticket = Ticket(
        source="github", external_id=str(number), key=f"octo/hello#{number}", state="open"
    )
    session.add(ticket)
    await session.flush()
    return ticket.id


async def test_a_version_is_added_only_when_the_content_changes(deps: Deps) -> None:
    first = await _harness(deps, "coder", "Fix {{ ticket.key }}.\n")
    again = await _harness(deps, "coder", "Fix {{ ticket.key }}.\n", author="bob")
    windows = await _harness(deps, "coder", "Fix {{ ticket.key }}.\r\n")
    second = await _harness(deps, "coder", "Fix {{ ticket.key }} carefully.\n")

    assert (first.version, again.id, windows.id) == (1, first.id, first.id)
    assert again.author == "alice"  # the unchanged publish stored nothing
    assert second.version == 2
    assert first.content_hash == hashlib.sha256(b"Fix {{ ticket.key }}.\n").hexdigest()
    async with deps.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(HarnessVersion)) == 2


async def test_a_skill_is_versioned_as_a_whole_folder(deps: Deps) -> None:
    async with transaction(deps.sessions) as session:
        first = await store.publish_skill(session, "lint", _skill(**{"a.sh": "ruff"}), author="a")
        # Same files in another order: the same folder.
        same = await store.publish_skill(
            session, "lint", {"a.sh": "ruff", "SKILL.md": SKILL_MD}, author="a"
        )
        renamed = await store.publish_skill(session, "lint", _skill(**{"b.sh": "ruff"}), author="a")
        edited = await store.publish_skill(
            session, "lint", _skill(**{"b.sh": "ruff ."}), author="a"
        )

    assert (first.version, same.id, renamed.version, edited.version) == (1, first.id, 2, 3)
    assert first.files == {"SKILL.md": SKILL_MD, "a.sh": "ruff"}
    assert first.content_hash == files_hash({"a.sh": "ruff", "SKILL.md": SKILL_MD})
    assert len({first.content_hash, renamed.content_hash, edited.content_hash}) == 3


async def test_current_by_version_and_listings(deps: Deps) -> None:
    for text in ("one", "two", "three"):
        await _harness(deps, "coder", text)
    await _harness(deps, "docs", "write")
    async with deps.sessions() as session:
        current = await store.current(session, HarnessVersion, "coder")
        second = await store.get_version(session, HarnessVersion, "coder", 2)
        versions = await store.list_versions(session, HarnessVersion, "coder")
        names = await store.list_names(session, HarnessVersion)
        assert await store.current(session, HarnessVersion, "nope") is None
        assert await store.list_versions(session, HarnessVersion, "nope") == []
        assert await store.list_names(session, SkillVersion) == []
        with pytest.raises(VersionNotFound, match=r"'coder' has no version 9 \(versions 1 to 3\)"):
            await store.get_version(session, HarnessVersion, "coder", 9)
        with pytest.raises(NameNotFound, match="no harness named 'nope'"):
            await store.get_version(session, HarnessVersion, "nope", 1)

    assert current is not None
    assert (current.version, current.content, current.label) == (3, "three", "coder@3")
    assert second.content == "two"
    assert [v.version for v in versions] == [3, 2, 1]
    assert [(n.name, n.current_version, n.versions) for n in names] == [
        ("coder", 3, 3),
        ("docs", 1, 1),
    ]


async def test_diff_between_two_harness_versions(deps: Deps) -> None:
    await _harness(deps, "coder", "# Task\nFix {{ ticket.key }}.\nCommit often.\n")
    await _harness(deps, "coder", "# Task\nFix {{ ticket.key }} now.\nCommit often.")
    async with deps.sessions() as session:
        diff = await store.diff_versions(session, HarnessVersion, "coder", 1, 2)
        assert await store.diff_versions(session, HarnessVersion, "coder", 2, 2) == ""

    assert diff == (
        "--- coder@1\n"
        "+++ coder@2\n"
        "@@ -1,3 +1,3 @@\n"
        " # Task\n"
        "-Fix {{ ticket.key }}.\n"
        "-Commit often.\n"
        "+Fix {{ ticket.key }} now.\n"
        "+Commit often.\n"
        "\\ No newline at end of file\n"
    )


async def test_diff_between_two_skill_versions_is_per_file(deps: Deps) -> None:
    async with transaction(deps.sessions) as session:
        await store.publish_skill(
            session, "lint", _skill(**{"old.sh": "a\n", "keep": "k\n"}), author="a"
        )
        await store.publish_skill(
            session, "lint", _skill(**{"new.sh": "b\n", "keep": "K\n"}), author="a"
        )
        diff = await store.diff_versions(session, SkillVersion, "lint", 1, 2)

    assert diff == (
        "--- lint@1/keep\n+++ lint@2/keep\n@@ -1 +1 @@\n-k\n+K\n"
        "--- /dev/null\n+++ lint@2/new.sh\n@@ -0,0 +1 @@\n+b\n"
        "--- lint@1/old.sh\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n"
    )


async def test_rollback_publishes_the_old_content_as_a_new_version(deps: Deps) -> None:
    await _harness(deps, "coder", "first")
    await _harness(deps, "coder", "second")
    async with transaction(deps.sessions) as session:
        rolled = await store.rollback(session, HarnessVersion, "coder", 1, author="carol")
        unchanged = await store.rollback(session, HarnessVersion, "coder", 3, author="carol")
        await store.publish_skill(session, "lint", _skill(), author="a")
        await store.publish_skill(session, "lint", _skill(**{"x": "y"}), author="a")
        skill = await store.rollback(session, SkillVersion, "lint", 1, author="carol")
        with pytest.raises(VersionNotFound):
            await store.rollback(session, HarnessVersion, "coder", 7, author="carol")

    assert (rolled.version, rolled.content, rolled.author) == (3, "first", "carol")
    assert rolled.message == "roll back to version 1"
    assert unchanged.id == rolled.id  # already equal: nothing new
    assert (skill.version, skill.files) == (3, _skill())


async def test_pin_and_resolve_a_harness_per_ticket(deps: Deps) -> None:
    await _harness(deps, "coder", "v1")
    await _harness(deps, "coder", "v2")
    await _harness(deps, "reviewer", "r1")
    async with transaction(deps.sessions) as session:
        ticket = await _ticket(session)
        other = await _ticket(session, 2)
        assert (await store.resolve_harness(session, ticket, "coder")).version == 2
        assert await store.pinned_harness(session, ticket) is None

        pinned = await store.pin_harness(session, ticket, "coder", 1, pinned_by="alice")
        assert pinned.label == "coder@1"
    await _harness(deps, "coder", "v3")
    async with transaction(deps.sessions) as session:
        assert (await store.resolve_harness(session, ticket, "coder")).label == "coder@1"
        assert (await store.resolve_harness(session, other, "coder")).label == "coder@3"

        # Re-pinning replaces, also across names; no version means the current one.
        await store.pin_harness(session, ticket, "reviewer")
        assert (await store.resolve_harness(session, ticket, "coder")).label == "reviewer@1"
        pins = (await session.execute(select(TicketHarnessPin))).scalars().all()
        assert [(p.ticket_id, p.harness_name, p.pinned_by) for p in pins] == [
            (ticket, "reviewer", None)
        ]

        assert await store.unpin_harness(session, ticket) is True
        assert await store.unpin_harness(session, ticket) is False
        assert (await store.resolve_harness(session, ticket, "coder")).label == "coder@3"

        with pytest.raises(TicketNotFound, match="no ticket with id 999"):
            await store.pin_harness(session, 999, "coder")
        with pytest.raises(VersionNotFound):
            await store.pin_harness(session, ticket, "coder", 4)
        with pytest.raises(NameNotFound):
            await store.pin_harness(session, ticket, "nope")
        with pytest.raises(NameNotFound):
            await store.resolve_harness(session, ticket, "nope")

        # A deleted ticket takes its pin with it.
        await store.pin_harness(session, other, "coder", 2)
        await session.execute(delete(Ticket).where(Ticket.id == other))
        assert await session.scalar(select(func.count()).select_from(TicketHarnessPin)) == 0


async def test_runs_are_recorded_with_the_versions_they_used(deps: Deps) -> None:
    async with transaction(deps.sessions) as session:
        ticket = await _ticket(session)
        coder1 = await store.publish_harness(session, "coder", "v1", author="a")
        coder2 = await store.publish_harness(session, "coder", "v2", author="a")
        lint = await store.publish_skill(session, "lint", _skill(), author="a")
        tests = await store.publish_skill(
            session,
            "tests",
            {"SKILL.md": SKILL_MD.replace("name: lint", "name: tests")},
            author="a",
        )
        await store.record_run_versions(
            session,
            "run-1",
            harness_version_id=coder1.id,
            skill_version_ids=[lint.id],
            ticket_id=ticket,
        )
        await store.record_run_versions(
            session, "run-2", harness_version_id=coder1.id, skill_version_ids=[lint.id, tests.id]
        )
        await store.record_run_versions(session, "run-3", harness_version_id=coder2.id)
        # Recording a run again replaces what it used.
        again = await store.record_run_versions(
            session, "run-3", harness_version_id=coder2.id, skill_version_ids=[tests.id]
        )
        assert again.skill_version_ids == [tests.id]

        def runs(found: list[RunVersions]) -> list[str]:
            return [run.run_id for run in found]

        assert runs(await store.runs_using(session, coder1)) == ["run-2", "run-1"]
        assert runs(await store.runs_using(session, coder2)) == ["run-3"]
        assert runs(await store.runs_using(session, lint)) == ["run-2", "run-1"]
        assert runs(await store.runs_using(session, tests)) == ["run-3", "run-2"]

        with pytest.raises(VersionNotFound, match="no skill version with id 12345"):
            await store.record_run_versions(
                session, "run-4", harness_version_id=coder1.id, skill_version_ids=[12345]
            )
        with pytest.raises(VersionNotFound, match="no harness version with id 999"):
            await store.record_run_versions(session, "run-4", harness_version_id=999)
        with pytest.raises(TicketNotFound):
            await store.record_run_versions(
                session, "run-4", harness_version_id=coder1.id, ticket_id=ticket + 100
            )

        # History outlives the ticket.
        await session.execute(delete(Ticket).where(Ticket.id == ticket))
        run1 = await session.scalar(
            select(RunVersions)
            .where(RunVersions.run_id == "run-1")
            .execution_options(populate_existing=True)
        )
        assert run1 is not None
        assert run1.ticket_id is None


async def test_versions_a_caller_looked_up_are_recorded_without_a_second_look(
    deps: Deps,
) -> None:
    """Dispatch's way: the versions come from its spec's build; a wrong harness id is
    still refused, by the database, and nothing is recorded."""
    async with transaction(deps.sessions) as session:
        ticket = await _ticket(session)
        coder = await store.publish_harness(session, "coder", "v1", author="a")
        lint = await store.publish_skill(session, "lint", _skill(), author="a")
        recorded = await store.record_run_versions(
            session,
            "run-1",
            harness_version_id=coder.id,
            skill_version_ids=[lint.id, lint.id],
            ticket_id=ticket,
            looked_up=True,
        )
        assert (recorded.harness_version_id, recorded.skill_version_ids) == (coder.id, [lint.id])
        assert recorded.ticket_id == ticket
    with pytest.raises(IntegrityError, match="harness_version_id"):
        async with transaction(deps.sessions) as session:
            await store.record_run_versions(
                session, "run-2", harness_version_id=coder.id + 100, looked_up=True
            )
    async with deps.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(RunVersions)) == 1


async def test_concurrent_publishes_never_share_a_version_number(deps: Deps) -> None:
    async def publish(content: str) -> HarnessVersion:
        async with transaction(deps.sessions) as session:
            row = await store.publish_harness(session, "coder", content, author="a")
            await asyncio.sleep(0.05)  # hold the transaction open so the others overlap
            return row

    rows = await asyncio.gather(*(publish(f"text {i}") for i in range(5)))
    same = await asyncio.gather(*(publish("text same") for _ in range(3)))

    assert sorted(row.version for row in rows) == [1, 2, 3, 4, 5]
    assert {row.version for row in same} == {6}
    assert len({row.id for row in same}) == 1


async def test_a_publish_that_loses_a_race_it_cannot_see_is_a_conflict(deps: Deps) -> None:
    # Under REPEATABLE READ the lock cannot help (the snapshot predates the other commit);
    # the unique constraint turns the race into a clear error instead of a duplicate.
    async with deps.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with AsyncSession(bind=conn) as session, session.begin():
            assert await store.current(session, HarnessVersion, "coder") is None
            await _harness(deps, "coder", "theirs")
            with pytest.raises(PublishConflict, match="'coder' version 1 was published"):
                await store.publish_harness(session, "coder", "ours", author="a")


async def test_harness_text_is_checked_before_it_is_stored(deps: Deps) -> None:
    async with deps.sessions() as session:
        with pytest.raises(InvalidHarness, match="is empty"):
            await store.publish_harness(session, "coder", "  \n", author="a")
        with pytest.raises(InvalidHarness, match=r"not a valid template: line 2: .*endfor"):
            await store.publish_harness(session, "coder", "ok\n{% for x in y %}", author="a")
        with pytest.raises(InvalidHarness, match="NUL"):
            await store.publish_harness(session, "coder", "a\x00b", author="a")
        with pytest.raises(InvalidHarness, match="the limit is 131072"):
            await store.publish_harness(session, "coder", "x" * 200_000, author="a")
        with pytest.raises(InvalidName, match="invalid harness name 'Coder 2'"):
            await store.publish_harness(session, "Coder 2", "text", author="a")
        with pytest.raises(ValueError, match="needs an author"):
            await store.publish_harness(session, "coder", "text", author=" ")
        with pytest.raises(InvalidSkill, match=r"has no SKILL\.md"):
            await store.publish_skill(session, "lint", {"run.sh": "x"}, author="a")
        assert await store.list_names(session, HarnessVersion) == []


def _front(body: str) -> dict[str, str]:
    return {"SKILL.md": body}


@pytest.mark.parametrize(
    ("name", "files", "error", "message"),
    [
        ("Lint", _skill(), InvalidName, "invalid skill name 'Lint'"),
        ("lint--x", _skill(), InvalidName, "single hyphens"),
        ("lint", {}, InvalidSkill, "has no files"),
        ("lint", {"README.md": "x"}, InvalidSkill, "has no SKILL.md at the top"),
        ("lint", {"sub/SKILL.md": SKILL_MD}, InvalidSkill, "has no SKILL.md at the top"),
        ("lint", _front("# Lint\n"), InvalidFrontMatter, "must start with YAML front matter"),
        ("lint", _front("---\nname: lint\n"), InvalidFrontMatter, "no closing '---'"),
        (
            "lint",
            _front("---\nname: lint\n---\n"),
            InvalidFrontMatter,
            "non-empty text 'description'",
        ),
        ("lint", _front("---\ndescription: d\n---\n"), InvalidFrontMatter, "non-empty text 'name'"),
        (
            "lint",
            _front("---\nname: [a\n---\n"),
            InvalidFrontMatter,
            r"front matter \(line 2\): expected .,. or .\].",
        ),
        ("lint", _front("---\n- a\n---\n"), InvalidFrontMatter, "must be a mapping"),
        (
            "lint",
            _front("---\nname: other\ndescription: d\n---\n"),
            InvalidFrontMatter,
            "name 'other' must equal the skill's name 'lint'",
        ),
        (
            "lint",
            _front(f"---\nname: lint\ndescription: {'d' * 1025}\n---\n"),
            InvalidFrontMatter,
            "1025 characters; the limit is 1024",
        ),
        ("lint", _skill(**{"../evil.sh": "x"}), InvalidSkillPath, "'..' path segments"),
        ("lint", _skill(**{"a/../../evil": "x"}), InvalidSkillPath, "'..' path segments"),
        ("lint", _skill(**{"./a": "x"}), InvalidSkillPath, "'.' and '..'"),
        ("lint", _skill(**{"a//b": "x"}), InvalidSkillPath, "empty"),
        ("lint", _skill(**{"a/": "x"}), InvalidSkillPath, "empty"),
        ("lint", _skill(**{"/etc/passwd": "x"}), InvalidSkillPath, "absolute paths"),
        ("lint", _skill(**{"C:/x": "x"}), InvalidSkillPath, "absolute paths"),
        ("lint", _skill(**{"a\\b": "x"}), InvalidSkillPath, "use '/'"),
        ("lint", _skill(**{"a\nb": "x"}), InvalidSkillPath, "control characters"),
        ("lint", _skill(**{"x" * 201: "x"}), InvalidSkillPath, "longer than 200"),
        ("lint", _skill(**{"Run.sh": "x", "run.sh": "y"}), InvalidSkillPath, "letter case"),
        ("lint", _skill(**{"a": "x", "a/b": "y"}), InvalidSkillPath, "'a' is a file and also"),
        ("lint", _skill(**{"bin": "a\x00b"}), InvalidSkill, "NUL byte"),
        (
            "lint",
            _skill(big="é" * (MAX_FILE_BYTES // 2 + 1)),
            SkillTooLarge,
            f"a skill file may have at most {MAX_FILE_BYTES}",
        ),
        (
            "lint",
            _skill(**{f"f{i}": "x" for i in range(MAX_FILES)}),
            SkillTooLarge,
            f"the limit is {MAX_FILES}",
        ),
        (
            "lint",
            _skill(**{f"f{i}": "x" * 100_000 for i in range(6)}),
            SkillTooLarge,
            "holds 6000",
        ),
    ],
)
def test_invalid_skills_are_refused_with_a_precise_message(
    name: str, files: dict[str, str], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        validate_skill(name, files)


def test_a_refused_skill_path_is_named_on_the_error() -> None:
    with pytest.raises(InvalidSkillPath) as caught:
        validate_skill("lint", _skill(**{"../x": "y"}))
    assert caught.value.path == "../x"


def test_skill_folders_round_trip_through_disk(tmp_path: Path) -> None:
    files = _skill(**{"scripts/run.sh": "ruff check .\r\n", "notes.txt": "n"})
    folder = tmp_path / "lint"
    write_skill_dir(validate_skill("lint", files), folder)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "x.pyc").write_bytes(b"\x00")

    name, read = read_skill_dir(folder)

    assert name == "lint"
    assert read == {**files, "scripts/run.sh": "ruff check .\n"}
    with pytest.raises(FileExistsError):  # never overwrites
        write_skill_dir(files, folder)


def test_reading_a_skill_folder_refuses_symlinks_and_binary_files(tmp_path: Path) -> None:
    folder = tmp_path / "lint"
    folder.mkdir()
    (folder / "SKILL.md").write_text(SKILL_MD)
    (folder / "secrets").symlink_to("/etc/hostname")
    with pytest.raises(InvalidSkillPath, match="'secrets': symbolic links are not allowed"):
        read_skill_dir(folder)
    (folder / "secrets").unlink()
    (folder / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff")
    with pytest.raises(InvalidSkill, match=r"'logo\.png' is not UTF-8 text"):
        read_skill_dir(folder)
