"""The harness store's tables: append-only versions, pins per ticket, versions used per run,
and the summaries of who used them and how their runs went that the pages read.

A version row is never updated or deleted: a change is a new row with the next number,
and a rollback is a new row whose content equals an old one. `tickets`, `repositories` and
`runs` belong to the control plane (bot.tables); they are referred to by name only, so this
package never imports `bot`.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from harness_store.db import Base, Timestamped
from harness_store.names import NAME_MAX, Kind


class _Version:
    """Columns every versioned thing shares."""

    kind: ClassVar[Kind]

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))  # sha256, hex
    author: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    @property
    def label(self) -> str:
        """`name@version`, as users write it."""
        return f"{self.name}@{self.version}"


class HarnessVersion(_Version, Base):
    """One version of a harness: a Jinja template of the agent's instructions."""

    __tablename__ = "harness_versions"
    __table_args__ = (
        UniqueConstraint("name", "version"),
        CheckConstraint("version >= 1", name="version_positive"),
    )

    kind: ClassVar[Kind] = "harness"
    content: Mapped[str] = mapped_column(Text, sort_order=1)  # after the shared columns


class SkillVersion(_Version, Base):
    """One version of a skill folder: `{relative path: text}`, SKILL.md included."""

    __tablename__ = "skill_versions"
    __table_args__ = (
        UniqueConstraint("name", "version"),
        CheckConstraint("version >= 1", name="version_positive"),
    )

    kind: ClassVar[Kind] = "skill"
    files: Mapped[dict[str, str]] = mapped_column(JSONB, sort_order=1)  # after the shared columns


class TicketHarnessPin(Timestamped, Base):
    """The harness version a ticket runs with, whatever becomes current later."""

    __tablename__ = "ticket_harness_pins"
    __table_args__ = (
        ForeignKeyConstraint(
            ["harness_name", "harness_version"],
            ["harness_versions.name", "harness_versions.version"],
        ),
    )

    ticket_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    harness_name: Mapped[str] = mapped_column(String(NAME_MAX))
    harness_version: Mapped[int] = mapped_column(Integer)
    pinned_by: Mapped[str | None] = mapped_column(String(200))


class RunVersions(Base):
    """The harness and skill versions one run was given, for "which runs used version X"."""

    __tablename__ = "run_versions"
    __table_args__ = (
        Index("ix_run_versions_skill_version_ids", "skill_version_ids", postgresql_using="gin"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[str] = mapped_column(Text, unique=True)
    ticket_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("tickets.id", ondelete="SET NULL"), index=True
    )
    harness_version_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("harness_versions.id"), index=True
    )
    # No foreign key can reach into an array; publish never deletes, so ids stay valid.
    skill_version_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), default=list)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


# Summaries the pages read instead of aggregating every run. Database triggers keep them
# (migration c3d9e6f1a4b7, which also fills them from the rows already stored): every
# write to `run_versions`, `runs` and `activity`, whoever makes it, updates them in its
# own transaction, so they always agree with the rows they sum up.


class HarnessUsage(Base):
    """A (repository, workflow) whose runs were given this harness version (README /harnesses)."""

    __tablename__ = "harness_usage"

    harness_version_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("harness_versions.id"), primary_key=True
    )
    repository_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    workflow: Mapped[str] = mapped_column(String(64), primary_key=True)  # runs.workflow


class SkillUsage(Base):
    """A (repository, workflow) whose runs were given this skill version (README /skills)."""

    __tablename__ = "skill_usage"

    skill_version_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("skill_versions.id"), primary_key=True
    )
    repository_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    workflow: Mapped[str] = mapped_column(String(64), primary_key=True)


class HarnessImpact(Base):
    """One harness version's runs summed up, for /harnesses/{name}/impact: the runs whose
    `runs.harness_version_id` it is, those that ended (finished or lost), succeeded, their
    cost, and how many tickets they were for."""

    __tablename__ = "harness_impact"

    harness_version_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("harness_versions.id", ondelete="CASCADE"), primary_key=True
    )
    runs: Mapped[int] = mapped_column(Integer)
    ended: Mapped[int] = mapped_column(Integer)
    succeeded: Mapped[int] = mapped_column(Integer)
    cost_usd: Mapped[float] = mapped_column(Float)
    tickets: Mapped[int] = mapped_column(Integer)


class HarnessImpactTicket(Base):
    """How many of a harness version's runs were for one ticket: its ticket count changes
    only when a pair appears or goes."""

    __tablename__ = "harness_impact_tickets"

    harness_version_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("harness_versions.id", ondelete="CASCADE"), primary_key=True
    )
    # No foreign key: a ticket's runs going (a cascade) update this row through the trigger.
    ticket_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    runs: Mapped[int] = mapped_column(Integer)


class HarnessImpactPr(Base):
    """A run that moved its ticket to in_review (opened its PR): seconds from its queueing
    to the first such move, the raw values of a version's median time to PR."""

    __tablename__ = "harness_impact_prs"
    __table_args__ = (
        Index(
            "ix_harness_impact_prs_harness_version_id",
            "harness_version_id",
            postgresql_include=["to_pr_seconds"],
        ),
    )

    run_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    harness_version_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("harness_versions.id", ondelete="CASCADE")
    )
    to_pr_seconds: Mapped[float] = mapped_column(Float)
