"""The runner's git workspace against real git: local bare remotes, and an HTTP remote (git
http-backend behind Basic auth) for the git token."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from runner.contract import GitIdentity, RepoRef
from runner.git import GitError, common_dir, git
from runner.materialise import exclude_file
from runner.remotes import WorkspaceError, remote_url, token_scope
from runner.workspace import PushRejected, Workspace
from tests.runner.git_helpers import commit_on, repo_of, run_git


def git_common_dir(checkout: Path) -> Path:
    """What git itself says is the checkout's common directory."""
    return Path(run_git("rev-parse", "--path-format=absolute", "--git-common-dir", cwd=checkout))


def files_under(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            yield path


async def test_fresh_prepare_starts_the_work_branch_from_base(
    workspace: Workspace, remote: Path
) -> None:
    main = run_git("rev-parse", "main", cwd=remote)

    wt = await workspace.prepare(repo_of(remote), "main", "openase/octo-hello-1", None)

    assert wt.path == workspace.root / "worktrees/octo/hello" / wt.path.name
    assert wt.mirror == workspace.root / "mirrors/octo/hello.git"
    assert (wt.path / "src/app.py").read_text() == "print('hi')\n"
    assert (wt.base_sha, wt.start_sha, wt.reused_remote_branch) == (main, main, False)
    assert run_git("symbolic-ref", "HEAD", cwd=wt.path) == "refs/heads/openase/octo-hello-1"
    assert await workspace.head_sha(wt) == main
    assert run_git("status", "--porcelain", cwd=wt.path) == ""


async def test_an_existing_remote_work_branch_is_reused(workspace: Workspace, remote: Path) -> None:
    pushed = commit_on(remote, "openase/octo-hello-2", {"fix.txt": "first attempt\n"})

    wt = await workspace.prepare(repo_of(remote), "main", "openase/octo-hello-2", None)

    assert wt.reused_remote_branch
    assert wt.start_sha == pushed == await workspace.head_sha(wt)
    assert wt.base_sha == run_git("rev-parse", "main", cwd=remote)
    assert (wt.path / "fix.txt").read_text() == "first attempt\n"


async def test_preparing_the_same_ticket_again_resets_to_the_fetched_state(
    workspace: Workspace, remote: Path
) -> None:
    first = await workspace.prepare(repo_of(remote), "main", "openase/t-3", None)
    (first.path / "README.md").write_text("scribbled\n")
    (first.path / "stray.txt").write_text("untracked\n")
    (first.path / "debug.log").write_text("ignored\n")
    run_git("commit", "--quiet", "-am", "local only, never pushed", cwd=first.path)
    newer = commit_on(remote, "main", {"NEWS": "base moved on\n"})

    again = await workspace.prepare(repo_of(remote), "main", "openase/t-3", None)

    assert again.path == first.path
    assert again.base_sha == again.start_sha == newer == await workspace.head_sha(again)
    assert (again.path / "README.md").read_text() == "hello\n"
    assert (again.path / "NEWS").exists()
    assert not (again.path / "stray.txt").exists()
    assert not (again.path / "debug.log").exists()
    assert run_git("status", "--porcelain", "--ignored", cwd=again.path) == ""


async def test_a_worktree_whose_directory_vanished_is_recreated(
    workspace: Workspace, remote: Path
) -> None:
    first = await workspace.prepare(repo_of(remote), "main", "openase/t-4", None)
    shutil.rmtree(first.path)

    again = await workspace.prepare(repo_of(remote), "main", "openase/t-4", None)

    assert (again.path / "README.md").exists()
    assert run_git("status", "--porcelain", cwd=again.path) == ""
    # The vanished one's registration was pruned (only when the listing shows one).
    assert "prunable" not in run_git("worktree", "list", "--porcelain", cwd=again.mirror)


async def test_common_dir_is_read_as_git_reads_it(
    workspace: Workspace, remote: Path, tmp_path: Path
) -> None:
    """The checks on a run's way to its agent read the files git reads, with no git
    process; they must name what `git rev-parse --git-common-dir` names."""
    wt = await workspace.prepare(repo_of(remote), "main", "openase/t-cd", None)
    clone = tmp_path / "clone"
    run_git("clone", "--quiet", str(remote), str(clone), cwd=tmp_path)
    for checkout in (wt.path, clone):
        assert common_dir(checkout) == git_common_dir(checkout)
    assert git_common_dir(wt.path) == git_common_dir(wt.mirror)
    assert common_dir(wt.path / "src") is None  # no `.git` there: the caller asks git
    assert exclude_file(wt.path) == git_common_dir(wt.mirror) / "info" / "exclude"
    (wt.path / ".git").write_text("not what git writes\n")
    assert common_dir(wt.path) is None


async def test_a_worktree_whose_git_file_leads_elsewhere_is_rebuilt(
    workspace: Workspace, remote: Path, tmp_path: Path
) -> None:
    """An agent can rewrite its worktree's `.git`: the next run of the ticket must not
    work in (or push from) whatever repository it now names."""
    first = await workspace.prepare(repo_of(remote), "main", "openase/t-git", None)
    elsewhere = tmp_path / "elsewhere"
    run_git("init", "--quiet", str(elsewhere), cwd=tmp_path)
    (first.path / ".git").write_text(f"gitdir: {elsewhere / '.git'}\n")

    again = await workspace.prepare(repo_of(remote), "main", "openase/t-git", None)

    assert common_dir(again.path) == git_common_dir(again.mirror)
    assert await workspace.head_sha(again) == again.start_sha
    assert run_git("status", "--porcelain", cwd=again.path) == ""


async def test_two_tickets_of_one_repository_prepare_concurrently(
    workspace: Workspace, remote: Path
) -> None:
    repo = repo_of(remote)
    other_runner = Workspace(workspace.root)  # same root, own asyncio locks: the file lock
    a, b, c = await asyncio.gather(
        workspace.prepare(repo, "main", "openase/t-a", None),
        other_runner.prepare(repo, "main", "openase/t-b", None),
        workspace.prepare(repo, "main", "openase/t-c", None),
    )

    assert len({a.path, b.path, c.path}) == 3
    assert a.mirror == b.mirror == c.mirror
    listing = run_git("worktree", "list", "--porcelain", cwd=a.mirror)
    for wt in (a, b, c):
        assert f"worktree {wt.path}\n" in listing
        assert (wt.path / "README.md").exists()


async def test_commit_all_then_push_puts_the_branch_on_the_remote(
    workspace: Workspace, remote: Path
) -> None:
    wt = await workspace.prepare(repo_of(remote), "main", "openase/t-5", None)
    (wt.path / "src/app.py").write_text("print('fixed')\n")
    (wt.path / "new.txt").write_text("added\n")
    (wt.path / "build.log").write_text("ignored by .gitignore\n")
    identity = GitIdentity(name="OpenASE Bot", email="bot@example.test")

    assert await workspace.commit_all(wt, "octo/hello#5: fix the greeting", identity)
    head = await workspace.push(wt, None)

    assert head == await workspace.head_sha(wt)
    assert run_git("rev-parse", "refs/heads/openase/t-5", cwd=remote) == head
    shown = run_git("show", "--name-only", "--format=%an <%ae>|%cn <%ce>|%s", head, cwd=remote)
    assert shown.splitlines() == [
        "OpenASE Bot <bot@example.test>|OpenASE Bot <bot@example.test>|"
        "octo/hello#5: fix the greeting",
        "",
        "new.txt",
        "src/app.py",
    ]
    assert await workspace.changed_files(wt) == ["new.txt", "src/app.py"]


async def test_nothing_to_commit_makes_no_commit(workspace: Workspace, remote: Path) -> None:
    wt = await workspace.prepare(repo_of(remote), "main", "openase/t-6", None)
    (wt.path / "only.log").write_text("ignored\n")

    assert not await workspace.commit_all(wt, "nothing", GitIdentity())
    assert await workspace.head_sha(wt) == wt.start_sha
    assert await workspace.changed_files(wt) == []


async def test_hooks_planted_in_the_mirror_never_run(workspace: Workspace, remote: Path) -> None:
    wt = await workspace.prepare(repo_of(remote), "main", "openase/t-hooks", None)
    ran = wt.mirror.parent / "hook-ran"
    for hook in ("pre-commit", "commit-msg", "post-commit", "pre-push", "post-checkout"):
        script = wt.mirror / "hooks" / hook
        script.write_text(f"#!/bin/sh\necho {hook} >> '{ran}'\nexit 1\n")
        script.chmod(0o755)
    (wt.path / "work.txt").write_text("done\n")

    assert await workspace.commit_all(wt, "work", GitIdentity())
    await workspace.push(wt, None)
    await workspace.prepare(repo_of(remote), "main", "openase/t-hooks-2", None)

    assert not ran.exists()


async def test_changed_files_covers_committed_uncommitted_deleted_and_untracked(
    workspace: Workspace, remote: Path
) -> None:
    wt = await workspace.prepare(repo_of(remote), "main", "openase/t-7", None)
    (wt.path / "committed.txt").write_text("1\n")
    await workspace.commit_all(wt, "first", GitIdentity())
    (wt.path / "README.md").unlink()
    (wt.path / "src/app.py").write_text("changed\n")
    (wt.path / "untracked.txt").write_text("new\n")

    assert await workspace.changed_files(wt) == [
        "README.md",
        "committed.txt",
        "src/app.py",
        "untracked.txt",
    ]


async def test_a_push_that_is_not_a_fast_forward_is_refused_not_forced(
    workspace: Workspace, remote: Path
) -> None:
    wt = await workspace.prepare(repo_of(remote), "main", "openase/t-8", None)
    (wt.path / "mine.txt").write_text("ours\n")
    await workspace.commit_all(wt, "ours", GitIdentity())
    theirs = commit_on(remote, "openase/t-8", {"theirs.txt": "someone else\n"})

    with pytest.raises(PushRejected, match="not forcing"):
        await workspace.push(wt, None)
    assert run_git("rev-parse", "refs/heads/openase/t-8", cwd=remote) == theirs


async def test_remove_deletes_the_worktree_and_local_branch(
    workspace: Workspace, remote: Path
) -> None:
    wt = await workspace.prepare(repo_of(remote), "main", "openase/t-9", None)

    await workspace.remove("octo/hello", "openase/t-9")

    assert not wt.path.exists()
    assert run_git("branch", "--list", "openase/t-9", cwd=wt.mirror) == ""
    assert f"worktree {wt.path}" not in run_git("worktree", "list", "--porcelain", cwd=wt.mirror)
    await workspace.remove("octo/hello", "openase/t-9")  # removing twice is fine
    gone = await workspace.prepare(repo_of(remote), "main", "openase/t-9b", None)
    shutil.rmtree(gone.path)  # someone deleted the directory by hand
    await workspace.remove("octo/hello", "openase/t-9b")
    assert run_git("branch", "--list", "openase/t-9b", cwd=wt.mirror) == ""
    again = await workspace.prepare(repo_of(remote), "main", "openase/t-9", None)
    assert (again.path / "README.md").exists()


async def test_a_removed_worktree_is_cleaned_and_recycled_for_the_next_ticket(
    workspace: Workspace, remote: Path
) -> None:
    first = await workspace.prepare(repo_of(remote), "main", "openase/t-11", None)
    (first.path / "secret-notes.txt").write_text("left by the agent\n")
    (first.path / "cache.log").write_text("ignored\n")
    (first.path / "README.md").write_text("edited, never committed\n")
    inode = (first.path / "src/app.py").stat().st_ino
    await workspace.remove("octo/hello", "openase/t-11")
    newer = commit_on(remote, "main", {"NEWS": "more\n"})

    second = await workspace.prepare(repo_of(remote), "main", "openase/t-12", None)

    assert (second.path / "src/app.py").stat().st_ino == inode  # reused, not checked out again
    assert await workspace.head_sha(second) == second.start_sha == newer
    assert run_git("symbolic-ref", "HEAD", cwd=second.path) == "refs/heads/openase/t-12"
    assert (second.path / "README.md").read_text() == "hello\n"
    assert (second.path / "NEWS").exists()
    assert run_git("status", "--porcelain", "--ignored", cwd=second.path) == ""
    assert run_git("branch", "--list", "openase/t-11", cwd=second.mirror) == ""
    assert [p.name for p in second.path.parent.iterdir()] == [second.path.name]


async def test_spares_are_bounded_and_can_be_turned_off(tmp_path: Path, remote: Path) -> None:
    for spares in (0, 1):
        workspace = Workspace(tmp_path / f"ws-{spares}", spares=spares)
        for ticket in ("a", "b", "c"):
            await workspace.prepare(repo_of(remote), "main", f"openase/{ticket}", None)
        for ticket in ("a", "b", "c"):
            await workspace.remove("octo/hello", f"openase/{ticket}")
        parent = workspace.root / "worktrees/octo/hello"
        left = sorted(p.name[:7] for p in parent.iterdir()) if parent.exists() else []
        assert left == [".spare-"] * spares
        listing = run_git(
            "worktree", "list", "--porcelain", cwd=workspace.mirror_path("octo/hello")
        )
        assert listing.count("worktree ") == 1 + spares  # the bare mirror itself, and spares


@pytest.mark.parametrize(
    "full_name",
    ["../escape", "octo/../../x", "octo/hello/extra", "octo", "octo/..", "./x", "a/b c"],
)
async def test_malicious_repository_names_are_refused(
    workspace: Workspace, remote: Path, full_name: str
) -> None:
    with pytest.raises(WorkspaceError, match="repository name"):
        await workspace.prepare(repo_of(remote, full_name), "main", "openase/t", None)
    assert not workspace.root.exists()


@pytest.mark.parametrize(
    "branch", ["../../escape", "-f", "--upload-pack=x", "a..b", "a b", "HEAD", "x.lock", "a/.b", ""]
)
async def test_malicious_branch_names_are_refused(
    workspace: Workspace, remote: Path, branch: str
) -> None:
    with pytest.raises(WorkspaceError, match="branch name"):
        await workspace.prepare(repo_of(remote), "main", branch, None)
    with pytest.raises(WorkspaceError, match="branch name"):
        await workspace.prepare(repo_of(remote), branch or "~", "openase/t", None)
    assert not workspace.root.exists()


@pytest.mark.parametrize("branch", ["../../escape", "-f", "--upload-pack=x", "a..b", "HEAD", ""])
async def test_malicious_branch_names_are_refused_once_the_mirror_exists(
    workspace: Workspace, remote: Path, branch: str
) -> None:
    """With a mirror, the names are checked while its config is read: still refused, and
    no worktree, branch or fetch comes of it."""
    first = await workspace.prepare(repo_of(remote), "main", "openase/t", None)
    mirror = first.mirror
    refs_before = await git("for-each-ref", "--format=%(refname)", cwd=mirror)
    with pytest.raises(WorkspaceError, match="branch name"):
        await workspace.prepare(repo_of(remote), "main", branch, None)
    with pytest.raises(WorkspaceError, match="branch name"):
        await workspace.prepare(repo_of(remote), branch or "~", "openase/u", None)
    assert await git("for-each-ref", "--format=%(refname)", cwd=mirror) == refs_before
    assert [path.name for path in first.path.parent.iterdir()] == [first.path.name]


def test_clone_urls_never_carry_credentials_to_disk() -> None:
    assert (
        remote_url("https://ghs_secret@github.example/o/r.git") == "https://github.example/o/r.git"
    )
    assert remote_url("ssh://git@github.example/o/r.git") == "ssh://git@github.example/o/r.git"
    assert remote_url("git@github.example:o/r.git") == "git@github.example:o/r.git"
    assert remote_url("/srv/git/r.git") == "/srv/git/r.git"
    with pytest.raises(WorkspaceError, match="embeds credentials") as refused:
        remote_url("https://x-access-token:ghs_secret@github.example/o/r.git")
    assert "ghs_secret" not in str(refused.value)
    for bad in ("ext::sh -c touch% /tmp/pwned", "--upload-pack=evil", "https://h/r\n", ""):
        with pytest.raises(WorkspaceError):
            remote_url(bad)


async def test_a_tampered_mirror_config_stops_the_token_from_being_used(
    workspace: Workspace, remote: Path
) -> None:
    wt = await workspace.prepare(repo_of(remote), "main", "openase/t-10", None)
    # What an agent could plant from its worktree to send the token elsewhere.
    run_git("config", "url.https://evil.example/.insteadOf", str(remote), cwd=wt.mirror)

    with pytest.raises(WorkspaceError, match=r"url\.https://evil\.example/\.insteadof"):
        await workspace.push(wt, "ghs_not_sent")
    with pytest.raises(WorkspaceError, match="did not write"):
        await workspace.prepare(repo_of(remote), "main", "openase/t-10", "ghs_not_sent")


async def test_a_missing_base_branch_is_a_clear_error(workspace: Workspace, remote: Path) -> None:
    with pytest.raises(WorkspaceError, match="base branch 'develop' is not on"):
        await workspace.prepare(repo_of(remote), "develop", "openase/t", None)


async def test_git_errors_and_commands_are_scrubbed_of_the_token(tmp_path: Path) -> None:
    token = "ghs_scrubme_0123456789"
    run_git("init", "--quiet", str(tmp_path), cwd=tmp_path)

    with pytest.raises(GitError) as failed:
        await git("rev-parse", "--verify", token, cwd=tmp_path, token=token)

    assert token not in str(failed.value)
    assert "***" in failed.value.command
    assert failed.value.exit_code == 128


async def test_the_token_is_offered_only_to_the_remotes_own_server(tmp_path: Path) -> None:
    token = "ghs_scoped_0123456789"
    scope = token_scope("https://github.example/octo/hello.git")

    def ask(host: str) -> bytes:
        return f"protocol=https\nhost={host}\n\n".encode()

    answer = await git(
        "credential",
        "fill",
        cwd=tmp_path,
        token=token,
        token_url=scope,
        input=ask("github.example"),
    )
    assert f"password={token}" in answer.splitlines()
    assert "username=x-access-token" in answer.splitlines()
    with pytest.raises(GitError) as refused:  # e.g. where a redirect would lead
        await git(
            "credential",
            "fill",
            cwd=tmp_path,
            token=token,
            token_url=scope,
            input=ask("evil.example"),
        )
    assert token not in str(refused.value)
    assert scope == "https://github.example"
    assert token_scope("git@github.example:octo/hello.git") is None


async def test_a_hung_git_is_killed_at_its_timeout(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/r.git"
        started = time.monotonic()
        with pytest.raises(GitError, match="timed out") as failed:
            await git("ls-remote", url, cwd=tmp_path, timeout=1)
    assert failed.value.exit_code is None
    assert time.monotonic() - started < 5


# --- an HTTP remote that demands the token ------------------------------------------------


@dataclass
class GitHttpServer:
    """`git http-backend` over 127.0.0.1 behind Basic auth for `x-access-token:<token>`."""

    project_root: Path
    token: str
    authorized: int = 0
    denied: int = 0
    seen_headers: list[str] = field(default_factory=list)

    def url(self, port: int, name: str) -> str:
        return f"http://127.0.0.1:{port}/{name}"

    def respond(self, handler: BaseHTTPRequestHandler) -> None:
        auth = handler.headers.get("Authorization", "")
        self.seen_headers.append(auth)
        expected = base64.b64encode(f"x-access-token:{self.token}".encode()).decode()
        if auth != f"Basic {expected}":
            self.denied += 1
            handler.send_response(401)
            handler.send_header("WWW-Authenticate", 'Basic realm="git"')
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        self.authorized += 1
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        path, _, query = handler.path.partition("?")
        env = {
            "PATH": os.environ["PATH"],
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_PROJECT_ROOT": str(self.project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": "x-access-token",  # enables receive-pack (push)
            "REMOTE_ADDR": "127.0.0.1",
            "REQUEST_METHOD": handler.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": handler.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
        }
        if handler.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = handler.headers["Content-Encoding"]
        if handler.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = handler.headers["Git-Protocol"]
        out = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=True
        ).stdout
        separator = b"\r\n\r\n" if b"\r\n\r\n" in out else b"\n\n"
        head, _, payload = out.partition(separator)
        status, headers = 200, []
        for line in head.decode().splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            else:
                headers.append((name, value.strip()))
        handler.send_response(status)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)


