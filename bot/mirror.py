"""Apply normalized events to the mirror tables (in progress)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from adapters.base import NormalizedEvent

if TYPE_CHECKING:
    from bot.deps import Deps


async def apply(
    session: AsyncSession, events: Sequence[NormalizedEvent], *, deps: Deps | None = None
) -> set[int]:
    return set()
