"""Throughput, arrivals/departures, WIP and cumulative flow per local day, zero days kept."""

from __future__ import annotations

import pandas as pd
import pytest

from analytics.daily import arrivals_departures, cumulative_flow, throughput, wip_per_day
from analytics.log import TicketLog, prepare_log
from analytics.result import Window
from analytics.settings import FlowSettings
from tests.analytics.builders import NOW, make_events, make_tickets, ts
from tests.analytics.scenario import EVENTS, TICKETS

# Monday 11 to Friday 15 March 2024; now is Friday noon
WEEK = Window(start=ts("2024-03-11T00:00Z"), end=ts("2024-03-16T00:00Z"))
DAYS = [pd.Timestamp(f"2024-03-{d}") for d in range(11, 16)]


@pytest.fixture(scope="module")
def log() -> TicketLog:
    return prepare_log(TICKETS, EVENTS)


def test_throughput_per_day_keeps_zero_days(log: TicketLog) -> None:
    result = throughput(log, now=NOW, window=WEEK)
    assert result.frame["date"].tolist() == DAYS
    # D stopped Tuesday, A (after its reopen) Thursday
    assert result.frame["throughput"].tolist() == [0, 1, 0, 1, 0]
    assert result.n == 2


def test_throughput_per_week_says_how_many_days_it_covers(log: TicketLog) -> None:
    frame = throughput(log, now=NOW, window=WEEK, freq="W").frame
    assert frame.to_dict("list") == {
        "date": [pd.Timestamp("2024-03-11")],
        "days": [5],
        "throughput": [2],
    }


def test_arrivals_departures_and_reopens(log: TicketLog) -> None:
    frame = arrivals_departures(log, now=NOW, window=WEEK).frame
    assert frame["arrivals"].tolist() == [2, 1, 0, 1, 0]
    assert frame["departures"].tolist() == [0, 1, 0, 1, 0]
    assert frame["reopened"].tolist() == [0, 0, 0, 1, 0]
    assert frame["net_flow"].tolist() == [2, 0, 0, 0, 0]


def test_wip_at_the_end_of_each_day(log: TicketLog) -> None:
    result = wip_per_day(log, now=NOW, window=WEEK)
    assert result.n == 3  # A, B and C were open at some point; D only ever resolved
    frame = result.frame
    # Mon: A; Tue: A (waiting) and B; Wed: B (A resolved); Thu: B and C; Fri (now): B and C
    assert frame["wip"].tolist() == [1, 2, 1, 2, 2]
    assert frame["waiting"].tolist() == [0, 1, 1, 1, 1]


def test_cumulative_flow_bands(log: TicketLog) -> None:
    frame = cumulative_flow(log, now=NOW, window=WEEK).frame
    assert frame["new"].tolist() == [0, 0, 0, 0, 0]
    assert frame["in_progress"].tolist() == [1, 1, 0, 1, 1]
    assert frame["waiting_customer"].tolist() == [0, 1, 0, 0, 0]
    assert frame["waiting_supplier"].tolist() == [0, 0, 1, 1, 1]
    assert frame["resolved"].tolist() == [0, 1, 2, 2, 1]
    assert frame["closed"].tolist() == [0, 0, 0, 0, 1]
    assert frame["arrived"].tolist() == [2, 3, 3, 4, 4]
    assert frame["departed"].tolist() == [0, 1, 1, 2, 2]


def test_days_follow_the_time_zone_across_a_dst_change() -> None:
    # resolved at 23:30 UTC on Saturday 30 March = 00:30 Sunday in Amsterdam (still CET); the
    # next one at 22:30 UTC on Sunday = 00:30 Monday (CEST): the Sunday has 23 hours
    tickets = make_tickets(
        {"external_id": "X", "created_at": "2024-03-29T10:00Z"},
        {"external_id": "Y", "created_at": "2024-03-29T10:00Z"},
    )
    events = make_events(
        ("X", "2024-03-29T10:00Z", "state", "in_progress"),
        ("X", "2024-03-30T23:30Z", "state", "resolved"),
        ("Y", "2024-03-29T10:00Z", "state", "in_progress"),
        ("Y", "2024-03-31T22:30Z", "state", "resolved"),
    )
    log = prepare_log(tickets, events)
    window = Window(start=ts("2024-03-29T23:00Z"), end=ts("2024-04-01T22:00Z"))
    now = ts("2024-04-02T00:00Z")
    amsterdam = throughput(
        log, now=now, window=window, settings=FlowSettings(timezone="Europe/Amsterdam")
    )
    assert amsterdam.frame.to_dict("list") == {
        "date": [
            pd.Timestamp("2024-03-30"),
            pd.Timestamp("2024-03-31"),
            pd.Timestamp("2024-04-01"),
        ],
        "throughput": [0, 1, 1],
    }
    # in UTC the same stops fall on the 30th and the 31st (the window spans four UTC dates)
    utc = throughput(log, now=now, window=window).frame
    assert utc["date"].tolist() == [pd.Timestamp(f"2024-03-{d}") for d in (29, 30, 31)] + [
        pd.Timestamp("2024-04-01")
    ]
    assert utc["throughput"].tolist() == [0, 1, 1, 0]


def test_weeks_can_start_on_sunday(log: TicketLog) -> None:
    settings = FlowSettings(week_start="SUN")
    frame = throughput(log, now=NOW, window=WEEK, freq="W", settings=settings).frame
    assert frame["date"].tolist() == [pd.Timestamp("2024-03-10")]
