"""``app.sync`` against the fake ServiceNow instance, on SQLite and PostgreSQL.

History from sys_audit (reassignment counts and time in each state equal the audit trail's),
incremental pulls that fetch the history of changed records only, labels from the instance's
sys_choice, records changing during a sync, the time zone of the machine, and every fault knob:
401 stops the source naming what to check, 403 on sys_audit falls back to snapshots with a
warning, 429 waits Retry-After and pacing avoids it, 5xx are retried, invalid JSON stops the
source without moving its cursor.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pandas as pd
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from app.settings import Settings
from app.sync import SourceResult, parse_cursor, sync_source, sync_sources
from app.warehouse import (
    read_events_frame,
    read_sync_states,
    read_tickets_frame,
    read_unknown_statuses,
)
from connectors.config import HttpSourceConfig, ServiceNowSourceConfig
from connectors.servicenow import client as sn_client
from connectors.servicenow import make_servicenow_client
from tests.fakes.servicenow import FakeServiceNow

PASSWORD_ENV = "SN_SYNC_TEST_PASSWORD"
LIST = "/api/now/table/incident"
AUDIT = "/api/now/table/sys_audit"


class Instance:
    """A fake ServiceNow plus the source config and client factory that reach it."""

    def __init__(
        self,
        name: str = "sn",
        *,
        page_size: int = 10,
        fake: dict[str, Any] | None = None,
        **config: Any,
    ) -> None:
        self.fake = FakeServiceNow(password=f"sn-pass-{name}-Qw3", **(fake or {}))
        self.password_env = f"{PASSWORD_ENV}_{name.upper()}"
        self.config = ServiceNowSourceConfig.model_validate(
            {
                "name": name,
                "kind": "servicenow",
                "base_url": f"https://{name}.example",
                "username": self.fake.username,
                "password_env": self.password_env,
                "page_size": page_size,
                "max_attempts": 4,
                "backoff_seconds": 0.5,
                "timeout_seconds": 0.5,
            }
            | config
        )

    def client(self, config: HttpSourceConfig) -> httpx.Client:
        assert isinstance(config, ServiceNowSourceConfig)
        return make_servicenow_client(config, transport=httpx.MockTransport(self.fake))

    def groups(self) -> dict[str, str]:
        table = self.fake.tables["sys_user_group"]
        return {table.value(r, "name"): sid for sid, r in table.rows.items()}

    def records(self, table: str = "incident") -> dict[str, dict[str, str]]:
        store = self.fake.tables[table]
        return {sid: store.as_dict(row) for sid, row in store.rows.items()}

    def audit(self) -> list[dict[str, str]]:
        store = self.fake.tables["sys_audit"]
        return [store.as_dict(row) for row in store.rows.values()]


@pytest.fixture
def sn(monkeypatch: pytest.MonkeyPatch) -> Instance:
    instance = Instance()
    monkeypatch.setenv(instance.password_env, instance.fake.password)
    return instance


def _sync(
    engine: Engine, sn: Instance, *, full: bool = False, sleeps: list[float] | None = None
) -> SourceResult:
    sleep: Callable[[float], None] = (sleeps if sleeps is not None else []).append
    return sync_source(engine, sn.config, full=full, client_factory=sn.client, sleep=sleep)


def _tickets(engine: Engine, source: str = "sn") -> pd.DataFrame:
    with engine.connect() as conn:
        return read_tickets_frame(conn, source=source).set_index("external_id")


def _events(engine: Engine, source: str = "sn") -> pd.DataFrame:
    with engine.connect() as conn:
        return read_events_frame(conn, source=source)


def _state(engine: Engine, source: str = "sn") -> dict[str, Any]:
    with engine.connect() as conn:
        return next(s for s in read_sync_states(conn) if s["source"] == source)


def _utc(value: str) -> pd.Timestamp:
    return pd.Timestamp(value, tz="UTC")


def _text(value: Any) -> str | None:
    return None if value is None or pd.isna(value) else str(value)


def _assert_warehouse_matches(engine: Engine, sn: Instance) -> None:
    tickets = _tickets(engine)
    records = sn.records()
    assert sorted(tickets.index) == sorted(records)
    names = {sid: name for name, sid in sn.groups().items()}
    for sys_id, record in records.items():
        row = tickets.loc[sys_id]
        assert row["updated_at"] == _utc(record["sys_updated_on"]), sys_id
        assert _text(row["team"]) == names.get(record["assignment_group"]), sys_id
        label = sn.fake.choice_label("incident", "state", record["state"])
        assert str(row["raw_status"]).split("/")[0] == label, sys_id
        assert row["reassignment_count"] == int(record["reassignment_count"] or 0)


def _chains_are_consistent(engine: Engine) -> None:
    """Per ticket and field, each event starts where the previous ended, and the last ends at
    the ticket's current value."""
    tickets = _tickets(engine)
    column = {
        "status": "raw_status",
        "state": "state",
        "team": "team",
        "assignee": "assignee",
        "priority": "priority_raw",
    }
    chains: dict[tuple[str, str], list[tuple[str | None, str | None]]] = defaultdict(list)
    events = _events(engine).sort_values(["ticket_id", "occurred_at", "seq"], kind="stable")
    for e in events.to_dict("records"):
        if e["field"] in column:
            chains[e["ticket_id"], e["field"]].append(
                (_text(e["old_value"]), _text(e["new_value"]))
            )
    for (ticket, field), chain in chains.items():
        olds, news = [o for o, _n in chain], [n for _o, n in chain]
        assert olds[1:] == news[:-1], (ticket, field, chain)
        assert news[-1] == _text(tickets.loc[ticket, column[field]]), (ticket, field, chain)


