"""The warehouse tables (SQLAlchemy 2 typed declarative).

The migrations in ``app/migrations`` create exactly these tables; a test checks that the two agree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.warehouse.types import JSONType, UTCDateTime
from connectors.base import EventField, EventOrigin, LifecycleState, TicketType

__all__ = ["Base", "Event", "SyncState", "Ticket", "UnknownStatus", "metadata"]

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)


def _in(column: str, values: Any) -> str:
    """A CHECK that ``column`` holds one of ``values``, written as ``=`` tests joined by OR.

    Not ``column IN (...)``: SQLite builds a temporary b-tree for an IN list of more than two
    constants each time a statement runs, and an ``executemany`` runs the statement once per
    row, so the IN form cost about 10 µs per ticket on bulk writes (see docs/benchmarks.md).
    """
    return " OR ".join(f"{column} = '{v.value}'" for v in values)


class Base(DeclarativeBase):
    metadata = metadata

    def __repr__(self) -> str:
        keys = ", ".join(f"{c.key}={getattr(self, c.key)!r}" for c in self.__table__.primary_key)
        return f"{type(self).__name__}({keys})"


class Ticket(Base):
    """One row per ticket, keyed on (source, external id): the tool's current view."""

    __tablename__ = "tickets"
    __table_args__ = (
        CheckConstraint(_in("state", LifecycleState), name="state"),
        CheckConstraint(_in("type", TicketType), name="type"),
        CheckConstraint("priority IS NULL OR priority BETWEEN 1 AND 5", name="priority"),
        Index(None, "source", "state"),
        Index(None, "source", "updated_at"),
        Index(
            "ix_tickets_deleted",
            "source",
            "external_id",
            sqlite_where=text("deleted_at IS NOT NULL"),
            postgresql_where=text("deleted_at IS NOT NULL"),
        ),
    )

    source: Mapped[str] = mapped_column(String(100), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    number: Mapped[str | None] = mapped_column(String(100))
    title: Mapped[str | None] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(20))
    raw_status: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20))
    priority_raw: Mapped[str | None] = mapped_column(String(100))
    priority: Mapped[int | None] = mapped_column(Integer)
    category: Mapped[str | None] = mapped_column(String(200))
    team: Mapped[str | None] = mapped_column(String(200))
    assignee: Mapped[str | None] = mapped_column(String(200))
    requester: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reassignment_count: Mapped[int | None] = mapped_column(Integer)
    reopen_count: Mapped[int | None] = mapped_column(Integer)
    url: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[Any] = mapped_column(JSONType())
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    """when this row last changed in the warehouse"""
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """when a complete full scan of the source no longer found the ticket (None: present)"""


class Event(Base):
    """One change of one field of one ticket, deduplicated on (source, event_key)."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("source", "event_key"),
        ForeignKeyConstraint(
            ["source", "ticket_id"],
            ["tickets.source", "tickets.external_id"],
            ondelete="CASCADE",
        ),
        CheckConstraint(_in("field", EventField), name="field"),
        CheckConstraint(_in("origin", EventOrigin), name="origin"),
        Index(None, "source", "ticket_id", "occurred_at", "seq"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    source: Mapped[str] = mapped_column(String(100))
    ticket_id: Mapped[str] = mapped_column(String(200))
    event_key: Mapped[str] = mapped_column(String(200))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    seq: Mapped[int] = mapped_column(Integer, default=0)
    field: Mapped[str] = mapped_column(String(30))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(200))
    origin: Mapped[str] = mapped_column(String(20))
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SyncState(Base):
    """Per source: where the last sync got to and how it went."""

    __tablename__ = "sync_state"

    source: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    cursor: Mapped[str | None] = mapped_column(Text)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status: Mapped[str | None] = mapped_column(String(20))
    last_error: Mapped[str | None] = mapped_column(Text)
    tickets_seen: Mapped[int] = mapped_column(Integer, default=0)
    tickets_inserted: Mapped[int] = mapped_column(Integer, default=0)
    tickets_updated: Mapped[int] = mapped_column(Integer, default=0)
    events_inserted: Mapped[int] = mapped_column(Integer, default=0)
    rows_skipped: Mapped[int] = mapped_column(Integer, default=0)
    details: Mapped[Any] = mapped_column(JSONType(), nullable=True)


class UnknownStatus(Base):
    """Raw statuses a source sent that its status map did not know."""

    __tablename__ = "unknown_statuses"

    source: Mapped[str] = mapped_column(String(100), primary_key=True)
    raw_status: Mapped[str] = mapped_column(String(200), primary_key=True)
    mapped_to: Mapped[str] = mapped_column(String(20))
    last_count: Mapped[int] = mapped_column(Integer)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
