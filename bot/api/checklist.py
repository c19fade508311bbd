"""What a deployment needs to do its main job (a labelled issue becomes a reviewed PR), each
checked with a one-line fix: `openase doctor` prints it, the home page shows it until
everything is green. A check that fails `blocking` stops the main job; the others are
worth knowing (failed deliveries, a tracker out of reach).

Nothing here changes anything: the webhook secret is looked for, not generated; GitHub is
only read (`GET /app`, the delivery log); runners are read from their Redis registry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import structlog
from sqlalchemy import func, select

from adapters.base import AppInfo, CodeHost
from adapters.errors import AdapterError, RequestRejected
from bot.api.health import check_health
from bot.config.control import ControlConfig, Provider, load_control_config
from bot.deps import Deps
from bot.effects.rows import service_of
from bot.engine.runs.machines import Machine, registered
from bot.errors import ConfigError
from bot.registry import Clients
from bot.servers.services import SECRET_FILE
from bot.settings import Settings
from bot.tables.mirror import Delivery, Installation, Repository
from bot.tables.workflow import EffectStatus, OutboxEffect

log = structlog.get_logger(__name__)
T = TypeVar("T")

CHECK_SECONDS = 5.0  # each remote check gives up after this long
RECENT = timedelta(hours=24)  # failed deliveries worth mentioning
# The variables each agent CLI takes its credentials from (any one will do).
CREDENTIALS: dict[str, tuple[str, ...]] = {
    "claude_code": ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"),
    "codex": ("OPENAI_API_KEY", "CODEX_API_KEY"),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
}


@dataclass(frozen=True)
class Check:
    """One line of the checklist."""

    name: str
    ok: bool
    detail: str  # what was found
    fix: str | None = None  # what to do about it, when not ok
    blocking: bool = True  # whether a failure stops the main job
    # Where the web page fixes it (a path of this site), shown there as a button.
    action: tuple[str, str] | None = None  # (path, label)


async def checklist(settings: Settings, deps: Deps | None) -> list[Check]:
    """Every check, in the order a new user fixes them. Without `deps` (no database or Redis
    URL, and no `openase up` running to borrow them from) only what needs neither is."""
    checks: list[Check] = []
    if deps is None:
        checks += [
            _no_url(settings, "database", "OPENASE_DATABASE_URL", settings.database_url),
            _no_url(settings, "redis", "OPENASE_REDIS_URL", settings.redis_url),
        ]
    else:
        checks += await _stores(deps)
    control, control_check = _control(settings)
    checks.append(control_check)
    github, app, app_check = await _app(settings, deps)
    checks.append(app_check)
    checks.append(_webhook_secret(settings))
    stores_ok = deps is not None and all(check.ok for check in checks[:2])
    if deps is not None and stores_ok:
        checks.append(await _deliveries(deps, github, app))
        checks.append(await _installations(deps, app))
        registry = await registered(deps.redis)
        now = time.time()
        machines = [machine for machine in registry if machine.fresh(now)]
        checks.append(_runners(registry, now))
        checks.append(_sandboxes(registry, now))
        checks.append(await _effects_waiting(deps))
        if control is not None:
            checks += [
                _provider(name, provider, machines, default=name == control.defaults.provider)
                for name, provider in control.providers.items()
            ]
    if deps is not None:
        checks += await _trackers(deps)
    return checks


def blocked(checks: Sequence[Check]) -> bool:
    """Whether something stops the main job."""
    return any(check.blocking and not check.ok for check in checks)


# --- the checks --------------------------------------------------------------------------------


async def _stores(deps: Deps) -> list[Check]:
    health = await check_health(deps)
    postgres, redis = health["postgres"], health["redis"]
    return [
        Check(
            "database",
            postgres == "ok",
            "PostgreSQL answers" if postgres == "ok" else f"PostgreSQL: {postgres}",
            "check that PostgreSQL runs and OPENASE_DATABASE_URL points at it",
        ),
        Check(
            "redis",
            redis == "ok",
            "Redis answers" if redis == "ok" else f"Redis: {redis}",
            "check that Redis runs and OPENASE_REDIS_URL points at it",
        ),
    ]


def _no_url(settings: Settings, name: str, variable: str, url: str | None) -> Check:
    if url is not None:
        return Check(name, False, f"{variable} is set; not checked without the other URL")
    return Check(
        name,
        False,
        f"{variable} is not set, and no `openase up` runs with data dir {settings.data_dir}",
        f"start `openase up`, or set {variable}",
    )


def _control(settings: Settings) -> tuple[ControlConfig | None, Check]:
    try:
        control = load_control_config(settings.config)
    except ConfigError as error:
        first = str(error).splitlines()[0]
        return None, Check(
            "control config", False, first, "fix the file OPENASE_CONFIG names (see above)"
        )
    where = str(settings.config) if settings.config else "built in"
    names = ", ".join(control.providers)
    return control, Check("control config", True, f"{where}: providers {names}")


async def _app(
    settings: Settings, deps: Deps | None
) -> tuple[CodeHost | None, AppInfo | None, Check]:
    setup = f"register it in one click at {settings.base_url}/setup, or set "
    setup += "OPENASE_GITHUB_APP_ID and OPENASE_GITHUB_PRIVATE_KEY_PATH"
    try:
        github = deps.github_app() if deps is not None else _standalone_app(settings)
    except ConfigError:
        register = ("/setup", "Register the GitHub App")
        return None, None, Check("GitHub App", False, "not configured", setup, action=register)
    try:
        app = await _within(github.app_info())
    except RequestRejected as error:
        fix = "check OPENASE_GITHUB_APP_ID and that the private key is the App's current one"
        return (
            github,
            None,
            Check(
                "GitHub App", False, f"GitHub refused the App's token (HTTP {error.status})", fix
            ),
        )
    except (AdapterError, TimeoutError) as error:
        detail = f"GitHub did not answer: {_short(error)}"
        return github, None, Check("GitHub App", False, detail, "check the network to GitHub")
    return github, app, Check("GitHub App", True, f"{app.slug} (id {app.id}), {app.html_url}")


def _standalone_app(settings: Settings) -> CodeHost:
    return Clients().github_app(settings)


def _webhook_secret(settings: Settings) -> Check:
    if settings.github_webhook_secret is not None:
        return Check("webhook secret", True, "set (OPENASE_GITHUB_WEBHOOK_SECRET)")
    generated = settings.data_dir.expanduser() / SECRET_FILE
    if generated.is_file() and generated.read_text().strip():
        return Check("webhook secret", True, f"generated by `openase up` ({generated})")
    return Check(
        "webhook secret",
        False,
        "none: every delivery would be refused",
        "set OPENASE_GITHUB_WEBHOOK_SECRET to the App's webhook secret (`openase up` makes one)",
    )


async def _deliveries(deps: Deps, github: CodeHost | None, app: AppInfo | None) -> Check:
    async with deps.sessions() as session:
        last = await session.scalar(
            select(func.max(Delivery.received_at)).where(Delivery.source == "github")
        )
    found = "no delivery received yet" if last is None else f"last received {_ago(last)}"
    failed = 0
    if github is not None and app is not None:
        try:
            failed = await _within(_failed_recently(github))
        except (AdapterError, TimeoutError) as error:
            found += f"; GitHub's delivery log could not be read ({_short(error)})"
    if failed:
        return Check(
            "deliveries",
            False,
            f"{found}; GitHub logged {failed} failed in the last 24 h (asked for again)",
            f"make {deps.settings.base_url}/webhooks/github reachable from GitHub, or set "
            "OPENASE_WEBHOOK_PROXY_URL",
            blocking=False,
        )
    return Check("deliveries", last is not None, found, _install_fix(app), blocking=False)


async def _failed_recently(github: CodeHost) -> int:
    since = datetime.now(UTC) - RECENT
    failed: set[str] = set()
    delivered: set[str] = set()
    async for page in github.hook_deliveries():
        for attempt in page:
            if attempt.delivered_at < since:
                return len(failed - delivered)
            (delivered if attempt.succeeded else failed).add(attempt.guid)
    return len(failed - delivered)


async def _installations(deps: Deps, app: AppInfo | None) -> Check:
    async with deps.sessions() as session:
        installations = await session.scalar(
            select(func.count()).select_from(Installation).where(Installation.deleted.is_(False))
        )
        repositories = await session.scalar(
            select(func.count()).select_from(Repository).where(Repository.active.is_(True))
        )
    found = f"{installations or 0} installation(s), {repositories or 0} repositories"
    return Check("installations", bool(repositories), found, _install_fix(app))


def _install_fix(app: AppInfo | None) -> str:
    where = f"{app.html_url}/installations/new" if app is not None else "the App's page"
    return f"install the App on a repository: {where}"


def _runners(registry: list[Machine], now: float) -> Check:
    """The runners online, and how each is doing: one cut off from Redis (no heartbeat for
    a while) or back from an outage says so."""
    listed = "; ".join(_machine_line(machine, now) for machine in registry)
    if not any(machine.fresh(now) for machine in registry):
        return Check(
            "runners",
            False,
            f"no runner is online ({listed})" if listed else "no runner is online",
            "start one: `openase runner --machine NAME` (`openase up` runs one itself)",
        )
    return Check("runners", True, listed)


def _sandboxes(registry: list[Machine], now: float) -> Check:
    """Whether the live runners confine runs; one that cannot takes only `sandbox: off`."""
    live = [machine for machine in registry if machine.fresh(now)]
    unable = [machine for machine in live if not machine.sandbox]
    if not unable:
        tools = sorted({machine.sandbox for machine in live})
        found = f"every live runner confines runs ({', '.join(tools)})" if live else "no runner"
        return Check("sandbox", True, found)
    problems = sorted({machine.sandbox_problem for machine in unable if machine.sandbox_problem})
    return Check(
        "sandbox",
        False,
        f"{', '.join(machine.name for machine in unable)} cannot sandbox runs and take only "
        "workflows with `sandbox: off`",
        problems[0] if problems else "install bubblewrap on the runner's machine",
        blocking=False,
    )


def _machine_line(machine: Machine, now: float) -> str:
    condition = machine.condition(now)
    return f"{machine.name} ({_clis(machine)}{'; ' + condition if condition else ''})"


async def _effects_waiting(deps: Deps) -> Check:
    """GitHub (an installation), Linear or Jira failing: what waits on it, and since when.
    Read from the outbox, so the web process sees what the workers met."""
    async with deps.sessions() as session:
        rows = (
            await session.execute(
                select(
                    OutboxEffect.installation_id,
                    OutboxEffect.kind,
                    func.count(),
                    func.min(OutboxEffect.created_at),
                    func.max(OutboxEffect.last_error),
                )
                .where(
                    OutboxEffect.status == EffectStatus.PENDING,
                    OutboxEffect.last_error.is_not(None),
                )
                .group_by(OutboxEffect.installation_id, OutboxEffect.kind)
            )
        ).all()
    waiting: dict[str, tuple[int, datetime, str]] = {}
    for installation_id, kind, count, oldest, error in rows:
        service = service_of(kind, installation_id)
        total, since, _ = waiting.get(service, (0, oldest, ""))
        waiting[service] = (
            total + count,
            min(since, oldest),
            str(error).removeprefix("held back: "),
        )
    if not waiting:
        return Check("effects", True, "none waiting on a failing service")
    found = "; ".join(
        f"{service}: {count} waiting, the oldest decided {_ago(since)} (error: {error[:160]})"
        for service, (count, since, error) in sorted(waiting.items())
    )
    return Check(
        "effects",
        False,
        found,
        "nothing to do unless it lasts: they are retried with backoff, and only the newest "
        "status is written once the service is back; check the service's status page",
        blocking=False,
    )


def _clis(machine: Machine) -> str:
    return ", ".join(f"{cli} {version}" for cli, version in sorted(machine.clis.items()))


def _provider(name: str, provider: Provider, machines: list[Machine], *, default: bool) -> Check:
    label = f"provider {name}"
    labels = set(provider.machine_labels)
    able = [m.name for m in machines if provider.cli in m.clis and labels <= m.labels]
    passed = sorted(key for key, value in provider.env.items() if value.get_secret_value())
    needed = CREDENTIALS.get(provider.cli, ())
    gives = f"passes {', '.join(passed)}" if passed else "passes no variables"
    if not able:
        wanted = provider.cli + (f" and labels {', '.join(sorted(labels))}" if labels else "")
        return Check(
            label,
            False,
            f"no online runner has {wanted}; {gives}",
            f"install the {provider.cli} CLI on a runner (or start one that has it)",
            blocking=default,
        )
    if needed and not set(needed) & set(passed):
        return Check(
            label,
            False,
            f"{provider.cli} on {', '.join(able)}, but the agent gets none of {', '.join(needed)}",
            f"set {needed[0]} where the control plane runs and pass it in the provider's env",
            blocking=default,
        )
    return Check(label, True, f"{provider.cli} on {', '.join(able)}; {gives}")


async def _trackers(deps: Deps) -> list[Check]:
    clients = deps.trackers()
    checks = []
    probes: list[tuple[str, Callable[[], Awaitable[str | None]] | None, str]] = [
        ("Linear", clients.linear.viewer_id if clients.linear else None, "OPENASE_LINEAR_API_KEY"),
        ("Jira", clients.jira.myself_id if clients.jira else None, "OPENASE_JIRA_API_TOKEN"),
    ]
    for name, probe, setting in probes:
        if probe is None:
            continue  # not configured: nothing to reach
        try:
            who = await _within(probe())
        except (AdapterError, TimeoutError) as error:
            checks.append(
                Check(
                    name,
                    False,
                    f"{name} did not answer as the bot: {_short(error)}",
                    f"check {setting} and the URL",
                    blocking=False,
                )
            )
            continue
        checks.append(Check(name, True, f"reachable, as {who}"))
    return checks


# --- helpers -------------------------------------------------------------------------------------


async def _within(work: Awaitable[T]) -> T:
    async with asyncio.timeout(CHECK_SECONDS):
        return await work


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]


def _ago(when: datetime) -> str:
    seconds = max(0, int((datetime.now(UTC) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"
