"""Builders for small canonical frames: ``make_tickets(...)`` and ``make_events(...)``."""

from __future__ import annotations

from typing import Any

import pandas as pd

from analytics.frames import EVENT_COLUMNS, TICKET_COLUMNS

SOURCE = "desk"
NOW = pd.Timestamp("2024-03-15T12:00:00Z")
"""a Friday"""


def ts(value: str) -> pd.Timestamp:
    """A UTC instant; naive strings are read as UTC."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def make_tickets(*rows: dict[str, Any]) -> pd.DataFrame:
    """Canonical tickets; each row needs ``external_id`` and may override any column."""
    defaults: dict[str, Any] = {
        "source": SOURCE,
        "number": None,
        "title": None,
        "type": "incident",
        "raw_status": None,
        "state": "new",
        "priority_raw": None,
        "priority": 3,
        "category": "general",
        "team": None,
        "assignee": None,
        "requester": None,
        "created_at": "2024-03-01T09:00:00Z",
        "updated_at": None,
        "resolved_at": None,
        "closed_at": None,
        "due_at": None,
        "reassignment_count": None,
        "reopen_count": None,
        "url": None,
        "raw": None,
    }
    frame = pd.DataFrame([{**defaults, **row} for row in rows], columns=list(TICKET_COLUMNS))
    for col in ("created_at", "updated_at", "resolved_at", "closed_at", "due_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601").astype(
            "datetime64[us, UTC]"
        )
    for col in ("priority", "reassignment_count", "reopen_count"):
        frame[col] = frame[col].astype("Int64")
    return frame


def make_events(*rows: tuple[Any, ...] | dict[str, Any]) -> pd.DataFrame:
    """Canonical events from ``(ticket_id, occurred_at, field, new_value[, actor[, seq]])``
    tuples or full dicts."""
    records = []
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            rec = {"seq": 0, "actor": None, "old_value": None, **row}
        else:
            ticket, at, field, new, *rest = row
            rec = {
                "ticket_id": ticket,
                "occurred_at": at,
                "field": field,
                "new_value": new,
                "old_value": None,
                "actor": rest[0] if rest else None,
                "seq": rest[1] if len(rest) > 1 else 0,
            }
        rec.setdefault("source", SOURCE)
        rec.setdefault("event_key", f"k{i}")
        rec.setdefault("origin", "history")
        records.append(rec)
    frame = pd.DataFrame(records, columns=list(EVENT_COLUMNS))
    frame["occurred_at"] = pd.to_datetime(
        frame["occurred_at"].map(lambda v: None if v is None else str(pd.Timestamp(v))),
        utc=True,
        format="ISO8601",
    ).astype("datetime64[us, UTC]")
    frame["seq"] = frame["seq"].astype("int64")
    return frame


def states(ticket: str, *changes: tuple[str, str]) -> list[tuple[Any, ...]]:
    """State events of one ticket from ``(time, state)`` pairs."""
    return [(ticket, at, "state", state) for at, state in changes]


def as_categories(frame: pd.DataFrame, *, sort: bool = True) -> pd.DataFrame:
    """The frame with every text column as a pandas categorical (as the warehouse hands low-
    cardinality columns over). ``sort=False`` puts the categories in reverse order and adds an
    unused one, so that nothing can depend on the order or the completeness of the categories."""
    out = frame.copy()
    for col in out.columns:
        values = out[col]
        if (
            values.dtype.kind != "O"
            or not values.map(lambda v: isinstance(v, str) or v is None or v != v).all()
        ):
            continue
        distinct = sorted({v for v in values if isinstance(v, str)})
        categories = distinct if sort else ["(unused)", *reversed(distinct)]
        out[col] = pd.Categorical(values.where(values.notna(), None), categories=categories)
    return out
