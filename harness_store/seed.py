"""The built-in harnesses and skills, published on first start and never over a user's edits.

They live as data files under `harness_store/builtin/` (`harnesses/<name>.md`,
`skills/<name>/SKILL.md` and friends), so they read and diff like any other version.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

from sqlalchemy.ext.asyncio import AsyncSession

from harness_store import store
from harness_store.models import HarnessVersion, SkillVersion
from harness_store.skills import read_files

AUTHOR = "openase"
MESSAGE = "built-in"


def _builtin() -> Traversable:
    return files("harness_store") / "builtin"


def builtin_harnesses() -> dict[str, str]:
    """Built-in harness texts by name."""
    folder = _builtin() / "harnesses"
    return {
        entry.name.removesuffix(".md"): entry.read_text(encoding="utf-8")
        for entry in sorted(folder.iterdir(), key=lambda item: item.name)
        if entry.is_file() and entry.name.endswith(".md")
    }


def builtin_skills() -> dict[str, dict[str, str]]:
    """Built-in skill folders by name."""
    folder = _builtin() / "skills"
    return {
        entry.name: read_files(entry)
        for entry in sorted(folder.iterdir(), key=lambda item: item.name)
        if entry.is_dir()
    }


async def seed_builtins(session: AsyncSession) -> list[HarnessVersion | SkillVersion]:
    """Publish each built-in whose name has no version yet; return what was published.

    Idempotent. A name that exists is left alone even when the built-in text changed in
    a newer OpenASE: the user's versions win, and they can diff against the file.
    """
    published: list[HarnessVersion | SkillVersion] = []
    for name, text in builtin_harnesses().items():
        if await store.current(session, HarnessVersion, name) is None:
            published.append(
                await store.publish_harness(
                    session, name, text, author=AUTHOR, message=MESSAGE, if_absent=True
                )
            )
    for name, skill_files in builtin_skills().items():
        if await store.current(session, SkillVersion, name) is None:
            published.append(
                await store.publish_skill(
                    session, name, skill_files, author=AUTHOR, message=MESSAGE, if_absent=True
                )
            )
    return published
