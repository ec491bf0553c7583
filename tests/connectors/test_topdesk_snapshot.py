"""connectors/snapshot.py: history derived by comparing TOPdesk snapshots (pure, over frames)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from connectors.base import LifecycleState, TicketRecord, derived_event_keys, tickets_frame
from connectors.snapshot import SNAPSHOT_COLUMNS, snapshot_events, split_stale

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def _ticket(ext: str, *, at: datetime, created: datetime = T0, **kw: object) -> TicketRecord:
    base: dict[str, object] = {
        "source": "td",
        "external_id": ext,
        "state": LifecycleState.NEW,
        "raw_status": "Logged",
        "created_at": created,
        "updated_at": at,
    }
    return TicketRecord(**(base | kw))  # type: ignore[arg-type]


def _stored(*records: TicketRecord) -> pd.DataFrame:
    return tickets_frame(records).loc[:, list(SNAPSHOT_COLUMNS)]


def _rows(events: pd.DataFrame) -> list[tuple[object, ...]]:
    return [
        (
            r["ticket_id"],
            r["occurred_at"].to_pydatetime(),
            r["field"],
            None if pd.isna(r["old_value"]) else r["old_value"],
            r["new_value"],
            None if pd.isna(r["actor"]) else r["actor"],
        )
        for r in events.to_dict("records")
    ]


def test_new_tickets_get_a_baseline_of_their_known_values() -> None:
    fresh = _ticket("a", at=T0 + timedelta(seconds=20), team="Network")
    touched = _ticket("b", at=T0 + timedelta(hours=3), priority_raw="P2")
    events = snapshot_events(_stored(), tickets_frame([fresh, touched]))
    later = T0 + timedelta(hours=3)
    assert _rows(events) == [
        ("a", T0, "status", None, "Logged", None),
        ("a", T0, "state", None, "new", None),
        ("a", T0, "team", None, "Network", None),
        ("b", later, "status", None, "Logged", None),
        ("b", later, "state", None, "new", None),
        ("b", later, "priority", None, "P2", None),
    ]
    assert set(events["origin"]) == {"snapshot"}
    assert list(events["seq"]) == [0, 1, 2, 0, 1, 4]


def test_changes_are_timed_at_the_modification_and_carry_the_actor() -> None:
    before = _ticket("a", at=T0, team="Network", assignee=None)
    t1 = T0 + timedelta(minutes=5)
    after = _ticket(
        "a",
        at=t1,
        team="Workplace",
        assignee="Anna",
        state=LifecycleState.IN_PROGRESS,
        raw_status="In progress",
    )
    events = snapshot_events(_stored(before), tickets_frame([after]), actors=pd.Series(["Bram"]))
    assert _rows(events) == [
        ("a", t1, "status", "Logged", "In progress", "Bram"),
        ("a", t1, "state", "new", "in_progress", "Bram"),
        ("a", t1, "team", "Network", "Workplace", "Bram"),
        ("a", t1, "assignee", None, "Anna", "Bram"),
    ]


def test_unchanged_or_remapped_at_the_same_instant_is_no_event() -> None:
    stored = _ticket("a", at=T0, team="Network")
    remapped = _ticket("a", at=T0, team="Network", state=LifecycleState.WAITING_OTHER)
    assert snapshot_events(_stored(stored), tickets_frame([stored])).empty
    assert snapshot_events(_stored(stored), tickets_frame([remapped])).empty


def test_the_same_change_derived_twice_has_the_same_key() -> None:
    before = _ticket("a", at=T0)
    after = _ticket("a", at=T0 + timedelta(minutes=1), team="Network")
    first = snapshot_events(_stored(before), tickets_frame([after]))
    again = snapshot_events(_stored(before), tickets_frame([after]))
    assert list(first["event_key"]) == list(again["event_key"])
    assert list(first["event_key"]) == list(derived_event_keys(first))


def test_stale_snapshots_are_split_off() -> None:
    stored = _stored(_ticket("a", at=T0 + timedelta(hours=1)), _ticket("b", at=T0))
    fetched = tickets_frame(
        [_ticket("a", at=T0), _ticket("b", at=T0 + timedelta(hours=2)), _ticket("c", at=T0)]
    )
    fresh, stale = split_stale(stored, fetched)
    assert list(fresh["external_id"]) == ["b", "c"]
    assert list(stale["external_id"]) == ["a"]
