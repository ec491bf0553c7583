"""``/api/v1/<analysis>``: flow analytics from the analytics cache, as JSON pages or CSV.

Each analysis is registered here (``register``) with the ``analytics`` function it calls;
handlers only pick the cached result, filter, page and serialise it. A JSON answer is rendered
once per snapshot, filter set and page and then served as cached bytes straight from the event
loop (``cached_answer``): a cached request costs a dictionary lookup, whatever the warehouse size.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from analytics import (
    cumulative_flow,
    cycle_time_summary,
    flow_blockers,
    flow_rates,
    handover_matrix,
    pace_percentiles,
    stale_calls,
    ticket_flow_times,
    time_in_state,
)
from analytics.aging import aging_wip
from analytics.daily import milestones, throughput
from analytics.result import Window
from analytics.settings import FlowSettings, StaleSettings
from app.cache import AnalyticsCache, Snapshot
from app.deps import (
    CacheDep,
    Filters,
    FiltersDep,
    FormatDep,
    Paging,
    PagingDep,
    ReadAccess,
    SettingsDep,
    bad_param,
)
from app.routes._analyses import (
    Analysis,
    Compute,
    analysis_result,
    cached_answer,
    filtered_frames,
    register,
    shared_log,
)
from app.routes._common import csv_response, frame_records, page_frame
from app.schemas import (
    AgingPage,
    AgingRead,
    AnalyticsPage,
    BlockerKind,
    BlockerPage,
    BlockerRead,
    CfdPage,
    CfdRead,
    CycleSummaryRead,
    CycleTimePage,
    CycleTimeRead,
    DailyReport,
    FlowRateRead,
    FlowSummary,
    HandoverPage,
    HandoverRead,
    Milestone,
    ReportTicket,
    StalePage,
    StaleRead,
    ThroughputPage,
    ThroughputRead,
    TimeInStatusPage,
    TimeInStatusRead,
)
from app.settings import Settings

router = APIRouter(prefix="/api/v1", tags=["analytics"])

_TICKET_INFO = ("number", "title", "url", "team", "assignee", "priority", "state", "updated_at")
"""ticket columns added to per-ticket results: links and hover text, and every filter column"""
OPEN_STATES = ("new", "in_progress", "waiting_customer", "waiting_supplier", "waiting_other")


def _with_ticket_links(result: pd.DataFrame, tickets: pd.DataFrame) -> pd.DataFrame:
    """Per-ticket results with the ticket's number, title and link (for lists and hover text)
    and the ticket columns the filters need when the analysis does not carry them."""
    add = [c for c in _TICKET_INFO if c not in result.columns]
    info = tickets[["source", "external_id", *add]].rename(columns={"external_id": "ticket_id"})
    merged = result.merge(info, on=["source", "ticket_id"], how="left", validate="many_to_one")
    merged.attrs = dict(result.attrs)
    return merged


def _days(value: Any) -> float | None:
    if value is None or pd.isna(value):
        return None
    return float(pd.Timedelta(value).total_seconds() / 86400)


# per-ticket analyses: computed once on the whole warehouse, filtered per request


def _aging(
    tickets: pd.DataFrame, events: pd.DataFrame, now: datetime, _s: Settings
) -> pd.DataFrame:
    log = shared_log(tickets, events)
    frame = _with_ticket_links(aging_wip(log, now=now).frame, tickets)
    pace = pace_percentiles(log, now=now).frame
    # the pace bands drawn on the aging chart: per state, days at p50/p70/p85/p95
    frame.attrs["pace"] = {
        str(row["state"]): {p: _days(row[p]) for p in ("p50", "p70", "p85", "p95")}
        for row in pace.to_dict("records")
    }
    return frame


def _per_ticket(analysis: Callable[..., Any]) -> Compute:
    """An analysis over the shared log whose per-ticket frame gets the tickets' links."""

    def compute(
        tickets: pd.DataFrame, events: pd.DataFrame, now: datetime, _s: Settings
    ) -> pd.DataFrame:
        frame: pd.DataFrame = analysis(shared_log(tickets, events), now=now).frame
        return _with_ticket_links(frame, tickets)

    return compute


# aggregates: computed on the filtered tickets, once per filter set


