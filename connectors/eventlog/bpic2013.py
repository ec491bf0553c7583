"""BPI Challenge 2013 (Volvo IT Belgium, VINST): incidents, closed problems, open problems.

One row per change of a ticket, e.g.::

    SR Number,Change Date+Time,Status,Sub Status,Involved ST Function Div,Involved Org line 3,
    Involved ST,SR Latest Impact,Product,Country,Owner Country,Owner First Name
    1-364285768,2010-03-31T16:59:42+02:00,Accepted,In Progress,A2_4,Org line A2,V30,Medium,
    PROD582,fr,France,Frederic

The open-problems file has no ``Involved ST`` column (team unknown).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from connectors.base import TicketType
from connectors.config import EventLogSourceConfig
from connectors.eventlog import LogImport
from connectors.eventlog.common import CLEARED, derive
from connectors.eventlog.files import (
    log_rows,
    read_csv,
    require_columns,
)
from connectors.eventlog.values import priority_from_map, system_user_mask, text
from connectors.statusmap import StatusMap

__all__ = ["DEFAULT_SYSTEM_USERS", "DEFAULT_TIMEZONE", "IMPACT_LEVELS", "read"]

log = logging.getLogger(__name__)

TICKET, TIME = "SR Number", "Change Date+Time"
STATUS, SUB_STATUS = "Status", "Sub Status"
TEAM, IMPACT, PRODUCT, OWNER = "Involved ST", "SR Latest Impact", "Product", "Owner First Name"
REQUIRED = (TICKET, TIME, STATUS, SUB_STATUS, IMPACT, PRODUCT, OWNER)

DEFAULT_SYSTEM_USERS = ("Siebel",)
DEFAULT_TIMEZONE = "Europe/Brussels"
"""only for rows without an offset; the published files always carry one"""
IMPACT_LEVELS = {"Major": 1, "High": 2, "Medium": 3, "Low": 4}


def read(path: Path, *, config: EventLogSourceConfig, status_map: StatusMap) -> LogImport:
    """Read a BPIC 2013 incidents or problems log.

    Args:
        path: the (gzip-compressed) CSV.
        config: ``ticket_type`` (default incident; ``problem`` for the problem logs),
            ``system_users`` (default Siebel), ``timezone`` for offset-less rows,
            ``url_template``.
        status_map: "Status/Sub Status" -> lifecycle state.

    Raises:
        BadPayloadError: unreadable file or a required column missing.
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

    status, sub = text(frame[STATUS]), text(frame[SUB_STATUS])
    raw_status = status.str.cat(sub, sep="/").where(sub.notna(), status)
    owner = text(frame[OWNER])
    system = system_user_mask(owner, config.system_users or DEFAULT_SYSTEM_USERS)
    if TEAM in frame.columns:
        team = text(frame[TEAM])
    else:
        team = pd.Series(None, index=frame.index, dtype=object)
        notes[f"rows without a team (no `{TEAM}` column)"] = int(keep.sum())
    changes = pd.DataFrame(
        {
            "ticket": tickets,
            "instant": rows.instants,
            "order": lines,
            "row": np.arange(len(frame)),
            "status": raw_status,
            "team": team,
            "assignee": owner.where(~system, CLEARED),
            "actor": owner,
            "priority_raw": text(frame[IMPACT]),
            "category": text(frame[PRODUCT]),
        }
    )[keep]
    derived = derive(
        changes,
        raw=frame,
        source=source,
        status_map=status_map,
        ticket_type=config.ticket_type or TicketType.INCIDENT,
        url_template=config.url_template,
        priority_levels=priority_from_map(IMPACT_LEVELS),
    )
    log.info(
        "%s: %d rows, %d tickets, %d events",
        path.name,
        rows_read,
        len(derived.tickets),
        len(derived.events),
    )
    return LogImport(
        tickets=derived.tickets,
        events=derived.events,
        rows_read=rows_read,
        skipped=skipped,
        unknown_statuses=derived.unknown_statuses,
        notes={**notes, **derived.notes},
    )
