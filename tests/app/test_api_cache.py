"""The analytics cache: computed once per warehouse version, single-flight, bounded, expiring."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
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
    calls: list[int] = []

    def value(i: int, *, count: bool = False) -> Callable[[Snapshot, datetime], int]:
        def compute(_s: Snapshot, _n: datetime) -> int:
            if count:
                calls.append(1)
            return i

        return compute

    for i in range(5):
        cache.get(("k", i), value(i))
    cache.get(("k", 0), value(0, count=True))
    assert calls == [1]  # the oldest entry was dropped
    cache.get(("k", 4), value(4, count=True))
    assert calls == [1]  # a recent one was kept


def test_fast_path_answers_cached_requests_and_keeps_access_rules(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.app.test_api_support import ADMIN, READ, client_for, key_env, settings_for

    key_env(monkeypatch)
    url = str(engine.url)
    with client_for(settings_for(url, change_check_seconds=60), engine) as client:
        fast = client.app.state.fastpath  # type: ignore[attr-defined]
        paths = [
            "/api/v1/stale?team=Network&limit=3",
            "/api/v1/blockers?kind=queued",
            "/charts/aging.json",
            "/api/v1/flow",
        ]
        for path in paths:
            first = client.get(path, headers=READ)
            hits = fast.hits
            again = client.get(path, headers=READ)
            assert fast.hits == hits + 1, path
            assert again.status_code == 200 and again.content == first.content
            assert again.headers["content-type"] == first.headers["content-type"]
            assert again.headers["x-content-type-options"] == "nosniff"
            assert "frame-ancestors 'none'" in again.headers["content-security-policy"]
            # the fast path never widens access
            assert client.get(path).status_code == 401
            assert client.get(path, headers={"X-API-Key": "x" * 40}).status_code == 401
            assert client.get(path, headers=ADMIN).status_code == 403
        # the same filters in another order are the same answer
        reordered = "/api/v1/blockers?kind=queued&kind=unassigned"
        client.get(reordered, headers=READ)
        hits = fast.hits
        client.get("/api/v1/blockers?kind=unassigned&kind=queued", headers=READ)
        assert fast.hits == hits + 1
        # bad parameters still get FastAPI's 422
        assert client.get("/api/v1/stale?limit=0", headers=READ).status_code == 422
        # once the cache is dropped, the fast path steps aside and the result is recomputed
        client.app.state.cache.clear()  # type: ignore[attr-defined]
        hits = fast.hits
        assert client.get("/charts/aging.json", headers=READ).status_code == 200
        assert fast.hits == hits
        metrics = client.get("/metrics", headers=ADMIN).text
        assert 'route="/api/v1/stale"' in metrics  # fast answers are counted per route


def test_an_expired_result_is_served_while_one_request_recomputes_it(engine: Engine) -> None:
    clock = Clock()
    cache = AnalyticsCache(engine, max_age_seconds=60, check_seconds=1000, clock=clock)
    started = threading.Event()
    release = threading.Event()

    def first(_s: Snapshot, _now: datetime) -> str:
        return "old"

    def slow(_s: Snapshot, _now: datetime) -> str:
        started.set()
        release.wait(5)
        return "new"

    cache.get("k", first)
    clock.t = 61  # expired
    results: list[str] = []
    worker = threading.Thread(target=lambda: results.append(cache.get("k", slow).value))
    worker.start()
    assert started.wait(5)
    # meanwhile, other requests get the previous result at once instead of queueing
    assert cache.get("k", slow).value == "old"
    release.set()
    worker.join()
    assert results == ["new"]
    assert cache.get("k", slow).value == "new"
