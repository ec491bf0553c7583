"""The simulated desk applies generated calls to the TOPdesk-compatible API as time passes."""

from __future__ import annotations

import fcntl
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from app.demo.desk import SimulatedDesk
from app.demo.generator import DeskGenerator
from app.demo.run import catch_up_steps, prepare_database
from app.demo.topdesk_api import TopdeskApi
from app.errors import ConfigError

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)


def _desk() -> SimulatedDesk:
    api = TopdeskApi(username="u", password="p", clock=NOW - timedelta(days=8))
    return SimulatedDesk(api, DeskGenerator(seed=2), now=NOW, pace=60.0)


def test_history_is_applied_up_to_the_clock_and_served_like_topdesk() -> None:
    desk = _desk()
    calls = desk.load_history(7)
    desk.advance_to(NOW - timedelta(days=3))
    middle = len(desk.api.incidents)
    assert 0 < middle < len(calls)
    desk.advance_to(NOW)
    assert len(desk.api.incidents) == len(calls)
    assert desk.api.clock == NOW
    modified = [datetime.fromisoformat(i["modificationDate"]) for i in desk.api.incidents.values()]
    assert max(modified) <= NOW
    client = httpx.Client(
        transport=httpx.MockTransport(desk.api), base_url="http://desk", auth=("u", "p")
    )
    page = client.get("/tas/api/incidents", params={"pageSize": "5", "query": "closed==false"})
    assert page.status_code == 206
    first = page.json()[0]
    assert first["operatorGroup"]["name"] and first["processingStatus"]["name"]
    actions = client.get(f"/tas/api/incidents/id/{first['id']}/actions")
    assert actions.status_code in (200, 206)
    assert any(a["invisibleForCaller"] is False for a in actions.json())


def test_changes_after_the_start_happen_at_the_live_pace() -> None:
    desk = _desk()
    desk.load_history(7)
    desk.advance_to(NOW)
    left = desk.pending()
    assert left > 0  # open calls carry on after the start
    # a day of simulated work takes 24 real minutes at pace 60
    desk.advance_to(NOW + timedelta(minutes=24))
    assert desk.pending() < left


def test_live_calls_are_queued_only_a_little_ahead_of_the_clock() -> None:
    desk = _desk()
    desk.advance_to(NOW)
    added = sum(desk.top_up_live(ahead=timedelta(seconds=60)) for _ in range(50))
    # ~9 s between calls at pace 60: a minute ahead is a handful, not 50 minutes' worth
    assert 1 <= added <= 40
    desk.advance_to(NOW + timedelta(minutes=2))
    assert len(desk.api.incidents) >= 1


def test_catch_up_steps_cover_the_history_and_end_now() -> None:
    times = [NOW - timedelta(minutes=m) for m in range(1000, 0, -1)]
    steps = catch_up_steps(times, steps=10, end=NOW)
    assert steps[-1] == NOW
    assert 10 <= len(steps) <= 12
    assert steps == sorted(steps)


def test_prepare_database_replaces_a_demo_file_but_not_a_running_demo(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    db.write_bytes(b"")
    prepare_database(db, reset=False)  # an empty file: replaced
    assert not db.exists()
    db.write_bytes(b"")
    lock = Path(f"{db}.scheduler.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with pytest.raises(ConfigError, match="another demo is using"):
            prepare_database(db, reset=True)
        assert db.exists()
    finally:
        os.close(fd)
