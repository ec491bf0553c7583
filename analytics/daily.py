"""Counts per local day (or week): throughput, arrivals vs departures, WIP and cumulative flow.

Days are the local days of ``FlowSettings.timezone``; a day with nothing in it is a row with 0
(Monte Carlo forecasts and run charts need the zero days). Weeks start on ``week_start``; the first
and last week of a window can be partial, and ``days`` says how many of their days are inside.

- *arrivals*: tickets created on the day; *departures* / *throughput*: tickets whose stop (entry
  into the final done run, see ``analytics.facts``) falls on the day; *reopened*: moves from a done
  state back to an open one on the day; *net flow* = arrivals - departures.
- *WIP* and the cumulative-flow bands are counted at the end of each day (at ``now`` for the day
  that contains ``now``): tickets whose state interval covers that instant. WIP is the sum over
  the open states.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from analytics.facts import DONE_CODE, Facts, ticket_facts
from analytics.frames import FIELD_STATE, NAT, OPEN_STATES, STATES, timestamp_ns
from analytics.log import TicketLog
from analytics.result import Result, Window
from analytics.settings import FlowSettings
from analytics.stats import Days, distinct_count, local_days

__all__ = ["arrivals_departures", "cumulative_flow", "resolve_window", "throughput", "wip_per_day"]

I64 = npt.NDArray[np.int64]

DATE = "date"
DAYS = "days"
THROUGHPUT = "throughput"
ARRIVALS = "arrivals"
DEPARTURES = "departures"
REOPENED = "reopened"
NET_FLOW = "net_flow"
WIP = "wip"
ARRIVED = "arrived"
DEPARTED = "departed"

Freq = Literal["D", "W"]


def resolve_window(now: int, settings: FlowSettings, window: Window | None) -> Window:
    """The window asked for, or the trailing ``window_days`` before ``now``."""
    if window is not None:
        return window
    return Window.trailing(pd.Timestamp(now, tz="UTC"), settings.window_days)


def _days(window: Window, timezone: str) -> Days:
    first = window.start.tz_convert(timezone).date()
    last_instant = max(window.end_ns - 1, window.start_ns)
    last = pd.Timestamp(last_instant, tz="UTC").tz_convert(timezone).date()
    return local_days(first, last, timezone)


def _per_day(days: Days, instants: I64) -> I64:
    idx = days.index(instants)
    inside = (idx >= 0) & (idx < len(days))
    return np.bincount(idx[inside], minlength=len(days)).astype(np.int64)


def _weekly(frame: pd.DataFrame, settings: FlowSettings) -> pd.DataFrame:
    dates = pd.DatetimeIndex(frame[DATE])
    offset = dates.day_of_week if settings.week_start == "MON" else (dates.day_of_week + 1) % 7
    week = dates - pd.to_timedelta(np.asarray(offset), unit="D")
    counts = frame.drop(columns=[DATE])
    grouped = counts.groupby(np.asarray(week), sort=True)
    out = grouped.sum()
    out.insert(0, DAYS, grouped.size().astype(np.int64))
    out.index.name = DATE
    return out.reset_index()


def _frame(days: Days, columns: dict[str, I64]) -> pd.DataFrame:
    frame = pd.DataFrame({DATE: days.dates})
    for name, values in columns.items():
        frame[name] = values
    return frame


def _stops_in(facts: Facts, window: Window) -> I64:
    stop = facts.final_stop
    return np.flatnonzero((stop != NAT) & (stop >= window.start_ns) & (stop < window.end_ns))


def throughput(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    settings: FlowSettings | None = None,
    window: Window | None = None,
    freq: Freq = "D",
) -> Result[FlowSettings]:
    """Tickets stopped per day (``freq="D"``) or week (``"W"``), zero periods kept.

    ``n`` is the number of tickets stopped in the window.
    """
    settings = settings or FlowSettings()
    now_ns = timestamp_ns(now)
    win = resolve_window(now_ns, settings, window)
    facts = ticket_facts(log, now=now_ns, settings=settings)
    days = _days(win, settings.timezone)
    stopped = _stops_in(facts, win)
    frame = _frame(days, {THROUGHPUT: _per_day(days, facts.final_stop[stopped])})
    if freq == "W":
        frame = _weekly(frame, settings)
    return Result(
        name="throughput",
        frame=frame,
        n=len(stopped),
        n_of="tickets stopped in the window",
        now=pd.Timestamp(now_ns, tz="UTC"),
        settings=settings,
        window=win,
        definition="docs/metrics.md#throughput",
        notes=(f"periods: {'days' if freq == 'D' else 'weeks'} in {settings.timezone}",),
    )


def _reopen_instants(log: TicketLog, now: int) -> I64:
    iv = log.intervals(FIELD_STATE)
    rows = np.flatnonzero(iv.start <= now)
    tk, code = iv.ticket[rows], iv.code[rows]
    done = np.where(code >= 0, DONE_CODE[np.maximum(code, 0)], False)
    reopen = np.zeros(len(rows), dtype=bool)
    if len(rows):
        reopen[1:] = (tk[1:] == tk[:-1]) & done[:-1] & ~done[1:]
    return iv.start[rows[reopen]]


def arrivals_departures(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    settings: FlowSettings | None = None,
    window: Window | None = None,
    freq: Freq = "D",
) -> Result[FlowSettings]:
    """Arrivals, departures, reopens and net flow per day or week.

    ``n`` counts tickets that arrived or departed in the window.
    """
    settings = settings or FlowSettings()
    now_ns = timestamp_ns(now)
    win = resolve_window(now_ns, settings, window)
    facts = ticket_facts(log, now=now_ns, settings=settings)
    days = _days(win, settings.timezone)
    created = np.where(facts.exists, facts.created, NAT)
    arrivals = _per_day(days, created)
    stopped = _stops_in(facts, win)
    departures = _per_day(days, facts.final_stop[stopped])
    reopened = _per_day(days, _reopen_instants(log, now_ns))
    frame = _frame(
        days,
        {
            ARRIVALS: arrivals,
            DEPARTURES: departures,
            REOPENED: reopened,
            NET_FLOW: arrivals - departures,
        },
    )
    if freq == "W":
        frame = _weekly(frame, settings)
    in_window = (created != NAT) & (created >= win.start_ns) & (created < win.end_ns)
    in_window[stopped] = True
    return Result(
        name="arrivals_departures",
        frame=frame,
        n=int(in_window.sum()),
        n_of="tickets created or stopped in the window",
        now=pd.Timestamp(now_ns, tz="UTC"),
        settings=settings,
        window=win,
        definition="docs/metrics.md#arrivals-departures-and-net-flow",
    )


def _state_counts(log: TicketLog, now: int, days: Days) -> tuple[I64, int, int]:
    """(states x days) tickets in each state at the end of each day; tickets in some state and
    tickets in an open state during the window (cached)."""
    key = (now, days.midnight[0], days.midnight[-1], len(days))
    cache: dict[object, tuple[I64, int, int]] = log.__dict__.setdefault("_state_counts", {})
    if key not in cache:
        cache[key] = _count_states(log, now, days)
    return cache[key]


def _count_states(log: TicketLog, now: int, days: Days) -> tuple[I64, int, int]:
    iv = log.intervals(FIELD_STATE)
    first, after = days.midnight[0], days.midnight[-1]
    end = iv.end
    # an interval that ended before the first day adds nothing at any day's end; one that starts
    # after the last day (or after now) does not count either
    rows = np.flatnonzero(
        (iv.start <= now) & (iv.start < after) & ((end == NAT) | (end >= first)) & (iv.code >= 0)
    )
    code, start, end = iv.code[rows], iv.start[rows], end[rows]
    end = np.where(end > now, NAT, end)
    n_bins = len(days) + 2
    s_bin = np.clip(days.index(start) + 1, 0, n_bins - 1)
    ended = end != NAT
    e_bin = np.clip(days.index(end[ended]) + 1, 0, n_bins - 1)
    size = len(STATES) * n_bins
    plus = np.bincount(code * n_bins + s_bin, minlength=size)
    minus = np.bincount(code[ended] * n_bins + e_bin, minlength=size)
    grid = np.cumsum((plus - minus).reshape(len(STATES), n_bins), axis=1)
    seen = distinct_count(iv.ticket[rows], log.n_tickets)
    open_rows = ~DONE_CODE[code]
    seen_open = distinct_count(iv.ticket[rows][open_rows], log.n_tickets)
    return grid[:, 1 : len(days) + 1].astype(np.int64), seen, seen_open


def cumulative_flow(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    settings: FlowSettings | None = None,
    window: Window | None = None,
) -> Result[FlowSettings]:
    """Tickets in each state at the end of each day, plus cumulative arrivals and departures.

    The state columns are the bands of a cumulative flow diagram for a workflow that can move
    backwards (stack them in ``frames.STATES`` order); ``arrived`` and ``departed`` are the
    cumulative arrivals and departures within the window. ``n`` counts tickets that were in some
    state during the window.
    """
    settings = settings or FlowSettings()
    now_ns = timestamp_ns(now)
    win = resolve_window(now_ns, settings, window)
    facts = ticket_facts(log, now=now_ns, settings=settings)
    days = _days(win, settings.timezone)
    grid, seen, _open = _state_counts(log, now_ns, days)
    columns = {state: grid[j] for j, state in enumerate(STATES)}
    created = np.where(facts.exists, facts.created, NAT)
    columns[ARRIVED] = np.cumsum(_per_day(days, created))
    columns[DEPARTED] = np.cumsum(_per_day(days, facts.final_stop[_stops_in(facts, win)]))
    return Result(
        name="cumulative_flow",
        frame=_frame(days, columns),
        n=seen,
        n_of="tickets in some state during the window",
        now=pd.Timestamp(now_ns, tz="UTC"),
        settings=settings,
        window=win,
        definition="docs/metrics.md#cumulative-flow",
    )


def wip_per_day(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    settings: FlowSettings | None = None,
    window: Window | None = None,
) -> Result[FlowSettings]:
    """Open tickets (in an open state) at the end of each day, with the waiting part.

    ``n`` counts tickets that were in an open state during the window.
    """
    settings = settings or FlowSettings()
    now_ns = timestamp_ns(now)
    win = resolve_window(now_ns, settings, window)
    days = _days(win, settings.timezone)
    grid, _seen, seen_open = _state_counts(log, now_ns, days)
    open_rows = [j for j, s in enumerate(STATES) if s in OPEN_STATES]
    waiting_rows = [j for j, s in enumerate(STATES) if s.startswith("waiting_")]
    frame = _frame(
        days,
        {
            WIP: grid[open_rows].sum(axis=0),
            "waiting": grid[waiting_rows].sum(axis=0),
        },
    )
    return Result(
        name="wip_per_day",
        frame=frame,
        n=seen_open,
        n_of="tickets in an open state during the window",
        now=pd.Timestamp(now_ns, tz="UTC"),
        settings=settings,
        window=win,
        definition="docs/metrics.md#wip-per-day",
    )
