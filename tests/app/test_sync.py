"""``app.sync`` against the fake TOPdesk, on SQLite and PostgreSQL.

History, incremental pulls, concurrent changes, and every fault knob: 5xx and timeouts are
retried with backoff, 429 waits for Retry-After, 401/403 stop the source with an error that
says what to check, a malformed page stops the source without moving its cursor past the last
stored page, other sources carry on, and no log line carries a credential.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pandas as pd
import pytest
from sqlalchemy import Engine

from app.logs import JsonFormatter
from app.settings import Settings
from app.sync import SourceResult, parse_cursor, sync_source, sync_sources
from app.warehouse import (
    insert_events,
    read_events_frame,
    read_sync_states,
    read_tickets_frame,
    read_unknown_statuses,
    save_sync_state,
    upsert_tickets,
)
from connectors.base import EventField, LifecycleState, TicketRecord, tickets_frame
from connectors.config import HttpSourceConfig, TopdeskSourceConfig
from connectors.http import make_client
from connectors.topdesk import API_PATH
from tests.fakes.topdesk import GROUPS, OPERATORS, STATUSES, FakeTopdesk, Recorded

PASSWORD_ENV = "TD_SYNC_TEST_PASSWORD"
LIST = f"{API_PATH}/incidents"


class Desk:
    """A fake TOPdesk plus the source config and client factory that reach it."""

    def __init__(self, name: str = "td", *, page_size: int = 10, **config: Any) -> None:
        self.fake = FakeTopdesk(password=f"app-pass-{name}-Zx81")
        self.password_env = f"{PASSWORD_ENV}_{name.upper()}"
        self.config = TopdeskSourceConfig.model_validate(
            {
                "name": name,
                "kind": "topdesk",
                "base_url": f"https://{name}.example",
                "username": self.fake.username,
                "password_env": self.password_env,
                "page_size": page_size,
                "max_attempts": 4,
                "backoff_seconds": 0.5,
                "timeout_seconds": 0.2,
            }
            | config
        )

    def client(self, config: HttpSourceConfig) -> httpx.Client:
        return make_client(config, transport=httpx.MockTransport(self.fake), base_path=API_PATH)

    def lists(self) -> list[Recorded]:
        return self.fake.list_requests()


@pytest.fixture
def desk(monkeypatch: pytest.MonkeyPatch) -> Desk:
    desk = Desk()
    monkeypatch.setenv(desk.password_env, desk.fake.password)
    return desk


def _sync(
    engine: Engine, desk: Desk, *, full: bool = False, sleeps: list[float] | None = None
) -> SourceResult:
    sleep: Callable[[float], None] = (sleeps if sleeps is not None else []).append
    return sync_source(engine, desk.config, full=full, client_factory=desk.client, sleep=sleep)


def _tickets(engine: Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return read_tickets_frame(conn, source="td").set_index("external_id")


def _events(engine: Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return read_events_frame(conn, source="td")


def _state(engine: Engine, source: str = "td") -> dict[str, Any]:
    with engine.connect() as conn:
        return next(s for s in read_sync_states(conn) if s["source"] == source)


def _at(incident: dict[str, Any]) -> pd.Timestamp:
    return pd.Timestamp(incident["modificationDate"]).tz_convert("UTC")


def _assert_warehouse_matches(engine: Engine, fake: FakeTopdesk) -> None:
    tickets = _tickets(engine)
    assert sorted(tickets.index) == sorted(fake.incidents)
    for incident_id, incident in fake.incidents.items():
        row = tickets.loc[incident_id]
        assert row["updated_at"] == _at(incident), incident_id
        assert row["raw_status"] == incident["processingStatus"]["name"]
        team = incident["operatorGroup"]["name"] if incident["operatorGroup"] else None
        assert (row["team"] if pd.notna(row["team"]) else None) == team


def test_first_sync_loads_every_incident_with_a_baseline(engine: Engine, desk: Desk) -> None:
    for i in range(35):
        desk.fake.add_incident(briefDescription=f"incident {i}", operatorGroup=GROUPS["Network"])
    result = _sync(engine, desk)
    assert result.status == "ok", result.message
    assert (result.pages, result.incidents, result.tickets.inserted) == (4, 35, 35)
    _assert_warehouse_matches(engine, desk.fake)
    events = _events(engine)
    assert len(events) == 35 * 4  # status, state, team, priority
    assert set(events["origin"]) == {"snapshot"}
    assert events["old_value"].isna().all()
    state = _state(engine)
    newest = max(_at(i) for i in desk.fake.incidents.values())
    assert parse_cursor(state["cursor"]) == newest
    assert (state["last_status"], state["tickets_seen"]) == ("ok", 35)
    assert state["details"]["state"] == "done"
    assert state["details"]["paging"] == "pageStart"


def test_a_rerun_without_changes_writes_nothing(engine: Engine, desk: Desk) -> None:
    for _ in range(25):
        desk.fake.add_incident()
    _sync(engine, desk)
    before = len(desk.lists())
    again = _sync(engine, desk)
    assert again.status == "ok"
    assert (again.tickets.inserted, again.tickets.updated, again.events_inserted) == (0, 0, 0)
    assert len(desk.lists()) - before <= 3  # the overlap window re-reads the last 2 minutes


def test_incremental_sync_fetches_only_changed_incidents(engine: Engine, desk: Desk) -> None:
    start = desk.fake.clock
    ids = [desk.fake.add_incident(at=start + timedelta(hours=i))["id"] for i in range(40)]
    _sync(engine, desk)
    desk.fake.advance(timedelta(hours=1))
    changed = [ids[3], ids[20], ids[21]]
    for incident_id in changed:
        desk.fake.modify(incident_id, operatorGroup=GROUPS["Workplace"])
    before = len(desk.lists())
    result = _sync(engine, desk)
    assert result.status == "ok"
    # the 3 changed ones, plus the newest of the first sync: it sits at the old cursor, inside
    # the overlap window, and is deduplicated (unchanged, no event)
    assert (result.tickets.inserted, result.tickets.updated, result.tickets.unchanged) == (0, 3, 1)
    assert result.incidents == 4
    new_lists = desk.lists()[before:]
    assert len(new_lists) == 1
    assert new_lists[0].params["query"].startswith("modificationDate=ge=")
    _assert_warehouse_matches(engine, desk.fake)
    team_events = _events(engine).query("field == 'team' and new_value == 'Workplace'")
    assert sorted(team_events["ticket_id"]) == sorted(changed)


def test_scripted_history_yields_exactly_those_events(engine: Engine, desk: Desk) -> None:
    t = [datetime(2024, 3, 4, 8, 0, tzinfo=UTC) + timedelta(minutes=m) for m in range(6)]
    team_a, team_b = GROUPS["Network"], GROUPS["Workplace"]
    incident = desk.fake.add_incident(at=t[0], briefDescription="VPN down")
    incident_id = incident["id"]
    steps: list[dict[str, Any]] = [
        {"processingStatus": STATUSES["In progress"], "operatorGroup": team_a},
        {"operatorGroup": team_b},
        {"operatorGroup": team_a},
        {"processingStatus": STATUSES["Waiting for user"], "onHold": True},
        {"processingStatus": STATUSES["Completed"], "onHold": False, "completed": True},
    ]
    assert _sync(engine, desk).status == "ok"
    for when, change in zip(t[1:], steps, strict=True):
        desk.fake.modify(incident_id, at=when, **change)
        assert _sync(engine, desk).status == "ok"
    events = _events(engine)
    got = [
        (
            row["occurred_at"].to_pydatetime(),
            row["field"],
            None if pd.isna(row["old_value"]) else row["old_value"],
            row["new_value"],
        )
        for row in events.to_dict("records")
    ]
    S = LifecycleState
    expected = [
        (t[0], "status", None, "Logged"),
        (t[0], "state", None, S.NEW),
        (t[0], "priority", None, "P3"),
        (t[1], "status", "Logged", "In progress"),
        (t[1], "state", S.NEW, S.IN_PROGRESS),
        (t[1], "team", None, "Network"),
        (t[2], "team", "Network", "Workplace"),
        (t[3], "team", "Workplace", "Network"),
        (t[4], "status", "In progress", "Waiting for user"),
        (t[4], "state", S.IN_PROGRESS, S.WAITING_CUSTOMER),
        (t[5], "status", "Waiting for user", "Completed"),
        (t[5], "state", S.WAITING_CUSTOMER, S.RESOLVED),
    ]
    assert [(w, f, o, n) for w, f, o, n in got] == [
        (w, f, None if o is None else str(o), str(n)) for w, f, o, n in expected
    ]
    assert set(events["actor"].dropna()) == {"API operator"}
    ticket = _tickets(engine).loc[incident_id]
    assert ticket["state"] == "resolved"
    assert ticket["resolved_at"] is pd.NaT or pd.isna(ticket["resolved_at"])


def test_an_incident_changed_during_a_sync_is_stored_by_the_next(
    engine: Engine, desk: Desk
) -> None:
    ids = [desk.fake.add_incident()["id"] for _ in range(50)]
    changed: list[str] = []

    def during(_number: int, request: Recorded) -> None:
        if request.path == LIST and len(desk.lists()) == 3 and not changed:
            desk.fake.modify(ids[0], operatorGroup=GROUPS["Applications"])  # already stored
            desk.fake.modify(ids[45], processingStatus=STATUSES["In progress"])  # not yet
            changed.extend([ids[0], ids[45]])

    desk.fake.on_request = during
    first = _sync(engine, desk)
    desk.fake.on_request = None
    assert first.status == "ok" and changed
    tickets = _tickets(engine)
    stored_now = all(tickets.loc[i, "updated_at"] == _at(desk.fake.incidents[i]) for i in changed)
    if not stored_now:
        assert _sync(engine, desk).status == "ok"
    _assert_warehouse_matches(engine, desk.fake)


def test_server_errors_are_retried_with_backoff(engine: Engine, desk: Desk) -> None:
    for _ in range(25):
        desk.fake.add_incident()
    desk.fake.fail_next(500, path=LIST, skip=1)
    desk.fake.fail_next(503, path=LIST)
    sleeps: list[float] = []
    result = _sync(engine, desk, sleeps=sleeps)
    assert result.status == "ok", result.message
    assert result.retries == 2
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0
    _assert_warehouse_matches(engine, desk.fake)


def test_retries_exhausted_stop_the_source_keeping_committed_pages(
    engine: Engine, desk: Desk
) -> None:
    for _ in range(25):
        desk.fake.add_incident()
    desk.fake.fail_next(500, path=LIST, skip=1, times=4)
    result = _sync(engine, desk)
    assert result.status == "error"
    assert "HTTP 500" in (result.message or "")
    assert len(_tickets(engine)) == 10  # page 1 was stored
    assert (result.pages, result.incidents, result.tickets.inserted) == (1, 10, 10)
    state = _state(engine)
    assert state["last_status"] == "error"
    assert parse_cursor(state["cursor"]) == max(_tickets(engine)["updated_at"])
    assert _sync(engine, desk).status == "ok"
    _assert_warehouse_matches(engine, desk.fake)


def test_rate_limit_waits_for_retry_after(engine: Engine, desk: Desk) -> None:
    desk.fake.add_incident()
    desk.fake.rate_limit_next("3", path=LIST)
    sleeps: list[float] = []
    result = _sync(engine, desk, sleeps=sleeps)
    assert result.status == "ok"
    assert len(sleeps) == 1 and 3.0 <= sleeps[0] <= 3.5


def test_slow_responses_time_out_and_are_retried(engine: Engine, desk: Desk) -> None:
    for _ in range(15):
        desk.fake.add_incident()
    desk.fake.slow_next(5.0, path=LIST, skip=1, times=2)  # beyond the 0.2 s timeout
    sleeps: list[float] = []
    result = _sync(engine, desk, sleeps=sleeps)
    assert result.status == "ok", result.message
    assert result.retries == 2
    _assert_warehouse_matches(engine, desk.fake)


@pytest.mark.parametrize("knob", ["invalid_json", "html"])
def test_a_malformed_page_stops_the_source_without_moving_its_cursor(
    engine: Engine, desk: Desk, knob: str
) -> None:
    start = desk.fake.clock
    for i in range(35):
        desk.fake.add_incident(at=start + timedelta(hours=i))
    arm = desk.fake.invalid_json_next if knob == "invalid_json" else desk.fake.html_error_next
    arm(path=LIST)
    first = _sync(engine, desk)
    assert first.status == "error"
    assert "/tas/api/incidents" in (first.message or "")
    assert ("HTML" if knob == "html" else "invalid JSON") in (first.message or "")
    assert _state(engine)["cursor"] is None
    assert _tickets(engine).empty
    assert _sync(engine, desk).status == "ok"
    cursor = _state(engine)["cursor"]
    desk.fake.advance(timedelta(hours=1))
    for incident_id in list(desk.fake.incidents)[:25]:
        desk.fake.modify(incident_id, operatorGroup=GROUPS["Network"])
    arm(path=LIST, skip=2)  # pages 1 and 2 of the next sync are fine, page 3 is not
    failed = _sync(engine, desk)
    assert failed.status == "error"
    state = _state(engine)
    assert state["last_status"] == "error"
    stored = _tickets(engine)
    cursor_now = parse_cursor(state["cursor"])
    assert cursor_now is not None and cursor_now >= parse_cursor(cursor)  # type: ignore[operator]
    assert cursor_now == max(stored["updated_at"])
    done = stored["team"] == "Network"
    # page 1: the newest incident of the first sync (the overlap) and 9 changed ones;
    # page 2: the anchor again and 9 more
    assert done.sum() == 18
    assert _sync(engine, desk).status == "ok"
    _assert_warehouse_matches(engine, desk.fake)


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (401, ["username", "'api-operator'", "application password", "TD_SYNC_TEST_PASSWORD_BAD"]),
        (403, ["permission", "REST API"]),
    ],
    ids=["401", "403"],
)
def test_auth_failures_stop_that_source_and_others_carry_on(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, status: int, words: list[str]
) -> None:
    bad, good = Desk("bad"), Desk("good")
    for d in (bad, good):
        monkeypatch.setenv(d.password_env, d.fake.password)
        d.fake.add_incident()
    if status == 401:
        bad.fake.password = "expired"
    else:
        bad.fake.fail_next(403, times=10)
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
    failed = by_name["bad"]
    assert failed.status == "error"
    message = failed.message or ""
    assert message.startswith("source `bad`: ")
    assert f"HTTP {status}" in message
    for word in words:
        assert word in message
    assert len([r for r in bad.fake.requests if r.status == status]) == 1  # not retried
    with engine.connect() as conn:
        states = {s["source"]: s for s in read_sync_states(conn)}
    assert states["bad"]["last_status"] == "error"
    assert states["bad"]["last_error"] == message
    assert states["good"]["last_status"] == "ok"


def test_no_log_line_or_stored_error_holds_a_credential(
    engine: Engine, desk: Desk, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = desk.fake.password
    token = base64.b64encode(f"{desk.fake.username}:{secret}".encode()).decode()
    for _ in range(15):
        desk.fake.add_incident()
    desk.fake.fail_next(500, path=LIST)
    desk.fake.rate_limit_next("1", path=LIST)
    desk.fake.slow_next(5.0, path=LIST)
    assert _sync(engine, desk).status == "ok"
    desk.fake.html_error_next(path=LIST)
    assert _sync(engine, desk, full=True).status == "error"
    monkeypatch.setenv(desk.password_env, "wrong-" + secret)
    assert _sync(engine, desk).status == "error"
    assert caplog.records
    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in caplog.records] + [r.getMessage() for r in caplog.records]
    with engine.connect() as conn:
        lines += [str(s) for s in read_sync_states(conn)]
    for line in lines:
        assert secret not in line
        assert token not in line
        assert "Authorization" not in line


def test_customer_visible_actions_become_events(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk = Desk(actions=True)
    monkeypatch.setenv(desk.password_env, desk.fake.password)
    incident_id = desk.fake.add_incident()["id"]
    quiet = desk.fake.add_incident()["id"]
    desk.fake.add_action(incident_id, visible=True)
    desk.fake.add_action(incident_id, visible=False)
    assert _sync(engine, desk).status == "ok"
    desk.fake.add_action(incident_id, visible=True, by_caller=True)
    assert _sync(engine, desk).status == "ok"
    events = _events(engine)
    updates = events[events["field"].isin(["customer_update", "internal_update"])]
    assert sorted(zip(updates["field"], updates["new_value"], strict=True)) == [
        ("customer_update", "caller action"),
        ("customer_update", "operator action"),
        ("internal_update", "operator action"),
    ]
    assert set(updates["ticket_id"]) == {incident_id}
    action_calls = [r for r in desk.fake.requests if r.path.endswith("/actions")]
    assert {r.path.split("/")[-2] for r in action_calls} == {incident_id, quiet}
    assert len(action_calls) == 3  # both incidents once, then only the changed one


def test_unknown_statuses_are_recorded(engine: Engine, desk: Desk) -> None:
    desk.fake.add_incident(processingStatus={"id": "x", "name": "Triage"})
    assert _sync(engine, desk).status == "ok"
    with engine.connect() as conn:
        unknown = read_unknown_statuses(conn, source="td")
    assert [(u["raw_status"], u["last_count"]) for u in unknown] == [("Triage", 1)]
    assert _tickets(engine)["state"].tolist() == ["new"]


def test_partial_and_archived_incidents_follow_the_config(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases: list[tuple[dict[str, Any], int]] = [
        ({}, 1),
        ({"partials": True}, 2),
        ({"archived": True}, 2),
    ]
    for config, expected in cases:
        desk = Desk(**config)
        monkeypatch.setenv(desk.password_env, desk.fake.password)
        desk.fake.add_incident()
        desk.fake.add_incident(status="partial")
        desk.fake.add_incident(archivingReason={"id": "a", "name": "Outdated"})
        result = _sync(engine, desk)
        assert result.status == "ok"
        assert result.tickets.inserted == expected, config
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM tickets")
            conn.exec_driver_sql("DELETE FROM sync_state")


def test_full_sync_rereads_everything_and_resumes_after_interruption(
    engine: Engine, desk: Desk
) -> None:
    start = desk.fake.clock
    for i in range(25):
        desk.fake.add_incident(at=start + timedelta(hours=i))
    _sync(engine, desk)
    cursor = _state(engine)["cursor"]
    desk.fake.html_error_next(path=LIST, skip=1)
    interrupted = _sync(engine, desk, full=True)
    assert interrupted.status == "error"
    resumed_from = _state(engine)["cursor"]
    assert parse_cursor(resumed_from) < parse_cursor(cursor)  # type: ignore[operator]
    before = len(desk.lists())
    done = _sync(engine, desk)
    assert done.status == "ok"
    assert len(desk.lists()) - before == 2  # continues the scan instead of starting over
    assert _state(engine)["cursor"] == cursor


def test_legacy_servers_sync_the_same(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    desk = Desk()
    desk.fake.version = "3.2.0"
    monkeypatch.setenv(desk.password_env, desk.fake.password)
    start = desk.fake.clock
    ids = [desk.fake.add_incident(at=start + timedelta(hours=i))["id"] for i in range(30)]
    assert _sync(engine, desk).status == "ok"
    desk.fake.advance(timedelta(days=2))
    desk.fake.modify(ids[5], operatorGroup=GROUPS["Network"])
    result = _sync(engine, desk)
    assert (result.status, result.tickets.updated) == ("ok", 1)
    assert _state(engine)["details"]["paging"] == "legacy"
    assert "start" in desk.lists()[-1].params
    _assert_warehouse_matches(engine, desk.fake)


def test_older_snapshots_never_overwrite_newer_ones(engine: Engine, desk: Desk) -> None:
    incident = desk.fake.add_incident(operatorGroup=GROUPS["Network"])
    newer = _at(incident) + timedelta(hours=1)
    record = TicketRecord(
        source="td",
        external_id=incident["id"],
        state=LifecycleState.IN_PROGRESS,
        raw_status="In progress",
        created_at=newer,
        updated_at=newer,
        team="Applications",
    )
    with engine.begin() as conn:
        upsert_tickets(conn, tickets_frame([record]), now=newer)
        insert_events(conn, pd.DataFrame(columns=list(_events(engine).columns)), now=newer)
    result = _sync(engine, desk)
    assert (result.status, result.stale) == ("ok", 1)
    assert _tickets(engine).loc[incident["id"], "team"] == "Applications"
    assert _events(engine).empty


def test_unreadable_cursor_refuses_to_run_and_future_cursor_warns(
    engine: Engine, desk: Desk, caplog: pytest.LogCaptureFixture
) -> None:
    desk.fake.add_incident()
    now = datetime.now(UTC)
    with engine.begin() as conn:
        save_sync_state(conn, source="td", kind="topdesk", now=now, cursor="page 7")
    broken = _sync(engine, desk)
    assert broken.status == "error"
    assert "--full" in (broken.message or "")
    assert not desk.lists()
    with engine.begin() as conn:
        save_sync_state(
            conn, source="td", kind="topdesk", now=now, cursor="2999-01-01T00:00:00+00:00"
        )
    with caplog.at_level(logging.WARNING):
        future = _sync(engine, desk)
    assert (future.status, future.tickets.inserted) == ("ok", 0)
    assert any("in the future" in r.getMessage() for r in caplog.records)


def test_two_syncs_of_one_source_never_run_together(engine: Engine, desk: Desk) -> None:
    desk.fake.add_incident()
    inner: list[SourceResult] = []
    started: list[bool] = []

    def nested(_number: int, request: Recorded) -> None:
        if request.path == LIST and not started:
            started.append(True)
            inner.append(
                sync_source(engine, desk.config, client_factory=desk.client, lock_wait=0.3)
            )

    desk.fake.on_request = nested
    outer = _sync(engine, desk)
    assert outer.status == "ok"
    assert inner[0].status == "error"
    assert "another sync of this source is still running after 0.3 s" in (inner[0].message or "")


def test_disabled_sources_are_skipped_and_event_logs_refused(engine: Engine) -> None:
    settings = Settings(
        sources=[
            {
                "name": "sn",
                "kind": "servicenow",
                "base_url": "https://sn.example",
                "enabled": False,
            },
            {"name": "log", "kind": "eventlog"},
            {"name": "off", "kind": "topdesk", "base_url": "https://x.example", "enabled": False},
        ]
    )
    results = sync_sources(settings, engine=engine)
    assert [(r.source, r.status) for r in results] == [("sn", "skipped"), ("off", "skipped")]
    from app.errors import ConfigError

    with pytest.raises(ConfigError, match="import-log"):
        sync_sources(settings, source="log", engine=engine)
    with pytest.raises(ConfigError, match="not configured"):
        sync_sources(settings, source="nope", engine=engine)


def test_event_fields_cover_the_tracked_attributes(engine: Engine, desk: Desk) -> None:
    incident = desk.fake.add_incident()
    _sync(engine, desk)
    desk.fake.modify(
        incident["id"],
        operator=OPERATORS["Bram Jansen"],
        operatorGroup=GROUPS["Network"],
        priority={"id": "p1", "name": "P1"},
        processingStatus=STATUSES["In progress"],
    )
    _sync(engine, desk)
    changed = _events(engine).dropna(subset=["old_value"])
    assert set(changed["field"]) == {EventField.STATUS, EventField.STATE, EventField.PRIORITY}
    fresh = _events(engine).query("field in ['team', 'assignee']")
    assert set(zip(fresh["field"], fresh["new_value"], strict=True)) == {
        ("team", "Network"),
        ("assignee", "Bram Jansen"),
    }


def test_a_warehouse_failure_stops_the_sync_with_a_warehouse_error(
    engine: Engine, desk: Desk
) -> None:
    from app.errors import WarehouseError

    for _ in range(25):
        desk.fake.add_incident()

    def break_the_warehouse(_number: int, request: Recorded) -> None:
        if request.path == LIST and len(desk.lists()) == 2:
            with engine.begin() as conn:
                conn.exec_driver_sql("DROP TABLE events")

    desk.fake.on_request = break_the_warehouse
    settings = Settings(sources=[desk.config])
    with pytest.raises(WarehouseError, match=r"source `td`.*next sync continues"):
        sync_sources(settings, engine=engine, client_factory=desk.client)
    assert len(_tickets(engine)) == 10  # page 1 stays committed
    state = _state(engine)
    assert state["last_status"] == "error"
    assert (state["tickets_seen"], state["tickets_inserted"]) == (10, 10)  # not the failed page


def test_the_sync_lock_is_per_warehouse(
    engine: Engine, desk: Desk, warehouse_url: str, tmp_path: Any
) -> None:
    import uuid
    from urllib.parse import quote

    from sqlalchemy import create_engine, text

    from app.warehouse import make_engine

    desk.fake.add_incident()
    if engine.dialect.name == "postgresql":
        base = warehouse_url.split("?")[0]
        schema = f"tf_test_{uuid.uuid4().hex[:12]}"
        admin = create_engine(base)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        other_url = f"{base}?options={quote(f'-csearch_path={schema}')}"
    else:
        other_url = f"sqlite:///{tmp_path}/other.db"
    other = make_engine(other_url)
    inner: list[SourceResult] = []
    started: list[bool] = []

    def nested(_number: int, request: Recorded) -> None:
        if request.path == LIST and not started:
            started.append(True)
            inner.append(sync_source(other, desk.config, client_factory=desk.client, lock_wait=0))

    desk.fake.on_request = nested
    try:
        assert _sync(engine, desk).status == "ok"
        assert inner[0].status == "ok", inner[0].message
    finally:
        other.dispose()
        if engine.dialect.name == "postgresql":
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
