"""Stale calls: business-time thresholds per priority, real activity only, dead after 45 days."""

from __future__ import annotations

from datetime import time

import pandas as pd
import pytest

from analytics.clock import Calendars, WorkCalendar
from analytics.log import TicketLog, prepare_log
from analytics.settings import StaleSettings
from analytics.stale import stale_calls
from tests.analytics.builders import NOW, make_events, make_tickets, ts

H = pd.Timedelta(hours=1)


def _desk() -> TicketLog:
    # now = Friday 2024-03-15 12:00 UTC; default calendar: weekdays 08:00-17:00 UTC
    tickets = make_tickets(
        {"external_id": "p1-stale", "priority": 1, "state": "in_progress"},
        {"external_id": "p1-fresh", "priority": 1, "state": "in_progress"},
        {"external_id": "p2-stale", "priority": 2, "state": "in_progress"},
        {"external_id": "p3-notes", "priority": 3, "state": "in_progress"},
        {"external_id": "p3-siebel", "priority": 3, "state": "in_progress"},
        {"external_id": "p4-dead", "priority": 4, "state": "waiting_customer"},
        {"external_id": "closed", "priority": 1, "state": "closed"},
        {"external_id": "untouched", "priority": None, "created_at": "2024-03-11T12:00Z"},
    )
    events = make_events(
        ("p1-stale", "2024-03-01T09:00Z", "state", "new"),
        ("p1-stale", "2024-03-15T07:00Z", "state", "in_progress"),  # 4 business hours ago
        ("p1-fresh", "2024-03-01T09:00Z", "state", "new"),
        ("p1-fresh", "2024-03-15T09:00Z", "state", "in_progress"),  # 3 business hours ago
        ("p2-stale", "2024-03-01T09:00Z", "state", "in_progress"),
        ("p2-stale", "2024-03-14T12:00Z", "customer_update", "mail"),  # 5 + 4 = 9 h = 1 day
        ("p2-stale", "2024-03-15T11:00Z", "priority", "1"),  # not real activity
        ("p3-notes", "2024-03-11T12:00Z", "state", "in_progress"),
        ("p3-notes", "2024-03-15T10:00Z", "internal_update", "note"),  # not real activity
        ("p3-siebel", "2024-03-11T09:00Z", "state", "in_progress"),
        ("p3-siebel", "2024-03-15T10:00Z", "team", "L2", "Siebel"),  # a system user's touch
        ("p4-dead", "2024-01-15T09:00Z", "state", "waiting_customer"),
        ("closed", "2024-01-15T09:00Z", "state", "closed"),
    )
    return prepare_log(tickets, events)


def test_stale_calls_with_default_thresholds() -> None:
    result = stale_calls(_desk(), now=NOW)
    frame = result.frame.set_index("ticket_id")
    # dead first, then the most overdue; ties keep the input order
    assert list(frame.index) == ["p4-dead", "p3-notes", "untouched", "p1-stale", "p2-stale"]
    assert frame.loc["p1-stale", "business_age"] == 4 * H
    assert frame.loc["p1-stale", "threshold"] == 4 * H
    assert frame.loc["p1-stale", "overdue"] == 1.0
    assert frame.loc["p2-stale", "last_activity"] == "customer_update"
    assert frame.loc["p2-stale", "business_age"] == 9 * H
    assert frame.loc["p2-stale", "threshold"] == 9 * H  # one business day of 08-17
    # the internal note does not count: 36 business hours since Monday noon (3 days = 27 h)
    assert frame.loc["p3-notes", "business_age"] == 36 * H
    assert frame.loc["p3-notes", "last_activity_at"] == ts("2024-03-11T12:00Z")
    # without system actors configured the Siebel touch 2 h ago is real activity
    assert "p3-siebel" not in frame.index
    assert bool(frame.loc["p4-dead", "dead"])
    assert frame.loc["p4-dead", "reason"].startswith("dead? no real activity")
    assert frame.loc["untouched", "last_activity"] == "created"
    assert frame.loc["untouched", "threshold"] == 27 * H  # no priority: 3 business days
    assert result.n == 7  # every open ticket was examined, the closed one was not
    assert "p1-fresh" not in frame.index and "closed" not in frame.index


def test_system_actors_are_ignored() -> None:
    settings = StaleSettings(system_actors=frozenset({"Siebel"}))
    frame = stale_calls(_desk(), now=NOW, settings=settings).frame.set_index("ticket_id")
    # the last real activity is Monday 09:00: 8 + 9 + 9 + 9 + 4 = 39 business hours
    assert frame.loc["p3-siebel", "business_age"] == 39 * H
    assert frame.loc["p3-siebel", "last_activity"] == "state"


def test_thresholds_follow_the_teams_calendar() -> None:
    # a 24/7 team: 4 business hours are 4 calendar hours, also overnight
    always = WorkCalendar(
        name="24x7",
        workdays=(0, 1, 2, 3, 4, 5, 6),
        day_start=time(0),
        day_end=time(0),
    )
    tickets = make_tickets(
        {"external_id": "t", "priority": 1, "team": "ops", "state": "in_progress"}
    )
    events = make_events(("t", "2024-03-16T02:00Z", "state", "in_progress"))  # Saturday night
    log = prepare_log(tickets, events)
    now = ts("2024-03-16T06:00Z")
    assert stale_calls(log, now=now).frame.empty  # office calendar: no business time yet
    frame = stale_calls(log, now=now, calendars=Calendars(by_team={"ops": always})).frame
    assert frame["business_age"].tolist() == [4 * H]


def test_dead_after_is_calendar_time_and_configurable() -> None:
    log = _desk()
    short = StaleSettings(dead_after=pd.Timedelta(days=3).to_pytimedelta())
    frame = stale_calls(log, now=NOW, settings=short).frame.set_index("ticket_id")
    assert frame.loc["p3-notes", "dead"]  # four calendar days without real activity
    assert not frame.loc["p2-stale", "dead"]


def test_now_in_the_past_sees_the_history_as_it_was() -> None:
    frame = stale_calls(_desk(), now=ts("2024-03-15T08:30Z")).frame
    assert "p1-stale" not in set(frame["ticket_id"])  # only 30 business minutes then


@pytest.mark.parametrize("priority", [4, 5])
def test_low_priorities_wait_five_business_days(priority: int) -> None:
    tickets = make_tickets({"external_id": "t", "priority": priority, "state": "in_progress"})
    events = make_events(("t", "2024-03-08T12:00Z", "state", "in_progress"))
    frame = stale_calls(prepare_log(tickets, events), now=NOW).frame
    assert frame["threshold"].tolist() == [45 * H]
    assert frame["business_age"].tolist() == [45 * H]
