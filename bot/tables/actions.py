"""What people pressed on a ticket's web page (Run, Retry, Cancel, Hold, Unhold, Approve, Pin
harness, Ask): stored by the web process, carried out by the control worker through the
slash command's own permission check and handler (bot/engine/commands/web.py).

A row is written before anything is enqueued, so an action survives Redis losing its job
(the engine's tick sends it again) and a restart mid-way; `request` is the form's one-time
nonce, unique, so a form sent twice (a double click, a browser's resubmit) acts once.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from harness_store.db import Base


class ActionState(enum.StrEnum):
    PENDING = "pending"  # stored; the control worker has not carried it out yet
    DONE = "done"  # it took effect
    NOT_DONE = "not_done"  # allowed, but not possible in the ticket's state (says why)
    REFUSED = "refused"  # the person may not do it (says which permission it needs)
    EXPIRED = "expired"  # no worker carried it out in time; it was dropped, not done late


class TicketAction(Base):
    __tablename__ = "ticket_actions"
    __table_args__ = (
        Index("ix_ticket_actions_ticket_id_id", "ticket_id", "id"),
        # The tick's look for actions whose job was lost.
        Index(
            "ix_ticket_actions_pending",
            "created_at",
            postgresql_where="state = 'pending'",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("tickets.id", ondelete="CASCADE"))
    request: Mapped[str] = mapped_column(String(64), unique=True)  # the form's nonce
    command: Mapped[str] = mapped_column(String(32))  # a slash command's name: retry, ask, …
    args: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(100))  # a GitHub login, or "admin"
    actor_kind: Mapped[str] = mapped_column(String(16))  # Session.kind: github | admin
    state: Mapped[str] = mapped_column(String(16), default=ActionState.PENDING.value)
    message: Mapped[str | None] = mapped_column(Text)  # what happened, for the page
    run_id: Mapped[str | None] = mapped_column(String(128))  # an Ask's run
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[datetime | None]
