"""The open tickets as of ``now`` — state, team, assignee and since when — and text helpers.

Point-in-time questions (stale calls, blockers, workload) all start from the same snapshot: which
tickets are open at ``now`` and what their current state, team and assignee are. "Current" comes
from the intervals at ``now`` (not from the ticket row), so asking about an earlier ``now`` gives
the answer as it was then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from analytics.clock import BusinessSpan, Calendars, business_between
from analytics.facts import ticket_facts
from analytics.frames import (
    ASSIGNEE,
    FIELD_ASSIGNEE,
    FIELD_STATE,
    FIELD_TEAM,
    NAT,
    PRIORITY,
    STATE,
    STATES,
    TEAM,
    pick_or_none,
)
from analytics.log import TicketLog
from analytics.settings import FlowSettings

__all__ = ["Snapshot", "hours_text", "open_snapshot"]

I64 = npt.NDArray[np.int64]
Obj = npt.NDArray[np.object_]

_HOUR = 3_600_000_000_000
_DAY = 24 * _HOUR


@dataclass(frozen=True, eq=False)
class Snapshot:
    """The open tickets at ``now``; every array is aligned with ``rows``."""

    now: int
    rows: I64
    """ticket rows of the open tickets"""
    state: I64
    """state code (index into ``STATES``), -1 unknown"""
    state_since: I64
    team: Obj
    team_since: I64
    assignee: Obj
    assignee_since: I64
    assignee_tracked: npt.NDArray[np.bool_]
    """the ticket's source records assignees (some ticket of it has one)"""
    priority: I64
    """1-5, 0 unknown"""
    calendar: npt.NDArray[np.int8]

    def business_since(self, calendars: Calendars, since: I64) -> I64:
        """Business time from ``since`` to ``now`` per row, in each ticket's calendar."""
        return business_between(
            calendars, self.calendar, since, np.full(len(since), self.now, dtype=np.int64)
        )


def open_snapshot(log: TicketLog, *, now: int, calendars: Calendars) -> Snapshot:
    """The open tickets at ``now`` (cached per log, ``now`` and calendars)."""
    key = (now, calendars)
    cache: dict[object, Snapshot] = log.__dict__.setdefault("_snapshots", {})
    if key not in cache:
        cache[key] = _snapshot(log, now, calendars)
    return cache[key]


def _snapshot(log: TicketLog, now: int, calendars: Calendars) -> Snapshot:
    facts = ticket_facts(log, now=now, settings=FlowSettings())
    rows = np.flatnonzero(facts.is_open)
    at_now = np.full(len(rows), now, dtype=np.int64)
    st = log.intervals(FIELD_STATE)
    srow = facts.state_row[rows]
    tm = log.intervals(FIELD_TEAM)
    trow = tm.at(rows, at_now)
    asg = log.intervals(FIELD_ASSIGNEE)
    arow = asg.at(rows, at_now)
    team = tm.value_of(trow)
    sources = log.source
    with_assignee = np.zeros(log.n_tickets, dtype=bool)
    with_assignee[asg.ticket[asg.code >= 0]] = True
    tracked_sources = pd.unique(sources[with_assignee])
    tracked = np.isin(sources[rows], np.asarray(tracked_sources, dtype=object))
    return Snapshot(
        now=now,
        rows=rows,
        state=np.where(srow >= 0, st.code[np.maximum(srow, 0)], -1),
        state_since=np.where(srow >= 0, st.start[np.maximum(srow, 0)], NAT),
        team=team,
        team_since=np.where(trow >= 0, tm.start[np.maximum(trow, 0)], NAT),
        assignee=asg.value_of(arow),
        assignee_since=np.where(arow >= 0, asg.start[np.maximum(arow, 0)], NAT),
        assignee_tracked=tracked,
        priority=log.priority[rows],
        calendar=calendars.index_for(team=team, source=sources[rows]),
    )


def context_frame(log: TicketLog, snap: Snapshot, pick: I64) -> pd.DataFrame:
    """Key and context columns (priority, state, team, assignee) of snapshot rows ``pick``."""
    frame = log.keys_frame(snap.rows[pick])
    prio = pd.Series(snap.priority[pick])
    frame[PRIORITY] = prio.where(prio > 0).astype("Int64").to_numpy()
    frame[STATE] = pick_or_none(np.array(STATES, dtype=object), snap.state[pick])
    frame[TEAM] = snap.team[pick]
    frame[ASSIGNEE] = snap.assignee[pick]
    return frame


def hours_text(ns: I64) -> pd.Series:
    """Durations as short text: ``"45 min"``, ``"3.5 h"``, ``"2.1 d"`` (vectorised)."""
    values = pd.Series(np.asarray(ns, dtype=np.float64))
    minutes = (values / 60e9).round(0).astype("Int64").astype(str) + " min"
    hours = (values / _HOUR).round(1).astype(str) + " h"
    days = (values / _DAY).round(1).astype(str) + " d"
    out = minutes.where(values < _HOUR, hours.where(values < 2 * _DAY, days))
    return out.where(values >= 0, "-")


def business_text(ns: I64) -> pd.Series:
    """Business durations as hours of working time: ``"12.5 business h"``."""
    values = pd.Series(np.asarray(ns, dtype=np.float64))
    return (values / _HOUR).round(1).astype(str) + " business h"


def priority_text(priority: I64) -> pd.Series:
    p = pd.Series(priority)
    return ("P" + p.astype(str)).where(p > 0, "no priority")


def thresholds_ns(
    table: Mapping[int, BusinessSpan],
    default: BusinessSpan,
    priority: I64,
    calendars: Calendars,
    calendar: npt.NDArray[np.int8],
) -> I64:
    """Per row: the business span of its priority (``default`` when unknown), in ns of its
    calendar."""
    days = np.full(len(priority), default.days, dtype=np.float64)
    hours = np.full(len(priority), default.hours, dtype=np.float64)
    for prio, span in table.items():
        days[priority == prio] = span.days
        hours[priority == prio] = span.hours
    return np.round(days * calendars.day_ns(calendar) + hours * _HOUR).astype(np.int64)


__all__ += ["business_text", "context_frame", "priority_text", "thresholds_ns"]
