"""Throughput, arrivals/departures, WIP and cumulative flow per local day, zero days kept."""

from __future__ import annotations

import pandas as pd
import pytest

from analytics.daily import (
    MILESTONE_COLUMNS,
    arrivals_departures,
    cumulative_flow,
    milestones,
    throughput,
    wip_per_day,
)
from analytics.errors import InvalidInputError
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


# milestones


def _desk_with_a_good_week() -> TicketLog:
    """O, the oldest (1 March), and Q are finished on Friday 15 March; P1 on Wednesday, P2 on
    Thursday; R stays open. Open at the end of Tue..Fri: 5, 4, 3, 1."""
    finished = {
        "O": ("2024-03-01", "2024-03-15T10:00Z"),
        "P1": ("2024-03-02", "2024-03-13T09:00Z"),
        "P2": ("2024-03-03", "2024-03-14T09:00Z"),
        "Q": ("2024-03-04", "2024-03-15T11:00Z"),
        "R": ("2024-03-05", None),
    }
    tickets = make_tickets(
        *(
            {
                "external_id": t,
                "created_at": f"{created}T09:00Z",
                "state": "in_progress" if stop is None else "resolved",
                "resolved_at": stop,
            }
            for t, (created, stop) in finished.items()
        )
    )
    rows: list[tuple[str, str, str, str]] = []
    for t, (created, stop) in finished.items():
        rows += [(t, f"{created}T09:00Z", "state", "new")]
        rows += [(t, f"{created}T10:00Z", "state", "in_progress")]
        if stop is not None:
            rows += [(t, stop, "state", "resolved")]
    return prepare_log(tickets, make_events(*rows))


def test_milestones_of_a_good_day_from_the_history() -> None:
    log = _desk_with_a_good_week()
    day = pd.Timestamp("2024-03-15").date()
    result = milestones(log, day=day, now=NOW, record_days=5, streak_days=3, stale=STALE_NONE)
    frame = result.frame
    assert list(frame.columns) == list(MILESTONE_COLUMNS)
    assert frame[["kind", "text", "value"]].to_dict("records") == [
        {
            "kind": "throughput_record",
            "text": "2 tickets finished: the most in 5 days (previous best 1 on 2024-03-13)",
            "value": 2.0,
        },
        {"kind": "backlog_down", "text": "backlog down 3 days in a row: 5 → 1 open", "value": 3.0},
        {
            "kind": "oldest_resolved",
            "text": "the oldest open ticket was finished after 14.0 days",
            "value": 14.04,
        },
        {"kind": "no_stale_calls", "text": "no stale calls among 1 open ticket", "value": 1.0},
    ]
    oldest = frame.iloc[2]
    assert (oldest["source"], oldest["ticket_id"]) == ("desk", "O")
    assert oldest["at"] == ts("2024-03-15T10:00Z")
    assert frame["ticket_id"].isna().tolist() == [True, True, False, True]
    assert result.n == 4 and result.window == Window(
        start=ts("2024-03-15T00:00Z"), end=ts("2024-03-16T00:00Z")
    )


def test_milestones_need_the_record_window_covered_and_a_long_enough_streak() -> None:
    log = _desk_with_a_good_week()
    day = pd.Timestamp("2024-03-15").date()
    # the history begins on 1 March: a 90-day record cannot be told; a streak of 3 < 4
    frame = milestones(log, day=day, now=NOW, record_days=90, streak_days=4).frame
    assert frame["kind"].tolist() == ["oldest_resolved"]
    # Thursday: one finished, the same as Wednesday (no record); down 2 days in a row
    thursday = milestones(
        log, day=pd.Timestamp("2024-03-14").date(), now=NOW, record_days=3, streak_days=2
    ).frame
    assert thursday[["kind", "text"]].to_dict("records") == [
        {"kind": "backlog_down", "text": "backlog down 2 days in a row: 5 → 3 open"}
    ]


STALE_NONE = pd.DataFrame(columns=["source", "ticket_id", "last_activity_at", "dead"])


def test_milestones_of_today_from_the_state_now() -> None:
    log = prepare_log(TICKETS, EVENTS)
    stale = pd.DataFrame(
        {
            "source": ["desk", "desk", "desk"],
            "ticket_id": ["T1", "T2", "T3"],
            "last_activity_at": [ts("2024-01-30T06:00Z"), ts("2024-01-20T06:00Z"), NOW],
            "dead": [True, True, False],
        }
    )
    blockers = pd.DataFrame(
        {
            "source": ["desk"] * 5,
            "ticket_id": ["B1", "B1", "B1", "B2", "B3"],
            "blocker": ["sla_breached", "sla_breached", "queued", "sla_breached", "sla_risk"],
            "since": [
                ts("2024-03-15T08:30Z"),
                ts("2024-03-15T08:30Z"),
                ts("2024-03-15T01:00Z"),
                ts("2024-03-14T20:00Z"),
                ts("2024-03-15T09:00Z"),
            ],
        }
    )
    today = pd.Timestamp("2024-03-15").date()
    frame = milestones(log, day=today, now=NOW, stale=stale, blockers=blockers).frame
    assert frame[["kind", "text", "value", "ticket_id", "at"]].to_dict("records") == [
        {
            "kind": "sla_breached",
            "text": "passed its SLA target at 08:30 UTC",
            "value": 3.5,
            "ticket_id": "B1",
            "at": ts("2024-03-15T08:30Z"),
        },
        {
            "kind": "dead",
            "text": "no real activity for 45 days: now counts as dead?",
            "value": 45.25,
            "ticket_id": "T1",
            "at": ts("2024-03-15T06:00Z"),
        },
    ]
    # the state now says nothing about an earlier day, and a later day has not begun
    yesterday = pd.Timestamp("2024-03-14").date()
    assert milestones(log, day=yesterday, now=NOW, stale=STALE_NONE, blockers=blockers).n == 0
    with pytest.raises(InvalidInputError, match="has not begun"):
        milestones(log, day=pd.Timestamp("2024-03-16").date(), now=NOW)
