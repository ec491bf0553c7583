"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27 14:27:27.244902
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.warehouse.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_state",
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("last_run_at", app.warehouse.types.UTCDateTime(length=26), nullable=True),
        sa.Column("last_success_at", app.warehouse.types.UTCDateTime(length=26), nullable=True),
        sa.Column("last_status", sa.String(length=20), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("tickets_seen", sa.Integer(), nullable=False),
        sa.Column("tickets_inserted", sa.Integer(), nullable=False),
        sa.Column("tickets_updated", sa.Integer(), nullable=False),
        sa.Column("events_inserted", sa.Integer(), nullable=False),
        sa.Column("rows_skipped", sa.Integer(), nullable=False),
        sa.Column("details", app.warehouse.types.JSONType(), nullable=True),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_sync_state")),
    )
    op.create_table(
        "tickets",
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("number", sa.String(length=100), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("raw_status", sa.String(length=200), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("priority_raw", sa.String(length=100), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("category", sa.String(length=200), nullable=True),
        sa.Column("team", sa.String(length=200), nullable=True),
        sa.Column("assignee", sa.String(length=200), nullable=True),
        sa.Column("requester", sa.String(length=200), nullable=True),
        sa.Column("created_at", app.warehouse.types.UTCDateTime(length=26), nullable=True),
        sa.Column("updated_at", app.warehouse.types.UTCDateTime(length=26), nullable=True),
        sa.Column("resolved_at", app.warehouse.types.UTCDateTime(length=26), nullable=True),
        sa.Column("closed_at", app.warehouse.types.UTCDateTime(length=26), nullable=True),
        sa.Column("due_at", app.warehouse.types.UTCDateTime(length=26), nullable=True),
        sa.Column("reassignment_count", sa.Integer(), nullable=True),
        sa.Column("reopen_count", sa.Integer(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("raw", app.warehouse.types.JSONType(), nullable=False),
        sa.Column("loaded_at", app.warehouse.types.UTCDateTime(length=26), nullable=False),
        sa.CheckConstraint(
            "state IN ('new', 'in_progress', 'waiting_customer', 'waiting_supplier', 'waiting_other', 'resolved', 'closed', 'cancelled')",
            name=op.f("ck_tickets_state"),
        ),
        sa.CheckConstraint(
            "type IN ('incident', 'request', 'problem', 'change', 'other')",
            name=op.f("ck_tickets_type"),
        ),
        sa.CheckConstraint(
            "priority IS NULL OR priority BETWEEN 1 AND 5", name=op.f("ck_tickets_priority")
        ),
        sa.PrimaryKeyConstraint("source", "external_id", name=op.f("pk_tickets")),
    )
    op.create_index(op.f("ix_tickets_source_state"), "tickets", ["source", "state"], unique=False)
    op.create_index(
        op.f("ix_tickets_source_updated_at"), "tickets", ["source", "updated_at"], unique=False
    )
    op.create_table(
        "unknown_statuses",
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("raw_status", sa.String(length=200), nullable=False),
        sa.Column("mapped_to", sa.String(length=20), nullable=False),
        sa.Column("last_count", sa.Integer(), nullable=False),
        sa.Column("first_seen_at", app.warehouse.types.UTCDateTime(length=26), nullable=False),
        sa.Column("last_seen_at", app.warehouse.types.UTCDateTime(length=26), nullable=False),
        sa.PrimaryKeyConstraint("source", "raw_status", name=op.f("pk_unknown_statuses")),
    )
    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("ticket_id", sa.String(length=200), nullable=False),
        sa.Column("event_key", sa.String(length=200), nullable=False),
        sa.Column("occurred_at", app.warehouse.types.UTCDateTime(length=26), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("field", sa.String(length=30), nullable=False),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("origin", sa.String(length=20), nullable=False),
        sa.Column("loaded_at", app.warehouse.types.UTCDateTime(length=26), nullable=False),
        sa.CheckConstraint(
            "field IN ('state', 'status', 'team', 'assignee', 'priority', 'customer_update', 'internal_update')",
            name=op.f("ck_events_field"),
        ),
        sa.CheckConstraint("origin IN ('history', 'snapshot')", name=op.f("ck_events_origin")),
        sa.ForeignKeyConstraint(
            ["source", "ticket_id"],
            ["tickets.source", "tickets.external_id"],
            name=op.f("fk_events_source_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("source", "event_key", name=op.f("uq_events_source_event_key")),
    )
    op.create_index(
        op.f("ix_events_source_ticket_id_occurred_at_seq"),
        "events",
        ["source", "ticket_id", "occurred_at", "seq"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_events_source_ticket_id_occurred_at_seq"), table_name="events")
    op.drop_table("events")
    op.drop_table("unknown_statuses")
    op.drop_index(op.f("ix_tickets_source_updated_at"), table_name="tickets")
    op.drop_index(op.f("ix_tickets_source_state"), table_name="tickets")
    op.drop_table("tickets")
    op.drop_table("sync_state")
