"""Analytics computed once per warehouse change (or per interval) and shared by all requests.

The cache holds one *snapshot* of the warehouse (the ticket and event frames) and results
computed from it, keyed by what was asked (analysis name and parameters).

- The warehouse's *version* is a cheap fingerprint (ticket count, newest ``loaded_at``, newest
  event id, newest sync run). It is read at most every ``change_check_seconds``; when it
  changes, the next request reloads the frames and every result computed from the old
  snapshot is dropped.
- A result is also recomputed once it is older than ``cache_seconds`` even without a change,
  because ages and staleness grow with the clock.
- Computation is single-flight: when fifty requests ask for the same missing result at once,
  one computes it and the others wait for it.
- Entries are bounded (least recently used go first).
- A loaded snapshot is moved out of the garbage collector's sight (``gc.freeze``): its millions
  of small objects would otherwise make every full collection stall all requests.

Every result carries ``as_of``: the ``now`` it was computed for.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import pandas as pd
from sqlalchemy import Engine, func, select

from app.warehouse import read_events_frame, read_tickets_frame
from app.warehouse.schema import Event, SyncState, Ticket

__all__ = ["AnalyticsCache", "CacheStats", "Cached", "Snapshot"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Snapshot:
    """The warehouse as loaded at one version."""

    version: str
    loaded_at: datetime
    tickets: pd.DataFrame
    events: pd.DataFrame


@dataclass(frozen=True)
class Cached(Generic[T]):
    value: T
    as_of: datetime
    """the ``now`` the value was computed for"""
    version: str


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    reloads: int = 0


@dataclass
class _Entry:
    version: str
    computed: float
    cached: Cached[Any]


class AnalyticsCache:
    """Snapshot plus computed results; safe to share between request threads."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_age_seconds: float,
        check_seconds: float,
        max_entries: int = 512,
        clock: Callable[[], float] = time.monotonic,
        utcnow: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_compute: Callable[[str, float], None] | None = None,
    ) -> None:
        self._engine = engine
        self._max_age = max_age_seconds
        self._check_every = check_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._utcnow = utcnow
        self._on_compute = on_compute
        self._lock = threading.Lock()
        self._snapshot_lock = threading.Lock()
        self._check_lock = threading.Lock()
        self._key_locks: dict[Hashable, threading.Lock] = {}
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._snapshot: Snapshot | None = None
        self._version: str | None = None
        self._checked = float("-inf")
        self.stats = CacheStats()

    def version(self) -> str:
        """The warehouse's fingerprint, re-read at most every ``check_seconds``.

        One request re-reads it; requests arriving meanwhile use the last known version
        rather than queueing for database connections.
        """
        current = self._version
        due = current is None or self._clock() - self._checked >= self._check_every
        if not due:
            assert current is not None
            return current
        if not self._check_lock.acquire(blocking=current is None):
            assert current is not None
            return current
        try:
            if self._version is None or self._clock() - self._checked >= self._check_every:
                self._version = self._read_version()
                self._checked = self._clock()
            return self._version
        finally:
            self._check_lock.release()

    def _read_version(self) -> str:
        with self._engine.connect() as conn:
            tickets = conn.execute(
                select(func.count(), func.max(Ticket.loaded_at)).select_from(Ticket)
            ).one()
            # events are only ever inserted (or deleted with their ticket): the newest id
            # (primary key, no scan) tells a change
            events = conn.execute(select(func.max(Event.id))).scalar()
            runs = conn.execute(select(func.max(SyncState.last_run_at))).scalar()
        return f"t{tickets[0]}@{tickets[1]}/e{events}/s{runs}"

    def snapshot(self) -> Snapshot:
        """The frames of the current warehouse version, loaded once per version."""
        version = self.version()
        current = self._snapshot
        if current is not None and current.version == version:
            return current
        with self._snapshot_lock:
            current = self._snapshot
            if current is not None and current.version == self.version():
                return current
            started = time.perf_counter()
            gc.unfreeze()
            with self._engine.connect() as conn:
                tickets = read_tickets_frame(conn)
                events = read_events_frame(conn)
            loaded = Snapshot(
                version=version, loaded_at=self._utcnow(), tickets=tickets, events=events
            )
            self._snapshot = loaded
            self.stats.reloads += 1
            # the frames hold millions of Python strings; keep the cyclic garbage collector
            # from walking them on every full collection (which stalls all requests)
            gc.collect()
            gc.freeze()
            seconds = time.perf_counter() - started
            log.info(
                "warehouse snapshot loaded",
                extra={"tickets": len(tickets), "events": len(events), "seconds": seconds},
            )
            if self._on_compute is not None:
                self._on_compute("snapshot", seconds)
            return loaded

    def get(self, key: Hashable, compute: Callable[[Snapshot, datetime], T]) -> Cached[T]:
        """The cached result for ``key``, computing it from the current snapshot when needed.

        ``key`` must name everything the result depends on besides the snapshot and ``now``
        (the analysis and its parameters); ``key[0]`` (or the key itself) labels metrics.
        """
        snapshot = self.snapshot()
        hit = self._fresh(key, snapshot.version)
        if hit is not None:
            return hit
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
            previous = self._entries.get(key)
        acquired = False
        if previous is not None and previous.version == snapshot.version:
            acquired = key_lock.acquire(blocking=False)
            if not acquired:
                # another request is recomputing this expired result (``cache_seconds``):
                # serve the previous one meanwhile instead of queueing every request behind it
                self.stats.hits += 1
                return previous.cached
        if not acquired:
            key_lock.acquire()
        try:
            hit = self._fresh(key, snapshot.version)
            if hit is not None:
                return hit
            self.stats.misses += 1
            now = self._utcnow()
            started = time.perf_counter()
            value = compute(snapshot, now)
            seconds = time.perf_counter() - started
            if self._on_compute is not None:
                label = key[0] if isinstance(key, tuple) and key else key
                self._on_compute(str(label), seconds)
            cached = Cached(value=value, as_of=now, version=snapshot.version)
            with self._lock:
                self._entries[key] = _Entry(snapshot.version, self._clock(), cached)
                self._entries.move_to_end(key)
                while len(self._entries) > self._max_entries:
                    old, _ = self._entries.popitem(last=False)
                    self._key_locks.pop(old, None)
            return cached
        finally:
            key_lock.release()

    def peek(self, key: Hashable) -> Cached[Any] | None:
        """The cached result for ``key`` when it can be served without any I/O or computing.

        No database query and no lock wait: ``None`` when the fingerprint is due for a check,
        no snapshot is loaded, or the entry is missing or stale; the caller then takes the full
        path (``get``) in a worker thread. This is the hot path of every cached request.
        """
        version = self._version
        if version is None or self._clock() - self._checked >= self._check_every:
            return None
        snapshot = self._snapshot
        if snapshot is None or snapshot.version != version:
            return None
        return self._fresh(key, version)

    def _fresh(self, key: Hashable, version: str) -> Cached[Any] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.version != version or self._clock() - entry.computed >= self._max_age:
                return None
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return entry.cached

    def current_snapshot(self) -> Snapshot | None:
        """The snapshot loaded last, without checking the warehouse or loading."""
        return self._snapshot

    def clear(self) -> None:
        """Forget every result and the snapshot (the next request reloads)."""
        with self._lock:
            self._entries.clear()
            self._snapshot = None
            self._version = None
