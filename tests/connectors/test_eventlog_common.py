"""Shared event-log machinery: file reading, bad input, time parsing, derivation rules.

The small builders at the top are used by the per-format test modules too.
"""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from connectors.base import (
    EventField,
    EventOrigin,
    EventRecord,
    LifecycleState,
    TicketRecord,
    TicketType,
    derived_event_keys,
    events_frame,
    tickets_frame,
)
from connectors.config import EventLogSourceConfig
from connectors.errors import BadPayloadError, ConnectorConfigError
from connectors.eventlog import LogImport, read_event_log
from connectors.eventlog.common import derive
from connectors.eventlog.files import read_csv
from connectors.eventlog.times import parse_times
from connectors.statusmap import StatusMap, default_status_map

DATA = Path(__file__).resolve().parents[1] / "data" / "eventlog"


def at(text: str) -> datetime:
    """A UTC instant from ``YYYY-MM-DD HH:MM[:SS]``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def ev(
    ticket: str,
    when: str,
    seq: int,
    field: EventField,
    old: str | None,
    new: str | None,
    actor: str | None = None,
    *,
    source: str = "log",
) -> EventRecord:
    return EventRecord(
        source=source,
        ticket_id=ticket,
        occurred_at=at(when),
        field=field,
        old_value=old,
        new_value=new,
        origin=EventOrigin.HISTORY,
        actor=actor,
        seq=seq,
    )


def config(fmt: str, **kwargs: Any) -> EventLogSourceConfig:
    return EventLogSourceConfig(name="log", kind="eventlog", format=fmt, **kwargs)


def read(path: Path, fmt: str, **kwargs: Any) -> LogImport:
    return read_event_log(path, config=config(fmt, **kwargs), status_map=default_status_map(fmt))


def assert_tickets(actual: pd.DataFrame, expected: list[TicketRecord]) -> None:
    pd.testing.assert_frame_equal(actual, tickets_frame(expected))


def assert_events(actual: pd.DataFrame, expected: list[EventRecord]) -> None:
    pd.testing.assert_frame_equal(actual, events_frame(expected))


S, F = LifecycleState, EventField


def _write_gzip(path: Path, text: str) -> bytes:
    data = gzip.compress(text.encode())
    path.write_bytes(data)
    return data


GOOD = "ticket,time,status\nT1,2024-01-01T10:00:00Z,new\n"


def test_a_plain_file_and_its_gzip_read_alike(tmp_path: Path) -> None:
    plain = tmp_path / "log.csv"
    plain.write_text(GOOD)
    packed = tmp_path / "log.csv.gz"
    _write_gzip(packed, GOOD)
    unnamed = tmp_path / "log.dat"  # gzip recognised by its magic bytes, not its name
    _write_gzip(unnamed, GOOD)
    frames = [read(p, "csv").tickets for p in (plain, packed, unnamed)]
    pd.testing.assert_frame_equal(frames[0], frames[1])
    pd.testing.assert_frame_equal(frames[0], frames[2])


def test_truncated_gzip_is_a_bad_payload_naming_the_file(tmp_path: Path) -> None:
    body = GOOD + "".join(f"T{i},2024-01-01T10:00:{i % 60:02d}Z,new\n" for i in range(2000))
    path = tmp_path / "cut.csv.gz"
    data = _write_gzip(path, body)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadPayloadError, match=r"cut\.csv\.gz: truncated or corrupt gzip"):
        read(path, "csv")


def test_corrupt_gzip_is_a_bad_payload(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv.gz"
    data = bytearray(_write_gzip(path, GOOD * 50))
    data[20:40] = b"\xff" * 20
    path.write_bytes(bytes(data))
    with pytest.raises(BadPayloadError, match=r"bad\.csv\.gz: truncated or corrupt gzip"):
        read(path, "csv")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"", "the file is empty", id="empty"),
        pytest.param(gzip.compress(b""), "the file is empty", id="empty-gzip"),
        pytest.param(b"ticket,time,status\n", "header but no rows", id="header-only"),
        pytest.param(b"ticket,time,status\nT1,\xff\xfe,new\n", "not UTF-8", id="not-utf8"),
    ],
)
def test_unreadable_files_are_bad_payloads(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(content)
    with pytest.raises(BadPayloadError, match=message) as info:
        read(path, "csv")
    assert "x.csv" in str(info.value)
    assert info.value.source == "log"


def test_a_missing_file_is_a_bad_payload(tmp_path: Path) -> None:
    with pytest.raises(BadPayloadError, match="no such file"):
        read(tmp_path / "nope.csv", "csv")


@pytest.mark.parametrize("fmt", ["bpic2013", "bpic2014", "helpdesk"])
def test_fixed_formats_name_missing_columns_and_the_columns_found(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "wrong_activity.csv"
    path.write_text("Case,When,What\n1,2024-01-01T10:00:00Z,x\n")
    with pytest.raises(BadPayloadError, match="missing required column") as info:
        read(path, fmt)
    message = str(info.value)
    assert "columns found: `Case`, `When`, `What`" in message
    assert "wrong_activity.csv" in message


def test_every_row_unreadable_is_a_bad_payload(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("ticket,time,status\nT1,soon,new\nT2,later,new\n")
    with pytest.raises(
        BadPayloadError, match=r"no row could be imported \(2 skipped; first: line 2"
    ):
        read(path, "csv")


def _times(values: list[str], **kwargs: Any) -> pd.Series:
    parsed = parse_times(pd.Series(values), column="t", path=Path("x.csv"), source="log", **kwargs)
    return parsed.instants


def test_iso_times_with_mixed_offsets_and_naive_ones_become_utc() -> None:
    got = _times(
        [
            "2012-03-24T10:00:00+01:00",
            "2012-03-26T10:00:00+02:00",
            "2012-03-26T10:00:00Z",
            "2012-03-26 10:00:00.5 -0500",
            "2012-07-01 12:00",  # naive: Amsterdam summer time
            "",
            "garbage",
        ],
        time_format=None,
        timezone="Europe/Amsterdam",
    )
    assert str(got.dtype) == "datetime64[us, UTC]"
    assert got.tolist()[:5] == [
        pd.Timestamp("2012-03-24 09:00", tz="UTC"),
        pd.Timestamp("2012-03-26 08:00", tz="UTC"),
        pd.Timestamp("2012-03-26 10:00", tz="UTC"),
        pd.Timestamp("2012-03-26 15:00:00.5", tz="UTC"),
        pd.Timestamp("2012-07-01 10:00", tz="UTC"),
    ]
    assert got.iloc[5:].isna().all()


def test_dst_ambiguous_and_nonexistent_local_times_are_resolved_and_counted() -> None:
    parsed = parse_times(
        pd.Series(["2013-10-27 02:30:00", "2013-03-31 02:15:00", "2013-10-27 03:30:00"]),
        time_format="%Y-%m-%d %H:%M:%S",
        timezone="Europe/Amsterdam",
        column="t",
        path=Path("x.csv"),
        source="log",
    )
    assert parsed.instants.tolist() == [
        pd.Timestamp("2013-10-27 00:30", tz="UTC"),  # the first (summer-time) 02:30
        pd.Timestamp("2013-03-31 01:00", tz="UTC"),  # 02:15 does not exist: 03:00 CEST
        pd.Timestamp("2013-10-27 02:30", tz="UTC"),
    ]
    assert parsed.notes == {
        "DST-ambiguous local times read as summer time": 1,
        "nonexistent local times (DST gap) shifted forward": 1,
    }


def test_naive_times_without_a_timezone_are_a_clear_config_error() -> None:
    with pytest.raises(ConnectorConfigError, match=r"line 4: '2024-01-01 10:00'.*set `timezone`"):
        _times(
            ["2024-01-01T09:00:00Z", "garbage", "2024-01-01 10:00"], time_format=None, timezone=None
        )


def test_the_line_of_a_naive_time_is_the_file_line(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(
        "ticket,time,status\n"
        "T1,2024-01-01T09:00:00Z,new\n"
        "T1,2024-01-01T09:00:00Z,new\n"  # a duplicate, dropped before parsing
        "T1,2024-01-01 10:00,open\n"
    )
    with pytest.raises(ConnectorConfigError, match=r"line 4: '2024-01-01 10:00'"):
        read(path, "csv")


def test_an_unknown_timezone_is_a_config_error_even_when_every_time_has_an_offset() -> None:
    with pytest.raises(ConnectorConfigError, match="unknown time zone `Mars/Olympus`"):
        _times(["2024-01-01T10:00Z"], time_format=None, timezone="Mars/Olympus")


def _changes(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    columns = ["ticket", "instant", "order", "status", "update_kind", "update_label"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["instant"] = pd.to_datetime(frame["instant"], utc=True)
    frame["row"] = range(len(frame))
    return frame


def test_identical_events_at_one_instant_get_distinct_stable_keys() -> None:
    changes = _changes(
        [
            ("T1", "2024-01-01T10:00Z", 1, "new", None, None),
            ("T1", "2024-01-01T10:00Z", 2, None, "internal_update", "Update"),
            ("T1", "2024-01-01T10:00Z", 3, None, "internal_update", "Update"),
        ]
    )
    raw = pd.DataFrame({"x": ["a", "b", "c"]})
    kwargs: dict[str, Any] = {
        "raw": raw,
        "source": "log",
        "status_map": StatusMap({"new": S.NEW}),
        "ticket_type": TicketType.INCIDENT,
    }
    first = derive(changes, **kwargs)
    again = derive(changes, **kwargs)
    keys = first.events["event_key"]
    assert keys.is_unique
    assert keys.tolist() == again.events["event_key"].tolist()
    # the first of the identical pair keeps the plain content key
    assert keys.iloc[1] == derived_event_keys(first.events.iloc[[1]]).iloc[0]
    assert first.notes == {"identical events at one instant (keys made unique)": 1}


def test_a_ticket_without_any_status_is_new_and_noted() -> None:
    changes = _changes([("T1", "2024-01-01T10:00Z", 1, None, "internal_update", "Note")])
    got = derive(
        changes,
        raw=pd.DataFrame({"x": ["a"]}),
        source="log",
        status_map=StatusMap({}),
        ticket_type=TicketType.REQUEST,
        url_template="https://desk/t/{external_id}",
    )
    row = got.tickets.iloc[0]
    assert (row["state"], row["raw_status"], row["type"]) == ("new", None, "request")
    assert row["url"] == "https://desk/t/T1"
    assert got.notes == {"tickets without any status (state new)": 1}


def test_a_url_template_with_another_placeholder_is_a_config_error() -> None:
    changes = _changes([("T1", "2024-01-01T10:00Z", 1, "new", None, None)])
    with pytest.raises(ConnectorConfigError, match=r"`url_template` 'https://x/\{id\}'"):
        derive(
            changes,
            raw=pd.DataFrame({"x": ["a"]}),
            source="log",
            status_map=StatusMap({}),
            ticket_type=TicketType.INCIDENT,
            url_template="https://x/{id}",
        )


def test_resolved_and_closed_times_follow_the_final_done_run() -> None:
    changes = _changes(
        [
            ("T1", "2024-01-01T10:00Z", 1, "open", None, None),
            ("T1", "2024-01-02T10:00Z", 2, "resolved", None, None),
            ("T1", "2024-01-03T10:00Z", 3, "closed", None, None),
            ("T1", "2024-01-04T10:00Z", 4, "open", None, None),  # reopened after closing
            ("T1", "2024-01-05T10:00Z", 5, "resolved", None, None),
            ("T1", "2024-01-06T10:00Z", 6, "resolved", None, None),
            ("T1", "2024-01-07T10:00Z", 7, "closed", None, None),
            ("T1", "2024-01-08T10:00Z", 8, "cancelled", None, None),
            ("T2", "2024-01-01T10:00Z", 1, "resolved", None, None),
            ("T2", "2024-01-02T10:00Z", 2, "open", None, None),
        ]
    )
    got = derive(
        changes,
        raw=pd.DataFrame({"x": list("abcdefghij")}),
        source="log",
        status_map=default_status_map("csv"),
        ticket_type=TicketType.INCIDENT,
    )
    t = got.tickets.set_index("external_id")
    assert t.loc["T1", "resolved_at"] == pd.Timestamp("2024-01-05T10:00Z")
    assert t.loc["T1", "closed_at"] == pd.Timestamp("2024-01-07T10:00Z")
    assert t.loc["T1", "reopen_count"] == 1
    assert t["resolved_at"].isna()["T2"] and t["closed_at"].isna()["T2"]
    assert t.loc["T2", "reopen_count"] == 1
    assert t.loc["T1", "raw"] == {"x": "h"}


def test_read_csv_strips_header_blanks_and_keeps_na_like_text(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("\ufeff ticket , time\nNA,null\n")
    frame = read_csv(path, source="log").frame
    assert list(frame.columns) == ["ticket", "time"]
    assert frame.iloc[0].tolist() == ["NA", "null"]


def test_blank_lines_are_ignored_without_shifting_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("ticket,time,status\nT1,2024-01-01T09:00Z,new\n\n,,\nT1,soon,open\n\n")
    got = read(path, "csv")
    assert got.rows_read == 2
    assert got.notes == {"blank lines ignored": 3}
    assert [s.line for s in got.skipped] == [5]
