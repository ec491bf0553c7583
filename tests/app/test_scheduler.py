"""Scheduler: schedules, run records, and the leader lock between processes."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from app.scheduler import CronSchedule, IntervalSchedule, Job, LeaderLock, Scheduler, default_jobs
from app.settings import Settings
from app.warehouse import make_engine
from app.warehouse.alerts_schema import OutboxMessage, SchedulerRun

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 3, 15, 12, 0, tzinfo=UTC)  # a Friday


def test_interval_and_cron_schedules() -> None:
    every = IntervalSchedule(timedelta(minutes=15))
    assert every.next_after(None, T0) == T0
    assert every.next_after(T0, T0) == T0 + timedelta(minutes=15)
    cron = CronSchedule("*/10 7-19 * * mon-fri", "Europe/Amsterdam")
    assert cron.next_after(T0, T0) == T0 + timedelta(minutes=10)
    friday_evening = datetime(2024, 3, 15, 18, 55, tzinfo=UTC)  # 19:55 in Amsterdam
    assert cron.next_after(friday_evening, friday_evening) == datetime(
        2024, 3, 18, 6, 0, tzinfo=UTC
    )


def test_jobs_run_when_due_and_restarts_remember_the_last_run(engine: Engine) -> None:
    now = [T0]
    calls: list[tuple[str, datetime]] = []

    def job(name: str) -> Job:
        return Job(name, IntervalSchedule(timedelta(minutes=15)), lambda t: calls.append((name, t)))

    def boom(_t: datetime) -> None:
        raise RuntimeError("helpdesk down")

    jobs = [
        job("sync:a"),
        Job(
            "alerts",
            IntervalSchedule(timedelta(hours=1)),
            lambda t: calls.append(("alerts", t)),
            after=("sync:a",),
        ),
        Job("bad", IntervalSchedule(timedelta(hours=1)), boom),
    ]
    first = Scheduler(engine, jobs, clock=lambda: now[0], holder="one")
    assert first.tick() == ["sync:a", "alerts", "bad"]
    now[0] = T0 + timedelta(minutes=10)
    assert first.tick() == []
    first.lock.release()  # type: ignore[union-attr]
    second = Scheduler(engine, jobs, clock=lambda: now[0], holder="two")  # a restart
    assert second.tick() == []
    now[0] = T0 + timedelta(minutes=15)
    assert second.tick() == ["sync:a", "alerts"]  # alerts follow a sync
    second.lock.release()  # type: ignore[union-attr]
    with engine.connect() as conn:
        runs = conn.execute(select(SchedulerRun).order_by(SchedulerRun.id)).all()
    assert [(r.job, r.holder, r.status) for r in runs] == [
        ("sync:a", "one", "ok"),
        ("alerts", "one", "ok"),
        ("bad", "one", "error"),
        ("sync:a", "two", "ok"),
        ("alerts", "two", "ok"),
    ]
    assert "helpdesk down" in runs[2].error


def test_a_second_lock_holder_is_refused_until_the_first_lets_go(engine: Engine) -> None:
    if engine.url.database in (None, "", ":memory:"):
        pytest.skip("in-memory SQLite has one process")
    other = make_engine(engine.url.render_as_string(hide_password=False))
    a, b = LeaderLock(engine), LeaderLock(other)
    assert a.acquire() and a.held()
    assert not b.acquire()
    a.release()
    assert b.acquire()
    b.release()
    other.dispose()


CHILD = """
import sys, threading, time
from datetime import UTC, datetime, timedelta
from app.scheduler import IntervalSchedule, Job, LeaderLock, Scheduler
from app.warehouse import make_engine

url, seconds, locked = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "1"
engine = make_engine(url)

class NoLock(LeaderLock):
    def acquire(self): return True
    def held(self): return True
    def release(self): pass

work = Job("work", IntervalSchedule(timedelta(0)), lambda now: time.sleep(0.15))
sched = Scheduler(engine, [work], clock=lambda: datetime.now(UTC), leader_retry=0.1,
                  tick_seconds=0.01, lock=None if locked else NoLock(engine))
