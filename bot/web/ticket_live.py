"""What makes a ticket's page out of date: its `fingerprint`, one short string that changes
whenever the page would show something else — its state row, the mirrored issue, a run
queued, started or finished, a new activity entry (an action carried out, a gate), a
comment added, edited or deleted. The page carries the one it was rendered with; its live stream
(bot.web.live_events `ticket_events`) sends the current one, and live.js reloads the
page's changing parts when they differ. One statement, on indexed columns."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_FINGERPRINT = text("""
    SELECT concat_ws(':',
        (SELECT version FROM ticket_states WHERE ticket_id = :id),
        (SELECT extract(epoch FROM updated_at)::bigint FROM tickets WHERE id = :id),
        (SELECT max(id) FROM activity WHERE ticket_id = :id),
        (SELECT count(*) || '.' || coalesce(max(extract(epoch FROM
                    greatest(queued_at, started_at, finished_at))::bigint), 0)
         FROM (SELECT queued_at, started_at, finished_at FROM runs WHERE ticket_id = :id
               ORDER BY queued_at DESC LIMIT 50) recent),
        (SELECT count(*) || '.' || coalesce(max(extract(epoch FROM updated_at))::bigint, 0)
         FROM comments WHERE ticket_id = :id))
""")


async def fingerprint(session: AsyncSession, ticket_id: int) -> str:
    value = await session.scalar(_FINGERPRINT, {"id": ticket_id})
    return str(value or "")
