"""Reassignment ping-pong and the handover matrix."""

from __future__ import annotations

import pandas as pd
import pytest

from analytics.log import TicketLog, prepare_log
from analytics.pingpong import handover_matrix, ping_pong
from analytics.result import Window
from tests.analytics.builders import NOW, make_events, make_tickets, ts

H = pd.Timedelta(hours=1)


@pytest.fixture(scope="module")
def log() -> TicketLog:
    tickets = make_tickets(
        {"external_id": "P", "state": "in_progress"},
        {"external_id": "Q", "state": "closed", "resolved_at": "2024-03-14T12:00Z"},
        {"external_id": "R", "state": "in_progress"},
    )
    events = make_events(
        ("P", "2024-03-14T09:00Z", "team", "L1"),
        ("P", "2024-03-14T10:00Z", "team", "L2"),
        ("P", "2024-03-14T12:00Z", "team", "L1"),  # bounce 1 (detour at L2: 2 h)
        ("P", "2024-03-14T13:00Z", "team", None),  # no team for a while: not a stay
        ("P", "2024-03-14T14:00Z", "team", "L1"),
        ("P", "2024-03-14T15:00Z", "team", "L2"),  # bounce 2 (L2 L1 L2; detour 3 h at L1)
        ("P", "2024-03-14T17:00Z", "team", "L1"),  # bounce 3 (detour 2 h at L2)
        ("Q", "2024-03-11T09:00Z", "team", "L1"),
        ("Q", "2024-03-11T10:00Z", "team", "L2"),
        ("Q", "2024-03-11T11:00Z", "team", "L1"),  # bounce, then resolved Thursday noon
        ("Q", "2024-03-11T09:00Z", "state", "in_progress"),
        ("Q", "2024-03-14T12:00Z", "state", "resolved"),
        ("R", "2024-03-14T09:00Z", "team", "L1"),
        ("R", "2024-03-14T10:00Z", "team", "L2"),
        ("R", "2024-03-14T11:00Z", "team", "L3"),  # a chain, no bounce
    )
    return prepare_log(tickets, events)


def test_pingpong_per_ticket(log: TicketLog) -> None:
    result = ping_pong(log, now=NOW)
    frame = result.frame.set_index("ticket_id")
    assert list(frame.index) == ["P", "Q"]  # most bounces first; R never bounced
    assert frame.loc["P", "bounces"] == 3
    assert frame.loc["P", "teams"] == 2
    assert frame.loc["P", "handovers"] == 4
    assert frame.loc["P", "path"] == "L1 → L2 → L1 → L2 → L1"
    assert frame.loc["P", "first_bounce_at"] == ts("2024-03-14T12:00Z")
    assert frame.loc["P", "detour"] == 7 * H
    assert frame.loc["P", "since_first_bounce"] == NOW - ts("2024-03-14T12:00Z")
    assert bool(frame.loc["P", "open"])
    # Q is resolved: the time since its first bounce ends at the stop
    assert frame.loc["Q", "since_first_bounce"] == ts("2024-03-14T12:00Z") - ts("2024-03-11T11:00Z")
    assert not frame.loc["Q", "open"]
    assert result.n == 3


def test_pingpong_open_only(log: TicketLog) -> None:
    result = ping_pong(log, now=NOW, open_only=True)
    assert result.frame["ticket_id"].tolist() == ["P"]
    assert result.n == 2


def test_pingpong_before_the_first_bounce(log: TicketLog) -> None:
    frame = ping_pong(log, now=ts("2024-03-14T11:00Z")).frame
    assert frame["ticket_id"].tolist() == ["Q"]


def test_handover_matrix(log: TicketLog) -> None:
    result = handover_matrix(log, now=NOW)
    frame = result.frame.set_index(["from", "to"])
    assert frame.loc[("L1", "L2"), "handovers"] == 4  # P twice, Q and R once each
    assert frame.loc[("L1", "L2"), "tickets"] == 3
    assert frame.loc[("L1", "L2"), "bounces"] == 3  # outward legs of P's 1st, 3rd and Q's
    assert frame.loc[("L2", "L1"), "handovers"] == 3
    assert frame.loc[("L2", "L1"), "bounces"] == 1
    assert frame.loc[("L2", "L3"), "handovers"] == 1
    assert result.n == 8
    pivot = result.frame.pivot(index="from", columns="to", values="handovers")
    assert pivot.loc["L1", "L2"] == 4


def test_handover_matrix_in_a_window(log: TicketLog) -> None:
    window = Window(start=ts("2024-03-14T00:00Z"), end=NOW)
    frame = handover_matrix(log, now=NOW, window=window).frame.set_index(["from", "to"])
    assert frame.loc[("L1", "L2"), "handovers"] == 3  # Q's Monday handover is outside
    assert frame.loc[("L1", "L2"), "bounces"] == 2


def test_assignee_pingpong() -> None:
    tickets = make_tickets({"external_id": "A", "state": "in_progress"})
    events = make_events(
        ("A", "2024-03-14T09:00Z", "assignee", "ann"),
        ("A", "2024-03-14T10:00Z", "assignee", "bob"),
        ("A", "2024-03-14T11:00Z", "assignee", "ann"),
    )
    frame = ping_pong(prepare_log(tickets, events), now=NOW, field="assignee").frame
    assert frame["path"].tolist() == ["ann → bob → ann"]
