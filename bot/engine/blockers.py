"""Tickets that wait for others: "blocked by #12" / "depends on octo/api#3" in an issue body
(outside code), and the backoff before a failed ticket's next attempt."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.tables.mirror import Repository, Ticket

_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,}).*?^(?P=fence)[ \t]*$", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_OWNER_REPO = r"[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38}/[A-Za-z0-9._-]{1,100}"
_REF = rf"(?:(?P<repo>{_OWNER_REPO}))?#(?P<number>\d{{1,9}})"
_ANY_REF = rf"(?:{_OWNER_REPO})?#\d{{1,9}}"
_BLOCKED = re.compile(
    rf"\b(?:blocked\s+by|depends\s+on|waits?\s+(?:for|on))\s*:?\s*"
    rf"(?P<refs>{_ANY_REF}(?:\s*(?:,|and)\s*{_ANY_REF})*)",
    re.IGNORECASE,
)
_ONE_REF = re.compile(_REF)

# Backoff after a failed attempt: base * 2^(attempt-1), capped.
BACKOFF_CAP = timedelta(hours=1)


@dataclass(frozen=True)
class IssueRef:
    full_name: str  # lower-cased owner/name
    number: int


def prose(body: str | None) -> str:
    """Markdown without fenced code, inline code and HTML comments: what a person said."""
    return _HTML_COMMENT.sub("", _INLINE_CODE.sub("", _FENCE.sub("", body or "")))


def blockers(body: str, own_repo: str) -> list[IssueRef]:
    """Issues this body says it waits for, in order, without duplicates or itself."""
    text = prose(body)
    found: list[IssueRef] = []
    for match in _BLOCKED.finditer(text):
        for ref in _ONE_REF.finditer(match["refs"]):
            full_name = ref["repo"] or own_repo
            issue = IssueRef(full_name.lower(), int(ref["number"]))
            if issue not in found:
                found.append(issue)
    return found


async def open_blockers(
    session: AsyncSession, refs: Iterable[IssueRef], *, exclude_ticket_id: int | None = None
) -> list[IssueRef]:
    """The refs whose mirrored issue is still open. An issue we do not mirror (another
    installation, a typo) does not block: nothing would ever unblock it."""
    refs = list(refs)
    if not refs:
        return []
    rows = (
        await session.execute(
            select(func.lower(Repository.full_name), Ticket.number, Ticket.id)
            .join(Repository, Repository.id == Ticket.repository_id)
            .where(
                Ticket.state == "open",
                func.lower(Repository.full_name).in_({ref.full_name for ref in refs}),
                Ticket.number.in_({ref.number for ref in refs}),
            )
        )
    ).all()
    still_open = {
        IssueRef(full_name, number)
        for full_name, number, ticket_id in rows
        if ticket_id != exclude_ticket_id
    }
    return [ref for ref in refs if ref in still_open]


def backoff(attempt: int, base: timedelta = timedelta(seconds=60)) -> timedelta:
    """Delay before attempt `attempt + 1` after attempt `attempt` failed."""
    delay: timedelta = base * 2 ** min(max(attempt - 1, 0), 30)
    return min(delay, BACKOFF_CAP)
