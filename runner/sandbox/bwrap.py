"""The bubblewrap command line for one confined process, and whether this machine can run it.

Chosen over Anthropic's sandbox-runtime (which wraps the same tool) because bubblewrap is a
Debian package with no runtime of its own, its options say exactly what is mounted, and the
egress proxy it would bring is the part we need per run anyway (our own events, our own
allowlist). What a sandboxed process sees:

- the system read-only (/usr, /etc without its secrets, /opt, the /bin and /lib links), a
  fresh /proc (its own PID namespace), a minimal /dev, private tmpfs /tmp, /var/tmp, /run;
- read-write: the worktree, the run's private home; of the repository's mirror, only what
  git needs to commit there (objects, refs, the worktree's own admin directory), the rest of
  the mirror read-only (its config and hooks cannot be changed from inside); the worktree's
  `.git` file read-only, so it cannot point the runner's own git at another repository;
- read-only: the program's installation, the runner's Python (for inner.py), the run's
  prompt directory, and the paths the runner was told to show (`--sandbox-read`);
- nothing else: not the runner user's home, keys, config, other runs' worktrees or mirrors;
- no network but its own loopback, unless the run's network is open; with the allowlist,
  the runner's proxy socket is bound in and inner.py forwards 127.0.0.1 ports to it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.contract import SandboxPolicy

BWRAP = "bwrap"
PROXY_PORT = 3128  # inside the sandbox: 127.0.0.1:3128 is the runner's egress proxy
SOCKET_INSIDE = "/run/openase/proxy.sock"
SCRIPTS_INSIDE = "/run/openase/sandbox"  # inner.py and forward.py, read-only
SCRIPTS = Path(__file__).resolve().parent

# The system, read-only. Top-level links (merged /usr: /bin -> usr/bin) are recreated as links.
_SYSTEM = ("/usr", "/etc", "/opt", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Of /etc, what is the machine's secret rather than the system's description.
_HIDDEN_FILES = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers")
_HIDDEN_DIRS = ("/etc/ssh", "/etc/ssl/private", "/etc/sudoers.d")

_INSTALL_FIX = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install "
    "bubblewrap), or let this repository's workflows run unconfined with `sandbox: off`"
)
_USERNS_FIX = (
    "user namespaces are not available to this user: enable them (Debian: sysctl "
    "kernel.unprivileged_userns_clone=1; any distribution: sysctl user.max_user_namespaces="
    "15000; Ubuntu 24.04: sysctl kernel.apparmor_restrict_unprivileged_userns=0 or an "
    "AppArmor profile for bwrap)"
)


@dataclass(frozen=True)
class Support:
    """Whether this machine can confine runs: the tool and its version, or why not."""

    tool: str = ""  # "bubblewrap 0.8.0"
    problem: str = ""  # what is wrong and the fix; empty when it works

    @property
    def available(self) -> bool:
        return not self.problem and bool(self.tool)


async def probe(binary: str = BWRAP) -> Support:
    """Try the very confinement runs get (namespaces included) on a trivial command."""
    path = shutil.which(binary)
    if path is None:
        return Support(problem=f"bubblewrap ({binary}) is not on PATH: {_INSTALL_FIX}")
    code, out = await _run([path, "--version"])
    if code != 0:
        return Support(problem=f"{path} --version failed ({out.strip()[:200]}): {_INSTALL_FIX}")
    tool = out.strip() or "bubblewrap"
    code, out = await _run([path, *_NAMESPACES, "--ro-bind", "/", "/", "--proc", "/proc", "true"])
    if code != 0:
        return Support(tool=tool, problem=f"{out.strip()[:300]}: {_USERNS_FIX}")
    return Support(tool=tool)


async def _run(argv: list[str]) -> tuple[int, str]:
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as error:
        return 127, str(error)
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 10)
    except TimeoutError:
        process.kill()
        await process.wait()
        return 124, "timed out"
    return process.returncode or 0, out.decode(errors="replace")


# Every namespace of its own; a user namespace even for a root runner, with no capabilities.
_NAMESPACES = ("--unshare-all", "--unshare-user", "--cap-drop", "ALL", "--die-with-parent")


@dataclass(frozen=True)
class GitDirs:
    """Where a linked worktree keeps its git data: the shared mirror and its admin dir."""

    mirror: Path
    admin: Path  # <mirror>/worktrees/<name>: HEAD, index, the worktree's logs

    @classmethod
    def of(cls, worktree: Path) -> GitDirs | None:
        dot_git = worktree / ".git"
        try:
            text = dot_git.read_text()
        except OSError:
            return None
        if not text.startswith("gitdir:"):
            return None
        admin = (worktree / text.removeprefix("gitdir:").strip()).resolve()
        try:
            common = (admin / "commondir").read_text().strip()
        except OSError:
            return None
        return cls(mirror=(admin / common).resolve(), admin=admin)


@dataclass(frozen=True)
class Layout:
    """The paths of one run that its processes see."""

    worktree: Path
    home: Path
    prompt_dir: Path | None = None  # the run's prompt files, read-only
    read_only: tuple[Path, ...] = ()  # the program's installation and the runner's extras


def command(
    argv: Sequence[str],
    *,
    layout: Layout,
    cwd: Path,
    policy: SandboxPolicy,
    report_fd: int,
    proxy_socket: Path | None,
    tunnels: Sequence[str] = (),
    bwrap: str = BWRAP,
) -> list[str]:
    """bwrap's argv running `argv` confined; `proxy_socket` None shares the machine's network
    (the policy's network is open). `tunnels` are forward.py's `PORT=HOST:PORT` specs."""
    args = [bwrap, *_NAMESPACES, "--hostname", "openase-sandbox"]
    if proxy_socket is None:
        args.append("--share-net")
    args += _system()
    args += ["--proc", "/proc", "--dev", "/dev"]
    # Fresh and private inside the sandbox, not the machine's.
    for private in ("/tmp", "/var/tmp", "/run"):  # noqa: S108
        args += ["--tmpfs", private]
    resolver = os.path.realpath("/etc/resolv.conf")
    if proxy_socket is None and resolver.startswith("/run/"):
        # systemd-resolved's resolv.conf links into /run, private inside: show that file.
        args += ["--ro-bind-try", resolver, resolver]
    for path in (*_python_prefixes(), *layout.read_only):
        args += ["--ro-bind-try", str(path), str(path)]
    args += ["--ro-bind", str(SCRIPTS), SCRIPTS_INSIDE]
    if layout.prompt_dir is not None:
        args += ["--ro-bind", str(layout.prompt_dir), str(layout.prompt_dir)]
    args += ["--bind", str(layout.home), str(layout.home)]
    args += _worktree(layout.worktree)
    if proxy_socket is not None:
        args += ["--ro-bind", str(proxy_socket), SOCKET_INSIDE]
    args += ["--chdir", str(cwd)]
    inner = [
        str(Path(os.path.realpath(sys.executable))),
        "-I",
        "-S",
        f"{SCRIPTS_INSIDE}/inner.py",
        "--report-fd",
        str(report_fd),
        "--max-processes",
        str(policy.max_processes),
        "--max-memory-mb",
        str(policy.max_memory_mb),
        "--max-file-mb",
        str(policy.max_file_mb),
    ]
    if proxy_socket is not None:
        forward = [SOCKET_INSIDE, str(PROXY_PORT), *tunnels]
        for spec in forward:
            inner += ["--forward", spec]
    return [*args, "--", *inner, "--", *argv]


def _system() -> list[str]:
    args: list[str] = []
    for path in _SYSTEM:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for secret in _HIDDEN_FILES:
        if os.path.exists(secret):
            args += ["--ro-bind", "/dev/null", secret]
    for secret in _HIDDEN_DIRS:
        if os.path.isdir(secret):
            args += ["--tmpfs", secret, "--remount-ro", secret]
    return args


def _python_prefixes() -> list[Path]:
    """Where the runner's Python lives (inner.py runs on it), when not under /usr already."""
    prefixes = {Path(sys.base_prefix).resolve(), Path(os.path.realpath(sys.executable)).parent}
    return sorted(path for path in prefixes if not _under_system(path))


def _under_system(path: Path) -> bool:
    return any(path.is_relative_to(root) for root in ("/usr", "/opt", "/bin", "/lib"))


def _worktree(worktree: Path) -> list[str]:
    args = ["--bind", str(worktree), str(worktree)]
    dirs = GitDirs.of(worktree)
    if dirs is None:
        return args  # not a linked worktree (a plain checkout): its .git is inside it
    args += ["--ro-bind", str(worktree / ".git"), str(worktree / ".git")]
    args += ["--ro-bind", str(dirs.mirror), str(dirs.mirror)]
    for writable in (dirs.mirror / "objects", dirs.mirror / "refs", dirs.mirror / "logs"):
        args += ["--bind-try", str(writable), str(writable)]
    args += ["--bind", str(dirs.admin), str(dirs.admin)]
    return args


def install_roots(binary: str) -> tuple[Path, ...]:
    """What of a program's installation must be visible for it to run: its package (an npm
    package's node_modules), its prefix (`<prefix>/bin/<name>`) or its directory; both for
    the program as named and as its links resolve (a venv's python links into the
    interpreter's own prefix; an npm `.bin` entry links into its package)."""
    found = shutil.which(binary)
    if found is None:
        return ()
    named = Path(os.path.abspath(found))
    roots = {_root_of(named), _root_of(Path(os.path.realpath(named)))}
    return tuple(sorted(root for root in roots if not _under_system(root)))


def _root_of(path: Path) -> Path:
    parts = path.parts
    if "node_modules" in parts:
        return Path(*parts[: parts.index("node_modules") + 1])
    if path.parent.name == "bin":
        return path.parent.parent
    return path.parent


def program_roots(program: str) -> tuple[Path, ...]:
    """`install_roots` of a program and, for a script, of its interpreter (`#!` line)."""
    roots = list(install_roots(program))
    found = shutil.which(program)
    if found is not None:
        try:
            with open(found, "rb") as script:
                first = script.readline(512)
        except OSError:
            first = b""
        if first.startswith(b"#!"):
            words = first[2:].decode(errors="replace").split()
            if words and words[0].endswith("/env") and len(words) > 1:
                words = words[1:]
            if words:
                roots += install_roots(words[0])
    return tuple(dict.fromkeys(roots))
