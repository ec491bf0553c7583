"""Sync network sources into the warehouse (``ticketflow sync``): the crash-safe engine.

For each source: read its cursor, ask the connector (``connectors.protocol.SyncConnector``:
TOPdesk through ``TopdeskSync``, ServiceNow) for every ticket modified since the cursor minus the
overlap window, and store page by page: the page's tickets, then the events the connector derives
for those that are new or newer than stored (TOPdesk: by comparing snapshots; ServiceNow: from
its audit trail). Each page's tickets, its events and the new cursor commit in ONE
transaction, so a crash or ``kill -9`` at any point leaves the warehouse at a page boundary; the
next run re-reads from the cursor (minus the overlap) and the upsert/event keys absorb what it
sees twice. Nothing is lost, nothing is duplicated, and the
cursor never gets ahead of committed data.

A source that fails (bad credentials, a malformed page, retries exhausted) is recorded with its
error and the cursor of its last committed page; the other sources carry on.

Testing hook: ``TICKETFLOW_SYNC_FAULT=<stage>:<page>`` kills the process with SIGKILL at a
checkpoint (stages ``tickets``, ``events``, ``cursor`` inside the page's transaction, ``commit``
after it). The crash tests use it; never set it otherwise.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import pandas as pd
from sqlalchemy import Connection, Engine, String, any_, bindparam, select, text, type_coerce
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.types import NullType

from app.errors import ConfigError, WarehouseError
from app.settings import Settings
from app.warehouse import (
    UpsertCounts,
    clear_deleted,
    insert_events,
    make_engine,
    mark_deleted,
    mark_ids_deleted,
    read_sync_states,
    record_unknown_statuses,
    save_sync_state,
    upsert_tickets,
    utcnow,
)
from app.warehouse.schema import Ticket
from connectors.base import EventRecord, events_frame
from connectors.config import (
    HttpSourceConfig,
    ServiceNowSourceConfig,
    SourceConfigBase,
    TopdeskSourceConfig,
)
from connectors.errors import ConnectorConfigError, ConnectorError
from connectors.http import make_client
from connectors.protocol import StatsView, SyncConnector, TicketPage
from connectors.servicenow import ServiceNowConnector, make_servicenow_client
from connectors.snapshot import SNAPSHOT_COLUMNS, snapshot_events, split_stale
from connectors.topdesk import API_PATH, IncidentPage, TopdeskConnector, records_frame

__all__ = [
    "FAULT_ENV",
    "ClientFactory",
    "Progress",
    "SourceResult",
    "format_cursor",
    "parse_cursor",
    "sync_source",
    "sync_sources",
]

log = logging.getLogger(__name__)

FAULT_ENV = "TICKETFLOW_SYNC_FAULT"
FUTURE_CURSOR_SLACK = timedelta(days=1)
LOCK_WAIT = 10.0
"""seconds a sync waits for another sync of the same source to finish before giving up"""
UNKNOWN_MAPPED_TO = "by flags"
"""what ``ticketflow sources`` shows for an unknown TOPdesk status: its state came from the
onHold/completed/closed flags and the assignment"""

SyncSourceConfig = TopdeskSourceConfig | ServiceNowSourceConfig
"""the kinds of source the engine has a connector for"""
ClientFactory = Callable[[HttpSourceConfig], httpx.Client]
Progress = Callable[[str, int, int, bool], None]
"""called as ``progress(source, pages, incidents, done)`` after every page"""

Status = Literal["ok", "error", "skipped"]


@dataclass
class SourceResult:
    """How one source's sync went."""

    source: str
    kind: str
    status: Status = "ok"
    message: str | None = None
    """the error, or why the source was skipped"""
    full: bool = False
    pages: int = 0
    incidents: int = 0
    """incidents received (including overlap re-reads and duplicates dropped)"""
    tickets: UpsertCounts = field(default_factory=lambda: UpsertCounts(0, 0, 0))
    stale: int = 0
    """incidents older than their stored copy, not written"""
    events_inserted: int = 0
    cursor_before: str | None = None
    cursor: str | None = None
    requests: int = 0
    retries: int = 0
    restarts: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    """phase -> seconds (http, decode, map, frame, read, diff, actions, write)"""
    deleted: int = 0
    """stored tickets marked deleted: reported deleted by the tool, or not found by a
    complete full scan"""
    deletions_refused: str | None = None
    """why a complete full scan marked none deleted although some were missing"""


