"""A stateful property test of the sync engine against the fake TOPdesk, on SQLite and PostgreSQL.

A Hypothesis state machine (``SyncMachine``) interleaves changes in the fake desk (create,
with ties on one ``modificationDate``; modify status, team, operator; delete; restore a deleted
incident as it was; archive or turn into a partial) with syncs of the warehouse: incremental
and full, quiet, interrupted ("crashed") after some list pages or at one of the engine's
checkpoints inside or after a page's transaction, and with the desk changing while the sync
pages through. A crash is followed by nothing special: the next sync is the restart.

What must hold (the engine's promises in ``app/sync.py`` and docs/model.md, "Deleted tickets"):

- always: no duplicate ticket or event keys (the primary keys forbid them; counted anyway);
- after every run, finished or not: the cursor is never ahead of committed data: every listed
  incident (not archived, not a partial) changed before the cursor is stored, live, at its
  ``modificationDate`` (incidents restored with an old date are left out: no incremental sync
  can see them, which is why the full sync exists);
- after an incremental run: the cursor did not move back; when it finished, every listed
  incident is stored at its current version;
- after an interrupted full run: nothing was newly marked deleted;
- after a complete full run of a quiet desk, and after the final one in ``teardown``: the live
  tickets are exactly the listed incidents (same ``updated_at``, status and team) plus the
  archived/partial ones stored earlier (never marked deleted, even when they were marked before
  and restored while archived); the tickets marked deleted are exactly the stored ones the desk
  no longer has.

The machine's source allows any share of deletions (``max_delete_fraction = 1``) so the model
stays simple; ``test_the_deletion_guard_refuses_more_than_its_share`` covers the guard.

The default run is small (25 examples of up to 15 steps per backend, derandomized so CI is
reproducible). The nightly size is
``TICKETFLOW_STATEFUL_EXAMPLES=500 .venv/bin/python -m pytest tests/app/test_sync_stateful.py``.
"""

from __future__ import annotations

import copy
import os
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

import app.sync
from app.sync import FAULT_ENV, SourceResult, parse_cursor, sync_source
from app.warehouse import read_sync_states, read_tickets_frame
from tests.app.test_sync import LIST, Desk
from tests.fakes.topdesk import GROUPS, OPERATORS, STATUSES, Recorded

EXAMPLES = int(os.environ.get("TICKETFLOW_STATEFUL_EXAMPLES", "25"))
STEPS = 15
PAGE_SIZE = 3
"""small pages, so a few incidents already make several pages and ties straddle them"""
MAX_ATTEMPTS = 4
"""``Desk``'s ``max_attempts``: failing a list request this often ends the run"""
STAGES = ("tickets", "events", "cursor", "commit")
"""the engine's checkpoints (``app.sync._checkpoint``): three inside a page's transaction, one
after its commit"""
STEPS_MS = (0, 0, 1, 400, 1000, 90_000)
"""how far the desk's clock moves before a change; 0 is a tie with the latest change"""
STATUS_NAMES = sorted(STATUSES)
GROUP_NAMES = [None, *sorted(GROUPS)]
OPERATOR_NAMES = [None, *sorted(OPERATORS)]


class SimulatedKill(BaseException):
    """What the patched checkpoint raises instead of SIGKILL: the page's open transaction rolls
    back, exactly what a killed process leaves behind."""


def _raising_checkpoint(spec: tuple[str, int] | None, stage: str, page: int) -> None:
    if spec == (stage, page):
        raise SimulatedKill(f"{stage}:{page}")


def _incident_fields(status: str, group: str | None, operator: str | None) -> dict[str, Any]:
    """The incident fields for a status, team and operator, with consistent flags."""
    return {
        "processingStatus": STATUSES[status],
        "onHold": status.startswith("Waiting"),
        "completed": status in ("Completed", "Closed", "Cancelled"),
        "closed": status in ("Closed", "Cancelled"),
        "operatorGroup": GROUPS[group] if group else None,
        "operator": OPERATORS[operator] if group and operator else None,
    }


def _mod(incident: dict[str, Any]) -> pd.Timestamp:
    return pd.Timestamp(incident["modificationDate"]).tz_convert("UTC")


