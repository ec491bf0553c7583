"""The canonical ticket model that every connector produces and the warehouse stores.

Connectors hand the sync two pandas frames with the columns below: one row per ticket
(``TICKET_COLUMNS``) and one row per change (``EVENT_COLUMNS``). Network connectors that build
records one by one use ``TicketRecord`` / ``EventRecord`` and ``tickets_frame`` / ``events_frame``;
bulk importers build the frames directly. ``docs/model.md`` documents every field.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DONE_STATES",
    "EVENT_COLUMNS",
    "OPEN_STATES",
    "TICKET_COLUMNS",
    "WAITING_STATES",
    "EventField",
    "EventOrigin",
    "EventRecord",
    "LifecycleState",
    "TicketRecord",
    "TicketType",
    "derived_event_keys",
    "empty_events_frame",
    "empty_tickets_frame",
    "events_frame",
    "tickets_frame",
]


class LifecycleState(StrEnum):
    """The generic lifecycle every raw status maps to."""

    NEW = "new"
    IN_PROGRESS = "in_progress"
    WAITING_CUSTOMER = "waiting_customer"
    WAITING_SUPPLIER = "waiting_supplier"
    WAITING_OTHER = "waiting_other"
    RESOLVED = "resolved"
    CLOSED = "closed"
    CANCELLED = "cancelled"


WAITING_STATES = frozenset(
    {LifecycleState.WAITING_CUSTOMER, LifecycleState.WAITING_SUPPLIER, LifecycleState.WAITING_OTHER}
)
DONE_STATES = frozenset({LifecycleState.RESOLVED, LifecycleState.CLOSED, LifecycleState.CANCELLED})
OPEN_STATES = frozenset(set(LifecycleState) - DONE_STATES)


class TicketType(StrEnum):
    INCIDENT = "incident"
    REQUEST = "request"
    PROBLEM = "problem"
    CHANGE = "change"
    OTHER = "other"


class EventField(StrEnum):
    """What an event changed."""

    STATE = "state"
    """lifecycle state (``LifecycleState`` values)"""
    STATUS = "status"
    """the tool's own raw status"""
    TEAM = "team"
    ASSIGNEE = "assignee"
    PRIORITY = "priority"
    """raw priority"""
    CUSTOMER_UPDATE = "customer_update"
    """a customer-visible update (reply, mail, call); ``new_value`` says what"""
    INTERNAL_UPDATE = "internal_update"
    """an update the customer does not see (work note, internal action)"""


class EventOrigin(StrEnum):
    HISTORY = "history"
    """from the tool's own history: audit trail, changelog, exported event log"""
    SNAPSHOT = "snapshot"
    """derived by comparing a fetched snapshot with the stored one"""


TICKET_COLUMNS: tuple[str, ...] = (
    "source",
    "external_id",
    "number",
    "title",
    "type",
    "raw_status",
    "state",
    "priority_raw",
    "priority",
    "category",
    "team",
    "assignee",
    "requester",
    "created_at",
    "updated_at",
    "resolved_at",
    "closed_at",
    "due_at",
    "reassignment_count",
    "reopen_count",
    "url",
    "raw",
)
TICKET_TIME_COLUMNS = ("created_at", "updated_at", "resolved_at", "closed_at", "due_at")
TICKET_INT_COLUMNS = ("priority", "reassignment_count", "reopen_count")

EVENT_COLUMNS: tuple[str, ...] = (
    "source",
    "ticket_id",
    "event_key",
    "occurred_at",
    "seq",
    "field",
    "old_value",
    "new_value",
    "actor",
    "origin",
)


@dataclass(frozen=True, slots=True)
class TicketRecord:
    """One ticket as the tool shows it now. Times are timezone-aware UTC."""

    source: str
    external_id: str
    state: LifecycleState
    raw_status: str | None
    created_at: datetime | None
    updated_at: datetime | None
    number: str | None = None
    title: str | None = None
    type: TicketType = TicketType.INCIDENT
    priority_raw: str | None = None
    priority: int | None = None
    category: str | None = None
    team: str | None = None
    assignee: str | None = None
    requester: str | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    due_at: datetime | None = None
    reassignment_count: int | None = None
    reopen_count: int | None = None
    url: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One change of one field of one ticket."""

    source: str
    ticket_id: str
    occurred_at: datetime
    field: EventField
    old_value: str | None
    new_value: str | None
    origin: EventOrigin
    actor: str | None = None
    seq: int = 0
    event_key: str | None = None
    """the tool's own id for the change; derived from the content when None"""


def _utc(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True)


def empty_tickets_frame() -> pd.DataFrame:
    """A frame with the ticket columns and no rows."""
    return tickets_frame([])


def empty_events_frame() -> pd.DataFrame:
    """A frame with the event columns and no rows."""
    return events_frame([])


def tickets_frame(records: Iterable[TicketRecord]) -> pd.DataFrame:
    """Turn ticket records into the canonical ticket frame."""
    rows = [asdict(r) for r in records]
    frame = pd.DataFrame(rows, columns=list(TICKET_COLUMNS))
    for col in TICKET_TIME_COLUMNS:
        frame[col] = _utc(frame[col])
    for col in TICKET_INT_COLUMNS:
        frame[col] = frame[col].astype("Int64")
    for col in ("state", "type"):
        frame[col] = frame[col].map(lambda v: None if v is None else str(v)).astype(object)
    return frame


def events_frame(records: Iterable[EventRecord]) -> pd.DataFrame:
    """Turn event records into the canonical event frame, deriving missing keys."""
    rows = [asdict(r) for r in records]
    frame = pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
    frame["occurred_at"] = _utc(frame["occurred_at"])
    frame["seq"] = frame["seq"].astype("int64")
    for col in ("field", "origin"):
        frame[col] = frame[col].map(str).astype(object)
    missing = frame["event_key"].isna()
    if missing.any():
        frame.loc[missing, "event_key"] = derived_event_keys(frame.loc[missing])
    return frame


def _text_or_marker(values: pd.Series) -> np.ndarray:
    """Values as text, with a marker no text holds where missing (so None differs from "")."""
    raw = values.to_numpy(dtype=object)
    # object arrays throughout: numpy's fixed-width strings would strip the NUL marker
    out: np.ndarray = np.array([str(v) for v in raw], dtype=object)
    out[pd.isna(raw)] = "\x00"
    return out


def derived_event_keys(events: pd.DataFrame) -> pd.Series:
    """A stable key for events the tool gives no id for: same change, same key.

    The key is built from ticket, instant, field, old and new value, so importing the same
    history twice, or deriving the same snapshot change twice, yields the same key and the
    warehouse keeps one row.
    """
    if events.empty:
        return pd.Series([], index=events.index, dtype=object)
    stamps = _utc(events["occurred_at"]).dt.tz_localize(None).to_numpy("datetime64[us]")
    columns = (
        events["ticket_id"].astype(str).to_numpy(object),
        np.datetime_as_string(stamps, unit="us").astype(object),
        events["field"].astype(str).to_numpy(object),
        _text_or_marker(events["old_value"]),
        _text_or_marker(events["new_value"]),
    )
    keys = [
        hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()
        for parts in zip(*columns, strict=True)
    ]
    return pd.Series(keys, index=events.index, dtype=object)
