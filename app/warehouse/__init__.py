"""The warehouse: canonical tickets, events and sync state in SQLite or PostgreSQL."""

from app.warehouse import alerts_schema as alerts_schema  # registers the alert tables
from app.warehouse.engine import current_revision, head_revision, make_engine, upgrade
from app.warehouse.reads import (
    read_events_frame,
    read_sync_states,
    read_tickets_frame,
    read_unknown_statuses,
)
from app.warehouse.writes import (
    Deletions,
    UpsertCounts,
    clear_deleted,
    insert_events,
    mark_deleted,
    mark_ids_deleted,
    record_unknown_statuses,
    save_sync_state,
    upsert_tickets,
    utcnow,
)

__all__ = [
    "Deletions",
    "UpsertCounts",
    "clear_deleted",
    "current_revision",
    "head_revision",
    "insert_events",
    "make_engine",
    "mark_deleted",
    "mark_ids_deleted",
    "read_events_frame",
    "read_sync_states",
    "read_tickets_frame",
    "read_unknown_statuses",
    "record_unknown_statuses",
    "save_sync_state",
    "upgrade",
    "upsert_tickets",
    "utcnow",
]
