"""`openase up`: the whole product on one machine.

It binds the port first (a taken port fails fast), starts the embedded PostgreSQL and Redis
it needs, migrates, and then supervises the web app, the control worker and this machine's
runner as processes of their own (bot/processes/supervisor.py), printing its banner once
the web app answers. A stop is always in order: web (no new deliveries), worker (finish or
requeue jobs), runner (finish or hand back runs), then the servers.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

import structlog
from pydantic import SecretStr

from bot.config.github_app import APP_FILE, stored_app
from bot.errors import ConfigError
from bot.processes import supervised
from bot.processes.lifecycle import SHUTDOWN_GRACE, Shutdown, base_url, listen, loopback
from bot.processes.migrate import prepare_database
from bot.processes.supervisor import ChildSpec, Supervisor
from bot.registry import RegisteredApp
from bot.servers.services import SECRET_FILE, EmbeddedServices, ServiceUrls, webhook_secret
from bot.settings import Settings

log = structlog.get_logger(__name__)

# How long `up` lets a child take over its stop before killing it: the grace, then closing.
CHILD_STOP_SECONDS = SHUTDOWN_GRACE + 10.0
# Web processes `up` runs on the one socket. One: a second answered no more webhooks on two
# cores (README, Benchmark), and each more would need the session key and an App registered
# on another's /setup shared with it (bot/web/session.py, setup_page.py), and run the relay.
WEB_PROCESSES = 1


def resolve_webhook_secret(settings: Settings) -> tuple[Settings, str | None]:
    """Settings carrying a webhook secret, and the generated one to show (None if configured)."""
    if settings.github_webhook_secret is not None:
        return settings, None
    secret, path = webhook_secret(settings.data_dir)
    log.info("webhook_secret_loaded", path=str(path))
    return settings.model_copy(update={"github_webhook_secret": SecretStr(secret)}), secret


async def up(settings: Settings, shutdown: Shutdown) -> int:
    """`openase up`: embedded services as needed, migrations, then the web app, the control
    worker and the runner as supervised processes."""
    # Bound first: a taken port should not cost a database start and a migration.
    sock = listen(settings.host, settings.port)
    services = EmbeddedServices(settings)
    try:
        settings, generated_secret = resolve_webhook_secret(settings)
        urls = await asyncio.to_thread(services.start)
        if shutdown.requested.is_set():
            return 0
        log.info("migrating")
        seeded = await prepare_database(urls.database_url)
        if seeded:
            log.info("harness_store_seeded", versions=seeded)
        port = sock.getsockname()[1]
        url = base_url(settings.host, port)

        def banner() -> None:
            print(startup_banner(settings, url, generated_secret), flush=True)

        specs = children(settings, urls, sock, generated_secret, os.environ)
        supervisor = Supervisor(specs, stop_seconds=CHILD_STOP_SECONDS)
        return await supervisor.run(shutdown, (loopback(settings.host), port), banner)
    finally:
        sock.close()
        await asyncio.to_thread(services.stop)


def children(
    settings: Settings,
    urls: ServiceUrls,
    sock: socket.socket,
    generated_secret: str | None,
    environ: Mapping[str, str],
) -> list[ChildSpec]:
    """What `up` runs: `openase serve` on the bound socket, `openase worker`, and `openase
    runner` for this machine, as `up` itself was started (same Python, same code). URLs and
    secrets go through the environment: a command line is anyone's to read with `ps`."""
    # The code this process runs, ahead of the working directory, which -P keeps off the
    # path: a `bot/` package of the directory `up` was started in is not ours.
    root = str(Path(__file__).resolve().parents[2])
    python_path = os.pathsep.join(p for p in (root, environ.get("PYTHONPATH")) if p)
    cli = [sys.executable, "-P", "-m", "bot.processes.cli"]
    base = {
        **environ,
        "PYTHONPATH": python_path,
        supervised.SUPERVISOR_PID: str(os.getpid()),
        "OPENASE_REDIS_URL": urls.redis_url,
    }
    control = {**base, "OPENASE_DATABASE_URL": urls.database_url}
    if generated_secret is not None:
        control["OPENASE_GITHUB_WEBHOOK_SECRET"] = generated_secret
    specs = [
        ChildSpec(
            name=name,
            argv=[*cli, "serve"],
            env={**control, supervised.PROCESS_NAME: name, supervised.LISTEN_FD: str(fd)},
            tier=0,
            pass_fds=(fd,),
        )
        for name, fd in _web_names(sock.fileno())
    ]
    specs.append(
        ChildSpec("worker", [*cli, "worker"], {**control, supervised.PROCESS_NAME: "worker"}, 1)
    )
    machine = settings.machine or local_machine_name()
    runner = [
        *cli,
        "runner",
        f"--machine={machine}",
        f"--max-runs={settings.runner_max_runs}",
        f"--nice={settings.runner_nice}",
        f"--drain-seconds={SHUTDOWN_GRACE}",
        f"--workspace-root={settings.data_dir / 'workspaces' / machine}",
        *(f"--sandbox-read={path}" for path in settings.sandbox_read_paths()),
    ]
    # The runner needs Redis only, as `openase runner` on another machine would.
    specs.append(ChildSpec("runner", runner, {**base, supervised.PROCESS_NAME: "runner"}, 2))
    return specs