print("started", flush=True)
stop = threading.Event()
threading.Timer(seconds, stop.set).start()
sched.run(stop)
"""


def _run_two(url: str, *, locked: bool) -> list[Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", CHILD, url]
    flag = "1" if locked else "0"
    a = subprocess.Popen([*args, "3", flag], env=env, cwd=REPO, stdout=subprocess.PIPE)
    b = subprocess.Popen([*args, "3", flag], env=env, cwd=REPO, stdout=subprocess.PIPE)
    for proc in (a, b):
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"started"
    engine = make_engine(url)
    time.sleep(1.0)  # both are up and ticking: only the lock keeps them apart
    with engine.connect() as conn:
        latest = conn.execute(
            select(SchedulerRun.holder).order_by(SchedulerRun.started_at.desc())
        ).first()
    assert latest is not None
    leader, standby = (a, b) if latest.holder.endswith(f":{a.pid}") else (b, a)
    leader.send_signal(signal.SIGKILL)  # kill the leader in the middle of its work
    leader.wait(timeout=30)
    killed_at = datetime.now(UTC)
    assert standby.wait(timeout=60) == 0
    with engine.connect() as conn:
        runs = conn.execute(select(SchedulerRun).order_by(SchedulerRun.started_at)).all()
    engine.dispose()
    for proc in (a, b):
        assert proc.stdout is not None
        proc.stdout.close()
    # a run cut short by the kill ends when its process died
    return [(r.holder, r.started_at, r.finished_at or killed_at) for r in runs]


def _overlaps(runs: list[Any]) -> int:
    """How many runs started before every earlier run had finished."""
    count, busy_until = 0, None
    for _, start, end in sorted(runs, key=lambda r: r[1]):
        if busy_until is not None and start < busy_until:
            count += 1
        busy_until = end if busy_until is None else max(busy_until, end)
    return count


@pytest.mark.postgres
def test_two_scheduler_processes_on_postgresql_never_overlap(postgres_url: str) -> None:
    make_engine(postgres_url).dispose()  # migrate once, before both start
    runs = _run_two(postgres_url, locked=True)
    holders = {h for h, _, _ in runs}
    assert len(holders) == 2, "the standby must take over after the leader is killed"
    assert len(runs) >= 8
    assert _overlaps(runs) == 0


@pytest.mark.postgres
def test_without_the_lock_the_same_processes_do_overlap(postgres_url: str) -> None:
    """The control: the overlap check above is able to fail."""
    make_engine(postgres_url).dispose()
    runs = _run_two(postgres_url, locked=False)
    assert _overlaps(runs) > 0


def test_run_stops_and_releases_the_lock(engine: Engine) -> None:
    stop = threading.Event()
    ran: list[datetime] = []
    sched = Scheduler(
        engine, [Job("j", IntervalSchedule(timedelta(0)), ran.append)], tick_seconds=0.01
    )
    threading.Timer(0.3, stop.set).start()
    sched.run(stop)
    assert ran and not sched.lock.held()  # type: ignore[union-attr]


def test_worker_once_evaluates_alerts_from_the_warehouse_and_delivers(tmp_path: Path) -> None:
    from tests.app.test_api_support import fill_warehouse
    from tests.fakes.receiver import Receiver

    secret = "whsec_" + base64.b64encode(b"w" * 32).decode()
    receiver = Receiver(secret=secret).start()
    url = f"sqlite:///{tmp_path / 'w.db'}"
    engine = make_engine(url)
    fill_warehouse(engine)
    (tmp_path / "ticketflow.toml").write_text(
        f"""
