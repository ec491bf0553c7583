"""``ticketflow demo`` end to end: a real process on a free port with a temp database.

It must answer the API with tickets, deliver a signed alert webhook to its inbox, show stale
calls, and stop cleanly on Ctrl-C (SIGINT). A short history keeps it fast.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.demo.run import PASSWORD_ENV


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(get: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = get()
            if last:
                return last
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout} s (last: {last!r})")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, float]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETFLOW_")}
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "demo",
            "--port",
            str(port),
            "--db",
            str(tmp_path / "demo.db"),
            "--history-days",
            "7",
            "--replay-steps",
            "15",
            "--speed",
            "20",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc, f"http://127.0.0.1:{port}", started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_demo_serves_tickets_delivers_a_signed_webhook_and_stops_on_sigint(
    demo: tuple[subprocess.Popen[str], str, float],
) -> None:
    proc, url, started = demo
    with httpx.Client(base_url=url, timeout=10) as client:

        def tickets() -> int:
            r = client.get("/api/v1/tickets", params={"limit": 5})
            return int(r.json()["total"]) if r.status_code == 200 else 0

        assert _wait_for(tickets, 60) > 50
        data_after = time.monotonic() - started

        def inbox() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = client.get("/demo/inbox.json").json()["items"]
            return items

        items = _wait_for(inbox, 30)
        assert all(m["verified"] for m in items), items[:3]
        assert {m["type"] for m in items} & {"ticketflow.alert.opened", "ticketflow.alert.summary"}
        stale = client.get("/api/v1/stale").json()
        assert stale["total"] > 0
        page = client.get("/")
        assert page.status_code == 200 and "Stale calls" in page.text

    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err[-2000:]
    assert "demo stopped" in err
    assert "Traceback" not in err
    # one clear block with the URLs, and never the generated helpdesk password
    assert f"dashboard      {url}/" in out
    assert f"webhook inbox  {url}/demo/inbox" in out
    assert "Ctrl-C" in out
    assert PASSWORD_ENV not in out + err
    print(f"demo: tickets answered {data_after:.1f} s after the command started")  # noqa: T201


def test_demo_refuses_a_database_that_is_not_its_own(tmp_path: Path) -> None:
    db = tmp_path / "mine.db"
    db.write_text("precious")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETFLOW_")}
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "demo", "--db", str(db), "--port", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "--reset" in done.stderr
    assert db.read_text() == "precious"


def test_ctrl_c_during_the_replay_stops_cleanly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETFLOW_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "demo",
            "--port",
            str(_free_port()),
            "--db",
            str(tmp_path / "demo.db"),
            "--history-days",
            "14",
            "--replay-steps",
            "2000",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert "replaying" in first, first
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err[-2000:]
    assert "demo stopped" in err and "Traceback" not in err
    assert "running" not in out
