"""Lets a fake repository's branches and files come from a real bare git repository, so
the runner's pushes (to that repository, as GitHub's `clone_url`) show in the fake's API:
branch heads, file contents at a commit, the head sha of a PR opened from a work branch."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Protocol


class GitBacked(Protocol):
    git_dir: Path | None
    branches: dict[str, str]
    trees: dict[str, dict[str, bytes]]


def _git(git_dir: Path, *args: str) -> bytes:
    return subprocess.run(
        ["git", "--git-dir", str(git_dir), *args], check=True, capture_output=True
    ).stdout


def sync_from_git(repo: GitBacked) -> None:
    """Read the bare repository's branch heads (and the files of commits not read yet)."""
    if repo.git_dir is None:
        return
    refs = _git(
        repo.git_dir, "for-each-ref", "--format=%(objectname) %(refname:short)", "refs/heads"
    )
    branches: dict[str, str] = {}
    for line in refs.decode().splitlines():
        sha, _, name = line.partition(" ")
        branches[name] = sha
        if sha not in repo.trees:
            repo.trees[sha] = _tree(repo.git_dir, sha)
    repo.branches.clear()
    repo.branches.update(branches)


def _tree(git_dir: Path, sha: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    listing = _git(git_dir, "ls-tree", "-r", "-z", sha).decode()
    for entry in filter(None, listing.split("\0")):
        meta, _, path = entry.partition("\t")
        kind, blob = meta.split()[1:3]
        if kind == "blob":
            files[path] = _git(git_dir, "cat-file", "blob", blob)
    return files
