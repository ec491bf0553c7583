"""History from ``sys_audit`` and ``sys_journal_field``: pure functions over fetched rows.

An audit row (references as sys_ids, times in UTC)::

    {"sys_id": "9f1c...", "documentkey": "<record sys_id>", "fieldname": "assignment_group",
     "oldvalue": "<group sys_id>", "newvalue": "<group sys_id>", "user": "admin",
     "sys_created_on": "2024-03-01 09:40:11", "record_checkpoint": "4"}

Rows of one update share ``sys_created_on`` and ``record_checkpoint``. ``audit_events`` replays
them per record backwards from the fetched values (the value before an update is the row's
``oldvalue``, fields without a row keep theirs), so the state, hold reason, group, assignee
and priority are known at every update; an event is emitted where what it tracks changed:
``status`` (state label, with the hold reason while on hold), ``state`` (lifecycle), ``team``,
``assignee``, ``priority``. Team, assignee and priority events are keyed on the audit row's
sys_id, status and state events on the update's first row, so a re-read stores nothing twice.

A record new to the warehouse also gets a baseline at its creation: one event per field that
had a value before its first audited update (old value empty), timed at ``created_at``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from connectors.base import (
    EVENT_COLUMNS,
    EventField,
    derived_event_keys,
    empty_events_frame,
)
from connectors.servicenow.choices import StateMapper
from connectors.servicenow.query import parse_sn_datetime
from connectors.servicenow.records import Current

__all__ = ["AuditRow", "audit_events", "journal_events", "parse_audit_rows"]

Names = Callable[[str, str], str | None]
"""(field, sys_id) -> display name (``assignment_group`` -> group, ``assigned_to`` -> user)"""

SEQ = {
    EventField.STATUS: 0,
    EventField.STATE: 1,
    EventField.TEAM: 2,
    EventField.ASSIGNEE: 3,
    EventField.PRIORITY: 4,
}
REFERENCE_FIELDS = {"assignment_group": EventField.TEAM, "assigned_to": EventField.ASSIGNEE}


@dataclass(frozen=True, slots=True)
class AuditRow:
    sys_id: str
    record: str
    field: str
    old: str
    new: str
    user: str | None
    at: datetime
    checkpoint: int


def parse_audit_rows(rows: Iterable[Mapping[str, Any]]) -> list[AuditRow]:
    """Typed audit rows.

    Raises:
        ValueError: a row without ``sys_id``/``documentkey`` or with an unreadable time.
    """
    out: list[AuditRow] = []
    for row in rows:
        sys_id, record = row.get("sys_id"), row.get("documentkey")
        if not sys_id or not record:
            raise ValueError(f"sys_audit row without sys_id or documentkey: {dict(row)!r:.200}")
        at = parse_sn_datetime(row.get("sys_created_on"))
        if at is None:
            raise ValueError(f"sys_audit row {sys_id} has no sys_created_on")
        try:
            checkpoint = int(row.get("record_checkpoint") or 0)
        except ValueError:
            checkpoint = 0
        out.append(
            AuditRow(
                sys_id=str(sys_id),
                record=str(record),
                field=str(row.get("fieldname") or ""),
                old=str(row.get("oldvalue") or ""),
                new=str(row.get("newvalue") or ""),
                user=str(row["user"]) if row.get("user") else None,
                at=at,
                checkpoint=checkpoint,
            )
        )
    return out


class _Events:
    def __init__(self, source: str) -> None:
        self.source = source
        self.rows: list[tuple[Any, ...]] = []
        self.keyless: list[int] = []

    def add(
        self,
        ticket: str,
        at: datetime,
        field: EventField,
        old: str | None,
        new: str | None,
        actor: str | None,
        key: str | None,
    ) -> None:
        if key is None:
            self.keyless.append(len(self.rows))
        self.rows.append(
            (self.source, ticket, key, at, SEQ[field], field.value, old, new, actor, "history")
        )

    def frame(self) -> pd.DataFrame:
        if not self.rows:
            return empty_events_frame()
        frame = pd.DataFrame(self.rows, columns=list(EVENT_COLUMNS))
        frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
        frame["seq"] = frame["seq"].astype("int64")
        if self.keyless:
            keys = derived_event_keys(frame.iloc[self.keyless])
            frame.loc[frame.index[self.keyless], "event_key"] = keys.to_numpy()
        return frame


def _value(field: str, raw: str, *, mapper: StateMapper, names: Names) -> str | None:
    if raw == "":
        return None
    if field in REFERENCE_FIELDS:
        return names(field, raw) or raw
    if field == "priority":
        return mapper.choices.label("priority", raw)
    return raw


def audit_events(
    rows: Sequence[AuditRow],
    currents: Sequence[Current],
    *,
    source: str,
    new: set[str],
    mapper: StateMapper,
    names: Names,
) -> pd.DataFrame:
    """The events of the audit rows of some records (see the module docstring).

    Args:
        rows: audit rows of these records, any order; rows after a record's fetched
            ``updated_at`` (changed since it was listed) are left for the next sync.
        currents: the records as fetched.
        new: sys_ids of records not in the warehouse yet: they get a baseline, and their
            ``rows`` must reach back to their creation.
        names: display names of groups and users.
    """
    state_field = mapper.state_field
    tracked = (state_field, "hold_reason", "assignment_group", "assigned_to", "priority")
    by_record: dict[str, list[AuditRow]] = {}
    for row in rows:
        if row.field in tracked:
            by_record.setdefault(row.record, []).append(row)
    out = _Events(source)
    for current in currents:
        mine = [r for r in by_record.get(current.sys_id, ()) if r.at <= current.updated_at]
        mine.sort(key=lambda r: (r.at, r.checkpoint, r.sys_id))
        updates: list[list[AuditRow]] = []
        for row in mine:
            if updates and (updates[-1][0].at, updates[-1][0].checkpoint) == (
                row.at,
                row.checkpoint,
            ):
                updates[-1].append(row)
            else:
                updates.append([row])
        # backwards from the fetched values: the values before each update
        values = {f: current.values.get(f, "") for f in tracked}
        before: list[dict[str, str]] = []
        for update in reversed(updates):
            for row in update:
                values[row.field] = row.old
            before.append(dict(values))
        before.reverse()
        ticket = current.sys_id
        if ticket in new and current.created_at is not None:
            _baseline(out, ticket, current.created_at, values, mapper=mapper, names=names)
        for update, start in zip(updates, before, strict=True):
            after = dict(start)
            for row in update:
                after[row.field] = row.new
            first = update[0]
            at, actor = first.at, first.user
            old_status, old_state = _status(start, mapper)
            new_status, new_state = _status(after, mapper)
            status_rows = [r for r in update if r.field in (state_field, "hold_reason")]
            if status_rows and old_status != new_status:
                key = f"sn-audit:{status_rows[0].sys_id}:status"
                out.add(ticket, at, EventField.STATUS, old_status, new_status, actor, key)
            if status_rows and old_state != new_state:
                key = f"sn-audit:{status_rows[0].sys_id}:state"
                out.add(ticket, at, EventField.STATE, old_state, new_state, actor, key)
            for row in update:
                if row.old == row.new:
                    continue
                if row.field in REFERENCE_FIELDS:
                    field = REFERENCE_FIELDS[row.field]
                elif row.field == "priority":
                    field = EventField.PRIORITY
                else:
                    continue
                out.add(
                    ticket,
                    at,
                    field,
                    _value(row.field, row.old, mapper=mapper, names=names),
                    _value(row.field, row.new, mapper=mapper, names=names),
                    row.user,
                    f"sn-audit:{row.sys_id}",
                )
    return out.frame()


def _status(values: Mapping[str, str], mapper: StateMapper) -> tuple[str | None, str | None]:
    """(raw status, lifecycle state) of a set of values; (None, None) without a state."""
    if not values[mapper.state_field]:
        return None, None
    status, state, _known = mapper.map(values[mapper.state_field], values["hold_reason"])
    return status, state.value


def _baseline(
    out: _Events,
    ticket: str,
    at: datetime,
    values: Mapping[str, str],
    *,
    mapper: StateMapper,
    names: Names,
) -> None:
    """Events for the values a new record had before its first audited update."""
    status, state = _status(values, mapper)
    if state is not None:
        out.add(ticket, at, EventField.STATUS, None, status, None, None)
        out.add(ticket, at, EventField.STATE, None, state, None, None)
    for field, event in (
        ("assignment_group", EventField.TEAM),
        ("assigned_to", EventField.ASSIGNEE),
        ("priority", EventField.PRIORITY),
    ):
        shown = _value(field, values[field], mapper=mapper, names=names)
        if shown is not None:
            out.add(ticket, at, event, None, shown, None, None)


def journal_events(
    rows: Iterable[Mapping[str, Any]], *, source: str, records: set[str]
) -> pd.DataFrame:
    """``sys_journal_field`` entries of these records as events: ``comments`` (the caller
    sees them) -> ``customer_update`` "comment", ``work_notes`` -> ``internal_update``
    "work note"; keyed on the entry's sys_id. The text is not stored.

    Raises:
        ValueError: an entry without sys_id or with an unreadable time.
    """
    out: list[tuple[Any, ...]] = []
    for row in rows:
        record = str(row.get("element_id") or "")
        if record not in records:
            continue
        element = row.get("element")
        if element == "comments":
            field, what = EventField.CUSTOMER_UPDATE, "comment"
        elif element == "work_notes":
            field, what = EventField.INTERNAL_UPDATE, "work note"
        else:
            continue
        sys_id = row.get("sys_id")
        if not sys_id:
            raise ValueError(f"sys_journal_field entry without sys_id on record {record}")
        at = parse_sn_datetime(row.get("sys_created_on"))
        if at is None:
            raise ValueError(f"sys_journal_field entry {sys_id} has no sys_created_on")
        actor = str(row.get("sys_created_by") or "") or None
        key = f"sn-journal:{sys_id}"
        out.append((source, record, key, at, 10, field.value, None, what, actor, "history"))
    if not out:
        return empty_events_frame()
    frame = pd.DataFrame(out, columns=list(EVENT_COLUMNS))
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    frame["seq"] = frame["seq"].astype("int64")
    return frame
