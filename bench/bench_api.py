"""Load benchmark of the HTTP API on loopback (not a test).

Builds (or reuses) a synthetic warehouse of N tickets with their event histories, starts
``ticketflow``'s app under uvicorn in a subprocess on 127.0.0.1, warms the analytics cache once,
then runs a closed-loop load generator (C concurrent keep-alive connections, each sending its
next request as soon as the last one answered) against each endpoint for a fixed time, and
reports p50/p95/p99/max latency, requests per second and errors.

    .venv/bin/python -m bench.bench_api                     # 100,000 tickets, 50 connections
    .venv/bin/python -m bench.bench_api --tickets 20000 --seconds 5 --connections 20
    # before/after in one run: another checkout's server beside this one, rounds alternating
    git archive <commit> | tar -x -C /tmp/base
    .venv/bin/python -m bench.bench_api --url sqlite:////tmp/bench.db --baseline /tmp/base \
        --rounds 3 --seconds 10 --cache-seconds 3600
    # what requests see while the server reloads and recomputes after a warehouse change
    .venv/bin/python -m bench.bench_api --endpoint /api/v1/stale --seconds 60 --change-after 10

Besides latency and requests per second it reports the CPU time per request of the server
process and of the load generator (less sensitive to a shared, noisy machine than latency),
requests slower than a second, and the size of an answer as sent.

Only loopback is ever contacted; every loop is bounded by time and request count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
import numpy as np
import pandas as pd
from sqlalchemy import create_engine

from app.warehouse import insert_events, make_engine, save_sync_state, upsert_tickets
from connectors.base import EVENT_COLUMNS, TICKET_COLUMNS, derived_event_keys

REPO = Path(__file__).resolve().parents[1]
ENDPOINTS = ("/api/v1/stale", "/charts/aging.json")
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
T = TypeVar("T")
STATES_OPEN = ("new", "in_progress", "waiting_customer", "waiting_supplier", "waiting_other")


def synthetic_frames(n: int, *, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """n tickets over two years, 25 teams, 300 operators, and 3-9 events each.

    Realistic shapes: arrivals uniform over working hours, lognormal resolution times (median
    about two days, long tail), 12 % still open, priorities skewed towards P3/P4, a fifth of
    tickets reassigned once or more.
    """
    rng = np.random.default_rng(seed)
    start = pd.Timestamp(NOW - timedelta(days=730))
    created = start + pd.to_timedelta(rng.uniform(0, 730 * 86400, n), unit="s")
    created = created.sort_values()
    teams = np.array([f"Team {i:02d}" for i in range(25)], dtype=object)
    team = teams[rng.zipf(1.6, n) % 25]
    operators = np.array([f"op{i:03d}" for i in range(300)], dtype=object)
    assignee = operators[(rng.integers(0, 12, n) + np.searchsorted(teams, team) * 12) % 300]
    priority = rng.choice([1, 2, 3, 4, 5], n, p=[0.03, 0.12, 0.45, 0.3, 0.1])
    duration = pd.to_timedelta(rng.lognormal(np.log(2 * 86400), 1.3, n), unit="s")
    resolved = created + duration
    is_open = (resolved > pd.Timestamp(NOW)) | (rng.random(n) < 0.12)
    state = np.where(is_open, rng.choice(STATES_OPEN, n, p=[0.2, 0.45, 0.2, 0.1, 0.05]), "closed")
    resolved_at = pd.Series(resolved).where(~is_open)
    ids = np.char.add("S", np.arange(n).astype(str)).astype(object)
    last_touch = np.minimum(
        (created + duration * rng.uniform(0.2, 1.0, n)).values,
        np.datetime64(NOW.replace(tzinfo=None)),
    )
    tickets = pd.DataFrame(
        {
            "source": "synthetic",
            "external_id": ids,
            "number": ids,
            "title": [f"Synthetic call {i}" for i in range(n)],
            "type": "incident",
            "raw_status": state,
            "state": state,
            "priority_raw": [f"P{p}" for p in priority],
            "priority": pd.array(priority, dtype="Int64"),
            "category": rng.choice(["hardware", "software", "access", "network"], n),
            "team": team,
            "assignee": assignee,
            "requester": None,
            "created_at": pd.DatetimeIndex(created).tz_convert("UTC"),
            "updated_at": pd.DatetimeIndex(last_touch).tz_localize("UTC"),
            "resolved_at": resolved_at.values,
            "closed_at": resolved_at.values,
            "due_at": pd.NaT,
            "reassignment_count": pd.array(rng.poisson(0.3, n), dtype="Int64"),
            "reopen_count": pd.array(np.zeros(n, dtype=int), dtype="Int64"),
            "url": [f"https://desk.example.org/ticket/{i}" for i in ids],
            "raw": None,
        },
        columns=list(TICKET_COLUMNS),
    )
    for col in ("resolved_at", "closed_at", "due_at"):
        tickets[col] = pd.to_datetime(tickets[col], utc=True)
    events = _synthetic_events(tickets, rng)
    return tickets, events


def _synthetic_events(tickets: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """team set, assignment, in progress, waits, resolution: a plausible history per ticket."""
    rows: list[pd.DataFrame] = []
    created = tickets["created_at"]
    end = tickets["resolved_at"].fillna(tickets["updated_at"])
    span = (end - created).dt.total_seconds().clip(lower=60)

    def add(mask: np.ndarray, share: float, field: str, old: Any, new: Any) -> None:
        sel = tickets[mask]
        at = created[mask] + pd.to_timedelta(span[mask] * share, unit="s")
        rows.append(
            pd.DataFrame(
                {
                    "source": sel["source"],
                    "ticket_id": sel["external_id"],
                    "occurred_at": at,
                    "seq": 0,
                    "field": field,
                    "old_value": old if np.ndim(old) == 0 else np.asarray(old)[mask],
                    "new_value": new if np.ndim(new) == 0 else np.asarray(new)[mask],
                    "actor": sel["assignee"],
                    "origin": "history",
                }
            )
        )

    n = len(tickets)
    everyone = np.ones(n, dtype=bool)
    add(everyone, 0.0, "state", None, "new")
    add(everyone, 0.001, "team", None, tickets["team"].to_numpy())
    add(everyone, 0.05, "assignee", None, tickets["assignee"].to_numpy())
    started = tickets["state"].to_numpy() != "new"
    add(started, 0.1, "state", "new", "in_progress")
    waited = started & (rng.random(n) < 0.35)
    add(waited, 0.3, "state", "in_progress", "waiting_customer")
    add(waited, 0.3, "customer_update", None, "mail")
    add(waited, 0.6, "state", "waiting_customer", "in_progress")
    bounced = started & (rng.random(n) < 0.08)
    add(bounced, 0.2, "team", tickets["team"].to_numpy(), "Team 99")
    add(bounced, 0.4, "team", "Team 99", tickets["team"].to_numpy())
    done = tickets["state"].to_numpy() == "closed"
    add(done, 1.0, "state", "in_progress", "closed")
    still = ~done & started & (tickets["state"].to_numpy() != "in_progress")
    add(still, 0.9, "state", "in_progress", tickets["state"].to_numpy())
    events = pd.concat(rows, ignore_index=True)
    events["occurred_at"] = pd.to_datetime(events["occurred_at"], utc=True)
    events["seq"] = events.groupby(["ticket_id", "occurred_at"]).cumcount().astype("int64")
    events["event_key"] = derived_event_keys(events)
    return events[list(EVENT_COLUMNS)]


def build_warehouse(url: str, n: int) -> float:
    """Fill an empty warehouse with n synthetic tickets; returns seconds taken."""
    started = time.perf_counter()
    tickets, events = synthetic_frames(n)
    engine = make_engine(url)
    with engine.begin() as conn:
        upsert_tickets(conn, tickets, now=NOW)
        insert_events(conn, events, now=NOW)
    engine.dispose()
    print(f"warehouse: {len(tickets):,} tickets, {len(events):,} events", file=sys.stderr)
    return time.perf_counter() - started


@dataclass
class Figures:
    endpoint: str
    connections: int
    seconds: float
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    cold_ms: float
    """the first request (the first of each server and endpoint computes the answer)"""
    server: str = "current"
    over_1s: int = 0
    """requests that took longer than a second"""
    body_bytes: int = 0
    """size of an answer's body as sent (gzipped when the server compresses it)"""
    server_cpu_us: float = float("nan")
    """CPU time of the server process per request (all its threads), microseconds"""
    client_cpu_us: float = float("nan")
    """CPU time of the load generator per request, microseconds"""


