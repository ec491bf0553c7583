"""The scheduler: sync → analytics → alerts on a schedule per source, then delivery.

One loop (``Scheduler.run``), run by ``ticketflow worker`` or, when ``[schedule] in_serve`` is
set, by ``ticketflow serve`` in a thread. Each tick, if this process is the leader:

1. every network source whose schedule is due is synced (``app.sync.sync_sources``): every
   ``interval_minutes``, or on its ``cron`` expression (five fields, in its time zone;
   APScheduler's ``CronTrigger`` computes the fire times, DST included); and fully on
   ``full_sync_cron`` (or the source's ``full_cron``), which finds deleted tickets;
2. after any sync, or every ``alerts_interval_minutes``, the alerts are evaluated
   (``app.outbox.evaluate_alerts``) and due daily digests are queued;
3. due messages are delivered (``app.delivery.deliver_due``).

Each run is recorded in ``scheduler_runs`` (job, holder, start, end, outcome); the next due
time is computed from the last recorded start, so a restart neither skips nor repeats a run.

**Leader lock.** Several replicas may run against one PostgreSQL warehouse; only the holder of
a session advisory lock (``pg_try_advisory_lock`` on a dedicated connection, keyed on the
schema) schedules. When the leader dies its connection closes, the server drops the lock and a
standby takes over within ``leader_retry_seconds``. The leader checks its connection every
tick and steps down when it is gone. On SQLite the lock is an ``flock`` on a file beside the
database: one scheduler per machine and database file.

Why a small loop rather than APScheduler's ``BackgroundScheduler``: that scheduler keeps its
own clock and job store and has no notion of a leader among replicas; here the lock, the
run records and an injectable clock (for the outage test) are the point. The cron arithmetic is
APScheduler's.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, func, select, text, update

from app.alert_settings import ScheduleSettings
from app.settings import Settings
from app.warehouse.alerts_schema import SchedulerRun

__all__ = [
    "CronSchedule",
    "IntervalSchedule",
    "Job",
    "LeaderLock",
    "Scheduler",
    "SchedulerHandle",
    "default_jobs",
    "start_scheduler",
]

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class LeaderLock:
    """Held by at most one scheduler per warehouse (see the module docstring)."""

    def __init__(self, engine: Engine, name: str = "scheduler") -> None:
        self.engine = engine
        self.name = name
        self._conn: Connection | None = None
        self._fd: int | None = None

    def _key(self, conn: Connection) -> int:
        schema = conn.execute(text("SELECT current_schema()")).scalar() or "public"
        raw = f"ticketflow:{self.name}:{schema}".encode()
        return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big", signed=True)

    def acquire(self) -> bool:
        """Try once; True when this process holds (or already held) the lock."""
        if self.held():
            return True
        if self.engine.dialect.name == "postgresql":
            conn = self.engine.connect()
            try:
                key = self._key(conn)
                got = bool(
                    conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
                )
                conn.commit()
            except Exception:
                conn.close()
                raise
            if got:
                self._conn = conn
            else:
                conn.close()
            return got
        database = self.engine.url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            self._fd = -1
            return True
        import fcntl

        fd = os.open(Path(f"{database}.{self.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def held(self) -> bool:
        """Whether the lock is still ours (on PostgreSQL: the connection still answers)."""
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                self._conn.commit()
                return True
            except Exception:
                log.warning("scheduler: lost the warehouse connection: stepping down")
                self._drop()
                return False
        return self._fd is not None

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except Exception:  # the connection is already gone
                pass
            self._conn = None

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock_all()"))
                self._conn.commit()
            finally:
                self._conn.close()
                self._conn = None
        if self._fd is not None:
            if self._fd >= 0:
                os.close(self._fd)  # closing releases the flock
            self._fd = None


class Schedule(Protocol):
    def next_after(self, last: datetime | None, now: datetime) -> datetime: ...

    def first_due(self, seen: datetime) -> datetime:
        """When a job that never ran is due, the scheduler having first seen it at ``seen``."""
        ...


@dataclass(frozen=True)
class IntervalSchedule:
    every: timedelta

    def next_after(self, last: datetime | None, now: datetime) -> datetime:
        return now if last is None else last + self.every

    def first_due(self, seen: datetime) -> datetime:
        return seen  # at once


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    timezone: str = "UTC"

    def next_after(self, last: datetime | None, now: datetime) -> datetime:
        from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

        trigger = CronTrigger.from_crontab(self.expression, timezone=self.timezone)
        after = (last or now) + timedelta(seconds=1)
        nxt = trigger.get_next_fire_time(None, after)
        assert nxt is not None
        return datetime.fromtimestamp(nxt.timestamp(), UTC)

    def first_due(self, seen: datetime) -> datetime:
        return self.next_after(seen, seen)  # the first fire time after it was seen


@dataclass
class Job:
    name: str
    schedule: Schedule
    run: Callable[[datetime], dict[str, Any] | None]
    after: tuple[str, ...] = ()
    """names of jobs whose run in this tick makes this one due too"""
    record: bool = True
    """keep a ``scheduler_runs`` row per run (off for the frequent delivery poll)"""


@dataclass
class Scheduler:
    engine: Engine
    jobs: Sequence[Job]
    clock: Clock = utcnow
    lock: LeaderLock | None = None
    holder: str = field(default_factory=lambda: f"{os.uname().nodename}:{os.getpid()}")
    leader_retry: float = 10.0
    tick_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.lock is None:
            self.lock = LeaderLock(self.engine)
        self._unrecorded: dict[str, datetime] = {}
        self._first_seen: dict[str, datetime] = {}

    def _last_starts(self) -> dict[str, datetime]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(SchedulerRun.job, func.max(SchedulerRun.started_at)).group_by(
                    SchedulerRun.job
                )
            ).all()
        return {str(r[0]): r[1] for r in rows}

    def _record(self, job: str, started: datetime) -> int:
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    SchedulerRun.__table__.insert()  # type: ignore[attr-defined]
                    .values(job=job, holder=self.holder, started_at=started, status="running")
                    .returning(SchedulerRun.id)
                ).scalar_one()
            )

    def _finish(self, run_id: int, *, status: str, error: str | None, details: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(SchedulerRun)
                .where(SchedulerRun.id == run_id)
                .values(finished_at=self.clock(), status=status, error=error, details=details)
            )

    def tick(self) -> list[str]:
        """Run every due job once (if leader); returns the names of the jobs run."""
        assert self.lock is not None
        if not self.lock.acquire():
            return []
        last = {**self._last_starts(), **self._unrecorded}
        ran: list[str] = []
        for job in self.jobs:
            now = self.clock()
            previous = last.get(job.name)
            if previous is None:
                due = now >= job.schedule.first_due(self._first_seen.setdefault(job.name, now))
            else:
                due = now >= job.schedule.next_after(previous, now)
            if not due and not any(name in ran for name in job.after):
                continue
            if not self.lock.held():
                break
            if not job.record:
                self._unrecorded[job.name] = now
                try:
                    job.run(now)
                except Exception:
                    log.exception("scheduled job %s failed", job.name, extra={"job": job.name})
                ran.append(job.name)
                continue
            run_id = self._record(job.name, now)
            try:
                details = job.run(now)
            except Exception as e:
                log.exception("scheduled job %s failed", job.name, extra={"job": job.name})
                self._finish(run_id, status="error", error=f"{type(e).__name__}: {e}", details=None)
            else:
                self._finish(run_id, status="ok", error=None, details=details)
            ran.append(job.name)
        return ran

    def run(self, stop: threading.Event, *, max_ticks: int | None = None) -> None:
        """Tick until ``stop`` is set; a standby retries the lock every ``leader_retry``."""
        assert self.lock is not None
        ticks = 0
        try:
            while not stop.is_set():
                leader = self.lock.acquire()
                if leader:
                    self.tick()
                ticks += 1
                if max_ticks is not None and ticks >= max_ticks:
                    return
                stop.wait(self.tick_seconds if leader else self.leader_retry)
        finally:
            self.lock.release()


def default_jobs(
    engine: Engine,
    settings: Settings,
    *,
    client: Any = None,
) -> list[Job]:
    """sync:<source> per network source (and sync-full:<source> on the full-sync cron), then
    ``alerts`` (after syncs or on its interval), then ``delivery`` every tick."""
    from app.delivery import deliver_due, make_client, prune
    from app.outbox import evaluate_alerts, queue_digests
    from app.sync import sync_sources

    sched: ScheduleSettings = settings.schedule
    own = {s.source: s for s in sched.sources}
    jobs: list[Job] = []
    for source in settings.sources:
        if source.kind == "eventlog" or not source.enabled:
            continue
        entry = own.get(source.name)
        schedule: Schedule
        if entry is not None and entry.cron is not None:
            schedule = CronSchedule(entry.cron, entry.timezone)
        else:
            minutes = entry.interval_minutes if entry and entry.interval_minutes else None
            schedule = IntervalSchedule(timedelta(minutes=minutes or sched.interval_minutes))

        def sync(_now: datetime, name: str = source.name, full: bool = False) -> dict[str, Any]:
            results = sync_sources(settings, source=name, engine=engine, full=full)
            return {
                r.source: {"status": r.status, "message": r.message, "deleted": r.deleted}
                for r in results
            }

        jobs.append(Job(f"sync:{source.name}", schedule, sync))
        full_cron = entry.full_cron if entry and entry.full_cron else sched.full_sync_cron
        if full_cron:
            zone = entry.timezone if entry and entry.full_cron else "UTC"
            jobs.append(
                Job(
                    f"sync-full:{source.name}",
                    CronSchedule(full_cron, zone),
                    functools.partial(sync, name=source.name, full=True),
                )
            )

    def alerts(now: datetime) -> dict[str, Any]:
        result = evaluate_alerts(engine, settings.alerts, now=now)
        digests = queue_digests(engine, settings.alerts, now=now)
        return {"opened": result.opened, "cleared": result.cleared, "digests": digests}

    sync_names = tuple(j.name for j in jobs)
    jobs.append(
        Job(
            "alerts",
            IntervalSchedule(timedelta(minutes=sched.alerts_interval_minutes)),
            alerts,
            after=sync_names,
        )
    )

    def housekeeping(now: datetime) -> dict[str, Any]:
        return {"deleted": prune(engine, now=now, keep_days=settings.alerts.attempts_keep_days)}

    jobs.append(Job("housekeeping", IntervalSchedule(timedelta(days=1)), housekeeping))
    shared = client or make_client(settings.alerts)

    def delivery(now: datetime) -> dict[str, Any]:
        stats = deliver_due(engine, settings.alerts, client=shared, now=now)
        return {"attempted": stats.attempted, "delivered": stats.delivered}

    jobs.append(
        Job(
            "delivery",
            IntervalSchedule(timedelta(seconds=sched.delivery_poll_seconds)),
            delivery,
            record=False,
        )
    )
    return jobs


class SchedulerHandle:
    """A started scheduler: ``wait()`` until it stops, ``stop()`` to stop it."""

    def __init__(self, scheduler: Scheduler, stop: threading.Event, cleanup: Callable[[], None]):
        self.scheduler = scheduler
        self.stop_event = stop
        self._cleanup = cleanup
        self._thread: threading.Thread | None = None
        self._done = threading.Event()

    def _run(self, once: bool) -> None:
        try:
            if once:
                self.scheduler.tick()
                assert self.scheduler.lock is not None
                self.scheduler.lock.release()
            else:
                self.scheduler.run(self.stop_event)
        finally:
            self._cleanup()
            self._done.set()

    def stop(self) -> None:
        self.stop_event.set()
        self._done.wait(timeout=60)

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
        self._done.wait()


def start_scheduler(
    settings: Settings, *, once: bool = False, background: bool = False
) -> SchedulerHandle:
    """Build the scheduler of ``settings`` and start it.

    Foreground (``ticketflow worker``): runs in ``wait()``, stops on SIGTERM/SIGINT.
    Background (``ticketflow serve`` with ``[schedule] in_serve``): a daemon thread.

    Raises:
        ConfigError: a webhook's URL or secret cannot be read, or its URL is refused by the
            egress policy.
    """
    import signal

    from app.delivery import check_webhooks, make_client
    from app.errors import ConfigError
    from app.warehouse import make_engine

    problems = check_webhooks(settings.alerts)
    if problems:
        raise ConfigError(problems)
    engine = make_engine(settings.warehouse.url)
    client = make_client(settings.alerts)
    sched = Scheduler(
        engine,
        default_jobs(engine, settings, client=client),
        leader_retry=settings.schedule.leader_retry_seconds,
        tick_seconds=min(settings.schedule.delivery_poll_seconds, 5.0),
    )
    stop = threading.Event()

    def cleanup() -> None:
        client.close()
        engine.dispose()

    handle = SchedulerHandle(sched, stop, cleanup)
    log.info(
        "scheduler starting (%s)",
        "once" if once else "background" if background else "foreground",
        extra={"holder": sched.holder, "jobs": [j.name for j in sched.jobs]},
    )
    if background:
        handle._thread = threading.Thread(
            target=handle._run, args=(once,), name="ticketflow-scheduler", daemon=True
        )
        handle._thread.start()
        return handle
    if not once and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    handle._thread = threading.Thread(target=handle._run, args=(once,), name="scheduler")
    handle._thread.start()
    return handle