def format_cursor(value: datetime) -> str:
    """The stored form of a cursor: ISO 8601 in UTC with microseconds."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def parse_cursor(value: str | None) -> datetime | None:
    """A stored cursor back as an aware datetime.

    Raises:
        ValueError: the stored value is not a cursor this version wrote.
    """
    if value is None or value == "":
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"cursor `{value}` has no time zone")
    return parsed.astimezone(UTC)


def _default_client(config: HttpSourceConfig) -> httpx.Client:
    if isinstance(config, ServiceNowSourceConfig):
        return make_servicenow_client(config)
    return make_client(config, base_path=API_PATH if config.kind == "topdesk" else "")


class TopdeskSync:
    """``TopdeskConnector`` as a ``SyncConnector``: TOPdesk keeps no field history, so the
    events come from comparing each incident with its stored snapshot (plus its actions when
    configured)."""

    unknown_mapped_to = UNKNOWN_MAPPED_TO

    def __init__(self, connector: TopdeskConnector) -> None:
        self.connector = connector
        self.config = connector.config

    @property
    def source(self) -> str:
        return self.connector.source

    @property
    def stats(self) -> StatsView:
        return self.connector.stats

    def pages(self, *, since: datetime | None) -> Iterator[TicketPage]:
        for page in self.connector.pages(since=since):
            yield self._page(page)

    def _page(self, page: IncidentPage) -> TicketPage:
        started = time.perf_counter()
        frame = records_frame(page.tickets)
        self.connector.stats.seconds["frame"] += time.perf_counter() - started
        return TicketPage(
            number=page.number,
            tickets=frame,
            actors=page.actors,
            position=page.position,
            received=page.received,
            last=page.last,
            unknown_statuses=page.unknown_statuses,
            server_time=page.server_time,
            excluded=page.excluded,
        )

    def history(
        self, page: TicketPage, *, stored: pd.DataFrame, fresh: pd.DataFrame
    ) -> pd.DataFrame:
        started = time.perf_counter()
        actors = pd.Series(page.actors, dtype=object)
        events = snapshot_events(stored, fresh, actors=actors[fresh.index])
        seconds = self.connector.stats.seconds
        seconds["diff"] += time.perf_counter() - started
        if self.config.actions and not fresh.empty:
            started = time.perf_counter()
            events = pd.concat([events, self._action_events(stored, fresh)], ignore_index=True)
            seconds["actions"] += time.perf_counter() - started
        return events

    def _action_events(self, stored: pd.DataFrame, fresh: pd.DataFrame) -> pd.DataFrame:
        """Actions of the incidents that are new or changed since they were stored."""
        known = dict(zip(stored["external_id"], stored["updated_at"], strict=True))
        records: list[EventRecord] = []
        for incident_id, updated in zip(fresh["external_id"], fresh["updated_at"], strict=True):
            if known.get(incident_id) != updated:
                records += self.connector.fetch_actions(str(incident_id))
        return events_frame(records)

    def details(self) -> dict[str, Any]:
        server = self.connector.server
        return {
            "server_version": server.version if server else None,
            "paging": server.paging.value if server else None,
        }


def _connector(
    config: SyncSourceConfig, client: httpx.Client, *, sleep: Callable[[float], None]
) -> SyncConnector:
    if isinstance(config, ServiceNowSourceConfig):
        return ServiceNowConnector(config, client, sleep=sleep)
    return TopdeskSync(TopdeskConnector(config, client, sleep=sleep))


def _fault_spec() -> tuple[str, int] | None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return None
    stage, _, page = spec.partition(":")
    return stage, int(page)


def _checkpoint(spec: tuple[str, int] | None, stage: str, page: int) -> None:
    """The crash-test hook: die here when ``TICKETFLOW_SYNC_FAULT`` names this point."""
    if spec == (stage, page):
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)


def _poll(attempt: Callable[[], bool], wait: float) -> bool:
    """Call ``attempt`` until it succeeds or ``wait`` seconds have passed."""
    deadline = time.monotonic() + wait
    while True:
        if attempt():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


@contextmanager
def _source_lock(engine: Engine, source: str, *, wait: float = LOCK_WAIT) -> Iterator[bool]:
    """Hold a lock that keeps two syncs of one source apart; yields False when it stays taken.

    PostgreSQL: a session advisory lock. SQLite: ``flock`` on a file beside the database. Both
    die with the process, so a killed sync never leaves a stale lock; waiting ``wait`` seconds
    covers the moment the server needs to notice a killed session.
    """

    def digest(scope: str) -> bytes:
        return hashlib.blake2b(f"ticketflow-sync:{scope}:{source}".encode(), digest_size=8).digest()

    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            # advisory locks are per database: key on the schema too, so warehouses in two
            # schemas of one database never block each other
            where = conn.execute(text("SELECT current_database(), current_schema()")).one()
            key = int.from_bytes(digest(f"{where[0]}.{where[1]}"), "big", signed=True)

            def take() -> bool:
                got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
                conn.commit()
                return bool(got)

            got = _poll(take, wait)
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        yield True
        return
    import fcntl

    path = Path(f"{database}.sync-{digest('sqlite').hex()}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def take_file() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    try:
        yield _poll(take_file, wait)
    finally:
        os.close(fd)


def _stored_cursor(engine: Engine, source: str) -> str | None:
    with engine.connect() as conn:
        for state in read_sync_states(conn):
            if state["source"] == source:
                cursor = state.get("cursor")
                return str(cursor) if cursor is not None else None
    return None


def _stored_snapshots(conn: Connection, source: str, ids: list[str]) -> pd.DataFrame:
    """The warehouse's rows for these tickets: what the fetched snapshots are compared with.

    One query per page: ``= ANY(array)`` on PostgreSQL, ``IN`` on SQLite. ``updated_at`` comes
    back raw and is converted column-wise (the per-row type conversion cost more than the query).
    """
    table = Ticket.__table__
    columns = [
        table.c.external_id,
        type_coerce(table.c.updated_at, NullType()).label("updated_at"),
        *(table.c[c] for c in SNAPSHOT_COLUMNS[2:]),
    ]
    rows: list[Any] = []
    if conn.dialect.name == "postgresql":
        wanted = bindparam("ids", type_=ARRAY(String()))
        stmt = select(*columns).where(table.c.source == source, table.c.external_id == any_(wanted))
        rows = list(conn.execute(stmt, {"ids": ids}).all())
    else:
        for i in range(0, len(ids), 5000):
            chunk = ids[i : i + 5000]
            stmt = select(*columns).where(table.c.source == source, table.c.external_id.in_(chunk))
            rows += conn.execute(stmt).all()
    frame = pd.DataFrame(rows, columns=list(SNAPSHOT_COLUMNS))
    frame["updated_at"] = pd.to_datetime(frame["updated_at"], utc=True, format="ISO8601")
    return frame


def _add(a: UpsertCounts, b: UpsertCounts) -> UpsertCounts:
    return UpsertCounts(a.inserted + b.inserted, a.updated + b.updated, a.unchanged + b.unchanged)


class _Run:
    """One source's sync in progress: its counters and the page-store step."""

    def __init__(
        self,
        engine: Engine,
        config: SyncSourceConfig,
        connector: SyncConnector,
        result: SourceResult,
        *,
        cursor_before: datetime | None,
        progress: Progress | None,
    ) -> None:
        self.engine = engine
        self.config = config
        self.connector = connector
        self.result = result
        self.cursor: datetime | None = cursor_before
        self.full = result.full
        self.progress = progress
        self.unknown: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.fault = _fault_spec()
        self.now = utcnow()
        self.found: set[str] = set()
        """external ids this run has listed so far (a full scan infers deletions from them)"""

    def _timed(self, phase: str, started: float) -> float:
        now = time.perf_counter()
        self.seconds[phase] += now - started
        return now

    def next_cursor(self, page: TicketPage) -> datetime | None:
        """Where the next run may start once this page is stored.

        The list is sorted on modification time, so everything below the page's position is
        stored. The server's clock caps it (a ticket dated in the future must not push the
        cursor past changes still to come), and an incremental run never moves it back.
        """
        position = page.position
        if position is not None and page.server_time is not None and position > page.server_time:
            log.warning(
                "tickets modified after the server's own time (%s > %s): cursor held back",
                position,
                page.server_time,
                extra={"source": self.config.name},
            )
            position = page.server_time
        if position is None:
            return self.cursor
        if self.cursor is None or self.full:
            return position
        return max(self.cursor, position)

    def store(self, page: TicketPage) -> None:
        """Write one page: tickets, events and cursor in one transaction."""
        started = time.perf_counter()
        source = self.config.name
        frame = page.tickets
        with self.engine.connect() as conn:
            stored = _stored_snapshots(conn, source, frame["external_id"].tolist())
        started = self._timed("read", started)
        fresh, stale = split_stale(stored, frame)
        events = self.connector.history(page, stored=stored, fresh=fresh)
        started = time.perf_counter()
        unknown = self.unknown + page.unknown_statuses
        cursor = self.next_cursor(page)
        number = page.number
        # the run's totals once this page is stored; they become the result after the commit
        after = replace(
            self.result,
            pages=self.result.pages + 1,
            incidents=self.result.incidents + page.received,
            stale=self.result.stale + len(stale),
            cursor=format_cursor(cursor) if cursor else None,
        )
        found = self.found
        found.update(frame["external_id"].tolist())
        found.update(page.excluded)
        # deleted as the tool says, unless this run listed it (deleted, then restored)
        reported = [i for i in page.deleted if i not in found]
        with self.engine.begin() as conn:
            counts = upsert_tickets(conn, fresh, now=self.now)
            _checkpoint(self.fault, "tickets", number)
            inserted = insert_events(conn, events, now=self.now)
            _checkpoint(self.fault, "events", number)
            if reported:
                after.deleted += mark_ids_deleted(conn, source=source, ids=reported, now=self.now)
            if page.excluded:  # listed, so still in the tool, though not stored again
                clear_deleted(conn, source=source, ids=page.excluded, now=self.now)
            if page.last and self.full:
                self._reconcile(conn, found, after)
            if page.unknown_statuses:
                record_unknown_statuses(
                    conn,
                    source=source,
                    unknown=dict(unknown),
                    mapped_to=self.connector.unknown_mapped_to,
                    now=self.now,
                )
            after.tickets = _add(after.tickets, counts)
            after.events_inserted += inserted
            self._save(conn, after, unknown, state="done" if page.last else "running")
            _checkpoint(self.fault, "cursor", number)
        _checkpoint(self.fault, "commit", number)
        self._timed("write", started)
        self.cursor, self.unknown, self.result = cursor, unknown, after
        r = after
        log.info(
            "%s: page %d stored: %d tickets received, %d new, %d changed, %d events; cursor %s",
            source,
            number,
            page.received,
            counts.inserted,
            counts.updated,
            inserted,
            r.cursor,
            extra={
                "source": source,
                "page": number,
                "received": page.received,
                "inserted": counts.inserted,
                "updated": counts.updated,
                "events": inserted,
                "cursor": r.cursor,
                "total": page.total,
            },
        )
        if self.progress is not None:
            self.progress(source, r.pages, r.incidents, page.last)

    def _reconcile(self, conn: Connection, found: set[str], after: SourceResult) -> None:
        """End of a complete full scan: mark stored tickets it did not find as deleted, in
        the transaction of its last page (an interrupted scan marks none)."""
        source = self.config.name
        deletions = mark_deleted(
            conn,
            source=source,
            found=found,
            now=self.now,
            max_fraction=self.config.max_delete_fraction,
        )
        after.deleted += deletions.marked
        after.deletions_refused = deletions.refused
        if deletions.refused:
            log.warning("%s: %s", source, deletions.refused, extra={"source": source})
        elif deletions.marked:
            log.info(
                "%s: %d of %d stored tickets no longer listed: marked deleted",
                source,
                deletions.marked,
                deletions.live,
                extra={"source": source, "deleted": deletions.marked},
            )

    def _save(
        self, conn: Connection, r: SourceResult, unknown: Counter[str], *, state: str
    ) -> None:
        save_sync_state(
            conn,
            source=r.source,
            kind=r.kind,
            now=utcnow(),
            cursor=r.cursor,
            status="ok",
            tickets_seen=r.incidents,
            tickets=r.tickets,
            events_inserted=r.events_inserted,
            details=self.details(state, r, unknown),
        )

    def details(
        self, state: str, result: SourceResult | None = None, unknown: Counter[str] | None = None
    ) -> dict[str, Any]:
        r = result or self.result
        stats = self.connector.stats
        return {
            "state": state,
            "mode": "full" if r.full else "incremental",
            "pages": r.pages,
            "stale": r.stale,
            "requests": stats.requests,
            "retries": stats.retries,
            "restarts": stats.restarts,
            **self.connector.details(),
            "cursor_before": r.cursor_before,
            "unknown_statuses": dict(self.unknown if unknown is None else unknown),
            **({"deleted": r.deleted} if r.full or r.deleted else {}),
            **({"deletions_refused": r.deletions_refused} if r.deletions_refused else {}),
        }

    def finish(self) -> None:
        r = self.result
        stats = self.connector.stats
        r.requests, r.retries, r.restarts = stats.requests, stats.retries, stats.restarts
        r.timings = {k: round(v, 4) for k, v in {**stats.seconds, **self.seconds}.items()}


