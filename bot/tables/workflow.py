"""The workflow engine's tables: where each ticket is in its workflow, its runs and their
events, the outbox of side effects, and the activity log (DESIGN §3.6 to 3.8, §4).

Every decision updates `ticket_states` with an optimistic lock (`version`) and writes its
side effects to `outbox` in the same transaction; an outbox job performs them with the
effect's idempotency `key`, so a crash between decision and effect loses nothing and a
redelivery duplicates nothing.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from harness_store.db import Base, Timestamped


class TicketState(Timestamped, Base):
    """A ticket's place in its workflow; one row per ticket the engine has seen."""

    __tablename__ = "ticket_states"
    __table_args__ = (
        Index("ix_ticket_states_state_next_attempt_at", "state", "next_attempt_at"),
        # The board: each column's newest cards (bot.web.board).
        Index("ix_ticket_states_state_updated_at", "state", "updated_at", "ticket_id"),
        Index("ix_ticket_states_done_at", "done_at"),
        Index("ix_ticket_states_asked_at", "asked_at", postgresql_where=text("needs_input")),
    )

    ticket_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    # A canonical state (backlog, todo, in_progress, in_review, merging, done, canceled,
    # failed) or a custom relay stage named in the repository's config.
    state: Mapped[str] = mapped_column(String(64))
    workflow: Mapped[str | None] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # attempts in this stage
    held: Mapped[bool] = mapped_column(Boolean, default=False)  # /hold
    # The agent asked a person (bot.engine.questions): the ticket stays in_progress with no
    # run, out of the concurrency count, until an answer sends it back with the question.
    needs_input: Mapped[bool] = mapped_column(Boolean, default=False)
    question: Mapped[str | None] = mapped_column(Text)  # the open question, as it was asked
    question_run_id: Mapped[str | None] = mapped_column(String(128))  # the run that asked
    asked_at: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]  # the one reminder of an unanswered question
    approved: Mapped[bool] = mapped_column(Boolean, default=False)  # /approve or a review
    next_attempt_at: Mapped[datetime | None]  # backoff after a failed attempt
    run_id: Mapped[str | None] = mapped_column(String(128))  # the run in flight
    session_id: Mapped[str | None] = mapped_column(String(200))  # to resume the agent
    last_failure: Mapped[str | None] = mapped_column(Text)  # fed into the next prompt
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)  # all runs so far
    # The review (or /retry guidance) the next run is asked to address; cleared on claim.
    feedback: Mapped[str | None] = mapped_column(Text)
    pr_number: Mapped[int | None] = mapped_column(Integer)  # the PR opened for the ticket
    head_sha: Mapped[str | None] = mapped_column(String(64))  # the gated commit
    # What the ticket waits for, as the status comment says it ("no runner is registered").
    waiting: Mapped[str | None] = mapped_column(Text)
    # The next run only re-runs the gates on the PR's head (check run "Re-run"), no agent.
    gates_only: Mapped[bool] = mapped_column(Boolean, default=False)
    ask_session_id: Mapped[str | None] = mapped_column(String(200))  # `/ask` resumes it
    version: Mapped[int] = mapped_column(Integer, default=0)  # optimistic lock
    # Its first moments, for lead time (the dashboard, /metrics): the first move out of the
    # backlog (the trigger label), the first into in_review (its PR) and into done. Set once:
    # a ticket reopened and done again keeps them, as the first PR is what lead time means.
    labelled_at: Mapped[datetime | None]
    pr_at: Mapped[datetime | None]
    done_at: Mapped[datetime | None]
    # The gates of its latest finished run, for the board's cards: [{"name": "openase/test",
    # "passed": true, "gate": "block"}, ...] (bot.engine.results sets it with the result).
    checks: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)


class RunState(enum.StrEnum):
    QUEUED = "queued"  # sent to a machine's queue
    RUNNING = "running"  # the runner's heartbeat was seen
    FINISHED = "finished"  # a RunResult arrived (its status is in `result`)
    LOST = "lost"  # no heartbeat and no result: the machine is gone


