"""Warehouse totals per source: what is stored, as opposed to what the last run changed."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from app.warehouse.schema import Event, Ticket

__all__ = ["SourceTotals", "warehouse_totals"]


@dataclass(frozen=True)
class SourceTotals:
    """How many tickets and events the warehouse holds for one source."""

    source: str
    tickets: int
    events: int
    deleted: int = 0
    """of ``tickets``, those marked deleted (no longer found in their tool)"""


def warehouse_totals(conn: Connection, *, source: str | None = None) -> dict[str, SourceTotals]:
    """Stored tickets and events per source, for ``ticketflow sources`` next to a run's counts.

    Two grouped counts, each answered from an index that starts with ``source`` (the tickets'
    primary key, the events' ``(source, event_key)`` key) without reading the rows.

    Args:
        conn: any connection.
        source: only this source (its entry is present, with zeros, even when it holds nothing).

    Returns:
        Source name -> totals, sorted by name; sources with neither tickets nor events are absent
        unless asked for by ``source``.
    """
    tickets = select(Ticket.source, func.count()).group_by(Ticket.source)
    events = select(Event.source, func.count()).group_by(Event.source)
    if source is not None:
        tickets = tickets.where(Ticket.source == source)
        events = events.where(Event.source == source)
    ticket_counts = {str(s): int(n) for s, n in conn.execute(tickets)}
    # from the partial index of deleted tickets (empty while none are deleted)
    gone = (
        select(Ticket.source, func.count())
        .where(Ticket.deleted_at.is_not(None))
        .group_by(Ticket.source)
    )
    if source is not None:
        gone = gone.where(Ticket.source == source)
    deleted_counts = {str(s): int(n) for s, n in conn.execute(gone)}
    event_counts = {str(s): int(n) for s, n in conn.execute(events)}
    names = set(ticket_counts) | set(event_counts)
    if source is not None:
        names.add(source)
    return {
        name: SourceTotals(
            name,
            ticket_counts.get(name, 0),
            event_counts.get(name, 0),
            deleted_counts.get(name, 0),
        )
        for name in sorted(names)
    }
