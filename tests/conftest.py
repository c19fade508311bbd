"""Shared fixtures: real PostgreSQL and Redis (embedded unless URLs are given), migrated once.

Set OPENASE_TEST_DATABASE_URL / OPENASE_TEST_REDIS_URL to use existing servers instead (with
one test process: every test empties all tables, so the database must be a throwaway one).
Under pytest-xdist each test process starts embedded servers of its own.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from arq.worker import Worker
from sqlalchemy import select, text

from adapters.jira.client import JiraClient
from adapters.linear.client import LinearClient
from bot.deps import Deps, build_deps
from bot.intake.ingest import ingest_delivery
from bot.intake.pump import PUMP_TASK
from bot.processes.app import create_app
from bot.processes.engine_clock import THREAD_NAME as CLOCK_THREAD
from bot.processes.migrate import upgrade
from bot.processes.worker import make_worker
from bot.registry import Clients, TrackerClients
from bot.servers.embedded import EmbeddedPostgres, EmbeddedRedis
from bot.servers.outages import Outages
from bot.settings import Settings
from bot.tables.mirror import Delivery
from harness_store.db import Base
from tests.fakes.github_api import FakeGitHubAPI, fake_github_api
from tests.fakes.jira_server import FakeJira
from tests.fakes.linear_api import FakeLinear
from tests.support import network_guard
from tests.support.helpers import (
    TEST_API_URL,
    TEST_WEBHOOK_SECRET,
    GitHubWebhookSender,
    test_private_key,
)
from tests.support.lifecycle import World, world

network_guard.install()


class Services:
    def __init__(self, database_url: str, redis_url: str) -> None:
        self.database_url = database_url
        self.redis_url = redis_url


@pytest.fixture(scope="session", autouse=True)
def _structlog_loggers_never_cached() -> Iterator[None]:
    """Tests that run a command in-process (`main(["doctor"])`) configure logging as the
    product does, caching each module's logger on first use: a cached logger escapes
    structlog's `capture_logs` for the rest of the process, so a later test could not see
    what it logs. Here nothing is cached."""
    configure = structlog.configure

    def uncached(**settings: Any) -> None:
        configure(**{**settings, "cache_logger_on_first_use": False})

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(structlog, "configure", uncached)
        yield


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    """URLs of a migrated PostgreSQL and a Redis for the whole session."""
    database_url = os.environ.get("OPENASE_TEST_DATABASE_URL")
    redis_url = os.environ.get("OPENASE_TEST_REDIS_URL")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if (database_url or redis_url) and workers > 1:
        # Every test empties the database and Redis: two processes would empty each
        # other's. The embedded servers are per process, so only given URLs clash.
        pytest.exit(
            "OPENASE_TEST_DATABASE_URL / OPENASE_TEST_REDIS_URL are shared by every test "
            "process: run one (make test TEST_WORKERS=1)",
            returncode=2,
        )
    # Short path: unix socket paths must stay under ~100 bytes.
    root = Path(tempfile.mkdtemp(prefix="oa-"))
    pg = redis = None
    try:
        if not database_url:
            pg = EmbeddedPostgres(root / "pg")
            database_url = pg.start()
        if not redis_url:
            redis = EmbeddedRedis(root / "redis", persist=False)
            redis_url = redis.start()
        upgrade(database_url)
        yield Services(database_url, redis_url)
    finally:
        if redis is not None:
            redis.stop()
        if pg is not None:
            pg.stop()
        # 40 MB a test process (and a bench run) otherwise left in the temporary directory.
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path_factory.mktemp("data"),
        github_app_id=4242,
        github_private_key=test_private_key(),
        github_webhook_secret=TEST_WEBHOOK_SECRET,
        github_api_url=TEST_API_URL,
    )


@pytest.fixture(scope="session")
async def session_deps(services: Services, settings: Settings) -> AsyncIterator[Deps]:
    deps = await build_deps(
        settings, database_url=services.database_url, redis_url=services.redis_url
    )
    try:
        yield deps
    finally:
        await deps.close()


# Every test starts from empty tables and fresh sequences. Not with TRUNCATE (20 tables'
# files replaced on every test: ~50 ms each), but by deleting the rows there are, children
# first, and restarting only the sequences that were used: ~2 ms when a test wrote little.
# (A per-test SAVEPOINT cannot isolate these tests: the code under test commits on many
# connections at once — claims, outbox locks, the webhook's own asyncpg pool.)
_TABLE_NAMES = ", ".join(f"'{table.name}'" for table in reversed(Base.metadata.sorted_tables))
_EMPTY_TABLES = f"""DO $reset$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY[{_TABLE_NAMES}] LOOP
        EXECUTE format('DELETE FROM %I', name);
    END LOOP;
    FOR name IN SELECT sequencename FROM pg_sequences
                WHERE schemaname = current_schema() AND last_value IS NOT NULL LOOP
        EXECUTE format('ALTER SEQUENCE %I RESTART', name);
    END LOOP;
