"""What every event-log format shares: deriving the canonical frames from a changes frame.

A format reader turns its file into a *changes* frame, one row per log row, and hands it to
``derive``, which builds the canonical ticket and event frames. The changes frame has:

=============== ==================== ===================================================
column          type                 meaning
=============== ==================== ===================================================
``ticket``      str                  the ticket id
``instant``     datetime64, UTC      when the row happened
``order``       int                  tie-break between rows of a ticket at one instant
                                     (the file's own key, else the line number)
``row``         int                  position of the row in the frame of original columns
``status``      str or NA            the raw status the row sets; NA: it sets none
``team``        str, NA or CLEARED   NA: the row does not carry a team (forward-filled);
``assignee``                         CLEARED: the row says there is none
``priority_raw``
``category``
``title``
``requester``
``actor``       str or NA            who made the change
``update_kind`` str or NA            ``customer_update`` / ``internal_update``
``update_label`` str or NA           what the update was (the activity name)
=============== ==================== ===================================================

Every column after ``row`` is optional. How each format fills it is in docs/eventlog.md.

The rest of the shared machinery lives beside this module: ``files`` (reading the CSV, required
columns, duplicate and skipped rows), ``times`` (time parsing, zones, DST) and ``values`` (cell
text, system users, priority normalisers).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from connectors.base import (
    DONE_STATES,
    EVENT_COLUMNS,
    OPEN_STATES,
    TICKET_COLUMNS,
    TICKET_INT_COLUMNS,
    TICKET_TIME_COLUMNS,
    EventField,
    EventOrigin,
    LifecycleState,
    TicketType,
    derived_event_keys,
)
from connectors.errors import ConnectorConfigError
from connectors.eventlog.files import json_rows
from connectors.eventlog.values import PriorityLevels
from connectors.statusmap import StatusMap

__all__ = ["CLEARED", "Derived", "conform_tickets", "derive"]

log = logging.getLogger(__name__)

CLEARED = "\x00cleared"
"""a value that says "explicitly none" (e.g. a system user as owner), unlike NA ("not carried")"""

CARRIED = ("status", "team", "assignee", "priority_raw", "category", "title", "requester")
OPTIONAL = (*CARRIED, "actor", "update_kind", "update_label")
TRACKED: tuple[tuple[str, EventField], ...] = (
    ("state", EventField.STATE),
    ("status", EventField.STATUS),
    ("team", EventField.TEAM),
    ("assignee", EventField.ASSIGNEE),
    ("priority_raw", EventField.PRIORITY),
)
FIELD_RANK = {
    str(f): i
    for i, f in enumerate(
        [*(f for _, f in TRACKED), EventField.CUSTOMER_UPDATE, EventField.INTERNAL_UPDATE]
    )
}
DONE_VALUES = frozenset(s.value for s in DONE_STATES)
OPEN_VALUES = frozenset(s.value for s in OPEN_STATES)
FINAL_VALUES = frozenset({LifecycleState.CLOSED.value, LifecycleState.CANCELLED.value})


def _objects(values: pd.Series, *, cleared: bool = True) -> pd.Series:
    """Object column with None for every kind of missing (and for CLEARED, when it can occur)."""
    arr = values.to_numpy(dtype=object, copy=True)
    missing = pd.isna(arr)
    if cleared:
        missing |= arr == CLEARED
    arr[missing] = None
    return pd.Series(arr, index=values.index, dtype=object)


def _like_constructor(values: pd.Series, *, cleared: bool = True) -> pd.Series:
    """Text as ``tickets_frame``/``events_frame`` type it: the DataFrame constructor's
    inference (``str`` when every value is text or missing, object when all are missing)."""
    return _objects(values, cleared=cleared).infer_objects()


def _utc_like_canonical(values: pd.Series) -> pd.Series:
    """UTC times in the unit ``tickets_frame``/``events_frame`` give (us; s for no values)."""
    stamps = pd.to_datetime(values, utc=True)
    return stamps.dt.as_unit("us" if stamps.notna().any() else "s")


@dataclass(frozen=True)
class Derived:
    tickets: pd.DataFrame
    events: pd.DataFrame
    unknown_statuses: dict[str, int] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)


def _unique_keys(events: pd.DataFrame) -> tuple[pd.Series, int]:
    """Content keys; the n-th repeat of identical content (n >= 1) gets ``#n`` hashed in."""
    keys = derived_event_keys(events)
    repeat = keys.duplicated(keep="first")
    count = int(repeat.sum())
    if count:
        nth = keys.groupby(keys, sort=False).cumcount().astype(str)
        salted = (keys[repeat] + "#" + nth[repeat]).map(
            lambda s: hashlib.blake2b(s.encode(), digest_size=16).hexdigest()
        )
        keys = keys.copy()
        keys[repeat] = salted
    return keys, count