class Run(Base):
    """One attempt of one workflow stage on one machine."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_ticket_id", "ticket_id"),
        Index("ix_runs_state", "state"),
        # The web pages' (migration e8f4b2a0d3c6): the dashboard's range scans read only
        # this index; a machine's recent runs; filter choices; a harness's impact reads
        # its versions' runs from the last one alone.
        Index(
            "ix_runs_queued_at",
            "queued_at",
            postgresql_include=[
                "ticket_id",
                "workflow",
                "harness_version_id",
                "state",
                "status",
                "cost_usd",
            ],
        ),
        Index("ix_runs_machine_queued_at", "machine", "queued_at"),
        Index("ix_runs_workflow", "workflow"),
        Index("ix_runs_provider", text("(spec ->> '_provider')")),
        Index(
            "ix_runs_harness_version_id",
            "harness_version_id",
            postgresql_include=["id", "ticket_id", "state", "status", "cost_usd", "queued_at"],
        ),
    )

    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # RunSpec.run_id
    ticket_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("tickets.id", ondelete="CASCADE"))
    workflow: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    machine: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=RunState.QUEUED)
    status: Mapped[str | None] = mapped_column(String(32))  # RunResult.status when finished
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB)  # the RunSpec without its secrets
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    harness_version_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("harness_versions.id", ondelete="SET NULL")
    )
    cost_usd: Mapped[float | None] = mapped_column(Float)
    queued_at: Mapped[datetime] = mapped_column(server_default=func.now())
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    last_heartbeat_at: Mapped[datetime | None]


class RunEventCursor(Base):
    """How far a run's Redis event stream is persisted: the id of its last entry read."""

    __tablename__ = "run_event_cursors"

    run_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    entry_id: Mapped[str] = mapped_column(String(64))


class RunEvent(Base):
    """An `AgentEvent` of a run, persisted from the runner's Redis stream."""

    __tablename__ = "run_events"

    run_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    event: Mapped[dict[str, Any]] = mapped_column(JSONB)  # AgentEvent.to_wire()
    at: Mapped[datetime]

    __table_args__ = (
        # The runs that reached their gates, which the engine tick looks for: exactly as
        # bot.engine.gate_progress asks (one row a run, not every event of every run).
        Index(
            "ix_run_events_gating",
            "run_id",
            postgresql_where=text("kind = 'phase' AND (event ->> 'text') = 'gating'"),
        ),
    )


class EffectStatus(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"  # gave up after retries; `last_error` says why


class OutboxEffect(Base):
    """A side effect on a tracker (label, comment, reaction, check run, PR, merge), decided
    in a transaction and performed afterwards, exactly once by its idempotency key."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_status_not_before", "status", "not_before"),
        Index("ix_outbox_installation_id", "installation_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)  # idempotency
    ticket_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("tickets.id", ondelete="SET NULL")
    )
    # Writes to one installation are performed one at a time (GitHub's secondary limits).
    installation_id: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), default=EffectStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime] = mapped_column(server_default=func.now())
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # e.g. the comment id made
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    done_at: Mapped[datetime | None]


class GitHubWrite(Base):
    """A content-creating request the outbox sent to GitHub as an installation, kept for an
    hour: the sliding log its pacing counts (bot/effects/pacing.py)."""

    __tablename__ = "github_writes"
    __table_args__ = (Index("ix_github_writes_installation_id_at", "installation_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    installation_id: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime]


class GitHubWritesPaced(Base):
    """An installation whose writes pacing holds back: since when (said once in the log
    then), and until when at least. Gone once its backlog is out."""

    __tablename__ = "github_writes_paced"

    installation_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    since: Mapped[datetime]
    until: Mapped[datetime]


class Activity(Base):
    """What happened to a ticket, in order: state changes, runs, effects, config problems."""

    __tablename__ = "activity"
    __table_args__ = (
        Index("ix_activity_ticket_id_id", "ticket_id", "id"),
        # /activity's keyset pages, all kinds and one (migration e8f4b2a0d3c6).
        Index("ix_activity_at_id", "at", "id"),
        Index("ix_activity_kind_at_id", "kind", "at", "id"),
        # A review sending a ticket back (the dashboard's first passes), a run's move to
        # in_review (a harness's impact): exactly as bot.web.metrics_queries asks.
        Index(
            "ix_activity_sent_back",
            "ticket_id",
            postgresql_where=text(
                "kind = 'state' AND (data ->> 'old') = 'in_review'"
                " AND (data ->> 'new') NOT IN ('in_review', 'merging', 'done')"
            ),
        ),
        Index(
            "ix_activity_pr_moves",
            "run_id",
            postgresql_include=["at"],
            postgresql_where=text("kind = 'state' AND (data ->> 'new') = 'in_review'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("tickets.id", ondelete="CASCADE"))
    run_id: Mapped[str | None] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))  # state | run | effect | config | command
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    at: Mapped[datetime] = mapped_column(server_default=func.now())
