"""The control plane's tables: raw deliveries and the mirror of tickets, comments and PRs.

They build on `harness_store.db.Base` so Alembic autogenerates from one metadata.
Mirror rows carry the tracker's own `external_updated_at`: an event older than it never
moves a row backwards (DESIGN §3.5).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

import bot.tables.actions  # what people pressed on ticket pages, same metadata
import bot.tables.machines  # what admins said of the runners, same metadata
import bot.tables.schedules  # scheduled tickets' slots and pauses, same metadata
import bot.tables.stats  # the metrics dashboard's rollups, same metadata
import bot.tables.sync  # what staying in step remembers, same metadata
import bot.tables.workflow  # noqa: F401  # the workflow engine's tables, same metadata
import harness_store.models  # noqa: F401  # the harness store's tables share this metadata
from harness_store.db import Base, Timestamped


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # stored, not yet ingested
    DONE = "done"  # ingested into the mirror
    IGNORED = "ignored"  # an event we store but do not use
    FAILED = "failed"  # the payload did not parse or apply; `error` says why


class Delivery(Base):
    """A webhook delivery exactly as received, stored before we answer."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("source", "delivery_id"),
        Index("ix_deliveries_status_received", "status", "received_at"),
        # What the control worker claims, in order (bot/intake/pump.py).
        Index("ix_deliveries_pending", "id", postgresql_where=text("status = 'pending'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    delivery_id: Mapped[str] = mapped_column(String(200))
    event: Mapped[str] = mapped_column(String(100))
    action: Mapped[str | None] = mapped_column(String(100))
    installation_id: Mapped[int | None] = mapped_column(BigInteger)
    repository: Mapped[str | None] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    processed_at: Mapped[datetime | None]
    # A pending delivery is not claimed before this (a failing service, an error's backoff).
    retry_at: Mapped[datetime | None]


class Installation(Timestamped, Base):
    """A GitHub App installation (one account: a user or an organisation)."""

    __tablename__ = "installations"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    account_login: Mapped[str] = mapped_column(String(200))
    account_type: Mapped[str] = mapped_column(String(32))
    repository_selection: Mapped[str | None] = mapped_column(String(16))
    suspended: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    external_updated_at: Mapped[datetime | None]


class Repository(Timestamped, Base):
    """A repository the App can see; keyed by GitHub's id so renames and transfers keep it."""

    __tablename__ = "repositories"
    __table_args__ = (Index("ix_repositories_full_name_lower", text("lower(full_name)")),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    installation_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("installations.id", ondelete="SET NULL")
    )
    full_name: Mapped[str] = mapped_column(String(200))
    private: Mapped[bool] = mapped_column(Boolean, default=False)
    default_branch: Mapped[str | None] = mapped_column(String(255))
    clone_url: Mapped[str | None] = mapped_column(Text)
    html_url: Mapped[str | None] = mapped_column(Text)
    # False once the App lost access (uninstalled or removed from the selection).
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Ticket(Timestamped, Base):
    """The mirror of one tracker issue."""

    __tablename__ = "tickets"
    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        Index("ix_tickets_repository_number", "repository_id", "number"),
        Index("ix_tickets_labels", "labels", postgresql_using="gin"),
        Index("ix_tickets_state", "state"),
        # /tickets/list (migration e8f4b2a0d3c6): its full-text search, exactly the
        # expression bot.web.ticket_list searches with; its default order; tracker keys.
        Index(
            "ix_tickets_search",
            text("to_tsvector('simple'::regconfig, (title || ' '::text) || body)"),
            postgresql_using="gin",
        ),
        Index("ix_tickets_updated_at_id", "updated_at", "id"),
        Index("ix_tickets_source_key", "source", "key"),
        # The board's column totals, filtered or not, without reading the wide rows.
        Index("ix_tickets_board", "state", "source", "repository_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(100))
    repository_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("repositories.id", ondelete="SET NULL")
    )
    number: Mapped[int | None] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    # The tracker's own state: open, closed, deleted or transferred.
    state: Mapped[str] = mapped_column(String(16))
    state_reason: Mapped[str | None] = mapped_column(String(32))
    author_login: Mapped[str | None] = mapped_column(String(200))
    assignees: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    labels: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    milestone: Mapped[str | None] = mapped_column(Text)
    html_url: Mapped[str | None] = mapped_column(Text)
    external_created_at: Mapped[datetime | None]
    external_updated_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    # Linear's team, state and label ids, Jira's project, status and components (the
    # adapters' `TicketInfo.tracker`); `repository_id` of such a ticket is where its code
    # lives, as the control-plane config routes it.
    tracker: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class Comment(Timestamped, Base):
    """A comment on a ticket."""

    __tablename__ = "comments"
    __table_args__ = (UniqueConstraint("source", "external_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(100))
    ticket_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("tickets.id", ondelete="CASCADE"), index=True
    )
    author_login: Mapped[str | None] = mapped_column(String(200))
    author_type: Mapped[str | None] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text, default="")
    html_url: Mapped[str | None] = mapped_column(Text)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    external_created_at: Mapped[datetime | None]
    external_updated_at: Mapped[datetime | None]


class PullRequest(Timestamped, Base):
    """A pull request in a mirrored repository."""

    __tablename__ = "pull_requests"
    __table_args__ = (Index("ix_pull_requests_repository_number", "repository_id", "number"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    repository_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("repositories.id", ondelete="SET NULL")
    )
    number: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16))  # open | closed
    merged: Mapped[bool] = mapped_column(Boolean, default=False)
    draft: Mapped[bool] = mapped_column(Boolean, default=False)
    author_login: Mapped[str | None] = mapped_column(String(200))
    head_ref: Mapped[str | None] = mapped_column(String(255))
    head_sha: Mapped[str | None] = mapped_column(String(64))
    base_ref: Mapped[str | None] = mapped_column(String(255))
    labels: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    html_url: Mapped[str | None] = mapped_column(Text)
    merged_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    external_updated_at: Mapped[datetime | None]


class TicketPullRequest(Base):
    """A PR linked to a ticket, and how we know: a closing keyword or the work branch."""

    __tablename__ = "ticket_pull_requests"

    ticket_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    pull_request_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("pull_requests.id", ondelete="CASCADE"), primary_key=True
    )
    via: Mapped[str] = mapped_column(String(32))


