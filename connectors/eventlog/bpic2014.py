"""BPI Challenge 2014 (Rabobank Group ICT): the incident activity file plus its case table.

Activity file, one row per activity, not time-sorted, a ticket's rows not contiguous::

    Incident ID,DateStamp,IncidentActivity_Number,IncidentActivity_Type,Assignment Group,
    KM number,Interaction ID
    IM0000013,2013-02-13 12:03:35,001A3970723,Update from customer,TEAM0002,KM0000611,SD0000031

Case file (28 columns), one row per incident; used: ``Incident ID``, ``Priority`` (1-5),
``Category``, ``# Reassignments``, ``Open Time``. There is no status column: the status follows
from the activity types.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from connectors.base import EventField, TicketType
from connectors.config import EventLogSourceConfig
from connectors.eventlog import LogImport
from connectors.eventlog.common import conform_tickets, derive
from connectors.eventlog.files import (
    json_rows,
    log_rows,
    read_csv,
    require_columns,
)
from connectors.eventlog.times import parse_times
from connectors.eventlog.values import map_distinct, priority_from_number, text
from connectors.statusmap import StatusMap

__all__ = [
    "CUSTOMER_UPDATES",
    "DEFAULT_TIMEZONE",
    "INTERNAL_UPDATES",
    "TEAM_ACTIVITIES",
    "cases_path_for",
    "read",
]

log = logging.getLogger(__name__)

TICKET, TIME, NUMBER = "Incident ID", "DateStamp", "IncidentActivity_Number"
TYPE, GROUP = "IncidentActivity_Type", "Assignment Group"
REQUIRED = (TICKET, TIME, NUMBER, TYPE, GROUP)
CASE_ID, PRIORITY, CATEGORY = "Incident ID", "Priority", "Category"
REASSIGNMENTS, OPEN_TIME, CASE_STATUS = "# Reassignments", "Open Time", "Status"
CASE_REQUIRED = (CASE_ID, PRIORITY, CATEGORY, REASSIGNMENTS)

DEFAULT_TIMEZONE = "Europe/Amsterdam"
EARLY = pd.Timedelta(minutes=1)
"""the Open activity is logged a few seconds after the case's Open Time; earlier than this
is the known clock mismatch between the two tables (counted in the notes)"""

TEAM_ACTIVITIES = frozenset({"open", "assignment", "reassignment"})
"""activities whose ``Assignment Group`` is the ticket's team; on every other activity it is the
group of the operator who logged it (see docs/eventlog.md for the measurements)"""

CUSTOMER_UPDATES = frozenset(
    {"update from customer", "mail to customer", "communication with customer", "callback request"}
)
"""activities the customer sees or starts: ``customer_update`` events"""

INTERNAL_UPDATES = frozenset(
    {
        "update",
        "status change",
        "caused by ci",
        "quality indicator",
        "quality indicator set",
        "quality indicator fixed",
        "description update",
        "communication with vendor",
        "external update",
        "vendor reference",
        "vendor reference change",
        "urgency change",
        "impact change",
        "analysis/research",
        "notify by change",
        "affected ci change",
        "service change",
        "contact change",
        "problem workaround",
        "problem closure",
        "oo response",
        "referred",
    }
)
"""known activities that change no status: ``internal_update`` events"""


def cases_path_for(path: Path, config: EventLogSourceConfig) -> Path | None:
    """The case table: ``config.cases_path``, else the sibling named with ``cases`` for
    ``activity`` (None when the name has no ``activity``)."""
    if config.cases_path is not None:
        return config.cases_path
    if "activity" not in path.name:
        return None
    return path.with_name(path.name.replace("activity", "cases"))


def _read_cases(path: Path | None, *, config: EventLogSourceConfig) -> pd.DataFrame | None:
    source = config.name
    if path is None or (config.cases_path is None and not path.exists()):
        log.warning("no case table beside the activity file (looked for %s)", path)
        return None
    cases = read_csv(path, source=source, delimiter=config.delimiter).frame
    require_columns(cases, CASE_REQUIRED, path=path, source=source, what=" in the case table")
    cases[CASE_ID] = text(cases[CASE_ID])
    cases = cases[cases[CASE_ID].notna()]
    return cases.drop_duplicates(CASE_ID, keep="last").set_index(CASE_ID, drop=False)


def _activity_order(numbers: pd.Series, lines: np.ndarray) -> np.ndarray:
    """Rank of ``IncidentActivity_Number`` (shorter first, then by text); line where empty."""
    cells = text(numbers)
    keys = cells.where(cells.notna(), "").to_numpy(dtype=str)
    lengths = np.char.str_len(keys)
    rank = np.empty(len(keys), dtype=np.int64)
    rank[np.lexsort((lines, keys, lengths))] = np.arange(len(keys))
    return rank


def read(path: Path, *, config: EventLogSourceConfig, status_map: StatusMap) -> LogImport:
    """Read a BPIC 2014 activity file and its case table.

    Args:
        path: the (gzip-compressed) activity CSV.
        config: ``cases_path`` (default: the sibling file with ``cases`` for ``activity``),
            ``timezone`` of the naive ``DateStamp`` (default Europe/Amsterdam),
            ``ticket_type`` (default incident), ``url_template``.
        status_map: status-setting activity type -> lifecycle state.

    Raises:
        BadPayloadError: unreadable activity or case file, or a required column missing.
    """
    source = config.name
    log_file = read_csv(path, source=source, delimiter=config.delimiter)
    require_columns(log_file.frame, REQUIRED, path=path, source=source)
    rows = log_rows(
        log_file,
        path=path,
        source=source,
        ticket_column=TICKET,
        time_column=TIME,
        time_format=config.time_format,
        timezone=config.timezone or DEFAULT_TIMEZONE,
    )
    frame, lines, rows_read, notes = rows.frame, rows.lines, rows.rows_read, rows.notes
    tickets, keep, skipped = rows.tickets, rows.keep, rows.skipped

    activity = text(frame[TYPE])
    kind = map_distinct(activity, lambda a: _classify(a, status_map))
    sets_status = kind.eq("status")
    is_update = kind.isin([str(EventField.CUSTOMER_UPDATE), str(EventField.INTERNAL_UPDATE)])
    unknown = kind.eq("unknown") & pd.Series(keep, index=frame.index)
    unknown_activities = {str(k): int(v) for k, v in activity[unknown].value_counts().items()}
    group = text(frame[GROUP])
    team_rows = map_distinct(
        activity, lambda a: isinstance(a, str) and a.casefold() in TEAM_ACTIVITIES
    )
    changes = pd.DataFrame(
        {
            "ticket": tickets,
            "instant": rows.instants,
            "order": _activity_order(frame[NUMBER], lines),
            "row": np.arange(len(frame)),
            "status": activity.where(sets_status, None),
            "team": group.where(team_rows.astype(bool), None),
            "update_kind": kind.where(is_update, None).where(
                ~kind.eq("unknown"), "internal_update"
            ),
            "update_label": activity.where(~sets_status, None),
        }
    )[keep]
    derived = derive(
        changes,
        raw=frame,
        source=source,
        status_map=status_map,
        ticket_type=config.ticket_type or TicketType.INCIDENT,
        url_template=config.url_template,
    )
    tickets_frame = derived.tickets
    cases = _read_cases(cases_path_for(path, config), config=config)
    if cases is None:
        notes["tickets missing from the case file"] = len(tickets_frame)
        notes["case file not found"] = 1
    else:
        tickets_frame = _with_cases(tickets_frame, cases, config=config, path=path, notes=notes)
    return LogImport(
        tickets=tickets_frame,
        events=derived.events,
        rows_read=rows_read,
        skipped=skipped,
        unknown_statuses=derived.unknown_statuses,
        unknown_activities=unknown_activities,
        notes={**notes, **derived.notes},
    )


def _classify(activity: object, status_map: StatusMap) -> str | None:
    if not isinstance(activity, str):
        return None
    if status_map.knows(activity):
        return "status"
    folded = " ".join(activity.split()).casefold()
    if folded in CUSTOMER_UPDATES:
        return str(EventField.CUSTOMER_UPDATE)
    if folded in INTERNAL_UPDATES:
        return str(EventField.INTERNAL_UPDATE)
    return "unknown"


def _with_cases(
    tickets: pd.DataFrame,
    cases: pd.DataFrame,
    *,
    config: EventLogSourceConfig,
    path: Path,
    notes: dict[str, int],
) -> pd.DataFrame:
    """Priority, category, the tool's reassignment count and the case record from the case table."""
    ids = tickets["external_id"]
    found = ids.isin(cases.index)
    missing = int((~found).sum())
    if missing:
        notes["tickets missing from the case file"] = missing
    orphans = int((~cases.index.isin(ids)).sum())
    if orphans:
        notes["case rows without activities (not imported)"] = orphans
    case = cases.reindex(ids.to_numpy())
    out = tickets.copy()
    priority_raw = text(case[PRIORITY]).to_numpy()
    out["priority_raw"] = priority_raw
    out["priority"] = priority_from_number(pd.Series(priority_raw, dtype=object)).to_numpy()
    out["category"] = text(case[CATEGORY]).to_numpy()
    counts = pd.to_numeric(text(case[REASSIGNMENTS]), errors="coerce").astype("Int64")
    bad_counts = int((counts.isna() & found.to_numpy()).sum())
    if bad_counts:
        notes[f"case rows with an unreadable `{REASSIGNMENTS}` (team changes counted)"] = bad_counts
    derived_counts = out["reassignment_count"].to_numpy()
    out["reassignment_count"] = counts.set_axis(out.index).fillna(pd.Series(derived_counts))
    if OPEN_TIME in cases.columns:
        opened = _case_open_times(case[OPEN_TIME], config=config, path=path)
        early = int((out["created_at"] < opened - EARLY).sum())
        if early:
            notes[
                "first activity over a minute before the case Open Time (created_at from the log)"
            ] = early
    if CASE_STATUS in cases.columns:
        case_closed = text(case[CASE_STATUS]).str.casefold().eq("closed").to_numpy()
        still_open = int((case_closed & ~out["state"].isin(["closed", "cancelled"])).sum())
        if still_open:
            notes["closed in the case table, not in the log (state from the log)"] = still_open
    case_dicts = json_rows(case)
    out["raw"] = pd.Series(
        [
            {**raw, "case": c} if ok else raw
            for raw, c, ok in zip(out["raw"], case_dicts, found, strict=True)
        ],
        dtype=object,
    )
    return conform_tickets(out)


def _case_open_times(values: pd.Series, *, config: EventLogSourceConfig, path: Path) -> pd.Series:
    parsed = parse_times(
        values,
        time_format=config.time_format,
        timezone=config.timezone or DEFAULT_TIMEZONE,
        column=OPEN_TIME,
        path=path,
        source=config.name,
    )
    return parsed.instants.set_axis(range(len(values)))
