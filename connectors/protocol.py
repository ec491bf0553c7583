"""What the sync engine (``app/sync.py``) needs from a network connector: two methods.

``pages(since=...)`` yields the tickets modified at or after ``since`` in cursor order, one
``TicketPage`` per response, each already mapped to the canonical ticket frame. For each page,
the engine reads the stored copies of its tickets, keeps the ``fresh`` ones (not older than the
stored copy) and asks ``history(page, stored=..., fresh=...)`` for the events that go with them:
from the tool's own audit trail where it has one (ServiceNow ``sys_audit``), else by comparing
snapshots (``connectors.snapshot``). Tickets, events and the cursor then commit together.

The connector never sees the warehouse and keeps no state between runs: the engine owns the
cursor, the transaction, the lock and the crash-test hook.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import pandas as pd

__all__ = ["ConnectorStats", "StatsView", "SyncConnector", "TicketPage"]


class StatsView(Protocol):
    """The counters the engine reads from a connector (``ConnectorStats`` has them)."""

    requests: int
    retries: int
    restarts: int
    seconds: defaultdict[str, float]


@dataclass
class ConnectorStats:
    """What a connector did, for the run summary and the benchmark."""

    requests: int = 0
    retries: int = 0
    restarts: int = 0
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    """phase -> seconds (``http`` waiting on the server, ``decode``, ``map``, ...)"""


@dataclass(frozen=True)
class TicketPage:
    """One page of tickets, mapped, reduced to what this run has not seen yet."""

    number: int
    """1-based, per run"""
    tickets: pd.DataFrame
    """canonical ticket frame (``connectors.base.TICKET_COLUMNS``), in server order"""
    actors: list[str | None]
    """who made each ticket's last change (aligned with ``tickets``)"""
    position: datetime | None
    """how far the scan has come once this page is stored: every ticket modified before it
    has been yielded (the engine caps it at ``server_time`` and stores it as the cursor)"""
    received: int
    """tickets in the response(s), before dropping duplicates"""
    last: bool
    unknown_statuses: Counter[str] = field(default_factory=Counter)
    """raw statuses the status map does not know, with their counts"""
    server_time: datetime | None = None
    """the server's clock (``Date`` header)"""
    total: int | None = None
    """tickets the server says the run will see (progress), when it says"""
    context: Any = None
    """connector-private data that ``history`` needs (raw records), opaque to the engine"""
    deleted: list[str] = field(default_factory=list)
    """external ids the tool itself reports deleted since the run's start (ServiceNow's
    ``sys_audit_delete``), on the last page of an incremental run"""
    excluded: list[str] = field(default_factory=list)
    """external ids the server listed that the connector chose not to store (TOPdesk partials
    and archived incidents when not configured): a complete full scan counts them as found"""


class SyncConnector(Protocol):
    """A connector the sync engine can drive."""

    @property
    def source(self) -> str: ...

    @property
    def stats(self) -> StatsView: ...

    @property
    def unknown_mapped_to(self) -> str:
        """What ``ticketflow sources`` shows as the state of an unknown raw status."""
        ...

    def pages(self, *, since: datetime | None) -> Iterator[TicketPage]:
        """Every ticket modified at or after ``since`` (all when None), oldest first."""
        ...

    def history(
        self, page: TicketPage, *, stored: pd.DataFrame, fresh: pd.DataFrame
    ) -> pd.DataFrame:
        """The canonical event frame for ``fresh`` (the page's tickets not older than their
        stored copy); ``stored`` holds the warehouse's rows (``connectors.snapshot.
        SNAPSHOT_COLUMNS``) of those already stored."""
        ...

    def details(self) -> dict[str, Any]:
        """What to keep in ``sync_state.details`` (server version, paging, ``warnings``)."""
        ...
