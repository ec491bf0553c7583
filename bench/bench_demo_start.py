"""How long a newcomer waits: ``ticketflow demo`` from a cold start to the API showing tickets.

Starts ``python -m app.cli demo`` in a fresh temp folder on a free port (default options, or
those given after ``--``), polls ``/api/v1/tickets`` and ``/`` (the dashboard) every 0.25 s, and
prints the seconds from the command's start until each first shows tickets, and until the first
webhook reached the inbox, plus the CPU seconds the demo process had used when the API first
showed tickets (``api_cpu``: less sensitive to a busy machine than the wall clock). Then
stops the demo with SIGINT and reports how long that took.

    .venv/bin/python -m bench.bench_demo_start [--runs 3] [-- --speed 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc): what the wait would be on an
    idle machine, roughly, as the demo works mostly in one thread."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(extra: list[str]) -> dict[str, float]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETFLOW_")}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "demo", "--port", str(port), *extra],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        found: dict[str, float] = {}
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                wanted = {"api", "dashboard", "webhook"}
                while not wanted <= found.keys() and time.monotonic() - started < 300:
                    try:
                        if "api" not in found:
                            r = client.get("/api/v1/tickets", params={"limit": 1})
                            if r.status_code == 200 and r.json()["total"] > 0:
                                found["api"] = time.monotonic() - started
                                found["api_cpu"] = _cpu_seconds(proc.pid)
                        if "dashboard" not in found:
                            r = client.get("/")
                            if r.status_code == 200 and "<table>" in r.text:
                                found["dashboard"] = time.monotonic() - started
                        if "webhook" not in found:
                            r = client.get("/demo/inbox.json")
                            if r.status_code == 200 and r.json()["received"] > 0:
                                found["webhook"] = time.monotonic() - started
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.25)
            stop = time.monotonic()
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
            found["stop"] = time.monotonic() - stop
        finally:
            if proc.poll() is None:
                proc.kill()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    runs = [one_run(extra) for _ in range(args.runs)]
    for i, r in enumerate(runs, 1):
        print(f"run {i}: " + ", ".join(f"{k} {v:.1f} s" for k, v in r.items()))
    for key in ("api", "api_cpu", "dashboard", "webhook", "stop"):
        values = [r[key] for r in runs if key in r]
        if values:
            print(f"{key}: median {statistics.median(values):.1f} s over {len(values)} runs")


if __name__ == "__main__":
    main()
