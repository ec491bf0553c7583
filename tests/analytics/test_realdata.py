"""Acceptance on real logs: the vectorised analytics against deliberately simple loops.

For every ticket of BPIC 2013 (incidents), the BPIC 2014 sample and the helpdesk log, the time
spent in each status must equal what a plain Python loop over the raw CSV rows gives, and the
tickets whose team sequence goes A→B→A must be exactly those the loop finds in the raw file.

The loops read the files with ``csv`` and ``datetime`` only; they share nothing with the
analytics. Per format they follow the file's documented meaning (docs/eventlog.md): which column
is the status and the team, how ties are ordered, which activities set a status.
"""

from __future__ import annotations

import csv
import gzip
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from analytics.log import TicketLog, prepare_log
from analytics.pingpong import ping_pong
from analytics.timein import time_in_values
from connectors.config import EventLogSourceConfig
from connectors.eventlog import read_event_log
from connectors.statusmap import DEFAULT_STATUS_MAPS, default_status_map
from tests.analytics.builders import as_categories

pytestmark = pytest.mark.realdata

Row = dict[str, str]
Change = tuple[datetime, str | None, str | None]
"""(instant, status set by the row or None, team set by the row or None)"""


def raw_rows(path: Path) -> Iterator[Row]:
    """The file's rows, exact duplicates dropped (the first one kept), as the importer does."""
    seen: set[tuple[str, ...]] = set()
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            key = tuple(row.values())
            if key in seen:
                continue
            seen.add(key)
            yield row


def loop_time_in_status(
    changes: dict[str, list[Change]], now: datetime
) -> dict[tuple[str, str], timedelta]:
    """Per (ticket, status): sum of (next status change - this one), the last one up to now."""
    out: dict[tuple[str, str], timedelta] = defaultdict(timedelta)
    for ticket, rows in changes.items():
        current: str | None = None
        since: datetime | None = None
        for at, status, _team in rows:
            if status is None:
                continue
            if current is not None and since is not None:
                out[(ticket, current)] += at - since
            current, since = status, at
        if current is not None and since is not None:
            out[(ticket, current)] += now - since
    return dict(out)


def loop_pingpong(changes: dict[str, list[Change]]) -> set[str]:
    """Tickets whose team sequence (blanks skipped, repeats merged) has g[j] == g[j-2]."""
    found = set()
    for ticket, rows in changes.items():
        teams: list[str] = []
        for _at, _status, team in rows:
            if team and (not teams or teams[-1] != team):
                teams.append(team)
        for j in range(2, len(teams)):
            if teams[j] == teams[j - 2]:
                found.add(ticket)
                break
    return found


def group_sorted(
    rows: Iterator[Row],
    ticket_col: str,
    parse: Callable[[Row, int], tuple[tuple[object, ...], Change]],
) -> dict[str, list[Change]]:
    """Rows per ticket, ordered by the sort key ``parse`` returns."""
    keyed: dict[str, list[tuple[tuple[object, ...], Change]]] = defaultdict(list)
    for line, row in enumerate(rows, start=2):
        keyed[row[ticket_col].strip()].append(parse(row, line))
    return {t: [c for _k, c in sorted(items, key=lambda kc: kc[0])] for t, items in keyed.items()}


def analytics_time_in_status(log: TicketLog, now: datetime) -> dict[tuple[str, str], timedelta]:
    frame = time_in_values(log, field="status", now=pd.Timestamp(now)).frame
    known = frame[frame["value"].notna()]
    return {
        (t, v): d.to_pytimedelta()
        for t, v, d in zip(known["ticket_id"], known["value"], known["time"], strict=True)
    }


def prepared(shared_data: Path, fmt: str, filename: str, *, coded: bool = False) -> TicketLog:
    config = EventLogSourceConfig(name=fmt, kind="eventlog", format=fmt)
    imported = read_event_log(
        shared_data / filename, config=config, status_map=default_status_map(fmt)
    )
    tickets, events = imported.tickets, imported.events
    if coded:  # text columns as categoricals, as the warehouse hands them over
        tickets, events = as_categories(tickets), as_categories(events, sort=False)
    return prepare_log(tickets, events)


def assert_same_times(
    ours: dict[tuple[str, str], timedelta], loop: dict[tuple[str, str], timedelta]
) -> None:
    assert ours.keys() == loop.keys()
    wrong = {k: (ours[k], loop[k]) for k in loop if ours[k] != loop[k]}
    assert wrong == {}


# --- BPIC 2013 incidents ---------------------------------------------------------------------

BPIC2013 = "bpic2013_incidents.csv.gz"
NOW_2013 = datetime(2012, 6, 1, tzinfo=UTC)


def _bpic2013_row(row: Row, line: int) -> tuple[tuple[object, ...], Change]:
    at = datetime.fromisoformat(row["Change Date+Time"]).astimezone(UTC)
    status, sub = row["Status"].strip(), row["Sub Status"].strip()
    return (at, line), (at, f"{status}/{sub}" if sub else status, row["Involved ST"].strip())


@pytest.fixture(scope="module")
def bpic2013(shared_data: Path) -> tuple[TicketLog, dict[str, list[Change]]]:
    changes = group_sorted(raw_rows(shared_data / BPIC2013), "SR Number", _bpic2013_row)
    return prepared(shared_data, "bpic2013", BPIC2013), changes


def test_bpic2013_time_in_each_status_per_ticket(
    bpic2013: tuple[TicketLog, dict[str, list[Change]]],
) -> None:
    log, changes = bpic2013
    ours = analytics_time_in_status(log, NOW_2013)
    loop = loop_time_in_status(changes, NOW_2013)
    assert len(changes) == log.n_tickets == 7554
    assert {t for t, _ in ours} == set(changes)  # every ticket is compared
    assert_same_times(ours, loop)


