"""The control worker's workflow engine, built when the worker starts if a GitHub App is
configured, and otherwise as soon as one is, without a restart: the setup page registers an
App in the web process (in `openase up`, the same process: its Deps change) or, with
`serve` and `worker` apart, in another process (the data dir's `github-app.json` changes,
and is read again here within RECHECK_SECONDS). An App replaced the same way gets a new
engine too.
"""

from __future__ import annotations

import os
import time
from typing import Any

import structlog

from adapters.base import CodeHost
from bot.config.control import load_control_config
from bot.config.github_app import adopt_app, app_file, stored_app
from bot.deps import Deps
from bot.effects.outbox import SettleHook
from bot.engine.commands.registry import Commands
from bot.engine.context import Engine
from bot.engine.jobs import WorkflowReactor, settle_hook
from bot.errors import ConfigError
from bot.registry import RegisteredApp

log = structlog.get_logger(__name__)

RECHECK_SECONDS = 5.0  # how often the data dir's App record is looked at for a change


def build_engine(deps: Deps) -> Engine | None:
    """The worker's engine; None (and one log line) when the GitHub App is not configured."""
    try:
        github = deps.github_app()
    except ConfigError as exc:
        # Until one is registered (the setup page), or configured, and found by the slot.
        log.warning("engine_disabled", reason=str(exc), fix=f"{deps.settings.base_url}/setup")
        return None
    return _engine(deps, github)


def _engine(deps: Deps, github: CodeHost) -> Engine:
    engine = Engine(
        deps=deps,
        github=github,
        control=load_control_config(deps.settings.config),
        trackers=deps.trackers(),
    )
    _warn_unwritable_trackers(engine)
    return engine


def _warn_unwritable_trackers(engine: Engine) -> None:
    """Routes without the credentials to write back: their tickets are only mirrored."""
    if engine.control.linear.teams and engine.trackers.linear is None:
        log.warning(
            "linear_unwritable",
            reason="linear.teams is configured but OPENASE_LINEAR_API_KEY is not set: "
            "Linear tickets are mirrored, not worked on",
        )
    if engine.control.jira.projects and engine.trackers.jira is None:
        log.warning(
            "jira_unwritable",
            reason="jira.projects is configured but OPENASE_JIRA_URL / OPENASE_JIRA_API_TOKEN "
            "are not set: Jira tickets are mirrored, not worked on",
        )


class EngineSlot:
    """What the engine's jobs ask for their engine (`bot.engine.jobs` calls it): the current
    engine, rebuilt when the App it acts as changes. Installing an engine also hands it to
    ingest (`deps.workflow`) and to the outbox (the settle hook in the worker's ctx)."""

    def __init__(
        self,
        ctx: dict[str, Any],
        deps: Deps,
        commands: Commands,
        *,
        settle_key: str,
        fixed: Engine | None = None,
    ) -> None:
        self._ctx = ctx
        self._deps = deps
        self._commands = commands
        self._settle_key = settle_key
        self._fixed = fixed is not None  # given by the caller (tests, a benchmark): kept
        self._stored = _stored_or_none(deps)
        self._stamp = _stamp(deps)
        self._looked = time.monotonic()
        self.engine: Engine | None = None
        engine = fixed if fixed is not None else build_engine(deps)
        if engine is not None:
            self._install(engine)

    def __call__(self) -> Engine | None:
        if self._fixed:
            return self.engine
        now = time.monotonic()
        if now - self._looked >= RECHECK_SECONDS:
            self._looked = now
            self._read_stored_app()
        github = _github_or_none(self._deps)
        if github is not None and (self.engine is None or self.engine.github is not github):
            try:
                self._install(_engine(self._deps, github))
            except ConfigError as exc:  # the control config went bad since the start
                log.error("engine_not_built", reason=str(exc))
                return self.engine
            log.info("engine_started", app_id=github.app_id)
        return self.engine

    def _install(self, engine: Engine) -> None:
        self.engine = engine
        self._deps.workflow = WorkflowReactor(engine, self._commands)
        hook: SettleHook = settle_hook(engine)
        self._ctx[self._settle_key] = hook

    def _read_stored_app(self) -> None:
        """Adopt the data dir's App record when it changed since it was last read."""
        stamp = _stamp(self._deps)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            app = stored_app(self._deps.settings)
        except ConfigError as exc:
            log.error("stored_app_unreadable", reason=str(exc))
            return
        if app is not None:
            self._deps.settings = adopt_app(self._deps.settings, app, previous=self._stored)
            self._stored = app


def _stamp(deps: Deps) -> tuple[int, int, int] | None:
    try:
        info = os.stat(app_file(deps.settings))
    except OSError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)


def _stored_or_none(deps: Deps) -> RegisteredApp | None:
    try:
        return stored_app(deps.settings)
    except ConfigError:
        return None


def _github_or_none(deps: Deps) -> CodeHost | None:
    try:
        return deps.github_app()
    except ConfigError:
        return None
