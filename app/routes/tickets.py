"""``/api/v1/tickets``: tickets filtered, sorted and paged; one ticket with its history."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from sqlalchemy import ColumnElement, Select, and_, func, select

from app.deps import (
    ConnectionDep,
    Filters,
    FiltersDep,
    FormatDep,
    PagingDep,
    ReadAccess,
    bad_param,
)
from app.errors import NotFoundError
from app.routes._common import csv_response
from app.schemas import TICKET_FIELDS, EventRead, TicketDetail, TicketPage, TicketRead
from app.warehouse.schema import Event, Ticket
from connectors.base import DONE_STATES

router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"])

SORTABLE = (
    "updated_at",
    "created_at",
    "resolved_at",
    "closed_at",
    "due_at",
    "priority",
    "state",
    "team",
    "assignee",
    "number",
    "source",
    "external_id",
    "reassignment_count",
)
_COLUMNS = [getattr(Ticket, name) for name in TICKET_FIELDS]


def _conditions(filters: Filters) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [Ticket.deleted_at.is_(None)]
    for name in ("source", "team", "assignee", "state"):
        values = getattr(filters, name)
        if values:
            where.append(getattr(Ticket, name).in_(values))
    if filters.priority:
        where.append(Ticket.priority.in_(filters.priority))
    done = [s.value for s in DONE_STATES]
    if filters.status == "open":
        where.append(Ticket.state.not_in(done))
    elif filters.status == "closed":
        where.append(Ticket.state.in_(done))
    if filters.updated_since is not None:
        where.append(Ticket.updated_at >= filters.updated_since)
    return where


def _ordering(sort: str) -> list[Any]:
    order: list[Any] = []
    for part in (p.strip() for p in sort.split(",")):
        name = part.removeprefix("-")
        if name not in SORTABLE:
            bad_param("sort", f"unknown sort field `{name}`; known: {', '.join(SORTABLE)}", sort)
        column = getattr(Ticket, name)
        order.append(
            column.desc().nulls_last() if part.startswith("-") else column.asc().nulls_last()
        )
    # a stable tie-break, so that pages never overlap or skip
    return [*order, Ticket.source.asc(), Ticket.external_id.asc()]


SortParam = Annotated[
    str,
    Query(
        max_length=200,
        description="comma-separated fields, `-` for descending, e.g. `-priority,updated_at`",
    ),
]


@router.get("", response_model=TicketPage, summary="List tickets")
def list_tickets(
    _caller: ReadAccess,
    conn: ConnectionDep,
    filters: FiltersDep,
    paging: PagingDep,
    format: FormatDep,
    sort: SortParam = "-updated_at",
) -> TicketPage | Response:
    """Tickets that match the filters; `format=csv` answers all matching rows as CSV."""
    where = and_(True, *_conditions(filters))
    order = _ordering(sort)
    total = conn.execute(select(func.count()).select_from(Ticket).where(where)).scalar_one()
    stmt: Select[Any] = (
        select(*_COLUMNS).where(where).order_by(*order).limit(paging.limit).offset(paging.offset)
    )
    if format == "csv":
        rows = conn.execute(stmt).all()
        return csv_response(TICKET_FIELDS, rows, filename="tickets", total=total)
    items = [TicketRead.model_validate(dict(r)) for r in conn.execute(stmt).mappings()]
    return TicketPage(items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.get(
    "/{source}/{external_id:path}",
    response_model=TicketDetail,
    summary="One ticket with its event timeline",
    responses={404: {"description": "no such ticket"}},
)
def get_ticket(
    _caller: ReadAccess,
    conn: ConnectionDep,
    source: Annotated[str, Path(max_length=100)],
    external_id: Annotated[str, Path(max_length=200)],
) -> TicketDetail:
    """The ticket and every recorded change, oldest first."""
    row = (
        conn.execute(
            select(*_COLUMNS, Ticket.deleted_at).where(
                Ticket.source == source, Ticket.external_id == external_id
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFoundError(f"ticket {source}/{external_id}")
    events = conn.execute(
        select(
            Event.occurred_at,
            Event.seq,
            Event.field,
            Event.old_value,
            Event.new_value,
            Event.actor,
            Event.origin,
        )
        .where(Event.source == source, Event.ticket_id == external_id)
        .order_by(Event.occurred_at, Event.seq, Event.id)
    ).mappings()
    return TicketDetail(**dict(row), events=[EventRead.model_validate(dict(e)) for e in events])
