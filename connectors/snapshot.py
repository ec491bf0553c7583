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

from datetime import timedelta

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


def _objects(series: pd.Series) -> pd.Series:
    """Values as Python objects, every kind of missing as None."""
    values = series.astype(object)
    return values.where(series.notna(), None)


def _utc(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True)


def split_stale(stored: pd.DataFrame, fetched: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``fetched`` into tickets at least as new as the stored ones, and older ones.

    An older snapshot (``updated_at`` before the stored one: a lagging replica, a clock step)
    must neither overwrite the warehouse nor produce events.
    """
    if fetched.empty or stored.empty:
        return fetched, fetched.iloc[0:0]
    stored_at = stored.set_index("external_id")["updated_at"]
    old = _utc(fetched["external_id"].map(stored_at))
    new = _utc(fetched["updated_at"])
    stale = (old.notna() & new.notna() & (new < old)).to_numpy()
    return fetched[~stale], fetched[stale]


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
        return empty_events_frame()
    fetched = fetched.reset_index(drop=True)
    actor = (
        _objects(actors.reset_index(drop=True))
        if actors is not None
        else pd.Series([None] * len(fetched), dtype=object)
    )
    if stored.empty:
        joined = fetched.assign(**{f"{c}__old": None for c in SNAPSHOT_COLUMNS[1:]})
        known = np.zeros(len(fetched), dtype=bool)
    else:
        old = stored.loc[:, list(SNAPSHOT_COLUMNS)].drop_duplicates("external_id", keep="last")
        old = old.rename(columns={c: f"{c}__old" for c in SNAPSHOT_COLUMNS[1:]})
        joined = fetched.merge(old, on="external_id", how="left", indicator=True)
        known = (joined.pop("_merge") == "both").to_numpy()
    updated = _utc(joined["updated_at"])
    old_updated = _utc(joined["updated_at__old"])
    created = _utc(joined["created_at"])
    moved_on = (updated.notna() & (old_updated.isna() | (updated > old_updated))).to_numpy()
    fresh_since_creation = (
        created.notna() & updated.notna() & (updated - created <= BASELINE_GRACE)
    ).to_numpy()
    baseline_at = created.where(fresh_since_creation, updated)

    parts: list[pd.DataFrame] = []
    for seq, (event_field, column) in enumerate(TRACKED_FIELDS):
        new_values = _objects(joined[column])
        old_values = _objects(joined[f"{column}__old"])
        differs = (new_values != old_values).to_numpy() & ~(
            new_values.isna() & old_values.isna()
        ).to_numpy()
        changed = known & moved_on & differs
        baseline = ~known & new_values.notna().to_numpy()
        for mask, at, before, who in (
            (changed, updated, old_values, actor),
            (baseline, baseline_at, pd.Series([None] * len(joined), dtype=object), None),
        ):
            if not mask.any():
                continue
            parts.append(
                pd.DataFrame(
                    {
                        "source": joined.loc[mask, "source"].to_numpy(dtype=object),
                        "ticket_id": joined.loc[mask, "external_id"].to_numpy(dtype=object),
                        "event_key": None,
                        "occurred_at": _utc(pd.Series(at[mask].to_numpy())),
                        "seq": seq,
                        "field": event_field.value,
                        "old_value": before[mask].to_numpy(dtype=object),
                        "new_value": new_values[mask].to_numpy(dtype=object),
                        "actor": None if who is None else who[mask].to_numpy(dtype=object),
                        "origin": EventOrigin.SNAPSHOT.value,
                    }
                )
            )
    if not parts:
        return empty_events_frame()
    events = pd.concat(parts, ignore_index=True).loc[:, list(EVENT_COLUMNS)]
    events = events[events["occurred_at"].notna()].reset_index(drop=True)
    for column in ("source", "ticket_id", "field", "old_value", "new_value", "actor", "origin"):
        events[column] = _objects(events[column])
    events["seq"] = events["seq"].astype("int64")
    events["event_key"] = derived_event_keys(events).to_numpy(dtype=object)
    return events.sort_values(["ticket_id", "occurred_at", "seq"], kind="stable").reset_index(
        drop=True
    )
