"""What a run fetches into the mirror, against real git: its base branch, its own work branch
when the remote has it, and the tags; never the other tickets' branches."""

from __future__ import annotations

import subprocess
from pathlib import Path

from runner.contract import GitIdentity
from runner.workspace import Workspace
from tests.runner.git_helpers import commit_on, repo_of, run_git


def refs(repo: Path) -> set[str]:
    return set(run_git("for-each-ref", "--format=%(refname)", cwd=repo).splitlines())


def has_object(repo: Path, sha: str) -> bool:
    found = subprocess.run(["git", "cat-file", "-e", sha], cwd=repo, capture_output=True)
    return found.returncode == 0


async def test_a_run_fetches_its_base_its_own_branch_and_the_tags_only(
    workspace: Workspace, remote: Path
) -> None:
    others = commit_on(remote, "openase/t-1", {"other.txt": "another ticket's work\n"})
    ours = commit_on(remote, "openase/t-2", {"ours.txt": "our first attempt\n"})
    run_git("tag", "v1.0", "main", cwd=remote)

    wt = await workspace.prepare(repo_of(remote), "main", "openase/t-2", None)

    assert wt.start_sha == ours
    assert refs(wt.mirror) >= {
        "refs/remotes/origin/main",
        "refs/remotes/origin/openase/t-2",
        "refs/tags/v1.0",
    }
    assert "refs/remotes/origin/openase/t-1" not in refs(wt.mirror)
    assert not has_object(wt.mirror, others)  # nor its commits


async def test_a_branch_that_only_begins_with_the_work_branchs_name_is_not_started_from(
    workspace: Workspace, remote: Path
) -> None:
    """The work branch is fetched as the pattern `<branch>*`: a longer name it also matches
    (ticket 10 against ticket 1) must not be taken for the run's own branch."""
    commit_on(remote, "openase/t-10", {"ten.txt": "ticket 10\n"})
    main = run_git("rev-parse", "main", cwd=remote)

    wt = await workspace.prepare(repo_of(remote), "main", "openase/t-1", None)

    assert (wt.start_sha, wt.reused_remote_branch) == (main, False)
    assert not (wt.path / "ten.txt").exists()


async def test_a_work_branch_deleted_on_the_remote_is_pruned_and_the_run_starts_from_base(
    workspace: Workspace, remote: Path
) -> None:
    first_attempt = commit_on(remote, "openase/t-3", {"fix.txt": "first attempt\n"})
    first = await workspace.prepare(repo_of(remote), "main", "openase/t-3", None)
    assert first.start_sha == first_attempt
    run_git("branch", "-D", "openase/t-3", cwd=remote)  # someone deleted it on the remote

    again = await workspace.prepare(repo_of(remote), "main", "openase/t-3", None)

    assert again.start_sha == run_git("rev-parse", "main", cwd=remote)
    assert not again.reused_remote_branch
    assert not (again.path / "fix.txt").exists()
    assert "refs/remotes/origin/openase/t-3" not in refs(again.mirror)


async def test_removing_a_ticket_drops_the_mirrors_copy_of_its_branch_and_a_rework_fetches_it(
    workspace: Workspace, remote: Path
) -> None:
    """No later fetch prunes a done ticket's branch from the mirror (each run fetches only
    its own), so `remove` drops it, or the mirror would keep one for every ticket."""
    wt = await workspace.prepare(repo_of(remote), "main", "openase/t-4", None)
    (wt.path / "work.txt").write_text("done\n")
    await workspace.commit_all(wt, "work", GitIdentity())
    pushed = await workspace.push(wt, None)
    assert "refs/remotes/origin/openase/t-4" in refs(wt.mirror)

    await workspace.remove("octo/hello", "openase/t-4")

    assert not {"refs/heads/openase/t-4", "refs/remotes/origin/openase/t-4"} & refs(wt.mirror)
    assert run_git("rev-parse", "refs/heads/openase/t-4", cwd=remote) == pushed
    rework = await workspace.prepare(repo_of(remote), "main", "openase/t-4", None)
    assert (rework.start_sha, rework.reused_remote_branch) == (pushed, True)
    assert (rework.path / "work.txt").read_text() == "done\n"