class _ClientProtocol(asyncio.Protocol):
    """A minimal HTTP/1.1 keep-alive client for loopback load: sends a GET, parses the status
    line and ``Content-Length`` and counts the body bytes, without decompressing or parsing.

    httpx spends about a millisecond of CPU per request (and decompresses every gzipped
    figure), and even asyncio streams cost noticeable CPU per answer; on a 2-core machine that
    shares its cores with the server, the load generator must cost as little as possible or
    it measures itself. A browser decompresses on its own machine.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, int]] | None = None
        self.status = 0
        self.length = -1
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.length < 0:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            self.status = int(lines[0].split(" ", 2)[1])
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value.strip())
                elif name == "transfer-encoding":
                    self._fail(RuntimeError("chunked answers are not supported"))
                    return
            del self.buffer[: end + 4]
            self.length = length
        if len(self.buffer) >= self.length:
            size = self.length
            del self.buffer[:size]
            self.length = -1
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result((self.status, size))

    def _fail(self, error: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(ConnectionError("connection closed"))


class _Connection:
    """One keep-alive connection of the load generator."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.protocol: _ClientProtocol | None = None

    async def get(self, path: str) -> tuple[int, int]:
        """(status, body bytes as sent)"""
        loop = asyncio.get_running_loop()
        if self.protocol is None or self.protocol.lost:
            _, self.protocol = await loop.create_connection(_ClientProtocol, self.host, self.port)
        protocol = self.protocol
        assert protocol.transport is not None
        protocol.waiter = loop.create_future()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Accept-Encoding: gzip\r\n{self.extra}\r\n"
        )
        protocol.transport.write(request.encode())
        return await protocol.waiter

    async def close(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()
        self.protocol = None


async def _load(
    base: str, path: str, headers: dict[str, str], connections: int, seconds: float, cap: int
) -> tuple[list[float], int, float, int]:
    latencies: list[float] = []
    errors = 0
    size = 0
    host, port = base.removeprefix("http://").split(":")
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors, size
        conn = _Connection(host, int(port), headers)
        try:
            while time.perf_counter() < deadline and len(latencies) + errors < cap:
                t0 = time.perf_counter()
                try:
                    status, size = await asyncio.wait_for(conn.get(path), timeout=120)
                    ok = status == 200
                except (OSError, TimeoutError, RuntimeError):
                    ok = False
                    await conn.close()
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return latencies, errors, elapsed, size


def _run(job: Coroutine[Any, Any, T], *, loop: str) -> T:
    """Run the load generator on uvloop when installed (less CPU per request), else asyncio."""
    if loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            uvloop = None  # type: ignore[assignment]
        if uvloop is not None:
            return uvloop.run(job)
    return asyncio.run(job)


def _pct(sorted_ms: list[float], p: float) -> float:
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, int(np.ceil(p * len(sorted_ms))) - 1)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(
    url: str,
    key: str,
    port: int,
    workers: int,
    cwd: str,
    http: str = "auto",
    loop: str = "auto",
    repo: Path = REPO,
    cache_seconds: float = 300.0,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TICKETFLOW_WAREHOUSE__URL": url,
        "TICKETFLOW_API__KEYS": json.dumps(
            [{"name": "bench", "scopes": ["read"], "key_env": "TICKETFLOW_BENCH_KEY"}]
        ),
        "TICKETFLOW_BENCH_KEY": key,
        "TICKETFLOW_LOGGING__LEVEL": "WARNING",
        "TICKETFLOW_API__CACHE_SECONDS": str(cache_seconds),
        "PYTHONPATH": str(repo),
    }
    env.pop("TICKETFLOW_CONFIG", None)  # settings from the environment above only
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "app.main:create_app_from_environment",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        "--workers",
        str(workers),
        "--http",
        http,
        "--loop",
        loop,
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=cwd)  # cwd: no ./ticketflow.toml
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start within 60 s")


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (Linux ``/proc``; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _touch_warehouse(url: str) -> None:
    """Change the warehouse's version (a sync run is recorded) without changing its data: the
    server reloads the snapshot and recomputes every result, as after a real sync."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            save_sync_state(conn, source="bench-touch", kind="eventlog", now=datetime.now(UTC))
    finally:
        engine.dispose()


def _measure(
    base: str,
    path: str,
    headers: dict[str, str],
    args: argparse.Namespace,
    *,
    label: str,
    pid: int,
    url: str,
) -> Figures | None:
    t0 = time.perf_counter()
    cold = httpx.get(base + path, headers=headers, timeout=600)
    cold_ms = (time.perf_counter() - t0) * 1000
    if cold.status_code != 200:
        print(f"{label} {path}: {cold.status_code} {cold.text[:200]}", file=sys.stderr)
        return None
    server_cpu, client_cpu = _cpu_seconds(pid), time.process_time()
    touch: threading.Timer | None = None
    if args.change_after is not None:
        touch = threading.Timer(args.change_after, _touch_warehouse, (url,))
        touch.start()
    lat, errors, elapsed, size = _run(
        _load(base, path, headers, args.connections, args.seconds, args.max_requests),
        loop=args.client_loop,
    )
    if touch is not None:
        touch.join()
    server_cpu = _cpu_seconds(pid) - server_cpu
    client_cpu = time.process_time() - client_cpu
    ms = sorted(x * 1000 for x in lat)
    n = max(len(ms) + errors, 1)
    return Figures(
        endpoint=path,
        connections=args.connections,
        seconds=round(elapsed, 2),
        requests=len(ms),
        errors=errors,
        rps=round(len(ms) / elapsed, 1),
        p50_ms=round(statistics.median(ms), 2) if ms else float("nan"),
        p95_ms=round(_pct(ms, 0.95), 2),
        p99_ms=round(_pct(ms, 0.99), 2),
        max_ms=round(ms[-1], 2) if ms else float("nan"),
        cold_ms=round(cold_ms, 1),
        server=label,
        over_1s=sum(1 for x in ms if x > 1000),
        body_bytes=size,
        server_cpu_us=round(server_cpu / n * 1e6, 1),
        client_cpu_us=round(client_cpu / n * 1e6, 1),
    )


def _print(results: list[Figures]) -> None:
    print(
        f"{'server':<10}{'endpoint':<24}{'conn':>5}{'req':>8}{'err':>5}{'req/s':>9}{'p50':>8}"
        f"{'p95':>8}{'p99':>8}{'max':>8}{'cold':>9}   (ms)"
        f"{'srv CPU/req':>13}{'cli CPU/req':>13} (µs){'>1 s':>6}{'bytes':>9}"
    )
    for r in results:
        print(
            f"{r.server:<10}{r.endpoint:<24}{r.connections:>5}{r.requests:>8}{r.errors:>5}"
            f"{r.rps:>9}{r.p50_ms:>8}{r.p95_ms:>8}{r.p99_ms:>8}{r.max_ms:>8}{r.cold_ms:>9}"
            f"{'':8}{r.server_cpu_us:>13}{r.client_cpu_us:>13}{'':5}{r.over_1s:>6}"
            f"{r.body_bytes:>9}"
        )


def _medians(results: list[Figures]) -> None:
    """Per server and endpoint, the median of the rounds (and the p99 ratio to the baseline)."""
    print("\nmedian of the rounds")
    groups: dict[tuple[str, str], list[Figures]] = {}
    for r in results:
        groups.setdefault((r.endpoint, r.server), []).append(r)
    for (endpoint, server), rows in sorted(groups.items()):
        rps = statistics.median(r.rps for r in rows)
        p50 = statistics.median(r.p50_ms for r in rows)
        p99 = statistics.median(r.p99_ms for r in rows)
        cpu = statistics.median(r.server_cpu_us for r in rows)
        print(
            f"{server:<10}{endpoint:<24} req/s {rps:>8.1f}  p50 {p50:>7.2f}  p99 {p99:>7.2f}"
            f"  server CPU/request {cpu:>6.1f} µs"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15.0, help="per endpoint")
    parser.add_argument("--max-requests", type=int, default=200_000, help="per endpoint")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--url", help="an existing warehouse to use instead of a new one")
    parser.add_argument(
        "--http", default="auto", help="uvicorn --http: auto (httptools when installed) or h11"
    )
    parser.add_argument(
        "--loop", default="auto", help="uvicorn --loop: auto (uvloop when installed) or asyncio"
    )
    parser.add_argument(
        "--client-loop",
        default="auto",
        help="the load generator's event loop: auto (uvloop when installed) or asyncio",
    )
    parser.add_argument("--endpoint", action="append", help=f"default: {', '.join(ENDPOINTS)}")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout of ticketflow (e.g. `git archive <commit>` unpacked): its server "
        "runs beside this one and every endpoint is measured on both, alternating",
    )
    parser.add_argument(
        "--baseline-url",
        help="the warehouse for the baseline server when its schema version differs "
        "(a copy of --url at the baseline's revision)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="measurements per endpoint")
    parser.add_argument(
        "--change-after",
        type=float,
        help="seconds into each measurement at which the warehouse changes (a sync run is "
        "recorded): shows what requests see while the server reloads and recomputes",
    )
    parser.add_argument(
        "--cache-seconds",
        type=float,
        default=300.0,
        help="the servers' api.cache_seconds (longer: no recompute during the measurements)",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tf-bench-") as tmp:
        url = args.url or f"sqlite:///{tmp}/bench.db"
        if not args.url:
            print(f"built in {build_warehouse(url, args.tickets):.1f} s", file=sys.stderr)
        key = secrets.token_urlsafe(32)
        repos = [("current", REPO, url)]
        if args.baseline is not None:
            repos.append(("baseline", args.baseline.resolve(), args.baseline_url or url))
        servers: list[tuple[str, str, subprocess.Popen[bytes], str]] = []
        headers = {"X-API-Key": key}
        results: list[Figures] = []
        try:
            for label, repo, where in repos:
                port = _free_port()
                proc = _start_server(
                    where,
                    key,
                    port,
                    args.workers,
                    tmp,
                    args.http,
                    args.loop,
                    repo=repo,
                    cache_seconds=args.cache_seconds,
                )
                servers.append((label, f"http://127.0.0.1:{port}", proc, where))
            for _ in range(args.rounds):
                for path in args.endpoint or ENDPOINTS:
                    for label, base, proc, where in servers:
                        found = _measure(
                            base, path, headers, args, label=label, pid=proc.pid, url=where
                        )
                        if found is None:
                            return 1
                        results.append(found)
        finally:
            for _label, _base, proc, _url in servers:
                proc.send_signal(signal.SIGINT)
            for _label, _base, proc, _url in servers:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()

    _print(results)
    if args.rounds > 1 or len(repos) > 1:
        _medians(results)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0 if all(r.errors == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