def derive(
    changes: pd.DataFrame,
    *,
    raw: pd.DataFrame,
    source: str,
    status_map: StatusMap,
    ticket_type: TicketType,
    url_template: str | None = None,
    priority_levels: PriorityLevels | None = None,
) -> Derived:
    """Build the canonical ticket and event frames from a changes frame (see module docs).

    Args:
        changes: one row per log row (skipped rows already removed).
        raw: the file's original columns; ``changes.row`` indexes it by position.
        source: the configured source name, the ``source`` of every row.
        status_map: raw status -> lifecycle state.
        ticket_type: the type of every ticket.
        url_template: ``str.format`` template with ``{external_id}``.
        priority_levels: raw priority -> 1..5; priority stays None without it.
    """
    df = changes.copy()
    for col in OPTIONAL:
        if col not in df.columns:
            df[col] = None
        df[col] = df[col].astype(object)
    df["ticket"] = df["ticket"].astype(object)
    df = df.sort_values(["ticket", "instant", "order"], kind="stable", ignore_index=True)
    ticket = df["ticket"]
    first = ticket.ne(ticket.shift()).to_numpy()
    last = ticket.ne(ticket.shift(-1)).to_numpy()
    gid = np.cumsum(first) - 1
    n_tickets = int(first.sum())
    positions = np.arange(len(df))
    seq = positions - np.flatnonzero(first)[gid]
    notes: dict[str, int] = {}

    mapping = status_map.map_series(df["status"].where(df["status"].ne(CLEARED)))
    df["state"] = mapping.states
    filled = df[["state", *CARRIED]].groupby(gid, sort=False).ffill()

    parts: list[pd.DataFrame] = []
    prevs: dict[str, pd.Series] = {}
    for col, fld in TRACKED:
        values = filled[col]
        prev = values.shift().mask(first)
        prevs[col] = prev
        changed = values.notna() & (prev.isna() | values.ne(prev))
        changed &= ~(prev.isna() & values.eq(CLEARED))
        if changed.any():
            parts.append(
                pd.DataFrame(
                    {
                        "ticket_id": ticket[changed],
                        "occurred_at": df["instant"][changed],
                        "seq": seq[changed.to_numpy()],
                        "field": str(fld),
                        "_rank": FIELD_RANK[str(fld)],
                        "old_value": prev[changed],
                        "new_value": values[changed],
                        "actor": df["actor"][changed],
                    }
                )
            )
    updates = df["update_kind"].notna()
    if updates.any():
        parts.append(
            pd.DataFrame(
                {
                    "ticket_id": ticket[updates],
                    "occurred_at": df["instant"][updates],
                    "seq": seq[updates.to_numpy()],
                    "field": df["update_kind"][updates].map(str),
                    "_rank": df["update_kind"][updates].map(FIELD_RANK),
                    "old_value": None,
                    "new_value": df["update_label"][updates],
                    "actor": df["actor"][updates],
                }
            )
        )
    events = _events_frame(parts, source=source)
    keys, repeats = _unique_keys(events)
    events["event_key"] = keys
    if repeats:
        notes["identical events at one instant (keys made unique)"] = repeats

    state = filled["state"]
    is_done = state.isin(DONE_VALUES).to_numpy()
    prev_done = np.r_[False, is_done[:-1]] & ~first
    reopen = prev_done & state.isin(OPEN_VALUES).to_numpy()
    run_start = is_done & ~prev_done
    final_done = is_done[last]
    last_start = np.full(n_tickets, -1)
    np.maximum.at(last_start, gid[run_start], positions[run_start])
    in_final_run = (positions >= last_start[gid]) & (last_start[gid] >= 0) & final_done[gid]
    closing = in_final_run & state.isin(FINAL_VALUES).to_numpy()
    instants = df["instant"]
    resolved_at = pd.Series(pd.NaT, index=range(n_tickets), dtype=instants.dtype)
    done_tickets = np.flatnonzero(final_done)
    resolved_at.iloc[done_tickets] = instants.iloc[last_start[done_tickets]].array
    closed_at = pd.Series(pd.NaT, index=range(n_tickets), dtype=instants.dtype)
    first_close = instants[closing].groupby(gid[closing], sort=True).min()
    closed_at.iloc[first_close.index.to_numpy()] = first_close.array
    team_prev = prevs["team"]
    team_changes = (
        filled["team"].notna() & team_prev.notna() & filled["team"].ne(team_prev)
    ).to_numpy()

    lastrows = filled.iloc[np.flatnonzero(last)].reset_index(drop=True)
    ids = ticket.iloc[np.flatnonzero(last)].reset_index(drop=True)
    no_state = lastrows["state"].isna()
    if no_state.any():
        notes["tickets without any status (state new)"] = int(no_state.sum())
    priority_raw = _objects(lastrows["priority_raw"])
    if priority_levels is None:
        priority = pd.Series(pd.NA, index=lastrows.index, dtype="Int64")
    else:
        priority = priority_levels(priority_raw).astype("Int64")
    url: list[str] | None = None
    if url_template:
        try:
            url = [url_template.format(external_id=i) for i in ids]
        except (KeyError, IndexError, ValueError) as e:
            raise ConnectorConfigError(
                f"`url_template` {url_template!r} cannot be filled ({type(e).__name__}: {e}); "
                "the only placeholder is {external_id}",
                source=source,
            ) from e
    tickets = pd.DataFrame(
        {
            "source": source,
            "external_id": ids,
            "number": ids,
            "title": _objects(lastrows["title"]),
            "type": ticket_type.value,
            "raw_status": _objects(lastrows["status"]),
            "state": lastrows["state"].where(~no_state, LifecycleState.NEW.value),
            "priority_raw": priority_raw,
            "priority": priority,
            "category": _objects(lastrows["category"]),
            "team": _objects(lastrows["team"]),
            "assignee": _objects(lastrows["assignee"]),
            "requester": _objects(lastrows["requester"]),
            "created_at": instants.iloc[np.flatnonzero(first)].array,
            "updated_at": instants.iloc[np.flatnonzero(last)].array,
            "resolved_at": resolved_at,
            "closed_at": closed_at,
            "due_at": None,
            "reassignment_count": np.bincount(gid[team_changes], minlength=n_tickets),
            "reopen_count": np.bincount(gid[reopen], minlength=n_tickets),
            "url": url,
            "raw": json_rows(raw.iloc[df["row"].to_numpy()[last]]),
        }
    )
    return Derived(
        tickets=conform_tickets(tickets),
        events=events,
        unknown_statuses=mapping.unknown,
        notes=notes,
    )


