"""Bulk-upsert benchmark: N synthetic tickets into SQLite and PostgreSQL (not a test).

    python -m bench.bench_upsert [--rows N] [--backend sqlite|postgresql|both] [--pg-url URL]
                                 [--batch-size N] [--change-fraction F] [--seed N]

Every phase writes the same N tickets in batches of ``--batch-size`` (default 20,000, the
``[warehouse] batch_size`` default), one transaction per batch, the way a connector sync commits
a page of tickets together with its cursor:

1. ``first upsert``: ``upsert_tickets`` into an empty, migrated warehouse (every row inserted);
2. ``unchanged``: the same frame again (every row unchanged, nothing rewritten);
3. ``partial change``: the frame with ``--change-fraction`` of the tickets modified;
4. ``floor``: a raw DBAPI ``executemany`` of a plain ``INSERT`` of the same row tuples into an
   empty ``tickets`` table created by the same migrations in a separate database (SQLite) or
   schema (PostgreSQL), on a connection of an engine from ``make_engine``: the same DDL,
   CHECKs, indexes and connection settings (SQLite: 64 KiB pages, 64 MiB cache, WAL).

After the upserts it times reading the N tickets back the way the API's snapshot and the alert
evaluation do (``read_tickets_frame(raw=False)``), and once with the vendor payloads
(``raw=True``, what only exports and tests ask for); ``--skip-reads`` leaves that out.

Phases 1-3 time everything ``upsert_tickets`` does: frame slicing, the frame-to-tuple
conversion (times, ints, JSON encoding of ``raw``), the SQL, and the inserted/updated counting.
The floor's tuples are built before its timer starts: it times ``executemany`` and the commits
only. The counts each phase reports are checked (a wrong count aborts the run); timings are
only reported. SQLite runs in a fresh file under a temporary directory; PostgreSQL in fresh
schemas that are dropped at the end.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd
import psycopg
import sqlalchemy
from sqlalchemy import Engine, create_engine, text

from app.warehouse import make_engine, read_tickets_frame, upsert_tickets
from app.warehouse.writes import TICKET_WRITE_COLUMNS, UpsertCounts, _ticket_rows

DEFAULT_PG_URL = os.environ.get(
    "TICKETFLOW_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
END = datetime(2026, 1, 1, tzinfo=UTC)
"""the synthetic history covers the two years before this instant"""
TWO_YEARS = 2 * 365 * 86_400
NOW = datetime(2026, 1, 1, 6, tzinfo=UTC)
LATER = datetime(2026, 1, 2, 6, tzinfo=UTC)

# --- the synthetic generator ------------------------------------------------------------------

# source name, URL host, share of the tickets, external id style
SOURCES = (
    ("servicenow-eu", "acme-eu.service-now.com", 0.45, "sys_id"),
    ("topdesk", "acme.topdesk.net", 0.25, "uuid"),
    ("jira-sm", "acme.atlassian.net", 0.20, "numeric"),
    ("legacy-log", "helpdesk.acme.local", 0.10, "numeric"),
)
STATES = {
    # state: (share, raw statuses of the tools)
    "closed": (0.55, ("Closed", "Closed - Completed", "Gesloten")),
    "resolved": (0.20, ("Resolved", "Done", "Afgemeld")),
    "cancelled": (0.04, ("Cancelled", "Withdrawn")),
    "in_progress": (0.08, ("In Progress", "Work in progress", "In behandeling")),
    "new": (0.04, ("New", "Open", "Aangemeld")),
    "waiting_customer": (0.05, ("Awaiting User Info", "Waiting for customer")),
    "waiting_supplier": (0.02, ("Awaiting Vendor", "Wachten op leverancier")),
    "waiting_other": (0.02, ("On Hold", "Pending change")),
}
DONE = ("closed", "resolved", "cancelled")
TYPES = {"incident": 0.62, "request": 0.30, "problem": 0.03, "change": 0.04, "other": 0.01}
PRIORITIES = ("1 - Critical", "2 - High", "3 - Moderate", "4 - Low", "5 - Planning")
PRIORITY_SHARES = (0.03, 0.12, 0.40, 0.35, 0.10)
SLA_HOURS = (4, 8, 72, 120, 240)
TEAMS = (
    "Service Desk L1", "Service Desk L2", "Workplace", "Network", "Identity & Access",
    "Servers Windows", "Servers Linux", "Database", "ERP Support", "CRM Support", "Telecom",
    "Security Operations", "Facilities IT", "Printing", "Field Services Noord",
    "Field Services Zuid", "Middleware", "Storage & Backup", "Cloud Platform", "DevOps",
    "Finance Apps", "HR Apps", "Mobile Devices", "Collaboration", "Data Platform",
    "Integration", "Web Hosting", "Licensing", "Procurement IT", "Onboarding",
    "Change Management", "Problem Management", "Major Incident Team", "Monitoring",
    "Application Packaging", "Citrix", "Remote Access", "Audio Visual", "Lab Systems",
    "Vendor Management",
)  # fmt: skip
CATEGORIES = (
    "Software", "Hardware", "Network", "Access", "Email", "Account", "Printer", "Telephony",
    "Database", "Application", "Inquiry / Help", "Password Reset", "Security", "Workstation",
    "Mobile", "VPN", "Storage", "Backup", "Monitoring alert", "Licence", "Onboarding",
    "Offboarding", "Facilities", "Website", "Other",
)  # fmt: skip
FIRST = (
    "Anna", "Bram", "Chen", "Daan", "Eva", "Farah", "Gijs", "Hanna", "Ivan", "Julia", "Kees",
    "Lotte", "Mohamed", "Noor", "Olaf", "Priya", "Quinten", "Rosa", "Sven", "Tess", "Umar",
    "Vera", "Willem", "Xin", "Yara", "Zoë", "Lucas", "Emma", "Sophie", "Thomas",
)  # fmt: skip
LAST = (
    "de Vries", "Jansen", "van den Berg", "Bakker", "Visser", "Smit", "Meijer", "de Boer",
    "Mulder", "de Groot", "Bos", "Vos", "Peters", "Hendriks", "van Leeuwen", "Dekker",
    "Brouwer", "de Wit", "Dijkstra", "Smits", "Kowalski", "Nguyen", "Öztürk", "Garcia",
)  # fmt: skip
SUBJECTS = (
    "Outlook", "Laptop", "VPN client", "SAP GUI", "Teams meeting room", "Printer on floor 3",
    "Salesforce", "Password", "MFA token", "Citrix session", "Shared drive", "Docking station",
    "Mobile phone", "Wi-Fi", "Payroll export", "Jira board", "Badge reader", "Monitor",
    "SharePoint site", "Backup job", "Database server", "Website checkout", "Excel macro",
    "New employee account", "Software installation", "Licence request",
)  # fmt: skip
PROBLEMS = (
    "cannot connect", "is very slow", "crashes on start", "shows error 0x80070005",
    "not working since update", "access denied", "needs to be reset", "keeps disconnecting",
    "request for new", "does not sync", "is unavailable", "prints blank pages",
    "login loop after password change", "certificate expired", "disk almost full",
    "timeout when saving", "wrong permissions", "missing after migration",
)  # fmt: skip
CONTACT_TYPES = ("email", "self-service", "phone", "walk-in", "chat", "monitoring")


def _zipf(n: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return np.asarray(weights / weights.sum())


def _pick(rng: np.random.Generator, values: Sequence[Any], n: int, p: Any = None) -> np.ndarray:
    pool = np.empty(len(values), dtype=object)
    pool[:] = list(values)
    return np.asarray(pool[rng.choice(len(values), size=n, p=p)])


def _stamps(seconds: np.ndarray, missing: np.ndarray | None = None) -> pd.Series:
    """Epoch seconds as a UTC datetime column (NaT where ``missing``)."""
    values = seconds.astype("datetime64[s]").astype("datetime64[us]")
    if missing is not None:
        values[missing] = np.datetime64("NaT")
    return pd.Series(values).dt.tz_localize("UTC")


def _iso(seconds: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
    """Epoch seconds as vendor JSON text (None where ``missing``)."""
    text = np.char.add(np.datetime_as_string(seconds.astype("datetime64[s]")), "Z").astype(object)
    if missing is not None:
        text[missing] = None
    return np.asarray(text)


def _external_ids(rng: np.random.Generator, style: str, n: int, offset: int) -> np.ndarray:
    if style == "numeric":  # roughly increasing, like an auto-increment id
        ids = offset + np.sort(rng.choice(n * 3, size=n, replace=False))
        return np.asarray(ids.astype(str).astype(object))
    raw = np.frombuffer(rng.bytes(16 * n), dtype="S16")
    hexes = [b.hex() for b in raw.tolist()]
    if style == "uuid":
        hexes = [f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" for h in hexes]
    return np.asarray(hexes, dtype=object)


def synthetic_tickets(n: int, *, seed: int = 42) -> pd.DataFrame:
    """``n`` canonical tickets (``connectors.base.TICKET_COLUMNS``) with realistic spreads.

    Four sources of unequal size and id styles; 8 lifecycle states, 80 % done; priorities
    1-5 skewed to 3-4; Zipf-skewed teams, categories, assignees and requesters; created,
    updated, resolved and closed times over two years; a ~15-key vendor-like ``raw`` payload.
    Deterministic for a given ``seed``; ordered by ``updated_at`` like a sync's pages.
    """
    rng = np.random.default_rng(seed)
    src_idx = rng.choice(len(SOURCES), size=n, p=[s[2] for s in SOURCES])
    source = np.empty(n, dtype=object)
    external_id = np.empty(n, dtype=object)
    url = np.empty(n, dtype=object)
    number = np.empty(n, dtype=object)
    for i, (name, host, _share, style) in enumerate(SOURCES):
        where = np.flatnonzero(src_idx == i)
        ids = _external_ids(rng, style, len(where), offset=10_000 * (i + 1))
        source[where] = name
        external_id[where] = ids
        url[where] = np.char.add(f"https://{host}/tickets/", ids.astype(str)).astype(object)
        seq = np.arange(len(where)) + 1_000_000 * (i + 1)
        number[where] = np.char.add("INC", seq.astype(str)).astype(object)

    state_names = list(STATES)
    state_idx = rng.choice(len(STATES), size=n, p=[STATES[s][0] for s in state_names])
    state = np.asarray(state_names, dtype=object)[state_idx]
    raw_status = np.empty(n, dtype=object)
    for i, name in enumerate(state_names):
        where = np.flatnonzero(state_idx == i)
        raw_status[where] = _pick(rng, STATES[name][1], len(where))
    done = np.isin(state, DONE)
    closed = state == "closed"
    resolved = (state == "closed") | (state == "resolved")

    prio = rng.choice(5, size=n, p=PRIORITY_SHARES)
    no_prio = rng.random(n) < 0.01
    priority = pd.array(prio + 1, dtype="Int64")
    priority[no_prio] = pd.NA
    priority_raw = np.asarray(PRIORITIES, dtype=object)[prio]
    priority_raw[no_prio] = None

    created = int(END.timestamp()) - TWO_YEARS + rng.integers(0, TWO_YEARS, size=n)
    end = int(END.timestamp())
    speed = np.asarray([0.2, 0.5, 1.0, 1.6, 3.0])[prio]
    to_resolve = (rng.lognormal(np.log(18 * 3600), 1.3, size=n) * speed).astype(np.int64)
    resolved_s = np.minimum(created + 60 + to_resolve, end)
    closed_s = np.minimum(resolved_s + rng.integers(1, 8, size=n) * 86_400, end)
    touched = np.minimum(created + rng.lognormal(np.log(6 * 3600), 1.5, size=n).astype(int), end)
    updated_s = np.where(done, np.where(closed, closed_s, resolved_s), touched)
    updated_s = np.where(state == "cancelled", touched, updated_s)
    due_s = created + np.asarray(SLA_HOURS)[prio] * 3600
    no_due = rng.random(n) < 0.1

    assignees = np.asarray([f"{f} {last}" for last in LAST for f in FIRST], dtype=object)
    assignee = assignees[rng.choice(len(assignees), size=n, p=_zipf(len(assignees), 0.9))]
    assignee[(state == "new") & (rng.random(n) < 0.7)] = None
    team = _pick(rng, TEAMS, n, _zipf(len(TEAMS), 1.1))
    category = _pick(rng, CATEGORIES, n, _zipf(len(CATEGORIES), 1.0))
    requester_ids = rng.choice(30_000, size=n, p=_zipf(30_000, 0.8))
    requester = np.char.add("user", requester_ids.astype(str)).astype(object)
    requester = np.char.add(requester.astype(str), "@acme.example").astype(object)
    ticket_type = _pick(rng, list(TYPES), n, list(TYPES.values()))

    title = _pick(rng, SUBJECTS, n) + " " + _pick(rng, PROBLEMS, n)
    detail = rng.random(n)
    hosts = np.char.add(" on WS-", rng.integers(1000, 99999, size=n).astype(str)).astype(object)
    title = np.where(detail < 0.35, title + hosts, title)
    title = np.where(detail > 0.85, title + " (urgent, blocks the whole team)", title)

    reassigned = rng.poisson(0.7, size=n)
    reopened = np.where(rng.random(n) < 0.05, rng.integers(1, 3, size=n), 0)

    opened_iso = _iso(created)
    updated_iso = _iso(updated_s)
    resolved_iso = _iso(resolved_s, ~resolved)
    contact = _pick(rng, CONTACT_TYPES, n, [0.4, 0.25, 0.2, 0.05, 0.05, 0.05])
    impact = rng.choice(["1", "2", "3"], size=n, p=[0.1, 0.3, 0.6]).astype(object)
    urgency = rng.choice(["1", "2", "3"], size=n, p=[0.1, 0.4, 0.5]).astype(object)
    group_ids = np.char.add("grp-", rng.integers(100, 140, size=n).astype(str)).astype(object)
    raw = [
        {
            "sys_id": ext,
            "number": num,
            "short_description": ttl,
            "state": st,
            "priority": pr,
            "impact": imp,
            "urgency": urg,
            "category": cat,
            "assignment_group": {"display_value": tm, "value": gid},
            "assigned_to": asg,
            "caller_id": req,
            "opened_at": op,
            "sys_updated_on": up,
            "resolved_at": rs,
            "reassignment_count": str(ra),
            "contact_type": ct,
        }
        for ext, num, ttl, st, pr, imp, urg, cat, tm, gid, asg, req, op, up, rs, ra, ct in zip(
            external_id.tolist(),
            number.tolist(),
            title.tolist(),
            raw_status.tolist(),
            priority_raw.tolist(),
            impact.tolist(),
            urgency.tolist(),
            category.tolist(),
            team.tolist(),
            group_ids.tolist(),
            assignee.tolist(),
            requester.tolist(),
            opened_iso.tolist(),
            updated_iso.tolist(),
            resolved_iso.tolist(),
            reassigned.tolist(),
            contact.tolist(),
            strict=True,
        )
    ]
    frame = pd.DataFrame(
        {
            "source": source,
            "external_id": external_id,
            "number": number,
            "title": title,
            "type": ticket_type,
            "raw_status": raw_status,
            "state": state,
            "priority_raw": priority_raw,
            "priority": priority,
            "category": category,
            "team": team,
            "assignee": assignee,
            "requester": requester,
            "created_at": _stamps(created),
            "updated_at": _stamps(updated_s),
            "resolved_at": _stamps(resolved_s, ~resolved),
            "closed_at": _stamps(closed_s, ~closed),
            "due_at": _stamps(due_s, no_due),
            "reassignment_count": pd.array(reassigned, dtype="Int64"),
            "reopen_count": pd.array(reopened, dtype="Int64"),
            "url": url,
            "raw": pd.Series(raw, dtype=object),
        }
    )
    order = np.argsort(updated_s, kind="stable")
    return frame.iloc[order].reset_index(drop=True)


def with_changes(
    frame: pd.DataFrame, fraction: float, *, seed: int = 7
) -> tuple[pd.DataFrame, int]:
    """A copy of ``frame`` in which ``fraction`` of the tickets changed, like a later sync.

    Every changed ticket gets a later ``updated_at`` (and ``sys_updated_on`` in ``raw``); 40 %
    of them also a new assignee, 20 % one more reassignment.
    """
    rng = np.random.default_rng(seed)
    n = len(frame)
    k = round(n * fraction)
    rows = np.sort(rng.choice(n, size=k, replace=False))
    out = frame.copy()
    updated = out["updated_at"].dt.tz_localize(None).to_numpy().copy()  # UTC wall time
    updated[rows] += rng.integers(3600, 14 * 86_400, size=k).astype("timedelta64[s]")
    out["updated_at"] = pd.Series(updated, index=out.index).dt.tz_localize("UTC")
    reassign = rng.random(k) < 0.4
    names = [f"{f} {last}" for last in LAST for f in FIRST]
    new_assignee = np.asarray(names, dtype=object)[rng.integers(0, len(names), size=k)]
    assignee = np.array(out["assignee"].astype(object).where(out["assignee"].notna(), None))
    assignee[rows[reassign]] = new_assignee[reassign]
    out["assignee"] = pd.Series(assignee, index=out.index)
    more = rng.random(k) < 0.2
    count = out["reassignment_count"].to_numpy(dtype="int64", na_value=0).copy()
    count[rows[more]] += 1
    out["reassignment_count"] = pd.array(count, dtype="Int64")
    raws = out["raw"].to_numpy(dtype=object).copy()
    stamps = _iso(updated[rows].astype("datetime64[s]").astype(np.int64))
    for j, (r, stamp) in enumerate(zip(rows.tolist(), stamps.tolist(), strict=True)):
        changed = {**raws[r], "sys_updated_on": stamp}
        if reassign[j]:
            changed["assigned_to"] = new_assignee[j]
        if more[j]:
            changed["reassignment_count"] = str(count[r])
        raws[r] = changed
    out["raw"] = pd.Series(raws, index=out.index, dtype=object)
    return out, k


# --- the measurements -------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    backend: str
    phase: str
    rows: int
    seconds: float
    cpu: float
    """CPU seconds of this process (SQLite's work included, PostgreSQL's server not)"""
    load: float
    """the 1-minute load average at the end: other work on the machine skews the timings"""
    counts: UpsertCounts | None = None

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


def _batches(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _upsert_all(
    engine: Engine, frame: pd.DataFrame, batch: int, now: datetime, *, backend: str, phase: str
) -> Result:
    inserted = updated = unchanged = 0
    started, cpu = time.perf_counter(), time.process_time()
    for part in _batches(len(frame), batch):
        with engine.begin() as conn:
            counts = upsert_tickets(conn, frame.iloc[part], now=now)
        inserted += counts.inserted
        updated += counts.updated
        unchanged += counts.unchanged
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    counts = UpsertCounts(inserted, updated, unchanged)
    return Result(backend, phase, len(frame), seconds, cpu, os.getloadavg()[0], counts)


def _floor(
    engine: Engine, frame: pd.DataFrame, batch: int, now: datetime, *, backend: str
) -> Result:
    dialect = engine.dialect.name
    prebuilt = [
        _ticket_rows(frame.iloc[part], dialect=dialect, now=now)
        for part in _batches(len(frame), batch)
    ]
    mark = "?" if dialect == "sqlite" else "%s"
    sql = (
        f"INSERT INTO tickets ({', '.join(TICKET_WRITE_COLUMNS)}) "
        f"VALUES ({', '.join([mark] * len(TICKET_WRITE_COLUMNS))})"
    )
    pooled = engine.raw_connection()  # the engine's own connect hooks: same SQLite pragmas
    try:
        raw: Any = pooled.driver_connection
        cur = raw.cursor()
        started, cpu = time.perf_counter(), time.process_time()
        for rows in prebuilt:
            if dialect == "sqlite":
                cur.execute("BEGIN")
                cur.executemany(sql, rows)
                cur.execute("COMMIT")
            else:
                cur.executemany(sql, rows)
                raw.commit()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        cur.close()
    finally:
        pooled.close()
    phase = "floor (raw executemany INSERT)"
    return Result(backend, phase, len(frame), seconds, cpu, os.getloadavg()[0])


READ_PHASE = "read back"


def _read(engine: Engine, n: int, *, raw: bool, backend: str) -> Result:
    """Time ``read_tickets_frame`` of the whole warehouse (a snapshot's ticket half)."""
    gc.collect()
    started, cpu = time.perf_counter(), time.process_time()
    with engine.connect() as conn:
        frame = read_tickets_frame(conn, raw=raw)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if len(frame) != n:
        raise SystemExit(f"{backend}: read {len(frame)} tickets, not {n}")
    phase = f"{READ_PHASE} ({'with' if raw else 'without'} payloads)"
    return Result(backend, phase, n, seconds, cpu, os.getloadavg()[0])


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM tickets").scalar_one())


def _check(result: Result, expected: tuple[int, int, int]) -> None:
    got = result.counts
    if got is None or (got.inserted, got.updated, got.unchanged) != expected:
        raise SystemExit(f"{result.backend} {result.phase}: counts {got}, expected {expected}")


def run_backend(
    backend: str,
    urls: tuple[str, str],
    frame: pd.DataFrame,
    changed: pd.DataFrame,
    n_changed: int,
    batch: int,
    *,
    skip_reads: bool = False,
) -> list[Result]:
    """The phases on one backend; ``urls`` = (warehouse, floor), both empty."""
    n = len(frame)
    results: list[Result] = []
    warehouse = make_engine(urls[0])
    try:
        for phase, data, now, expected in (
            ("first upsert (empty warehouse)", frame, NOW, (n, 0, 0)),
            ("unchanged re-upsert", frame, LATER, (0, 0, n)),
            (
                f"partial change ({n_changed / n:.0%} modified)",
                changed,
                LATER,
                (0, n_changed, n - n_changed),
            ),
        ):
            result = _upsert_all(warehouse, data, batch, now, backend=backend, phase=phase)
            _check(result, expected)
            results.append(result)
            _progress(result)
        if _count(warehouse) != n:
            raise SystemExit(f"{backend}: warehouse holds {_count(warehouse)} tickets, not {n}")
        for raw in () if skip_reads else (False, True):
            results.append(_read(warehouse, n, raw=raw, backend=backend))
            _progress(results[-1])
    finally:
        warehouse.dispose()
    floor_engine = make_engine(urls[1])
    try:
        results.append(_floor(floor_engine, frame, batch, NOW, backend=backend))
        _progress(results[-1])
        if _count(floor_engine) != n:
            raise SystemExit(f"{backend}: floor table holds {_count(floor_engine)} rows, not {n}")
    finally:
        floor_engine.dispose()
    return results


def _progress(result: Result) -> None:
    print(
        f"  {result.backend:<10} {result.phase:<34} {result.seconds:7.1f} s "
        f"{result.rate:>9,.0f} tickets/s  (cpu {result.cpu:5.1f} s, load {result.load:.1f})",
        flush=True,
    )


@contextmanager
def sqlite_urls() -> Iterator[tuple[str, str]]:
    with tempfile.TemporaryDirectory(prefix="tf_bench_") as tmp:
        yield (f"sqlite:///{Path(tmp) / 'warehouse.db'}", f"sqlite:///{Path(tmp) / 'floor.db'}")


@contextmanager
def postgres_urls(admin_url: str) -> Iterator[tuple[str, str]]:
    """Two fresh schemas (warehouse, floor) in the database at ``admin_url``, dropped after."""
    admin = create_engine(admin_url)
    tag = uuid.uuid4().hex[:10]
    schemas = (f"tf_bench_{tag}_wh", f"tf_bench_{tag}_floor")
    sep = "&" if "?" in admin_url else "?"
    try:
        with admin.begin() as conn:
            for schema in schemas:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield tuple(  # type: ignore[misc]
            f"{admin_url}{sep}options={quote(f'-csearch_path={s}')}" for s in schemas
        )
    finally:
        with admin.begin() as conn:
            for schema in schemas:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def _versions(pg_url: str | None) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [
        f"Python {platform.python_version()}",
        f"SQLite {sqlite3.sqlite_version}",
        f"pandas {pd.__version__}",
        f"numpy {np.__version__}",
        f"SQLAlchemy {sqlalchemy.__version__}",
        f"psycopg {psycopg.__version__}",
    ]
    if pg_url:
        try:
            eng = create_engine(pg_url)
            with eng.connect() as conn:
                version = conn.exec_driver_sql("SHOW server_version").scalar_one()
            eng.dispose()
            parts.append(f"PostgreSQL {str(version).split()[0]}")
        except Exception as e:  # report, do not fail: the SQLite run does not need it
            parts.append(f"PostgreSQL unavailable ({type(e).__name__})")
    return f"{os.cpu_count()} cores ({cpu}); " + ", ".join(parts)


def report(results: list[Result]) -> str:
    """A Markdown table of the results, with the ratios to the floor and to the first upsert."""
    lines = [
        "| backend | phase | tickets | seconds | tickets/s | / floor | / first upsert "
        "| CPU s (client) | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    writes = [r for r in results if not r.phase.startswith(READ_PHASE)]
    for backend in dict.fromkeys(r.backend for r in writes):
        mine = [r for r in writes if r.backend == backend]
        floor = next(r for r in mine if r.phase.startswith("floor"))
        first = mine[0]
        for r in mine:
            to_first = "" if r is floor else f"{r.rate / first.rate:.2f}"
            lines.append(
                f"| {backend} | {r.phase} | {r.rows:,} | {r.seconds:.1f} | {r.rate:,.0f} "
                f"| {r.rate / floor.rate:.2f} | {to_first} | {r.cpu:.1f} | {r.load:.1f} |"
            )
    reads = [r for r in results if r.phase.startswith(READ_PHASE)]
    if reads:
        lines += [
            "",
            "| backend | read_tickets_frame | tickets | seconds | tickets/s | CPU s | load |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r.backend} | {r.phase.removeprefix(READ_PHASE).strip(' ()')} | {r.rows:,} "
            f"| {r.seconds:.1f} | {r.rate:,.0f} | {r.cpu:.1f} | {r.load:.1f} |"
            for r in reads
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_upsert", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="tickets (default 1,000,000)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="a database to make schemas in")
    parser.add_argument("--batch-size", type=int, default=20_000, help="tickets per transaction")
    parser.add_argument("--change-fraction", type=float, default=0.10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--skip-reads", action="store_true", help="only the write phases")
    args = parser.parse_args(argv)
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)

    print(_versions(args.pg_url if "postgresql" in backends else None))
    started = time.perf_counter()
    gc.disable()  # generating millions of payload dicts: no collection can free anything
    frame = synthetic_tickets(args.rows, seed=args.seed)
    changed, n_changed = with_changes(frame, args.change_fraction, seed=args.seed + 1)
    # the input is not part of the measurement: keep the garbage collector from walking its
    # millions of payload dicts on every full collection while the phases run
    gc.collect()
    gc.freeze()
    gc.enable()
    print(
        f"generated {len(frame):,} tickets (+ {n_changed:,} changed) in "
        f"{time.perf_counter() - started:.1f} s; batches of {args.batch_size:,}, "
        "one transaction each",
        flush=True,
    )
    results: list[Result] = []
    for backend in backends:
        urls = sqlite_urls() if backend == "sqlite" else postgres_urls(args.pg_url)
        with urls as pair:
            results += run_backend(
                backend,
                pair,
                frame,
                changed,
                n_changed,
                args.batch_size,
                skip_reads=args.skip_reads,
            )
    print()
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
