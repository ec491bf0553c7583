"""Kill test: ``ticketflow sync`` killed with SIGKILL at many points, then rerun.

Parametrized by connector: a fake TOPdesk (52 points per backend) or a fake ServiceNow (21
points per backend, its history from sys_audit) is served over loopback HTTP from this
process. Each point runs the real CLI (``ticketflow -c CONFIG sync``) in a separate process and
kills it with SIGKILL either

- from the server, when the run's N-th request arrives (the process is waiting on HTTP), or
- from inside, through the ``TICKETFLOW_SYNC_FAULT`` hook: after a page's tickets, after its
  events, after its cursor (all three inside the page's transaction) or after the commit.

After every kill: no duplicate tickets or events, and the cursor is not ahead of committed
data (every incident modified before the cursor is stored at that version). Then a clean rerun,
after which the warehouse equals the fake: same tickets, and the same events as a twin
warehouse that synced the same states without ever being killed. A second scenario changes
incidents while the killed sync pages through.

Processes come from a fork server: a helper that imported the app once and forks a child per
run (a real process running ``app.cli.main``), so a point costs milliseconds of start-up rather
than two seconds of imports. Two points run the installed ``ticketflow`` from a fresh
interpreter instead, to show the fork server hides nothing.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import pandas as pd
import pytest
from sqlalchemy import Engine

from app.settings import load_settings
from app.sync import FAULT_ENV, parse_cursor, sync_sources
from app.warehouse import make_engine, read_events_frame, read_sync_states, read_tickets_frame
from connectors.config import HttpSourceConfig, ServiceNowSourceConfig
from connectors.http import make_client
from connectors.servicenow import make_servicenow_client
from connectors.topdesk import API_PATH
from tests.fakes import ServedFake
from tests.fakes.servicenow import FakeServiceNow
from tests.fakes.topdesk import GROUPS, OPERATORS, PRIORITIES, STATUSES, FakeTopdesk

REPO = Path(__file__).resolve().parents[2]
PASSWORD_ENV = "TD_KILL_PASSWORD"
PAGE_SIZE = 10
TWIN_PAGE_SIZE = 1000
STAGES = ("tickets", "events", "cursor", "commit")


# --- the fork server ----------------------------------------------------------------------


def _zygote() -> None:
    """Fork-server main loop: JSON commands on stdin, JSON replies on stdout."""
    import traceback

    import app.cli
    import app.sync
    from connectors.http import _ssl_context

    # warm what every child would otherwise load again: the TLS context (CA bundle) and the
    # modules httpx imports on its first client
    context = _ssl_context(
        True, None, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    )
    httpx.Client(verify=context).close()
    replies = os.fdopen(os.dup(1), "w")
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "run":
            pid = os.fork()
            if pid == 0:
                code = 3
                try:
                    null = os.open(os.devnull, os.O_RDONLY)
                    os.dup2(null, 0)
                    log = os.open(command["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                    os.dup2(log, 1)
                    os.dup2(log, 2)
                    os.environ.clear()
                    os.environ.update(command["env"])
                    sys.argv = ["ticketflow", *command["argv"]]
                    try:
                        app.cli.main()
                        code = 0
                    except SystemExit as e:
                        code = e.code if isinstance(e.code, int) else 1
                    except BaseException:
                        traceback.print_exc()
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
            replies.write(json.dumps({"pid": pid}) + "\n")
        elif command["op"] == "wait":
            _, status, usage = os.wait4(command["pid"], 0)
            cpu = usage.ru_utime + usage.ru_stime
            replies.write(json.dumps({"code": os.waitstatus_to_exitcode(status), "cpu": cpu}))
            replies.write("\n")
        replies.flush()


class ForkServer:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from tests.app.test_sync_kill import _zygote; _zygote()"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.child_cpu = 0.0
        """CPU seconds the forked syncs used"""

    def _ask(self, command: dict[str, Any]) -> dict[str, Any]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps(command) + "\n")
        stdin.flush()
        reply = stdout.readline()
        if not reply:
            raise RuntimeError("the fork server died")
        result: dict[str, Any] = json.loads(reply)
        return result

    def start(self, argv: list[str], *, env: dict[str, str], log: Path) -> int:
        return int(self._ask({"op": "run", "argv": argv, "env": env, "log": str(log)})["pid"])

    def wait(self, pid: int) -> int:
        reply = self._ask({"op": "wait", "pid": pid})
        self.child_cpu += float(reply["cpu"])
        return int(reply["code"])

    def close(self) -> None:
        stdin: IO[str] | None = self.process.stdin
        if stdin is not None:
            stdin.close()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture(scope="module")
def forks() -> Iterator[ForkServer]:
    server = ForkServer()
    yield server
    server.close()


# --- a sync under test --------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    mode: str
    """``full`` or ``incremental``"""
    kind: str
    """``request`` (killed by the server) or ``fault`` (killed by the hook)"""
    stage: str
    page: int
    """request number, or page number of the fault"""
    binary: bool = False
    """run the installed ``ticketflow`` in a fresh interpreter instead of a fork"""
    busy: bool = False
    """incidents change while the killed sync pages through"""

    def __str__(self) -> str:
        where = f"request {self.page}" if self.kind == "request" else f"{self.stage}:{self.page}"
        extra = (" (binary)" if self.binary else "") + (" while busy" if self.busy else "")
        return f"{self.mode} {where}{extra}"


class Side:
    """One connector's fake, its config and how its data changes between runs."""

    kind: str
    fake: Any
    password: str
    username: str
    rng: random.Random

    def config_lines(self) -> str:
        return ""

    def twin_client(self, config: HttpSourceConfig) -> httpx.Client:
        raise NotImplementedError

    def install(self, hook: Callable[[int], None]) -> None:
        """Call ``hook(n)`` with the fake's request count as each request arrives."""
        raise NotImplementedError

    def requests(self) -> int:
        return len(self.fake.requests)

    def mods(self) -> dict[str, datetime]:
        raise NotImplementedError

    def change(self, count: int, *, new: int, tie: int = 0) -> None:
        raise NotImplementedError

    def mutate_during(self) -> None:
        raise NotImplementedError

    def raw_matches(self, ticket_id: str, raw: dict[str, Any]) -> bool:
        raise NotImplementedError