def _listed(incident: dict[str, Any]) -> bool:
    """What an incremental sync lists and stores: not archived, not a partial."""
    return incident.get("status") != "partial" and not incident.get("archivingReason")


def _clear_warehouse(engine: Engine) -> None:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE events, tickets, sync_state, unknown_statuses"))
        else:
            for table in ("events", "tickets", "sync_state", "unknown_statuses"):
                conn.execute(text(f"DELETE FROM {table}"))


def _stored(engine: Engine) -> pd.DataFrame:
    """Every stored ticket of the source, deleted ones too, indexed by external id."""
    with engine.connect() as conn:
        frame = read_tickets_frame(conn, source="td", raw=False, deleted=True)
    return frame.set_index("external_id")


def _deleted_ids(stored: pd.DataFrame) -> set[str]:
    return set(stored.index[stored["deleted_at"].notna()])


def _cursor(engine: Engine) -> datetime | None:
    with engine.connect() as conn:
        for state in read_sync_states(conn):
            if state["source"] == "td":
                return parse_cursor(state.get("cursor"))
    return None


def _text(value: Any) -> str | None:
    return None if value is None or pd.isna(value) else str(value)


class SyncMachine(RuleBasedStateMachine):
    """The fake desk and the warehouse, changed and synced in any order (module docstring)."""

    engine: Engine
    """set by the test: the backend's warehouse, emptied at the start of every example"""

    def __init__(self) -> None:
        super().__init__()
        _clear_warehouse(self.engine)
        self.desk = Desk(page_size=PAGE_SIZE, overlap_seconds=0, max_delete_fraction=1.0)
        self.fake = self.desk.fake
        self.gone: dict[str, dict[str, Any]] = {}
        """deleted incidents as they were, for ``restore``"""
        self.restored: set[str] = set()
        """incidents back with an old modificationDate and unchanged since: an incremental
        sync cannot see them"""
        self.log: list[str] = []
        """what happened, shown when a check fails"""

    # --- the desk ---------------------------------------------------------------------------

    def _at(self, step_ms: int) -> datetime:
        return self.fake.advance(timedelta(milliseconds=step_ms))

    def _pick(self, pick: int, *, listed_only: bool = False) -> str | None:
        ids = sorted(i for i, inc in self.fake.incidents.items() if _listed(inc) or not listed_only)
        return ids[pick % len(ids)] if ids else None

    @rule(
        count=st.integers(1, 4),
        step_ms=st.sampled_from(STEPS_MS),
        status=st.sampled_from(STATUS_NAMES),
        group=st.sampled_from(GROUP_NAMES),
        operator=st.sampled_from(OPERATOR_NAMES),
    )
    def create(
        self, count: int, step_ms: int, status: str, group: str | None, operator: str | None
    ) -> None:
        """``count`` new incidents, all at one ``modificationDate``."""
        at = self._at(step_ms)
        for _ in range(count):
            incident = self.fake.add_incident(at=at, **_incident_fields(status, group, operator))
            self.log.append(f"create {incident['id'][:8]} at {incident['modificationDate']}")

    @precondition(lambda self: bool(self.fake.incidents))
    @rule(
        pick=st.integers(0, 1000),
        step_ms=st.sampled_from(STEPS_MS),
        status=st.sampled_from(STATUS_NAMES),
        group=st.sampled_from(GROUP_NAMES),
        operator=st.sampled_from(OPERATOR_NAMES),
    )
    def modify(
        self, pick: int, step_ms: int, status: str, group: str | None, operator: str | None
    ) -> None:
        """A change to status, team and operator; with step 0 at the latest change's instant
        (a change always moves the incident's own ``modificationDate`` on, as in TOPdesk)."""
        incident_id = self._pick(pick)
        assert incident_id is not None
        at = self._at(step_ms)
        if _mod(self.fake.incidents[incident_id]) >= at:
            at = self._at(1)
        self._modify(incident_id, at, **_incident_fields(status, group, operator))

    def _modify(self, incident_id: str, at: datetime, **changes: Any) -> None:
        incident = self.fake.modify(incident_id, at=at, **changes)
        self.restored.discard(incident_id)
        self.log.append(f"modify {incident_id[:8]} at {incident['modificationDate']} {changes}")

    @precondition(lambda self: bool(self.fake.incidents))
    @rule(pick=st.integers(0, 1000))
    def delete(self, pick: int) -> None:
        incident_id = self._pick(pick)
        assert incident_id is not None
        self._delete(incident_id)

    def _delete(self, incident_id: str) -> None:
        self.gone[incident_id] = copy.deepcopy(self.fake.incidents[incident_id])
        self.fake.delete(incident_id)
        self.log.append(f"delete {incident_id[:8]}")

    @precondition(lambda self: bool(self.gone))
    @rule(pick=st.integers(0, 1000))
    def restore(self, pick: int) -> None:
        """A deleted incident back as it was, with its old ``modificationDate``."""
        ids = sorted(self.gone)
        incident_id = ids[pick % len(ids)]
        self.fake.restore(self.gone.pop(incident_id))
        self.restored.add(incident_id)
        self.log.append(f"restore {incident_id[:8]}")

    @precondition(lambda self: any(_listed(i) for i in self.fake.incidents.values()))
    @rule(pick=st.integers(0, 1000), partial=st.booleans())
    def hide(self, pick: int, partial: bool) -> None:
        """Archive an incident, or make it a partial: a full sync still lists it (``all=true``)
        but stores nothing, and it is not a deletion."""
        incident_id = self._pick(pick, listed_only=True)
        assert incident_id is not None
        change: dict[str, Any] = (
            {"status": "partial"} if partial else {"archivingReason": {"id": "r1", "name": "Old"}}
        )
        self._modify(incident_id, self._at(1000), **change)

    # --- syncs ------------------------------------------------------------------------------

    def _sync(self, *, full: bool) -> SourceResult:
        return sync_source(
            self.engine,
            self.desk.config,
            full=full,
            client_factory=self.desk.client,
            sleep=lambda _seconds: None,
        )

    def _checked_sync(
        self,
        *,
        full: bool,
        label: str,
        quiet: bool = True,
        stage: str | None = None,
    ) -> SourceResult | None:
        """Run one sync and check what must hold after it; None when it was "killed"."""
        before_cursor = _cursor(self.engine)
        before = _stored(self.engine)
        result: SourceResult | None = None
        try:
            result = self._sync(full=full)
        except SimulatedKill as e:
            self.log.append(f"{label}: killed at {e}")
        finally:
            self.fake.faults.clear()  # an unused fault must not hit the next sync
            self.fake.on_request = None
        if result is not None:
            self.log.append(
                f"{label}: {result.status} pages={result.pages} deleted={result.deleted} "
                f"cursor={result.cursor} {result.message or ''}"
            )
        after = _stored(self.engine)
        cursor = _cursor(self.engine)
        self._check_cursor_behind_committed(after, cursor)
        finished = result is not None and result.status == "ok"
        if not full:
            assert before_cursor is None or (cursor is not None and cursor >= before_cursor), (
                f"an incremental run moved the cursor back: {before_cursor} -> {cursor}"
            )
            assert result is None or result.deleted == 0
            assert _deleted_ids(after) <= _deleted_ids(before), "an incremental run marked"
            if finished and quiet:
                self._check_listed_stored(after)
        elif not finished and stage != "commit":
            newly = _deleted_ids(after) - _deleted_ids(before)
            assert not newly, f"an interrupted full run marked {sorted(newly)}"
        if full and finished and quiet:
            assert result is not None and result.deletions_refused is None
            self._check_full(before, after)
        return result

    @rule()
    def sync_incremental(self) -> None:
        self._checked_sync(full=False, label="incremental")

    @rule()
    def sync_full(self) -> None:
        self._checked_sync(full=True, label="full")

    @rule(full=st.booleans(), pages=st.integers(0, 4))
    def crash_while_listing(self, full: bool, pages: int) -> None:
        """The run stops after ``pages`` list pages (every retry of the next one fails): the
        pages already stored stay, the cursor stays at the last one."""
        self.fake.fail_next(503, times=MAX_ATTEMPTS, path=LIST, skip=pages)
        self._checked_sync(full=full, label=f"{'full' if full else 'incremental'} 503@{pages}")

    @rule(full=st.booleans(), stage=st.sampled_from(STAGES), page=st.integers(1, 4))
    def crash_at_checkpoint(self, full: bool, stage: str, page: int) -> None:
        """The process dies at a checkpoint of a page (the engine's ``TICKETFLOW_SYNC_FAULT``
        hook, raising instead of SIGKILL): inside the page's transaction, or just after it."""
        os.environ[FAULT_ENV] = f"{stage}:{page}"
        try:
            self._checked_sync(
                full=full,
                label=f"{'full' if full else 'incremental'} kill@{stage}:{page}",
                stage=stage,
            )
        finally:
            del os.environ[FAULT_ENV]

    @precondition(lambda self: bool(self.fake.incidents))
    @rule(
        full=st.booleans(),
        request=st.integers(1, 4),
        action=st.sampled_from(["modify", "create", "delete"]),
        pick=st.integers(0, 1000),
        step_ms=st.sampled_from(STEPS_MS),
    )
    def sync_while_changing(
        self, full: bool, request: int, action: str, pick: int, step_ms: int
    ) -> None:
        """The desk changes as the ``request``-th list request arrives (the keyset paging must
        notice a shifted list). A full run's result is not compared with the desk: an incident
        deleted after it was listed is rightly not marked until the next full run."""
        incident_id = self._pick(pick)
        assert incident_id is not None
        seen = [0]

        def change(_number: int, recorded: Recorded) -> None:
            if recorded.path != LIST:
                return
            seen[0] += 1
            if seen[0] != request or incident_id not in self.fake.incidents:
                return
            at = self._at(step_ms)
            if action == "create":
                self.fake.add_incident(at=at)
                self.log.append(f"  during the sync: create at {at}")
            elif action == "delete":
                self._delete(incident_id)
            else:
                if _mod(self.fake.incidents[incident_id]) >= at:
                    at = self._at(1)
                self._modify(incident_id, at, **_incident_fields("In progress", "Network", None))

        self.fake.on_request = change
        self._checked_sync(
            full=full, label=f"{'full' if full else 'incremental'} changing@{request}", quiet=False
        )

    # --- checks -----------------------------------------------------------------------------

    @invariant()
    def no_duplicate_keys(self) -> None:
        with self.engine.connect() as conn:
            tickets = conn.execute(
                text("SELECT count(*), count(DISTINCT source || '/' || external_id) FROM tickets")
            ).one()
            events = conn.execute(
                text("SELECT count(*), count(DISTINCT source || '/' || event_key) FROM events")
            ).one()
        assert tickets[0] == tickets[1], f"duplicate tickets: {tickets}"
        assert events[0] == events[1], f"duplicate events: {events}"

    def _explain(self) -> str:
        return "\n".join(self.log[-40:])

    def _check_cursor_behind_committed(self, stored: pd.DataFrame, cursor: datetime | None) -> None:
        if cursor is None:
            return
        limit = pd.Timestamp(cursor)
        for incident_id, incident in self.fake.incidents.items():
            if not _listed(incident) or incident_id in self.restored or _mod(incident) >= limit:
                continue
            assert incident_id in stored.index, (
                f"cursor {cursor} is past {incident_id} ({incident['modificationDate']}), "
                f"which is not stored\n{self._explain()}"
            )
            row = stored.loc[incident_id]
            assert row["updated_at"] == _mod(incident), (
                f"cursor {cursor} is past {incident_id} ({incident['modificationDate']}), "
                f"stored at {row['updated_at']}\n{self._explain()}"
            )
            assert pd.isna(row["deleted_at"]), f"{incident_id} marked deleted\n{self._explain()}"

    def _check_listed_stored(self, stored: pd.DataFrame) -> None:
        """Every listed incident (but the restored ones) is stored, live, at its version."""
        for incident_id, incident in self.fake.incidents.items():
            if not _listed(incident) or incident_id in self.restored:
                continue
            assert incident_id in stored.index, f"{incident_id} missing\n{self._explain()}"
            row = stored.loc[incident_id]
            assert row["updated_at"] == _mod(incident), (
                f"{incident_id} stored at {row['updated_at']}, the desk has "
                f"{incident['modificationDate']}\n{self._explain()}"
            )
            assert pd.isna(row["deleted_at"]), f"{incident_id} marked deleted\n{self._explain()}"

    def _check_full(self, before: pd.DataFrame, after: pd.DataFrame) -> None:
        """After a complete full sync of a quiet desk: the warehouse mirrors the desk."""
        desk = self.fake.incidents
        listed = {i for i, inc in desk.items() if _listed(inc)}
        hidden = set(desk) - listed
        live = set(after.index[after["deleted_at"].isna()])
        explain = self._explain()
        stored_hidden = hidden & set(after.index)
        assert live == listed | stored_hidden, (
            f"live tickets differ: missing {sorted((listed | stored_hidden) - live)}, extra "
            f"{sorted(live - listed - stored_hidden)}\n{explain}"
        )
        for incident_id in listed:
            row, incident = after.loc[incident_id], desk[incident_id]
            assert row["updated_at"] == _mod(incident), f"{incident_id} stale\n{explain}"
            assert _text(row["raw_status"]) == incident["processingStatus"]["name"]
            group = incident["operatorGroup"]
            assert _text(row["team"]) == (group["name"] if group else None), incident_id
        assert _deleted_ids(after) - hidden == set(after.index) - set(desk), (
            f"marked deleted: {sorted(_deleted_ids(after))}, gone from the desk: "
            f"{sorted(set(after.index) - set(desk))}\n{explain}"
        )
        # archived and partial incidents are listed by the scan (not stored again): still in
        # the tool, so never marked deleted, and a mark from before they came back is cleared
        assert not hidden & _deleted_ids(after), explain

    def teardown(self) -> None:
        """The final full sync of the quiet desk: afterwards the warehouse equals the desk."""
        self._checked_sync(full=True, label="final full")


