from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import IntegrityError

from app.errors import WarehouseError
from app.warehouse import (
    current_revision,
    head_revision,
    insert_events,
    make_engine,
    read_events_frame,
    read_sync_states,
    read_tickets_frame,
    save_sync_state,
    upsert_tickets,
)
from app.warehouse.engine import SQLITE_CACHE_KIB, SQLITE_PAGE_SIZE
from app.warehouse.stats import SourceTotals, warehouse_totals
from app.warehouse.types import utc_strings
from connectors.base import (
    EventField,
    EventOrigin,
    EventRecord,
    LifecycleState,
    TicketRecord,
    events_frame,
    tickets_frame,
)

NOW = datetime(2024, 3, 1, 12, tzinfo=UTC)


def _ticket(ext: str, **kw: object) -> TicketRecord:
    base: dict[str, object] = {
        "source": "desk",
        "external_id": ext,
        "state": LifecycleState.IN_PROGRESS,
        "raw_status": "In progress",
        "created_at": datetime(2024, 1, 1, 8, tzinfo=UTC),
        "updated_at": datetime(2024, 1, 2, 9, 30, 15, 123456, tzinfo=UTC),
        "raw": {"id": ext, "nested": {"a": [1, 2]}},
    }
    base.update(kw)
    return TicketRecord(**base)  # type: ignore[arg-type]


def _event(ext: str, minute: int, new: str, old: str | None = None) -> EventRecord:
    return EventRecord(
        source="desk",
        ticket_id=ext,
        occurred_at=datetime(2024, 1, 1, 8, minute, tzinfo=UTC),
        field=EventField.TEAM,
        old_value=old,
        new_value=new,
        origin=EventOrigin.HISTORY,
    )


def test_empty_database_is_migrated_on_first_use(engine: Engine) -> None:
    assert current_revision(engine) == head_revision()
    tables = set(inspect(engine).get_table_names())
    assert {"tickets", "events", "sync_state", "unknown_statuses"} <= tables


def test_upsert_is_idempotent_and_counts(engine: Engine) -> None:
    frame = tickets_frame([_ticket("1"), _ticket("2", priority=2, team="A")])
    with engine.begin() as conn:
        first = upsert_tickets(conn, frame, now=NOW)
    with engine.begin() as conn:
        again = upsert_tickets(conn, frame, now=datetime(2024, 3, 2, tzinfo=UTC))
    assert (first.inserted, first.updated, first.unchanged) == (2, 0, 0)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)
    with engine.connect() as conn:
        stored = read_tickets_frame(conn)
    # an unchanged re-upsert does not touch loaded_at
    assert (stored["loaded_at"] == pd.Timestamp(NOW)).all()
    assert stored.loc[stored.external_id == "1", "raw"].iloc[0] == {
        "id": "1",
        "nested": {"a": [1, 2]},
    }
    assert stored["updated_at"].iloc[0] == pd.Timestamp("2024-01-02 09:30:15.123456", tz="UTC")


def test_tickets_frame_without_raw_is_the_same_frame_with_payloads_left_out(
    engine: Engine,
) -> None:
    frame = tickets_frame([_ticket("1", priority=2, team="A"), _ticket("2", assignee="Kim")])
    with engine.begin() as conn:
        upsert_tickets(conn, frame, now=NOW)
    with engine.connect() as conn:
        full = read_tickets_frame(conn)
        lean = read_tickets_frame(conn, raw=False)
        one = read_tickets_frame(conn, source="desk", raw=False)
    assert full["raw"].tolist() == [
        {"id": "1", "nested": {"a": [1, 2]}},
        {"id": "2", "nested": {"a": [1, 2]}},
    ]
    assert lean["raw"].tolist() == [None, None]
    assert list(lean.columns) == list(full.columns)
    assert (lean.dtypes == full.dtypes).all()
    pd.testing.assert_frame_equal(lean.drop(columns="raw"), full.drop(columns="raw"))
    pd.testing.assert_frame_equal(one, lean)


def test_upsert_updates_only_changed_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        upsert_tickets(conn, tickets_frame([_ticket("1"), _ticket("2")]), now=NOW)
    later = datetime(2024, 3, 5, tzinfo=UTC)
    changed = tickets_frame([_ticket("1", team="B", priority=None), _ticket("2"), _ticket("3")])
    with engine.begin() as conn:
        counts = upsert_tickets(conn, changed, now=later)
    assert (counts.inserted, counts.updated, counts.unchanged) == (1, 1, 1)
    with engine.connect() as conn:
        stored = read_tickets_frame(conn).set_index("external_id")
    assert stored.loc["1", "team"] == "B"
    assert stored.loc["1", "loaded_at"] == pd.Timestamp(later)
    assert stored.loc["2", "loaded_at"] == pd.Timestamp(NOW)


def test_duplicate_keys_in_one_batch_last_wins(engine: Engine) -> None:
    frame = tickets_frame([_ticket("1", team="A"), _ticket("1", team="B")])
    with engine.begin() as conn:
        counts = upsert_tickets(conn, frame, now=NOW)
        stored = read_tickets_frame(conn)
    assert counts.inserted == 1
    assert stored["team"].tolist() == ["B"]


