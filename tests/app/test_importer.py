"""Import flow: atomic writes, idempotent re-imports, clear errors for bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine

import app.importer as importer
from app.errors import ConfigError, ImportFailedError
from app.importer import import_log
from app.settings import Settings, load_settings
from app.warehouse import read_events_frame, read_sync_states, read_tickets_frame

HEADER = "Ticket,Changed,Status,Group,Operator\n"
GOOD = HEADER + (
    "T1,2024-03-01T08:00:00+01:00,Open,Desk,\n"
    "T1,2024-03-01T09:00:00+01:00,In progress,Desk,ann\n"
    "T1,2024-03-01T10:00:00+01:00,In progress,Network,bob\n"
    "T1,2024-03-01T11:00:00+01:00,Resolved,Network,bob\n"
    "T2,2024-03-02T08:00:00+01:00,Open,Desk,\n"
    "T2,2024-03-02T08:30:00+01:00,Parked somewhere,Desk,ann\n"
)


def _settings(tmp_path: Path, url: str) -> Settings:
    config = tmp_path / "ticketflow.toml"
    config.write_text(
        f"""
[warehouse]
url = "{url}"

[[sources]]
name = "desk"
kind = "eventlog"
format = "csv"
[sources.columns]
ticket = "Ticket"
time = "Changed"
status = "Status"
team = "Group"
assignee = "Operator"
"""
    )
    return load_settings(config)


def _log(tmp_path: Path, text: str, name: str = "log.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _snapshot(engine: Engine) -> tuple[pd.DataFrame, pd.DataFrame]:
    with engine.connect() as conn:
        return read_tickets_frame(conn), read_events_frame(conn)


def test_import_then_reimport_changes_nothing(
    tmp_path: Path, warehouse_url: str, engine: Engine
) -> None:
    settings = _settings(tmp_path, warehouse_url)
    path = _log(tmp_path, GOOD)
    first = import_log(settings, path=path, source="desk", engine=engine)
    assert (first.tickets.inserted, first.tickets.updated) == (2, 0)
    assert first.events_inserted == first.events_read > 0
    assert first.unknown_statuses == {"Parked somewhere": 1}
    before = _snapshot(engine)
    again = import_log(settings, path=path, source="desk", engine=engine)
    assert (again.tickets.inserted, again.tickets.updated, again.tickets.unchanged) == (0, 0, 2)
    assert again.events_inserted == 0
    after = _snapshot(engine)
    pd.testing.assert_frame_equal(before[0], after[0])
    pd.testing.assert_frame_equal(before[1], after[1])
    tickets = after[0].set_index("external_id")
    assert tickets.loc["T1", "state"] == "resolved"
    assert tickets.loc["T1", "team"] == "Network"
    assert tickets.loc["T2", "state"] == "in_progress"  # the fallback for an unknown status
    assert tickets.loc["T2", "raw_status"] == "Parked somewhere"  # kept raw, never dropped
    with engine.connect() as conn:
        (state,) = read_sync_states(conn)
    assert state["last_status"] == "ok"
    assert state["details"]["unknown_statuses"] == {"Parked somewhere": 1}


def _assert_unchanged_after_failure(
    engine: Engine, before: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    after = _snapshot(engine)
    pd.testing.assert_frame_equal(before[0], after[0])
    pd.testing.assert_frame_equal(before[1], after[1])
    with engine.connect() as conn:
        (state,) = read_sync_states(conn)
    assert state["last_status"] == "error"
    assert state["last_error"]


def test_truncated_gzip_writes_nothing(tmp_path: Path, warehouse_url: str, engine: Engine) -> None:
    settings = _settings(tmp_path, warehouse_url)
    import_log(settings, path=_log(tmp_path, GOOD), source="desk", engine=engine)
    before = _snapshot(engine)
    data = gzip.compress((GOOD + GOOD.replace("T1", "T3").replace("T2", "T4")).encode())
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImportFailedError, match=r"broken\.csv\.gz.*nothing was imported"):
        import_log(settings, path=broken, source="desk", engine=engine)
    _assert_unchanged_after_failure(engine, before)


def test_missing_required_column_names_it(
    tmp_path: Path, warehouse_url: str, engine: Engine
) -> None:
    settings = _settings(tmp_path, warehouse_url)
    import_log(settings, path=_log(tmp_path, GOOD), source="desk", engine=engine)
    before = _snapshot(engine)
    no_time = _log(tmp_path, GOOD.replace("Changed", "When"), "no_time.csv")
    with pytest.raises(ImportFailedError, match="Changed"):
        import_log(settings, path=no_time, source="desk", engine=engine)
    _assert_unchanged_after_failure(engine, before)


def test_unparseable_timestamps_are_reported_per_row(
    tmp_path: Path, warehouse_url: str, engine: Engine
) -> None:
    settings = _settings(tmp_path, warehouse_url)
    text = GOOD + "T5,yesterday-ish,Open,Desk,\nT5,2024-03-03T08:00:00+01:00,Open,Desk,\n"
    path = _log(tmp_path, text)
    summary = import_log(settings, path=path, source="desk", engine=engine)
    assert [s.line for s in summary.skipped] == [8]
    assert "yesterday-ish" in summary.skipped[0].reason
    assert summary.tickets.inserted == 3


def test_strict_refuses_bad_rows_and_writes_nothing(
    tmp_path: Path, warehouse_url: str, engine: Engine
) -> None:
    settings = _settings(tmp_path, warehouse_url)
    path = _log(tmp_path, GOOD + "T5,not-a-time,Open,Desk,\n")
    with pytest.raises(ImportFailedError, match="line 8"):
        import_log(settings, path=path, source="desk", strict=True, engine=engine)
    tickets, events = _snapshot(engine)
    assert tickets.empty and events.empty


def test_database_failure_mid_write_rolls_back_everything(
    tmp_path: Path, warehouse_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path, warehouse_url)
    import_log(settings, path=_log(tmp_path, GOOD), source="desk", engine=engine)
    before = _snapshot(engine)

    def fail(*_args: object, **_kwargs: object) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(importer, "insert_events", fail)
    bigger = _log(tmp_path, GOOD.replace("T2", "T9") + "T7,2024-03-05T08:00:00Z,Open,Desk,\n", "b")
    with pytest.raises(RuntimeError, match="disk full"):
        import_log(settings, path=bigger, source="desk", engine=engine)
    # the tickets of the failed import were written before the failure, then rolled back
    _assert_unchanged_after_failure(engine, before)


def test_unconfigured_source_needs_a_format(tmp_path: Path, sqlite_url: str) -> None:
    settings = _settings(tmp_path, sqlite_url)
    with pytest.raises(ConfigError, match="--format"):
        import_log(settings, path=_log(tmp_path, GOOD), source="other")
