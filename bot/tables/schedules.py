"""Scheduled tickets (`schedules:` in `.github/openase.yml`, and in the control-plane config
for Linear teams and Jira projects): each slot a schedule reached, claimed once across every
worker by the unique key, and which issue it filed; and which schedules an admin paused (CLI
or web page), kept across restarts.

A schedule belongs to a `scope`: `github:<repository id>` for a repository's (its
`repository_id` set too, so the rows go with the repository), `linear:<TEAM>` or
`jira:<PROJECT>` for a team's or project's (bot/engine/schedule_slots.py)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from harness_store.db import Base


class SlotOutcome(enum.StrEnum):
    FILED = "filed"  # an issue was decided (outbox effect `effect_key`)
    SKIPPED_OPEN = "skipped_open"  # the schedule's previous issue is still open
    PAUSED = "paused"  # the schedule was paused at the slot
    FIRST_SEEN = "first_seen"  # the schedule was new: its past slot is not caught up
    FAILED = "failed"  # its templates would not render (`detail` says why)


class ScheduleSlot(Base):
    """One slot of one schedule (a manual run is a slot at its own time)."""

    __tablename__ = "schedule_slots"
    __table_args__ = (
        UniqueConstraint("scope", "schedule", "slot_at", name="uq_schedule_slots_slot"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(100))
    repository_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    schedule: Mapped[str] = mapped_column(String(64))
    slot_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(16))
    effect_key: Mapped[str | None] = mapped_column(String(255))  # the create_issue effect
    detail: Mapped[str | None] = mapped_column(String(500))
    by: Mapped[str | None] = mapped_column(String(100))  # who pressed Run now; None: the cron
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ScheduleControl(Base):
    """A paused schedule; no row (or paused false) means it runs."""

    __tablename__ = "schedule_controls"

    scope: Mapped[str] = mapped_column(String(100), primary_key=True)
    schedule: Mapped[str] = mapped_column(String(64), primary_key=True)
    repository_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    paused: Mapped[bool]
    changed_by: Mapped[str] = mapped_column(String(100))
    changed_at: Mapped[datetime] = mapped_column(server_default=func.now())
