"""History for tools without an audit trail: compare each fetched snapshot with the stored one.

Pure functions over canonical ticket frames (``connectors.base.TICKET_COLUMNS``), shared by every
connector whose tool keeps no field history (TOPdesk). ``snapshot_events`` emits one event per
tracked field whose value differs, timed at the fetched ticket's ``updated_at`` (the tool's
modification time), with origin ``snapshot`` and a content-derived key, so deriving the same
change twice (a re-run after a crash, an overlap re-read) stores it once.

A ticket seen for the first time gets a baseline: one event per tracked field that has a value,
``old_value`` None, at ``created_at`` when the ticket has not been modified since it was
created (within ``BASELINE_GRACE``), else at ``updated_at`` (the earliest time the values are
known to hold).

What snapshots cannot show: changes between two syncs collapse into one (A -> B -> C between
syncs is one A -> C event at C's time), so the poll interval bounds the time resolution.
"""

from __future__ import annotations

import functools
import math
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from connectors.base import (
    EVENT_COLUMNS,
    EventField,
    EventOrigin,
    derived_event_keys,
    empty_events_frame,
)

__all__ = ["BASELINE_GRACE", "SNAPSHOT_COLUMNS", "TRACKED_FIELDS", "snapshot_events", "split_stale"]

TRACKED_FIELDS: tuple[tuple[EventField, str], ...] = (
    (EventField.STATUS, "raw_status"),
    (EventField.STATE, "state"),
    (EventField.TEAM, "team"),
    (EventField.ASSIGNEE, "assignee"),
    (EventField.PRIORITY, "priority_raw"),
)
"""event field -> ticket column, in ``seq`` order for events at the same instant"""

SNAPSHOT_COLUMNS: tuple[str, ...] = (
    "external_id",
    "updated_at",
    *(column for _f, column in TRACKED_FIELDS),
)
"""what the stored side of a comparison needs"""

BASELINE_GRACE = timedelta(minutes=1)


def _missing(value: Any) -> bool:
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, float) and math.isnan(value))
    )


def _values(series: pd.Series) -> list[Any]:
    """Column values as Python objects, every kind of missing as None."""
    return [None if _missing(v) else v for v in series.tolist()]


def _instants(series: pd.Series) -> list[int | None]:
    """Instants as integer microseconds since the epoch (UTC), None where missing.

    Plain ints compare and subtract far faster than ``Timestamp`` objects in a loop.
    """
    stamps = (
        series if isinstance(series.dtype, pd.DatetimeTZDtype) else pd.to_datetime(series, utc=True)
    )
    micros = stamps.to_numpy(dtype="datetime64[us]").astype("int64")
    missing = stamps.isna().to_numpy()
    return [None if gone else int(v) for v, gone in zip(micros.tolist(), missing, strict=True)]


_GRACE_US = int(BASELINE_GRACE.total_seconds() * 1_000_000)


@functools.cache
def _empty_events() -> pd.DataFrame:
    return empty_events_frame()


def _no_events() -> pd.DataFrame:
    """An empty event frame (built once: building it costs more than a page's diff)."""
    return _empty_events().copy()


def split_stale(stored: pd.DataFrame, fetched: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``fetched`` into tickets at least as new as the stored ones, and older ones.

    An older snapshot (``updated_at`` before the stored one: a lagging replica, a clock step)
    must neither overwrite the warehouse nor produce events.
    """
    if fetched.empty or stored.empty:
        return fetched, fetched.iloc[0:0]
    before = dict(zip(_values(stored["external_id"]), _instants(stored["updated_at"]), strict=True))
    stale = [
        old is not None and new is not None and new < old
        for old, new in zip(
            (before.get(i) for i in _values(fetched["external_id"])),
            _instants(fetched["updated_at"]),
            strict=True,
        )
    ]
    mask = np.array(stale, dtype=bool)
    return fetched[~mask], fetched[mask]


def snapshot_events(
    stored: pd.DataFrame,
    fetched: pd.DataFrame,
    *,
    actors: pd.Series | None = None,
) -> pd.DataFrame:
    """The events that turn the stored snapshots into the fetched ones.

    Args:
        stored: the warehouse's current rows for (some of) the fetched tickets, with at least
            ``SNAPSHOT_COLUMNS``; tickets absent here are new.
        fetched: canonical ticket frame of one source, one row per ticket, none older than its
            stored row (see ``split_stale``).
        actors: who made each fetched ticket's last change (aligned with ``fetched``), used as
            the actor of its change events.

    Returns:
        A canonical event frame (``EVENT_COLUMNS``), origin ``snapshot``. A changed value at
        the same ``updated_at`` as the stored one (a remapped status after a config change)
        updates the ticket but is not an event: nothing happened in the tool.
    """
    if fetched.empty:
        return _no_events()
    # a loop over plain values: per page this is far cheaper than dozens of pandas operations
    old_rows: dict[Any, tuple[Any, ...]] = {}
    if not stored.empty:
        old_columns = [_values(stored[c]) for c in SNAPSHOT_COLUMNS[2:]]
        keys = _values(stored["external_id"])
        old_times = _instants(stored["updated_at"])
        for i, key in enumerate(keys):
            old_rows[key] = (old_times[i], *(column[i] for column in old_columns))
    sources = _values(fetched["source"])
    ids = _values(fetched["external_id"])
    updated = _instants(fetched["updated_at"])
    created = _instants(fetched["created_at"])
    new_columns = [_values(fetched[c]) for _f, c in TRACKED_FIELDS]
    who = _values(actors) if actors is not None else [None] * len(ids)
    fields = [f.value for f, _c in TRACKED_FIELDS]
    rows: list[tuple[Any, ...]] = []
    for i, ticket_id in enumerate(ids):
        at = updated[i]
        if at is None:
            continue
        old = old_rows.get(ticket_id)
        if old is None:
            begun = created[i]
            at = begun if begun is not None and at - begun <= _GRACE_US else at
            for seq, column in enumerate(new_columns):
                if column[i] is not None:
                    rows.append(
                        (sources[i], ticket_id, at, seq, fields[seq], None, column[i], None)
                    )
            continue
        if old[0] is not None and at <= old[0]:
            continue
        for seq, column in enumerate(new_columns):
            before, after = old[seq + 1], column[i]
            if after != before:
                rows.append((sources[i], ticket_id, at, seq, fields[seq], before, after, who[i]))
    if not rows:
        return _no_events()
    names = (
        "source",
        "ticket_id",
        "occurred_at",
        "seq",
        "field",
        "old_value",
        "new_value",
        "actor",
    )
    columns = dict(zip(names, zip(*rows, strict=True), strict=True))
    events = pd.DataFrame(
        {
            name: (
                pd.to_datetime(np.array(values, dtype="int64"), unit="us", utc=True)
                if name == "occurred_at"
                else pd.Series(values, dtype="int64" if name == "seq" else object)
            )
            for name, values in columns.items()
        }
    )
    events["origin"] = pd.Series([EventOrigin.SNAPSHOT.value] * len(events), dtype=object)
    keys = derived_event_keys(events).tolist()
    events["event_key"] = pd.Series(keys, index=events.index, dtype=object)
    return events.loc[:, list(EVENT_COLUMNS)]
