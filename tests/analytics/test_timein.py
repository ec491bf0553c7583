"""Time in state / status / team per ticket: revisits, reopens, ties, ``now``, business time."""

from __future__ import annotations

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from analytics import timein
from analytics.clock import Calendars, WorkCalendar
from analytics.frames import STATES
from analytics.log import prepare_log
from analytics.synthetic import synthetic_desk
from analytics.timein import time_in_state, time_in_values
from tests.analytics.builders import NOW, make_events, make_tickets, ts
from tests.analytics.scenario import EVENTS, TICKETS, shuffled


def hours(*values: float) -> list[pd.Timedelta]:
    return [pd.Timedelta(hours=v) for v in values]


def test_time_in_state_exact_with_reopen_ties_and_tickets_without_events() -> None:
    result = time_in_state(prepare_log(TICKETS, EVENTS), now=NOW)
    frame = result.frame.set_index("ticket_id")
    # A: new 1 h; in progress 24 + 6 + 2 h; waiting on the customer 23 h; resolved twice
    #    (18 h before the reopen, 22 h after); closed from Friday 09:00 to now (12:00)
    assert frame.loc["A", list(STATES)].tolist() == hours(1, 32, 23, 0, 0, 40, 3, 0)
    # B: "new" and "in progress" at the same instant (new lasts 0), waiting since Wed 08:00
    assert frame.loc["B", list(STATES)].tolist() == hours(0, 24, 0, 52, 0, 0, 0, 0)
    # C: no events: in progress since creation; D: no events, resolved since resolved_at
    assert frame.loc["C", "in_progress"] == pd.Timedelta(hours=24)
    assert frame.loc["D", list(STATES)].tolist() == hours(0, 0, 0, 0, 0, 75, 0, 0)
    assert result.n == 4
    # every ticket's times add up to the span from its first known state to now
    totals = frame[list(STATES)].sum(axis=1)
    assert totals.tolist() == hours(99, 76, 24, 75)


def test_unsorted_events_give_identical_times() -> None:
    a = time_in_state(prepare_log(TICKETS, EVENTS), now=NOW).frame
    b = time_in_state(prepare_log(shuffled(TICKETS), shuffled(EVENTS)), now=NOW).frame
    a = a.sort_values("ticket_id").reset_index(drop=True)
    b = b.sort_values("ticket_id").reset_index(drop=True)
    assert_frame_equal(a, b)


def test_now_cuts_the_history() -> None:
    # on Tuesday noon A was waiting on the customer since 10:00; later events do not count
    frame = time_in_state(prepare_log(TICKETS, EVENTS), now=ts("2024-03-12T12:00Z")).frame
    a = frame.set_index("ticket_id").loc["A"]
    assert [a["new"], a["in_progress"], a["waiting_customer"], a["resolved"]] == hours(1, 24, 2, 0)
    # C did not exist yet
    assert "C" not in set(frame["ticket_id"])


def test_business_time_in_state() -> None:
    result = time_in_state(prepare_log(TICKETS, EVENTS), now=NOW, calendars=Calendars())
    a = result.frame.set_index("ticket_id").loc["A"]
    # default calendar: weekdays 08:00-17:00 UTC. In progress: Mon 10-17 + Tue 08-10,
    # Wed 09-15, Thu 09-11 = 7 + 2 + 6 + 2
    assert a["business_in_progress"] == pd.Timedelta(hours=17)
    # waiting: Tue 10-17 + Wed 08-09
    assert a["business_waiting_customer"] == pd.Timedelta(hours=8)
    assert result.calendars == Calendars()


def test_time_in_values_long_format_with_visits() -> None:
    result = time_in_values(prepare_log(TICKETS, EVENTS), field="state", now=NOW)
    a = result.frame[result.frame["ticket_id"] == "A"].set_index("value")
    assert a.loc["in_progress", "visits"] == 3
    assert a.loc["in_progress", "time"] == pd.Timedelta(hours=32)
    assert a.loc["in_progress", "first_entered"] == ts("2024-03-11T10:00Z")
    assert a.loc["in_progress", "last_left"] == ts("2024-03-14T11:00Z")
    assert pd.isna(a.loc["closed", "last_left"])  # still closed
    assert a.loc["resolved", "visits"] == 2


def test_time_in_team_uses_each_teams_calendar() -> None:
    nl = WorkCalendar(name="nl", timezone="Europe/Amsterdam")
    cals = Calendars(by_team={"L2": nl})
    tickets = make_tickets({"external_id": "T", "created_at": "2024-03-11T07:00Z"})
    events = make_events(
        ("T", "2024-03-11T07:00Z", "team", "L1"),  # UTC calendar: Mon 08-17 counts from 08:00
        ("T", "2024-03-11T16:00Z", "team", "L2"),  # Amsterdam: 17:00 local, closed already
        ("T", "2024-03-12T08:00Z", "team", "L1"),  # Tue 09:00 local: L2 worked 08:00-09:00 local
    )
    frame = time_in_values(
        prepare_log(tickets, events), field="team", now=ts("2024-03-12T09:00Z"), calendars=cals
    ).frame.set_index("value")
    assert frame.loc["L1", "time"] == pd.Timedelta(hours=10)
    assert frame.loc["L1", "business_time"] == pd.Timedelta(hours=9)  # Mon 08-16 + Tue 08-09
    assert frame.loc["L2", "time"] == pd.Timedelta(hours=16)
    assert frame.loc["L2", "business_time"] == pd.Timedelta(hours=1)
    assert frame.loc["L1", "visits"] == 2


def test_calendar_time_across_a_dst_change_is_elapsed_time() -> None:
    # Amsterdam clocks jump forward on 31 March 2024; a state held from Saturday noon to Monday
    # noon local time lasted 47 hours
    tickets = make_tickets({"external_id": "T", "created_at": "2024-03-30T11:00Z"})
    events = make_events(
        ("T", pd.Timestamp("2024-03-30 12:00", tz="Europe/Amsterdam"), "state", "new"),
        ("T", pd.Timestamp("2024-04-01 12:00", tz="Europe/Amsterdam"), "state", "in_progress"),
    )
    frame = time_in_state(prepare_log(tickets, events), now=ts("2024-04-02T00:00Z")).frame
    assert frame.loc[0, "new"] == pd.Timedelta(hours=47)


@pytest.mark.parametrize("field", ["state", "status", "team", "assignee"])
def test_dense_and_sorted_grouping_agree(field: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # a (ticket x value) table for small logs, a sort for large ones: the same frame either way
    desk = synthetic_desk(600, seed=11, days=60)
    log = prepare_log(desk.tickets, desk.events)
    cals = Calendars()
    monkeypatch.setattr(timein, "_DENSE_SLACK", 10**12)
    dense = time_in_values(log, field=field, now=desk.now, calendars=cals)
    monkeypatch.setattr(timein, "_DENSE_SLACK", -(10**12))
    by_sort = time_in_values(log, field=field, now=desk.now, calendars=cals)
    assert len(dense.frame) >= len(log.tickets) and dense.n == by_sort.n
    assert_frame_equal(dense.frame, by_sort.frame)
    # revisits add up; a value still current has no last_left
    assert (dense.frame["visits"] >= 1).all() and dense.frame["last_left"].isna().any()
    if field != "status":  # the synthetic desk has no status events: one derived value each
        assert dense.frame["visits"].max() > 1 and len(dense.frame) > len(log.tickets)
