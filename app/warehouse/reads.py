"""Reads from the warehouse into pandas frames (what analytics and the API consume)."""

from __future__ import annotations

from json import loads as _json_loads
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Select, select

from app.warehouse.schema import Event, SyncState, Ticket, UnknownStatus
from connectors.base import EVENT_COLUMNS, TICKET_COLUMNS

__all__ = [
    "EVENT_CATEGORIES",
    "TICKET_CATEGORIES",
    "as_categories",
    "read_events_frame",
    "read_sync_states",
    "read_tickets_frame",
    "read_unknown_statuses",
]

_TICKET_TIMES = ("created_at", "updated_at", "resolved_at", "closed_at", "due_at", "loaded_at")

TICKET_CATEGORIES = (
    "source",
    "type",
    "raw_status",
    "state",
    "priority_raw",
    "category",
    "team",
    "assignee",
)
"""ticket text columns with few distinct values, handed over as pandas categoricals"""
EVENT_CATEGORIES = ("source", "ticket_id", "field", "old_value", "new_value", "actor", "origin")
"""event text columns handed over as categoricals: few distinct values, or (``ticket_id``) each
one repeated on every event of its ticket"""


def as_categories(
    frame: pd.DataFrame, columns: tuple[str, ...], *, sorted_by: tuple[str, ...] = ()
) -> pd.DataFrame:
    """``frame`` with ``columns`` as pandas categoricals (missing values stay missing).

    Each distinct string is then held once and every row is a small integer code: the frames
    take less memory, and the analytics group and match on the codes instead of hashing the
    strings on every request. Categories are in order of first appearance. ``sorted_by`` names
    columns whose equal values come in runs (the ORDER BY keys): those are factorised run by
    run, which hashes one value per run instead of one per row (the result is the same).
    """
    out = frame.copy(deep=False)
    for col in columns:
        if not isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = _categorical(out[col], runs=col in sorted_by)
    return out


def _categorical(series: pd.Series, *, runs: bool) -> pd.Categorical:
    values = series.to_numpy(dtype=object)
    if runs and len(values):
        change = np.empty(len(values), dtype=bool)
        change[0] = True
        np.not_equal(values[1:], values[:-1], out=change[1:])
        heads = np.flatnonzero(change)
        head_codes, uniques = pd.factorize(values[heads])
        codes = np.repeat(head_codes, np.diff(np.append(heads, len(values))))
    else:
        codes, uniques = pd.factorize(values)
    categorical: pd.Categorical = pd.Categorical.from_codes(
        codes, categories=pd.Index(uniques), validate=False
    )
    return categorical


def _frame(
    conn: Connection, stmt: Select[Any], times: tuple[str, ...], json: tuple[str, ...] = ()
) -> pd.DataFrame:
    """``stmt``'s rows as a frame, read on the DB-API cursor.

    Not through SQLAlchemy's ``Result``: its per-value type processing (a ``datetime`` parsed
    for each of six times per ticket) and pandas probing each ``Row`` for attributes took
    about two thirds of a snapshot's time. pandas builds the frame from the driver's plain
    tuples in C; times are parsed vectorised (ISO text on SQLite, ``timestamptz`` on
    PostgreSQL) and JSON text (SQLite; psycopg parses ``jsonb`` itself) as SQLAlchemy's JSON
    type did.
    """
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.params
    args: Any = (
        tuple(params[name] for name in compiled.positiontup or ())
        if compiled.positional
        else params
    )
    names = [c.name for c in stmt.selected_columns]
    raw = conn.connection.driver_connection
    assert raw is not None
    cursor = raw.cursor()
    try:
        cursor.execute(str(compiled), args)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    frame = pd.DataFrame(rows, columns=names)  # no rows: object columns
    del rows
    for col in json if conn.dialect.name == "sqlite" else ():
        frame[col] = [_json_loads(v) if isinstance(v, str | bytes) else v for v in frame[col]]
    for col in times:
        frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601").astype(
            "datetime64[us, UTC]"
        )
    return frame