def _record_failure(engine: Engine, result: SourceResult, details: dict[str, Any]) -> None:
    """Store the error as the source's last run; its cursor stays where it was."""
    try:
        with engine.begin() as conn:
            save_sync_state(
                conn,
                source=result.source,
                kind=result.kind,
                now=utcnow(),
                status="error",
                error=result.message,
                tickets_seen=result.incidents,
                tickets=result.tickets,
                events_inserted=result.events_inserted,
                details=details,
            )
    except Exception:  # the sync's own failure matters more than its bookkeeping
        log.exception("could not record the failed sync of %s", result.source)


def sync_source(
    engine: Engine,
    config: SyncSourceConfig,
    *,
    full: bool = False,
    client_factory: ClientFactory = _default_client,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
    lock_wait: float = LOCK_WAIT,
) -> SourceResult:
    """Sync one network source into the warehouse; never raises a ``ConnectorError``.

    Args:
        engine: the warehouse.
        config: the source.
        full: read every ticket, not just those changed since the cursor (the cursor then
            follows this scan, so an interrupted full sync continues on the next run).
        client_factory: builds the HTTP client (tests inject a fake's transport).
        progress: called after each stored page.
        sleep: how retries wait (tests pass a recorder).
        lock_wait: seconds to wait for another sync of this source to finish.

    Returns:
        The outcome; ``status == "error"`` with the message when the source failed.
    """
    started = time.perf_counter()
    result = SourceResult(source=config.name, kind=config.kind, full=full)
    run: _Run | None = None
    with _source_lock(engine, config.name, wait=lock_wait) as locked:
        if not locked:
            result.status = "error"
            result.message = f"another sync of this source is still running after {lock_wait:g} s"
            return result
        try:
            stored = _stored_cursor(engine, config.name)
            result.cursor_before = result.cursor = stored
            try:
                cursor = parse_cursor(stored)
            except ValueError as e:
                raise ConnectorConfigError(
                    f"the stored cursor `{stored}` is unreadable ({e}); "
                    "run `ticketflow sync --full` to rebuild it",
                    source=config.name,
                ) from e
            now = utcnow()
            if cursor is not None and cursor > now + FUTURE_CURSOR_SLACK:
                log.warning(
                    "%s: the stored cursor %s is in the future: nothing older will be read; "
                    "run with --full if that is wrong",
                    config.name,
                    stored,
                    extra={"source": config.name, "cursor": stored},
                )
            since = (
                None
                if full or cursor is None
                else cursor - timedelta(seconds=config.overlap_seconds)
            )
            log.info(
                "%s: %s sync from %s",
                config.name,
                "full" if full else "incremental",
                since.isoformat() if since else "the beginning",
                extra={"source": config.name, "since": since.isoformat() if since else None},
            )
            with client_factory(config) as client:
                connector = _connector(config, client, sleep=sleep)
                run = _Run(
                    engine,
                    config,
                    connector,
                    result,
                    cursor_before=cursor,
                    progress=progress,
                )
                for page in connector.pages(since=since):
                    run.store(page)
                run.finish()
                result = run.result
        except ConnectorError as e:
            if run is not None:
                run.finish()
                result = run.result
            result.status, result.message = "error", str(e)
            details = run.details("failed") if run is not None else {"state": "failed"}
            log.error("%s: sync failed: %s", config.name, e, extra={"source": config.name})
            _record_failure(engine, result, details)
        except BaseException as e:
            if run is not None:
                result = run.result
            result.status, result.message = "error", f"{type(e).__name__}: {e}"
            details = run.details("failed") if run is not None else {"state": "failed"}
            _record_failure(engine, result, details)
            raise
    result.seconds = time.perf_counter() - started
    return result