@pytest.fixture
def http_remote(remote: Path) -> Iterator[tuple[GitHttpServer, str]]:
    if not Path(run_git("--exec-path", cwd=remote.parent), "git-http-backend").exists():
        pytest.skip("git http-backend is not installed")
    backend = GitHttpServer(project_root=remote.parent, token="ghs_FAKE_INSTALLATION_TOKEN_42")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            backend.respond(self)

        def do_POST(self) -> None:
            backend.respond(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield backend, backend.url(server.server_address[1], remote.name)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_the_token_authenticates_over_http_and_never_lands_on_disk(
    workspace: Workspace, http_remote: tuple[GitHttpServer, str], remote: Path
) -> None:
    backend, url = http_remote
    token = backend.token
    repo = RepoRef(full_name="octo/hello", clone_url=url)

    wt = await workspace.prepare(repo, "main", "openase/t-http", token)
    (wt.path / "pushed-over-http.txt").write_text("yes\n")
    assert await workspace.commit_all(wt, "over http", GitIdentity())
    head = await workspace.push(wt, token)
    again = await workspace.prepare(repo, "main", "openase/t-http", token)  # fetch once more

    assert run_git("rev-parse", "refs/heads/openase/t-http", cwd=remote) == head
    assert again.reused_remote_branch
    assert again.start_sha == head
    assert backend.authorized >= 3  # fetch, push, fetch: the token is what let them in
    leaks = [str(p) for p in files_under(workspace.root) if token.encode() in p.read_bytes()]
    assert leaks == []
    assert (wt.mirror / "config").read_text().count(url) == 1  # the plain URL, no userinfo


async def test_a_wrong_or_missing_token_fails_fast_without_echoing_it(
    workspace: Workspace, http_remote: tuple[GitHttpServer, str]
) -> None:
    backend, url = http_remote
    repo = RepoRef(full_name="octo/hello", clone_url=url)
    wrong = "ghs_WRONG_TOKEN_0000"

    with pytest.raises(GitError) as failed:
        await workspace.prepare(repo, "main", "openase/t-denied", wrong)
    assert wrong not in str(failed.value)
    assert "Authentication failed" in failed.value.stderr_tail
    with pytest.raises(GitError):  # no prompt, no hang: GIT_TERMINAL_PROMPT=0
        await workspace.prepare(repo, "main", "openase/t-denied", None)
    assert backend.authorized == 0
    assert not any(wrong.encode() in p.read_bytes() for p in files_under(workspace.root))
