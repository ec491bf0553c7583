"""Flow efficiency: active vs waiting as a union of intervals (no double counting)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analytics.efficiency import flow_efficiency, flow_efficiency_summary, union_length
from analytics.log import prepare_log
from analytics.result import Window
from tests.analytics.builders import NOW, make_events, make_tickets, ts
from tests.analytics.scenario import EVENTS, TICKETS

H = pd.Timedelta(hours=1)
WEEK = Window(start=ts("2024-03-08T00:00Z"), end=NOW)


def test_union_length_merges_overlaps_per_ticket() -> None:
    ticket = np.array([0, 0, 0, 2, 2, 0])
    start = np.array([0, 5, 20, 0, 0, 3])
    end = np.array([10, 12, 25, 4, 4, 4])
    # ticket 0: [0,10) ∪ [5,12) ∪ [3,4) ∪ [20,25) = 12 + 5; ticket 2: [0,4) twice = 4
    assert union_length(3, ticket, start, end).tolist() == [17, 0, 4]


def _desk() -> tuple[pd.DataFrame, pd.DataFrame]:
    tickets = pd.concat(
        [
            TICKETS,
            make_tickets(
                {"external_id": "E", "state": "resolved", "created_at": "2024-03-14T09:00Z"}
            ),
        ],
        ignore_index=True,
    )
    events = pd.concat(
        [
            EVENTS,
            make_events(
                ("E", "2024-03-14T09:00Z", "state", "in_progress"),
                ("E", "2024-03-14T09:00Z", "assignee", "ann"),
                ("E", "2024-03-14T10:00Z", "assignee", None),  # nobody on it 10-12
                ("E", "2024-03-14T12:00Z", "assignee", "bob"),
                ("E", "2024-03-14T13:00Z", "state", "resolved"),
            ),
        ],
        ignore_index=True,
    )
    return tickets, events


def test_flow_efficiency_per_ticket() -> None:
    result = flow_efficiency(prepare_log(*_desk()), now=NOW, window=WEEK)
    frame = result.frame.set_index("ticket_id")
    assert sorted(frame.index) == ["A", "D", "E"]
    # A: created Mon 09:00, stopped Thu 11:00 (74 h); in progress 24 + 6 + 2 h, assigned
    # (its assignee history starts at 10:00, so nothing before counts as unassigned)
    a = frame.loc["A"]
    assert (a["elapsed"], a["active"], a["wait"]) == (74 * H, 32 * H, 42 * H)
    assert a["efficiency"] == 32 / 74
    assert (a["queued"], a["waiting_customer"], a["done_before_reopen"]) == (H, 23 * H, 18 * H)
    assert a["unassigned_while_active"] == pd.Timedelta(0)
    assert a["unknown"] == pd.Timedelta(0)
    # E: in progress 09-13, unassigned 10-12: the overlap is waiting, counted once
    e = frame.loc["E"]
    assert (e["elapsed"], e["active"], e["unassigned_while_active"]) == (4 * H, 2 * H, 2 * H)
    assert e["efficiency"] == 0.5
    # D: no history before its resolution: the whole span is unknown waiting
    d = frame.loc["D"]
    assert (d["elapsed"], d["active"], d["unknown"]) == (24 * H, pd.Timedelta(0), 24 * H)
    # the breakdown adds up to the waiting time
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
    assert result.n == 3


def test_flow_efficiency_summary() -> None:
    per_ticket = flow_efficiency(prepare_log(*_desk()), now=NOW, window=WEEK)
    row = flow_efficiency_summary(per_ticket).frame.iloc[0]
    assert row["tickets"] == 3
    assert row["portfolio"] == (32 + 2) / (74 + 4 + 24)
    assert row["mean"] == (32 / 74 + 0.5 + 0) / 3
    assert row["p50"] == 32 / 74  # sorted: 0, 0.43, 0.5 -> nearest rank x[1]
    assert row["p95"] == 0.5