def _selected(settings: Settings, source: str | None) -> list[SourceConfigBase]:
    if source is not None:
        config = settings.source(source)
        if config.kind == "eventlog":
            raise ConfigError(
                [(f"source `{source}`", "is an event log: load it with `ticketflow import-log`")]
            )
        return [config]
    return [s for s in settings.sources if s.kind != "eventlog"]


def sync_sources(
    settings: Settings,
    *,
    source: str | None = None,
    full: bool = False,
    engine: Engine | None = None,
    client_factory: ClientFactory = _default_client,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[SourceResult]:
    """Sync the configured network sources (or the one named), one after the other.

    A source that fails is recorded and reported; the others still run. Disabled sources
    (unless named) and kinds without a connector yet are reported as skipped.

    Raises:
        ConfigError: ``source`` is not configured, or is an event log.
        WarehouseError: the warehouse cannot be opened.
    """
    configs = _selected(settings, source)
    engine = engine or make_engine(settings.warehouse.url)
    results: list[SourceResult] = []
    for config in configs:
        if not config.enabled and source is None:
            results.append(
                SourceResult(config.name, config.kind, "skipped", "disabled (name it to run it)")
            )
            continue
        if not isinstance(config, TopdeskSourceConfig | ServiceNowSourceConfig):
            results.append(
                SourceResult(
                    config.name, config.kind, "skipped", f"no connector for `{config.kind}` yet"
                )
            )
            continue
        try:
            result = sync_source(
                engine,
                config,
                full=full,
                client_factory=client_factory,
                progress=progress,
                sleep=sleep,
            )
        except SQLAlchemyError as e:
            cause = getattr(e, "orig", None) or e
            first_line = (str(cause).splitlines() or [""])[0]
            raise WarehouseError(
                f"the warehouse failed while syncing source `{config.name}` "
                f"({type(cause).__name__}: {first_line}); what was committed stays, "
                "the next sync continues from its cursor"
            ) from e
        results.append(result)
    return results
