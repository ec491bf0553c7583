"""What the sync benchmarks share: the fake server's process, CPU clocks, a throw-away
warehouse (a SQLite file or a PostgreSQL schema) and one timed ``sync_sources`` run."""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import resource
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine, text

from app.settings import Settings
from app.sync import SourceResult, sync_sources
from app.warehouse import make_engine

__all__ = ["Server", "load", "own_cpu", "run_sync", "warehouse"]


@dataclass
class Server:
    url: str
    pid: int

    def cpu(self) -> float:
        """CPU seconds the server process has used (user + system)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


@contextmanager
def warehouse(backend: str, pg_url: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    schema = f"tf_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in pg_url else "?"
    try:
        yield f"{pg_url}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def run_sync(
    settings: Settings, url: str, server: Server, *, full: bool, profile: bool
) -> tuple[SourceResult, str]:
    engine = make_engine(url)
    cpu, server_cpu = own_cpu(), server.cpu()
    profiler = cProfile.Profile(time.process_time) if profile else None
    if profiler:
        profiler.enable()
    (result,) = sync_sources(settings, engine=engine, full=full)
    result.timings["client cpu"] = own_cpu() - cpu
    result.timings["server cpu"] = server.cpu() - server_cpu
    report = ""
    if profiler:
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).strip_dirs()
        stats.sort_stats("cumulative").print_stats(25)
        stats.sort_stats("tottime").print_stats(15)
        report = out.getvalue()
    engine.dispose()
    if result.status != "ok":
        raise RuntimeError(f"sync failed: {result.message}")
    return result, report