def test_sync_state_machine(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The state machine on this backend (``TICKETFLOW_STATEFUL_EXAMPLES`` examples)."""
    desk = Desk()
    monkeypatch.setenv(desk.password_env, desk.fake.password)
    monkeypatch.delenv(FAULT_ENV, raising=False)
    monkeypatch.setattr(app.sync, "_checkpoint", _raising_checkpoint)
    machine = type("SyncMachineOn" + engine.dialect.name.title(), (SyncMachine,), {})
    machine.engine = engine
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


def test_the_deletion_guard_refuses_more_than_its_share(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the default ``max_delete_fraction`` (0.5) a full sync marks exactly half of the
    live tickets, but refuses (and marks none) when one more is missing; the (source,
    external_id) key is a real constraint of the database."""
    desk = Desk(page_size=PAGE_SIZE)
    monkeypatch.setenv(desk.password_env, desk.fake.password)
    assert desk.config.max_delete_fraction == 0.5
    ids = [desk.fake.add_incident()["id"] for _ in range(8)]
    sync = {"client_factory": desk.client, "sleep": lambda _seconds: None}
    assert sync_source(engine, desk.config, **sync).tickets.inserted == 8
    gone = {i: copy.deepcopy(desk.fake.incidents[i]) for i in ids[:5]}
    for incident_id in gone:
        desk.fake.delete(incident_id)
    refused = sync_source(engine, desk.config, full=True, **sync)
    assert (refused.status, refused.deleted) == ("ok", 0)
    assert refused.deletions_refused is not None and "5 of 8" in refused.deletions_refused
    assert _deleted_ids(_stored(engine)) == set()
    desk.fake.restore(gone[ids[0]])  # 4 of 8 missing now: exactly the share allowed
    allowed = sync_source(engine, desk.config, full=True, **sync)
    assert (allowed.deleted, allowed.deletions_refused) == (4, None)
    assert _deleted_ids(_stored(engine)) == set(ids[1:5])
    with pytest.raises(IntegrityError), engine.begin() as conn:  # the key is the database's
        conn.execute(text("INSERT INTO tickets SELECT * FROM tickets LIMIT 1"))
