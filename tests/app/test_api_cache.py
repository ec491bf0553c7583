"""The analytics cache: computed once per warehouse version, single-flight, bounded, expiring."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from app.cache import AnalyticsCache, Snapshot
from app.warehouse import upsert_tickets
from connectors.base import tickets_frame
from tests.app.test_api_support import NOW, sample_tickets, warehouse


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    yield eng
    eng.dispose()


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_results_are_reused_until_the_warehouse_changes(engine: Engine) -> None:
    clock = Clock()
    cache = AnalyticsCache(engine, max_age_seconds=300, check_seconds=10, clock=clock)
    calls: list[int] = []

    def count(snapshot: Snapshot, _now: datetime) -> int:
        calls.append(1)
        return len(snapshot.tickets)

    assert cache.get(("n",), count).value == 20
    assert cache.get(("n",), count).value == 20
    assert len(calls) == 1 and cache.stats.hits == 1 and cache.stats.reloads == 1
    # a change in the warehouse: a new ticket
    extra = sample_tickets()[0]
    with engine.begin() as conn:
        frame = tickets_frame([extra]).assign(external_id="NEW-1")
        upsert_tickets(conn, frame, now=NOW + timedelta(days=1))
    # not seen before the next check ...
    assert cache.get(("n",), count).value == 20
    clock.t = 10
    # ... and seen after it: the snapshot is reloaded and the result recomputed
    assert cache.get(("n",), count).value == 21
    assert len(calls) == 2 and cache.stats.reloads == 2


def test_results_expire_after_max_age(engine: Engine) -> None:
    clock = Clock()
    cache = AnalyticsCache(engine, max_age_seconds=60, check_seconds=1000, clock=clock)
    calls: list[datetime] = []

    def record(_s: Snapshot, now: datetime) -> datetime:
        calls.append(now)
        return now

    first = cache.get("k", record)
    clock.t = 59
    assert cache.get("k", record).as_of == first.as_of
    clock.t = 60
    assert cache.get("k", record).as_of >= first.as_of
    assert len(calls) == 2 and cache.stats.reloads == 1  # the frames were not reloaded


def test_concurrent_requests_compute_once(engine: Engine) -> None:
    cache = AnalyticsCache(engine, max_age_seconds=300, check_seconds=300)
    calls: list[int] = []

    def slow(_s: Snapshot, _now: datetime) -> str:
        calls.append(1)
        time.sleep(0.2)
        return "done"

    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get(("slow",), slow).value))
        for _ in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["done"] * 20
    assert len(calls) == 1
    assert cache.stats.reloads == 1


def test_entries_are_bounded(engine: Engine) -> None:
    cache = AnalyticsCache(engine, max_age_seconds=300, check_seconds=300, max_entries=3)
    for i in range(5):
        cache.get(("k", i), lambda _s, _n, i=i: i)
    calls: list[int] = []
    cache.get(("k", 0), lambda _s, _n: calls.append(1) or 0)
    assert calls == [1]  # the oldest entry was dropped
    cache.get(("k", 4), lambda _s, _n: calls.append(1) or 4)
    assert calls == [1]  # a recent one was kept
