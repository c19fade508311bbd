"""What the control plane remembers about staying in step with the trackers: the
redeliveries it asked GitHub for (one per delivery, so no pass asks twice), and where each
sweep's last complete pass began."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from harness_store.db import Base


class RedeliveryRequest(Base):
    """A failed GitHub delivery we asked GitHub to send again."""

    __tablename__ = "redelivery_requests"

    guid: Mapped[str] = mapped_column(String(200), primary_key=True)  # X-GitHub-Delivery
    github_delivery_id: Mapped[int] = mapped_column(BigInteger)  # the attempt asked again
    event: Mapped[str] = mapped_column(String(100))
    delivered_at: Mapped[datetime]  # when GitHub's failed attempt was
    asked_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    error: Mapped[str | None] = mapped_column(Text)  # GitHub refused the redelivery: why


class SyncMark(Base):
    """The time a sweep's last complete pass began; the next pass reads from there."""

    __tablename__ = "sync_marks"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    at: Mapped[datetime]