# --- history --------------------------------------------------------------------------------


def test_first_sync_loads_every_record_with_its_audit_history(engine: Engine, sn: Instance) -> None:
    sn.fake.generate(40, audit_rows=400, seed=3)
    result = _sync(engine, sn)
    assert result.status == "ok", result.message
    assert (result.pages, result.incidents, result.tickets.inserted) == (4, 40, 40)
    _assert_warehouse_matches(engine, sn)
    _chains_are_consistent(engine)
    events = _events(engine)
    assert set(events["origin"]) == {"history"}
    assert {"status", "state", "team", "assignee", "priority", "customer_update"} <= set(
        events["field"]
    )
    state = _state(engine)
    newest = max(_utc(r["sys_updated_on"]) for r in sn.records().values())
    assert parse_cursor(state["cursor"]) == newest
    assert state["details"]["history"] == "sys_audit"
    assert state["details"]["warnings"] == []
    again = _sync(engine, sn)
    assert (again.tickets.inserted, again.tickets.updated, again.events_inserted) == (0, 0, 0)
    audit_calls = [r for r in sn.fake.requests if r.path == AUDIT]
    assert len(audit_calls) == 4  # 40 new records in pages of 10; nothing for the unchanged


def _time_in_state_from_events(
    events: pd.DataFrame, now: pd.Timestamp
) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = defaultdict(float)
    status = events[events["field"] == "status"].sort_values(["ticket_id", "occurred_at"])
    for ticket, rows in status.groupby("ticket_id"):
        times = [*rows["occurred_at"], now]
        for value, start, end in zip(rows["new_value"], times, times[1:], strict=False):
            out[str(ticket), str(value).split("/")[0]] += (end - start).total_seconds()
    return dict(out)


def _time_in_state_from_audit(sn: Instance, now: pd.Timestamp) -> dict[tuple[str, str], float]:
    """Straight from the fake's sys_audit rows and records, with its own labels."""
    out: dict[tuple[str, str], float] = defaultdict(float)
    rows = [r for r in sn.audit() if r["fieldname"] == "state"]
    by_record: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_record[row["documentkey"]].append(row)
    for sys_id, record in sn.records().items():
        changes = sorted(by_record.get(sys_id, []), key=lambda r: int(r["record_checkpoint"]))
        start = _utc(record["opened_at"])
        value = changes[0]["oldvalue"] if changes else record["state"]
        for change in changes:
            at = _utc(change["sys_created_on"])
            label = sn.fake.choice_label("incident", "state", value)
            out[sys_id, str(label)] += (at - start).total_seconds()
            start, value = at, change["newvalue"]
        out[sys_id, str(sn.fake.choice_label("incident", "state", value))] += (
            now - start
        ).total_seconds()
    return {k: v for k, v in out.items() if v}


