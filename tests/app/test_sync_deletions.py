"""Deleted tickets: a complete ``--full`` sync marks the stored tickets it no longer finds.

Against the fake TOPdesk (which, like TOPdesk, lists no deletions) and the fake ServiceNow, on
SQLite and PostgreSQL:
5 % deleted are all marked by one full sync; incremental syncs and interrupted full syncs mark
none; archived incidents are not deletions; a mass disappearance is refused; a ticket that comes
back is live again; reads leave deleted tickets and their events out.
"""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import Engine

from app.sync import SourceResult, sync_source
from app.warehouse import read_events_frame, read_sync_states, read_tickets_frame
from app.warehouse.stats import warehouse_totals
from tests.app.test_sync import Desk, _sync
from tests.app.test_sync_servicenow import Instance


@pytest.fixture
def desk(monkeypatch: pytest.MonkeyPatch) -> Desk:
    desk = Desk(page_size=10)
    monkeypatch.setenv(desk.password_env, desk.fake.password)
    return desk


def _live(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(read_tickets_frame(conn, source="td", raw=False)["external_id"])


def _deleted(engine: Engine) -> dict[str, pd.Timestamp]:
    with engine.connect() as conn:
        frame = read_tickets_frame(conn, source="td", raw=False, deleted=True)
    gone = frame[frame["deleted_at"].notna()]
    return dict(zip(gone["external_id"], gone["deleted_at"], strict=True))


def _loaded(engine: Engine, desk: Desk, n: int = 100) -> list[str]:
    desk.fake.generate(n, seed=7)
    first = _sync(engine, desk)
    assert first.status == "ok", first.message
    assert first.deleted == 0
    return sorted(desk.fake.incidents)


def test_a_full_sync_marks_every_deleted_ticket_and_reads_leave_them_out(
    engine: Engine, desk: Desk
) -> None:
    ids = _loaded(engine, desk)
    gone = ids[::20]  # 5 of 100
    for incident_id in gone:
        desk.fake.delete(incident_id)
    incremental = _sync(engine, desk)
    assert (incremental.status, incremental.deleted) == ("ok", 0)
    assert _deleted(engine) == {}  # an incremental sync cannot see a deletion

    full = _sync(engine, desk, full=True)
    assert (full.status, full.deleted, full.deletions_refused) == ("ok", 5, None)
    assert set(_deleted(engine)) == set(gone)
    assert _live(engine) == set(ids) - set(gone) == set(desk.fake.incidents)
    with engine.connect() as conn:
        events = read_events_frame(conn, source="td")
        every_event = read_events_frame(conn, source="td", deleted=True)
        state = next(s for s in read_sync_states(conn) if s["source"] == "td")
        totals = warehouse_totals(conn, source="td")["td"]
    assert not set(events["ticket_id"]) & set(gone)
    assert set(every_event["ticket_id"]) >= set(gone)  # kept, only left out
    assert state["details"]["deleted"] == 5
    assert (totals.tickets, totals.deleted) == (100, 5)

    again = _sync(engine, desk, full=True)
    assert (again.status, again.deleted) == ("ok", 0)  # already marked
    assert set(_deleted(engine)) == set(gone)


def test_an_interrupted_full_sync_marks_nothing(engine: Engine, desk: Desk) -> None:
    ids = _loaded(engine, desk)
    for incident_id in ids[:5]:
        desk.fake.delete(incident_id)
    desk.fake.fail_next(times=4, status=503, path="/tas/api/incidents", skip=3)  # 4 = max_attempts
    broken = _sync(engine, desk, full=True)
    assert broken.status == "error"
    assert broken.pages >= 1  # some pages were stored before it failed
    assert _deleted(engine) == {}
    assert _sync(engine, desk, full=True).deleted == 5


def test_archived_incidents_are_not_deletions(engine: Engine, desk: Desk) -> None:
    ids = _loaded(engine, desk, 30)
    desk.fake.modify(ids[0], archivingReason={"id": "r1", "name": "Old"})
    desk.fake.modify(ids[1], status="partial")
    full = _sync(engine, desk, full=True)
    assert (full.status, full.deleted) == ("ok", 0)
    assert _deleted(engine) == {}
    assert _live(engine) == set(ids)


def test_a_mass_disappearance_is_refused_until_allowed(
    engine: Engine, desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _loaded(engine, desk, 40)
    for incident_id in ids[:24]:  # 60 %: a lost permission or a wrong filter, more likely
        desk.fake.delete(incident_id)
    refused = _sync(engine, desk, full=True)
    assert (refused.status, refused.deleted) == ("ok", 0)
    assert refused.deletions_refused is not None
    assert "24 of 40" in refused.deletions_refused
    assert "max_delete_fraction" in refused.deletions_refused
    assert _deleted(engine) == {}
    monkeypatch.setattr(desk, "config", desk.config.model_copy(update={"max_delete_fraction": 1}))
    allowed = _sync(engine, desk, full=True)
    assert (allowed.deleted, allowed.deletions_refused) == (24, None)


def test_a_ticket_that_comes_back_is_live_again(engine: Engine, desk: Desk) -> None:
    ids = _loaded(engine, desk, 20)
    incident = desk.fake.incidents[ids[3]]
    desk.fake.delete(ids[3])
    assert _sync(engine, desk, full=True).deleted == 1
    marked_at = _deleted(engine)[ids[3]]
    assert ids[3] not in _live(engine)
    desk.fake.restore(incident)  # unchanged: the same modificationDate as stored
    back = _sync(engine, desk, full=True)
    assert (back.status, back.deleted) == ("ok", 0)
    assert _deleted(engine) == {}
    assert ids[3] in _live(engine)
    assert marked_at is not None


def test_a_full_servicenow_sync_marks_deleted_records(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sn = Instance()
    monkeypatch.setenv(sn.password_env, sn.fake.password)
    sn.fake.generate(60, seed=3)
    first = sync_source(engine, sn.config, client_factory=sn.client, sleep=lambda _: None)
    assert (first.status, first.tickets.inserted) == ("ok", 60), first.message
    gone = sorted(sn.records())[::20]  # 3 of 60
    for sys_id in gone:
        sn.fake.delete_record(sys_id)
    full = sync_source(engine, sn.config, full=True, client_factory=sn.client, sleep=lambda _: None)
    assert (full.status, full.deleted, full.deletions_refused) == ("ok", 3, None), full.message
    with engine.connect() as conn:
        frame = read_tickets_frame(conn, source="sn", raw=False, deleted=True)
    marked = set(frame.loc[frame["deleted_at"].notna(), "external_id"])
    assert marked == set(gone)
    assert set(frame.loc[frame["deleted_at"].isna(), "external_id"]) == set(sn.records())


def _sn(monkeypatch: pytest.MonkeyPatch, **fake: object) -> Instance:
    sn = Instance(fake=dict(fake))
    monkeypatch.setenv(sn.password_env, sn.fake.password)
    return sn


def _sn_sync(engine: Engine, sn: Instance, *, full: bool = False) -> SourceResult:
    return sync_source(engine, sn.config, full=full, client_factory=sn.client, sleep=lambda _: None)


def _sn_deleted(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        frame = read_tickets_frame(conn, source="sn", raw=False, deleted=True)
    return set(frame.loc[frame["deleted_at"].notna(), "external_id"])


def test_servicenow_deletions_are_marked_by_the_next_incremental_sync(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sn = _sn(monkeypatch)
    sn.fake.generate(30, seed=5)
    assert _sn_sync(engine, sn).status == "ok"
    gone = sorted(sn.records())[:3]
    for sys_id in gone:
        sn.fake.delete_record(sys_id)
    sn.fake.modify(sorted(sn.records())[5], short_description="still here, changed")
    result = _sn_sync(engine, sn)
    assert (result.status, result.deleted) == ("ok", 3), result.message
    assert _sn_deleted(engine) == set(gone)
    asked = [r for r in sn.fake.requests if r.path.endswith("/sys_audit_delete")]
    assert len(asked) == 1
    query = asked[0].params["sysparm_query"]
    assert query.startswith("tablenameINincident^sys_created_on>=")
    assert _sn_sync(engine, sn).deleted == 0  # already marked


def test_servicenow_without_read_access_to_deletions_finds_them_in_the_full_sync(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sn = _sn(monkeypatch, deletions_readable=False)
    sn.fake.generate(30, seed=6)
    assert _sn_sync(engine, sn).status == "ok"
    gone = sorted(sn.records())[-2:]
    for sys_id in gone:
        sn.fake.delete_record(sys_id)
    incremental = _sn_sync(engine, sn)
    assert (incremental.status, incremental.deleted) == ("ok", 0)
    with engine.connect() as conn:
        state = next(s for s in read_sync_states(conn) if s["source"] == "sn")
    assert any("sys_audit_delete is not readable" in w for w in state["details"]["warnings"])
    full = _sn_sync(engine, sn, full=True)
    assert (full.status, full.deleted) == ("ok", 2)
    assert _sn_deleted(engine) == set(gone)


def test_an_incident_restored_while_archived_is_not_deleted_any_more(
    engine: Engine, desk: Desk
) -> None:
    """Found by the state machine (test_sync_stateful.py): the full scan lists an archived
    incident without storing it, so the upsert that clears a mark never ran for it."""
    ids = _loaded(engine, desk, 6)
    archived = desk.fake.modify(ids[2], archivingReason={"id": "r1", "name": "Old"})
    desk.fake.delete(ids[2])
    assert _sync(engine, desk, full=True).deleted == 1
    assert set(_deleted(engine)) == {ids[2]}
    desk.fake.restore(archived)
    back = _sync(engine, desk, full=True)
    assert (back.status, back.deleted) == ("ok", 0)
    assert _deleted(engine) == {}
    assert ids[2] in _live(engine)
