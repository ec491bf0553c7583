"""Import an exported event log into the warehouse (``ticketflow import-log``).

The whole file is read and checked first; then its tickets and events are written in batches
inside ONE transaction together with the source's sync state. A failure anywhere (bad file,
database error, interrupt) rolls everything back: what the warehouse held before is untouched,
and the failure is recorded as the source's last error.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from app.errors import ConfigError, ImportFailedError
from app.settings import Settings
from app.warehouse import (
    UpsertCounts,
    insert_events,
    make_engine,
    record_unknown_statuses,
    save_sync_state,
    upsert_tickets,
    utcnow,
)
from connectors.config import EventLogSourceConfig
from connectors.errors import ConnectorError
from connectors.eventlog import FORMATS, LogImport, SkippedRow, read_event_log
from connectors.statusmap import default_status_map

__all__ = ["ImportSummary", "Progress", "import_log", "resolve_log_source"]

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""called as ``progress(phase, done, total)`` while writing"""


@dataclass(frozen=True)
class ImportSummary:
    source: str
    path: Path
    format: str
    rows_read: int
    tickets: UpsertCounts
    events_read: int
    events_inserted: int
    skipped: list[SkippedRow] = field(default_factory=list)
    unknown_statuses: dict[str, int] = field(default_factory=dict)
    unknown_activities: dict[str, int] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)
    unknown_mapped_to: str = ""
    seconds: float = 0.0

    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(s.reason for s in self.skipped).most_common())


def _default_source_name(path: Path) -> str:
    stem = path.name
    for suffix in (".gz", ".csv", ".txt"):
        stem = stem.removesuffix(suffix)
    return re.sub(r"[^A-Za-z0-9_.\-]+", "-", stem).strip("-") or "eventlog"


def resolve_log_source(
    settings: Settings,
    *,
    path: Path | None,
    fmt: str | None,
    source: str | None,
    overrides: dict[str, Any] | None = None,
) -> tuple[EventLogSourceConfig, Path]:
    """The source config and file to import, from the command line and the config file.

    A ``--source`` that is configured supplies its settings (format, status map, time zone,
    columns, path); one that is not configured is created on the fly from the command line.
    """
    configured: EventLogSourceConfig | None = None
    if source is not None:
        for s in settings.sources:
            if s.name == source:
                if not isinstance(s, EventLogSourceConfig):
                    raise ConfigError(
                        [(f"source `{source}`", f"is kind `{s.kind}`, import-log needs `eventlog`")]
                    )
                configured = s
    if path is None:
        if configured is None or configured.path is None:
            raise ConfigError([("PATH", "give the log file, or a --source with `path` set")])
        path = configured.path
    updates: dict[str, Any] = {k: v for k, v in (overrides or {}).items() if v is not None}
    if fmt is not None:
        updates["format"] = fmt
    if configured is not None:
        data = configured.model_dump(exclude_unset=True) | updates
    else:
        if fmt is None:
            raise ConfigError(
                [("--format", f"required for an unconfigured source; one of {', '.join(FORMATS)}")]
            )
        data = {"name": source or _default_source_name(path), "kind": "eventlog", **updates}
    try:
        return EventLogSourceConfig.model_validate(data), path
    except Exception as e:
        raise ConfigError([("import-log", str(e))]) from e


def _batches(total: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, total)) for i in range(0, total, size)]


