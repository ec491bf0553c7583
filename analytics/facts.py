"""Per-ticket flow facts as of ``now``: current state, start, stops, reopens, lead and cycle time.

Start and stop (docs/metrics.md "Start, stop and reopens"):

- *created*: see ``analytics.log`` (the earlier of ``created_at`` and the first event).
- *start*: the first entry into a start state (``FlowSettings.start_states``, default
  ``in_progress``): the commitment point of the cycle time.
- *stop*: entry into a done state (resolved, closed, cancelled) **and still done at ``now``**: the
  start of the final run of done states. A ticket that is reopened is no longer stopped.
- *reopen*: a move from a done state back to an open one.

Reopen policy (``FlowSettings.reopen_policy``):

- ``last_stop`` (default): lead time = final stop - created; cycle time = final stop - first
  start. The time the ticket spent "resolved" before it was reopened counts, because the customer
  was not served during it.
- ``sum_of_cycles``: each stop closes a cycle; a cycle begins at creation (the first) or at the
  reopen; lead time = sum of (stop - cycle begin); cycle time = sum of (stop - first start state
  entry within the cycle). Time spent resolved between cycles is left out.

Only events at or before ``now`` count: the facts are the ticket's history as known at ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analytics.clock import Calendars, business_between
from analytics.frames import DONE_STATES, FIELD_STATE, FIELD_TEAM, NAT, SOURCE, STATES, TEAM
from analytics.intervals import Intervals
from analytics.log import TicketLog
from analytics.settings import FlowSettings

__all__ = ["Facts", "calendar_index", "state_codes", "ticket_facts"]

I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]

DONE_CODE = np.array([s in DONE_STATES for s in STATES])


def state_table(states: frozenset[str] | set[str]) -> B:
    """Membership by state code; one extra False at the end so that code -1 maps to False."""
    return np.array([s in states for s in STATES] + [False])


_DONE_TABLE = state_table(DONE_STATES)


def state_codes(states: frozenset[str] | set[str]) -> I64:
    return np.array([STATES.index(s) for s in sorted(states)], dtype=np.int64)


def is_done_code(code: I64) -> B:
    done: B = _DONE_TABLE[code]
    return done


@dataclass(frozen=True, eq=False)
class Facts:
    """Arrays over all tickets of the log (index = ticket row)."""

    now: int
    created: I64
    exists: B
    """created at or before ``now``"""
    state_row: I64
    """row of the current state interval (-1: no state known at ``now``)"""
    state: I64
    """current state code (index into ``STATES``; -1 unknown)"""
    is_open: B
    """exists and not in a done state"""
    first_start: I64
    first_stop: I64
    final_stop: I64
    """start of the final done run, NAT while open"""
    reopens: I64
    lead: I64
    """lead time (ns) by the reopen policy; NAT while not stopped"""
    cycle: I64
    """cycle time (ns) by the reopen policy; NAT while not stopped or never started"""
    seg_ticket: I64
    """completed cycles (for business-time versions): ticket, lead begin, cycle begin, stop"""
    seg_begin: I64
    seg_start: I64
    seg_stop: I64


def _firsts(keys: I64) -> B:
    out = np.ones(len(keys), dtype=bool)
    if len(keys):
        out[1:] = keys[1:] != keys[:-1]
    return out


def ticket_facts(log: TicketLog, *, now: int, settings: FlowSettings) -> Facts:
    """The facts of every ticket as of ``now`` (cached per log, ``now`` and policy)."""
    key = (now, settings.start_states, settings.reopen_policy)
    cache: dict[object, Facts] = log.__dict__.setdefault("_facts", {})
    if key not in cache:
        cache[key] = _facts(log, now, settings)
    return cache[key]


def _facts(log: TicketLog, now: int, settings: FlowSettings) -> Facts:
    iv = log.intervals(FIELD_STATE)
    n = log.n_tickets
    created = log.created
    exists = (created != NAT) & (created <= now)

    if len(iv) and int(iv.start.max()) <= now:
        rows = np.arange(len(iv), dtype=np.int64)
        tk, code, start = iv.ticket, iv.code, iv.start
    else:
        rows = np.flatnonzero(iv.start <= now)
        tk, code, start = iv.ticket[rows], iv.code[rows], iv.start[rows]
    done = is_done_code(code)
    first_row = _firsts(tk)
    last_row = np.ones(len(tk), dtype=bool)
    if len(tk):
        last_row[:-1] = tk[1:] != tk[:-1]
    prev_done = np.zeros(len(tk), dtype=bool)
    prev_done[1:] = done[:-1]
    prev_done &= ~first_row

    state_row = np.full(n, -1, dtype=np.int64)
    state_row[tk[last_row]] = rows[last_row]
    state = np.where(state_row >= 0, iv.code[np.maximum(state_row, 0)], -1)
    is_open = exists & ~is_done_code(state)

    is_start = state_table(settings.start_states)[code]
    first_start = _first_per_ticket(n, tk, start, is_start)
    first_stop = _first_per_ticket(n, tk, start, done)

    new_run = first_row | (done != prev_done)
    run_first = np.maximum.accumulate(np.where(new_run, np.arange(len(tk)), 0))
    final_stop = np.full(n, NAT, dtype=np.int64)
    ends_done = last_row & done
    final_stop[tk[ends_done]] = start[run_first[ends_done]]

    reopen = ~done & prev_done
    reopens = np.bincount(tk[reopen], minlength=n).astype(np.int64)

    stopped = final_stop != NAT
    lead = np.full(n, NAT, dtype=np.int64)
    cycle = np.full(n, NAT, dtype=np.int64)
    if settings.reopen_policy == "sum_of_cycles":
        segs = _cycles(tk, start, created, first_row, reopen, is_start, done & new_run)
        s_ticket, s_begin, s_start, s_stop = segs
        # only tickets stopped now count; every cycle of theirs has a stop
        keep = (s_stop != NAT) & stopped[np.maximum(s_ticket, 0)]
        s_ticket, s_begin, s_start, s_stop = (a[keep] for a in segs)
        lead = _sum_per_ticket(n, s_ticket, s_stop - s_begin)
        lead[~stopped] = NAT
        has_start = s_start != NAT
        cycle = _sum_per_ticket(n, s_ticket[has_start], s_stop[has_start] - s_start[has_start])
        ever = np.zeros(n, dtype=bool)
        ever[s_ticket[has_start]] = True
        cycle[~stopped | ~ever] = NAT
    else:
        lead[stopped] = final_stop[stopped] - created[stopped]
        started = stopped & (first_start != NAT)
        cycle[started] = final_stop[started] - first_start[started]
        s_ticket = np.flatnonzero(stopped).astype(np.int64)
        s_begin, s_start, s_stop = created[s_ticket], first_start[s_ticket], final_stop[s_ticket]
    return Facts(
        now=now,
        created=created,
        exists=exists,
        state_row=state_row,
        state=state,
        is_open=is_open,
        first_start=first_start,
        first_stop=first_stop,
        final_stop=final_stop,
        reopens=reopens,
        lead=lead,
        cycle=cycle,
        seg_ticket=s_ticket,
        seg_begin=s_begin,
        seg_start=s_start,
        seg_stop=s_stop,
    )


def _cycles(
    tk: I64,
    start: I64,
    created: I64,
    first_row: B,
    reopen: B,
    is_start: B,
    is_stop: B,
) -> tuple[I64, I64, I64, I64]:
    """Cycles: from the ticket's first state (or a reopen) to the next reopen. Per cycle: its
    ticket, when it began, its first start-state entry and its stop (NAT where none)."""
    seg = np.cumsum(first_row | reopen) - 1
    n_seg = int(seg[-1]) + 1 if len(seg) else 0
    seg_ticket = np.full(n_seg, -1, dtype=np.int64)
    seg_ticket[seg] = tk
    seg_begin = np.full(n_seg, NAT, dtype=np.int64)
    seg_first = _firsts(seg)
    seg_begin[seg[seg_first]] = np.where(
        first_row[seg_first], created[tk[seg_first]], start[seg_first]
    )
    seg_start = np.full(n_seg, NAT, dtype=np.int64)
    starts = np.flatnonzero(is_start)
    firsts = starts[_firsts(seg[starts])]
    seg_start[seg[firsts]] = start[firsts]
    seg_stop = np.full(n_seg, NAT, dtype=np.int64)
    stop_rows = np.flatnonzero(is_stop)
    seg_stop[seg[stop_rows]] = start[stop_rows]
    return seg_ticket, seg_begin, seg_start, seg_stop


def _first_per_ticket(n: int, tk: I64, values: I64, mask: B) -> I64:
    out = np.full(n, NAT, dtype=np.int64)
    rows = np.flatnonzero(mask)
    firsts = rows[_firsts(tk[rows])]
    out[tk[firsts]] = values[firsts]
    return out


def _sum_per_ticket(n: int, tickets: I64, values: I64) -> I64:
    """Exact int64 sums per ticket (``tickets`` sorted); 0 for tickets without rows."""
    out = np.zeros(n, dtype=np.int64)
    if len(tickets):
        heads = np.flatnonzero(_firsts(tickets))
        out[tickets[heads]] = np.add.reduceat(values, heads)
    return out


def sum_per_ticket(n: int, tickets: I64, values: I64) -> I64:
    """Exact int64 sums of ``values`` per ticket; ``tickets`` must be sorted."""
    return _sum_per_ticket(n, tickets, values)


def calendar_index(
    log: TicketLog, calendars: Calendars, tickets: I64, instants: I64 | None = None
) -> npt.NDArray[np.int8]:
    """Calendar of each ticket: by the team holding it at ``instants`` (its current team column
    when ``None``), else by its source."""
    if len(calendars.all()) == 1:
        return np.zeros(len(tickets), dtype=np.int8)
    if instants is None or not calendars.by_team:
        team = log.column(TEAM)[tickets]
    else:
        teams: Intervals = log.intervals(FIELD_TEAM)
        team = teams.value_of(teams.at(tickets, instants))
    return calendars.index_for(team=team, source=log.column(SOURCE)[tickets])


def business_segments(log: TicketLog, calendars: Calendars, facts: Facts) -> tuple[I64, I64]:
    """Business-time lead and cycle per ticket (NAT where the calendar ones are NAT; cached)."""
    key = (id(facts), calendars)
    cache: dict[object, tuple[Facts, tuple[I64, I64]]] = log.__dict__.setdefault(
        "_business_segments", {}
    )
    if key not in cache or cache[key][0] is not facts:
        cache[key] = (facts, _business_segments(log, calendars, facts))
    return cache[key][1]


def _business_segments(log: TicketLog, calendars: Calendars, facts: Facts) -> tuple[I64, I64]:
    n = log.n_tickets
    which = calendar_index(log, calendars, facts.seg_ticket, facts.seg_stop)
    lead_b = business_between(calendars, which, facts.seg_begin, facts.seg_stop)
    cyc_b = business_between(calendars, which, facts.seg_start, facts.seg_stop)
    lead = _sum_per_ticket(n, facts.seg_ticket, np.where(lead_b == NAT, 0, lead_b))
    cyc = _sum_per_ticket(n, facts.seg_ticket, np.where(cyc_b == NAT, 0, cyc_b))
    lead[facts.lead == NAT] = NAT
    cyc[facts.cycle == NAT] = NAT
    return lead, cyc
