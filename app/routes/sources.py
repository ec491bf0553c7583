"""``/api/v1/sources``: every source, configured or found in the warehouse, with its sync state."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy import case, func, select

from app.deps import ConnectionDep, FormatDep, ReadAccess, SettingsDep
from app.routes._common import csv_response
from app.schemas import SourceRead, UnknownStatusRead
from app.warehouse import read_sync_states, read_unknown_statuses
from app.warehouse.schema import Event, Ticket
from connectors.base import DONE_STATES

router = APIRouter(prefix="/api/v1/sources", tags=["sources"])

_CSV_COLUMNS = (
    "name",
    "kind",
    "configured",
    "tickets",
    "open_tickets",
    "events",
    "last_run_at",
    "last_success_at",
    "last_status",
    "last_error",
    "unknown_statuses",
)


@router.get("", response_model=list[SourceRead], summary="Sources and their sync state")
def list_sources(
    _caller: ReadAccess, conn: ConnectionDep, settings: SettingsDep, format: FormatDep
) -> list[SourceRead] | Response:
    """Each source: kind, ticket and event counts, last run and its outcome, unknown statuses."""
    done = [s.value for s in DONE_STATES]
    live = Ticket.deleted_at.is_(None)
    counts = {
        r.source: (r.tickets, r.open, r.deleted)
        for r in conn.execute(
            select(
                Ticket.source,
                func.sum(case((live, 1), else_=0)).label("tickets"),
                func.sum(case((live & Ticket.state.not_in(done), 1), else_=0)).label("open"),
                func.sum(case((live, 0), else_=1)).label("deleted"),
            ).group_by(Ticket.source)
        )
    }
    events: dict[str, int] = {
        r[0]: r[1] for r in conn.execute(select(Event.source, func.count()).group_by(Event.source))
    }
    states = {s["source"]: s for s in read_sync_states(conn)}
    unknown: dict[str, list[UnknownStatusRead]] = {}
    for u in read_unknown_statuses(conn):
        unknown.setdefault(u["source"], []).append(UnknownStatusRead.model_validate(u))
    configured = {s.name: s.kind for s in settings.sources}
    out = []
    for name in sorted(set(configured) | set(states) | set(counts)):
        state: dict[str, Any] = states.get(name, {})
        tickets, open_tickets, deleted = counts.get(name, (0, 0, 0))
        out.append(
            SourceRead(
                name=name,
                kind=configured.get(name) or state.get("kind"),
                configured=name in configured,
                tickets=int(tickets or 0),
                open_tickets=int(open_tickets or 0),
                deleted_tickets=int(deleted or 0),
                events=events.get(name, 0),
                last_run_at=state.get("last_run_at"),
                last_success_at=state.get("last_success_at"),
                last_status=state.get("last_status"),
                last_error=state.get("last_error"),
                unknown_statuses=unknown.get(name, []),
            )
        )
    if format == "csv":
        rows = [
            [
                *(getattr(s, c) for c in _CSV_COLUMNS[:-1]),
                "; ".join(f"{u.raw_status}->{u.mapped_to}" for u in s.unknown_statuses),
            ]
            for s in out
        ]
        return csv_response(_CSV_COLUMNS, rows, filename="sources", total=len(out))
    return out
