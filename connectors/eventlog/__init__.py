"""Importer for exported service-desk event logs: the connector that needs no network.

``read_event_log`` turns one exported log into the canonical ticket and event frames. Formats:

- ``bpic2013``: BPI Challenge 2013 (Volvo IT VINST) incidents and problems
- ``bpic2014``: BPI Challenge 2014 (Rabobank) activity file plus its case table
- ``helpdesk``: the Italian software company's helpdesk log
- ``csv``: a generic CSV, one row per change, columns named by a mapping

How each format's quirks are handled is documented in docs/eventlog.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from connectors.config import EventLogSourceConfig
from connectors.statusmap import StatusMap

__all__ = ["FORMATS", "LogImport", "SkippedRow", "read_event_log"]


@dataclass(frozen=True)
class SkippedRow:
    """A row of the file that was not imported, and why."""

    line: int
    """1-based line number in the file (the header is line 1)"""
    reason: str


@dataclass(frozen=True)
class LogImport:
    """What one log file yields."""

    tickets: pd.DataFrame
    """canonical ticket frame (``connectors.base.TICKET_COLUMNS``)"""
    events: pd.DataFrame
    """canonical event frame (``connectors.base.EVENT_COLUMNS``)"""
    rows_read: int
    skipped: list[SkippedRow] = field(default_factory=list)
    unknown_statuses: dict[str, int] = field(default_factory=dict)
    """raw status -> rows mapped to the fallback state"""
    unknown_activities: dict[str, int] = field(default_factory=dict)
    """activity logs: activity types that neither set a status nor are known updates"""
    notes: dict[str, int] = field(default_factory=dict)
    """quirks met and how often, e.g. ``duplicate rows dropped``"""


Reader = Callable[..., LogImport]


def _readers() -> dict[str, Reader]:
    from connectors.eventlog import bpic2013, bpic2014, generic_csv, helpdesk

    return {
        "bpic2013": bpic2013.read,
        "bpic2014": bpic2014.read,
        "helpdesk": helpdesk.read,
        "csv": generic_csv.read,
    }


FORMATS = ("bpic2013", "bpic2014", "helpdesk", "csv")


def read_event_log(path: Path, *, config: EventLogSourceConfig, status_map: StatusMap) -> LogImport:
    """Read one exported event log into canonical frames.

    Args:
        path: the file (plain or gzip-compressed CSV).
        config: the source's settings; ``config.format`` picks the reader and
            ``config.name`` is the ``source`` of every row.
        status_map: raw status (or status-setting activity) -> lifecycle state.

    Raises:
        BadPayloadError: the file cannot be read as this format (truncated or corrupt gzip,
            a required column missing, no rows). Bad single rows are skipped and listed in
            ``LogImport.skipped`` instead.
    """
    return _readers()[config.format](path, config=config, status_map=status_map)