class PullRequestRef(Base):
    """An issue a PR refers to, by name: kept even before that issue is mirrored.

    Links in `ticket_pull_requests` are derived from these whenever either side changes,
    so a PR that arrives before its issue (or after) ends up linked the same way.
    """

    __tablename__ = "pull_request_refs"
    __table_args__ = (Index("ix_pull_request_refs_target", "full_name", "number"),)

    pull_request_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("pull_requests.id", ondelete="CASCADE"), primary_key=True
    )
    full_name: Mapped[str] = mapped_column(String(200), primary_key=True)  # lower-cased
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    via: Mapped[str] = mapped_column(String(32), primary_key=True)


class Label(Timestamped, Base):
    """A repository label, kept by GitHub's id so a rename reaches every ticket carrying it."""

    __tablename__ = "labels"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    repository_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("repositories.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    color: Mapped[str | None] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(Text)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)


class DeliveryTicket(Base):
    """Which deliveries touched which ticket, for the ticket's history in the API."""

    __tablename__ = "delivery_tickets"

    delivery_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("deliveries.id", ondelete="CASCADE"), primary_key=True
    )
    ticket_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class HttpCacheEntry(Base):
    """ETag and pagination link of an API page we fetched, for cheap conditional re-syncs."""

    __tablename__ = "http_cache"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    etag: Mapped[str] = mapped_column(Text)
    next_url: Mapped[str | None] = mapped_column(Text)
    fetched_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