def _data_window(tickets: pd.DataFrame, now: datetime) -> Window | None:
    """The trailing flow window, but starting no earlier than the first ticket was logged.

    Before that the warehouse knows nothing (a new installation, a short export): days of
    zeros there would read as an idle desk. None: the trailing window is all covered.
    """
    trailing = Window.trailing(now, FlowSettings().window_days)
    first = tickets["created_at"].min() if "created_at" in tickets and len(tickets) else None
    if first is None or pd.isna(first) or first <= trailing.start or first >= trailing.end:
        return None
    return Window(start=first, end=trailing.end)


def _throughput(
    tickets: pd.DataFrame, events: pd.DataFrame, now: datetime, _s: Settings
) -> pd.DataFrame:
    window = _data_window(tickets, now)
    return throughput(shared_log(tickets, events), now=now, window=window).frame


def _cycle_summary(
    tickets: pd.DataFrame, events: pd.DataFrame, now: datetime, _s: Settings
) -> pd.DataFrame:
    return cycle_time_summary(shared_log(tickets, events), now=now).frame


def _flow_rates(
    tickets: pd.DataFrame, events: pd.DataFrame, now: datetime, _s: Settings
) -> pd.DataFrame:
    return flow_rates(shared_log(tickets, events), now=now).frame


def _cycle_chart(
    tickets: pd.DataFrame, events: pd.DataFrame, now: datetime, _s: Settings
) -> pd.DataFrame:
    """Finished tickets of the summary's window with their cycle time, and its percentiles."""
    log = shared_log(tickets, events)
    summary = cycle_time_summary(log, now=now)
    times = ticket_flow_times(log, now=now).frame
    done = times[times["cycle_time"].notna() & times["stop"].notna()]
    window = summary.window
    if window is not None:
        done = done[(done["stop"] >= window.start) & (done["stop"] < window.end)]
    frame = _with_ticket_links(done.reset_index(drop=True), tickets)
    row = summary.frame[summary.frame["metric"] == "cycle_time"]
    frame.attrs["percentiles"] = (
        {p: _days(row.iloc[0][p]) for p in ("p50", "p85", "p95")} if len(row) else {}
    )
    return frame


def _cfd(tickets: pd.DataFrame, events: pd.DataFrame, now: datetime, _s: Settings) -> pd.DataFrame:
    window = _data_window(tickets, now)
    frame = cumulative_flow(shared_log(tickets, events), now=now, window=window).frame.copy()
    frame["date"] = pd.to_datetime(frame["date"]).dt.date
    return frame


def _handovers(
    tickets: pd.DataFrame, events: pd.DataFrame, now: datetime, _s: Settings
) -> pd.DataFrame:
    frame = handover_matrix(shared_log(tickets, events), now=now).frame
    return frame.rename(columns={"from": "from_team", "to": "to_team"})


def _time_by_team(
    tickets: pd.DataFrame, events: pd.DataFrame, now: datetime, _s: Settings
) -> pd.DataFrame:
    """Per team and open state: mean days per ticket, tickets, and the longest-waiting ticket."""
    per_ticket = _with_ticket_links(
        time_in_state(shared_log(tickets, events), now=now).frame, tickets
    )
    per_ticket["team"] = per_ticket["team"].astype(object).where(per_ticket["team"].notna(), "—")
    rows = []
    for state in OPEN_STATES:
        if state not in per_ticket.columns:
            continue
        days = per_ticket[state].dt.total_seconds() / 86400
        part = per_ticket.assign(days=days)
        for team, group in part.groupby("team", sort=True):
            ranked = group.sort_values("days", ascending=False, na_position="last")
            longest = ranked.iloc[0] if ranked["days"].notna().any() else None
            rows.append(
                {
                    "team": team,
                    "state": state,
                    "tickets": len(group),
                    "mean_days": float(group["days"].mean()) if len(group) else 0.0,
                    "longest_number": None if longest is None else longest["number"],
                    "longest_title": None if longest is None else longest["title"],
                    "longest_url": None if longest is None else longest["url"],
                    "longest_days": None if longest is None else float(longest["days"]),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "team",
            "state",
            "tickets",
            "mean_days",
            "longest_number",
            "longest_title",
            "longest_url",
            "longest_days",
        ],
    )


