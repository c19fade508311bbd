"""The built-in harnesses and skills, published on first start and never over a user's edits.

They live as data files under `harness_store/builtin/` (`harnesses/<name>.md`,
`skills/<name>/SKILL.md` and friends), so they read and diff like any other version. A
name whose current version is still the built-in of an older OpenASE (nobody published
over it) gets the new built-in as its next version: a change such as issue #15's (ticket
text left the harnesses) reaches every deployment that did not write its own.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from harness_store import store
from harness_store.builtin_content import builtin_harnesses, builtin_skills
from harness_store.models import HarnessVersion, SkillVersion
from harness_store.skills import files_hash, validate_skill

AUTHOR = "openase"
MESSAGE = "built-in"


async def seed_builtins(session: AsyncSession) -> list[HarnessVersion | SkillVersion]:
    """Publish each built-in whose name has no version yet, or whose current version is an
    older built-in; return what was published.

    Idempotent. A name whose current version someone else published is left alone, even
    when the built-in text changed in a newer OpenASE: the user's versions win, and they
    can diff against the file.
    """
    published: list[HarnessVersion | SkillVersion] = []
    for name, text in builtin_harnesses().items():
        latest = await store.current(session, HarnessVersion, name)
        if _due(latest, store.text_hash(store.normalize_harness(name, text))):
            published.append(
                await store.publish_harness(
                    session, name, text, author=AUTHOR, message=MESSAGE, if_absent=latest is None
                )
            )
    for name, files in builtin_skills().items():
        skill = await store.current(session, SkillVersion, name)
        if _due(skill, files_hash(validate_skill(name, files))):
            published.append(
                await store.publish_skill(
                    session, name, files, author=AUTHOR, message=MESSAGE, if_absent=skill is None
                )
            )
    return published


def _due(latest: HarnessVersion | SkillVersion | None, builtin_hash: str) -> bool:
    """No version yet, or the current one is another built-in that nobody published over."""
    if latest is None:
        return True
    seeded = (latest.author, latest.message) == (AUTHOR, MESSAGE)
    return seeded and latest.content_hash != builtin_hash
