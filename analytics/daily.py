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

from datetime import date, datetime, timedelta
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from analytics.errors import InvalidInputError
from analytics.facts import DONE_CODE, Facts, ticket_facts
from analytics.frames import (
    FIELD_STATE,
    NAT,
    OPEN_STATES,
    SOURCE,
    STATES,
    TICKET_ID,
    timestamp_ns,
)
from analytics.log import TicketLog
from analytics.result import Result, Window
from analytics.settings import FlowSettings
from analytics.stats import Days, distinct_count, local_days

__all__ = [
    "MILESTONE_COLUMNS",
    "MILESTONE_KINDS",
    "arrivals_departures",
    "cumulative_flow",
    "milestones",
    "resolve_window",
    "throughput",
    "wip_per_day",
]

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


# milestones of a day

MILESTONE_KINDS = (
    "throughput_record",
    "backlog_down",
    "oldest_resolved",
    "no_stale_calls",
    "sla_breached",
    "dead",
)
"""in the order a report lists them"""
KIND = "kind"
TEXT = "text"
VALUE = "value"
AT = "at"
MILESTONE_COLUMNS = (KIND, TEXT, VALUE, "source", "ticket_id", AT)


def _day_window(day: date, timezone: str) -> Window:
    start = pd.Timestamp(day).tz_localize(timezone)
    end = pd.Timestamp(day + timedelta(days=1)).tz_localize(timezone)
    return Window(start=start, end=end)


def _open_at(log: TicketLog, instant: int) -> I64:
    """Ticket rows whose state at ``instant`` is an open one (tickets without any state
    history are not counted)."""
    iv = log.intervals(FIELD_STATE)
    covers = (iv.start <= instant) & ((iv.end == NAT) | (iv.end > instant)) & (iv.code >= 0)
    is_open = covers & ~DONE_CODE[np.maximum(iv.code, 0)]
    return np.unique(iv.ticket[is_open]).astype(np.int64)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def milestones(
    log: TicketLog,
    *,
    day: date,
    now: datetime | pd.Timestamp,
    settings: FlowSettings | None = None,
    stale: pd.DataFrame | None = None,
    blockers: pd.DataFrame | None = None,
    dead_after: timedelta = timedelta(days=45),
    record_days: int = 90,
    streak_days: int = 3,
) -> Result[FlowSettings]:
    """What stood out on ``day`` (a local day of ``settings.timezone``), one row per milestone.

    From the history, for any day up to today:

    - ``throughput_record``: more tickets finished on the day than on any of the
      ``record_days - 1`` days before it (only when the log's history covers those days, and
      at least one finished); ``value`` is the count.
    - ``backlog_down``: the open tickets at the end of the day (at ``now`` for today) went down
      ``streak_days`` or more days in a row, ending on the day; ``value`` is the streak length.
    - ``oldest_resolved``: the oldest ticket that was open when the day began was finished
      during the day (its final stop); ``value`` is its age in days when it stopped.

    From the state at ``now``, only for the day that contains ``now``:

    - ``no_stale_calls``: ``stale`` (the ``stale_calls`` frame as of ``now``) is empty while
      tickets are open; ``value`` is the number of open tickets.
    - ``sla_breached``: per ticket, its SLA target passed during the day (``blockers``: the
      ``flow_blockers`` frame as of ``now``, rows ``sla_breached`` whose ``since`` is in the
      day); ``value`` is hours past the target at ``now``.
    - ``dead``: per ticket, the ``dead?`` line was crossed during the day (``stale`` rows with
      ``dead`` whose ``last_activity_at + dead_after`` is in the day); ``value`` is days since
      the last real activity.

    Columns: ``kind``, ``text``, ``value``, ``source`` and ``ticket_id`` (per-ticket rows),
    ``at`` (when it happened, if known). ``n`` is the number of milestones.
    """
    settings = settings or FlowSettings()
    now_ns = timestamp_ns(now)
    now_at = pd.Timestamp(now_ns, tz="UTC")
    win = _day_window(day, settings.timezone)
    if win.start_ns > now_ns:
        raise InvalidInputError(f"day {day} has not begun at {pd.Timestamp(now_ns, tz='UTC')}")
    rows: list[dict[str, object]] = []
    facts = ticket_facts(log, now=now_ns, settings=settings)

    # throughput record over the trailing days, the day itself last
    first_day = day - timedelta(days=record_days - 1)
    history = _day_window(first_day, settings.timezone)
    span = Window(start=history.start, end=win.end)
    created = facts.created[facts.exists & (facts.created != NAT)]
    if len(created) and int(created.min()) <= history.start_ns:
        per_day = throughput(log, now=now_at, settings=settings, window=span).frame
        counts = per_day[THROUGHPUT].to_numpy()
        today, before = int(counts[-1]), counts[:-1]
        if today > 0 and len(before) and today > int(before.max()):
            best = int(np.argmax(before))  # the first day with the previous best
            previous = pd.Timestamp(per_day[DATE].iloc[best]).date()
            rows.append(
                {
                    KIND: "throughput_record",
                    TEXT: f"{_plural(today, 'ticket')} finished: the most in {record_days} "
                    f"days (previous best {int(before[best]):,} on {previous:%Y-%m-%d})",
                    VALUE: float(today),
                }
            )

    # backlog going down day after day
    recent = Window(
        start=_day_window(day - timedelta(days=60), settings.timezone).start, end=win.end
    )
    wip = wip_per_day(log, now=now_at, settings=settings, window=recent).frame[WIP].to_numpy()
    streak = 0
    while streak + 1 < len(wip) and wip[-1 - streak] < wip[-2 - streak]:
        streak += 1
    if streak >= streak_days:
        rows.append(
            {
                KIND: "backlog_down",
                TEXT: f"backlog down {streak} days in a row: "
                f"{int(wip[-1 - streak]):,} → {int(wip[-1]):,} open",
                VALUE: float(streak),
            }
        )

    # the oldest open ticket of the morning was finished during the day
    open_rows = _open_at(log, win.start_ns)
    if len(open_rows):
        oldest = open_rows[np.argmin(facts.created[open_rows])]
        stop = int(facts.final_stop[oldest])
        if stop != NAT and win.start_ns <= stop < win.end_ns:
            days = (stop - int(facts.created[oldest])) / 86_400e9
            keys = log.keys_frame(np.array([oldest], dtype=np.int64)).iloc[0]
            rows.append(
                {
                    KIND: "oldest_resolved",
                    TEXT: f"the oldest open ticket was finished after {days:.1f} days",
                    VALUE: round(days, 2),
                    SOURCE: keys[SOURCE],
                    TICKET_ID: keys[TICKET_ID],
                    AT: pd.Timestamp(stop, tz="UTC"),
                }
            )

    if win.start_ns <= now_ns < win.end_ns:
        rows += _current_milestones(facts, win, now_ns, stale, blockers, dead_after)

    frame = pd.DataFrame(rows, columns=list(MILESTONE_COLUMNS))
    frame[VALUE] = frame[VALUE].astype("float64")
    frame[AT] = pd.to_datetime(frame[AT], utc=True)
    order = {kind: i for i, kind in enumerate(MILESTONE_KINDS)}
    frame = frame.sort_values(
        [KIND, AT, TICKET_ID], key=lambda c: c.map(order) if c.name == KIND else c, kind="stable"
    ).reset_index(drop=True)
    return Result(
        name="milestones",
        frame=frame,
        n=len(frame),
        n_of="milestones of the day",
        now=pd.Timestamp(now_ns, tz="UTC"),
        settings=settings,
        window=win,
        definition="docs/metrics.md#milestones",
        notes=(
            f"record over {record_days} days; backlog streaks from {streak_days} days",
            "SLA, dead? and stale milestones only for the day that contains now",
        ),
    )


