"""The analytics cache: computed once per warehouse version, single-flight, bounded, expiring."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine

from app.cache import AnalyticsCache, Snapshot
from app.settings import Settings
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


def _add_ticket(engine: Engine, external_id: str = "NEW-1") -> None:
    extra = sample_tickets()[0]
    with engine.begin() as conn:
        frame = tickets_frame([extra]).assign(external_id=external_id)
        upsert_tickets(conn, frame, now=NOW + timedelta(days=1))


def test_results_are_reused_until_the_warehouse_changes(engine: Engine) -> None:
    clock = Clock()
    cache = AnalyticsCache(engine, max_age_seconds=300, check_seconds=10, clock=clock)
    calls: list[int] = []

    def count(snapshot: Snapshot, _now: datetime) -> int:
        calls.append(1)
        return len(snapshot.tickets)

    first = cache.get(("n",), count)
    assert first.value == 20
    assert cache.get(("n",), count).value == 20
    assert len(calls) == 1 and cache.stats.hits == 1 and cache.stats.reloads == 1
    # a change in the warehouse: a new ticket
    _add_ticket(engine)
    # not seen before the next check ...
    assert cache.get(("n",), count).value == 20
    clock.t = 10
    # ... seen at it: the previous result is served, marked with its version, while the
    # snapshot is reloaded and the result recomputed in the background
    served = cache.get(("n",), count)
    assert served.value == 20 and served.version == first.version
    assert cache.wait_refreshed(10)
    fresh = cache.get(("n",), count)
    assert fresh.value == 21 and fresh.version != first.version and cache.is_current(fresh)
    assert len(calls) == 2 and cache.stats.reloads == 2 and cache.stats.refreshes == 1


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
    assert cache.get("k", record).as_of == first.as_of  # served while recomputed
    assert cache.wait_refreshed(10)
    assert cache.get("k", record).as_of > first.as_of
    assert len(calls) == 2 and cache.stats.reloads == 1  # the frames were not reloaded


def test_after_a_change_no_request_waits_for_the_recompute(engine: Engine) -> None:
    clock = Clock()
    cache = AnalyticsCache(engine, max_age_seconds=300, check_seconds=10, clock=clock)
    gate = threading.Event()
    gate.set()
    entered = threading.Event()

    def slow_count(snapshot: Snapshot, _now: datetime) -> int:
        if not gate.is_set():
            entered.set()
            assert gate.wait(10)
        return len(snapshot.tickets)

    first = cache.get(("n",), slow_count)
    assert cache.get(("other",), lambda s, _n: "x").value == "x"
    _add_ticket(engine)
    clock.t = 10
    gate.clear()
    started = time.perf_counter()
    served = cache.get(("n",), slow_count)
    assert entered.wait(10), "the background refresh runs the computation"
    # while it runs, every request gets the previous result at once, marked as not current
    for _ in range(3):
        again = cache.get(("n",), slow_count)
        assert again.value == 20 and again.version == first.version
        assert not cache.is_current(again)
        peeked = cache.peek(("n",))
        assert peeked is not None and peeked.value == 20
    assert served.value == 20
    assert time.perf_counter() - started < 5
    assert not cache.wait_refreshed(0.05)  # still blocked on the gate
    gate.set()
    assert cache.wait_refreshed(10)
    fresh = cache.peek(("n",))
    assert fresh is not None and fresh.value == 21 and cache.is_current(fresh)
    # every result asked for during the previous generation was recomputed as well
    other = cache.peek(("other",))
    assert other is not None and other.value == "x" and cache.is_current(other)


def test_a_refresh_recomputes_only_what_was_asked_for_and_survives_errors(engine: Engine) -> None:
    clock = Clock()
    cache = AnalyticsCache(engine, max_age_seconds=60, check_seconds=1000, clock=clock)
    calls = {"a": 0, "b": 0}
    failing = [False]

    def a(_s: Snapshot, _n: datetime) -> str:
        calls["a"] += 1
        if failing[0]:
            raise RuntimeError("boom")
        return "a"

    def b(_s: Snapshot, _n: datetime) -> str:
        calls["b"] += 1
        return "b"

    cache.get("a", a)
    cache.get("b", b)
    clock.t = 60
    failing[0] = True
    assert cache.get("a", a).value == "a"  # the expired result, while the refresh runs
    assert cache.wait_refreshed(10)
    assert cache.stats.refreshes == 1 and cache.stats.refresh_errors == 1
    assert calls == {"a": 2, "b": 2}
    # the failed result is not in the new generation: the next request computes it, and
    # gets the error
    with pytest.raises(RuntimeError, match="boom"):
        cache.get("a", a)
    failing[0] = False
    assert cache.get("a", a).value == "a"
    assert calls["a"] == 4
    # nobody asked for "b" in this generation: the next refresh recomputes only "a"
    clock.t = 120
    cache.get("a", a)
    assert cache.wait_refreshed(10)
    assert calls == {"a": 5, "b": 2}


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


def test_after_a_warehouse_change_the_api_answers_from_the_previous_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.routes._analyses import ANALYSES, Analysis
    from tests.app.test_api_support import ADMIN, READ, client_for, key_env, settings_for

    key_env(monkeypatch)
    url = f"sqlite:///{tmp_path / 'change.db'}"
    engine = warehouse(url)
    original = ANALYSES["stale"]
    gate = threading.Event()
    gate.set()
    entered = threading.Event()

    def gated(
        tickets: pd.DataFrame, events: pd.DataFrame, now: datetime, settings: Settings
    ) -> pd.DataFrame:
        if not gate.is_set():
            entered.set()
            assert gate.wait(10)
        return original.compute(tickets, events, now, settings)

    monkeypatch.setitem(ANALYSES, "stale", Analysis("stale", gated, per_ticket=True))
    try:
        with client_for(settings_for(url), engine) as client:
            first = client.get("/api/v1/stale", headers=READ)
            assert first.status_code == 200 and "x-data-stale" not in first.headers
            version, as_of = first.headers["x-data-version"], first.headers["x-data-as-of"]
            _add_ticket(engine)
            gate.clear()
            during = client.get("/api/v1/stale", headers=READ)
            assert during.status_code == 200 and during.content == first.content
            assert during.headers["x-data-version"] == version
            assert during.headers["x-data-as-of"] == as_of
            assert during.headers["x-data-stale"] == "true"
            assert entered.wait(10)
            gate.set()
            cache = client.app.state.cache  # type: ignore[attr-defined]
            assert cache.wait_refreshed(30)
            after = client.get("/api/v1/stale", headers=READ)
            assert after.headers["x-data-version"] != version
            assert "x-data-stale" not in after.headers
            assert after.json()["as_of"] > first.json()["as_of"]
            metrics = client.get("/metrics", headers=ADMIN).text
            assert "ticketflow_cache_refreshes 1.0" in metrics
            assert "ticketflow_cache_refresh_errors 0.0" in metrics
    finally:
        engine.dispose()


def test_cached_answers_are_gzipped_once_and_revalidate_with_etag(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.app.test_api_support import READ, client_for, key_env, settings_for

    key_env(monkeypatch)
    with client_for(settings_for(str(engine.url), change_check_seconds=60), engine) as client:
        fast = client.app.state.fastpath  # type: ignore[attr-defined]
        for path in ("/charts/aging.json", "/api/v1/stale", "/api/v1/flow"):
            for attempt in range(2):  # the second time through the fast path
                hits = fast.hits
                packed = client.get(path, headers={**READ, "Accept-Encoding": "gzip"})
                plain = client.get(path, headers={**READ, "Accept-Encoding": "identity"})
                assert packed.status_code == plain.status_code == 200
                assert packed.content == plain.content  # httpx decompresses
                assert "content-encoding" not in plain.headers
                etag = plain.headers["etag"]
                if len(plain.content) >= 1024:
                    assert packed.headers["content-encoding"] == "gzip"
                    assert packed.headers["etag"] == etag[:-1] + '-gz"'
                assert packed.headers["vary"] == "Accept-Encoding"
                for tag in (etag, packed.headers["etag"], f'W/{etag}, "other"'):
                    again = client.get(path, headers={**READ, "If-None-Match": tag})
                    assert again.status_code == 304 and again.content == b""
                    assert again.headers["etag"] == etag
                changed = client.get(path, headers={**READ, "If-None-Match": '"other"'})
                assert changed.status_code == 200 and changed.content == plain.content
                if attempt:
                    assert fast.hits == hits + 6, path


def test_cached_answers_keep_cors_and_the_front_door_only_without_it(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.app.test_api_support import READ, client_for, key_env, settings_for

    key_env(monkeypatch)
    origin = "https://intranet.example.org"
    url = str(engine.url)
    cors = settings_for(url, change_check_seconds=60, cors_origins=[origin])
    with client_for(cors, engine) as client:
        assert client.app.front is None  # type: ignore[attr-defined]
        fast = client.app.state.fastpath  # type: ignore[attr-defined]
        headers = {**READ, "Origin": origin}
        for _ in range(2):
            answer = client.get("/charts/aging.json", headers=headers)
            assert answer.status_code == 200
            assert answer.headers["access-control-allow-origin"] == origin
        assert fast.hits == 1  # the second one from the fast path inside the stack
    with client_for(settings_for(url, change_check_seconds=60), engine) as client:
        assert client.app.front is not None  # type: ignore[attr-defined]
