"""The whole report on a synthetic desk: every result carries its metadata, and the metrics
agree with each other where they must."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from analytics.blockers import BLOCKER_ORDER
from analytics.frames import EVENT_COLUMNS, OPEN_STATES, STATES, TICKET_COLUMNS
from analytics.intervals import field_intervals
from analytics.log import TicketLog, prepare_log
from analytics.report import FlowReport, flow_report
from analytics.synthetic import SyntheticDesk, synthetic_desk


@pytest.fixture(scope="module")
def desk() -> SyntheticDesk:
    return synthetic_desk(3000, seed=3, days=120)


@pytest.fixture(scope="module")
def log(desk: SyntheticDesk) -> TicketLog:
    return prepare_log(desk.tickets, desk.events)


@pytest.fixture(scope="module")
def report(log: TicketLog, desk: SyntheticDesk) -> FlowReport:
    return flow_report(log, now=desk.now)


def test_synthetic_desk_is_canonical_and_deterministic(desk: SyntheticDesk) -> None:
    assert tuple(desk.tickets.columns) == TICKET_COLUMNS
    assert tuple(desk.events.columns) == EVENT_COLUMNS
    assert 7 < len(desk.events) / len(desk.tickets) < 10
    again = synthetic_desk(3000, seed=3, days=120)
    assert_frame_equal(desk.events, again.events)
    assert set(desk.tickets["state"]) <= set(STATES)


def test_every_result_carries_its_metadata(report: FlowReport, desk: SyntheticDesk) -> None:
    for name, result in report.results().items():
        assert result.now == desk.now, name
        assert result.n >= 0 and result.n_of, name
        assert result.definition.startswith("docs/metrics.md#"), name
        json.dumps(result.meta())  # plain values only


def test_time_in_state_adds_up_to_each_tickets_known_span(
    report: FlowReport, log: TicketLog, desk: SyntheticDesk
) -> None:
    times = report.time_in_state.frame.set_index("ticket_id")[list(STATES)].sum(axis=1)
    first = field_intervals(log, "state").groupby("ticket_id")["start"].min()
    assert (times == (desk.now - first).reindex(times.index)).all()


def test_counts_agree_across_metrics(report: FlowReport) -> None:
    daily = report.throughput_daily
    assert daily.frame["throughput"].sum() == daily.n
    assert report.throughput_weekly.frame["throughput"].sum() == daily.n
    assert report.cumulative_flow.frame["departed"].iloc[-1] == daily.n
    assert report.arrivals_departures.frame["departures"].sum() == daily.n
    assert report.flow_efficiency.n == daily.n
    assert report.cycle_time_summary.n == daily.n
    # WIP per day is the sum of the open bands of the cumulative flow
    open_bands = report.cumulative_flow.frame[[s for s in STATES if s in OPEN_STATES]]
    assert (open_bands.sum(axis=1) == report.wip_per_day.frame["wip"]).all()
    # aging WIP lists exactly the open tickets, and the last WIP day counts them as of now
    assert report.aging_wip.n == report.stale_calls.n == len(report.aging_wip.frame)
    assert report.wip_per_day.frame["wip"].iloc[-1] == report.aging_wip.n


def test_blockers_concern_open_tickets_only(report: FlowReport) -> None:
    open_ids = set(report.aging_wip.frame["ticket_id"])
    for result in (report.flow_blockers, report.stale_calls, report.takeover_suggestions):
        assert set(result.frame["ticket_id"]) <= open_ids
    kinds = set(report.flow_blockers.frame["blocker"])
    assert {"waiting_customer", "sla_breached"} <= kinds <= set(BLOCKER_ORDER)


def test_efficiency_breakdown_adds_up(report: FlowReport) -> None:
    frame = report.flow_efficiency.frame
    parts = [
        "queued",
        "waiting_customer",
        "waiting_supplier",
        "waiting_other",
        "other_states",
        "done_before_reopen",
        "unassigned_while_active",
        "unknown",
    ]
    assert (frame[parts].sum(axis=1) == frame["wait"]).all()
    assert ((frame["efficiency"] >= 0) & (frame["efficiency"] <= 1)).all()


def test_the_same_report_from_shuffled_input(desk: SyntheticDesk, report: FlowReport) -> None:
    tickets = desk.tickets.sample(frac=1.0, random_state=1).reset_index(drop=True)
    events = desk.events.sample(frac=1.0, random_state=2).reset_index(drop=True)
    again = flow_report(prepare_log(tickets, events), now=desk.now)

    def by_ticket(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.sort_values("ticket_id").reset_index(drop=True)

    assert_frame_equal(by_ticket(again.time_in_state.frame), by_ticket(report.time_in_state.frame))
    assert_frame_equal(
        by_ticket(again.ticket_flow_times.frame), by_ticket(report.ticket_flow_times.frame)
    )
    assert_frame_equal(again.cumulative_flow.frame, report.cumulative_flow.frame)
    assert_frame_equal(again.cycle_time_summary.frame, report.cycle_time_summary.frame)


def test_every_definition_points_at_a_section_of_the_metrics_doc(report: FlowReport) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-")
        for line in doc.splitlines()
        if line.startswith("## ")
    }
    for name, result in report.results().items():
        assert result.definition.split("#")[1] in anchors, name


@pytest.mark.parametrize("n_tickets", [0, 1], ids=["no-tickets", "ticket-without-events"])
def test_empty_inputs_give_empty_results(n_tickets: int) -> None:
    from tests.analytics.builders import NOW, make_events, make_tickets

    tickets = make_tickets(*[{"external_id": f"t{i}"} for i in range(n_tickets)])
    report = flow_report(prepare_log(tickets, make_events()), now=NOW)
    assert report.throughput_daily.frame["throughput"].sum() == 0
    assert report.aging_wip.n == n_tickets
    assert len(report.time_in_state.frame) == n_tickets
