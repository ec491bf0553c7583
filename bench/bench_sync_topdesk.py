"""TOPdesk sync benchmark: N incidents from a fake TOPdesk server process over loopback HTTP.

    python -m bench.bench_sync_topdesk [--incidents N] [--backend sqlite|postgresql|both]
                                       [--page-size N] [--pg-url URL] [--profile] [--seed N]

The fake (tests/fakes/topdesk.py) runs in its own process under uvicorn, generated with
``--incidents`` varied incidents; the sync runs in this process exactly as ``ticketflow sync``
does (real httpx client, Basic auth, retries armed, page commits with the cursor). Phases:

1. ``fetch floor``: every page fetched with a bare httpx client and ``json.loads``, nothing
   else: what the server and the loopback transfer cost on their own;
2. ``first sync``: an empty warehouse, every incident new (tickets + baseline events);
3. ``rerun``: an incremental sync right after (only the overlap window is re-read);
4. ``full resync``: ``--full`` over the loaded warehouse (every incident compared, unchanged).

For each sync it reports incidents/s and where the time goes, from the sync's own phase timers:
``http`` (waiting for responses), ``decode`` (JSON parse and checks), ``map`` (incident ->
ticket), ``frame``, ``read`` (stored snapshots), ``diff`` (events), ``write`` (upsert, events,
cursor, commit). ``--profile`` adds the top functions of a cProfile run of the first sync.
Counts are checked (every incident stored once); timings are only reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from app.settings import Settings
from app.sync import SourceResult
from bench.sync_common import Server, load, run_sync, warehouse
from connectors.config import TopdeskSourceConfig
from connectors.topdesk import INCIDENT_FIELDS, Paging, list_params

DEFAULT_PG_URL = os.environ.get(
    "TICKETFLOW_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
USERNAME = "api-operator"
PASSWORD = "bench-app-password"
PASSWORD_ENV = "TICKETFLOW_BENCH_TOPDESK_PASSWORD"
PHASES = ("http", "decode", "map", "frame", "read", "diff", "actions", "write")


@contextmanager
def fake_server(incidents: int, seed: int) -> Iterator[Server]:
    """Start ``python -m tests.fakes.topdesk`` and yield its base URL and pid."""
    repo = Path(__file__).resolve().parents[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.topdesk",
            "--incidents",
            str(incidents),
            "--seed",
            str(seed),
            "--username",
            USERNAME,
            "--password",
            PASSWORD,
        ],
        cwd=repo,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("listening "):
            raise RuntimeError(f"fake server did not start: {line!r}")
        yield Server(url=line.split()[1], pid=process.pid)
    finally:
        process.terminate()
        process.wait(timeout=10)


def fetch_floor(base_url: str, page_size: int) -> tuple[float, int]:
    """Seconds to fetch and parse every page with nothing else going on."""
    started = time.perf_counter()
    count, start = 0, 0
    with httpx.Client(base_url=base_url + "/tas/api", auth=(USERNAME, PASSWORD), timeout=60) as c:
        while True:
            params = list_params(
                paging=Paging.PAGE_START,
                since=None,
                start=start,
                page_size=page_size,
                fields=INCIDENT_FIELDS,
            )
            response = c.get("/incidents", params=params)
            if response.status_code == 204:
                break
            count += len(json.loads(response.content))
            start += page_size
            if response.status_code == 200:
                break
    return time.perf_counter() - started, count


def describe(name: str, result: SourceResult) -> str:
    total = result.seconds
    timed = {k: result.timings.get(k, 0.0) for k in PHASES}
    other = max(0.0, total - sum(timed.values()))
    split = ", ".join(f"{k} {v:.1f}s ({100 * v / total:.0f}%)" for k, v in timed.items() if v)
    rate = result.incidents / total if total else 0.0
    cpu = result.timings["client cpu"]
    cpu_rate = result.incidents / cpu if cpu else 0.0
    return (
        f"  {name:<12} {result.incidents:>8,} incidents in {total:7.1f} s = {rate:>8,.0f}/s; "
        f"{result.pages} pages, {result.requests} requests, {result.tickets.inserted:,} new, "
        f"{result.tickets.updated:,} changed, {result.events_inserted:,} events\n"
        f"  {'':<12} wall: {split}, other {other:.1f}s\n"
        f"  {'':<12} cpu: sync process {cpu:.1f} s ({cpu_rate:,.0f} incidents per cpu-second), "
        f"fake server {result.timings['server cpu']:.1f} s; load average {load()}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    os.environ[PASSWORD_ENV] = PASSWORD
    print(
        f"TOPdesk sync benchmark: {args.incidents:,} incidents, page size {args.page_size}, "
        f"python {platform.python_version()}, {os.cpu_count()} cpus, {platform.platform()}"
    )
    started = time.perf_counter()
    with fake_server(args.incidents, args.seed) as server:
        base_url = server.url
        print(f"fake TOPdesk up at {base_url} after {time.perf_counter() - started:.1f} s")
        seconds, count = fetch_floor(base_url, args.page_size)
        assert count == args.incidents, (count, args.incidents)
        print(f"fetch floor: {count:,} incidents in {seconds:.1f} s = {count / seconds:,.0f}/s")
        config = TopdeskSourceConfig(
            name="bench",
            kind="topdesk",
            base_url=base_url,
            username=USERNAME,
            password_env=PASSWORD_ENV,
            page_size=args.page_size,
            timeout_seconds=120,
        )
        for backend in backends:
            with warehouse(backend, args.pg_url) as url:
                settings = Settings(warehouse={"url": url}, sources=[config])
                print(f"{backend}:")
                first, report = run_sync(settings, url, server, full=False, profile=args.profile)
                assert first.tickets.inserted == args.incidents, first.tickets
                print(describe("first sync", first))
                rerun, _ = run_sync(settings, url, server, full=False, profile=False)
                print(describe("rerun", rerun))
                resync, _ = run_sync(settings, url, server, full=True, profile=False)
                assert resync.tickets.inserted == 0 and resync.tickets.updated == 0
                print(describe("full resync", resync))
                if report:
                    print(report)


if __name__ == "__main__":
    main()