def test_reassignments_and_time_in_state_equal_the_audit_trail(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sn = Instance(page_size=50)
    monkeypatch.setenv(sn.password_env, sn.fake.password)
    sn.fake.generate(120, audit_rows=2400, seed=5)
    assert _sync(engine, sn).status == "ok"
    tickets, events = _tickets(engine), _events(engine)
    team = events[(events["field"] == "team") & events["old_value"].notna()]
    derived = team.groupby("ticket_id").size()
    counts = tickets["reassignment_count"].astype(int)
    assert counts.sum() > 20  # the data has reassignments to count
    assert (counts == derived.reindex(counts.index, fill_value=0)).all()
    now = _utc("2026-01-01 00:00:00")
    from_events = {k: v for k, v in _time_in_state_from_events(events, now).items() if v}
    assert from_events == _time_in_state_from_audit(sn, now)


def test_scripted_history_yields_exactly_those_events(engine: Engine, sn: Instance) -> None:
    fake = sn.fake
    network, workplace = fake.add_group("Network"), fake.add_group("Workplace")
    agent = fake.add_user("bram.jansen", "Bram Jansen")
    t = [datetime(2024, 3, 4, 8, 0, tzinfo=UTC) + timedelta(minutes=m) for m in range(8)]
    record = fake.add_record(at=t[0], short_description="VPN down", assignment_group=network)
    sys_id = record["sys_id"]
    fake.modify(sys_id, at=t[1], state="2", assigned_to=agent)
    fake.modify(sys_id, at=t[2], assignment_group=workplace)
    fake.add_journal(sys_id, "Any news?", element="comments", actor="caller", at=t[3])
    fake.modify(sys_id, at=t[4], assignment_group=network)
    fake.modify(sys_id, at=t[5], state="3", hold_reason="1")
    fake.add_journal(sys_id, "checked logs", element="work_notes", at=t[6])
    fake.modify(sys_id, at=t[7], state="6", close_code="Solved (Permanently)")
    assert _sync(engine, sn).status == "ok"  # one sync after all of it: nothing collapses
    got = [
        (e["occurred_at"].to_pydatetime(), e["field"], _text(e["old_value"]), _text(e["new_value"]))
        for e in _events(engine)
        .sort_values(["occurred_at", "seq"], kind="stable")
        .to_dict("records")
    ]
    assert got == [
        (t[0], "status", None, "New"),
        (t[0], "state", None, "new"),
        (t[0], "team", None, "Network"),
        (t[0], "priority", None, "5 - Planning"),
        (t[1], "status", "New", "In Progress"),
        (t[1], "state", "new", "in_progress"),
        (t[1], "assignee", None, "Bram Jansen"),
        (t[2], "team", "Network", "Workplace"),
        (t[3], "customer_update", None, "comment"),
        (t[4], "team", "Workplace", "Network"),
        (t[5], "status", "In Progress", "On Hold/Awaiting Caller"),
        (t[5], "state", "in_progress", "waiting_customer"),
        (t[7], "status", "On Hold/Awaiting Caller", "Resolved"),
        (t[7], "state", "waiting_customer", "resolved"),
    ]
    ticket = _tickets(engine).loc[sys_id]
    assert (ticket["state"], ticket["reassignment_count"]) == ("resolved", 2)
    assert ticket["resolved_at"] == pd.Timestamp(t[7])


def test_incremental_sync_reads_changed_records_and_only_their_history(
    engine: Engine, sn: Instance
) -> None:
    fake = sn.fake
    start = fake.now
    ids = [fake.add_record(at=start + timedelta(hours=i))["sys_id"] for i in range(30)]
    assert _sync(engine, sn).status == "ok"
    fake.advance(timedelta(hours=1))
    group = fake.add_group("Database")
    changed = [ids[3], ids[20], ids[21]]
    for sys_id in changed:
        fake.modify(sys_id, assignment_group=group)
    before = len(fake.requests)
    result = _sync(engine, sn)
    assert result.status == "ok"
    # the 3 changed ones, plus the newest of the first sync (overlap, unchanged)
    assert (result.tickets.updated, result.tickets.unchanged) == (3, 1)
    new = fake.requests[before:]
    lists = [r for r in new if r.path == LIST]
    assert len(lists) == 1
    assert lists[0].params["sysparm_query"].startswith("sys_updated_on>=")
    (audit,) = [r for r in new if r.path == AUDIT]
    query = audit.params["sysparm_query"]
    assert sorted(query.split("documentkeyIN")[1].split("^")[0].split(",")) == sorted(changed)
    assert "sys_created_on>=" in query
    team = _events(engine).query("field == 'team'")
    assert sorted(team["ticket_id"]) == sorted(changed)
    _assert_warehouse_matches(engine, sn)


def test_labels_come_from_the_instance_and_unknown_states_are_reported(
    engine: Engine, sn: Instance
) -> None:
    fake = sn.fake
    fake.set_choice("state", "2", "Awaiting Triage")  # this instance renumbered its states
    fake.set_choice("state", "12", "Investigating")
    triage = fake.add_record(state="2")["sys_id"]
    mystery = fake.add_record(state="12")["sys_id"]
    sn_config = sn.config.model_copy(update={"status_map": {"Awaiting Triage": "new"}})
    result = sync_source(engine, sn_config, client_factory=sn.client, sleep=lambda _s: None)
    assert result.status == "ok", result.message
    tickets = _tickets(engine)
    assert (tickets.loc[triage, "raw_status"], tickets.loc[triage, "state"]) == (
        "Awaiting Triage",
        "new",
    )
    assert tickets.loc[mystery, "raw_status"] == "Investigating"
    with engine.connect() as conn:
        unknown = read_unknown_statuses(conn, source="sn")
    assert [(u["raw_status"], u["mapped_to"]) for u in unknown] == [
        ("Investigating", "in_progress")
    ]


# --- faults ---------------------------------------------------------------------------------


def test_unreadable_audit_falls_back_to_snapshots_with_a_warning(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    sn = Instance(fake={"audit_readable": False})
    monkeypatch.setenv(sn.password_env, sn.fake.password)
    ids = [sn.fake.add_record()["sys_id"] for _ in range(15)]
    assert _sync(engine, sn).status == "ok"
    sn.fake.modify(ids[0], state="2")
    result = _sync(engine, sn)
    assert result.status == "ok", result.message
    events = _events(engine)
    assert set(events["origin"]) == {"snapshot"}
    assert events.query("field == 'state' and new_value == 'in_progress'")[
        "ticket_id"
    ].tolist() == [ids[0]]
    warnings = _state(engine)["details"]["warnings"]
    assert len(warnings) == 1 and "sys_audit is not readable (HTTP 403)" in warnings[0]
    assert _state(engine)["details"]["history"] == "snapshots"
    import app.cli
    from app.warehouse import make_engine

    # in-process: keep the CLI's logging set-up off this process, and close its engine
    monkeypatch.setattr(app.cli, "configure_logging", lambda *_a: None)
    opened: list[Engine] = []

    def tracked(url: str) -> Engine:
        opened.append(make_engine(url))
        return opened[-1]

    monkeypatch.setattr(app.cli, "make_engine", tracked)
    config = tmp_path / "ticketflow.toml"
    config.write_text(
        f'[warehouse]\nurl = "{engine.url.render_as_string(hide_password=False)}"\n\n'
        f'[[sources]]\nname = "sn"\nkind = "servicenow"\nbase_url = "https://sn.example"\n'
    )
    shown = CliRunner().invoke(app.cli.app, ["-c", str(config), "sources"])
    for opened_engine in opened:
        opened_engine.dispose()
    assert shown.exit_code == 0, shown.output
    assert "warning: sn: sys_audit is not readable (HTTP 403)" in " ".join(shown.output.split())


@pytest.mark.parametrize("auth", ["basic", "oauth"])
def test_bad_credentials_stop_the_source_naming_what_to_check(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, auth: str
) -> None:
    extra: dict[str, Any] = {}
    if auth == "oauth":
        extra = {"auth": "oauth", "client_id": "ticketflow", "client_secret_env": "SN_SECRET"}
        monkeypatch.setenv("SN_SECRET", "client-Secret-9")
    bad = Instance(
        "bad", fake={"client_id": "ticketflow", "client_secret": "client-Secret-9"}, **extra
    )
    good = Instance("good")
    for i in (bad, good):
        monkeypatch.setenv(i.password_env, i.fake.password)
        i.fake.add_record()
    monkeypatch.setenv(bad.password_env, "expired-password")
    settings = Settings(sources=[bad.config, good.config])
    factories = {"bad": bad.client, "good": good.client}
    results = sync_sources(
        settings,
        engine=engine,
        client_factory=lambda c: factories[c.name](c),
        sleep=lambda _s: None,
    )
    by_name = {r.source: r for r in results}
    assert by_name["good"].status == "ok"
    message = by_name["bad"].message or ""
    assert by_name["bad"].status == "error"
    assert message.startswith("source `bad`: ")
    if auth == "basic":
        assert "HTTP 401" in message and "'integration.user'" in message
        assert bad.password_env in message
    else:
        assert "OAuth token request" in message and "client_id" in message
    assert "expired-password" not in message
    assert len([r for r in bad.fake.requests if r.status == 401]) == 1  # not retried


def test_oauth_sync_renews_an_expired_token(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sn = Instance(
        fake={"client_id": "ticketflow", "client_secret": "client-Secret-9"},
        auth="oauth",
        client_id="ticketflow",
        client_secret_env="SN_SECRET",
    )
    monkeypatch.setenv(sn.password_env, sn.fake.password)
    monkeypatch.setenv("SN_SECRET", "client-Secret-9")
    for _ in range(25):
        sn.fake.add_record()
    lists: list[int] = []

    def expire(request: httpx.Request) -> None:
        if request.url.path == LIST:
            lists.append(1)
            if len(lists) == 2:
                sn.fake.expire_tokens()

    sn.fake.on_request = expire
    result = _sync(engine, sn)
    assert result.status == "ok", result.message
    grants = [r for r in sn.fake.requests if r.path == "/oauth_token.do"]
    assert len(grants) == 2  # the password grant, then one refresh
    assert len(_tickets(engine)) == 25


def test_server_errors_are_retried_and_rate_limits_waited_out(engine: Engine, sn: Instance) -> None:
    for _ in range(25):
        sn.fake.add_record()
    sn.fake.fail_next(500, path=LIST, skip=1)
    sn.fake.fail_next(503, path=AUDIT)
    sn.fake.rate_limit_next(3, path=LIST)
    sleeps: list[float] = []
    result = _sync(engine, sn, sleeps=sleeps)
    assert result.status == "ok", result.message
    assert result.retries == 3
    assert any(3.0 <= s <= 3.5 for s in sleeps)
    _assert_warehouse_matches(engine, sn)


@pytest.mark.parametrize("headers", ["remaining", "limit-only"])
def test_pacing_keeps_the_sync_under_the_rate_limit(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, headers: str
) -> None:
    sn = Instance(fake={"rate_limit": 6, "rate_window_seconds": 60})
    monkeypatch.setenv(sn.password_env, sn.fake.password)
    for _ in range(45):
        sn.fake.add_record()
    clock = [time.time()]
    sn.fake.wall = lambda: clock[0]
    monkeypatch.setattr(sn_client, "_wall", lambda: clock[0])
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    def answer(request: httpx.Request) -> httpx.Response:
        response = sn.fake(request)
        if headers == "limit-only":  # as documented: Limit, Reset and Rule only
            del response.headers["X-RateLimit-Remaining"]
        return response

    def client(config: HttpSourceConfig) -> httpx.Client:
        assert isinstance(config, ServiceNowSourceConfig)
        return make_servicenow_client(config, transport=httpx.MockTransport(answer))

    result = sync_source(engine, sn.config, client_factory=client, sleep=sleep)
    assert result.status == "ok", result.message
    assert [r for r in sn.fake.requests if r.status == 429] == []
    assert len(sn.fake.requests) > 12  # more than two windows' worth
    assert sleeps and all(0 < s <= 62 for s in sleeps)
    assert _state(engine)["details"]["paced_seconds"] == pytest.approx(sum(sleeps), abs=0.01)


@pytest.mark.parametrize("knob", ["invalid_json", "html"])
def test_a_malformed_page_stops_the_source_without_moving_its_cursor(
    engine: Engine, sn: Instance, knob: str
) -> None:
    start = sn.fake.now
    for i in range(35):
        sn.fake.add_record(at=start + timedelta(hours=i))
    arm = sn.fake.invalid_json_next if knob == "invalid_json" else sn.fake.html_error_next
    arm(path=LIST, skip=2)
    failed = _sync(engine, sn)
    assert failed.status == "error"
    assert LIST in (failed.message or "")
    assert ("HTML" if knob == "html" else "invalid JSON") in (failed.message or "")
    state = _state(engine)
    stored = _tickets(engine)
    assert len(stored) == 20 and state["last_status"] == "error"
    assert parse_cursor(state["cursor"]) == max(stored["updated_at"])
    assert _sync(engine, sn).status == "ok"
    _assert_warehouse_matches(engine, sn)
    _chains_are_consistent(engine)


def test_records_changed_during_a_sync_are_not_lost(engine: Engine, sn: Instance) -> None:
    sn.fake.generate(60, audit_rows=500, seed=9)
    ids = sorted(sn.records(), key=lambda i: (sn.records()[i]["sys_updated_on"], i))
    group = sn.fake.add_group("Night shift")
    done: list[bool] = []

    def during(request: httpx.Request) -> None:
        if request.url.path == LIST and not done and len(sn.fake.table_requests()) == 3:
            done.append(True)
            for sys_id in (ids[2], ids[30], ids[-1]):  # read already, not yet, the last
                sn.fake.modify(sys_id, assignment_group=group, state="2")
            sn.fake.add_record(assignment_group=group)

    sn.fake.on_request = during
    assert _sync(engine, sn).status == "ok"
    sn.fake.on_request = None
    assert done
    _assert_warehouse_matches(engine, sn)  # every change read by the same sync (keyset paging)
    _chains_are_consistent(engine)
    assert _sync(engine, sn).tickets.updated == 0


# --- time zones -----------------------------------------------------------------------------


@pytest.fixture
def amsterdam(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's local time zone set to Europe/Amsterdam (CET/CEST)."""
    monkeypatch.setenv("TZ", "Europe/Amsterdam")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_local_time_zone_across_a_dst_change_shifts_nothing(
    engine: Engine, sn: Instance, amsterdam: None
) -> None:
    assert time.strftime("%Z", time.localtime(1711846800)) == "CEST"  # the zone is in force
    # 2024-03-31: Amsterdam goes from 02:00 CET to 03:00 CEST at 01:00 UTC
    fake = sn.fake
    instants = [
        datetime(2024, 3, 31, 0, 30, tzinfo=UTC) + timedelta(minutes=20 * i) for i in range(6)
    ]
    ids = [fake.add_record(at=at)["sys_id"] for at in instants]
    assert _sync(engine, sn).status == "ok"
    tickets = _tickets(engine)
    for sys_id, at in zip(ids, instants, strict=True):
        assert tickets.loc[sys_id, "updated_at"] == pd.Timestamp(at)
        assert tickets.loc[sys_id, "created_at"] == pd.Timestamp(at)
    cursor = parse_cursor(_state(engine)["cursor"])
    assert cursor == instants[-1]  # 2024-03-31 02:10:00 UTC
    fake.modify(ids[2], state="2", at=datetime(2024, 3, 31, 2, 30, tzinfo=UTC))
    before = len(fake.requests)
    assert _sync(engine, sn).status == "ok"
    (listed,) = [r for r in fake.requests[before:] if r.path == LIST]
    # cursor minus the 120 s overlap, written in UTC
    assert listed.params["sysparm_query"].startswith("sys_updated_on>=2024-03-31 02:08:00^")
    (audit,) = [r for r in fake.requests[before:] if r.path == AUDIT]
    assert "sys_created_on>=2024-03-31 01:10:00" in audit.params["sysparm_query"]
    events = _events(engine).query("field == 'state' and new_value == 'in_progress'")
    assert events["occurred_at"].tolist() == [pd.Timestamp("2024-03-31 02:30:00", tz="UTC")]
    assert parse_cursor(_state(engine)["cursor"]) == datetime(2024, 3, 31, 2, 30, tzinfo=UTC)


# --- configuration variants ---------------------------------------------------------------


def test_raw_values_with_lookups_equal_display_values(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouses: list[pd.DataFrame] = []
    for mode in ("all", "false"):
        sn = Instance(f"sn{mode}", display_value=mode, page_size=25)
        monkeypatch.setenv(sn.password_env, sn.fake.password)
        sn.fake.generate(30, audit_rows=300, seed=11)
        result = sync_source(engine, sn.config, client_factory=sn.client, sleep=lambda _s: None)
        assert result.status == "ok", result.message
        events = _events(engine, sn.config.name)
        keep = ["ticket_id", "occurred_at", "field", "old_value", "new_value"]
        warehouses.append(events[keep].sort_values(keep[:3]).reset_index(drop=True).astype(str))
        tickets = _tickets(engine, sn.config.name)
        assert tickets["team"].notna().any()
    pd.testing.assert_frame_equal(warehouses[0], warehouses[1])


def test_several_tables_in_one_source(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    sn = Instance(tables=["incident", "problem", "sc_req_item"])
    monkeypatch.setenv(sn.password_env, sn.fake.password)
    incident = sn.fake.add_record("incident")["sys_id"]
    problem = sn.fake.add_record("problem")["sys_id"]
    sn.fake.modify(problem, table="problem", state="2")
    assert _sync(engine, sn).status == "ok"
    tickets = _tickets(engine)
    assert tickets.loc[incident, "type"] == "incident"
    assert tickets.loc[problem, "type"] == "problem"
    assert "problem.do?sys_id=" in tickets.loc[problem, "url"]
    assert len(_events(engine).query(f"ticket_id == '{problem}' and field == 'status'")) == 2
    cursor = parse_cursor(_state(engine)["cursor"])
    assert cursor is not None
    sn.fake.advance(timedelta(minutes=30))
    item = sn.fake.add_record("sc_req_item")["sys_id"]
    assert _sync(engine, sn).status == "ok"
    assert _tickets(engine).loc[item, "type"] == "request"


def test_a_user_time_zone_other_than_utc_is_written_into_the_literals_and_reported(
    engine: Engine, sn: Instance, amsterdam: None
) -> None:
    fake = sn.fake
    fake.user_timezone = "America/New_York"  # the instance reads query literals in it
    users = fake.tables["sys_user"]
    users.update(fake.user_id(fake.username), {"time_zone": "America/New_York"})
    # 2024-03-10: New York goes from EST to EDT at 07:00 UTC
    start = datetime(2024, 3, 10, 6, 30, tzinfo=UTC)
    ids = [fake.add_record(at=start + timedelta(minutes=20 * i))["sys_id"] for i in range(6)]
    assert _sync(engine, sn).status == "ok"
    # changes just after the cursor (08:10 UTC): a literal read 4 hours late would miss them
    fake.modify(ids[1], state="2", at=datetime(2024, 3, 10, 8, 11, tzinfo=UTC))
    fake.modify(ids[4], state="2", at=datetime(2024, 3, 10, 8, 12, tzinfo=UTC))
    before = len(fake.requests)
    assert _sync(engine, sn).status == "ok"
    (listed,) = [r for r in fake.requests[before:] if r.path == LIST]
    # the cursor less the overlap, 08:08 UTC, is 04:08 EDT
    assert listed.params["sysparm_query"].startswith("sys_updated_on>=2024-03-10 04:08:00^")
    tickets = _tickets(engine)
    assert set(tickets.loc[[ids[1], ids[4]], "state"]) == {"in_progress"}
    _assert_warehouse_matches(engine, sn)
    _chains_are_consistent(engine)
    warnings = _state(engine)["details"]["warnings"]
    assert any("time zone is America/New_York, not UTC" in w for w in warnings)