def _web_names(fd: int) -> list[tuple[str, int]]:
    if WEB_PROCESSES == 1:
        return [("web", fd)]
    return [(f"web-{i}", fd) for i in range(1, WEB_PROCESSES + 1)]


def local_machine_name() -> str:
    """The host name, made safe for a queue name."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", socket.gethostname()).strip("-._")
    return name[:63] or "local"


def startup_banner(settings: Settings, url: str, generated_secret: str | None) -> str:
    """What `up` prints once it serves: on stdout, between rules, apart from the log lines
    (stderr); the commands in it can be pasted as they are."""
    stored = _stored_app_or_none(settings)
    stored_in_use = stored is not None and settings.github_app_id == stored.id
    if generated_secret is not None:
        secret_source = (
            f"{generated_secret}\n{'':18}(generated; kept in {settings.data_dir / SECRET_FILE})"
        )
    elif (
        stored_in_use
        and stored is not None
        and settings.github_webhook_secret is not None
        and settings.github_webhook_secret.get_secret_value() == stored.webhook_secret
    ):
        secret_source = f"the registered App's (kept in {settings.data_dir / APP_FILE})"
    else:
        secret_source = "from OPENASE_GITHUB_WEBHOOK_SECRET"  # noqa: S105  # names a variable
    if settings.github_app_id is None:
        app = f"not configured: register it at {url}/setup"
    elif stored_in_use and stored is not None:
        app = f"{stored.slug} (id {stored.id}, registered on {url}/setup)"
    else:
        app = f"id {settings.github_app_id} (from OPENASE_GITHUB_APP_ID)"
    machine = settings.machine or local_machine_name()
    openase = openase_command()
    rule = "─" * 78
    lines = [
        "",
        rule,
        "OpenASE is up.",
        f"  web page        {url}/",
        f"  GitHub App      {app}",
        f"  webhook URL     {url}/webhooks/github",
        *(
            [f"  relay           {settings.webhook_proxy_url}"]
            if settings.webhook_proxy_url
            else []
        ),
        f"  health          {url}/healthz",
        f"  webhook secret  {secret_source}",
        f"  data dir        {settings.data_dir}",
        f"  local runner    {machine} (queue openase:runs:{machine})",
        "",
    ]
    if settings.github_app_id is None:
        lines += [
            "Next: register the GitHub App in one click (this machine's browser):",
            f"    {url}/setup",
        ]
    lines += [
        "From another terminal in this directory:",
        "  what is still missing, and how to fix it:",
        f"    {openase} doctor",
        "  the App's manifest by hand, its webhook at your public URL:",
        f"    {openase} app manifest --url URL",
        "GitHub must reach the webhook URL (or set OPENASE_WEBHOOK_PROXY_URL to a relay).",
        "Ctrl-C stops everything.",
        rule,
        "",
    ]
    return "\n".join(lines)


def _stored_app_or_none(settings: Settings) -> RegisteredApp | None:
    try:
        return stored_app(settings)
    except ConfigError:
        return None


def openase_command() -> str:
    """How to run `openase` from the shell that started this process: `openase` when that
    is what PATH finds, else the path it was started by (`.venv/bin/openase` after
    `make run`), else through this Python."""
    started = Path(sys.argv[0])
    on_path = shutil.which("openase")
    if (
        on_path is not None
        and started.name == "openase"
        and Path(on_path).resolve() == started.resolve()
    ):
        return "openase"
    if started.name == "openase" and started.exists():
        relative = os.path.relpath(started)
        return shlex.quote(relative if not relative.startswith("..") else str(started.resolve()))
    return f"{shlex.quote(sys.executable)} -m bot.processes.cli"