def read_tickets_frame(
    conn: Connection, *, source: str | None = None, raw: bool = True, deleted: bool = False
) -> pd.DataFrame:
    """All tickets (of one source when given) with the canonical columns plus ``loaded_at``,
    ordered by source and external id; the ``TICKET_CATEGORIES`` columns are categoricals.

    Tickets marked deleted (no longer found in their tool) are left out unless ``deleted``;
    then the frame has a ``deleted_at`` column too.

    ``raw=False`` leaves the vendor payloads in the database (the ``raw`` column is all None):
    the analytics never look at them, and parsing a JSON document per ticket was most of the
    time and memory of a snapshot (docs/benchmarks.md, "Reading a snapshot").

    On SQLite all tickets are read in storage order and sorted here: walking the key index
    instead fetches every row from a random place of the table, three times slower at
    1,000,000 tickets. (SQLite's BINARY order of UTF-8 text is Python's order of ``str``.)
    """
    names = [c for c in (*TICKET_COLUMNS, "loaded_at") if raw or c != "raw"]
    if deleted:
        names.append("deleted_at")
    stmt = select(*(getattr(Ticket, c) for c in names))
    scan = source is None and conn.dialect.name == "sqlite"
    if source is not None:
        stmt = stmt.where(Ticket.source == source)
    if not deleted:
        stmt = stmt.where(Ticket.deleted_at.is_(None))
    if not scan:
        stmt = stmt.order_by(Ticket.source, Ticket.external_id)
    times = (*_TICKET_TIMES, "deleted_at") if deleted else _TICKET_TIMES
    frame = _frame(conn, stmt, times, json=("raw",) if raw else ())
    if scan and len(frame):
        keys = (frame["external_id"].to_numpy(dtype=object), frame["source"].to_numpy(dtype=object))
        frame = frame.take(np.lexsort(keys)).reset_index(drop=True)
    for col in ("priority", "reassignment_count", "reopen_count"):
        frame[col] = frame[col].astype("Int64")
    if not raw:
        frame.insert(list(TICKET_COLUMNS).index("raw"), "raw", np.full(len(frame), None, object))
    return as_categories(frame, TICKET_CATEGORIES, sorted_by=("source",))


def read_events_frame(
    conn: Connection, *, source: str | None = None, deleted: bool = False
) -> pd.DataFrame:
    """All events (of one source when given), ordered by ticket, time and sequence (ties in
    the order stored, on both backends); the ``EVENT_CATEGORIES`` columns are categoricals.

    Events of tickets marked deleted are left out unless ``deleted``."""
    cols = [getattr(Event, c) for c in EVENT_COLUMNS]
    # id last: events of one ticket at the same instant and seq come in the order they were stored
    stmt = select(*cols).order_by(
        Event.source, Event.ticket_id, Event.occurred_at, Event.seq, Event.id
    )
    if source is not None:
        stmt = stmt.where(Event.source == source)
    frame = _frame(conn, stmt, ("occurred_at",))
    frame["seq"] = frame["seq"].astype("int64")
    if not deleted:
        frame = _without_deleted(conn, frame, source)
    return as_categories(frame, EVENT_CATEGORIES, sorted_by=("source", "ticket_id"))


def _without_deleted(conn: Connection, events: pd.DataFrame, source: str | None) -> pd.DataFrame:
    """``events`` without those of deleted tickets (found on the partial index of deleted
    tickets, which is empty, and costs nothing, while no ticket is deleted)."""
    stmt = select(Ticket.source, Ticket.external_id).where(Ticket.deleted_at.is_not(None))
    if source is not None:
        stmt = stmt.where(Ticket.source == source)
    gone = conn.execute(stmt).all()
    if not gone or events.empty:
        return events
    keys = pd.MultiIndex.from_tuples([tuple(k) for k in gone])
    drop = pd.MultiIndex.from_arrays(
        [events["source"].to_numpy(dtype=object), events["ticket_id"].to_numpy(dtype=object)]
    ).isin(keys)
    return events[~drop].reset_index(drop=True)


def read_sync_states(conn: Connection) -> list[dict[str, Any]]:
    """One dict per source that has run."""
    rows = conn.execute(select(SyncState).order_by(SyncState.source)).mappings()
    return [dict(r) for r in rows]


def read_unknown_statuses(conn: Connection, *, source: str | None = None) -> list[dict[str, Any]]:
    stmt = select(UnknownStatus).order_by(UnknownStatus.source, UnknownStatus.raw_status)
    if source is not None:
        stmt = stmt.where(UnknownStatus.source == source)
    return [dict(r) for r in conn.execute(stmt).mappings()]
