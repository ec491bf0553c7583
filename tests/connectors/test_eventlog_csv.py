"""The generic CSV format: column mapping, time formats and zones, activity logs, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.base import TicketRecord, TicketType
from connectors.errors import BadPayloadError, ConnectorConfigError
from connectors.eventlog import SkippedRow
from tests.connectors.test_eventlog_common import (
    DATA,
    F,
    S,
    assert_events,
    assert_tickets,
    at,
    config,
    ev,
    read,
)

MINI = DATA / "generic_mini.csv"
MAPPED: dict[str, Any] = {
    "columns": {
        "ticket": "Ticket",
        "time": "Changed",
        "status": "Status",
        "team": "Group",
        "assignee": "Operator",
        "actor": "Operator",
        "priority": "Prio",
        "type": "Kind",
        "title": "Subject",
    },
    "delimiter": ";",
    "time_format": "%d.%m.%Y %H:%M",
    "timezone": "Europe/Amsterdam",
    "system_users": ["robot"],
    "url_template": "https://desk.example/t/{external_id}",
}
HEADER = ["Ticket", "Changed", "Status", "Group", "Operator", "Prio", "Kind", "Subject"]


def _raw(line: str) -> dict[str, str | None]:
    return {k: (v or None) for k, v in zip(HEADER, line.split(";"), strict=True)}


def test_mini_log_tickets() -> None:
    got = read(MINI, "csv", **MAPPED)
    assert_tickets(
        got.tickets,
        [
            TicketRecord(
                source="log",
                external_id="A-1",
                number="A-1",
                title="Printer broken",
                type=TicketType.REQUEST,
                raw_status="Closed",
                state=S.CLOSED,
                priority_raw="P2",
                priority=2,
                team="Network",
                assignee=None,  # resolved by a system user; the last row carries none
                created_at=at("2024-03-01 08:00"),
                updated_at=at("2024-03-03 11:00"),
                resolved_at=at("2024-03-02 11:00"),
                closed_at=at("2024-03-03 11:00"),
                reassignment_count=1,
                reopen_count=0,
                url="https://desk.example/t/A-1",
                raw=_raw("A-1;03.03.2024 12:00;Closed;Network;;P2;Request;Printer broken"),
            ),
            TicketRecord(
                source="log",
                external_id="B-2",
                number="B-2",
                title="VPN down",
                type=TicketType.OTHER,  # "Weird" is no ticket type
                raw_status="Waiting for customer",
                state=S.WAITING_CUSTOMER,
                priority_raw="1 - Critical",
                priority=1,
                team="Desk",
                assignee="bob",
                created_at=at("2024-03-31 01:00"),  # 02:30 does not exist: 03:00 CEST
                updated_at=at("2024-03-31 02:00"),
                reassignment_count=0,
                reopen_count=0,
                url="https://desk.example/t/B-2",
                raw=_raw("B-2;31.03.2024 04:00;Waiting for customer;;bob;;;VPN down"),
            ),
        ],
    )


def test_mini_log_events() -> None:
    got = read(MINI, "csv", **MAPPED)
    assert_events(
        got.events,
        [
            ev("A-1", "2024-03-01 08:00", 0, F.STATE, None, "new"),
            ev("A-1", "2024-03-01 08:00", 0, F.STATUS, None, "New"),
            ev("A-1", "2024-03-01 08:00", 0, F.TEAM, None, "Desk"),
            ev("A-1", "2024-03-01 08:00", 0, F.PRIORITY, None, "P3"),
            ev("A-1", "2024-03-01 09:00", 1, F.STATE, "new", "in_progress", "ann"),
            ev("A-1", "2024-03-01 09:00", 1, F.STATUS, "New", "In progress", "ann"),
            ev("A-1", "2024-03-01 09:00", 1, F.ASSIGNEE, None, "ann", "ann"),
            ev("A-1", "2024-03-01 09:00", 2, F.TEAM, "Desk", "Network", "ann"),
            ev("A-1", "2024-03-01 09:00", 2, F.PRIORITY, "P3", "P2", "ann"),
            ev("A-1", "2024-03-02 11:00", 3, F.STATE, "in_progress", "resolved", "robot"),
            ev("A-1", "2024-03-02 11:00", 3, F.STATUS, "In progress", "Resolved", "robot"),
            ev("A-1", "2024-03-02 11:00", 3, F.ASSIGNEE, "ann", None, "robot"),
            ev("A-1", "2024-03-03 11:00", 4, F.STATE, "resolved", "closed"),
            ev("A-1", "2024-03-03 11:00", 4, F.STATUS, "Resolved", "Closed"),
            ev("B-2", "2024-03-31 01:00", 0, F.STATE, None, "new", "bob"),
            ev("B-2", "2024-03-31 01:00", 0, F.STATUS, None, "Open", "bob"),
            ev("B-2", "2024-03-31 01:00", 0, F.TEAM, None, "Desk", "bob"),
            ev("B-2", "2024-03-31 01:00", 0, F.ASSIGNEE, None, "bob", "bob"),
            ev("B-2", "2024-03-31 01:00", 0, F.PRIORITY, None, "1 - Critical", "bob"),
            ev("B-2", "2024-03-31 01:10", 1, F.STATE, "new", "in_progress", "bob"),
            ev("B-2", "2024-03-31 01:10", 1, F.STATUS, "Open", "Limbo", "bob"),
            ev("B-2", "2024-03-31 02:00", 2, F.STATE, "in_progress", "waiting_customer", "bob"),
            ev("B-2", "2024-03-31 02:00", 2, F.STATUS, "Limbo", "Waiting for customer", "bob"),
        ],
    )


def test_mini_log_report() -> None:
    got = read(MINI, "csv", **MAPPED)
    assert got.rows_read == 9
    assert got.unknown_statuses == {"Limbo": 1}
    assert got.skipped == [SkippedRow(10, "unparseable timestamp 'yesterday' in column `Changed`")]
    assert got.notes == {
        "nonexistent local times (DST gap) shifted forward": 1,
        "tickets with an unrecognised type (type other)": 1,
    }


def test_unmapped_names_read_same_named_columns_and_iso_offsets_need_no_zone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.csv"
    path.write_text(
        "ticket,time,status,team\n"
        "T1,2024-03-01T08:00:00+01:00,Open,Desk\n"
        "T1,2024-07-01T08:00:00+02:00,Closed,Desk\n"
        "T1,2024-07-01T08:00:00+02:00,Closed,Desk\n"
    )
    got = read(path, "csv")
    row = got.tickets.iloc[0]
    assert (row["team"], row["state"], row["type"]) == ("Desk", "closed", "incident")
    assert row["created_at"] == at("2024-03-01 07:00")
    assert got.notes == {"duplicate rows dropped": 1}


def test_an_activity_column_sets_status_where_the_map_knows_it(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(
        "case,at,step\n"
        "C1,2024-01-01 09:00,Open\n"
        "C1,2024-01-01 10:00,Called customer\n"
        "C1,2024-01-01 11:00,Resolved\n"
    )
    got = read(
        path,
        "csv",
        columns={"ticket": "case", "time": "at", "activity": "step"},
        timezone="UTC",
    )
    assert got.tickets.iloc[0]["state"] == "resolved"
    assert got.unknown_activities == {"Called customer": 1}
    updates = got.events[got.events["field"] == "internal_update"]
    assert updates["new_value"].tolist() == ["Called customer"]


def test_status_and_activity_together(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(
        "ticket,time,status,activity\n"
        "T1,2024-01-01T09:00Z,Open,Logged\n"
        "T1,2024-01-01T10:00Z,,Note added\n"
    )
    got = read(path, "csv")
    fields = got.events[["field", "new_value"]].values.tolist()
    assert fields == [
        ["state", "new"],
        ["status", "Open"],
        ["internal_update", "Logged"],
        ["internal_update", "Note added"],
    ]
    assert got.unknown_activities == {}


def test_a_missing_required_column_names_it_and_the_columns_found(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(MINI.read_text().replace("Changed", "When"))
    with pytest.raises(BadPayloadError) as info:
        read(path, "csv", **MAPPED)
    message = str(info.value)
    assert "missing column(s) `Changed` (the `time` column)" in message
    assert "columns found: `Ticket`, `When`, `Status`" in message


def test_a_file_without_status_or_activity_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("ticket,when\nT1,2024-01-01T09:00Z\n")
    with pytest.raises(BadPayloadError) as info:
        read(path, "csv")
    message = str(info.value)
    assert "missing column(s) `time`" in message
    assert "needs a `status` or an `activity` column" in message


def test_an_unknown_mapping_key_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConnectorConfigError, match=r"unknown key.*assigne\b"):
        read(MINI, "csv", columns={"assigne": "Operator"})


def test_naive_times_need_a_timezone(tmp_path: Path) -> None:
    config = {**MAPPED, "timezone": None}
    with pytest.raises(ConnectorConfigError, match=r"without a UTC offset.*set `timezone`"):
        read(MINI, "csv", **config)


ACTIVITY_MINI = DATA / "generic_activity_mini.csv"
ACTIVITY: dict[str, Any] = {
    "columns": {"ticket": "case", "time": "at", "activity": "step", "actor": "who"},
}
UPDATE_LISTS: dict[str, Any] = {
    "customer_update_activities": ["Mail to Customer", "Customer replied"],
    "internal_update_activities": ["work note"],
}


def _activity_events(customer: F, internal: F) -> list[Any]:
    """The events of the activity fixture; ``customer`` / ``internal`` are the fields of its
    customer-visible and internal update rows."""
    return [
        ev("C1", "2024-01-01 09:00", 0, F.STATE, None, "new", "desk"),
        ev("C1", "2024-01-01 09:00", 0, F.STATUS, None, "Open", "desk"),
        ev("C1", "2024-01-01 09:30", 1, customer, None, "Mail to customer", "ann"),
        ev("C1", "2024-01-01 10:00", 2, internal, None, "WORK NOTE", "ann"),
        ev("C1", "2024-01-01 10:15", 3, F.INTERNAL_UPDATE, None, "Escalated", "ann"),
        ev("C1", "2024-01-01 11:00", 4, F.STATE, "new", "resolved", "ann"),
        ev("C1", "2024-01-01 11:00", 4, F.STATUS, "Open", "Resolved", "ann"),
        ev("C2", "2024-01-02 09:00", 0, F.STATE, None, "new", "desk"),
        ev("C2", "2024-01-02 09:00", 0, F.STATUS, None, "Open", "desk"),
        ev("C2", "2024-01-02 09:05", 1, customer, None, "customer  replied"),
        ev("C2", "2024-01-02 09:10", 2, F.INTERNAL_UPDATE, None, "Escalated", "bob"),
    ]


def test_listed_activities_become_customer_and_internal_updates() -> None:
    got = read(ACTIVITY_MINI, "csv", **ACTIVITY, **UPDATE_LISTS)
    # matched ignoring case and blanks: "Mail to Customer", "work note", "customer  replied"
    assert_events(got.events, _activity_events(F.CUSTOMER_UPDATE, F.INTERNAL_UPDATE))
    assert got.unknown_activities == {"Escalated": 2}
    assert got.unknown_statuses == {}
    assert got.tickets[["external_id", "raw_status", "state"]].values.tolist() == [
        ["C1", "Resolved", "resolved"],
        ["C2", "Open", "new"],
    ]


def test_without_the_lists_every_non_status_activity_is_an_unknown_internal_update() -> None:
    got = read(ACTIVITY_MINI, "csv", **ACTIVITY)
    assert_events(got.events, _activity_events(F.INTERNAL_UPDATE, F.INTERNAL_UPDATE))
    assert got.unknown_activities == {
        "Escalated": 2,
        "Mail to customer": 1,
        "WORK NOTE": 1,
        "customer  replied": 1,
    }


def test_the_status_map_wins_over_the_update_lists() -> None:
    lists = {**UPDATE_LISTS, "customer_update_activities": ["resolved", "mail to customer"]}
    got = read(ACTIVITY_MINI, "csv", **ACTIVITY, **lists)
    c1 = got.events[got.events["ticket_id"] == "C1"]
    assert c1[["seq", "field", "new_value"]].values.tolist() == [
        [0, "state", "new"],
        [0, "status", "Open"],
        [1, "customer_update", "Mail to customer"],
        [2, "internal_update", "WORK NOTE"],
        [3, "internal_update", "Escalated"],
        [4, "state", "resolved"],
        [4, "status", "Resolved"],
    ]
    assert got.unknown_activities == {"Escalated": 2, "customer  replied": 1}


def test_with_a_status_column_the_customer_list_still_marks_customer_updates(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.csv"
    path.write_text(
        "ticket,time,status,activity\n"
        "T1,2024-01-01T09:00Z,Open,Logged\n"
        "T1,2024-01-01T10:00Z,,Mail to customer\n"
        "T1,2024-01-01T11:00Z,,Note added\n"
    )
    got = read(path, "csv", customer_update_activities=["mail to customer"])
    assert got.events[["field", "new_value"]].values.tolist() == [
        ["state", "new"],
        ["status", "Open"],
        ["internal_update", "Logged"],
        ["customer_update", "Mail to customer"],
        ["internal_update", "Note added"],
    ]
    assert got.unknown_activities == {}


def test_an_activity_in_both_update_lists_is_a_config_error() -> None:
    both = r"activities in both `customer_update_activities` and `internal_update_activities`"
    with pytest.raises(ValidationError, match=both + r": work note \[type"):
        config(
            "csv",
            customer_update_activities=["Work  Note"],
            internal_update_activities=["work note"],
        )
