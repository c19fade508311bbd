"""What a transaction already knows of the mirror, so a batch of deliveries (one
transaction) does not read or write the same rows again for each delivery."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession


def in_transaction(session: AsyncSession, key: str) -> dict[Any, Any]:
    """The memo named `key` of the session's current transaction: forgotten with the
    transaction (a rollback undoes what it remembers), empty in the next one."""
    transaction = session.sync_session.get_transaction()
    cached = session.info.get(key)
    if cached is None or cached[0] is not transaction:
        cached = (transaction, {})
        session.info[key] = cached
    memo: dict[Any, Any] = cached[1]
    return memo


def forget(session: AsyncSession, key: str) -> None:
    """Drop the memo `key` (its rows were changed by a statement that does not keep it)."""
    session.info.pop(key, None)