register(Analysis("aging", _aging, per_ticket=True))
register(Analysis("stale", _per_ticket(stale_calls), per_ticket=True))
register(Analysis("blockers", _per_ticket(flow_blockers), per_ticket=True))
register(Analysis("time-in-status", _per_ticket(time_in_state), per_ticket=True))
register(Analysis("cycle-time", _per_ticket(ticket_flow_times), per_ticket=True))
register(Analysis("throughput", _throughput, per_ticket=False))
register(Analysis("cycle-summary", _cycle_summary, per_ticket=False))
register(Analysis("flow-rates", _flow_rates, per_ticket=False))
register(Analysis("cycle-chart", _cycle_chart, per_ticket=False))
register(Analysis("cfd", _cfd, per_ticket=False))
register(Analysis("handovers", _handovers, per_ticket=False))
register(Analysis("time-by-team", _time_by_team, per_ticket=False))


# serving

Select = Callable[[pd.DataFrame], pd.DataFrame]


def _csv(
    cache: AnalyticsCache,
    settings: Settings,
    name: str,
    filters: Filters,
    paging: Paging,
    item: type[BaseModel],
    select: Select | None,
) -> Response:
    result = analysis_result(cache, settings, name, filters).value
    if select is not None:
        result = select(result)
    frame = page_frame(result, limit=paging.limit, offset=paging.offset)
    columns = tuple(item.model_fields)
    rows = frame_records(frame, columns)
    return csv_response(
        columns, ([r[c] for c in columns] for r in rows), filename=name, total=len(result)
    )


async def serve_list(
    request: Request,
    cache: AnalyticsCache,
    settings: Settings,
    name: str,
    filters: Filters,
    paging: Paging | None,
    format: str,
    item: type[BaseModel],
    page: type[AnalyticsPage[Any]],
    *,
    select: Select | None = None,
    extra: tuple[object, ...] = (),
) -> Response:
    """One analysis as a JSON page (cached bytes) or CSV; ``paging=None`` answers every row."""
    if format == "csv":
        every = Paging(limit=settings.api.csv_max_rows, offset=0)
        return await run_in_threadpool(
            _csv, cache, settings, name, filters, paging or every, item, select
        )

    def render() -> bytes:
        result = analysis_result(cache, settings, name, filters)
        whole = select(result.value) if select is not None else result.value
        if paging is None:
            frame, limit, offset = whole, len(whole), 0
        else:
            frame = page_frame(whole, limit=paging.limit, offset=paging.offset)
            limit, offset = paging.limit, paging.offset
        columns = tuple(item.model_fields)
        body = page(
            items=[item.model_validate(r) for r in frame_records(frame, columns)],
            total=len(whole),
            limit=limit,
            offset=offset,
            as_of=result.as_of,
        )
        return body.model_dump_json().encode()

    where = (paging.limit, paging.offset) if paging is not None else ()
    key = ("json", name, filters.key(), extra, *where)
    return await cached_answer(cache, key, render, request)


@router.get("/aging", response_model=AgingPage, summary="Aging work in progress")
async def get_aging(
    request: Request,
    _caller: ReadAccess,
    cache: CacheDep,
    settings: SettingsDep,
    filters: FiltersDep,
    paging: PagingDep,
    format: FormatDep,
) -> Response:
    """Every open ticket with its age, state, time in state and pace band, oldest first."""
    return await serve_list(
        request, cache, settings, "aging", filters, paging, format, AgingRead, AgingPage
    )


@router.get("/stale", response_model=StalePage, summary="Stale calls")
async def get_stale(
    request: Request,
    _caller: ReadAccess,
    cache: CacheDep,
    settings: SettingsDep,
    filters: FiltersDep,
    paging: PagingDep,
    format: FormatDep,
) -> Response:
    """Open tickets without real activity for longer than their priority's threshold, most
    overdue first, each with the reason in words and a link to the ticket."""
    return await serve_list(
        request, cache, settings, "stale", filters, paging, format, StaleRead, StalePage
    )


@router.get("/blockers", response_model=BlockerPage, summary="Flow blockers")
async def get_blockers(
    request: Request,
    _caller: ReadAccess,
    cache: CacheDep,
    settings: SettingsDep,
    filters: FiltersDep,
    paging: PagingDep,
    format: FormatDep,
    kind: Annotated[
        list[BlockerKind] | None, Query(description="blocker kind; repeat for several")
    ] = None,
) -> Response:
    """Every blocker of every open ticket (SLA risk, queued, unassigned, ping-pong, waiting,
    customer not updated); a ticket can have several. Filter by ``kind``."""
    kinds = tuple(sorted(set(kind or ())))

    def select(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame["blocker"].isin(kinds)] if kinds else frame

    return await serve_list(
        request,
        cache,
        settings,
        "blockers",
        filters,
        paging,
        format,
        BlockerRead,
        BlockerPage,
        select=select,
        extra=kinds,
    )


