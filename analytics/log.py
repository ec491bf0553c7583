"""The prepared ticket log: tickets and their events, matched, checked and sorted once.

Every metric needs the same groundwork: find each event's ticket, order the events by ticket,
time and ``seq``, and turn the changes of one field into intervals ("in state X from t1 to t2").
``prepare_log(tickets, events)`` does it once; ``TicketLog.intervals(field)`` builds (and caches)
the intervals of one field. Both are pure: the inputs are never modified and ``now`` plays no part,
so one prepared log answers questions for any ``now``.

Rules (docs/metrics.md, "Intervals"; the interval rules are in ``analytics.intervals``):

- Events are ordered by ``occurred_at`` then ``seq`` then input order; ties are kept.
- A ticket's ``created`` instant is the earlier of ``created_at`` and its first event (logs where
  the first activity precedes the recorded open time exist, e.g. BPIC 2014).
- Events whose ticket is not in the ticket frame, or whose time is missing, or whose field is not
  a known field are left out and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

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
    DUE_AT,
    EXTERNAL_ID,
    FIELD,
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
    TEAM,
    TICKET_ID,
    objects,
    require_columns,
    text,
    text_of,
    to_ns,
)
from analytics.intervals import FIELDS_WITH_INTERVALS, Intervals, build_intervals
from analytics.textcol import TextColumn

__all__ = ["TicketLog", "prepare_log"]

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


def _objects(series: pd.Series) -> Obj:
    return objects(series)


@dataclass(frozen=True, eq=False)
class TicketLog:
    """Tickets and their events, matched and sorted; build it with ``prepare_log``.

    ``tickets`` is the input ticket frame itself (not copied: do not change it while the log is
    in use), indexed 0..n-1 (a copy is made only to renumber another index); a ticket is
    referred to by that position everywhere inside the analytics. The event arrays are sorted by
    ticket, time, ``seq`` and input order.
    """

    tickets: pd.DataFrame
    ev_ticket: I64
    ev_time: I64
    ev_field: npt.NDArray[np.int8]
    """index into ``frames.FIELDS``"""
    ev_values: TextColumn
    """``new_value`` in event order (codes when the input column is categorical)"""
    ev_actors: TextColumn
    """``actor`` in event order"""
    ev_offsets: I64
    """events of ticket ``k`` are ``ev_offsets[k]:ev_offsets[k + 1]``"""
    dropped_events: dict[str, int]

    @property
    def n_tickets(self) -> int:
        return len(self.tickets)

    @cached_property
    def ev_value(self) -> Obj:
        """``new_value`` of each event, as objects."""
        return self.ev_values.objects

    @cached_property
    def ev_actor(self) -> Obj:
        """``actor`` of each event, as objects."""
        return self.ev_actors.objects

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
        """A ticket text column as objects."""
        return self.text(column).objects

    def text(self, column: str) -> TextColumn:
        """A ticket text column (codes when the input column is categorical), cached."""
        cache: dict[str, TextColumn] = self.__dict__.setdefault("_text", {})
        if column not in cache:
            cache[column] = TextColumn.of(self.tickets[column])
        return cache[column]

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
        return {
            SOURCE: self._text_column(SOURCE, rows),
            TICKET_ID: self._text_column(EXTERNAL_ID, rows),
        }

    def _text_column(self, column: str, rows: I64) -> object:
        known = self.__dict__.get("_text", {}).get(column)
        if known is None or not known.is_coded:
            values = self.tickets[column].array
            if isinstance(values.dtype, pd.StringDtype) and values.dtype.na_value is not pd.NA:
                return values.take(rows)  # already text: no per-element checks
        column_text = self.text(column)
        if column_text.codes is not None and column_text.table is not None:
            # categorical: the distinct values become text once, then are taken by code
            return text_of(column_text.table, column_text.codes.take(rows))
        return text(column_text.objects[rows])

    def intervals(self, field: str) -> Intervals:
        """The runs of ``field`` (state, status, team or assignee) per ticket (cached)."""
        if field not in FIELDS_WITH_INTERVALS:
            raise InvalidInputError(
                f"intervals exist for fields {sorted(FIELDS_WITH_INTERVALS)}, not `{field}`"
            )
        cache: dict[str, Intervals] = self.__dict__.setdefault("_intervals", {})
        if field not in cache:
            cache[field] = build_intervals(self, field)
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
    # the frame itself, not a copy (even a shallow one costs more than the rest of a small log)
    ticket_frame = tickets
    index = tickets.index
    if not isinstance(index, pd.RangeIndex) or index.start != 0 or index.step != 1:
        ticket_frame = tickets.reset_index(drop=True)
    dtypes = ticket_frame.dtypes
    for col in (CREATED_AT, RESOLVED_AT, CLOSED_AT, DUE_AT):
        if not isinstance(dtypes[col], pd.DatetimeTZDtype):
            to_ns(ticket_frame[col], name=col)  # raises unless the column is all missing
    t_src, t_id = TextColumn.of(ticket_frame[SOURCE]), _objects(ticket_frame[EXTERNAL_ID])
    n_tickets = len(ticket_frame)

    e_src, e_id = TextColumn.of(events[SOURCE]), TextColumn.of(events[TICKET_ID])
    ticket, same, run_offsets = _match(t_src, t_id, e_src, e_id)
    time = to_ns(events[OCCURRED_AT], name=OCCURRED_AT)
    field = TextColumn.of(events[FIELD]).codes_in(FIELDS, dtype=np.int8)
    seq_col = events[SEQ]
    if seq_col.dtype.kind in "iu":
        seq = np.asarray(seq_col.to_numpy(), dtype=np.int64)
    else:
        seq = np.asarray(pd.to_numeric(seq_col).fillna(0).to_numpy(), dtype=np.int64)

    clean = len(ticket) == 0 or (
        int(ticket.min()) >= 0 and int(time.min()) != NAT and int(field.min()) >= 0
    )
    dropped: dict[str, int] = {}
    order: I64 | None = None  # input rows in log order; None: as given
    if not clean:
        dropped = {
            "unknown ticket": int((ticket < 0).sum()),
            "missing time": int(((ticket >= 0) & (time == NAT)).sum()),
            "unknown field": int(((ticket >= 0) & (time != NAT) & (field < 0)).sum()),
        }
        order = np.flatnonzero((ticket >= 0) & (time != NAT) & (field >= 0))
        ticket, time, field, seq = ticket[order], time[order], field[order], seq[order]
        same = None
    if not _is_sorted(ticket, time, seq, same):
        resort = np.lexsort((seq, time, ticket))
        order = resort if order is None else order[resort]
        ticket, time, field = ticket[resort], time[resort], field[resort]
    value = TextColumn.of(events[NEW_VALUE]).reordered(order)
    actor = TextColumn.of(events[ACTOR]).reordered(order)
    if run_offsets is not None and order is None:  # event runs in ticket order, kept as they are
        offsets = run_offsets
    else:
        counts = np.bincount(ticket, minlength=n_tickets)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    log = TicketLog(
        tickets=ticket_frame,
        ev_ticket=ticket.astype(np.int64, copy=False),
        ev_time=time,
        ev_field=field,
        ev_values=value,
        ev_actors=actor,
        ev_offsets=offsets,
        dropped_events={k: v for k, v in dropped.items() if v},
    )
    log.__dict__["_text"] = {SOURCE: t_src}  # the cache of ``TicketLog.text``, already read
    return log


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


def _heads(*columns: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """True where a row starts a new run of equal keys."""
    n = len(columns[0])
    change = np.zeros(n, dtype=bool)
    if n:
        change[0] = True
        for col in columns:
            change[1:] |= col[1:] != col[:-1]
    return change


def _key_index(src: Obj | None, ids: Obj) -> pd.Index:
    """The ticket keys: the ids (one source, ``src`` None), else source and id joined."""
    if src is None:
        return pd.Index(ids, dtype=object)
    return pd.Index(_joined(src, ids), dtype=object)


def _joined(src: Obj, ids: Obj) -> Obj:
    joined = (
        pd.Series(src, dtype=object).astype(str) + "\x1f" + pd.Series(ids, dtype=object).astype(str)
    )
    return np.asarray(joined.to_numpy(dtype=object), dtype=object)


def _match(
    t_src: TextColumn, t_id: Obj, e_src: TextColumn, e_id: TextColumn
) -> tuple[I64, npt.NDArray[np.bool_] | None, I64 | None]:
    """Ticket row of each event (-1 when the ticket is not in the ticket frame), and when the
    events turn out to be grouped in ticket order, whether each event has the ticket of the one
    before and where each ticket's events start (else None, None).

    Events usually come grouped by ticket in the ticket frame's order (the warehouse reads both
    ordered by source and id), so the keys are compared run by run: one comparison per event and
    one comparison per run of events, no hashing. Categorical key columns are compared by their
    codes. Otherwise each run of events is looked up by its key.

    Raises:
        InvalidInputError: a ticket without a source or id; two tickets with the same key.
    """
    n = len(t_id)
    one_source = t_src.single() if n else None
    src = None if one_source is not None else t_src.objects
    if src is not None and n and pd.isna(src).any():
        raise InvalidInputError(_MISSING_KEY)
    if len(e_src):
        change = _heads(e_src.keys, e_id.keys)
        heads = np.flatnonzero(change)
        run_bounds = np.append(heads, len(e_src)).astype(np.int64, copy=False)
        lengths = np.diff(run_bounds)
        if len(heads) == n and _runs_in_ticket_order(src, one_source, t_id, e_src, e_id, heads):
            return np.repeat(np.arange(n, dtype=np.int64), lengths), ~change[1:], run_bounds
    if pd.isna(t_id).any():
        raise InvalidInputError(_MISSING_KEY)
    keys = _key_index(src, t_id)
    if not keys.is_unique:
        dup = keys[keys.duplicated()][0]
        raise InvalidInputError(
            f"tickets must be unique on (source, external_id); duplicated: {dup!r}"
        )
    if not len(e_src):
        return np.zeros(0, dtype=np.int64), None, None
    h_id = e_id.take(heads)
    if one_source is not None:
        head_rows = keys.get_indexer(pd.Index(h_id, dtype=object)).astype(np.int64)
        head_rows[~e_src.equals(one_source, heads)] = -1
    else:
        head_rows = keys.get_indexer(pd.Index(_joined(e_src.take(heads), h_id))).astype(np.int64)
    return np.repeat(head_rows, lengths), None, None


_MISSING_KEY = "tickets must have a `source` and an `external_id` on every row"


def _runs_in_ticket_order(
    src: Obj | None,
    one_source: str | None,
    t_id: Obj,
    e_src: TextColumn,
    e_id: TextColumn,
    heads: I64,
) -> bool:
    """Whether the k-th run of events has the key of ticket row k, for every row, and the ticket
    keys are unique (then every event's ticket is known without a lookup)."""
    # within a run the source is the same: checking the heads checks every event
    if one_source is not None:
        if not bool(e_src.equals(one_source, heads).all()):
            return False
    elif not bool((e_src.take(heads) == src).all()):
        return False
    if not bool((e_id.take(heads) == t_id).all()):
        return False
    if e_id.is_coded:
        # distinct categories are distinct ids: the ticket ids are unique (and none is missing)
        assert e_id.table is not None
        codes = e_id.keys.take(heads)
        return int(codes.min()) >= 0 and int(np.bincount(codes, minlength=1).max()) <= 1
    if len(t_id) < 2:
        return not bool(pd.isna(t_id).any())
    try:  # strictly ascending keys are unique (cheaper than hashing them)
        if src is None:
            return bool((t_id[1:] > t_id[:-1]).all())
        later = (src[1:] > src[:-1]) | ((src[1:] == src[:-1]) & (t_id[1:] > t_id[:-1]))
        return bool(later.all())
    except TypeError:  # None or NaN among the keys: cannot be ordered
        return False