END
$reset$"""  # noqa: S608  # our own tables' names, not input


@pytest.fixture
async def deps(session_deps: Deps) -> AsyncIterator[Deps]:
    """The shared clients, over an empty database and an empty Redis."""
    async with session_deps.engine.begin() as conn:
        await conn.execute(text(_EMPTY_TABLES))
    await session_deps.redis.flushdb()
    session_deps.workflow = None  # a test's engine is its own
    # Fresh API clients: no installation token or rate-limit state from another test.
    await session_deps.clients.aclose()
    session_deps.clients = Clients()
    # No outage another test saw (or caught up from) is carried into this one.
    await session_deps.outages.aclose()
    session_deps.outages = Outages(probes=session_deps.outages.probes)
    yield session_deps
    # Tests share one event loop and these Deps: an ingest pump a test left running would
    # claim the next tests' deliveries with its own engine (or none).
    left = [
        task for task in asyncio.all_tasks() if task.get_name() == PUMP_TASK and not task.done()
    ]
    for task in left:
        task.cancel()
    assert not left, f"{len(left)} ingest pump(s) left running by this test"
    # ... and an engine clock left running would tick and record over the next tests.
    clocks = [t for t in threading.enumerate() if t.name == CLOCK_THREAD and t.is_alive()]
    assert not clocks, f"{len(clocks)} engine clock(s) left running by this test"


@pytest.fixture
async def client(
    deps: Deps, services: Services, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client speaking to the app in-process."""
    app = create_app(
        settings, database_url=services.database_url, redis_url=services.redis_url, deps=deps
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://openase.test") as http:
        yield http


@pytest.fixture
def github(client: httpx.AsyncClient) -> GitHubWebhookSender:
    """Sends signed GitHub webhooks to the app."""
    return GitHubWebhookSender(client)


@pytest.fixture(autouse=True)
def github_api(settings: Settings) -> Iterator[FakeGitHubAPI]:
    """Every test talks to a fake GitHub API (respx); jobs a test sets off never leave."""
    with fake_github_api(settings) as fake:
        yield fake


AppWith = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def app_with(deps: Deps, services: Services, monkeypatch: pytest.MonkeyPatch) -> AppWith:
    """Opens a client of an app whose settings carry `changes` (also put on `deps`, where
    handlers and jobs read them; restored after the test). `base_url` and `headers` go to
    the client."""

    @asynccontextmanager
    async def opened(
        base_url: str = "http://openase.test",
        headers: dict[str, str] | None = None,
        **changes: Any,
    ) -> AsyncIterator[httpx.AsyncClient]:
        changed = deps.settings.model_copy(update=changes)
        monkeypatch.setattr(deps, "settings", changed)
        app = create_app(
            changed, database_url=services.database_url, redis_url=services.redis_url, deps=deps
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url=base_url, headers=headers
        ) as http:
            yield http

    return opened


OpenWorld = Callable[..., AbstractAsyncContextManager[World]]


@pytest.fixture
def open_world(
    deps: Deps,
    settings: Settings,
    github_api: FakeGitHubAPI,
    github: GitHubWebhookSender,
    services: Services,
    tmp_path: Path,
) -> OpenWorld:
    """Opens tests/support/lifecycle.py's whole OpenASE over this test's services (options as
    `world` takes them: config, control, runners, workers, ...)."""

    def opened(**options: Any) -> AbstractAsyncContextManager[World]:
        return world(deps, settings, github_api, github, tmp_path, services.redis_url, **options)

    return opened


@pytest.fixture
def ingest_all(deps: Deps):  # type: ignore[no-untyped-def]
    """Ingest every pending delivery in order, in-process (no worker, no follow-up jobs run)."""

    async def run() -> list[str]:
        async with deps.sessions() as session:
            pending = (
                await session.execute(
                    select(Delivery.id).where(Delivery.status == "pending").order_by(Delivery.id)
                )
            ).scalars()
            ids = list(pending)
        return [await ingest_delivery(deps, pk) for pk in ids]

    return run


@pytest.fixture
def run_worker(deps: Deps, services: Services, settings: Settings):  # type: ignore[no-untyped-def]
    """Run the control worker in burst mode until the queue is empty (deterministic)."""

    async def run() -> Worker:
        worker = make_worker(
            settings,
            redis_url=services.redis_url,
            burst=True,
            deps=deps,
        )
        try:
            await worker.main()
        finally:
            await worker.close()
        return worker

    return run


JIRA_EMAIL = "openase-bot@example.com"  # the fake Jira's API user


@pytest.fixture
def linear_fake(github_api: FakeGitHubAPI) -> Iterator[FakeLinear]:
    """The recording fake Linear on the test's respx router (nothing else leaves); every
    request is checked against Linear's real schema."""
    fake = FakeLinear()
    fake.mount(github_api.router)
    yield fake
    assert fake.invalid == [], "a request Linear's schema refuses"


@pytest.fixture
def jira_fake() -> Iterator[FakeJira]:
    """The recording fake Jira Cloud site, served on 127.0.0.1."""
    with FakeJira() as fake:
        yield fake
    assert fake.crashes == []


@pytest.fixture
async def tracker_clients(
    linear_fake: FakeLinear, jira_fake: FakeJira
) -> AsyncIterator[TrackerClients]:
    """Real Linear and Jira clients, talking to the fakes."""
    both = TrackerClients(
        linear=LinearClient(linear_fake.api_key, url=linear_fake.url, timeout=5.0),
        jira=JiraClient(jira_fake.url, JIRA_EMAIL, jira_fake.token, cloud=True, timeout=5),
    )
    yield both
    await both.aclose()
