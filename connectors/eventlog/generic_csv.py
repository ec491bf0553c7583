"""A generic CSV change log: one row per change, columns named by ``config.columns``.

``config.columns`` maps canonical names to the file's columns; a canonical name that is not
mapped reads the column of the same name when the file has one. For example::

    Ticket,Changed,Status,Group,Operator
    T1,2024-03-01T08:00:00+01:00,Open,Desk,
    T1,2024-03-01T09:00:00+01:00,In progress,Desk,ann

with ``columns = {ticket = "Ticket", time = "Changed", status = "Status", team = "Group",
assignee = "Operator"}``. See docs/eventlog.md for every option.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from connectors.base import EventField, TicketType
from connectors.config import EventLogSourceConfig
from connectors.errors import BadPayloadError, ConnectorConfigError
from connectors.eventlog import LogImport
from connectors.eventlog.common import CLEARED, conform_tickets, derive
from connectors.eventlog.files import log_rows, read_csv
from connectors.eventlog.values import (
    fold,
    map_distinct,
    priority_from_number,
    system_user_mask,
    text,
)
from connectors.statusmap import StatusMap

__all__ = ["COLUMNS", "REQUIRED", "read", "resolve_columns"]

log = logging.getLogger(__name__)

REQUIRED = ("ticket", "time")
STATE_SOURCES = ("status", "activity")
OPTIONAL = ("team", "assignee", "priority", "actor", "title", "category", "requester", "type")
COLUMNS = (*REQUIRED, *STATE_SOURCES, *OPTIONAL)
"""the canonical names ``config.columns`` may map"""

_TYPES = {t.value: t for t in TicketType}
_STATUS, _UNKNOWN = "status", "unknown"
_CUSTOMER, _INTERNAL = str(EventField.CUSTOMER_UPDATE), str(EventField.INTERNAL_UPDATE)


def resolve_columns(
    config: EventLogSourceConfig, header: pd.Index, *, path: Path
) -> dict[str, str]:
    """Canonical name -> file column: the mapped names, the required ones, and the unmapped
    names the file has a column for.

    Raises:
        ConnectorConfigError: ``config.columns`` has a key that is not a canonical name.
        BadPayloadError: a mapped or required column is missing, or neither ``status`` nor
            ``activity`` is there; the message names them and the columns found.
    """
    source = config.name
    unknown = sorted(set(config.columns) - set(COLUMNS))
    if unknown:
        raise ConnectorConfigError(
            f"`columns` has unknown key(s) {', '.join(unknown)}; known: {', '.join(COLUMNS)}",
            source=source,
        )
    named: dict[str, str] = {}
    for name in COLUMNS:
        if name in config.columns:
            named[name] = config.columns[name]
        elif name in REQUIRED or name in header:
            named[name] = name
    problems = [
        f"`{column}`" + ("" if column == name else f" (the `{name}` column)")
        for name, column in named.items()
        if column not in header
    ]
    if problems:
        problems = [f"missing column(s) {', '.join(problems)}"]
    if not any(n in named for n in STATE_SOURCES):
        problems.append("needs a `status` or an `activity` column (map one in `columns`)")
    if problems:
        found = ", ".join(f"`{c}`" for c in header)
        raise BadPayloadError(
            f"{path.name}: {'; '.join(problems)}; columns found: {found}", source=source
        )
    return named


def _ticket_types(values: pd.Series, default: TicketType) -> tuple[pd.Series, int]:
    """Per-ticket type from the ``type`` column: a TicketType name, else ``other``."""
    folded = map_distinct(
        values, lambda v: " ".join(v.split()).casefold() if isinstance(v, str) else None
    )
    known = folded.map(lambda v: _TYPES.get(v) if v is not None else None)
    unrecognised = folded.notna() & known.isna()
    out = known.where(known.notna(), default.value).where(~unrecognised, TicketType.OTHER.value)
    return out.map(str).astype(object), int(unrecognised.sum())


def _activity_kinds(
    activity: pd.Series, config: EventLogSourceConfig, status_map: StatusMap | None
) -> pd.Series:
    """Per row: ``status`` (the status map knows the activity; only with ``status_map``),
    ``customer_update`` / ``internal_update`` (listed in the config), ``unknown``, or None
    (no activity)."""
    customer = {fold(a) for a in config.customer_update_activities}
    internal = {fold(a) for a in config.internal_update_activities}

    def classify(value: object) -> str | None:
        if not isinstance(value, str):
            return None
        if status_map is not None and status_map.knows(value):
            return _STATUS
        folded = fold(value)
        if folded in customer:
            return _CUSTOMER
        if folded in internal:
            return _INTERNAL
        return _UNKNOWN

    return map_distinct(activity, classify)


def read(path: Path, *, config: EventLogSourceConfig, status_map: StatusMap) -> LogImport:
    """Read a generic CSV change log.

    Args:
        path: the (plain or gzip-compressed) CSV, separated by ``config.delimiter``.
        config: ``columns`` (canonical name -> file column), ``time_format`` (strptime; ISO
            8601 when unset), ``timezone`` (required when times carry no offset),
            ``ticket_type`` (default incident), ``system_users``, ``url_template``,
            ``customer_update_activities`` / ``internal_update_activities`` (activities that
            are updates of that kind rather than unknown).
        status_map: raw status (or status-setting activity) -> lifecycle state.

    Raises:
        BadPayloadError: unreadable file or a required column missing.
        ConnectorConfigError: an unknown key in ``columns``; naive times without ``timezone``.
    """
    source = config.name
    log_file = read_csv(path, source=source, delimiter=config.delimiter)
    names = resolve_columns(config, log_file.frame.columns, path=path)
    rows = log_rows(
        log_file,
        path=path,
        source=source,
        ticket_column=names["ticket"],
        time_column=names["time"],
        time_format=config.time_format,
        timezone=config.timezone,
    )
    frame, lines, rows_read, notes = rows.frame, rows.lines, rows.rows_read, rows.notes
    tickets, keep, skipped = rows.tickets, rows.keep, rows.skipped

    def col(name: str) -> pd.Series:
        if name in names:
            return text(frame[names[name]])
        return pd.Series(None, index=frame.index, dtype=object)

    kept = pd.Series(keep, index=frame.index)
    activity = col("activity")
    unknown_activities: dict[str, int] = {}
    has_status = "status" in names
    kind = _activity_kinds(activity, config, None if has_status else status_map)
    update = activity.notna() & kind.ne(_STATUS)
    if has_status:
        status = col("status")
    else:
        status = activity.where(kind.eq(_STATUS), None)
        counts = activity[kind.eq(_UNKNOWN) & kept].value_counts()
        unknown_activities = {str(k): int(v) for k, v in counts.items()}
    assignee = col("assignee")
    system = system_user_mask(assignee, config.system_users or ())
    changes = pd.DataFrame(
        {
            "ticket": tickets,
            "instant": rows.instants,
            "order": lines,
            "row": np.arange(len(frame)),
            "status": status,
            "team": col("team"),
            "assignee": assignee.where(~system, CLEARED),
            "actor": col("actor"),
            "priority_raw": col("priority"),
            "category": col("category"),
            "title": col("title"),
            "requester": col("requester"),
            "update_kind": kind.where(kind.ne(_UNKNOWN), _INTERNAL).where(update, None),
            "update_label": activity.where(update, None),
        }
    )[keep]
    default_type = config.ticket_type or TicketType.INCIDENT
    derived = derive(
        changes,
        raw=frame,
        source=source,
        status_map=status_map,
        ticket_type=default_type,
        url_template=config.url_template,
        priority_levels=priority_from_number,
    )
    tickets_frame = derived.tickets
    if "type" in names:
        last_type = (
            changes.assign(type=col("type")[keep])
            .dropna(subset=["type"])
            .sort_values(["ticket", "instant", "order"], kind="stable")
            .drop_duplicates("ticket", keep="last")
            .set_index("ticket")["type"]
        )
        values = last_type.reindex(tickets_frame["external_id"].to_numpy())
        types, unrecognised = _ticket_types(values.reset_index(drop=True), default_type)
        tickets_frame = conform_tickets(tickets_frame.assign(type=types.to_numpy()))
        if unrecognised:
            notes["tickets with an unrecognised type (type other)"] = unrecognised
    return LogImport(
        tickets=tickets_frame,
        events=derived.events,
        rows_read=rows_read,
        skipped=skipped,
        unknown_statuses=derived.unknown_statuses,
        unknown_activities=unknown_activities,
        notes={**notes, **derived.notes},
    )
