"""Running `git` for the runner: a minimal environment, no user or system config, a timeout,
and a git token that reaches git only through the environment of the one command.

How the token travels: the command's environment carries `OPENASE_GIT_TOKEN` plus config
given as `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n`, which resets
`credential.helper` and installs a shell helper whose text names only the variable, scoped
to the remote's `scheme://host` (`credential.<url>.helper`). Chosen over `http.extraHeader`
because git asks a helper only after a 401, and only a helper configured for the host that
asked: a redirect to another host never receives the token, where an extra header goes with
every request. Git never writes what a helper returns (ours ignores `store`). Chosen over
`-c` because even the helper text then stays out of argv, where `ps` would show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from runner.priority import child_group

TOKEN_ENV = "OPENASE_GIT_TOKEN"  # noqa: S105  # the variable's name, not a secret
_TAIL_CHARS = 2000

# Passed through from the runner: where binaries and CA certificates are, how to reach the
# network (proxies) and an ssh agent for ssh remotes. None of them is a git secret.
_INHERITED = (
    "PATH",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "SSH_AUTH_SOCK",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
)

# Config for every command, at command-line precedence (above the repository's config, which
# an agent working in a worktree of the shared mirror can edit): no hooks, no fsmonitor
# daemon, no gc left running in the background after we return.
_ALWAYS: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", os.devnull),
    ("core.fsmonitor", "false"),
    ("gc.autoDetach", "false"),
)

# The helper names the variable; its shell expands it, so no config value holds the token.
# Only `get` answers: `store` and `erase` (after success or a 401) do nothing.
_HELPER = (
    '!f() { test "$1" = get || return 0; echo username=x-access-token; '
    f'echo "password=${TOKEN_ENV}"; }}; f'
)

_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


class GitError(Exception):
    """A git command failed or timed out; every field is free of secrets."""

    def __init__(self, command: str, exit_code: int | None, stderr_tail: str) -> None:
        self.command = command
        self.exit_code = exit_code  # None: killed on timeout
        self.stderr_tail = stderr_tail
        status = "timed out" if exit_code is None else f"exited {exit_code}"
        detail = f": {stderr_tail.strip()}" if stderr_tail.strip() else ""
        super().__init__(f"{command} {status}{detail}")


def scrub(text: str, token: str | None) -> str:
    """`text` with the token and any URL userinfo replaced by `***`."""
    if token:
        text = text.replace(token, "***")
    return _USERINFO.sub("***@", text)


def git_env(
    *,
    home: Path | None = None,
    token: str | None = None,
    token_url: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The whole environment of one git command; `token_url` (`scheme://host[:port]`) limits
    the token to that server."""
    env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(
        # Not a directory: nothing of a user's is read from it, nothing can be written to it.
        HOME=str(home or os.devnull),
        LANG="C",
        LC_ALL="C",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_ATTR_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="",
        SSH_ASKPASS="",
    )
    config = list(_ALWAYS)
    if token is not None:
        # The empty value drops helpers configured anywhere else (e.g. `store`).
        scoped = f"credential.{token_url}.helper" if token_url else "credential.helper"
        config += [("credential.helper", ""), (scoped, _HELPER)]
        env[TOKEN_ENV] = token
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for index, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    env.update(extra or {})
    return env


def _describe(args: Sequence[str], token: str | None) -> str:
    return scrub("git " + " ".join(args), token)


def _tail(data: bytes, token: str | None) -> str:
    # Scrub before cutting, so a token straddling the cut cannot survive half-visible.
    return scrub(data.decode(errors="replace"), token)[-_TAIL_CHARS:]


async def git(
    *args: str,
    cwd: Path | None,
    token: str | None = None,
    token_url: str | None = None,
    timeout: float = 600,  # noqa: ASYNC109  # kills git, which an outer timeout would not
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> str:
    """Run `git *args` in `cwd` and return its stdout; raise `GitError` on failure or timeout.

    `token_url` scopes the token to one server (see `git_env`); `env` adds variables (author
    identity) to the minimal environment; `home` is an empty directory to use as HOME.
    """
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env=git_env(home=home, token=token, token_url=token_url, extra=env),
        stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # Own process group: a timeout kills git's helpers (remote-https, ssh) too; no
        # controlling terminal (`child_group`) means ssh cannot prompt.
        **child_group(),
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(input), timeout)
    except BaseException as error:
        # Timeout or cancellation: nothing of ours may keep running.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.shield(proc.wait())
        if isinstance(error, TimeoutError):
            raise GitError(_describe(args, token), None, f"killed after {timeout:g}s") from None
        raise
    if proc.returncode != 0:
        raise GitError(_describe(args, token), proc.returncode, _tail(stderr, token))
    return stdout.decode(errors="surrogateescape")


def git_sync(*args: str, cwd: Path, timeout: float = 60) -> str:
    """Blocking variant for quick local queries (rev-parse) from synchronous code."""
    try:
        done = subprocess.run(  # noqa: S603 - fixed binary, arguments are ours
            ["git", *args],  # noqa: S607 - git is found on PATH like every other tool
            cwd=cwd,
            env=git_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
            **child_group(),
        )
    except subprocess.TimeoutExpired:
        raise GitError(_describe(args, None), None, f"killed after {timeout:g}s") from None
    if done.returncode != 0:
        raise GitError(_describe(args, None), done.returncode, _tail(done.stderr, None))
    return done.stdout.decode(errors="surrogateescape")


def common_dir(worktree: Path) -> Path | None:
    """The git common directory of the checkout at `worktree` (a linked worktree's mirror,
    a clone's `.git`), read from the files git itself reads: no git process on a run's way
    to its agent. None when they are not as git writes them (ask git, or treat as broken).

    A linked worktree's `.git` is a file `gitdir: <its directory in the mirror>`, and that
    directory's `commondir` names the mirror, relative to it."""
    dot_git = worktree / ".git"
    try:
        if dot_git.is_dir():
            gitdir = dot_git
        else:
            text = dot_git.read_text(encoding="utf-8")
            if not text.startswith("gitdir: "):
                return None
            gitdir = Path(text.removeprefix("gitdir: ").strip())
            if not gitdir.is_absolute():
                gitdir = worktree / gitdir
        commondir = gitdir / "commondir"
        if not commondir.is_file():
            return gitdir.resolve()
        named = Path(commondir.read_text(encoding="utf-8").strip())
        return (named if named.is_absolute() else gitdir / named).resolve()
    except (OSError, UnicodeDecodeError):
        return None
