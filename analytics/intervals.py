"""Intervals: the runs of one field (state, status, team, assignee) per ticket.

Rules (docs/metrics.md, "Intervals"):

- Consecutive events of a field with the same value are one interval (a run); ``events`` counts
  them. A missing value (``None``: unassigned, no team) is a value of its own.
- An interval ends where the next different value of the same field starts; the last one is open
  (``end`` is NaT) and metrics end it at ``now``. Two changes at the same instant give a
  zero-length interval for the first (events are ordered by time, ``seq``, input order).
- A ticket with no events of a field gets one *derived* interval holding the ticket's current value
  (the ``state``, ``raw_status``, ``team`` or ``assignee`` column) from its creation; for a ticket
  that is resolved / closed / cancelled the derived state interval starts at ``resolved_at``
  (``closed_at`` when there is no ``resolved_at``), because nothing is known about its earlier
  states. Derived intervals are flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from analytics.frames import (
    ASSIGNEE,
    CLOSED_AT,
    DONE_STATES,
    FIELD_ASSIGNEE,
    FIELD_STATE,
    FIELD_STATUS,
    FIELD_TEAM,
    FIELDS,
    NAT,
    RAW_STATUS,
    RESOLVED_AT,
    SOURCE,
    STATE,
    STATES,
    TEAM,
    TICKET_ID,
    codes_in,
    from_ns,
    pick_or_none,
)

if TYPE_CHECKING:
    from analytics.log import TicketLog

__all__ = [
    "FIELDS_WITH_INTERVALS",
    "INTERVAL_COLUMNS",
    "Intervals",
    "build_intervals",
    "field_intervals",
    "segmented_last_le",
]

I64 = npt.NDArray[np.int64]
Obj = npt.NDArray[np.object_]

# columns of the public interval frame
VALUE = "value"
START = "start"
END = "end"
EVENTS = "events"
DERIVED = "derived"
INTERVAL_COLUMNS = (SOURCE, TICKET_ID, VALUE, START, END, EVENTS, DERIVED)

_TICKET_VALUE_COLUMN = {
    FIELD_STATE: STATE,
    FIELD_STATUS: RAW_STATUS,
    FIELD_TEAM: TEAM,
    FIELD_ASSIGNEE: ASSIGNEE,
}
FIELDS_WITH_INTERVALS = tuple(_TICKET_VALUE_COLUMN)


@dataclass(frozen=True, eq=False)
class Intervals:
    """The runs of one field per ticket, sorted by ticket then start (numpy arrays).

    ``code`` indexes ``values``; -1 means the value was missing (``None``). For the state field
    ``values`` is ``frames.STATES`` (an unknown state gets -1).
    """

    field: str
    ticket: I64
    code: I64
    values: Obj
    start: I64
    end: I64
    """NAT where no later change is known (open)"""
    events: I64
    derived: npt.NDArray[np.bool_]
    offsets: I64
    """rows of ticket ``k`` are ``offsets[k]:offsets[k + 1]``"""

    def __len__(self) -> int:
        return len(self.ticket)

    def clipped_end(self, now: int) -> I64:
        """End of each interval, open ones (and ones running past ``now``) ended at ``now``."""
        end = np.where(self.end == NAT, now, self.end)
        return np.minimum(end, now)

    def at(self, tickets: I64, instants: I64) -> I64:
        """Row of the interval each ``(ticket, instant)`` falls in (the last start <= instant).

        -1 where the ticket has no interval starting at or before the instant.
        """
        return segmented_last_le(self.offsets, self.start, tickets, instants)

    def current(self, now: int) -> I64:
        """For every ticket, the row of its interval at ``now`` (-1: none yet)."""
        n = len(self.offsets) - 1
        return self.at(np.arange(n, dtype=np.int64), np.full(n, now, dtype=np.int64))

    def value_of(self, rows: I64) -> Obj:
        """The value at each row (None for -1 rows and missing values)."""
        codes = np.where(rows >= 0, self.code[np.maximum(rows, 0)], -1)
        return pick_or_none(self.values, codes)


def segmented_last_le(offsets: I64, keys: I64, tickets: I64, instants: I64) -> I64:
    """Per query, the last row in the ticket's segment whose key is <= instant, else -1.

    ``keys`` is sorted within each segment ``offsets[k]:offsets[k+1]``. A vectorised binary
    search: one numpy pass per halving of the longest segment.
    """
    lo = offsets[tickets].copy()
    hi = offsets[tickets + 1].copy()
    first = lo.copy()
    active = lo < hi
    while active.any():
        idx = np.flatnonzero(active)
        mid = (lo[idx] + hi[idx]) // 2
        go = keys[mid] <= instants[idx]
        lo[idx] = np.where(go, mid + 1, lo[idx])
        hi[idx] = np.where(go, hi[idx], mid)
        active[idx] = lo[idx] < hi[idx]
    return np.where(lo > first, lo - 1, -1)


def _factorize(values: Obj) -> tuple[I64, Obj]:
    codes, uniques = pd.factorize(values)
    return np.asarray(codes, dtype=np.int64), np.asarray(uniques, dtype=object)


def _merge_sorted(a_keys: I64, b_keys: I64) -> tuple[I64, I64]:
    """Positions of rows of ``a`` and ``b`` (each sorted) in their sorted union; ``b`` first on
    equal keys."""
    b_pos = np.searchsorted(a_keys, b_keys, side="left") + np.arange(len(b_keys))
    is_b = np.zeros(len(a_keys) + len(b_keys), dtype=bool)
    is_b[b_pos] = True
    a_pos = np.flatnonzero(~is_b)
    return a_pos, b_pos


def build_intervals(log: TicketLog, field: str) -> Intervals:
    """The intervals of ``field`` for every ticket of ``log`` (use ``TicketLog.intervals``, which
    caches them)."""
    of_field = log.ev_field == FIELDS.index(field)
    if bool(of_field.all()):  # a log of this field only: no copies
        rows = None
        tk, tm = log.ev_ticket, log.ev_time
    else:
        rows = np.flatnonzero(of_field)
        tk, tm = log.ev_ticket.take(rows), log.ev_time.take(rows)

    if rows is None:
        has = log.ev_offsets[1:] > log.ev_offsets[:-1]
    else:
        has = np.zeros(log.n_tickets, dtype=bool)
        has[tk] = True
    missing = np.flatnonzero(~has)
    if len(missing):
        d_raw = log.text(_TICKET_VALUE_COLUMN[field]).take(missing)
    else:
        d_raw = np.zeros(0, dtype=object)
    created = log.created[missing] if len(missing) else np.zeros(0, dtype=np.int64)
    if field == FIELD_STATE and len(missing):
        d_start = created.copy()
        resolved = log.column_ns(RESOLVED_AT)[missing]
        closed = log.column_ns(CLOSED_AT)[missing]
        done_at = np.where(resolved != NAT, resolved, closed)
        is_done = np.isin(d_raw, list(DONE_STATES)) & (done_at != NAT)
        d_start[is_done] = done_at[is_done]
    else:
        d_start = created
    usable = d_start != NAT
    missing, d_raw, d_start = missing[usable], d_raw[usable], d_start[usable]

    if field == FIELD_STATE:
        values = np.array(STATES, dtype=object)
        codes = log.ev_values.codes_in(STATES, rows)
        d_codes = codes_in(d_raw, STATES) if len(d_raw) else np.zeros(0, dtype=np.int64)
    else:
        codes, values = log.ev_values.factorize(rows)
        d_codes, d_values = _factorize(d_raw) if len(d_raw) else (np.zeros(0, np.int64), values[:0])
        if len(d_values):
            pos = pd.Index(values, dtype=object).get_indexer(pd.Index(d_values, dtype=object))
            new = np.flatnonzero(pos < 0)
            pos[new] = len(values) + np.arange(len(new))
            values = np.concatenate([values, d_values[new]])
            d_codes = np.where(d_codes >= 0, pos[np.maximum(d_codes, 0)], -1)

    keep = np.ones(len(tk), dtype=bool)
    new_ticket = tk[1:] != tk[:-1]
    if len(tk):
        np.not_equal(codes[1:], codes[:-1], out=keep[1:])
        keep[1:] |= new_ticket
    kept = np.flatnonzero(keep)
    if len(kept) == len(tk):  # no repeated values: every event starts an interval
        r_tk, r_code, r_start = tk, codes, tm
        r_events = np.ones(len(tk), dtype=np.int64)
    else:
        r_tk, r_code, r_start = tk.take(kept), codes.take(kept), tm.take(kept)
        r_events = np.diff(np.append(kept, len(tk))).astype(np.int64)
        new_ticket = r_tk[1:] != r_tk[:-1]
    r_end = np.full(len(kept), NAT, dtype=np.int64)
    if len(kept):
        r_end[:-1] = np.where(new_ticket, NAT, r_start[1:])

    if not len(missing):
        if rows is None and len(r_tk) == len(tk):  # one interval per event
            offsets = log.ev_offsets
        else:
            counts = np.bincount(r_tk, minlength=log.n_tickets)
            offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return Intervals(
            field=field,
            ticket=r_tk,
            code=r_code,
            values=values,
            start=r_start,
            end=r_end,
            events=r_events,
            derived=np.zeros(len(r_tk), dtype=bool),
            offsets=offsets,
        )
    size = len(kept) + len(missing)
    a_pos, b_pos = _merge_sorted(r_tk, missing.astype(np.int64))
    ticket = np.empty(size, dtype=np.int64)
    code = np.empty(size, dtype=np.int64)
    start = np.empty(size, dtype=np.int64)
    end = np.empty(size, dtype=np.int64)
    events = np.empty(size, dtype=np.int64)
    derived = np.zeros(size, dtype=bool)
    ticket[a_pos], ticket[b_pos] = r_tk, missing
    code[a_pos], code[b_pos] = r_code, d_codes
    start[a_pos], start[b_pos] = r_start, d_start
    end[a_pos], end[b_pos] = r_end, NAT
    events[a_pos], events[b_pos] = r_events, 0
    derived[b_pos] = True
    counts = np.bincount(ticket, minlength=log.n_tickets)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return Intervals(
        field=field,
        ticket=ticket,
        code=code,
        values=values,
        start=start,
        end=end,
        events=events,
        derived=derived,
        offsets=offsets,
    )


def field_intervals(log: TicketLog, field: str) -> pd.DataFrame:
    """The intervals of ``field`` as a frame (``INTERVAL_COLUMNS``), sorted by ticket and start.

    ``end`` is NaT for the interval still running; ``events`` is how many events the run merges
    (0 for a derived interval, see the module docstring).
    """
    iv = log.intervals(field)
    frame = log.keys_frame(iv.ticket)
    frame[VALUE] = iv.value_of(np.arange(len(iv), dtype=np.int64))
    frame[START] = from_ns(iv.start)
    frame[END] = from_ns(iv.end)
    frame[EVENTS] = iv.events
    frame[DERIVED] = iv.derived
    return frame
