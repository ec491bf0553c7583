"""Time in each state, status, team or assignee per ticket (calendar and business time).

``TIS_i(v) = sum over the intervals of ticket i with value v of |interval ∩ [start, now]|``:
revisits add up, the interval still running is counted up to ``now``, and intervals that begin
after ``now`` do not count. Business time is the same sum measured in the work calendar of the
team that held the ticket during each interval (else the ticket's source, else the default).
"""

from __future__ import annotations

from dataclasses import dataclass
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
from analytics.stats import exact_bincount

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
) -> tuple[I64, I64, I64, I64, npt.NDArray[np.bool_], I64, I64 | None]:
    """Rows begun by ``now``: ticket, code, start, end (ended at ``now`` while running),
    running, duration, business."""
    if len(iv) and int(iv.start.max()) <= now:
        rows = None
        tk, code, start, raw_end = iv.ticket, iv.code, iv.start, iv.end
    else:
        rows = np.flatnonzero(iv.start <= now)
        tk, code, start, raw_end = iv.ticket[rows], iv.code[rows], iv.start[rows], iv.end[rows]
    running = raw_end > now
    running |= raw_end == NAT
    end = np.where(running, now, raw_end)
    dur = end - start
    business = None
    if calendars is not None:
        if iv.field == FIELD_TEAM:
            all_rows = np.arange(len(iv), dtype=np.int64) if rows is None else rows
            which = calendars.index_for(team=iv.value_of(all_rows), source=log.source[tk])
        else:
            which = calendar_index(log, calendars, tk, start)
        business = _interval_business(calendars, which, tk, start, end)
    return tk, code, start, end, running, dur, business


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


_BIG = np.iinfo(np.int64).max
_DENSE_SLACK = 1 << 16
"""a (ticket x value) table this much larger than twice the intervals is still cheap to fill"""


@dataclass(frozen=True)
class _Groups:
    """Totals per (ticket, value) group, groups in ascending key order."""

    key: I64
    time: I64
    business: I64 | None
    visits: I64
    first: I64
    last: I64
    """the latest end; NAT when an interval of the group is still running"""


def _dense_groups(
    key: I64,
    cells: int,
    *,
    dur: I64,
    start: I64,
    end: I64,
    running: npt.NDArray[np.bool_],
    business: I64 | None,
) -> _Groups:
    """Totals via a table with one cell per possible (ticket, value): no sort at all. The table
    only numbers the groups; the totals go straight into one slot per group."""
    visits = np.bincount(key, minlength=cells)
    present = visits > 0
    g_key = np.flatnonzero(present)  # nonzero of a bool array: several times faster
    group_of_cell = np.cumsum(present, dtype=np.int64)
    group_of_cell -= 1
    group = group_of_cell.take(key)
    n_groups = len(g_key)
    first = np.full(n_groups, _BIG, dtype=np.int64)
    np.minimum.at(first, group, start)
    last = np.full(n_groups, NAT, dtype=np.int64)
    np.maximum.at(last, group, end)
    last[group.take(np.flatnonzero(running))] = NAT
    return _Groups(
        key=g_key,
        time=exact_bincount(group, dur, n_groups),
        business=exact_bincount(group, business, n_groups) if business is not None else None,
        visits=visits.take(g_key).astype(np.int64, copy=False),
        first=first,
        last=last,
    )


def _sorted_groups(
    key: I64,
    *,
    dur: I64,
    start: I64,
    end: I64,
    running: npt.NDArray[np.bool_],
    business: I64 | None,
) -> _Groups:
    """Totals by sorting the keys: rows are in ticket order already, so a stable sort only
    reorders within tickets (timsort on nearly sorted data: far cheaper than hashing)."""
    order = np.argsort(key, kind="stable")
    ordered = key.take(order)
    if not len(order):
        heads = np.zeros(0, dtype=np.int64)
        return _Groups(heads, heads, None if business is None else heads, heads, heads, heads)
    heads = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    last = np.maximum.reduceat(end.take(order), heads)
    last[np.logical_or.reduceat(running.take(order), heads)] = NAT
    return _Groups(
        key=ordered.take(heads),
        time=np.add.reduceat(dur.take(order), heads),
        business=None if business is None else np.add.reduceat(business.take(order), heads),
        visits=np.diff(np.append(heads, len(order))).astype(np.int64),
        # the sort is stable: a group's first row is its earliest interval
        first=start.take(order).take(heads),
        last=last,
    )


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
    tk, code, start, end, running, dur, business = _durations(log, iv, now_ns, calendars)
    width = len(iv.values) + 1
    key = tk * width
    key += code
    key += 1
    # last_left: the latest end of the value's intervals, NaT when one is still running
    if log.n_tickets * width <= 2 * len(key) + _DENSE_SLACK:
        g = _dense_groups(
            key,
            log.n_tickets * width,
            dur=dur,
            start=start,
            end=end,
            running=running,
            business=business,
        )
    else:
        g = _sorted_groups(key, dur=dur, start=start, end=end, running=running, business=business)
    g_tk = g.key // width
    g_code = g.key - g_tk * width - 1
    columns: dict[str, object] = {
        **log.keys(g_tk),
        VALUE: text_of(iv.values, g_code),
        TIME: td(g.time),
    }
    if g.business is not None:
        columns[BUSINESS_TIME] = td(g.business)
    columns[VISITS] = g.visits
    columns[FIRST_ENTERED] = from_ns(g.first)
    columns[LAST_LEFT] = from_ns(g.last)
    frame = pd.DataFrame(columns, copy=False)
    return Result(
        name=f"time_in_{field}",
        frame=frame,
        n=int(np.count_nonzero(g_tk[1:] != g_tk[:-1])) + 1 if len(g_tk) else 0,
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
    tk, code, _start, _end, _running, dur, business = _durations(log, iv, now_ns, calendars)
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
