"""Helpdesk log (Italian software company): hand-made with its quirks, then the real file."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.base import TicketRecord
from tests.connectors.test_eventlog_common import (
    DATA,
    F,
    S,
    assert_events,
    assert_tickets,
    at,
    ev,
    read,
)

MINI = DATA / "helpdesk_mini.csv"
HEADER = (
    "Case ID,Activity,Resource,Complete Timestamp,seriousness,customer,product,"
    "responsible_section,seriousness_2,service_level,service_type,support_section,workgroup"
)


def _raw(line: str) -> dict[str, str | None]:
    return {k: (v or None) for k, v in zip(HEADER.split(","), line.split(","), strict=True)}


def test_mini_log_tickets() -> None:
    got = read(MINI, "helpdesk")
    assert_tickets(
        got.tickets,
        [
            TicketRecord(
                source="log",
                external_id="Case 1",
                number="Case 1",
                raw_status="Closed",
                state=S.CLOSED,
                priority_raw="Value 2",
                priority=None,  # anonymised scale: not normalised
                category="Value 1",
                team="Value 2",
                assignee="Value 4",  # who last took it in charge, not who closed it
                created_at=at("2012-10-09 14:50:17"),
                updated_at=at("2012-10-13 10:00"),
                resolved_at=at("2012-10-13 10:00"),
                closed_at=at("2012-10-13 10:00"),
                reassignment_count=1,
                reopen_count=1,
                raw=_raw(
                    "Case 1,Closed,Value 1,2012-10-13T10:00:00+00:00,Value 1,Value 1,Value 1,"
                    "Value 1,Value 2,Value 1,Value 1,Value 1,Value 2"
                ),
            ),
            TicketRecord(
                source="log",
                external_id="Case 2",
                number="Case 2",
                raw_status="Wait",
                state=S.WAITING_OTHER,
                priority_raw="Value 1",
                category="Value 3",
                team="Value 1",
                assignee="Value 6",
                created_at=at("2012-11-01 09:00"),
                updated_at=at("2012-11-01 10:00"),
                reassignment_count=0,
                reopen_count=0,
                raw=_raw(
                    "Case 2,Wait,Value 6,2012-11-01T10:00:00+00:00,Value 1,Value 2,Value 3,"
                    "Value 1,Value 1,Value 1,Value 1,Value 1,Value 1"
                ),
            ),
        ],
    )


def test_mini_log_events() -> None:
    got = read(MINI, "helpdesk")
    c1, c2 = "Case 1", "Case 2"
    take, resolve = "Take in charge ticket", "Resolve ticket"
    assert_events(
        got.events,
        [
            ev(c1, "2012-10-09 14:50:17", 0, F.STATE, None, "new", "Value 1"),
            ev(c1, "2012-10-09 14:50:17", 0, F.STATUS, None, "Assign seriousness", "Value 1"),
            ev(c1, "2012-10-09 14:50:17", 0, F.TEAM, None, "Value 1", "Value 1"),
            ev(c1, "2012-10-09 14:50:17", 0, F.PRIORITY, None, "Value 1", "Value 1"),
            # the exact duplicate of this row is dropped
            ev(c1, "2012-10-09 14:51:01", 1, F.STATE, "new", "in_progress", "Value 2"),
            ev(c1, "2012-10-09 14:51:01", 1, F.STATUS, "Assign seriousness", take, "Value 2"),
            ev(c1, "2012-10-09 14:51:01", 1, F.ASSIGNEE, None, "Value 2", "Value 2"),
            ev(c1, "2012-10-10 08:00", 2, F.STATE, "in_progress", "waiting_other", "Value 2"),
            ev(c1, "2012-10-10 08:00", 2, F.STATUS, take, "Wait", "Value 2"),
            ev(c1, "2012-10-12 15:00", 3, F.STATE, "waiting_other", "resolved", "Value 3"),
            ev(c1, "2012-10-12 15:00", 3, F.STATUS, "Wait", resolve, "Value 3"),
            ev(c1, "2012-10-12 15:00", 3, F.TEAM, "Value 1", "Value 2", "Value 3"),
            ev(c1, "2012-10-12 15:00", 3, F.PRIORITY, "Value 1", "Value 2", "Value 3"),
            ev(c1, "2012-10-13 09:00", 4, F.STATE, "resolved", "in_progress", "Value 4"),
            ev(c1, "2012-10-13 09:00", 4, F.STATUS, resolve, take, "Value 4"),
            ev(c1, "2012-10-13 09:00", 4, F.ASSIGNEE, "Value 2", "Value 4", "Value 4"),
            ev(c1, "2012-10-13 10:00", 5, F.STATE, "in_progress", "resolved", "Value 4"),
            ev(c1, "2012-10-13 10:00", 5, F.STATUS, take, resolve, "Value 4"),
            # a tie: file order puts Closed after Resolve ticket
            ev(c1, "2012-10-13 10:00", 6, F.STATE, "resolved", "closed", "Value 1"),
            ev(c1, "2012-10-13 10:00", 6, F.STATUS, resolve, "Closed", "Value 1"),
            ev(c2, "2012-11-01 09:00", 0, F.STATE, None, "new", "Value 5"),
            ev(c2, "2012-11-01 09:00", 0, F.STATUS, None, "Insert ticket", "Value 5"),
            ev(c2, "2012-11-01 09:00", 0, F.TEAM, None, "Value 1", "Value 5"),
            ev(c2, "2012-11-01 09:00", 0, F.PRIORITY, None, "Value 1", "Value 5"),
            # rows out of order in the file
            ev(c2, "2012-11-01 09:30", 1, F.STATE, "new", "in_progress", "Value 6"),
            ev(c2, "2012-11-01 09:30", 1, F.STATUS, "Insert ticket", take, "Value 6"),
            ev(c2, "2012-11-01 09:30", 1, F.ASSIGNEE, None, "Value 6", "Value 6"),
            ev(c2, "2012-11-01 10:00", 2, F.INTERNAL_UPDATE, None, "Escalate to vendor", "Value 5"),
            ev(c2, "2012-11-01 10:00", 3, F.STATE, "in_progress", "waiting_other", "Value 6"),
            ev(c2, "2012-11-01 10:00", 3, F.STATUS, take, "Wait", "Value 6"),
        ],
    )


def test_mini_log_report() -> None:
    got = read(MINI, "helpdesk")
    assert got.rows_read == 12
    assert got.notes == {"duplicate rows dropped": 1}
    assert got.unknown_activities == {"Escalate to vendor": 1}
    assert got.unknown_statuses == {} and got.skipped == []


@pytest.mark.realdata
def test_real_log(shared_data: Path) -> None:
    got = read(shared_data / "helpdesk_it_ticketing.csv.gz", "helpdesk")
    assert len(got.tickets) == 4580
    assert got.rows_read == 21348
    assert got.notes == {"duplicate rows dropped": 127}
    assert got.skipped == [] and got.unknown_activities == {} and got.unknown_statuses == {}
    assert got.events["event_key"].is_unique
    assert got.tickets["priority"].isna().all()
