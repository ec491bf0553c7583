"""Overloaded and absent operators, and who could take over their tickets."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from analytics.log import TicketLog, prepare_log
from analytics.workload import operator_load, takeover_suggestions
from tests.analytics.builders import NOW, make_events, make_tickets, ts

H = pd.Timedelta(hours=1)
OPEN_PER_OPERATOR = {"o1": 1, "o2": 1, "o3": 1, "o4": 1, "o5": 1, "o6": 1, "o7": 2, "o8": 6}
RESOLVED = [
    ("o3", "net"),
    ("o3", "net"),
    ("o4", "net"),
    ("o2", "net"),
    ("o2", "net"),
    ("o8", "net"),
    ("o5", "db"),
    ("o9", "net"),
]


@pytest.fixture(scope="module")
def log() -> TicketLog:
    tickets: list[dict[str, Any]] = []
    events: list[tuple[Any, ...]] = []
    for op, count in OPEN_PER_OPERATOR.items():
        for i in range(count):
            ext = f"open-{op}-{i}"
            category = "db" if op == "o2" else "net"
            tickets.append(
                {
                    "external_id": ext,
                    "state": "in_progress",
                    "team": "T1",
                    "assignee": op,
                    "category": category,
                }
            )
            # o2 last did something on Monday morning; everybody else this morning
            at = "2024-03-11T10:00Z" if op == "o2" else "2024-03-15T11:00Z"
            events += [
                (ext, "2024-03-11T09:00Z", "state", "in_progress"),
                (ext, "2024-03-11T09:00Z", "team", "T1"),
                (ext, at, "assignee", op, op),
            ]
    for i, (op, category) in enumerate(RESOLVED):
        ext = f"done-{i}"
        team = "T2" if op == "o9" else "T1"  # o9 resolved "net" in another team
        tickets.append(
            {
                "external_id": ext,
                "state": "closed",
                "team": team,
                "assignee": op,
                "category": category,
            }
        )
        events += [
            (ext, "2024-03-01T09:00Z", "state", "in_progress"),
            (ext, "2024-03-01T09:00Z", "team", team),
            (ext, "2024-03-01T09:00Z", "assignee", op, op),
            (ext, "2024-03-08T09:00Z", "state", "resolved", op),
            (ext, "2024-03-09T09:00Z", "state", "closed"),
        ]
    return prepare_log(make_tickets(*tickets), make_events(*events))


def test_operator_load(log: TicketLog) -> None:
    result = operator_load(log, now=NOW)
    frame = result.frame.set_index("assignee")
    # open per operator sorted: 1 1 1 1 1 1 2 6; the 85th percentile (nearest rank) is 2
    assert frame["team_threshold"].unique().tolist() == [2]
    assert frame[frame["overloaded"]].index.tolist() == ["o8"]
    assert frame.loc["o8", "open_tickets"] == 6
    assert frame.loc["o8", "reason"] == "6 open tickets, team threshold 2"
    # o2: nothing since Monday 10:00 = 7 + 9 + 9 + 9 + 4 business hours
    assert frame.loc["o2", "idle_business"] == 38 * H
    assert bool(frame.loc["o2", "absent"])
    assert frame.loc["o2", "last_activity_at"] == ts("2024-03-11T10:00Z")
    assert frame.loc["o2", "reason"] == "no activity for 38.0 business h"
    assert not frame.loc["o1", "absent"]
    assert result.n == 8


def test_takeover_suggestions(log: TicketLog) -> None:
    result = takeover_suggestions(log, now=NOW)
    frame = result.frame
    assert result.n == 7  # o8's six tickets and o2's one
    o8 = frame[frame["holder"] == "o8"]
    # colleagues in T1 who resolved "net" recently, not overloaded or absent, least loaded
    # first, then most such resolutions: o3 (2), o4 (1); o2 is absent, o9 is in another team
    per_ticket = o8.groupby("ticket_id")["suggestion"].apply(list)
    assert per_ticket.tolist() == [["o3", "o4"]] * 6
    assert set(o8["holder_reason"]) == {"overloaded"}
    assert o8["suggestion_resolved"].tolist()[:2] == [2, 1]
    o2 = frame[frame["holder"] == "o2"]
    assert o2[["ticket_id", "suggestion", "holder_reason", "rank"]].values.tolist() == [
        ["open-o2-0", "o5", "absent", 1]
    ]


def test_absence_is_unknown_where_a_source_has_no_actors() -> None:
    tickets = make_tickets({"external_id": "t", "state": "in_progress", "assignee": "ann"})
    events = make_events(("t", "2024-03-01T09:00Z", "assignee", "ann"))
    frame = operator_load(prepare_log(tickets, events), now=NOW).frame
    assert frame["absent"].isna().tolist() == [True]
