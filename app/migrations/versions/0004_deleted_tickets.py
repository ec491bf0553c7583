"""tickets: ``deleted_at`` for tickets a complete full scan no longer found in their tool

A soft delete: the row and its events stay (the tool may restore the ticket, and a wrong
inference must be reversible); reads leave deleted tickets out. The partial index holds only
the deleted tickets, so finding them costs nothing while there are none, and bulk upserts of
live tickets never touch it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 21:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.warehouse.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DELETED = sa.text("deleted_at IS NOT NULL")


def upgrade() -> None:
    op.add_column(
        "tickets", sa.Column("deleted_at", app.warehouse.types.UTCDateTime(), nullable=True)
    )
    op.create_index(
        "ix_tickets_deleted",
        "tickets",
        ["source", "external_id"],
        sqlite_where=DELETED,
        postgresql_where=DELETED,
    )


def downgrade() -> None:
    op.drop_index("ix_tickets_deleted", table_name="tickets")
    op.drop_column("tickets", "deleted_at")
