"""``/api/v1/<analysis>``: flow analytics from the analytics cache, as JSON pages or CSV.

Each analysis is registered in ``app/routes/_analyses.py`` with the ``analytics`` function it
calls; handlers only pick the cached result, filter, page and serialise it.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from fastapi import APIRouter
from fastapi.responses import Response

from analytics.aging import aging_wip
from analytics.daily import throughput
from analytics.log import prepare_log
from app.deps import CacheDep, FiltersDep, FormatDep, PagingDep, ReadAccess, SettingsDep
from app.routes._analyses import Analysis, analysis_result, cached_json, register
from app.routes._common import csv_response, frame_records, page_frame
from app.schemas import AgingPage, AgingRead, ThroughputPage, ThroughputRead
from app.settings import Settings

router = APIRouter(prefix="/api/v1", tags=["analytics"])


def _with_ticket_links(result: pd.DataFrame, tickets: pd.DataFrame) -> pd.DataFrame:
    """Per-ticket results with the ticket's number, title and link (for lists and hover text)."""
    info = tickets[["source", "external_id", "number", "title", "url"]].rename(
        columns={"external_id": "ticket_id"}
    )
    return result.merge(info, on=["source", "ticket_id"], how="left", validate="many_to_one")


def _aging(
    tickets: pd.DataFrame, events: pd.DataFrame, now: datetime, _s: Settings
) -> pd.DataFrame:
    frame = aging_wip(prepare_log(tickets, events), now=now).frame
    return _with_ticket_links(frame, tickets)


def _throughput(
    tickets: pd.DataFrame, events: pd.DataFrame, now: datetime, _s: Settings
) -> pd.DataFrame:
    return throughput(prepare_log(tickets, events), now=now).frame


register(Analysis("aging", _aging, per_ticket=True))
register(Analysis("throughput", _throughput, per_ticket=False))


@router.get("/aging", response_model=AgingPage, summary="Aging work in progress")
def get_aging(
    _caller: ReadAccess,
    cache: CacheDep,
    settings: SettingsDep,
    filters: FiltersDep,
    paging: PagingDep,
    format: FormatDep,
) -> Response:
    """Every open ticket with its age, state, time in state and pace band, oldest first."""
    result = analysis_result(cache, settings, "aging", filters)
    frame = page_frame(result.value, limit=paging.limit, offset=paging.offset)
    columns = tuple(AgingRead.model_fields)
    if format == "csv":
        rows = frame_records(frame, columns)
        return csv_response(
            columns,
            ([r[c] for c in columns] for r in rows),
            filename="aging",
            total=len(result.value),
        )
    return cached_json(
        cache,
        ("aging", filters.key(), paging.limit, paging.offset),
        lambda: AgingPage(
            items=[AgingRead.model_validate(r) for r in frame_records(frame, columns)],
            total=len(result.value),
            limit=paging.limit,
            offset=paging.offset,
            as_of=result.as_of,
        ),
    )


@router.get("/throughput", response_model=ThroughputPage, summary="Throughput per day")
def get_throughput(
    _caller: ReadAccess,
    cache: CacheDep,
    settings: SettingsDep,
    filters: FiltersDep,
    format: FormatDep,
) -> ThroughputPage | Response:
    """Tickets finished per day over the trailing window, days with none kept as 0."""
    result = analysis_result(cache, settings, "throughput", filters)
    columns = tuple(ThroughputRead.model_fields)
    rows = frame_records(result.value, columns)
    if format == "csv":
        return csv_response(
            columns, ([r[c] for c in columns] for r in rows), filename="throughput", total=len(rows)
        )
    return ThroughputPage(
        items=[ThroughputRead.model_validate(r) for r in rows],
        total=len(rows),
        limit=len(rows),
        offset=0,
        as_of=result.as_of,
    )
