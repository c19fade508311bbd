"""deliveries ingested in batches: the pending ones indexed, a retry time, a wake-up call

The control worker claims due pending deliveries in batches (`status = 'pending'`, by id)
instead of one arq job each; `retry_at` holds back one whose ingest must wait (a failing
GitHub, an error's backoff). A pending delivery stored (or set pending again) notifies
channel `openase_deliveries` as its transaction commits, so an idle worker starts at once
whoever stored it: the web app, the relay, the recovery of missed deliveries.

Revision ID: c4e9a2d7f1b6
Revises: a7b3c0d5e8f1
Create Date: 2026-12-06 15:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c4e9a2d7f1b6"
down_revision: str | None = "a7b3c0d5e8f1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_deliveries_pending",
        "deliveries",
        ["id"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.execute(
        """
        CREATE FUNCTION openase_delivery_pending() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('openase_deliveries', '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER deliveries_pending_notify
        AFTER INSERT OR UPDATE OF status ON deliveries
        FOR EACH ROW WHEN (NEW.status = 'pending')
        EXECUTE FUNCTION openase_delivery_pending()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER deliveries_pending_notify ON deliveries")
    op.execute("DROP FUNCTION openase_delivery_pending()")
    op.drop_index("ix_deliveries_pending", table_name="deliveries")
    op.drop_column("deliveries", "retry_at")
