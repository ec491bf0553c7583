"""Helpdesk log of an Italian software company (anonymised), one row per activity::

    Case ID,Activity,Resource,Complete Timestamp,seriousness,customer,product,
    responsible_section,seriousness_2,service_level,service_type,support_section,workgroup
    Case 1,Assign seriousness,Value 1,2012-10-09T14:50:17+00:00,Value 1,Value 1,...

Attribute values are anonymised (``Value 1``, ``Value 2``...): the priority scale cannot be
normalised, so ``priority`` stays None.
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
from connectors.eventlog.values import map_distinct, system_user_mask, text
from connectors.statusmap import StatusMap

__all__ = ["DEFAULT_TIMEZONE", "TAKE_IN_CHARGE", "read"]

log = logging.getLogger(__name__)

TICKET, ACTIVITY, RESOURCE, TIME = "Case ID", "Activity", "Resource", "Complete Timestamp"
REQUIRED = (TICKET, ACTIVITY, RESOURCE, TIME)
TEAM, PRIORITY, PRODUCT = "workgroup", "seriousness_2", "product"

TAKE_IN_CHARGE = "take in charge ticket"
"""the activity whose ``Resource`` becomes the assignee"""
DEFAULT_TIMEZONE = "Europe/Rome"
"""only for rows without an offset; the published file always carries one"""


def _optional(frame: pd.DataFrame, column: str) -> pd.Series:
    if column in frame.columns:
        return text(frame[column])
    return pd.Series(None, index=frame.index, dtype=object)


def read(path: Path, *, config: EventLogSourceConfig, status_map: StatusMap) -> LogImport:
    """Read the helpdesk log.

    Args:
        path: the (gzip-compressed) CSV.
        config: ``ticket_type`` (default incident), ``system_users`` (default none),
            ``timezone`` for offset-less rows (default Europe/Rome), ``url_template``.
        status_map: status-setting activity -> lifecycle state.

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

    activity = text(frame[ACTIVITY])
    sets_status = map_distinct(activity, lambda a: isinstance(a, str) and status_map.knows(a))
    sets_status = sets_status.astype(bool)
    unknown = ~sets_status & activity.notna() & pd.Series(keep, index=frame.index)
    unknown_activities = {str(k): int(v) for k, v in activity[unknown].value_counts().items()}
    resource = text(frame[RESOURCE])
    takes = map_distinct(
        activity, lambda a: isinstance(a, str) and " ".join(a.split()).casefold() == TAKE_IN_CHARGE
    ).astype(bool)
    system = system_user_mask(resource, config.system_users or ())
    assignee = resource.where(takes, None).where(~(takes & system), CLEARED)
    changes = pd.DataFrame(
        {
            "ticket": tickets,
            "instant": rows.instants,
            "order": lines,
            "row": np.arange(len(frame)),
            "status": activity.where(sets_status, None),
            "team": _optional(frame, TEAM),
            "assignee": assignee,
            "actor": resource,
            "priority_raw": _optional(frame, PRIORITY),
            "category": _optional(frame, PRODUCT),
            "update_kind": pd.Series("internal_update", index=frame.index).where(unknown, None),
            "update_label": activity.where(unknown, None),
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
    return LogImport(
        tickets=derived.tickets,
        events=derived.events,
        rows_read=rows_read,
        skipped=skipped,
        unknown_statuses=derived.unknown_statuses,
        unknown_activities=unknown_activities,
        notes={**notes, **derived.notes},
    )