def _write(
    engine: Engine,
    *,
    config: EventLogSourceConfig,
    path: Path,
    result: LogImport,
    batch_size: int,
    progress: Progress | None,
) -> tuple[UpsertCounts, int]:
    now = utcnow()
    tickets, events = result.tickets, result.events
    inserted = updated = unchanged = 0
    events_inserted = 0
    with engine.begin() as conn:
        for part in _batches(len(tickets), batch_size):
            counts = upsert_tickets(conn, tickets.iloc[part], now=now)
            inserted, updated = inserted + counts.inserted, updated + counts.updated
            unchanged += counts.unchanged
            if progress:
                progress("tickets", part.stop, len(tickets))
        for part in _batches(len(events), batch_size * 5):
            events_inserted += insert_events(conn, events.iloc[part], now=now)
            if progress:
                progress("events", part.stop, len(events))
        ticket_counts = UpsertCounts(inserted, updated, unchanged)
        record_unknown_statuses(
            conn,
            source=config.name,
            unknown=result.unknown_statuses,
            mapped_to=config.unknown_status.value,
            now=now,
        )
        save_sync_state(
            conn,
            source=config.name,
            kind="eventlog",
            now=now,
            cursor=None,
            tickets_seen=len(tickets),
            tickets=ticket_counts,
            events_inserted=events_inserted,
            rows_skipped=len(result.skipped),
            details={
                "path": str(path),
                "format": config.format,
                "rows_read": result.rows_read,
                "events_read": len(events),
                "skipped_by_reason": dict(Counter(s.reason for s in result.skipped)),
                "unknown_statuses": result.unknown_statuses,
                "unknown_activities": result.unknown_activities,
                "notes": result.notes,
            },
        )
    return ticket_counts, events_inserted


def _record_failure(engine: Engine, *, source: str, error: str) -> None:
    try:
        with engine.begin() as conn:
            save_sync_state(
                conn, source=source, kind="eventlog", now=utcnow(), status="error", error=error
            )
    except Exception:  # the original failure matters more than its bookkeeping
        log.exception("could not record the failed import of %s", source)


def import_log(
    settings: Settings,
    *,
    path: Path | None,
    fmt: str | None = None,
    source: str | None = None,
    strict: bool = False,
    overrides: dict[str, Any] | None = None,
    progress: Progress | None = None,
    engine: Engine | None = None,
) -> ImportSummary:
    """Read an event log and write its tickets and events to the warehouse atomically.

    Args:
        settings: the loaded settings (warehouse URL, configured sources).
        path: the log file; may be None when the configured ``source`` names one.
        fmt: the log format (``FORMATS``); the configured source's format when None.
        source: the source name the tickets are stored under.
        strict: fail, writing nothing, when any row had to be skipped.
        overrides: more EventLogSourceConfig keys from the command line (timezone, ...).
        progress: called while writing.
        engine: an engine to reuse; one for ``settings.warehouse.url`` otherwise.

    Raises:
        ConfigError: the source or options are invalid.
        ImportFailedError: the file could not be imported; the warehouse is unchanged.
    """
    config, path = resolve_log_source(
        settings, path=path, fmt=fmt, source=source, overrides=overrides
    )
    started = time.perf_counter()
    status_map = default_status_map(
        config.format, overrides=config.status_map, fallback=config.unknown_status
    )
    engine = engine or make_engine(settings.warehouse.url)
    try:
        log.info("reading %s as %s for source %s", path, config.format, config.name)
        result = read_event_log(path, config=config, status_map=status_map)
        if strict and result.skipped:
            first = result.skipped[0]
            raise ImportFailedError(
                f"{len(result.skipped)} rows could not be read (first: line {first.line}, "
                f"{first.reason}); nothing was imported (--strict)"
            )
        tickets, events_inserted = _write(
            engine,
            config=config,
            path=path,
            result=result,
            batch_size=settings.warehouse.batch_size,
            progress=progress,
        )
    except (ConnectorError, ImportFailedError, OSError) as e:
        _record_failure(engine, source=config.name, error=str(e))
        if isinstance(e, ImportFailedError):
            raise
        raise ImportFailedError(f"{path}: {e}; nothing was imported") from e
    except BaseException as e:
        _record_failure(engine, source=config.name, error=f"{type(e).__name__}: {e}")
        raise
    return ImportSummary(
        source=config.name,
        path=path,
        format=config.format,
        rows_read=result.rows_read,
        tickets=tickets,
        events_read=len(result.events),
        events_inserted=events_inserted,
        skipped=result.skipped,
        unknown_statuses=result.unknown_statuses,
        unknown_activities=result.unknown_activities,
        notes=result.notes,
        unknown_mapped_to=config.unknown_status.value,
        seconds=time.perf_counter() - started,
    )