def test_events_are_deduplicated(engine: Engine) -> None:
    events = events_frame([_event("1", 0, "A"), _event("1", 5, "B", "A"), _event("1", 5, "B", "A")])
    with engine.begin() as conn:
        upsert_tickets(conn, tickets_frame([_ticket("1")]), now=NOW)
        assert insert_events(conn, events, now=NOW) == 2
    with engine.begin() as conn:
        assert insert_events(conn, events, now=NOW) == 0
        stored = read_events_frame(conn)
    assert stored["new_value"].tolist() == ["A", "B"]
    assert stored["old_value"].tolist()[1] == "A"


def test_failed_transaction_writes_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        upsert_tickets(conn, tickets_frame([_ticket("keep")]), now=NOW)
    bad = tickets_frame([_ticket("new")])
    bad.loc[0, "state"] = "not-a-state"  # violates the check constraint
    with pytest.raises(IntegrityError, match=r"(?i)check"), engine.begin() as conn:
        upsert_tickets(conn, tickets_frame([_ticket("also-new")]), now=NOW)
        upsert_tickets(conn, bad, now=NOW)
    with engine.connect() as conn:
        assert read_tickets_frame(conn)["external_id"].tolist() == ["keep"]


def test_naive_times_are_refused(engine: Engine) -> None:
    frame = tickets_frame([_ticket("1")])
    frame["created_at"] = frame["created_at"].dt.tz_localize(None)
    with pytest.raises((ValueError, TypeError)), engine.begin() as conn:
        upsert_tickets(conn, frame, now=NOW)


def test_sync_state_keeps_cursor_on_error(engine: Engine) -> None:
    with engine.begin() as conn:
        save_sync_state(conn, source="desk", kind="topdesk", now=NOW, cursor="c1")
    with engine.begin() as conn:
        save_sync_state(
            conn, source="desk", kind="topdesk", now=NOW, status="error", error="401 from server"
        )
        (state,) = read_sync_states(conn)
    assert state["cursor"] == "c1"
    assert state["last_status"] == "error"
    assert state["last_error"] == "401 from server"
    assert state["last_success_at"] == NOW


def test_new_sqlite_warehouse_has_the_bulk_write_settings(sqlite_url: str) -> None:
    """64 KiB pages, WAL, a 64 MiB cache, foreign keys on (docs/benchmarks.md says why)."""
    eng = make_engine(sqlite_url)
    try:
        with eng.connect() as conn:
            pragma = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("page_size", "journal_mode", "cache_size", "foreign_keys")
            }
    finally:
        eng.dispose()
    assert pragma == {
        "page_size": SQLITE_PAGE_SIZE,
        "journal_mode": "wal",
        "cache_size": -SQLITE_CACHE_KIB,
        "foreign_keys": 1,
    }
    assert SQLITE_PAGE_SIZE == 65_536


def test_outdated_or_foreign_database_is_refused(sqlite_url: str) -> None:
    eng = make_engine(sqlite_url, ensure=False)
    with eng.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE something_else (x INTEGER)")
    with pytest.raises(WarehouseError, match="no ticketflow schema version"):
        make_engine(sqlite_url)


def test_warehouse_totals_count_what_is_stored(engine: Engine) -> None:
    other = _ticket("x", source="other")
    with engine.begin() as conn:
        upsert_tickets(conn, tickets_frame([_ticket("1"), _ticket("2"), other]), now=NOW)
        insert_events(conn, events_frame([_event("1", 1, "A"), _event("1", 2, "B", "A")]), now=NOW)
    with engine.begin() as conn:  # an idempotent re-import changes nothing, totals stay
        upsert_tickets(conn, tickets_frame([_ticket("1"), _ticket("2")]), now=NOW)
        assert insert_events(conn, events_frame([_event("1", 1, "A")]), now=NOW) == 0
    with engine.connect() as conn:
        assert warehouse_totals(conn) == {
            "desk": SourceTotals("desk", tickets=2, events=2),
            "other": SourceTotals("other", tickets=1, events=0),
        }
        assert warehouse_totals(conn, source="other") == {
            "other": SourceTotals("other", tickets=1, events=0)
        }
        assert warehouse_totals(conn, source="none") == {"none": SourceTotals("none", 0, 0)}


def test_utc_strings_keep_missing_times_missing() -> None:
    stamps = pd.Series(pd.to_datetime(["2024-01-02T03:04:05.678901Z", "NaT"], utc=True))
    assert utc_strings(stamps, dialect="sqlite").tolist() == ["2024-01-02T03:04:05.678901", None]
    assert utc_strings(stamps, dialect="postgresql").tolist() == [
        "2024-01-02T03:04:05.678901Z",
        None,
    ]


def test_event_of_an_unknown_ticket_is_refused_and_nothing_is_written(engine: Engine) -> None:
    with engine.begin() as conn:
        upsert_tickets(conn, tickets_frame([_ticket("1")]), now=NOW)
    events = events_frame([_event("1", 1, "A"), _event("missing", 2, "B")])
    with pytest.raises(IntegrityError, match=r"(?i)foreign key"), engine.begin() as conn:
        insert_events(conn, events, now=NOW)
    with engine.connect() as conn:
        assert read_events_frame(conn).empty
