"""ServiceNow task records -> canonical tickets.

A record as listed with ``sysparm_display_value=all`` and ``sysparm_exclude_reference_link=true``::

    {"sys_id": {"value": "1c74...", "display_value": "1c74..."},
     "number": {"value": "INC0010001", "display_value": "INC0010001"},
     "state": {"value": "3", "display_value": "On Hold"}, "hold_reason": {"value": "1", ...},
     "assignment_group": {"value": "8a4d...", "display_value": "Network"},
     "assigned_to": {"value": "", "display_value": ""},
     "sys_updated_on": {"value": "2024-03-01 09:40:11", "display_value": "01-03-2024 10:40:11"},
     ...}

With ``sysparm_display_value=false`` every field is the raw string (a reference ``{"value":
...}`` or ``""``). Raw values are what is mapped (dates are UTC only there); names of groups
and users come from the display values, else from ``sys_user_group``/``sys_user`` lookups.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from connectors.base import (
    TICKET_COLUMNS,
    TICKET_INT_COLUMNS,
    TICKET_TIME_COLUMNS,
    TicketType,
    tickets_frame,
)
from connectors.servicenow.choices import StateMapper
from connectors.servicenow.query import parse_sn_datetime

__all__ = [
    "RECORD_FIELDS",
    "TABLE_TYPES",
    "Current",
    "display",
    "raw",
    "record_url",
    "records_frame",
]

RECORD_FIELDS: tuple[str, ...] = (
    "sys_id",
    "number",
    "short_description",
    "state",
    "incident_state",
    "hold_reason",
    "priority",
    "category",
    "assignment_group",
    "assigned_to",
    "caller_id",
    "requested_for",
    "opened_by",
    "opened_at",
    "sys_created_on",
    "sys_updated_on",
    "sys_updated_by",
    "resolved_at",
    "closed_at",
    "due_date",
    "reassignment_count",
    "reopen_count",
    "sys_mod_count",
    "sys_class_name",
    "active",
)
"""what ``sysparm_fields`` asks for (plus ``extra_fields``); unknown names are ignored by the
instance, so one list serves every task table"""

TABLE_TYPES: dict[str, TicketType] = {
    "incident": TicketType.INCIDENT,
    "sc_req_item": TicketType.REQUEST,
    "sc_request": TicketType.REQUEST,
    "sc_task": TicketType.REQUEST,
    "problem": TicketType.PROBLEM,
    "change_request": TicketType.CHANGE,
}


def raw(value: Any) -> str:
    """The raw value of a field in any display mode (``""`` when empty)."""
    if isinstance(value, dict):
        inner = value.get("value")
        return "" if inner is None else str(inner)
    return "" if value is None else str(value)


def display(value: Any) -> str | None:
    """The display value of a field, None when there is none (display_value=false)."""
    if isinstance(value, dict) and "display_value" in value:
        shown = value.get("display_value")
        return None if shown in (None, "") else str(shown)
    return None


def record_url(base_url: str, table: str, sys_id: str) -> str:
    """The record's form in the instance's UI."""
    return f"{base_url}/nav_to.do?uri={table}.do?sys_id={sys_id}"


def _int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Current:
    """A record's raw history-relevant values as fetched (what ``sys_audit`` rows change)."""

    sys_id: str
    created_at: datetime | None
    updated_at: datetime
    values: Mapping[str, str]
    """audited field -> raw value (sys_ids for references)"""


def records_frame(
    records: Sequence[Mapping[str, Any]],
    *,
    source: str,
    table: str,
    base_url: str,
    mapper: StateMapper,
    names: Mapping[str, str],
    audited: Sequence[str],
) -> tuple[pd.DataFrame, list[Current], list[str | None], Counter[str]]:
    """Map records to the canonical ticket frame.

    Args:
        records: rows of one list response (each has a ``sys_id`` and a readable
            ``sys_updated_on``).
        names: sys_id -> display name of the groups and users the records reference.
        audited: the fields whose raw values go into each ``Current``.

    Returns:
        The frame; each record's ``Current``; who updated each last (``sys_updated_by``); the
        unknown raw statuses with their counts.

    Raises:
        ValueError: a date field is not ``YYYY-MM-DD HH:MM:SS``.
    """
    if not records:
        return tickets_frame([]), [], [], Counter()
    kind = TABLE_TYPES.get(table, TicketType.OTHER).value
    state_field = mapper.state_field
    columns: dict[str, list[Any]] = {c: [] for c in TICKET_COLUMNS}
    currents: list[Current] = []
    actors: list[str | None] = []
    unknown: Counter[str] = Counter()
    priorities: dict[str, tuple[str | None, int | None]] = {}
    for record in records:
        sys_id = raw(record.get("sys_id"))
        updated = parse_sn_datetime(raw(record.get("sys_updated_on")))
        assert updated is not None
        opened = parse_sn_datetime(raw(record.get("opened_at")))
        created = opened or parse_sn_datetime(raw(record.get("sys_created_on")))
        status, state, known = mapper.map(
            raw(record.get(state_field)), raw(record.get("hold_reason"))
        )
        if not known and status is not None:
            unknown[status] += 1
        priority_value = raw(record.get("priority"))
        if priority_value not in priorities:
            number = _int(priority_value)
            priorities[priority_value] = (
                mapper.choices.label("priority", priority_value),
                number if number is not None and 1 <= number <= 5 else None,
            )
        priority_raw, priority = priorities[priority_value]
        group, user = raw(record.get("assignment_group")), raw(record.get("assigned_to"))
        requester = next(
            (
                display(record.get(k)) or names.get(raw(record.get(k))) or raw(record.get(k))
                for k in ("caller_id", "requested_for", "opened_by")
                if raw(record.get(k))
            ),
            None,
        )
        resolved = parse_sn_datetime(raw(record.get("resolved_at")))
        closed = parse_sn_datetime(raw(record.get("closed_at")))
        row = {
            "source": source,
            "external_id": sys_id,
            "number": raw(record.get("number")) or None,
            "title": raw(record.get("short_description")) or None,
            "type": kind,
            "raw_status": status,
            "state": state.value,
            "priority_raw": priority_raw,
            "priority": priority,
            "category": display(record.get("category")) or raw(record.get("category")) or None,
            "team": (names.get(group) or group) if group else None,
            "assignee": (names.get(user) or user) if user else None,
            "requester": requester,
            "created_at": created,
            "updated_at": updated,
            "resolved_at": resolved,
            "closed_at": closed,
            "due_at": parse_sn_datetime(raw(record.get("due_date"))),
            "reassignment_count": _int(raw(record.get("reassignment_count"))),
            "reopen_count": _int(raw(record.get("reopen_count"))),
            "url": record_url(base_url, table, sys_id),
            "raw": dict(record),
        }
        for column in TICKET_COLUMNS:
            columns[column].append(row[column])
        currents.append(
            Current(
                sys_id=sys_id,
                created_at=created,
                updated_at=updated,
                values={f: raw(record.get(f)) for f in audited},
            )
        )
        actors.append(raw(record.get("sys_updated_by")) or None)
    frame = pd.DataFrame(columns, columns=list(TICKET_COLUMNS))
    for column in TICKET_TIME_COLUMNS:
        frame[column] = pd.to_datetime(frame[column], utc=True)
    for column in TICKET_INT_COLUMNS:
        frame[column] = frame[column].astype("Int64")
    for column in ("state", "type"):
        frame[column] = frame[column].astype(object)
    return frame, currents, actors, unknown