class TopdeskSide(Side):
    kind = "topdesk"

    def __init__(self) -> None:
        self.fake = FakeTopdesk()
        self.password, self.username = self.fake.password, self.fake.username
        self.rng = random.Random(7)
        start = self.fake.clock
        for i in range(50):
            self.fake.add_incident(
                at=start + timedelta(minutes=7 * i), operatorGroup=GROUPS["Workplace"]
            )

    def twin_client(self, config: HttpSourceConfig) -> httpx.Client:
        return make_client(config, transport=httpx.MockTransport(self.fake), base_path=API_PATH)

    def install(self, hook: Callable[[int], None]) -> None:
        self.fake.on_request = lambda number, _request: hook(number)

    def mods(self) -> dict[str, datetime]:
        return dict(self.fake._mods)

    def change(self, count: int, *, new: int, tie: int = 0) -> None:
        fake, rng = self.fake, self.rng
        fake.advance(timedelta(hours=1))
        ids = list(fake.incidents)
        for incident_id in rng.sample(ids, min(count, len(ids))):
            fake.modify(incident_id, **self._random_change())
        if tie:
            instant = fake.advance()
            for incident_id in rng.sample(ids, min(tie, len(ids))):
                fake.modify(incident_id, at=instant, **self._random_change())
        for _ in range(new):
            fake.add_incident(operatorGroup=rng.choice([None, *GROUPS.values()]))

    def _random_change(self) -> dict[str, Any]:
        rng = self.rng
        status = rng.choice(list(STATUSES.values()))
        name = status["name"]
        return {
            "processingStatus": status,
            "operatorGroup": rng.choice([None, *GROUPS.values()]),
            "operator": rng.choice([None, *OPERATORS.values()]),
            "priority": rng.choice(list(PRIORITIES.values())),
            "onHold": name.startswith("Waiting"),
            "completed": name in ("Completed", "Closed", "Cancelled"),
            "closed": name in ("Closed", "Cancelled"),
        }

    def mutate_during(self) -> None:
        """Changes while the sync pages through: early, late and brand-new incidents."""
        ids = sorted(self.fake.incidents, key=lambda i: self.fake._mods[i])
        for incident_id in (ids[0], ids[len(ids) // 2], ids[-1]):
            self.fake.modify(incident_id, **self._random_change())
        self.fake.add_incident(operatorGroup=GROUPS["Network"])

    def raw_matches(self, ticket_id: str, raw: dict[str, Any]) -> bool:
        incident = self.fake.incidents[ticket_id]
        return all(incident[key] == value for key, value in raw.items())


class ServiceNowSide(Side):
    """Records with full audit trails; changes go through the fake's business rules."""

    kind = "servicenow"
    STATES = (("1", ""), ("2", ""), ("3", "1"), ("3", "4"), ("3", "5"), ("6", ""), ("7", ""))

    def __init__(self) -> None:
        self.fake = FakeServiceNow()
        self.password, self.username = self.fake.password, self.fake.username
        self.rng = random.Random(7)
        self.groups = [self.fake.add_group(n) for n in ("Network", "Workplace", "Database")]
        self.users = [self.fake.add_user(f"agent.{i}", f"Agent {i}") for i in range(4)]
        start = self.fake.now
        for i in range(50):
            self.fake.add_record(
                at=start + timedelta(minutes=7 * i), assignment_group=self.groups[1]
            )
        self.fake.add_journal(next(iter(self.mods())), "hello", element="comments")

    def config_lines(self) -> str:
        return "history_page_size = 50\n"

    def twin_client(self, config: HttpSourceConfig) -> httpx.Client:
        assert isinstance(config, ServiceNowSourceConfig)
        return make_servicenow_client(config, transport=httpx.MockTransport(self.fake))

    def install(self, hook: Callable[[int], None]) -> None:
        self.fake.on_request = lambda _request: hook(len(self.fake.requests))

    def mods(self) -> dict[str, datetime]:
        store = self.fake.tables["incident"]
        return {
            sys_id: datetime.strptime(
                store.value(row, "sys_updated_on"), "%Y-%m-%d %H:%M:%S"
            ).replace(tzinfo=UTC)
            for sys_id, row in store.rows.items()
        }

    def _random_change(self) -> dict[str, str]:
        rng = self.rng
        state, hold = rng.choice(self.STATES)
        change = {
            "state": state,
            "assignment_group": rng.choice(["", *self.groups]),
            "assigned_to": rng.choice(["", *self.users]),
            "priority": rng.choice("12345"),
        }
        if state == "3":
            change["hold_reason"] = hold
        return change

    def change(self, count: int, *, new: int, tie: int = 0) -> None:
        fake, rng = self.fake, self.rng
        fake.advance(timedelta(hours=1))
        ids = list(self.mods())
        for sys_id in rng.sample(ids, min(count, len(ids))):
            fake.modify(sys_id, **self._random_change())
            if rng.random() < 0.3:
                fake.add_journal(sys_id, "update", element="comments")
        if tie:
            instant = fake.advance()
            for sys_id in rng.sample(ids, min(tie, len(ids))):
                fake.modify(sys_id, at=instant, **self._random_change())
        for _ in range(new):
            fake.add_record(assignment_group=rng.choice(["", *self.groups]))

    def mutate_during(self) -> None:
        mods = self.mods()
        ids = sorted(mods, key=lambda i: (mods[i], i))
        for sys_id in (ids[0], ids[len(ids) // 2], ids[-1]):
            self.fake.modify(sys_id, **self._random_change())
        self.fake.add_record(assignment_group=self.groups[0])

    def raw_matches(self, ticket_id: str, raw: dict[str, Any]) -> bool:
        record = self.fake.get_record(ticket_id)
        return all(
            record.get(key, "") == (value.get("value") if isinstance(value, dict) else value)
            for key, value in raw.items()
        )


class Harness:
    def __init__(self, tmp: Path, url: str, side: Side, served: ServedFake) -> None:
        self.tmp = tmp
        self.side = side
        self.served = served
        self.config = tmp / "ticketflow.toml"
        self.twin_config = tmp / "twin.toml"
        twin_url = f"sqlite:///{tmp}/twin.db"
        for path, warehouse, size in (
            (self.config, url, PAGE_SIZE),
            (self.twin_config, twin_url, TWIN_PAGE_SIZE),  # the twin's pages don't matter
        ):
            path.write_text(
                f'[warehouse]\nurl = "{warehouse}"\n\n[[sources]]\nname = "td"\n'
                f'kind = "{side.kind}"\nbase_url = "{served.url}"\n'
                f'username = "{side.username}"\n'
                f'password_env = "{PASSWORD_ENV}"\npage_size = {size}\n'
                "timeout_seconds = 20\nmax_attempts = 2\nbackoff_seconds = 0.01\n"
                + side.config_lines()
            )
        self.settings = load_settings(self.config)
        self.twin_settings = load_settings(self.twin_config)
        self.engine = make_engine(url)
        self.twin = make_engine(f"sqlite:///{tmp}/twin.db")
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp),
            PASSWORD_ENV: side.password,
        }
        self.kill_pid: int | None = None
        self.kill_at: int | None = None
        self.run_start = 0
        self.pid_known = threading.Event()
        self.mutate_at: int | None = None
        side.install(self._on_request)

    def _on_request(self, number: int) -> None:
        n = number - self.run_start
        if self.mutate_at is not None and n == self.mutate_at:
            self.side.mutate_during()
        if self.kill_at is not None and n == self.kill_at:
            if not self.pid_known.wait(timeout=10) or self.kill_pid is None:
                raise RuntimeError("no process to kill")
            os.kill(self.kill_pid, signal.SIGKILL)
            time.sleep(0.05)

    # --- runs ---------------------------------------------------------------------------

    def killed_run(self, point: Point, log: Path) -> int:
        argv = ["-c", str(self.config), "sync"] + (["--full"] if point.mode == "full" else [])
        env = dict(self.env)
        if point.kind == "fault":
            env[FAULT_ENV] = f"{point.stage}:{point.page}"
        self.run_start = self.side.requests()
        self.kill_pid = None
        self.pid_known.clear()
        self.kill_at = point.page if point.kind == "request" else None
        if point.binary:
            binary = Path(sys.executable).with_name("ticketflow")
            with log.open("a") as out:
                process = subprocess.Popen(
                    [str(binary), *argv], cwd=self.tmp, env=env, stdout=out, stderr=out
                )
                self.kill_pid = process.pid
                self.pid_known.set()
                code = process.wait(timeout=120)
        else:
            pid = forks_ref[0].start(argv, env=env, log=log)
            self.kill_pid = pid
            self.pid_known.set()
            code = forks_ref[0].wait(pid)
        self.kill_at = None
        self.mutate_at = None
        return code

    def clean_run(self, *, twin: bool = False) -> None:
        """A sync in this process: over loopback HTTP, or in memory for the twin."""
        self.run_start = self.side.requests()
        if twin:
            (result,) = sync_sources(
                self.twin_settings, engine=self.twin, client_factory=self.side.twin_client
            )
        else:
            (result,) = sync_sources(self.settings, engine=self.engine)
        assert result.status == "ok", result.message


forks_ref: list[ForkServer] = []


# --- checks -------------------------------------------------------------------------------


def _cursor(engine: Engine) -> Any:
    with engine.connect() as conn:
        states = [s for s in read_sync_states(conn) if s["source"] == "td"]
    return parse_cursor(states[0]["cursor"]) if states else None


def _tickets(engine: Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return read_tickets_frame(conn, source="td")


def _events(engine: Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return read_events_frame(conn, source="td")


def _plain(value: Any) -> Any:
    if isinstance(value, dict | list):
        return value
    return None if pd.isna(value) else value


def _records(frame: pd.DataFrame, key: str) -> dict[str, dict[str, Any]]:
    return {
        str(r[key]): {str(k): _plain(v) for k, v in r.items()} for r in frame.to_dict("records")
    }


TRACKED = {
    "status": "raw_status",
    "state": "state",
    "team": "team",
    "assignee": "assignee",
    "priority": "priority_raw",
}


def check_after_kill(h: Harness, cursor_before: Any, point: Point) -> None:
    """No duplicates; the cursor is not ahead of what is committed."""
    tickets, events = _tickets(h.engine), _events(h.engine)
    assert not tickets["external_id"].duplicated().any(), point
    content = ["ticket_id", "occurred_at", "field", "old_value", "new_value"]
    assert not events.duplicated(content).any(), point
    assert not events["event_key"].duplicated().any(), point
    cursor = _cursor(h.engine)
    if cursor is None:
        return
    stored = dict(zip(tickets["external_id"], tickets["updated_at"], strict=True))
    assert cursor <= max(stored.values()), f"{point}: cursor ahead of every stored ticket"
    for incident_id, mod in h.side.mods().items():
        if mod < cursor:
            assert stored.get(incident_id) == pd.Timestamp(mod), (
                f"{point}: {incident_id} modified at {mod}, before the cursor {cursor}, "
                f"is stored at {stored.get(incident_id)}"
            )
    if point.mode == "incremental" and cursor_before is not None:
        assert cursor >= cursor_before, f"{point}: an incremental run moved the cursor back"


def check_converged(h: Harness, point: Point, *, with_twin: bool) -> None:
    """The warehouse equals the fake, and its history is consistent (and equals the twin's)."""
    tickets = _records(_tickets(h.engine), "external_id")
    mods = h.side.mods()
    assert sorted(tickets) == sorted(mods), point
    for incident_id, mod in mods.items():
        row = tickets[incident_id]
        assert row["updated_at"] == pd.Timestamp(mod), (point, incident_id)
        assert h.side.raw_matches(incident_id, row["raw"]), (point, incident_id)
    assert _cursor(h.engine) == max(pd.Timestamp(m) for m in mods.values()), point
    events = _events(h.engine)
    chains: dict[tuple[str, str], list[tuple[Any, Any]]] = {}
    for e in events.to_dict("records"):
        chains.setdefault((e["ticket_id"], e["field"]), []).append(
            (_plain(e["old_value"]), _plain(e["new_value"]))
        )
    for (ticket_id, field), chain in chains.items():
        if field not in TRACKED:
            continue
        olds, news = [o for o, _n in chain], [n for _o, n in chain]
        assert olds[0] is None and olds[1:] == news[:-1], (point, ticket_id, field, chain)
        assert news[-1] == tickets[ticket_id][TRACKED[field]], (point, ticket_id, field, chain)
    if with_twin:
        twins = _records(_tickets(h.twin), "external_id")
        for rows in (tickets, twins):
            for row in rows.values():
                row.pop("loaded_at")
        assert tickets == twins, point
        assert sorted(events["event_key"]) == sorted(_events(h.twin)["event_key"]), point


# --- the test -----------------------------------------------------------------------------


def _points(kind: str) -> tuple[list[Point], list[Point]]:
    if kind == "servicenow":
        return _servicenow_points()
    quiet: list[Point] = []
    for page in range(1, 6):
        quiet += [Point("full", "fault", stage, page) for stage in STAGES]
    for page in range(1, 4):
        quiet += [Point("incremental", "fault", stage, page) for stage in STAGES]
    quiet += [Point("incremental", "request", "", n) for n in (1, 2, 3, 4)]
    quiet += [Point("full", "request", "", n) for n in (2, 3, 5, 6)]
    quiet[5] = Point("full", "fault", "events", 2, binary=True)
    quiet[-7] = Point("incremental", "request", "", 2, binary=True)
    busy: list[Point] = []
    for page in (2, 3, 4):
        busy += [Point("full", "fault", stage, page, busy=True) for stage in ("events", "commit")]
    busy += [
        Point("incremental", "fault", "tickets", 2, busy=True),
        Point("incremental", "fault", "cursor", 3, busy=True),
    ]
    busy += [Point("full", "request", "", n, busy=True) for n in (4, 6)]
    busy += [Point("incremental", "request", "", n, busy=True) for n in (3, 4)]
    return quiet, busy


def _servicenow_points() -> tuple[list[Point], list[Point]]:
    """Fewer points: a ServiceNow page costs more requests (choices, audit, journal)."""
    quiet: list[Point] = []
    for page in (1, 2):
        quiet += [Point("full", "fault", stage, page) for stage in STAGES]
    quiet.append(Point("full", "fault", "commit", 3))
    for page in (1, 2):
        quiet += [Point("incremental", "fault", stage, page) for stage in ("events", "commit")]
    # requests: the choices, a list page, its audit, its journal, the next list page...
    quiet += [Point("incremental", "request", "", n) for n in (2, 4)]
    quiet += [Point("full", "request", "", n) for n in (3, 8)]
    quiet[4] = Point("full", "fault", "tickets", 2, binary=True)
    busy = [
        Point("full", "fault", "events", 2, busy=True),
        Point("incremental", "fault", "tickets", 2, busy=True),
        Point("full", "request", "", 6, busy=True),
        Point("incremental", "request", "", 4, busy=True),
    ]
    return quiet, busy


SIDES: dict[str, Callable[[], Side]] = {"topdesk": TopdeskSide, "servicenow": ServiceNowSide}


@pytest.mark.parametrize("kind", sorted(SIDES))
def test_sync_killed_anywhere_loses_and_duplicates_nothing(
    warehouse_url: str,
    tmp_path: Path,
    forks: ForkServer,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    forks_ref[:] = [forks]
    side = SIDES[kind]()
    monkeypatch.setenv(PASSWORD_ENV, side.password)
    quiet, busy = _points(kind)
    killed: list[str] = []
    with ServedFake(side.fake) as served:
        h = Harness(tmp_path, warehouse_url, side, served)
        h.clean_run()
        h.clean_run(twin=True)
        for i, point in enumerate([*quiet, *busy]):
            if point.mode == "full":
                side.change(5, new=0, tie=PAGE_SIZE + 3 if i % 3 == 0 else 0)
            else:
                side.change(18, new=1, tie=PAGE_SIZE * 2 if i % 4 == 1 else 0)
            if point.busy:
                h.mutate_at = 2
            else:
                h.clean_run(twin=True)  # the twin syncs the same state, never killed
            cursor_before = _cursor(h.engine)
            code = h.killed_run(point, tmp_path / f"run-{i}.log")
            log_text = (tmp_path / f"run-{i}.log").read_text()
            assert code == -signal.SIGKILL, f"{point}: exit {code}, not killed\n{log_text[-2000:]}"
            killed.append(str(point))
            check_after_kill(h, cursor_before, point)
            h.clean_run()
            if point.busy:
                h.clean_run()  # changed while paging: stored by this sync or the next
            check_converged(h, point, with_twin=not point.busy)
        h.engine.dispose()
        h.twin.dispose()
    minimum = 50 if kind == "topdesk" else 21
    assert len(set(killed)) >= minimum, f"only {len(set(killed))} distinct kill points"
