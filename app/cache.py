"""Analytics computed once per warehouse change (or per interval) and shared by all requests.

The cache serves one *generation* at a time: a snapshot of the warehouse (the ticket and event
frames), the instant ``now`` its results are computed for, and the results themselves, keyed by
what was asked (analysis name and parameters).

- The warehouse's *version* is a cheap fingerprint (ticket count, newest ``loaded_at``, newest
  event id, newest sync run). It is read at most every ``change_check_seconds``.
- A generation goes stale when the warehouse version changes or when it is older than
  ``cache_seconds`` (ages and staleness grow with the clock). A stale generation is *replaced
  in the background*: one thread loads the new snapshot (only when the version changed) and
  recomputes every result that was asked for during the stale generation, in a new generation
  of its own; requests meanwhile keep getting the stale generation's results, each marked with
  its ``as_of`` and warehouse ``version``. When the new generation is complete it replaces the
  old one at once. So no request waits for a recompute, except the very first (no snapshot yet)
  and the first request for a result nobody asked for before.
- Computation is single-flight: when fifty requests ask for the same missing result at once,
  one computes it and the others wait for it.
- Entries are bounded (least recently used go first).
- A loaded snapshot is moved out of the garbage collector's sight (``gc.freeze``): its millions
  of small objects would otherwise make every full collection stall all requests.

While a new generation is built, two snapshots are in memory.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import pandas as pd
from sqlalchemy import Engine, func, select

from app.warehouse import read_events_frame, read_tickets_frame
from app.warehouse.schema import Event, SyncState, Ticket

__all__ = ["AnalyticsCache", "CacheStats", "Cached", "Compute", "Snapshot"]

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
    """the warehouse version (fingerprint) of the snapshot it was computed from"""


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    reloads: int = 0
    refreshes: int = 0
    """generations built in the background and put in service"""
    refresh_errors: int = 0
    """results a background refresh could not compute (left to the next request)"""


Compute = Callable[[Snapshot, datetime], Any]


@dataclass
class _Entry:
    cached: Cached[Any]
    compute: Compute | None
    """how to compute it again for the next generation; None: not carried over"""
    used: bool = True
    """asked for during this generation (only those are recomputed for the next)"""


@dataclass
class _Generation:
    snapshot: Snapshot
    now: datetime
    born: float
    entries: OrderedDict[Hashable, _Entry] = field(default_factory=OrderedDict)
    locks: dict[Hashable, threading.Lock] = field(default_factory=dict)


def _spawn_thread(job: Callable[[], None]) -> None:
    threading.Thread(target=job, name="analytics-refresh", daemon=True).start()


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
        spawn: Callable[[Callable[[], None]], None] = _spawn_thread,
    ) -> None:
        self._engine = engine
        self._max_age = max_age_seconds
        self._check_every = check_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._utcnow = utcnow
        self._on_compute = on_compute
        self._spawn = spawn
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._check_lock = threading.Lock()
        self._local = threading.local()
        self._gen: _Generation | None = None
        self._version: str | None = None
        self._checked = float("-inf")
        self._refreshing = False
        self._refresh_failed = float("-inf")
        self._idle = threading.Event()
        self._idle.set()
        self._epoch = 0
        self.stats = CacheStats()

    # the warehouse version

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

    # generations

    def _load(self, version: str) -> Snapshot:
        started = time.perf_counter()
        with self._engine.connect() as conn:
            tickets = read_tickets_frame(conn, raw=False)
            events = read_events_frame(conn)
        loaded = Snapshot(version=version, loaded_at=self._utcnow(), tickets=tickets, events=events)
        self.stats.reloads += 1
        # the frames hold millions of Python strings; keep the cyclic garbage collector
        # from walking them on every full collection (which stalls all requests)
        gc.unfreeze()
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

    def _generation(self, snapshot: Snapshot) -> _Generation:
        return _Generation(snapshot=snapshot, now=self._utcnow(), born=self._clock())

    def _stale(self, gen: _Generation, version: str) -> bool:
        return version != gen.snapshot.version or self._clock() - gen.born >= self._max_age

    def _serving(self) -> _Generation:
        """The generation requests are served from; loads the first one (the only wait), and
        starts a background refresh when the served one is stale."""
        building: _Generation | None = getattr(self._local, "gen", None)
        if building is not None:
            return building
        gen = self._gen
        if gen is None:
            with self._load_lock:
                gen = self._gen
                if gen is None:
                    gen = self._generation(self._load(self.version()))
                    self._gen = gen
            return gen
        if self._stale(gen, self.version()):
            self._start_refresh()
        return gen

    def _start_refresh(self) -> None:
        with self._lock:
            if self._refreshing:
                return
            # after a failed refresh, try again only after the next version check interval
            if self._clock() - self._refresh_failed < self._check_every:
                return
            self._refreshing = True
            self._idle.clear()
        try:
            self._spawn(self._refresh)
        except BaseException:
            self._end_refresh()
            raise

    def _end_refresh(self) -> None:
        with self._lock:
            self._refreshing = False
            self._idle.set()

    def _refresh(self) -> None:
        """Build the next generation beside the served one, then put it in service."""
        try:
            old = self._gen
            epoch = self._epoch
            if old is None:
                return
            version = self.version()
            # the frames are reloaded only when the warehouse changed (not for max age)
            same = version == old.snapshot.version
            snapshot = old.snapshot if same else self._load(version)
            new = self._generation(snapshot)
            self._local.gen = new
            try:
                self._recompute(old, new)
            finally:
                self._local.gen = None
            with self._lock:
                # carried into the generation after this one only when asked for during it
                for entry in new.entries.values():
                    entry.used = False
                if self._epoch == epoch:
                    self._gen = new
                    self.stats.refreshes += 1
            log.info(
                "analytics refreshed",
                extra={"version": snapshot.version, "results": len(new.entries)},
            )
        except Exception:
            # the served generation stays in service; the next check tries again
            self._refresh_failed = self._clock()
            log.exception("analytics refresh failed; serving the previous results")
        finally:
            self._end_refresh()

    def _recompute(self, old: _Generation, new: _Generation) -> None:
        """Every result asked for in ``old`` (most recent first), computed into ``new``; then
        those first asked for meanwhile (two more passes at most)."""
        tried: set[Hashable] = set()
        for _ in range(3):
            with self._lock:
                todo = [
                    (key, entry.compute)
                    for key, entry in reversed(old.entries.items())
                    if entry.used and entry.compute is not None and key not in tried
                ]
            if not todo:
                return
            for key, compute in todo:
                tried.add(key)
                if key in new.entries:
                    continue  # computed already, as a part of another result
                try:
                    self.get(key, compute)
                except Exception:
                    # not lost: the next request for it computes it and gets the error
                    self.stats.refresh_errors += 1
                    log.exception("background recompute failed", extra={"key": repr(key)})

    def wait_refreshed(self, timeout: float | None = None) -> bool:
        """Block until no background refresh runs (tests and benchmarks); False on timeout."""
        return self._idle.wait(timeout)

    # results

    def snapshot(self) -> Snapshot:
        """The frames of the generation being served (or built, inside a computation)."""
        return self._serving().snapshot

    def get(self, key: Hashable, compute: Compute, *, carry: bool = True) -> Cached[Any]:
        """The cached result for ``key``, computing it from the served snapshot when needed.

        ``key`` must name everything the result depends on besides the snapshot and ``now``
        (the analysis and its parameters); ``key[0]`` (or the key itself) labels metrics.
        ``carry=False`` for a computation that holds values of one generation (e.g. a part of
        another cached result): it is not recomputed in the background for the next one.
        """
        gen = self._serving()
        hit = self._lookup(gen, key)
        if hit is not None:
            return hit
        with self._lock:
            key_lock = gen.locks.setdefault(key, threading.Lock())
        with key_lock:
            hit = self._lookup(gen, key)
            if hit is not None:
                return hit
            self.stats.misses += 1
            outer = getattr(self._local, "gen", None)
            # results this computation asks for come from the same generation
            self._local.gen = gen
            started = time.perf_counter()
            try:
                value = compute(gen.snapshot, gen.now)
            finally:
                self._local.gen = outer
            seconds = time.perf_counter() - started
            if self._on_compute is not None:
                label = key[0] if isinstance(key, tuple) and key else key
                self._on_compute(str(label), seconds)
            cached = Cached(value=value, as_of=gen.now, version=gen.snapshot.version)
            with self._lock:
                gen.entries[key] = _Entry(cached, compute if carry else None)
                gen.entries.move_to_end(key)
                while len(gen.entries) > self._max_entries:
                    old, _ = gen.entries.popitem(last=False)
                    gen.locks.pop(old, None)
            return cached

    def peek(self, key: Hashable) -> Cached[Any] | None:
        """The cached result for ``key`` when it can be served without any I/O or computing.

        No database query and no lock wait: ``None`` when the fingerprint is due for a check,
        the served generation is stale and no refresh runs yet, or the entry is missing; the
        caller then takes the full path (``get``) in a worker thread. This is the hot path of
        every cached request.
        """
        gen = self._gen
        version = self._version
        if gen is None or version is None or self._clock() - self._checked >= self._check_every:
            return None
        if not self._refreshing and self._stale(gen, version):
            return None
        return self._lookup(gen, key)

    def _lookup(self, gen: _Generation, key: Hashable) -> Cached[Any] | None:
        with self._lock:
            entry = gen.entries.get(key)
            if entry is None:
                return None
            entry.used = True
            gen.entries.move_to_end(key)
            self.stats.hits += 1
            return entry.cached

    def is_current(self, cached: Cached[Any]) -> bool:
        """Whether ``cached`` was computed from the warehouse version last seen."""
        return cached.version == self._version

    def current_snapshot(self) -> Snapshot | None:
        """The snapshot served now, without checking the warehouse or loading."""
        gen = self._gen
        return gen.snapshot if gen is not None else None

    def clear(self) -> None:
        """Forget every result and the snapshot (the next request reloads)."""
        with self._lock:
            self._gen = None
            self._version = None
            self._epoch += 1
