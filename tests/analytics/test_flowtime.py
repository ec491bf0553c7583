"""Lead and cycle time under both reopen policies, their percentiles, and the flow rates."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analytics.clock import Calendars
from analytics.flowtime import cycle_time_summary, flow_rates, ticket_flow_times
from analytics.log import TicketLog, prepare_log
from analytics.result import Window
from analytics.settings import FlowSettings
from tests.analytics.builders import NOW, make_events, make_tickets, ts
from tests.analytics.scenario import EVENTS, TICKETS

H = pd.Timedelta(hours=1)
WEEK = Window(start=ts("2024-03-08T00:00Z"), end=NOW)


@pytest.fixture(scope="module")
def log() -> TicketLog:
    return prepare_log(TICKETS, EVENTS)


def test_last_stop_policy(log: TicketLog) -> None:
    result = ticket_flow_times(log, now=NOW, calendars=Calendars())
    f = result.frame.set_index("ticket_id")
    # A: created Mon 09:00, started Mon 10:00, resolved Wed 15:00, reopened Thu 09:00, resolved
    # again Thu 11:00 (and closed Friday): the stop is Thursday 11:00
    assert f.loc["A", "stop"] == ts("2024-03-14T11:00Z")
    assert f.loc["A", "first_stop"] == ts("2024-03-13T15:00Z")
    assert f.loc["A", "reopens"] == 1
    assert f.loc["A", "lead_time"] == 74 * H
    assert f.loc["A", "cycle_time"] == 73 * H
    # business (weekdays 08-17 UTC): Mon 09-17, Tue, Wed, Thu 08-11 = 8 + 9 + 9 + 3
    assert f.loc["A", "business_lead_time"] == 29 * H
    # B and C are open: no stop, no lead time
    assert pd.isna(f.loc["B", "stop"]) and pd.isna(f.loc["B", "lead_time"])
    assert f.loc["B", "first_start"] == ts("2024-03-12T08:00Z")
    assert f.loc["C", "first_start"] == ts("2024-03-14T12:00Z")  # derived interval
    # D: resolved without a known history: lead time from creation, never started
    assert f.loc["D", "lead_time"] == 24 * H
    assert pd.isna(f.loc["D", "cycle_time"])
    assert result.n == 4
    assert result.notes == ("reopen policy: last_stop",)


def test_sum_of_cycles_policy_leaves_out_the_time_spent_resolved(log: TicketLog) -> None:
    settings = FlowSettings(reopen_policy="sum_of_cycles")
    f = ticket_flow_times(log, now=NOW, settings=settings).frame.set_index("ticket_id")
    # cycle 1: Mon 09:00 (created) / 10:00 (started) -> Wed 15:00; cycle 2: Thu 09-11
    assert f.loc["A", "lead_time"] == (54 + 2) * H
    assert f.loc["A", "cycle_time"] == (53 + 2) * H
    assert f.loc["D", "lead_time"] == 24 * H
    assert pd.isna(f.loc["D", "cycle_time"])


def test_a_reopened_ticket_is_not_stopped_until_it_is_done_again(log: TicketLog) -> None:
    f = ticket_flow_times(log, now=ts("2024-03-14T10:00Z")).frame.set_index("ticket_id")
    assert pd.isna(f.loc["A", "stop"])
    assert f.loc["A", "state"] == "in_progress"
    assert f.loc["A", "reopens"] == 1


def test_cycle_time_summary_nearest_rank_percentiles(log: TicketLog) -> None:
    result = cycle_time_summary(log, now=NOW, window=WEEK)
    f = result.frame.set_index("metric")
    # stopped in the window: D (lead 24 h) and A (lead 74 h); only A was ever started
    assert f.loc["lead_time", "n"] == 2
    assert f.loc["lead_time", "p50"] == 24 * H  # nearest rank: x[ceil(0.5 * 2) - 1]
    assert f.loc["lead_time", "p85"] == 74 * H
    assert f.loc["lead_time", "sle"] == 74 * H
    assert f.loc["lead_time", "mean"] == 49 * H
    assert f.loc["cycle_time", "n"] == 1
    assert f.loc["cycle_time", "p95"] == 73 * H
    assert result.n == 2
    assert result.window == WEEK


def test_cycle_time_summary_by_group_and_linear_method(log: TicketLog) -> None:
    f = cycle_time_summary(log, now=NOW, window=WEEK, by="priority").frame
    lead = f[f["metric"] == "lead_time"].set_index("priority")
    assert lead.loc[2, "n"] == 1 and lead.loc[2, "p50"] == 74 * H
    assert lead.loc[3, "n"] == 1 and lead.loc[3, "p50"] == 24 * H
    linear = cycle_time_summary(
        log, now=NOW, window=WEEK, settings=FlowSettings(percentile_method="linear")
    ).frame.set_index("metric")
    assert linear.loc["lead_time", "p50"] == 49 * H  # halfway between 24 h and 74 h


def test_default_window_is_the_trailing_window_days(log: TicketLog) -> None:
    result = cycle_time_summary(log, now=NOW, settings=FlowSettings(window_days=2))
    assert result.window == Window(start=ts("2024-03-13T12:00Z"), end=NOW)
    assert result.n == 1  # only A stopped in the last two days


def test_flow_rates(log: TicketLog) -> None:
    result = flow_rates(log, now=NOW, window=WEEK)
    f = result.frame.set_index("metric")
    # first stops in the window: A (Wed) and D (Tue); A was reopened
    assert (f.loc["reopen_rate", "numerator"], f.loc["reopen_rate", "denominator"]) == (1, 2)
    assert f.loc["reopen_rate", "rate"] == 0.5
    # stopped in the window: A went L1 -> L2 and was resolved by L2; D stayed with L2
    far = f.loc["first_assignment_resolution_rate"]
    assert (far["numerator"], far["denominator"]) == (1, 2)
    reassign = f.loc["mean_reassignments"]
    assert (reassign["numerator"], reassign["denominator"], reassign["rate"]) == (1, 2, 0.5)


def test_rates_with_an_empty_window_are_nan(log: TicketLog) -> None:
    empty = Window(start=ts("2020-01-01T00:00Z"), end=ts("2020-01-02T00:00Z"))
    f = flow_rates(log, now=NOW, window=empty).frame
    assert f["denominator"].tolist() == [0, 0, 0]
    assert all(math.isnan(r) for r in f["rate"])


def test_business_cycle_time_of_weekend_work_is_zero_not_missing() -> None:
    tickets = make_tickets(
        {"external_id": "W", "state": "resolved", "created_at": "2024-03-09T09:00Z"},
        {"external_id": "I", "state": "resolved", "created_at": "2024-03-12T09:00Z"},
    )
    events = make_events(
        ("W", "2024-03-09T09:00Z", "state", "new"),  # Saturday
        ("W", "2024-03-09T10:00Z", "state", "in_progress"),
        ("W", "2024-03-09T12:00Z", "state", "resolved"),
        ("I", "2024-03-12T09:00Z", "state", "new"),
        ("I", "2024-03-12T10:00Z", "state", "in_progress"),
        ("I", "2024-03-12T10:00Z", "state", "resolved"),  # closed in the call: start = stop
    )
    result = cycle_time_summary(
        prepare_log(tickets, events), now=NOW, window=WEEK, calendars=Calendars()
    )
    f = result.frame.set_index("metric")
    assert f.loc["cycle_time", "n"] == 1 and f.loc["cycle_time", "p50"] == 2 * H
    assert f.loc["business_cycle_time", "n"] == 1
    assert f.loc["business_cycle_time", "p50"] == pd.Timedelta(0)
    assert result.notes[2] == "1 ticket(s) with start = stop left out of the cycle time"
