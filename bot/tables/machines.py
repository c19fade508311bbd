"""What an admin said about each runner machine (the web page's Pause, Resume, Drain), kept
in PostgreSQL so the engine honours it across restarts, and the log of who said it.

A machine's registry entry lives in Redis and expires with its heartbeat; these rows do
not: a machine paused, then restarted, comes back paused.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from harness_store.db import Base


class ControlState(enum.StrEnum):
    ACTIVE = "active"  # takes runs
    PAUSED = "paused"  # takes no new runs
    DRAINING = "draining"  # takes no new runs, finishes its own, then is paused


class MachineControl(Base):
    """A machine's control state; no row means active."""

    __tablename__ = "machine_controls"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)  # Run.machine
    state: Mapped[str] = mapped_column(String(16))
    changed_by: Mapped[str] = mapped_column(String(100))  # Session.label: "admin", "@login"
    changed_at: Mapped[datetime] = mapped_column(server_default=func.now())


class MachineAction(Base):
    """One Pause, Resume or Drain (or a drain that finished), for the machine's page."""

    __tablename__ = "machine_actions"
    __table_args__ = (Index("ix_machine_actions_machine_id", "machine", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    machine: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))  # pause | resume | drain | drained
    by: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(server_default=func.now())