@router.get("/time-in-status", response_model=TimeInStatusPage, summary="Time in status")
async def get_time_in_status(
    request: Request,
    _caller: ReadAccess,
    cache: CacheDep,
    settings: SettingsDep,
    filters: FiltersDep,
    paging: PagingDep,
    format: FormatDep,
) -> Response:
    """Per ticket, the time spent in each lifecycle state (ISO 8601 durations)."""
    return await serve_list(
        request,
        cache,
        settings,
        "time-in-status",
        filters,
        paging,
        format,
        TimeInStatusRead,
        TimeInStatusPage,
    )


@router.get("/cycle-time", response_model=CycleTimePage, summary="Cycle and lead time")
async def get_cycle_time(
    request: Request,
    _caller: ReadAccess,
    cache: CacheDep,
    settings: SettingsDep,
    filters: FiltersDep,
    paging: PagingDep,
    format: FormatDep,
) -> Response:
    """Per ticket: created, first start, first stop, stop, reopens, lead and cycle time."""
    return await serve_list(
        request,
        cache,
        settings,
        "cycle-time",
        filters,
        paging,
        format,
        CycleTimeRead,
        CycleTimePage,
    )


@router.get("/throughput", response_model=ThroughputPage, summary="Throughput per day")
async def get_throughput(
    request: Request,
    _caller: ReadAccess,
    cache: CacheDep,
    settings: SettingsDep,
    filters: FiltersDep,
    format: FormatDep,
) -> Response:
    """Tickets finished per day over the trailing window, days with none kept as 0."""
    return await serve_list(
        request,
        cache,
        settings,
        "throughput",
        filters,
        None,
        format,
        ThroughputRead,
        ThroughputPage,
    )


@router.get("/cfd", response_model=CfdPage, summary="Cumulative flow")
async def get_cfd(
    request: Request,
    _caller: ReadAccess,
    cache: CacheDep,
    settings: SettingsDep,
    filters: FiltersDep,
    format: FormatDep,
) -> Response:
    """Per day of the trailing window: tickets in each state at the end of the day, arrivals
    and departures."""
    return await serve_list(
        request, cache, settings, "cfd", filters, None, format, CfdRead, CfdPage
    )


@router.get("/handovers", response_model=HandoverPage, summary="Handover matrix")
async def get_handovers(
    request: Request,
    _caller: ReadAccess,
    cache: CacheDep,
    settings: SettingsDep,
    filters: FiltersDep,
    format: FormatDep,
) -> Response:
    """Tickets handed from one team to another in the window: handovers, tickets, bounces."""
    return await serve_list(
        request, cache, settings, "handovers", filters, None, format, HandoverRead, HandoverPage
    )


@router.get("/flow", response_model=FlowSummary, summary="Flow summary")
async def get_flow(
    request: Request,
    _caller: ReadAccess,
    cache: CacheDep,
    settings: SettingsDep,
    filters: FiltersDep,
) -> Response:
    """Lead- and cycle-time percentiles (with the service-level expectation) and flow rates
    (reopen rate, first-assignment resolution)."""

    def render() -> bytes:
        summary = analysis_result(cache, settings, "cycle-summary", filters)
        rates = analysis_result(cache, settings, "flow-rates", filters)
        ct_cols = tuple(CycleSummaryRead.model_fields)
        rate_cols = tuple(FlowRateRead.model_fields)
        body = FlowSummary(
            as_of=summary.as_of,
            cycle_time=[
                CycleSummaryRead.model_validate(r) for r in frame_records(summary.value, ct_cols)
            ],
            rates=[FlowRateRead.model_validate(r) for r in frame_records(rates.value, rate_cols)],
        )
        return body.model_dump_json().encode()

    return await cached_answer(cache, ("json", "flow", filters.key()), render, request)


REPORT_LIMIT = 500