def test_bpic2013_categorical_input_matches_the_loop(
    shared_data: Path, bpic2013: tuple[TicketLog, dict[str, list[Change]]]
) -> None:
    _, changes = bpic2013
    log = prepared(shared_data, "bpic2013", BPIC2013, coded=True)
    assert log.ev_values.is_coded and log.text("team").is_coded
    ours = analytics_time_in_status(log, NOW_2013)
    assert {t for t, _ in ours} == set(changes)
    assert_same_times(ours, loop_time_in_status(changes, NOW_2013))
    assert set(ping_pong(log, now=NOW_2013).frame["ticket_id"]) == loop_pingpong(changes)


def test_bpic2013_team_pingpong_tickets(
    bpic2013: tuple[TicketLog, dict[str, list[Change]]],
) -> None:
    log, changes = bpic2013
    expected = loop_pingpong(changes)
    found = ping_pong(log, now=NOW_2013).frame
    assert len(found) == len(expected) > 0
    assert set(found["ticket_id"]) == expected


# --- BPIC 2014 sample --------------------------------------------------------------------------

BPIC2014 = "bpic2014_incident_activity_sample4000.csv.gz"
NOW_2014 = datetime(2014, 5, 1, tzinfo=UTC)
AMSTERDAM = ZoneInfo("Europe/Amsterdam")
STATUS_2014 = {k.casefold() for k in DEFAULT_STATUS_MAPS["bpic2014"]}
TEAM_ACTIVITIES_2014 = {"open", "assignment", "reassignment"}


def _bpic2014_row(row: Row, line: int) -> tuple[tuple[object, ...], Change]:
    naive = datetime.strptime(row["DateStamp"].strip(), "%Y-%m-%d %H:%M:%S")
    local = naive.replace(tzinfo=AMSTERDAM)  # fold=0: an ambiguous hour is read as summer time
    at = local.astimezone(UTC)
    assert at.astimezone(AMSTERDAM).replace(tzinfo=None) == naive, "nonexistent local time"
    activity = " ".join(row["IncidentActivity_Type"].split())
    number = row["IncidentActivity_Number"].strip()
    status = activity if activity.casefold() in STATUS_2014 else None
    team = row["Assignment Group"].strip() if activity.casefold() in TEAM_ACTIVITIES_2014 else None
    # ties: the activity number orders them (shorter first, then by text), then the file line
    return (at, len(number), number, line), (at, status, team)


@pytest.fixture(scope="module")
def bpic2014(shared_data: Path) -> tuple[TicketLog, dict[str, list[Change]]]:
    changes = group_sorted(raw_rows(shared_data / BPIC2014), "Incident ID", _bpic2014_row)
    return prepared(shared_data, "bpic2014", BPIC2014), changes


def test_bpic2014_time_in_each_status_per_ticket(
    bpic2014: tuple[TicketLog, dict[str, list[Change]]],
) -> None:
    log, changes = bpic2014
    ours = analytics_time_in_status(log, NOW_2014)
    loop = loop_time_in_status(changes, NOW_2014)
    assert log.n_tickets == len(changes) == 4000
    assert len({t for t, _ in loop}) == 4000  # every ticket has a status-setting activity
    assert_same_times(ours, loop)


def test_bpic2014_team_pingpong_tickets(
    bpic2014: tuple[TicketLog, dict[str, list[Change]]],
) -> None:
    log, changes = bpic2014
    expected = loop_pingpong(changes)
    found = ping_pong(log, now=NOW_2014).frame
    assert len(found) == len(expected) > 0
    assert set(found["ticket_id"]) == expected


# --- helpdesk ----------------------------------------------------------------------------------

HELPDESK = "helpdesk_it_ticketing.csv.gz"
NOW_HELPDESK = datetime(2014, 2, 1, tzinfo=UTC)
STATUS_HELPDESK = {k.casefold() for k in DEFAULT_STATUS_MAPS["helpdesk"]}


def _helpdesk_row(row: Row, line: int) -> tuple[tuple[object, ...], Change]:
    at = datetime.fromisoformat(row["Complete Timestamp"]).astimezone(UTC)
    activity = " ".join(row["Activity"].split())
    status = activity if activity.casefold() in STATUS_HELPDESK else None
    return (at, line), (at, status, row["workgroup"].strip())


@pytest.fixture(scope="module")
def helpdesk(shared_data: Path) -> tuple[TicketLog, dict[str, list[Change]]]:
    changes = group_sorted(raw_rows(shared_data / HELPDESK), "Case ID", _helpdesk_row)
    return prepared(shared_data, "helpdesk", HELPDESK), changes


def test_helpdesk_time_in_each_status_per_ticket(
    helpdesk: tuple[TicketLog, dict[str, list[Change]]],
) -> None:
    log, changes = helpdesk
    ours = analytics_time_in_status(log, NOW_HELPDESK)
    loop = loop_time_in_status(changes, NOW_HELPDESK)
    assert log.n_tickets == len(changes) == 4580
    assert_same_times(ours, loop)


def test_helpdesk_team_pingpong_tickets(
    helpdesk: tuple[TicketLog, dict[str, list[Change]]],
) -> None:
    log, changes = helpdesk
    expected = loop_pingpong(changes)
    found = ping_pong(log, now=NOW_HELPDESK).frame
    assert len(found) == len(expected) > 0
    assert set(found["ticket_id"]) == expected
