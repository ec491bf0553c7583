"""Bulk writes: ticket upserts, event inserts, sync state. The only place that writes data.

Every function runs inside the caller's transaction (``engine.begin()``), so a batch of tickets,
its events and the cursor that covers them commit together or not at all.

Speed: rows go to the driver as plain tuples built column-wise from the frame (no per-row ORM or
type processing). SQLite gets one ``executemany`` of ``INSERT ... ON CONFLICT DO UPDATE``;
PostgreSQL gets ``COPY`` into a temporary stage (converted a chunk at a time, so the server
parses one chunk while the next is converted) and one ``INSERT ... SELECT ... ON CONFLICT``.
A ticket whose columns are all unchanged is not rewritten (the ``DO UPDATE`` has a ``WHERE``
that compares every column null-safely), so re-loading the same data changes nothing.
``python -m bench.bench_upsert`` measures this; docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pandas as pd
from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from app.warehouse.schema import SyncState, Ticket, UnknownStatus
from app.warehouse.types import utc_strings
from connectors.base import EVENT_COLUMNS, TICKET_COLUMNS

__all__ = [
    "Deletions",
    "UpsertCounts",
    "clear_deleted",
    "insert_events",
    "mark_deleted",
    "mark_ids_deleted",
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


def _objects(values: pd.Series) -> list[Any]:
    """Column values as Python objects with None for every kind of missing."""
    series: Any = values  # pandas-stubs know no object dtype with na_value=None
    return list(series.to_numpy(dtype=object, na_value=None))


def _ints(values: pd.Series) -> list[Any]:
    """An integer column as Python ints and None (refusing fractions)."""
    return _objects(values.astype("Int64"))


def _json_default(value: Any) -> Any:
    """What the stdlib encoder with ``default=str`` does with a value orjson leaves to us."""
    if isinstance(value, float):  # float subclasses (numpy.float64): a number, not a string
        return float(value)
    return str(value)


_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
_JSON_OPTIONS |= orjson.OPT_PASSTHROUGH_DATACLASS
_dumps = orjson.dumps
_stdlib_json = json.JSONEncoder(default=str, separators=(",", ":"), ensure_ascii=False).encode


def _json_text(value: Any) -> str:
    """Compact UTF-8 JSON of a ``raw`` payload; a string is taken as JSON text already.

    This encoding is the largest per-row cost of an upsert in Python, and orjson does it 2-3x
    faster than the stdlib. It writes the same text as ``json.dumps(value, default=str,
    separators=(",", ":"), ensure_ascii=False)`` (which this module used before) for what a
    vendor payload holds: str, int, float, bool, None, lists, dicts with any keys; values JSON
    has no type for become their ``str``. The differences: NaN and infinities become null (the
    stdlib wrote ``NaN``, which is not JSON and which PostgreSQL refused) and a few floats are
    spelled differently (``1e-7``, not ``1e-07``); integers beyond 64 bits, which orjson
    refuses, still go to the stdlib encoder.
    """
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(
            {} if value is None else value, default=_json_default, option=_JSON_OPTIONS
        ).decode()
    except orjson.JSONEncodeError:
        return _stdlib_json(value)


def _json(values: pd.Series) -> list[str]:
    objects = _objects(values)
    try:  # the common case in one pass: dicts and lists that orjson encodes by itself
        return [
            v
            if isinstance(v, str)
            else _dumps({} if v is None else v, None, _JSON_OPTIONS).decode()
            for v in objects
        ]
    except (orjson.JSONEncodeError, TypeError):
        return [_json_text(v) for v in objects]


def _now_text(now: datetime, dialect: str) -> str:
    return str(utc_strings(pd.Series([now]), dialect=dialect)[0])


def _ticket_rows(frame: pd.DataFrame, *, dialect: str, now: datetime) -> list[tuple[Any, ...]]:
    return list(zip(*_ticket_columns(frame, dialect=dialect, now=now), strict=True))


def _ticket_columns(frame: pd.DataFrame, *, dialect: str, now: datetime) -> list[list[Any]]:
    """The bind values of ``TICKET_WRITE_COLUMNS``, one list per column."""
    columns: list[list[Any]] = []
    for name in TICKET_COLUMNS:
        series = frame[name]
        if name in TICKET_TIMES:
            columns.append(utc_strings(series, dialect=dialect).tolist())
        elif name in TICKET_INTS:
            columns.append(_ints(series))
        elif name == "raw":
            columns.append(_json(series))
        else:
            columns.append(_objects(series))
    columns.append([_now_text(now, dialect)] * len(frame))
    return columns


def _event_rows(frame: pd.DataFrame, *, dialect: str, now: datetime) -> list[tuple[Any, ...]]:
    return list(zip(*_event_columns(frame, dialect=dialect, now=now), strict=True))


def _event_columns(frame: pd.DataFrame, *, dialect: str, now: datetime) -> list[list[Any]]:
    """The bind values of ``EVENT_WRITE_COLUMNS``, one list per column."""
    columns: list[list[Any]] = []
    for name in EVENT_COLUMNS:
        series = frame[name]
        if name == "occurred_at":
            columns.append(utc_strings(series, dialect=dialect).tolist())
        elif name == "seq":
            columns.append(series.astype("int64").tolist())
        else:
            columns.append(_objects(series))
    columns.append([_now_text(now, dialect)] * len(frame))
    return columns


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
    # a ticket marked deleted that its tool sends again is back
    assign += ", deleted_at = NULL"
    changed += " OR tickets.deleted_at IS NOT NULL"
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
    conn: Connection,
    *,
    table: str,
    stage: str,
    columns: Sequence[str],
    rows: Iterable[tuple[Any, ...]],
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


COPY_CHUNK = 5_000
"""tickets converted at a time while a COPY streams"""


def _ticket_rows_chunked(frame: pd.DataFrame, now: datetime) -> Iterator[tuple[Any, ...]]:
    for start in range(0, len(frame), COPY_CHUNK):
        chunk = frame.iloc[start : start + COPY_CHUNK]
        yield from _ticket_rows(chunk, dialect="postgresql", now=now)


def _upsert_postgresql(conn: Connection, frame: pd.DataFrame, now: datetime) -> tuple[int, int]:
    """Upsert ``frame`` through a COPY stage; return (rows written, rows inserted)."""
    stage = "_tf_stage_tickets"
    rows = _ticket_rows_chunked(frame, now)
    _copy_to_stage(conn, table="tickets", stage=stage, columns=TICKET_WRITE_COLUMNS, rows=rows)
    existing = conn.exec_driver_sql(
        f"SELECT count(*) FROM {stage} s JOIN tickets t "
        "ON t.source = s.source AND t.external_id = s.external_id"
    ).scalar_one()
    written = conn.exec_driver_sql(_ticket_upsert_sql("postgresql", from_stage=stage)).rowcount
    return written, len(frame) - int(existing)


def _upsert_sqlite(conn: Connection, frame: pd.DataFrame, now: datetime) -> tuple[int, int]:
    """Upsert ``frame`` with one executemany; return (rows written, rows inserted).

    ``rowcount`` counts inserted plus updated rows. To tell them apart without counting the
    whole table (which grows slower with every batch): a new row gets a rowid above the
    largest one before the statement (SQLite assigns max(rowid) + 1; an updated row keeps its
    rowid), so the rows above that mark are the inserted ones. Only once some rowid reaches
    2**63 - 1 does SQLite pick new rowids at random; then the table is counted before and after.
    """
    columns = _ticket_columns(frame, dialect="sqlite", now=now)
    mark = conn.exec_driver_sql("SELECT max(rowid) FROM tickets").scalar()
    top = -1 if mark is None else int(mark)
    if top >= 2**63 - 1 - len(frame):
        before = _count_tickets(conn)
        written = _executemany(conn, _ticket_upsert_sql("sqlite"), columns)
        return written, _count_tickets(conn) - before
    written = _executemany(conn, _ticket_upsert_sql("sqlite"), columns)
    new = conn.exec_driver_sql("SELECT count(*) FROM tickets WHERE rowid > ?", (top,))
    return written, int(new.scalar_one())


def _executemany(conn: Connection, sql: str, columns: list[list[Any]]) -> int:
    """Run ``sql`` once per row on the DB-API cursor; return the rows it changed.

    The rows are zipped from the columns while the driver reads them: each tuple is bound
    and dropped at once (no list of a batch's tuples), which keeps the memory it touches small.
    A driver error is raised as SQLAlchemy's (``IntegrityError`` ...), as ``conn.execute`` would.
    """
    raw = conn.connection.driver_connection
    assert raw is not None
    dbapi = conn.dialect.loaded_dbapi
    cursor = raw.cursor()
    try:
        cursor.executemany(sql, zip(*columns, strict=True))
        return int(cursor.rowcount)
    except dbapi.Error as e:
        raise DBAPIError.instance(sql, None, e, dbapi.Error, dialect=conn.dialect) from e
    finally:
        cursor.close()


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
    duplicated = tickets.duplicated(list(TICKET_KEY), keep="last")
    frame = tickets[~duplicated] if duplicated.any() else tickets
    if conn.dialect.name == "postgresql":
        written, inserted = _upsert_postgresql(conn, frame, now)
    else:
        written, inserted = _upsert_sqlite(conn, frame, now)
    updated = written - inserted
    return UpsertCounts(inserted, updated, len(frame) - inserted - updated)


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
    if dialect == "postgresql":
        rows = _event_rows(events, dialect=dialect, now=now)
        stage = "_tf_stage_events"
        _copy_to_stage(conn, table="events", stage=stage, columns=EVENT_WRITE_COLUMNS, rows=rows)
        return int(conn.exec_driver_sql(_event_insert_sql(dialect, from_stage=stage)).rowcount)
    columns = _event_columns(events, dialect=dialect, now=now)
    return _executemany(conn, _event_insert_sql(dialect), columns)


@dataclass(frozen=True)
class Deletions:
    """What ``mark_deleted`` did: tickets marked, or the reason it refused to mark any."""

    marked: int
    missing: int
    """live tickets of the source the scan did not find"""
    live: int
    """tickets of the source that were not deleted before"""
    refused: str | None = None


def mark_deleted(
    conn: Connection,
    *,
    source: str,
    found: Iterable[str],
    now: datetime,
    max_fraction: float = 1.0,
) -> Deletions:
    """Mark the source's live tickets that a complete scan did not find as deleted.

    Only a scan that read every ticket of the source to the end may call this: a ticket it
    did not find is gone from the tool (deleted, or no longer visible to ticketflow's user).
    The rows and their events stay; ``deleted_at`` and ``loaded_at`` are set, and an upsert
    of the same ticket later clears the mark.

    Args:
        found: external ids the scan saw (including ones it chose not to store).
        max_fraction: refuse, and mark nothing, when more than this share of the live
            tickets would be marked (a wrong filter or a lost permission, not real deletions).
    """
    seen = set(found)
    stored = conn.execute(
        select(Ticket.external_id).where(Ticket.source == source, Ticket.deleted_at.is_(None))
    ).scalars()
    live = 0
    missing: list[str] = []
    for key in stored:
        live += 1
        if key not in seen:
            missing.append(key)
    if not missing:
        return Deletions(0, 0, live)
    if len(missing) > max_fraction * live:
        return Deletions(
            0,
            len(missing),
            live,
            refused=(
                f"the complete scan did not find {len(missing):,} of {live:,} stored tickets "
                f"({len(missing) / live:.0%}), more than max_delete_fraction "
                f"{max_fraction:g}: none marked deleted. If they are really gone, raise "
                "max_delete_fraction for this source and sync with --full again"
            ),
        )
    marked = mark_ids_deleted(conn, source=source, ids=missing, now=now)
    return Deletions(marked, len(missing), live)


def mark_ids_deleted(conn: Connection, *, source: str, ids: Sequence[str], now: datetime) -> int:
    """Mark these tickets of ``source`` deleted (those stored and not marked yet); return how
    many were marked. For deletions the tool reports itself, and for ``mark_deleted``."""
    return _set_deleted(conn, source=source, ids=ids, now=now, deleted=True)


def clear_deleted(conn: Connection, *, source: str, ids: Iterable[str], now: datetime) -> int:
    """Clear the deleted mark of these tickets of ``source``: the tool lists them, although
    they are not stored again (TOPdesk archived incidents and partials). Returns how many.

    The marked tickets come from the partial index of deleted ones (small), so a page of
    ids that are all live costs one cheap query.
    """
    wanted = set(ids)
    if not wanted:
        return 0
    marked = conn.execute(
        select(Ticket.external_id).where(Ticket.source == source, Ticket.deleted_at.is_not(None))
    ).scalars()
    back = [key for key in marked if key in wanted]
    return _set_deleted(conn, source=source, ids=back, now=now, deleted=False)


def _set_deleted(
    conn: Connection, *, source: str, ids: Sequence[str], now: datetime, deleted: bool
) -> int:
    """Set (``deleted``) or clear the deleted mark of these tickets where it is not so yet,
    with a new ``loaded_at``; return how many rows changed."""
    if not ids:
        return 0
    sqlite = conn.dialect.name == "sqlite"
    stamp: Any = _now_text(now, "sqlite") if sqlite else now
    mark = "?" if sqlite else "%s"
    was = "IS NULL" if deleted else "IS NOT NULL"
    sql = (
        f"UPDATE tickets SET deleted_at = {mark}, loaded_at = {mark} "
        f"WHERE source = {mark} AND external_id = {mark} AND deleted_at {was}"
    )
    n = len(ids)
    value = stamp if deleted else None
    return _executemany(conn, sql, [[value] * n, [stamp] * n, [source] * n, list(ids)])


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
