"""alerts: episodes, outbox, delivery attempts, webhook endpoints, scheduler runs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 15:15:40.085672
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.warehouse.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_episodes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("rule", sa.String(length=100), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("condition", sa.String(length=40), nullable=False),
        sa.Column("open_key", sa.String(length=4), nullable=True),
        sa.Column("team", sa.String(length=200), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("opened_at", app.warehouse.types.UTCDateTime(length=26), nullable=False),
        sa.Column("since", app.warehouse.types.UTCDateTime(length=26), nullable=True),
        sa.Column("last_seen_at", app.warehouse.types.UTCDateTime(length=26), nullable=False),
        sa.Column("cleared_at", app.warehouse.types.UTCDateTime(length=26), nullable=True),
        sa.Column("reminders", sa.Integer(), nullable=False),
        sa.Column("reminded_at", app.warehouse.types.UTCDateTime(length=26), nullable=True),
        sa.Column("notified", sa.Integer(), nullable=False),
        sa.Column("details", app.warehouse.types.JSONType(), nullable=False),
        sa.CheckConstraint(
            "open_key IS NULL OR open_key = 'open'", name=op.f("ck_alert_episodes_open_key")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_episodes")),
        sa.UniqueConstraint(
            "rule",
            "source",
            "subject",
            "condition",
            "open_key",
            name=op.f("uq_alert_episodes_rule_source_subject_condition_open_key"),
        ),
    )
    with op.batch_alter_table("alert_episodes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alert_episodes_cleared_at"), ["cleared_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_alert_episodes_team"), ["team"], unique=False)

    op.create_table(
        "scheduler_runs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("job", sa.String(length=120), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("started_at", app.warehouse.types.UTCDateTime(length=26), nullable=False),
        sa.Column("finished_at", app.warehouse.types.UTCDateTime(length=26), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("details", app.warehouse.types.JSONType(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduler_runs")),
    )
    with op.batch_alter_table("scheduler_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_scheduler_runs_job_started_at"), ["job", "started_at"], unique=False
        )

    op.create_table(
        "webhook_endpoints",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("disabled_at", app.warehouse.types.UTCDateTime(length=26), nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("failing_since", app.warehouse.types.UTCDateTime(length=26), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("last_success_at", app.warehouse.types.UTCDateTime(length=26), nullable=True),
        sa.Column("last_failure_at", app.warehouse.types.UTCDateTime(length=26), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_webhook_endpoints")),
    )
    op.create_table(
        "alert_outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("message_id", sa.String(length=100), nullable=False),
        sa.Column("webhook", sa.String(length=100), nullable=False),
        sa.Column(
            "episode_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("team", sa.String(length=200), nullable=True),
        sa.Column("payload", app.warehouse.types.JSONType(), nullable=False),
        sa.Column("created_at", app.warehouse.types.UTCDateTime(length=26), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("next_attempt_at", app.warehouse.types.UTCDateTime(length=26), nullable=True),
        sa.Column("held_until", app.warehouse.types.UTCDateTime(length=26), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.Column("last_attempt_at", app.warehouse.types.UTCDateTime(length=26), nullable=True),
        sa.Column("delivered_at", app.warehouse.types.UTCDateTime(length=26), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('opened', 'reminder', 'cleared', 'summary', 'digest')",
            name=op.f("ck_alert_outbox_kind"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed', 'cancelled')",
            name=op.f("ck_alert_outbox_status"),
        ),
        sa.ForeignKeyConstraint(
            ["episode_id"],
            ["alert_episodes.id"],
            name=op.f("fk_alert_outbox_episode_id_alert_episodes"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_outbox")),
        sa.UniqueConstraint("message_id", name=op.f("uq_alert_outbox_message_id")),
    )
    with op.batch_alter_table("alert_outbox", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alert_outbox_status_next_attempt_at"),
            ["status", "next_attempt_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_alert_outbox_webhook_created_at"),
            ["webhook", "created_at"],
            unique=False,
        )

    op.create_table(
        "alert_attempts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("message_id", sa.String(length=100), nullable=False),
        sa.Column("webhook", sa.String(length=100), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", app.warehouse.types.UTCDateTime(length=26), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=30), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["alert_outbox.message_id"],
            name=op.f("fk_alert_attempts_message_id_alert_outbox"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_attempts")),
    )
    with op.batch_alter_table("alert_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alert_attempts_message_id_attempt"),
            ["message_id", "attempt"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_alert_attempts_webhook_started_at"),
            ["webhook", "started_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("alert_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_attempts_webhook_started_at"))
        batch_op.drop_index(batch_op.f("ix_alert_attempts_message_id_attempt"))

    op.drop_table("alert_attempts")
    with op.batch_alter_table("alert_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_outbox_webhook_created_at"))
        batch_op.drop_index(batch_op.f("ix_alert_outbox_status_next_attempt_at"))

    op.drop_table("alert_outbox")
    op.drop_table("webhook_endpoints")
    with op.batch_alter_table("scheduler_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scheduler_runs_job_started_at"))

    op.drop_table("scheduler_runs")
    with op.batch_alter_table("alert_episodes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_episodes_team"))
        batch_op.drop_index(batch_op.f("ix_alert_episodes_cleared_at"))

    op.drop_table("alert_episodes")
