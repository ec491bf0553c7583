"""``ticketflow sync`` and ``ticketflow sources`` as a user runs them: a real process against
the fake TOPdesk served over loopback HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.cli_support import run_cli
from tests.fakes import ServedFake
from tests.fakes.topdesk import GROUPS, FakeTopdesk


@pytest.fixture
def desks() -> Iterator[tuple[ServedFake, ServedFake]]:
    good, bad = FakeTopdesk(password="good-Secret-991"), FakeTopdesk(password="bad-Secret-117")
    for _ in range(23):
        good.add_incident(operatorGroup=GROUPS["Network"])
    bad.add_incident()
    with ServedFake(good) as served_good, ServedFake(bad) as served_bad:
        yield served_good, served_bad


def _config(tmp_path: Path, good: ServedFake, bad: ServedFake) -> Path:
    config = tmp_path / "ticketflow.toml"
    config.write_text(
        f'[warehouse]\nurl = "sqlite:///{tmp_path}/w.db"\n\n'
        f'[[sources]]\nname = "helpdesk"\nkind = "topdesk"\nbase_url = "{good.url}"\n'
        'username = "api-operator"\npassword_env = "TD_GOOD"\npage_size = 10\n\n'
        f'[[sources]]\nname = "branch"\nkind = "topdesk"\nbase_url = "{bad.url}"\n'
        'username = "api-operator"\npassword_env = "TD_BAD"\n'
    )
    return config


def test_sync_then_sources(tmp_path: Path, desks: tuple[ServedFake, ServedFake]) -> None:
    good, bad = desks
    config = _config(tmp_path, good, bad)
    env = {"TD_GOOD": "good-Secret-991", "TD_BAD": "expired-password"}
    done = run_cli(["-c", str(config), "sync"], tmp_path, **env)
    assert done.returncode == 1, done.stderr  # one source failed
    assert "helpdesk" in done.stdout and "branch" in done.stdout
    assert "branch: source `branch`: HTTP 401" in " ".join(done.stderr.split())
    assert "TD_BAD" in done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert any(
        line["message"].startswith("helpdesk: page 3 stored") and line["page"] == 3
        for line in lines
    )
    for secret in ("good-Secret-991", "expired-password"):
        assert secret not in done.stdout + done.stderr

    only = run_cli(["-c", str(config), "sync", "--source", "helpdesk"], tmp_path, **env)
    assert only.returncode == 0, only.stderr
    assert "branch" not in only.stdout

    sources = run_cli(["-c", str(config), "sources"], tmp_path, **env)
    assert sources.returncode == 0, sources.stderr
    flat = " ".join(sources.stdout.split())
    assert "helpdesk" in flat and "topdesk" in flat and "ok" in flat
    assert "2024-03-01T08:00:23" in flat  # the cursor: the newest incident
    assert "error" in flat and "HTTP 401" in flat


def test_unknown_source_exits_2(tmp_path: Path, desks: tuple[ServedFake, ServedFake]) -> None:
    config = _config(tmp_path, *desks)
    done = run_cli(["-c", str(config), "sync", "--source", "nope"], tmp_path)
    assert done.returncode == 2
    assert "nope" in done.stderr and "helpdesk" in done.stderr
