"""`openase try`: one run on a local repository, without the queue or a database.

The user tries a harness, skills, hooks and an agent on their own checkout before publishing
anything. The repository itself is the "remote": the runner works in a worktree of a
mirror of it and pushes the result as a new branch `openase/try-<stamp>` into it (never
touching the checked-out branch), so `git log openase/try-…` shows what the agent did.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr, ValidationError

from bot.config.prices import prices_for
from bot.errors import ConfigError
from harness_store.builtin_content import builtin_harnesses
from harness_store.errors import HarnessStoreError
from harness_store.render import RepositoryVars, TicketVars, render_harness
from harness_store.skills import read_skill_dir
from runner.contract import (
    HOOK_PHASES,
    AgentConfig,
    HarnessRef,
    Hooks,
    HookSpec,
    Limits,
    RepoRef,
    RunResult,
    RunSpec,
    SandboxPolicy,
    SkillFile,
    SkillSpec,
    TicketRef,
)
from runner.events import PrintEventSink
from runner.execute import Cancellation, execute
from runner.sandbox import bwrap
from runner.sandbox.confine import Sandbox
from runner.workspace import Workspace

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOOK_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class TrialOptions:
    repo: Path
    agent: str
    task: str
    model: str | None = None
    argv: list[str] = field(default_factory=list)
    agent_bin: str | None = None
    env: list[str] = field(default_factory=list)
    harness: Path | None = None
    skills: list[Path] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)
    wall_seconds: float = 3600
    stall_seconds: float = 300
    budget_usd: float | None = None
    max_turns: int | None = None
    push: bool = True
    workspace_root: Path | None = None
    json: bool = False
    # Confined like a real run unless asked not to (runner/sandbox).
    sandbox: bool = True
    allow: list[str] = field(default_factory=list)
    sandbox_read: list[Path] = field(default_factory=list)


def parse_env(pairs: list[str]) -> dict[str, SecretStr]:
    env: dict[str, SecretStr] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not _ENV_NAME.match(name):
            raise ConfigError(f"--env {pair.split('=')[0]!r}: expected KEY=VALUE")
        env[name] = SecretStr(value)
    return env


def parse_hooks(items: list[str]) -> Hooks:
    by_phase: dict[str, list[HookSpec]] = {phase: [] for phase in HOOK_PHASES}
    for item in items:
        phase, sep, command = item.partition("=")
        if not sep or phase not in by_phase or not command.strip():
            raise ConfigError(
                f"--hook {item!r}: expected PHASE=COMMAND with PHASE one of "
                f"{', '.join(HOOK_PHASES)}"
            )
        words = command.split()
        base = _HOOK_NAME.sub("-", Path(words[0]).name).strip("-.") or "hook"
        taken = {hook.name for hook in by_phase[phase]}
        name, n = base[:60], 2
        while name in taken:
            name, n = f"{base[:57]}-{n}", n + 1
        by_phase[phase].append(HookSpec(name=name, run=command))
    return Hooks.model_validate(by_phase)


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(  # noqa: S603  # fixed git arguments, no shell
        ["git", "-C", str(repo), *args],  # noqa: S607  # git from PATH, as the runner uses it
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ConfigError(f"--repo {repo}: git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def build_spec(options: TrialOptions) -> RunSpec:
    """The RunSpec the control plane would have sent, from the command line's options."""
    repo = options.repo.expanduser().resolve()
    if not repo.is_dir():
        raise ConfigError(f"--repo {options.repo}: not a directory")
    top = Path(_git(repo, "rev-parse", "--show-toplevel"))
    base = _git(top, "rev-parse", "--abbrev-ref", "HEAD")
    if base == "HEAD":
        raise ConfigError(f"--repo {options.repo}: HEAD is detached; check out a branch first")
    if _git(top, "status", "--porcelain", "--untracked-files=no"):
        print(
            f"openase: note: uncommitted changes in {top} are not part of this try; it starts "
            f"from the last commit of {base}",
            file=sys.stderr,
        )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    ticket = TicketRef(key=f"try-{stamp}", title=options.task.splitlines()[0][:200])
    repository = RepoRef(
        full_name=f"local/{_safe(top.name)}", clone_url=str(top), default_branch=base
    )

    if options.harness is not None:
        try:
            template = options.harness.read_text()
        except OSError as error:
            raise ConfigError(f"--harness {options.harness}: {error.strerror}") from None
        harness_name = options.harness.stem
    else:
        template, harness_name = builtin_harnesses()["coder"], "coder"
    try:
        text = render_harness(
            template,
            ticket=TicketVars(key=ticket.key),
            repository=RepositoryVars(
                full_name=repository.full_name,
                default_branch=repository.default_branch,
                clone_url=repository.clone_url,
            ),
        )
    except HarnessStoreError as error:
        raise ConfigError(f"--harness {options.harness or 'coder'}: {error}") from None
    skills = [_skill(folder) for folder in options.skills]

    try:
        agent = AgentConfig(
            cli=options.agent,
            model=options.model,
            argv=tuple(options.argv),
            env=parse_env(options.env),
            binary=options.agent_bin,
            max_turns=options.max_turns,
        )
        # The shipped prices, so --budget-usd holds in dollars as in a ticket's runs.
        agent = agent.model_copy(update={"prices": prices_for(agent.cli, agent.model, {})})
        return RunSpec(
            run_id=f"try-{stamp}-{int(time.time() * 1000) % 1000:03d}",
            ticket=ticket,
            repo=repository,
            base_branch=base,
            work_branch=f"openase/try-{stamp}",
            prompt=options.task,
            harness=HarnessRef(name=harness_name, version=1, text=text),
            skills=tuple(skills),
            agent=agent,
            hooks=parse_hooks(options.hooks),
            limits=Limits(
                wall_seconds=options.wall_seconds,
                stall_seconds=options.stall_seconds,
                budget_usd=options.budget_usd,
            ),
            push=options.push,
            sandbox=SandboxPolicy(enabled=options.sandbox, allow=tuple(options.allow)),
        )
    except ValidationError as error:
        first = error.errors(include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"invalid option ({where}): {first['msg']}") from None


