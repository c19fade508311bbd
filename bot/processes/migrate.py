"""`alembic upgrade head` from code, so an installed package migrates without an ini file."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations
from harness_store.db import make_engine, make_sessionmaker
from harness_store.seed import seed_builtins

MIGRATIONS_DIR = Path(migrations.__file__).parent


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would choke on a '%' in a password.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` (blocking; runs its own event loop)."""
    command.upgrade(alembic_config(url), revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    """Migrate from inside a running event loop (Alembic's env runs its own loop)."""
    await asyncio.to_thread(upgrade, url, revision)


async def seed_async(url: str) -> int:
    """Publish the built-in harnesses and skills that the store does not have yet; how many.

    Names already present are left alone, so a user's own versions survive upgrades.
    """
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            return len(await seed_builtins(session))
    finally:
        await engine.dispose()


async def prepare_database(url: str) -> int:
    """Migrate to the newest schema, then seed the harness store (first start)."""
    await upgrade_async(url)
    return await seed_async(url)
