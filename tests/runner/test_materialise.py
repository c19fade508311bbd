"""Skills written into a real linked worktree: beside the repo's own, out of commits, gone after."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.contract import GitIdentity, RepoRef, SkillFile, SkillSpec
from runner.materialise import cleanup, exclude_file, materialise_skills
from runner.workspace import Workspace, Worktree
from tests.runner.git_helpers import run_git, seed_remote

SKILLS_DIR = ".claude/skills"
REPO_SKILL = "---\nname: x\ndescription: the repository's own\n---\nkeep me\n"


def skill(name: str, *files: tuple[str, str]) -> SkillSpec:
    files = files or ((("SKILL.md", f"---\nname: {name}\ndescription: d\n---\nbody\n"),))
    return SkillSpec(
        name=name, version=1, files=tuple(SkillFile(path=p, content=c) for p, c in files)
    )


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare repository whose main already has a skill of its own, `.claude/skills/x`."""
    return seed_remote(tmp_path, {"README.md": "hello\n", f"{SKILLS_DIR}/x/SKILL.md": REPO_SKILL})


async def prepared(workspace: Workspace, remote: Path, branch: str = "openase/t-1") -> Worktree:
    repo = RepoRef(full_name="octo/hello", clone_url=str(remote))
    return await workspace.prepare(repo, "main", branch, None)


async def test_skills_are_written_but_never_committed(workspace: Workspace, remote: Path) -> None:
    wt = await prepared(workspace, remote)
    tests = skill(
        "run-tests", ("SKILL.md", "run them\n"), ("scripts/run.sh", "#!/bin/sh\nexit 0\n")
    )

    m = materialise_skills(wt.path, SKILLS_DIR, [tests, skill("summarise")])
    (wt.path / "agent.txt").write_text("the agent's work\n")

    assert [(s.name, s.directory, s.renamed) for s in m.placed] == [
        ("run-tests", ".claude/skills/run-tests", False),
        ("summarise", ".claude/skills/summarise", False),
    ]
    assert m.refused == ()
    assert (wt.path / ".claude/skills/run-tests/SKILL.md").read_text() == "run them\n"
    assert (wt.path / ".claude/skills/run-tests/scripts/run.sh").stat().st_mode & 0o111
    assert run_git("status", "--porcelain", cwd=wt.path) == "?? agent.txt"
    assert await workspace.commit_all(wt, "work", GitIdentity())
    assert run_git("show", "--name-only", "--format=", "HEAD", cwd=wt.path) == "agent.txt"


async def test_the_repositorys_own_skill_is_untouched_and_ours_goes_beside_it(
    workspace: Workspace, remote: Path
) -> None:
    wt = await prepared(workspace, remote)
    ours = skill("x", ("SKILL.md", "ours\n"))

    m = materialise_skills(wt.path, SKILLS_DIR, [ours])

    assert [(s.name, s.directory, s.renamed) for s in m.placed] == [
        ("x", ".claude/skills/openase-x", True)
    ]
    assert (wt.path / ".claude/skills/x/SKILL.md").read_text() == REPO_SKILL
    assert (wt.path / ".claude/skills/openase-x/SKILL.md").read_text() == "ours\n"
    assert run_git("status", "--porcelain", cwd=wt.path) == ""

    cleanup(m)

    assert (wt.path / ".claude/skills/x/SKILL.md").read_text() == REPO_SKILL
    assert not (wt.path / ".claude/skills/openase-x").exists()


async def test_a_skill_with_nowhere_to_go_is_refused_and_the_rest_are_placed(
    workspace: Workspace, remote: Path
) -> None:
    wt = await prepared(workspace, remote)
    (wt.path / ".claude/skills/openase-x").mkdir()
    (wt.path / ".claude/skills/openase-x/notes.md").write_text("also the repo's\n")

    m = materialise_skills(wt.path, SKILLS_DIR, [skill("x"), skill("y"), skill("y")])

    assert [s.name for s in m.placed] == ["y"]
    assert [(r.name, r.reason) for r in m.refused] == [
        (
            "x",
            "the repository already has .claude/skills/x and .claude/skills/openase-x; "
            "neither is overwritten",
        ),
        ("y", "listed twice"),
    ]
    assert (wt.path / ".claude/skills/openase-x/notes.md").read_text() == "also the repo's\n"