[warehouse]
url = "{url}"
[alerts]
allow_networks = ["127.0.0.0/8"]
[[alerts.webhooks]]
name = "ops"
url = "{receiver.url}"
secret_env = "TF_WORKER_SECRET"
[[alerts.rules]]
name = "all"
conditions = ["stale", "sla_breached", "unassigned", "customer_not_updated"]
webhooks = ["ops"]
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETFLOW_")}
    env["TF_WORKER_SECRET"] = secret
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "worker", "--once"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    receiver.stop()
    assert done.returncode == 0, done.stderr
    with engine.connect() as conn:
        jobs = [r.job for r in conn.execute(select(SchedulerRun).order_by(SchedulerRun.id))]
        sent = conn.execute(select(OutboxMessage)).all()
    engine.dispose()
    assert jobs == ["alerts", "housekeeping"]  # no network source; delivery is not recorded
    assert sent and {m.status for m in sent} == {"delivered"}
    assert len(receiver.delivered) == len(sent) and all(r.verified for r in receiver.requests)


def test_the_worker_refuses_a_webhook_the_egress_policy_forbids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.errors import ConfigError
    from app.scheduler import start_scheduler
    from app.settings import load_settings

    monkeypatch.setenv("TF_WORKER_SECRET", "whsec_" + base64.b64encode(b"w" * 32).decode())
    settings = load_settings(
        None,
        warehouse={"url": f"sqlite:///{tmp_path / 'w.db'}"},
        alerts={
            "webhooks": [
                {
                    "name": "meta",
                    "url": "http://169.254.169.254/x",
                    "secret_env": "TF_WORKER_SECRET",
                }
            ]
        },
    )
    with pytest.raises(ConfigError, match="cloud metadata"):
        start_scheduler(settings, once=True)


def test_a_cron_job_that_never_ran_runs_at_its_first_fire_time(engine: Engine) -> None:
    now = [datetime(2024, 3, 2, 10, 5, tzinfo=UTC)]  # a Saturday
    calls: list[datetime] = []
    jobs = [Job("sync-full:a", CronSchedule("0 3 * * sun"), calls.append)]  # Sundays 03:00 UTC
    scheduler = Scheduler(engine, jobs, clock=lambda: now[0], holder="one")
    assert scheduler.tick() == []
    now[0] = datetime(2024, 3, 3, 2, 59, tzinfo=UTC)
    assert scheduler.tick() == []
    now[0] = datetime(2024, 3, 3, 3, 0, 5, tzinfo=UTC)
    assert scheduler.tick() == ["sync-full:a"]
    now[0] = datetime(2024, 3, 3, 4, 0, tzinfo=UTC)
    assert scheduler.tick() == []  # the run is recorded: next Sunday
    assert calls == [datetime(2024, 3, 3, 3, 0, 5, tzinfo=UTC)]
    scheduler.lock.release()  # type: ignore[union-attr]


def test_every_network_source_gets_a_weekly_full_sync_unless_configured(tmp_path: Path) -> None:
    sources = [
        {"name": "td", "kind": "topdesk", "base_url": "https://td.example"},
        {"name": "sn", "kind": "servicenow", "base_url": "https://sn.example"},
    ]
    settings = Settings.model_validate(
        {
            "warehouse": {"url": f"sqlite:///{tmp_path / 'w.db'}"},
            "sources": sources,
            "schedule": {
                "sources": [
                    {
                        "source": "sn",
                        "interval_minutes": 5,
                        "full_cron": "30 1 * * *",
                        "timezone": "Europe/Amsterdam",
                    }
                ]
            },
        }
    )
    engine = make_engine(settings.warehouse.url)
    jobs = {j.name: j for j in default_jobs(engine, settings)}
    assert jobs["sync-full:td"].schedule == CronSchedule("0 3 * * sun", "UTC")
    assert jobs["sync-full:sn"].schedule == CronSchedule("30 1 * * *", "Europe/Amsterdam")
    never = settings.model_copy(
        update={"schedule": settings.schedule.model_copy(update={"full_sync_cron": None})}
    )
    names = {j.name for j in default_jobs(engine, never)}
    assert "sync-full:td" not in names and "sync-full:sn" in names
    engine.dispose()
