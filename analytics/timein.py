"""Time in each state, status, team or assignee per ticket (calendar and business time).

``TIS_i(v) = sum over the intervals of ticket i with value v of |interval ∩ [start, now]|``:
revisits add up, the interval still running is counted up to ``now``, and intervals that begin
after ``now`` do not count. Business time is the same sum measured in the work calendar of the
team that held the ticket during each interval (else the ticket's source, else the default).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import numpy.typing as npt
import pandas as pd

from analytics.clock import Calendars, cumulative_business
from analytics.facts import calendar_index
from analytics.frames import (
    FIELD_STATE,
    FIELD_TEAM,
    NAT,
    STATES,
    from_ns,
    td,
    text_of,
    timestamp_ns,
)
from analytics.intervals import Intervals
from analytics.log import TicketLog
from analytics.result import Result
from analytics.stats import distinct_count, exact_bincount

__all__ = ["time_in_state", "time_in_values"]

I64 = npt.NDArray[np.int64]

VALUE = "value"
TIME = "time"
BUSINESS_TIME = "business_time"
VISITS = "visits"
FIRST_ENTERED = "first_entered"
LAST_LEFT = "last_left"


def _durations(
    log: TicketLog, iv: Intervals, now: int, calendars: Calendars | None
) -> tuple[I64, I64, I64, I64, I64, I64 | None]:
    """Rows begun by ``now``: ticket, code, start, end (NAT while running), duration, business."""
    if len(iv) and int(iv.start.max()) <= now:
        rows = np.arange(len(iv), dtype=np.int64)
        tk, code, start, end = iv.ticket, iv.code, iv.start, iv.clipped_end(now)
    else:
        rows = np.flatnonzero(iv.start <= now)
        tk, code, start = iv.ticket[rows], iv.code[rows], iv.start[rows]
        end = iv.clipped_end(now)[rows]
    dur = end - start
    business = None
    if calendars is not None:
        if iv.field == FIELD_TEAM:
            which = calendars.index_for(team=iv.value_of(rows), source=log.source[tk])
        else:
            which = calendar_index(log, calendars, tk, start)
        business = _interval_business(calendars, which, tk, start, end)
    running = (iv.end[rows] == NAT) | (iv.end[rows] > now)
    return tk, code, start, np.where(running, NAT, end), dur, business


def _interval_business(
    calendars: Calendars, which: npt.NDArray[np.int8], tk: I64, start: I64, end: I64
) -> I64:
    """Business duration of each interval. An interval usually ends where the ticket's next one
    starts, so business time up to that boundary is computed once for both."""
    n = len(start)
    chained = np.zeros(n, dtype=bool)
    if n > 1:
        chained[:-1] = (tk[1:] == tk[:-1]) & (end[:-1] == start[1:]) & (which[1:] == which[:-1])
    loose = np.flatnonzero(~chained)
    b_start, b_loose = cumulative_business(calendars, [(which, start), (which[loose], end[loose])])
    b_end = np.empty(n, dtype=np.int64)
    b_end[:-1] = b_start[1:]
    b_end[loose] = b_loose
    return b_end - b_start


def time_in_values(
    log: TicketLog,
    *,
    field: str,
    now: datetime | pd.Timestamp,
    calendars: Calendars | None = None,
) -> Result[None]:
    """Time each ticket spent with each value of ``field`` (state, status, team, assignee).

    Returns one row per (ticket, value) with ``time`` (calendar), ``business_time`` (when
    ``calendars`` is given), ``visits`` (separate intervals), ``first_entered`` and ``last_left``
    (NaT while the value is current). A missing value (unassigned, no team) is a row with value
    None. ``n`` counts tickets with at least one interval by ``now``.
    """
    now_ns = timestamp_ns(now)
    iv = log.intervals(field)
    tk, code, start, end, dur, business = _durations(log, iv, now_ns, calendars)
    # groups of (ticket, value): rows are in ticket order already, so a stable sort of the key
    # only reorders within tickets (timsort on nearly sorted data: far cheaper than hashing)
    width = len(iv.values) + 1
    key = tk * width + (code + 1)
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    heads = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    if not len(order):
        heads = np.zeros(0, dtype=np.int64)
    g_key = ordered[heads]
    g_tk, g_code = g_key // width, g_key % width - 1
    big = np.iinfo(np.int64).max
    ends = np.where(end == NAT, big, end)[order]
    last = np.maximum.reduceat(ends, heads) if len(heads) else ends
    columns: dict[str, object] = {
        **log.keys(g_tk),
        VALUE: text_of(iv.values, g_code),
        TIME: td(np.add.reduceat(dur[order], heads) if len(heads) else dur),
    }
    if business is not None:
        b = business[order]
        columns[BUSINESS_TIME] = td(np.add.reduceat(b, heads) if len(heads) else b)
    columns[VISITS] = np.diff(np.append(heads, len(order))).astype(np.int64)
    # the sort is stable: a group's first row is its earliest interval
    columns[FIRST_ENTERED] = from_ns(start[order][heads])
    # last_left: NaT when the value's latest interval is still running at now
    columns[LAST_LEFT] = from_ns(np.where(last == big, NAT, last))
    frame = pd.DataFrame(columns, copy=False)
    return Result(
        name=f"time_in_{field}",
        frame=frame,
        n=distinct_count(g_tk, log.n_tickets),
        n_of="tickets with a known value by now",
        now=pd.Timestamp(now_ns, tz="UTC"),
        settings=None,
        calendars=calendars,
        definition="docs/metrics.md#time-in-state-status-team",
    )


def time_in_state(
    log: TicketLog, *, now: datetime | pd.Timestamp, calendars: Calendars | None = None
) -> Result[None]:
    """Time in each lifecycle state per ticket, one column per state (``frames.STATES``).

    With ``calendars`` the business times follow in columns ``business_<state>``. Tickets with no
    known state by ``now`` are left out.
    """
    now_ns = timestamp_ns(now)
    iv = log.intervals(FIELD_STATE)
    tk, code, _start, _end, dur, business = _durations(log, iv, now_ns, calendars)
    known = code >= 0
    seen = np.zeros(log.n_tickets, dtype=bool)
    seen[tk] = True
    tickets = np.flatnonzero(seen)
    position = np.cumsum(seen) - 1
    cell = code[known] * len(tickets) + position[tk[known]]
    parts = [log.keys_frame(tickets)]
    grids = [("", dur)] + ([("business_", business)] if business is not None else [])
    for prefix, values in grids:
        sums = exact_bincount(cell, values[known], len(tickets) * len(STATES))
        # one (tickets x states) block, laid out as pandas stores it: no copy per column
        block = sums.reshape(len(STATES), len(tickets)).view("timedelta64[ns]").T
        parts.append(pd.DataFrame(block, columns=[prefix + s for s in STATES]))
    frame = pd.concat(parts, axis=1)
    return Result(
        name="time_in_state",
        frame=frame,
        n=len(tickets),
        n_of="tickets with a known state by now",
        now=pd.Timestamp(now_ns, tz="UTC"),
        settings=None,
        calendars=calendars,
        definition="docs/metrics.md#time-in-state-status-team",
    )