async def test_cleanup_leaves_no_trace(workspace: Workspace, remote: Path) -> None:
    wt = await prepared(workspace, remote)
    exclude = exclude_file(wt.path)
    before = exclude.read_text()

    m = materialise_skills(wt.path, ".codex/skills", [skill("a"), skill("b")])
    assert exclude.read_text().count("/.codex/skills/") == 2
    assert m.exclude_file == exclude == wt.mirror / "info/exclude"  # shared by all worktrees
    cleanup(m)
    cleanup(m)  # twice is harmless

    assert exclude.read_text() == before
    assert not (wt.path / ".codex").exists()  # we made .codex and .codex/skills; both gone
    assert run_git("status", "--porcelain", "--ignored", cwd=wt.path) == ""


async def test_cleanup_keeps_what_the_agent_added_to_a_folder_we_made(
    workspace: Workspace, remote: Path
) -> None:
    wt = await prepared(workspace, remote)
    m = materialise_skills(wt.path, ".gemini/skills", [skill("a")])
    (wt.path / ".gemini/settings.json").write_text("{}\n")

    cleanup(m)

    assert not (wt.path / ".gemini/skills").exists()
    assert (wt.path / ".gemini/settings.json").exists()
    assert run_git("status", "--porcelain", cwd=wt.path) == "?? .gemini/"


async def test_two_worktrees_sharing_the_exclude_file_clean_up_only_their_own(
    workspace: Workspace, remote: Path
) -> None:
    a = await prepared(workspace, remote, "openase/t-a")
    b = await prepared(workspace, remote, "openase/t-b")

    ma = materialise_skills(a.path, SKILLS_DIR, [skill("shared"), skill("only-a")])
    mb = materialise_skills(b.path, SKILLS_DIR, [skill("shared")])
    cleanup(ma)

    lines = mb.exclude_file.read_text().splitlines()
    assert "/.claude/skills/shared/" in lines
    assert "/.claude/skills/only-a/" not in lines
    assert run_git("status", "--porcelain", cwd=b.path) == ""
    cleanup(mb)
    assert "openase skills" not in mb.exclude_file.read_text()


@pytest.mark.parametrize(
    "bad_path", ["../escaped.md", "/tmp/abs.md", "a/../../b.md", "a//b.md", "./x.md", "a\\b.md"]
)
async def test_path_traversal_in_skill_files_is_refused(
    workspace: Workspace, remote: Path, bad_path: str
) -> None:
    wt = await prepared(workspace, remote)
    evil = skill("evil", ("SKILL.md", "fine\n"), (bad_path, "escaped\n"))

    m = materialise_skills(wt.path, SKILLS_DIR, [evil, skill("good")])

    assert [s.name for s in m.placed] == ["good"]
    assert [r.name for r in m.refused] == ["evil"]
    assert "plain relative path" in m.refused[0].reason or "backslash" in m.refused[0].reason
    assert not (wt.path / ".claude/skills/evil").exists()  # nothing half-written
    assert not (wt.path.parent / "escaped.md").exists()


async def test_a_symlinked_skills_folder_is_never_written_through(
    workspace: Workspace, remote: Path, tmp_path: Path
) -> None:
    wt = await prepared(workspace, remote)
    outside = tmp_path / "outside"
    outside.mkdir()
    (wt.path / ".codex").symlink_to(outside)

    m = materialise_skills(wt.path, ".codex/skills", [skill("a")])

    assert m.placed == ()
    assert "symlink" in m.refused[0].reason
    assert list(outside.iterdir()) == []
    assert "openase skills" not in m.exclude_file.read_text()
