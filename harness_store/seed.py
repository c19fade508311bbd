"""The built-in harnesses and skills, published on first start and never over a user's edits.

They live as data files under `harness_store/builtin/` (`harnesses/<name>.md`,
`skills/<name>/SKILL.md` and friends), so they read and diff like any other version.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from harness_store import store
from harness_store.builtin_content import builtin_harnesses, builtin_skills
from harness_store.models import HarnessVersion, SkillVersion

AUTHOR = "openase"
MESSAGE = "built-in"


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
