"""tickets and events: value-list CHECKs as OR chains instead of IN (cheap on SQLite bulk writes)

SQLite builds a temporary b-tree for an ``IN`` list of more than two constants every time a
statement runs, and a bulk write runs its statement once per row: the ``state`` and ``type``
checks on ``tickets`` and the ``field`` check on ``events`` cost about 10 µs per row. The same
checks written as ``col = 'a' OR col = 'b' ...`` accept and refuse exactly the same values.

SQLite cannot alter a CHECK, so there both tables are rebuilt, data and ids kept. ``events``
references ``tickets`` with ``ON DELETE CASCADE`` and our connections enforce foreign keys, so
dropping the old ``tickets`` while the new ``events`` pointed at it would empty the new
``events``: the new ``events`` first references the new ``tickets``, and renaming the new
``tickets`` into place rewrites that reference. PostgreSQL just swaps the constraints.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 18:05:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

import app.warehouse.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STATES = (
    "new",
    "in_progress",
    "waiting_customer",
    "waiting_supplier",
    "waiting_other",
    "resolved",
    "closed",
    "cancelled",
)
TYPES = ("incident", "request", "problem", "change", "other")
FIELDS = ("state", "status", "team", "assignee", "priority", "customer_update", "internal_update")
ORIGINS = ("history", "snapshot")

TICKET_COLUMNS = (
    "source, external_id, number, title, type, raw_status, state, priority_raw, priority, "
    "category, team, assignee, requester, created_at, updated_at, resolved_at, closed_at, "
    "due_at, reassignment_count, reopen_count, url, raw, loaded_at"
)
EVENT_COLUMNS = (
    "id, source, ticket_id, event_key, occurred_at, seq, field, old_value, new_value, actor, "
    "origin, loaded_at"
)


def _check(column: str, values: tuple[str, ...], *, as_or: bool) -> str:
    if as_or:
        return " OR ".join(f"{column} = '{v}'" for v in values)
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _checks(*, as_or: bool) -> dict[str, tuple[str, str]]:
    """constraint name -> (table, expression)"""
    return {
        "ck_tickets_state": ("tickets", _check("state", STATES, as_or=as_or)),
        "ck_tickets_type": ("tickets", _check("type", TYPES, as_or=as_or)),
        "ck_events_field": ("events", _check("field", FIELDS, as_or=as_or)),
        "ck_events_origin": ("events", _check("origin", ORIGINS, as_or=as_or)),
    }


def _time(name: str, *, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, app.warehouse.types.UTCDateTime(length=26), nullable=nullable)


def _create_tickets(name: str, checks: dict[str, tuple[str, str]]) -> None:
    op.create_table(
        name,
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
        _time("created_at"),
        _time("updated_at"),
        _time("resolved_at"),
        _time("closed_at"),
        _time("due_at"),
        sa.Column("reassignment_count", sa.Integer(), nullable=True),
        sa.Column("reopen_count", sa.Integer(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("raw", app.warehouse.types.JSONType(), nullable=False),
        _time("loaded_at", nullable=False),
        sa.CheckConstraint(checks["ck_tickets_state"][1], name=op.f("ck_tickets_state")),
        sa.CheckConstraint(checks["ck_tickets_type"][1], name=op.f("ck_tickets_type")),
        sa.CheckConstraint(
            "priority IS NULL OR priority BETWEEN 1 AND 5", name=op.f("ck_tickets_priority")
        ),
        sa.PrimaryKeyConstraint("source", "external_id", name=op.f("pk_tickets")),
    )


def _create_events(name: str, *, tickets: str, checks: dict[str, tuple[str, str]]) -> None:
    op.create_table(
        name,
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("ticket_id", sa.String(length=200), nullable=False),
        sa.Column("event_key", sa.String(length=200), nullable=False),
        _time("occurred_at", nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("field", sa.String(length=30), nullable=False),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("origin", sa.String(length=20), nullable=False),
        _time("loaded_at", nullable=False),
        sa.CheckConstraint(checks["ck_events_field"][1], name=op.f("ck_events_field")),
        sa.CheckConstraint(checks["ck_events_origin"][1], name=op.f("ck_events_origin")),
        sa.ForeignKeyConstraint(
            ["source", "ticket_id"],
            [f"{tickets}.source", f"{tickets}.external_id"],
            name=op.f("fk_events_source_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("source", "event_key", name=op.f("uq_events_source_event_key")),
    )


def _rebuild_sqlite(*, as_or: bool) -> None:
    """Recreate tickets and events with the given CHECK form, keeping every row and id."""
    checks = _checks(as_or=as_or)
    _create_tickets("_tf_new_tickets", checks)
    op.execute(
        f"INSERT INTO _tf_new_tickets ({TICKET_COLUMNS}) SELECT {TICKET_COLUMNS} FROM tickets"
    )
    _create_events("_tf_new_events", tickets="_tf_new_tickets", checks=checks)
    op.execute(f"INSERT INTO _tf_new_events ({EVENT_COLUMNS}) SELECT {EVENT_COLUMNS} FROM events")
    # old events first (a child: nothing cascades), then old tickets (no child points at it now)
    op.drop_index(op.f("ix_events_source_ticket_id_occurred_at_seq"), table_name="events")
    op.drop_table("events")
    op.drop_index(op.f("ix_tickets_source_updated_at"), table_name="tickets")
    op.drop_index(op.f("ix_tickets_source_state"), table_name="tickets")
    op.drop_table("tickets")
    # renaming a parent rewrites its children's REFERENCES (SQLite >= 3.26)
    op.execute("ALTER TABLE _tf_new_tickets RENAME TO tickets")
    op.execute("ALTER TABLE _tf_new_events RENAME TO events")
    op.create_index(op.f("ix_tickets_source_state"), "tickets", ["source", "state"], unique=False)
    op.create_index(
        op.f("ix_tickets_source_updated_at"), "tickets", ["source", "updated_at"], unique=False
    )
    op.create_index(
        op.f("ix_events_source_ticket_id_occurred_at_seq"),
        "events",
        ["source", "ticket_id", "occurred_at", "seq"],
        unique=False,
    )


def _swap_postgresql(*, as_or: bool) -> None:
    for name, (table, expression) in _checks(as_or=as_or).items():
        op.drop_constraint(op.f(name), table, type_="check")
        op.create_check_constraint(op.f(name), table, expression)


def _apply(*, as_or: bool) -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(as_or=as_or)
    else:
        _swap_postgresql(as_or=as_or)


def upgrade() -> None:
    _apply(as_or=True)


def downgrade() -> None:
    _apply(as_or=False)
