"""The prepared ticket log: tickets and their events, matched, checked and sorted once.

Every metric needs the same groundwork: find each event's ticket, order the events by ticket,
time and ``seq``, and turn the changes of one field into intervals ("in state X from t1 to t2").
``prepare_log(tickets, events)`` does it once; ``TicketLog.intervals(field)`` builds (and caches)
the intervals of one field. Both are pure: the inputs are never modified and ``now`` plays no part,
so one prepared log answers questions for any ``now``.

Rules (docs/metrics.md, "Intervals"):

- Events are ordered by ``occurred_at`` then ``seq`` then input order; ties are kept, so two
  changes at the same instant give a zero-length interval for the first.
- Consecutive events of a field with the same value are one interval (a run); ``events`` counts
  them. A missing value (``None``: unassigned, no team) is a value of its own.
- An interval ends where the next different value of the same field starts; the last one is open
  (``end`` is NaT) and metrics end it at ``now``.
- A ticket with no events of a field gets one *derived* interval holding the ticket's current value
  (the ``state``, ``raw_status``, ``team`` or ``assignee`` column) from its creation; for a ticket
  that is resolved / closed / cancelled the derived state interval starts at ``resolved_at``
  (``closed_at`` when there is no ``resolved_at``), because nothing is known about its earlier
  states. Derived intervals are flagged.
- A ticket's ``created`` instant is the earlier of ``created_at`` and its first event (logs where
  the first activity precedes the recorded open time exist, e.g. BPIC 2014).
- Events whose ticket is not in the ticket frame, or whose time is missing, or whose field is not
  a known field are left out and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
import pandas as pd

from analytics.errors import InvalidInputError
from analytics.frames import (
    ACTOR,
    ASSIGNEE,
    CATEGORY,
    CLOSED_AT,
    CREATED_AT,
    DONE_STATES,
    DUE_AT,
    EXTERNAL_ID,
    FIELD,
    FIELD_ASSIGNEE,
    FIELD_STATE,
    FIELD_STATUS,
    FIELD_TEAM,
    FIELDS,
    NAT,
    NEW_VALUE,
    OCCURRED_AT,
    PRIORITY,
    RAW_STATUS,
    REQUESTER,
    RESOLVED_AT,
    SEQ,
    SOURCE,
    STATE,
    STATES,
    TEAM,
    TICKET_ID,
    codes_in,
    from_ns,
    objects,
    pick_or_none,
    require_columns,
    text,
    to_ns,
)

__all__ = ["INTERVAL_COLUMNS", "Intervals", "TicketLog", "prepare_log"]

I64 = npt.NDArray[np.int64]
Obj = npt.NDArray[np.object_]

TICKET_INPUT_COLUMNS = (
    SOURCE,
    EXTERNAL_ID,
    STATE,
    RAW_STATUS,
    PRIORITY,
    CATEGORY,
    TEAM,
    ASSIGNEE,
    REQUESTER,
    CREATED_AT,
    RESOLVED_AT,
    CLOSED_AT,
    DUE_AT,
)
EVENT_INPUT_COLUMNS = (SOURCE, TICKET_ID, OCCURRED_AT, SEQ, FIELD, NEW_VALUE, ACTOR)

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
_DONE_CODES = np.array([s in DONE_STATES for s in STATES])


def _objects(series: pd.Series) -> Obj:
    return objects(series)


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


@dataclass(frozen=True, eq=False)
class TicketLog:
    """Tickets and their events, matched and sorted; build it with ``prepare_log``.

    ``tickets`` keeps the input's ticket columns the analytics use, indexed 0..n-1; a ticket is
    referred to by that position everywhere inside the analytics. The event arrays are sorted by
    ticket, time, ``seq`` and input order.
    """

    tickets: pd.DataFrame
    ev_ticket: I64
    ev_time: I64
    ev_field: npt.NDArray[np.int8]
    """index into ``frames.FIELDS``"""
    ev_value: Obj
    ev_actor: Obj
    ev_offsets: I64
    """events of ticket ``k`` are ``ev_offsets[k]:ev_offsets[k + 1]``"""
    dropped_events: dict[str, int]

    @property
    def n_tickets(self) -> int:
        return len(self.tickets)

    @cached_property
    def created(self) -> I64:
        """Creation instant per ticket: the earlier of ``created_at`` and the first event."""
        created = to_ns(self.tickets[CREATED_AT], name=CREATED_AT)
        first = np.full(self.n_tickets, NAT, dtype=np.int64)
        has = self.ev_offsets[1:] > self.ev_offsets[:-1]
        first[has] = self.ev_time[self.ev_offsets[:-1][has]]
        both = (created != NAT) & (first != NAT)
        out = np.where(created == NAT, first, created)
        out[both] = np.minimum(created[both], first[both])
        return out

    def column_ns(self, column: str) -> I64:
        return to_ns(self.tickets[column], name=column)

    def column(self, column: str) -> Obj:
        return _objects(self.tickets[column])

    @cached_property
    def source(self) -> Obj:
        return self.column(SOURCE)

    @cached_property
    def ticket_id(self) -> Obj:
        return self.column(EXTERNAL_ID)

    @cached_property
    def priority(self) -> I64:
        """Priority 1-5 per ticket, 0 where unknown."""
        values = pd.to_numeric(self.tickets[PRIORITY], errors="coerce")
        return np.asarray(values.fillna(0).to_numpy(), dtype=np.int64)

    def keys_frame(self, rows: I64) -> pd.DataFrame:
        """``source`` and ``ticket_id`` of the given ticket rows (the leading output columns)."""
        return pd.DataFrame(self.keys(rows), copy=False)

    def keys(self, rows: I64) -> dict[str, object]:
        """``source`` and ``ticket_id`` of the given ticket rows, as output columns."""
        return {SOURCE: text(self.source[rows]), TICKET_ID: text(self.ticket_id[rows])}

    def intervals(self, field: str) -> Intervals:
        """The runs of ``field`` (state, status, team or assignee) per ticket (cached)."""
        if field not in _TICKET_VALUE_COLUMN:
            raise InvalidInputError(
                f"intervals exist for fields {sorted(_TICKET_VALUE_COLUMN)}, not `{field}`"
            )
        cache: dict[str, Intervals] = self.__dict__.setdefault("_intervals", {})
        if field not in cache:
            cache[field] = _build_intervals(self, field)
        return cache[field]

    def field_rows(self, fields: tuple[str, ...]) -> I64:
        """Event rows (sorted) of the given fields."""
        codes = np.array([FIELDS.index(f) for f in fields], dtype=np.int8)
        return np.flatnonzero(np.isin(self.ev_field, codes))


def prepare_log(tickets: pd.DataFrame, events: pd.DataFrame) -> TicketLog:
    """Match events to tickets, check them and sort them by ticket, time and ``seq``.

    Args:
        tickets: the canonical ticket frame (``connectors.base.TICKET_COLUMNS``).
        events: the canonical event frame (``connectors.base.EVENT_COLUMNS``), in any order.

    Raises:
        MissingColumnsError: a frame lacks a column the analytics need.
        InvalidInputError: duplicate ``(source, external_id)``; times that are not UTC datetimes.
    """
    require_columns(tickets, TICKET_INPUT_COLUMNS, frame="tickets")
    require_columns(events, EVENT_INPUT_COLUMNS, frame="events")
    ticket_frame = tickets[list(TICKET_INPUT_COLUMNS)]
    if not isinstance(ticket_frame.index, pd.RangeIndex) or ticket_frame.index.start != 0:
        ticket_frame = ticket_frame.reset_index(drop=True)
    for col in (CREATED_AT, RESOLVED_AT, CLOSED_AT, DUE_AT):
        if not isinstance(ticket_frame[col].dtype, pd.DatetimeTZDtype):
            to_ns(ticket_frame[col], name=col)  # raises unless the column is all missing
    t_src, t_id = _objects(ticket_frame[SOURCE]), _objects(ticket_frame[EXTERNAL_ID])
    n_tickets = len(ticket_frame)

    e_src, e_id = _objects(events[SOURCE]), _objects(events[TICKET_ID])
    ticket, same = _match(t_src, t_id, e_src, e_id)
    time = to_ns(events[OCCURRED_AT], name=OCCURRED_AT)
    field = codes_in(_objects(events[FIELD]), FIELDS).astype(np.int8)
    seq_col = events[SEQ]
    if seq_col.dtype.kind in "iu":
        seq = np.asarray(seq_col.to_numpy(), dtype=np.int64)
    else:
        seq = np.asarray(pd.to_numeric(seq_col).fillna(0).to_numpy(), dtype=np.int64)

    clean = len(ticket) == 0 or (
        int(ticket.min()) >= 0 and int(time.min()) != NAT and int(field.min()) >= 0
    )
    dropped: dict[str, int] = {}
    if clean:
        order = np.arange(len(ticket), dtype=np.int64)
    else:
        dropped = {
            "unknown ticket": int((ticket < 0).sum()),
            "missing time": int(((ticket >= 0) & (time == NAT)).sum()),
            "unknown field": int(((ticket >= 0) & (time != NAT) & (field < 0)).sum()),
        }
        order = np.flatnonzero((ticket >= 0) & (time != NAT) & (field >= 0))
    if len(order) != len(ticket):
        ticket, time, field, seq = ticket[order], time[order], field[order], seq[order]
        same = None
    if not _is_sorted(ticket, time, seq, same):
        resort = np.lexsort((seq, time, ticket))
        order = order[resort]
        ticket, time, field = ticket[resort], time[resort], field[resort]
    value = _objects(events[NEW_VALUE])
    actor = _objects(events[ACTOR])
    if (
        len(order) != len(value)
        or not bool((order[1:] > order[:-1]).all())
        or (len(order) and order[0] != 0)
    ):
        value, actor = value[order], actor[order]
    counts = np.bincount(ticket, minlength=n_tickets)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return TicketLog(
        tickets=ticket_frame,
        ev_ticket=ticket.astype(np.int64, copy=False),
        ev_time=time,
        ev_field=field,
        ev_value=value,
        ev_actor=actor,
        ev_offsets=offsets,
        dropped_events={k: v for k, v in dropped.items() if v},
    )


def _is_sorted(ticket: I64, time: I64, seq: I64, same: npt.NDArray[np.bool_] | None = None) -> bool:
    """Whether rows are ordered by ticket, time and seq (cheap: a few passes, no sort).

    ``same`` (row i+1 has the ticket of row i), when given, says the tickets are known to be in
    order already.
    """
    if len(ticket) < 2:
        return True
    if same is None:
        if not bool((ticket[1:] >= ticket[:-1]).all()):
            return False
        same = ticket[1:] == ticket[:-1]
    back = time[1:] < time[:-1]
    back &= same
    if bool(back.any()):
        return False
    ties = time[1:] == time[:-1]
    ties &= same
    tie_rows = np.flatnonzero(ties)
    return bool((seq[tie_rows + 1] >= seq[tie_rows]).all())


def _heads(*columns: Obj) -> npt.NDArray[np.bool_]:
    """True where a row starts a new run of equal keys."""
    n = len(columns[0])
    change = np.zeros(n, dtype=bool)
    if n:
        change[0] = True
        for col in columns:
            change[1:] |= col[1:] != col[:-1]
    return change


def _key_index(src: Obj, ids: Obj, one_source: object) -> pd.Index:
    if one_source is not None:
        return pd.Index(ids, dtype=object)
    return pd.Index(_joined(src, ids), dtype=object)


def _joined(src: Obj, ids: Obj) -> Obj:
    joined = (
        pd.Series(src, dtype=object).astype(str) + "\x1f" + pd.Series(ids, dtype=object).astype(str)
    )
    return np.asarray(joined.to_numpy(dtype=object), dtype=object)


def _match(
    t_src: Obj, t_id: Obj, e_src: Obj, e_id: Obj
) -> tuple[I64, npt.NDArray[np.bool_] | None]:
    """Ticket row of each event (-1 when the ticket is not in the ticket frame), and when the
    events turn out to be grouped in ticket order, whether each event has the ticket of the one
    before (else None).

    Events usually come grouped by ticket in the ticket frame's order (the warehouse reads both
    ordered by source and id), so the keys are compared run by run: one comparison per event and
    one hash lookup per run of events rather than per event.
    """
    n = len(t_src)
    one_source = t_src[0] if n and bool((t_src == t_src[0]).all()) else None
    try:
        if n < 2:
            strictly_sorted = True
        elif one_source is not None:
            strictly_sorted = bool((t_id[1:] > t_id[:-1]).all())
        else:
            later = (t_src[1:] > t_src[:-1]) | ((t_src[1:] == t_src[:-1]) & (t_id[1:] > t_id[:-1]))
            strictly_sorted = bool(later.all())
    except TypeError:  # None or NaN among the keys: cannot be ordered
        strictly_sorted = False
    if (n and isinstance(one_source, float)) or (
        not strictly_sorted and (pd.isna(t_src).any() or pd.isna(t_id).any())
    ):
        raise InvalidInputError("tickets must have a `source` and an `external_id` on every row")
    keys: pd.Index | None = None
    if not strictly_sorted:
        keys = _key_index(t_src, t_id, one_source)
        if not keys.is_unique:
            dup = keys[keys.duplicated()][0]
            raise InvalidInputError(
                f"tickets must be unique on (source, external_id); duplicated: {dup!r}"
            )
    if not len(e_src):
        return np.zeros(0, dtype=np.int64), None
    change = _heads(e_src, e_id)
    heads = np.flatnonzero(change)
    h_src, h_id = e_src[heads], e_id[heads]
    lengths = np.diff(np.append(heads, len(e_src)))
    if (
        strictly_sorted
        and len(heads) == n
        and bool((h_src == t_src).all())
        and bool((h_id == t_id).all())
    ):
        return np.repeat(np.arange(n, dtype=np.int64), lengths), ~change[1:]
    else:
        if keys is None:
            keys = _key_index(t_src, t_id, one_source)
        if one_source is not None:
            head_rows = keys.get_indexer(pd.Index(h_id, dtype=object)).astype(np.int64)
            head_rows[h_src != one_source] = -1
        else:
            head_rows = keys.get_indexer(pd.Index(_joined(h_src, h_id))).astype(np.int64)
    return np.repeat(head_rows, lengths), None


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


def _build_intervals(log: TicketLog, field: str) -> Intervals:
    rows = np.flatnonzero(log.ev_field == FIELDS.index(field))
    tk = log.ev_ticket[rows]
    tm = log.ev_time[rows]
    raw = log.ev_value[rows]

    has = np.zeros(log.n_tickets, dtype=bool)
    has[tk] = True
    missing = np.flatnonzero(~has)
    if len(missing):
        d_raw = log.column(_TICKET_VALUE_COLUMN[field])[missing]
    else:
        d_raw = np.zeros(0, dtype=object)
    created = log.created[missing]
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
        codes = codes_in(raw, STATES)
        d_codes = codes_in(d_raw, STATES) if len(d_raw) else np.zeros(0, dtype=np.int64)
    else:
        codes, values = _factorize(raw)
        d_codes, d_values = _factorize(d_raw) if len(d_raw) else (np.zeros(0, np.int64), values[:0])
        if len(d_values):
            pos = pd.Index(values, dtype=object).get_indexer(pd.Index(d_values, dtype=object))
            new = np.flatnonzero(pos < 0)
            pos[new] = len(values) + np.arange(len(new))
            values = np.concatenate([values, d_values[new]])
            d_codes = np.where(d_codes >= 0, pos[np.maximum(d_codes, 0)], -1)

    keep = np.ones(len(tk), dtype=bool)
    if len(tk):
        np.not_equal(codes[1:], codes[:-1], out=keep[1:])
        keep[1:] |= tk[1:] != tk[:-1]
    kept = np.flatnonzero(keep)
    r_tk, r_code, r_start = tk[kept], codes[kept], tm[kept]
    r_events = np.diff(np.append(kept, len(tk))).astype(np.int64)
    r_end = np.full(len(kept), NAT, dtype=np.int64)
    if len(kept):
        same = r_tk[1:] == r_tk[:-1]
        r_end[:-1] = np.where(same, r_start[1:], NAT)

    if not len(missing):
        counts = np.bincount(r_tk, minlength=log.n_tickets)
        return Intervals(
            field=field,
            ticket=r_tk,
            code=r_code,
            values=values,
            start=r_start,
            end=r_end,
            events=r_events,
            derived=np.zeros(len(r_tk), dtype=bool),
            offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
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


__all__ += ["field_intervals"]
