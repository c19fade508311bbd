"""The database side of `openase harness render|pin|unpin` (the other commands go through
the server's API): one transaction per command, and the lookups they share. SQLAlchemy and
the store's modules are imported inside the functions, so that importing this module (every
harness command does) costs nothing until a command reaches the database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from bot.errors import ConfigError, OpenaseError
from bot.servers.embedded import EmbeddedPostgres
from bot.servers.services import postgres_dir

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from bot.harness.args import Ref
    from bot.settings import Settings
    from bot.tables.mirror import Ticket
    from harness_store.models import HarnessVersion

T = TypeVar("T")

_UNDEFINED_TABLE = "42P01"  # the SQLSTATE of a missing table: not migrated yet


def database_url(settings: Settings) -> str:
    """OPENASE_DATABASE_URL, else the database of a running `openase up`."""
    url = settings.database_url or EmbeddedPostgres.running_url(postgres_dir(settings))
    if url is None:
        raise ConfigError(
            "OPENASE_DATABASE_URL is not set, and no `openase up` is running with data dir "
            f"{settings.data_dir} (OPENASE_DATA_DIR): set the URL or start `openase up` first"
        )
    return url


def in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one transaction: committed when it returns, rolled back when it raises."""
    return asyncio.run(_transact(database_url(settings), work))


async def _transact(url: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    from sqlalchemy.exc import SQLAlchemyError  # here, not on top: see the docstring

    from harness_store.db import make_engine, make_sessionmaker, transaction

    engine = make_engine(url, pool_size=1)
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            return await work(session)
    except (SQLAlchemyError, OSError) as error:
        raise OpenaseError(_database_problem(error)) from None
    finally:
        await engine.dispose()


def _database_problem(error: BaseException) -> str:
    """One line about a database failure; asyncpg's messages never carry the password."""
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    detail = lines[0] if lines else type(original).__name__
    if isinstance(original, OSError):
        return f"cannot reach the database: {detail}"
    if getattr(original, "sqlstate", None) == _UNDEFINED_TABLE:
        return f"the database has no harness store yet ({detail}): run `openase migrate` first"
    return f"database: {detail}"


async def fetch_harness(session: AsyncSession, ref: Ref) -> HarnessVersion:
    """The harness version `ref` names: the current one when it names no version."""
    from harness_store import store  # here, not on top: see the docstring
    from harness_store.models import HarnessVersion

    if ref.version is None:
        return await store.require_current(session, HarnessVersion, ref.name)
    return await store.get_version(session, HarnessVersion, ref.name, ref.version)


async def find_ticket(session: AsyncSession, full_name: str, number: int) -> Ticket:
    """The mirrored issue OWNER/REPO#NUMBER (repository names compare case-insensitively)."""
    from sqlalchemy import func, select  # here, not on top: see the docstring

    from bot.tables.mirror import Repository, Ticket  # here, not on top: see the docstring

    query = (
        select(Ticket)
        .join(Repository, Ticket.repository_id == Repository.id)
        .where(func.lower(Repository.full_name) == full_name.lower(), Ticket.number == number)
        # A renamed-away repository can leave an inactive row with the old name behind.
        .order_by(Repository.active.desc(), Ticket.id.desc())
        .limit(1)
    )
    ticket = (await session.execute(query)).scalar_one_or_none()
    if ticket is None:
        raise OpenaseError(
            f"{full_name}#{number} is not in the mirror: check the number, or run "
            f"`openase sync {full_name}` first"
        )
    return ticket