def _report_rows(frame: pd.DataFrame, at: str, reason: str | None = None) -> list[ReportTicket]:
    shown = frame.head(REPORT_LIMIT).rename(columns={at: "at", "external_id": "ticket_id"})
    if reason is not None and reason != "reason":
        shown = shown.rename(columns={reason: "reason"})
    columns = tuple(ReportTicket.model_fields)
    return [ReportTicket.model_validate(r) for r in frame_records(shown, columns)]


def report_milestones(
    cache: AnalyticsCache, settings: Settings, filters: Filters, day: date
) -> list[Milestone]:
    """The milestones of ``day`` for the tickets that pass ``filters``, computed once per
    generation, filter set and day (``analytics.daily.milestones``)."""

    def compute(_snapshot: Snapshot, now: datetime) -> list[Milestone]:
        if pd.Timestamp(day, tz="UTC") > pd.Timestamp(now):
            return []  # the day has not begun at the instant the figures are computed for
        tickets, events = filtered_frames(cache, filters).value
        stale = analysis_result(cache, settings, "stale", filters).value
        blockers = analysis_result(cache, settings, "blockers", filters).value
        found = milestones(
            shared_log(tickets, events),
            day=day,
            now=now,
            stale=stale,
            blockers=blockers,
            dead_after=StaleSettings().dead_after,
        ).frame
        frame = found.merge(
            tickets[["source", "external_id", "number", "title", "url"]].rename(
                columns={"external_id": "ticket_id"}
            ),
            on=["source", "ticket_id"],
            how="left",
        )
        columns = tuple(Milestone.model_fields)
        return [Milestone.model_validate(r) for r in frame_records(frame, columns)]

    marks: list[Milestone] = cache.get(("milestones", filters.key(), day), compute).value
    return marks


def daily_report(
    cache: AnalyticsCache, settings: Settings, filters: Filters, day: date
) -> DailyReport:
    """What came in and what was resolved on ``day`` (UTC), what is stale or blocked now, and
    the day's milestones."""
    snapshot = cache.snapshot()
    stale = analysis_result(cache, settings, "stale", filters)
    blockers = analysis_result(cache, settings, "blockers", filters).value
    tickets = filters.apply(snapshot.tickets)
    start = pd.Timestamp(day, tz="UTC")
    end = start + pd.Timedelta(days=1)
    arrived = tickets[(tickets["created_at"] >= start) & (tickets["created_at"] < end)]
    resolved_at = tickets["resolved_at"].fillna(tickets["closed_at"])
    resolved = tickets[(resolved_at >= start) & (resolved_at < end)].assign(
        resolved=resolved_at[(resolved_at >= start) & (resolved_at < end)]
    )
    # one row per blocked ticket: its most pressing blocker (the analysis sorts by kind)
    blocked = blockers.drop_duplicates(["source", "ticket_id"])
    open_count = int(tickets["state"].isin(OPEN_STATES).sum() if "state" in tickets.columns else 0)
    marks = report_milestones(cache, settings, filters, day)
    return DailyReport(
        date=day,
        team=filters.team[0] if len(filters.team) == 1 else None,
        as_of=stale.as_of,
        milestones=marks,
        arrived=_report_rows(arrived.sort_values("created_at"), "created_at"),
        resolved=_report_rows(resolved.sort_values("resolved"), "resolved"),
        stale=_report_rows(stale.value, "last_activity_at", "reason"),
        blocked=_report_rows(blocked, "since", "reason"),
        counts={
            "open": open_count,
            "arrived": len(arrived),
            "resolved": len(resolved),
            "stale": len(stale.value),
            "blocked": len(blocked),
            "milestones": len(marks),
        },
    )


@router.get("/report/daily", response_model=DailyReport, summary="Daily team report")
async def get_daily_report(
    request: Request,
    _caller: ReadAccess,
    cache: CacheDep,
    settings: SettingsDep,
    filters: FiltersDep,
    day: Annotated[
        date | None, Query(alias="date", description="the day (UTC), default today")
    ] = None,
) -> Response:
    """For a team (``?team=``) or all: what came in and what was resolved on the day, and the
    stale and blocked tickets now, each with a link to the ticket in its own tool."""
    today = datetime.now(UTC).date()
    day = day or today
    if day > today or day < today - timedelta(days=3660):
        bad_param("date", "must be today or a day of the last ten years", str(day))

    def render() -> bytes:
        return daily_report(cache, settings, filters, day).model_dump_json().encode()

    return await cached_answer(cache, ("json", "report", filters.key(), day), render, request)
