"""Bulk writes: ticket upserts, event inserts, sync state. The only place that writes data.

Every function runs inside the caller's transaction (``engine.begin()``), so a batch of tickets,
its events and the cursor that covers them commit together or not at all.

Speed: rows go to the driver as plain tuples built column-wise from the frame (no per-row ORM or
type processing). SQLite gets one ``executemany`` of ``INSERT ... ON CONFLICT DO UPDATE``;
PostgreSQL gets ``COPY`` into a temporary stage and one ``INSERT ... SELECT ... ON CONFLICT``.
A ticket whose columns are all unchanged is not rewritten (the ``DO UPDATE`` has a ``WHERE``
that compares every column null-safely), so re-loading the same data changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.warehouse.schema import SyncState, UnknownStatus
from app.warehouse.types import utc_strings
from connectors.base import EVENT_COLUMNS, TICKET_COLUMNS

__all__ = [
    "UpsertCounts",
    "insert_events",
    "record_unknown_statuses",
    "save_sync_state",
    "upsert_tickets",
]

TICKET_KEY = ("source", "external_id")
TICKET_TIMES = frozenset({"created_at", "updated_at", "resolved_at", "closed_at", "due_at"})
TICKET_INTS = frozenset({"priority", "reassignment_count", "reopen_count"})
TICKET_WRITE_COLUMNS = (*TICKET_COLUMNS, "loaded_at")
EVENT_WRITE_COLUMNS = (*EVENT_COLUMNS, "loaded_at")


@dataclass(frozen=True)
class UpsertCounts:
    inserted: int
    updated: int
    unchanged: int

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.unchanged


def _require(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} frame lacks columns: {', '.join(missing)}")


def _objects(values: pd.Series) -> np.ndarray:
    """Column values as Python objects with None for every kind of missing."""
    out = values.to_numpy(dtype=object, na_value=None)
    return out


def _ints(values: pd.Series) -> np.ndarray:
    ints = pd.array(values, dtype="Int64")
    return ints.to_numpy(dtype=object, na_value=None)


def _json(values: pd.Series) -> list[str]:
    dumps = json.JSONEncoder(default=str, separators=(",", ":"), ensure_ascii=False).encode
    return [v if isinstance(v, str) else dumps({} if v is None else v) for v in values]


def _now_text(now: datetime, dialect: str) -> str:
    return str(utc_strings(pd.Series([now]), dialect=dialect)[0])


def _ticket_rows(frame: pd.DataFrame, *, dialect: str, now: datetime) -> list[tuple[Any, ...]]:
    columns: list[Sequence[Any]] = []
    for name in TICKET_COLUMNS:
        series = frame[name]
        if name in TICKET_TIMES:
            columns.append(utc_strings(series, dialect=dialect))
        elif name in TICKET_INTS:
            columns.append(_ints(series))
        elif name == "raw":
            columns.append(_json(series))
        else:
            columns.append(_objects(series))
    columns.append([_now_text(now, dialect)] * len(frame))
    return list(zip(*columns, strict=True))


def _event_rows(frame: pd.DataFrame, *, dialect: str, now: datetime) -> list[tuple[Any, ...]]:
    columns: list[Sequence[Any]] = []
    for name in EVENT_COLUMNS:
        series = frame[name]
        if name == "occurred_at":
            columns.append(utc_strings(series, dialect=dialect))
        elif name == "seq":
            columns.append(series.astype("int64").tolist())
        else:
            columns.append(_objects(series))
    columns.append([_now_text(now, dialect)] * len(frame))
    return list(zip(*columns, strict=True))


def _placeholders(dialect: str, n: int) -> str:
    mark = "?" if dialect == "sqlite" else "%s"
    return ", ".join([mark] * n)


def _ticket_upsert_sql(dialect: str, *, from_stage: str | None = None) -> str:
    cols = ", ".join(TICKET_WRITE_COLUMNS)
    value_cols = [c for c in TICKET_COLUMNS if c not in TICKET_KEY]
    assign = ", ".join(f"{c} = excluded.{c}" for c in (*value_cols, "loaded_at"))
    if dialect == "postgresql":
        old = ", ".join(f"tickets.{c}" for c in value_cols)
        new = ", ".join(f"excluded.{c}" for c in value_cols)
        changed = f"({old}) IS DISTINCT FROM ({new})"
    else:
        changed = " OR ".join(f"tickets.{c} IS NOT excluded.{c}" for c in value_cols)
    source = (
        f"SELECT {cols} FROM {from_stage} WHERE true"
        if from_stage
        else f"VALUES ({_placeholders(dialect, len(TICKET_WRITE_COLUMNS))})"
    )
    return (
        f"INSERT INTO tickets ({cols}) {source} "
        f"ON CONFLICT (source, external_id) DO UPDATE SET {assign} WHERE {changed}"
    )


def _event_insert_sql(dialect: str, *, from_stage: str | None = None) -> str:
    cols = ", ".join(EVENT_WRITE_COLUMNS)
    source = (
        f"SELECT {cols} FROM {from_stage}"
        if from_stage
        else f"VALUES ({_placeholders(dialect, len(EVENT_WRITE_COLUMNS))})"
    )
    return f"INSERT INTO events ({cols}) {source} ON CONFLICT (source, event_key) DO NOTHING"


def _copy_to_stage(
    conn: Connection, *, table: str, stage: str, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """COPY rows into a temporary table shaped like ``table`` (PostgreSQL only)."""
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
    )
    conn.exec_driver_sql(f"TRUNCATE {stage}")
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur, cur.copy(f"COPY {stage} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _count_tickets(conn: Connection) -> int:
    return int(conn.exec_driver_sql("SELECT count(*) FROM tickets").scalar_one())


def upsert_tickets(conn: Connection, tickets: pd.DataFrame, *, now: datetime) -> UpsertCounts:
    """Insert new tickets and update changed ones, keyed on (source, external_id).

    Args:
        conn: a connection inside a transaction.
        tickets: the canonical ticket frame (``connectors.base.TICKET_COLUMNS``). When a key
            appears twice, the last row wins.
        now: stamped into ``loaded_at`` of every inserted or changed row.

    Returns:
        How many rows were inserted, updated, and left unchanged.
    """
    _require(tickets, TICKET_COLUMNS, "ticket")
    if tickets.empty:
        return UpsertCounts(0, 0, 0)
    frame = tickets.drop_duplicates(list(TICKET_KEY), keep="last")
    dialect = conn.dialect.name
    rows = _ticket_rows(frame, dialect=dialect, now=now)
    if dialect == "postgresql":
        stage = "_tf_stage_tickets"
        _copy_to_stage(conn, table="tickets", stage=stage, columns=TICKET_WRITE_COLUMNS, rows=rows)
        existing = int(
            conn.exec_driver_sql(
                f"SELECT count(*) FROM {stage} s JOIN tickets t "
                "ON t.source = s.source AND t.external_id = s.external_id"
            ).scalar_one()
        )
        written = conn.exec_driver_sql(_ticket_upsert_sql(dialect, from_stage=stage)).rowcount
    else:
        before = _count_tickets(conn)
        written = conn.exec_driver_sql(_ticket_upsert_sql(dialect), rows).rowcount
        existing = len(rows) - (_count_tickets(conn) - before)
    inserted = len(rows) - existing
    updated = written - inserted
    return UpsertCounts(inserted=inserted, updated=updated, unchanged=existing - updated)


def insert_events(conn: Connection, events: pd.DataFrame, *, now: datetime) -> int:
    """Insert events that are not stored yet (deduplicated on source and event key).

    Every event's ticket must be in the warehouse (or in the same transaction) already.

    Returns:
        How many events were new.
    """
    _require(events, EVENT_COLUMNS, "event")
    if events.empty:
        return 0
    dialect = conn.dialect.name
    rows = _event_rows(events, dialect=dialect, now=now)
    if dialect == "postgresql":
        stage = "_tf_stage_events"
        _copy_to_stage(conn, table="events", stage=stage, columns=EVENT_WRITE_COLUMNS, rows=rows)
        return int(conn.exec_driver_sql(_event_insert_sql(dialect, from_stage=stage)).rowcount)
    return int(conn.exec_driver_sql(_event_insert_sql(dialect), rows).rowcount)


def _upsert(
    conn: Connection, model: type[Any], values: Mapping[str, Any], key: Sequence[str]
) -> None:
    table = model.__table__
    stmt = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table).values(
        **values
    )
    update = {k: stmt.excluded[k] for k in values if k not in key}
    conn.execute(stmt.on_conflict_do_update(index_elements=list(key), set_=update))


def save_sync_state(
    conn: Connection,
    *,
    source: str,
    kind: str,
    now: datetime,
    cursor: str | None = None,
    status: str = "ok",
    error: str | None = None,
    tickets_seen: int = 0,
    tickets: UpsertCounts | None = None,
    events_inserted: int = 0,
    rows_skipped: int = 0,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Record a run of ``source``: its cursor, counts and outcome."""
    counts = tickets or UpsertCounts(0, 0, 0)
    values: dict[str, Any] = {
        "source": source,
        "kind": kind,
        "last_run_at": now,
        "last_status": status,
        "last_error": error,
        "tickets_seen": tickets_seen,
        "tickets_inserted": counts.inserted,
        "tickets_updated": counts.updated,
        "events_inserted": events_inserted,
        "rows_skipped": rows_skipped,
        "details": dict(details or {}),
    }
    if status == "ok":
        values["last_success_at"] = now
        values["cursor"] = cursor
    _upsert(conn, SyncState, values, ("source",))


def record_unknown_statuses(
    conn: Connection, *, source: str, unknown: Mapping[str, int], mapped_to: str, now: datetime
) -> None:
    """Remember raw statuses the source's map did not know (shown by ``ticketflow sources``)."""
    for raw_status, count in unknown.items():
        first = conn.execute(
            select(UnknownStatus.first_seen_at).where(
                UnknownStatus.source == source, UnknownStatus.raw_status == raw_status
            )
        ).scalar_one_or_none()
        _upsert(
            conn,
            UnknownStatus,
            {
                "source": source,
                "raw_status": raw_status,
                "mapped_to": mapped_to,
                "last_count": count,
                "first_seen_at": first or now,
                "last_seen_at": now,
            },
            ("source", "raw_status"),
        )


def utcnow() -> datetime:
    """The current instant (the one place writes read the clock)."""
    return datetime.now(UTC)