def _current_milestones(
    facts: Facts,
    win: Window,
    now_ns: int,
    stale: pd.DataFrame | None,
    blockers: pd.DataFrame | None,
    dead_after: timedelta,
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    open_now = int(facts.is_open.sum())
    if stale is not None and stale.empty and open_now:
        rows.append(
            {
                KIND: "no_stale_calls",
                TEXT: f"no stale calls among {_plural(open_now, 'open ticket')}",
                VALUE: float(open_now),
            }
        )
    start, end = pd.Timestamp(win.start_ns, tz="UTC"), pd.Timestamp(win.end_ns, tz="UTC")
    now = pd.Timestamp(now_ns, tz="UTC")
    if blockers is not None and len(blockers):
        since = pd.to_datetime(blockers["since"], utc=True)
        hit = blockers[
            (blockers["blocker"].astype(object) == "sla_breached")
            & (since >= start)
            & (since < end)
        ].drop_duplicates([SOURCE, TICKET_ID])
        for row, at in zip(hit.to_dict("records"), since[hit.index], strict=True):
            hours = (now - at).total_seconds() / 3600
            rows.append(
                {
                    KIND: "sla_breached",
                    TEXT: f"passed its SLA target at {at:%H:%M} UTC",
                    VALUE: round(hours, 2),
                    SOURCE: row[SOURCE],
                    TICKET_ID: row[TICKET_ID],
                    AT: at,
                }
            )
    if stale is not None and len(stale):
        last = pd.to_datetime(stale["last_activity_at"], utc=True)
        crossed = last + dead_after
        dead = stale["dead"].fillna(False).astype(bool)
        gone = stale[dead & (crossed >= start) & (crossed < end)]
        for row, at, quiet_since in zip(
            gone.to_dict("records"), crossed[gone.index], last[gone.index], strict=True
        ):
            days = (now - quiet_since).total_seconds() / 86400
            rows.append(
                {
                    KIND: "dead",
                    TEXT: f"no real activity for {dead_after.days} days: now counts as dead?",
                    VALUE: round(days, 2),
                    SOURCE: row[SOURCE],
                    TICKET_ID: row[TICKET_ID],
                    AT: at,
                }
            )
    return rows