def _skill(folder: Path) -> SkillSpec:
    try:
        name, files = read_skill_dir(folder)
    except HarnessStoreError as error:
        raise ConfigError(f"--skill {folder}: {error}") from None
    return SkillSpec(
        name=name,
        version=1,
        files=tuple(SkillFile(path=path, content=content) for path, content in files.items()),
    )


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "repo"


async def run_trial(options: TrialOptions) -> RunResult:
    spec = build_spec(options)
    if options.agent == "command" and not options.argv:
        raise ConfigError("--agent command needs --argv 'PROGRAM ARGS…' ({prompt_file} expands)")
    cancellation = Cancellation()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, cancellation.cancel, f"interrupted ({sig.name})")
    sink = PrintEventSink(spec.run_id, out=sys.stderr)
    with contextlib.ExitStack() as stack:
        root = options.workspace_root
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="openase-try-")))
        workspace = Workspace(root)
        sandbox = await _sandbox(options, spec)
        try:
            return await execute(
                spec,
                workspace=workspace,
                sink=sink,
                cancellation=cancellation,
                machine="local",
                sandbox=sandbox,
            )
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            with contextlib.suppress(Exception):
                await workspace.remove(spec.repo.full_name, spec.work_branch)


async def _sandbox(options: TrialOptions, spec: RunSpec) -> Sandbox | None:
    """This machine's sandbox for a confined try; says up front what would not work in it."""
    if not options.sandbox:
        return None
    support = await bwrap.probe()
    if not support.available:
        raise ConfigError(
            f"cannot sandbox this try: {support.problem}; or try it unconfined with --no-sandbox"
        )
    shown = tuple(path.expanduser().resolve() for path in options.sandbox_read)
    for path in _unseen(spec.agent.argv[1:], shown):
        print(
            f"openase: note: {path} is not visible inside the sandbox; add "
            f"--sandbox-read {path.parent} (or try with --no-sandbox)",
            file=sys.stderr,
        )
    return Sandbox(support, read_only=shown)


def _unseen(words: Sequence[str], shown: Sequence[Path]) -> list[Path]:
    """Absolute paths among a command agent's arguments that the sandbox would not show."""
    system = (Path("/usr"), Path("/etc"), Path("/opt"))
    unseen = []
    for word in words:
        path = Path(word)
        if path.is_absolute() and path.exists():
            resolved = path.resolve()
            if not any(resolved.is_relative_to(root) for root in (*shown, *system)):
                unseen.append(path)
    return unseen


def summary(result: RunResult) -> str:
    """A few lines for a human at the end of `openase try`."""
    lines = [f"run {result.run_id}: {result.status.value}"]
    if result.error:
        lines.append(f"  why: {result.error}")
    if result.branch and result.head_sha:
        where = "pushed to" if result.pushed else "committed on"
        lines.append(f"  {where} {result.branch} at {result.head_sha[:12]}")
    for hook in result.hook_results:
        state = "passed" if hook.passed else ("timed out" if hook.timed_out else "FAILED")
        lines.append(f"  hook {hook.phase}/{hook.name} ({hook.on_failure}): {state}")
    tokens = result.usage.total_tokens
    cost = f", ${result.cost_usd:.4f}" if result.cost_usd is not None else ""
    lines.append(f"  usage: {tokens} tokens{cost}")
    if result.summary:
        lines.append("  agent's summary: " + result.summary.strip().replace("\n", "\n    "))
    return "\n".join(lines)
