"""ServiceNow sync benchmark: N incidents with M sys_audit rows from a fake instance process over
loopback HTTP.

    python -m bench.bench_sync_servicenow [--incidents N] [--audit-rows M]
        [--backend sqlite|postgresql|both] [--page-size N] [--pg-url URL] [--seed N]
        [--cache DIR] [--profile]

The fake (tests/fakes/servicenow) runs in its own process under uvicorn, generated with
``--incidents`` incidents whose histories add up to about ``--audit-rows`` audit rows
(``--cache`` keeps the generated instance for the next start). The sync runs in this process
exactly as ``ticketflow sync`` does (real httpx client, Basic auth, retries armed, pacing on,
display values, page commits with the cursor). Per backend:

1. ``first sync``: an empty warehouse; every incident new, its whole audit trail and comments
   read in bulk (``documentkeyIN``, 100 records a request) and turned into events;
2. ``rerun``: an incremental sync right after (only the overlap window is re-read);
3. ``full resync``: ``--full`` over the loaded warehouse (every incident compared, unchanged,
   so no history is requested).

Reported: incidents/s and audit rows/s (the audit rows the sync received, over the sync's wall
time), events written, requests, and where the time goes from the sync's own phase timers:
``http`` (waiting for responses, list and history), ``decode``, ``map``, ``history`` (audit,
journal and name requests plus the replay), ``read`` (stored snapshots), ``write``. Counts are
checked (every incident stored once, reassignment counts equal the imported history's);
timings are only reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text

from app.settings import Settings
from app.sync import SourceResult
from app.warehouse import make_engine
from bench import sync_common
from bench.sync_common import load, run_sync, warehouse
from connectors.config import ServiceNowSourceConfig

DEFAULT_PG_URL = os.environ.get(
    "TICKETFLOW_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
USERNAME = "integration.user"
PASSWORD = "bench-sn-password"
PASSWORD_ENV = "TICKETFLOW_BENCH_SERVICENOW_PASSWORD"
PHASES = ("http", "decode", "map", "history", "read", "write")
"""``history`` includes its own requests' ``http`` time; the split reports both"""


@dataclass
class Server(sync_common.Server):
    """The fake's process, and how many audit rows it generated."""

    audit_rows: int


@contextmanager
def fake_server(incidents: int, audit_rows: int, seed: int, cache: Path | None) -> Iterator[Server]:
    """Start ``python -m tests.fakes.servicenow`` and yield its base URL and pid."""
    repo = Path(__file__).resolve().parents[1]
    argv = [
        sys.executable,
        "-m",
        "tests.fakes.servicenow",
        "--incidents",
        str(incidents),
        "--audit-rows",
        str(audit_rows),
        "--seed",
        str(seed),
        "--username",
        USERNAME,
        "--password",
        PASSWORD,
    ]
    if cache is not None:
        argv += ["--cache", str(cache)]
    log = Path(tempfile.mkstemp(prefix="fake-servicenow-", suffix=".log")[1])
    with log.open("w") as err:
        process = subprocess.Popen(argv, cwd=repo, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        made = log.read_text().strip().splitlines()
        if not line.startswith("listening ") or not made:
            raise RuntimeError(f"fake server did not start: {made[-5:]!r} {line!r}")
        rows = int(made[-1].split(" audit rows")[0].rsplit(" ", 1)[1])
        print(f"fake ServiceNow: {made[-1]} (its log: {log})")
        yield Server(url=line.split()[1], pid=process.pid, audit_rows=rows)
    finally:
        if process.poll() is not None:
            print(f"the fake server exited with {process.returncode}; its log ends:")
            print("\n".join(log.read_text().splitlines()[-20:]))
        process.terminate()
        process.wait(timeout=30)


def check_reassignments(url: str) -> tuple[int, int]:
    """(tickets, tickets whose reassignment_count differs from the imported team changes)."""
    engine = make_engine(url)
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT count(*), sum(CASE WHEN coalesce(t.reassignment_count, 0) "
                "<> coalesce(e.n, 0) THEN 1 ELSE 0 END) FROM tickets t LEFT JOIN "
                "(SELECT ticket_id, count(*) AS n FROM events WHERE source = 'bench' AND "
                "field = 'team' AND old_value IS NOT NULL GROUP BY ticket_id) e "
                "ON e.ticket_id = t.external_id WHERE t.source = 'bench'"
            )
        ).one()
    engine.dispose()
    return int(row[0]), int(row[1] or 0)


def describe(name: str, result: SourceResult, audit_rows: int) -> str:
    total = result.seconds
    timed = {k: result.timings.get(k, 0.0) for k in PHASES}
    split = ", ".join(f"{k} {v:.1f}s ({100 * v / total:.0f}%)" for k, v in timed.items() if v)
    rate = result.incidents / total if total else 0.0
    audit_rate = audit_rows / total if total else 0.0
    cpu = result.timings["client cpu"]
    return (
        f"  {name:<12} {result.incidents:>8,} incidents in {total:7.1f} s = {rate:>8,.0f}/s; "
        f"{audit_rows:,} audit rows = {audit_rate:,.0f}/s; {result.pages} pages, "
        f"{result.requests} requests, {result.tickets.inserted:,} new, "
        f"{result.tickets.updated:,} changed, {result.events_inserted:,} events\n"
        f"  {'':<12} wall: {split}\n"
        f"  {'':<12} cpu: sync process {cpu:.1f} s, fake server "
        f"{result.timings['server cpu']:.1f} s; load average {load()}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--audit-rows", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    os.environ[PASSWORD_ENV] = PASSWORD
    print(
        f"ServiceNow sync benchmark: {args.incidents:,} incidents, ~{args.audit_rows:,} audit "
        f"rows, page size {args.page_size}, python {platform.python_version()}, "
        f"{os.cpu_count()} cpus, {platform.platform()}"
    )
    started = time.perf_counter()
    with fake_server(args.incidents, args.audit_rows, args.seed, args.cache) as server:
        print(f"fake up at {server.url} after {time.perf_counter() - started:.1f} s")
        config = ServiceNowSourceConfig(
            name="bench",
            kind="servicenow",
            base_url=server.url,
            username=USERNAME,
            password_env=PASSWORD_ENV,
            page_size=args.page_size,
            timeout_seconds=300,
        )
        for backend in backends:
            with warehouse(backend, args.pg_url) as url:
                settings = Settings(warehouse={"url": url}, sources=[config])
                print(f"{backend}:")
                first, report = run_sync(settings, url, server, full=False, profile=args.profile)
                assert first.tickets.inserted == args.incidents, first.tickets
                print(describe("first sync", first, server.audit_rows))
                tickets, wrong = check_reassignments(url)
                assert wrong == 0, f"{wrong} of {tickets} reassignment counts differ"
                print(f"  {'':<12} reassignment_count = imported team changes for all {tickets:,}")
                rerun, _ = run_sync(settings, url, server, full=False, profile=False)
                print(describe("rerun", rerun, 0))
                resync, _ = run_sync(settings, url, server, full=True, profile=False)
                assert resync.tickets.inserted == 0 and resync.tickets.updated == 0
                print(describe("full resync", resync, 0))
                if report:
                    print(report)


if __name__ == "__main__":
    main()
