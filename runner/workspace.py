"""The machine's git workspace: one bare mirror per repository, fetched every run (the
run's base and work branches and the tags, see `Workspace._fetch`), and one `git worktree`
per ticket on its work branch.

    <root>/mirrors/<owner>/<name>.git                 bare; fetched branches in refs/remotes/origin
    <root>/worktrees/<owner>/<name>/<branch-slug>     a linked worktree of that mirror
    <root>/worktrees/<owner>/<name>/.spare-<id>       a removed ticket's worktree, cleaned

Recycling: a fresh worktree costs a full checkout, as much disk work as a clone. So `remove`
parks a clean, detached worktree (at most `spares` per repository) and the next `prepare` of
another ticket of that repository moves it into place and only rewrites the files that differ.

The mirror keeps the remote's branches under `refs/remotes/origin/*` rather than mirroring
them onto `refs/heads/*`: a pruning fetch must never move or delete a work branch that a
concurrent run has checked out (git refuses the first and happily does the second).

Every command that carries the git token names the clone URL explicitly and runs in the
mirror, never in a worktree: the agent can edit both, and a remote URL or `insteadOf` it
planted must not receive the token. For the same reason the mirror's config is checked
against what we wrote before the token is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from runner.contract import GitIdentity, RepoRef
from runner.git import GitError, common_dir, git
from runner.remotes import (
    WorkspaceError,
    branch_slug,
    check_branch,
    remote_url,
    repo_segments,
    token_scope,
)

_SPARE = ".spare-"  # branch slugs never start with a dot
_REMOTE_REFS = "+refs/heads/*:refs/remotes/origin/*"  # the mirror's configured refspec
_TAG_REFS = "+refs/tags/*:refs/tags/*"
# What `git init --bare` and we write; anything else in the mirror's config was put there by
# someone else (an agent can reach it from its worktree) and could redirect the token.
_MIRROR_CONFIG_KEYS = frozenset(
    {
        "core.repositoryformatversion",
        "core.filemode",
        "core.bare",
        "core.ignorecase",
        "core.precomposeunicode",
        "core.symlinks",
        "remote.origin.url",
        "remote.origin.fetch",
    }
)


@contextlib.asynccontextmanager
async def _side_by_side() -> AsyncIterator[asyncio.TaskGroup]:
    """A task group whose first failure is raised as itself (callers catch `GitError` and
    `WorkspaceError`), once the other tasks are cancelled and have ended: no git process of
    a failed step outlives it."""
    try:
        async with asyncio.TaskGroup() as group:
            yield group
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None


class PushRejected(GitError):
    """The remote refused the push (e.g. non-fast-forward); the runner never forces."""


@dataclass(frozen=True)
class Worktree:
    path: Path
    branch: str
    base_sha: str  # the base branch on the remote when the run started
    start_sha: str  # where the work branch started for this run
    reused_remote_branch: bool  # the remote already had the work branch
    mirror: Path
    remote_url: str


class Workspace:
    """Mirrors and worktrees under one root, safe for concurrent runs and runner processes."""

    def __init__(self, root: Path, spares: int = 2) -> None:
        self.root = root.resolve()
        self.spares = spares  # removed worktrees kept per repository for reuse
        self._home = self.root / "home"  # HOME for git: empty, so nothing of a user's is read
        self._locks: dict[Path, asyncio.Lock] = {}

    def mirror_path(self, full_name: str) -> Path:
        owner, name = repo_segments(full_name)
        return self.root / "mirrors" / owner / f"{name}.git"

    def worktree_path(self, full_name: str, branch: str) -> Path:
        owner, name = repo_segments(full_name)
        return self.root / "worktrees" / owner / name / branch_slug(branch)

    async def prepare(
        self, repo: RepoRef, base_branch: str, work_branch: str, token: str | None
    ) -> Worktree:
        """Fetch the mirror and give `work_branch` a clean worktree: from the remote branch when
        it exists (rework), else from `base_branch`."""
        url = remote_url(repo.clone_url)
        mirror = self.mirror_path(repo.full_name)
        path = self.worktree_path(repo.full_name, work_branch)
        # Git processes side by side where nothing orders them (each is milliseconds on the
        # way to the agent): the branch names are checked while the mirror's config is read,
        # and the worktrees are listed while the fetch runs (it writes refs only). The config
        # check comes first: no other git command runs in the mirror before it. Without a
        # mirror yet, the names are checked first: a name git refuses writes nothing.
        names_checked = not (mirror / "HEAD").is_file()
        if names_checked:
            await asyncio.gather(check_branch(base_branch), check_branch(work_branch))
        async with self._locked(mirror):
            async with _side_by_side() as steps:
                if not names_checked:
                    steps.create_task(check_branch(base_branch))
                    steps.create_task(check_branch(work_branch))
                steps.create_task(self._ensure_mirror(mirror, url))
            async with _side_by_side() as steps:
                steps.create_task(self._fetch(mirror, url, base_branch, work_branch, token))
                listed = steps.create_task(self._worktrees(mirror, prune=True))
            listing = listed.result()
            base_ref, remote_ref = (f"refs/remotes/origin/{b}" for b in (base_branch, work_branch))
            shas = await self._refs(mirror, base_ref, remote_ref)
            if base_ref not in shas:
                raise WorkspaceError(f"base branch {base_branch!r} is not on {url}")
            base_sha, remote_sha = shas[base_ref], shas.get(remote_ref)
            start_sha = remote_sha or base_sha
            reuse = await self._healthy(mirror, path, f"refs/heads/{work_branch}", listing)
            if not reuse:
                await self._drop_worktree(mirror, path)
                path.parent.mkdir(parents=True, exist_ok=True)
            if not reuse and not await self._adopt_spare(
                mirror, path, work_branch, start_sha, listing
            ):
                # Checked out below, outside the lock: the checkout is the slow part and
                # touches only this worktree's own index and files.
                await self._git(
                    "worktree",
                    "add",
                    "--quiet",
                    "--no-checkout",
                    "--force",
                    "-B",
                    work_branch,
                    str(path),
                    start_sha,
                    cwd=mirror,
                )
        # Parallel checkout: a fresh worktree writes every file of the repository.
        await self._git(
            "-c", "checkout.workers=0", "reset", "--quiet", "--hard", start_sha, cwd=path
        )
        if reuse:
            # Left over from this ticket's earlier run: untracked and ignored files too. (A
            # spare was cleaned when it was parked.)
            await self._git("clean", "-ffdxq", cwd=path)
        return Worktree(
            path=path,
            branch=work_branch,
            base_sha=base_sha,
            start_sha=start_sha,
            reused_remote_branch=remote_sha is not None,
            mirror=mirror,
            remote_url=url,
        )

    async def _fetch(
        self, mirror: Path, url: str, base_branch: str, work_branch: str, token: str | None
    ) -> None:
        """Fetch what a run starts from: the base branch, the work branch when the remote has
        it, and the tags (a build may read its version from them), never the remote's other
        branches. A fetch costs in proportion to the refs it asks for (git's protocol v2
        advertises only those under the refspecs' prefixes), and a busy repository holds a
        branch for every ticket in review: 200 more made each run's fetch and the work
        before its agent slower, `make bench-scale`'s phase 3.

        The work branch goes as the pattern `refs/heads/<branch>*`: git fails a fetch whose
        exact source the remote lacks, and a first run's branch is not there yet. The
        pattern also matches the rare branch whose name begins with the work branch's
        (ticket 10's for ticket 1's): fetched for nothing, never started from (the run
        reads its own ref by its exact name). And it lets `--prune` drop the copy of a work
        branch deleted on the remote, so that the run starts from the base again."""
        try:
            await self._git(
                "fetch",
                "--quiet",
                "--prune",
                "--no-tags",
                "--no-write-fetch-head",
                "--",
                url,
                f"+refs/heads/{base_branch}:refs/remotes/origin/{base_branch}",
                f"+refs/heads/{work_branch}*:refs/remotes/origin/{work_branch}*",
                _TAG_REFS,
                cwd=mirror,
                token=token,
                url=url,
            )
        except GitError as error:
            if f"couldn't find remote ref refs/heads/{base_branch}" in error.stderr_tail:
                raise WorkspaceError(f"base branch {base_branch!r} is not on {url}") from None
            raise

    async def commit_all(self, wt: Worktree, message: str, identity: GitIdentity) -> bool:
        """Commit everything not ignored; False when there was nothing to commit."""
        await self._git("add", "--all", cwd=wt.path)
        if not await self._git("diff", "--cached", "--name-only", "-z", cwd=wt.path):
            return False
        who = {
            "GIT_AUTHOR_NAME": identity.name,
            "GIT_AUTHOR_EMAIL": identity.email,
            "GIT_COMMITTER_NAME": identity.name,
            "GIT_COMMITTER_EMAIL": identity.email,
        }
        await self._git(
            "commit",
            "--quiet",
            "--no-verify",
            "--no-gpg-sign",
            "--cleanup=whitespace",
            "-m",
            message or "OpenASE run",
            cwd=wt.path,
            env=who,
        )
        return True

    async def push(self, wt: Worktree, token: str | None) -> str:
        """Push the work branch (never forced) and return the sha the remote now has."""
        # No mirror lock: pushes of different tickets need not wait for each other.
        ref = f"refs/heads/{wt.branch}"
        if token is not None:
            await self._check_mirror_config(wt.mirror)
        head = (await self._refs(wt.mirror, ref)).get(ref)
        if head is None:
            raise WorkspaceError(f"branch {wt.branch!r} is gone from {wt.mirror}")
        try:
            await self._git(
                "push",
                "--quiet",
                "--",
                wt.remote_url,
                f"{ref}:{ref}",
                cwd=wt.mirror,
                token=token,
                url=wt.remote_url,
            )
        except GitError as error:
            if "[rejected]" in error.stderr_tail or "non-fast-forward" in error.stderr_tail:
                raise PushRejected(
                    error.command,
                    error.exit_code,
                    f"the remote {wt.branch} has commits this run does not have; not forcing",
                ) from None
            raise
        await self._git("update-ref", f"refs/remotes/origin/{wt.branch}", head, cwd=wt.mirror)
        return head

    async def head_sha(self, wt: Worktree) -> str:
        """The commit the worktree is on now."""
        return (await self._git("rev-parse", "--verify", "HEAD^{commit}", cwd=wt.path)).strip()

    async def changed_files(self, wt: Worktree) -> list[str]:
        """Files this run changed since `start_sha`: committed or not, untracked too, ignored
        files not."""
        tracked = await self._git(
            "diff", "--name-only", "--no-renames", "-z", wt.start_sha, "--", cwd=wt.path
        )
        untracked = await self._git("ls-files", "--others", "--exclude-standard", "-z", cwd=wt.path)
        return sorted({name for name in (tracked + untracked).split("\0") if name})

    async def remove(self, repo_full_name: str, work_branch: str) -> None:
        """Remove the ticket's worktree, its local branch and the mirror's copy of its remote
        branch (the remote branch stays); the directory, cleaned of everything the run
        left, may be kept as a spare."""
        await check_branch(work_branch)
        mirror = self.mirror_path(repo_full_name)
        path = self.worktree_path(repo_full_name, work_branch)
        if not mirror.is_dir():
            _remove_path(path)
            return
        ours = f"refs/heads/{work_branch}"
        clean = False
        if self.spares > 0 and await self._healthy(
            mirror, path, ours, await self._worktrees(mirror)
        ):
            with contextlib.suppress(GitError):  # e.g. files git cannot delete: drop it instead
                await self._git("reset", "--quiet", "--hard", cwd=path)
                await self._git("clean", "-ffdxq", cwd=path)
                clean = True
        async with self._locked(mirror):
            await self._git("worktree", "prune", cwd=mirror)  # its directory may be gone
            if not (clean and await self._park(mirror, path)):
                await self._drop_worktree(mirror, path)
            tracking = f"refs/remotes/origin/{work_branch}"
            held = await self._refs(mirror, ours, tracking)
            if ours in held:
                await self._git("branch", "--quiet", "-D", "--", work_branch, cwd=mirror)
            if tracking in held:
                # Only this ticket's runs fetch (and so prune) it: kept, the mirror would
                # hold one for every ticket ever done. A rework fetches it again.
                await self._git("update-ref", "-d", tracking, cwd=mirror)
            for parent in (path.parent, path.parent.parent):
                with contextlib.suppress(OSError):  # not empty: other tickets' worktrees
                    parent.rmdir()

    async def _git(
        self,
        *args: str,
        cwd: Path,
        token: str | None = None,
        url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        """git with HOME in the root; a token is offered only to the http(s) server of `url`
        (ssh and local remotes never ask for one, so they never get it)."""
        self._home.mkdir(mode=0o700, parents=True, exist_ok=True)
        scope = token_scope(url) if url is not None else None
        if scope is None:
            token = None
        return await git(*args, cwd=cwd, token=token, token_url=scope, env=env, home=self._home)

    @contextlib.asynccontextmanager
    async def _locked(self, mirror: Path) -> AsyncIterator[None]:
        """Exclusive use of a mirror: an asyncio lock within this process, a file lock
        between runner processes sharing the root."""
        lock = self._locks.setdefault(mirror, asyncio.Lock())
        async with lock:
            mirror.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(mirror.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        # Polled rather than blocking in a thread: cancellation stays prompt
                        # and can never leave a thread holding the lock.
                        await asyncio.sleep(0.05)
                yield
            finally:
                os.close(fd)  # releases the flock

    async def _ensure_mirror(self, mirror: Path, url: str) -> None:
        if (mirror / "HEAD").is_file():
            if (await self._check_mirror_config(mirror)).get("remote.origin.url") != url:
                await self._git("config", "remote.origin.url", url, cwd=mirror)
            return
        _remove_path(mirror)  # a half-made mirror from a crash
        partial = mirror.with_name(f"{mirror.name}.partial")
        _remove_path(partial)
        await self._git("init", "--quiet", "--bare", str(partial), cwd=mirror.parent)
        await self._git("config", "remote.origin.url", url, cwd=partial)
        await self._git("config", "remote.origin.fetch", _REMOTE_REFS, cwd=partial)
        partial.rename(mirror)

    async def _check_mirror_config(self, mirror: Path) -> dict[str, str]:
        """The mirror's own config, refusing keys we did not write."""
        listing = await self._git("config", "--local", "--list", "-z", cwd=mirror)
        config = dict(item.partition("\n")[::2] for item in listing.split("\0") if item)
        unexpected = sorted(set(config) - _MIRROR_CONFIG_KEYS)
        if unexpected:
            raise WorkspaceError(
                f"the config of mirror {mirror} has settings OpenASE did not write "
                f"({', '.join(unexpected)}); refusing to use it: inspect and remove them"
            )
        return config

    async def _refs(self, repo: Path, *refs: str) -> dict[str, str]:
        """{ref: sha} for those of `refs` that exist (one git call for all)."""
        out = await self._git("for-each-ref", "--format=%(refname) %(objectname)", *refs, cwd=repo)
        found = dict(line.split(" ", 1) for line in out.splitlines())
        return {ref: found[ref] for ref in refs if ref in found}

    async def _worktrees(self, mirror: Path, *, prune: bool = False) -> dict[Path, str | None]:
        """The mirror's linked worktrees: path -> checked-out ref, None when detached.

        `prune`: forget those whose directory is gone, when there are any (a git process
        fewer on each run's way to its agent than pruning every time)."""
        listing = await self._git("worktree", "list", "--porcelain", cwd=mirror)
        found: dict[Path, str | None] = {}
        prunable = False
        for block in listing.split("\n\n"):
            fields = dict(line.partition(" ")[::2] for line in block.splitlines())
            prunable = prunable or "prunable" in fields
            if "worktree" in fields and "bare" not in fields and "prunable" not in fields:
                found[Path(fields["worktree"])] = fields.get("branch")
        if prune and prunable:
            await self._git("worktree", "prune", cwd=mirror)
        return found

    async def _healthy(
        self, mirror: Path, path: Path, ref: str | None, listing: dict[Path, str | None]
    ) -> bool:
        """Whether `path` is a worktree of this mirror with `ref` checked out (None: detached),
        whose `.git` still leads back to the mirror."""
        if path not in listing or listing[path] != ref or not (path / ".git").is_file():
            return False
        # Read from the files git reads (runner/git.py), not a `git rev-parse`: a few
        # stats and reads, where the process was milliseconds on the way to the agent.
        return common_dir(path) == mirror.resolve()  # noqa: ASYNC240

    async def _park(self, mirror: Path, path: Path) -> bool:
        """Keep the clean worktree at `path` as a spare, if there is room; with the lock held."""
        parked = [p for p in await self._worktrees(mirror) if p.parent == path.parent]
        if sum(p.name.startswith(_SPARE) for p in parked) >= self.spares:
            return False
        try:
            await self._git("checkout", "--quiet", "--detach", cwd=path)
            spare = path.with_name(f"{_SPARE}{uuid.uuid4().hex[:12]}")
            await self._git("worktree", "move", str(path), str(spare), cwd=mirror)
        except GitError:
            return False
        return True

    async def _adopt_spare(
        self, mirror: Path, path: Path, branch: str, start_sha: str, listing: dict[Path, str | None]
    ) -> bool:
        """Move a healthy spare to `path` on `branch` at `start_sha` (files are reset by the
        caller, outside the lock); with the lock held. False when there is none."""
        for spare in sorted(p for p in listing if p.parent == path.parent):
            if not spare.name.startswith(_SPARE):
                continue
            if not await self._healthy(mirror, spare, None, listing):
                await self._drop_worktree(mirror, spare)
                continue
            await self._git("worktree", "move", str(spare), str(path), cwd=mirror)
            # Side by side: HEAD may name the branch before the branch exists.
            async with _side_by_side() as steps:
                steps.create_task(
                    self._git("update-ref", f"refs/heads/{branch}", start_sha, cwd=mirror)
                )
                steps.create_task(
                    self._git("symbolic-ref", "HEAD", f"refs/heads/{branch}", cwd=path)
                )
            return True
        return False

    async def _drop_worktree(self, mirror: Path, path: Path) -> None:
        if not os.path.lexists(path):  # noqa: ASYNC240  # one stat, not worth a thread
            return
        with contextlib.suppress(GitError):  # not (or no longer) a registered worktree
            await self._git("worktree", "remove", "--force", "--force", str(path), cwd=mirror)
        _remove_path(path)
        await self._git("worktree", "prune", cwd=mirror)


def _remove_path(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