def _events_frame(parts: list[pd.DataFrame], *, source: str) -> pd.DataFrame:
    if not parts:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in EVENT_COLUMNS})
        frame["occurred_at"] = pd.Series(dtype="datetime64[s, UTC]")
        frame["seq"] = frame["seq"].astype("int64")
        return frame
    # each part is indexed by its row in the ticket-sorted changes frame, so (row, field rank)
    # is the (ticket, seq, field) order: an integer sort, no string comparisons
    events = pd.concat(parts)
    key = events.index.to_numpy() * len(FIELD_RANK) + events["_rank"].to_numpy(dtype=np.int64)
    events = events.iloc[np.argsort(key, kind="stable")].reset_index(drop=True)
    events["source"] = source
    events["event_key"] = None
    events["origin"] = EventOrigin.HISTORY.value
    for col in ("source", "ticket_id", "actor"):
        events[col] = _like_constructor(events[col], cleared=False)
    for col in ("old_value", "new_value"):
        events[col] = _like_constructor(events[col])
    for col in ("field", "origin"):
        events[col] = _objects(events[col], cleared=False)
    events["occurred_at"] = _utc_like_canonical(events["occurred_at"])
    events["seq"] = events["seq"].astype("int64")
    return events[list(EVENT_COLUMNS)]


def conform_tickets(frame: pd.DataFrame) -> pd.DataFrame:
    """The ticket frame with exactly the canonical columns and dtypes."""
    out = frame[list(TICKET_COLUMNS)].copy()
    for col in TICKET_COLUMNS:
        if col in TICKET_TIME_COLUMNS:
            out[col] = _utc_like_canonical(out[col])
        elif col in TICKET_INT_COLUMNS:
            out[col] = out[col].astype("Int64")
        elif col in ("state", "type"):
            out[col] = _objects(out[col])
        elif col != "raw":
            out[col] = _like_constructor(out[col])
    return out.reset_index(drop=True)
