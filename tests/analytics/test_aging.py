"""Aging WIP with per-state pace percentiles and the SLE; the bottleneck ranking."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from analytics.aging import aging_wip, bottlenecks, pace_percentiles
from analytics.log import TicketLog, prepare_log
from analytics.settings import FlowSettings
from tests.analytics.builders import NOW, make_events, make_tickets

H = pd.Timedelta(hours=1)


@pytest.fixture(scope="module")
def log() -> TicketLog:
    tickets: list[dict[str, Any]] = []
    events: list[tuple[Any, ...]] = []
    # four finished tickets that left "in progress" 1, 2, 3 and 10 hours after creation
    for i, hours in enumerate((1, 2, 3, 10)):
        created = pd.Timestamp("2024-03-12T00:00Z") + pd.Timedelta(days=i)
        ext = f"done-{i}"
        tickets.append({"external_id": ext, "state": "resolved", "created_at": created})
        events += [
            (ext, created, "state", "new"),
            (ext, created, "state", "in_progress"),
            (ext, created + hours * H, "state", "resolved"),
            (ext, created, "team", "L1"),
        ]
    tickets += [
        {"external_id": "O", "state": "in_progress", "priority": 2, "created_at": NOW - 5 * H},
        {"external_id": "W", "state": "waiting_other", "created_at": NOW - 40 * H},
    ]
    events += [
        ("O", NOW - 5 * H, "state", "new"),
        ("O", NOW - 4 * H, "state", "in_progress"),
        ("O", NOW - 5 * H, "team", "L1"),
        ("O", NOW - 4 * H, "assignee", "ann"),
        ("W", NOW - 40 * H, "state", "new"),
        ("W", NOW - 30 * H, "state", "waiting_other"),
        ("W", NOW - 40 * H, "team", "L2"),
    ]
    return prepare_log(make_tickets(*tickets), make_events(*events))


def test_pace_percentiles_per_state(log: TicketLog) -> None:
    result = pace_percentiles(log, now=NOW)
    frame = result.frame.set_index("state")
    assert frame.loc["in_progress", "n"] == 4
    # ages at the last exit: 1, 2, 3, 10 h; nearest rank x[ceil(p * 4) - 1]
    assert frame.loc["in_progress", ["p50", "p70", "p85", "p95"]].tolist() == [
        2 * H,
        3 * H,
        10 * H,
        10 * H,
    ]
    assert frame.loc["new", "p95"] == pd.Timedelta(0)
    assert frame.loc["waiting_other", "n"] == 0
    assert pd.isna(frame.loc["waiting_other", "p50"])
    assert result.n == 4


def test_aging_wip_with_pace_bands_and_sle(log: TicketLog) -> None:
    result = aging_wip(log, now=NOW)
    frame = result.frame.set_index("ticket_id")
    assert list(frame.index) == ["W", "O"]  # oldest first
    assert frame.loc["O", "age"] == 5 * H
    assert frame.loc["O", "state"] == "in_progress"
    assert frame.loc["O", "in_state"] == 4 * H
    assert frame.loc["O", "state_since"] == NOW - 4 * H
    assert frame.loc["O", "pace"] == "p70-p85"  # past the 3 h line, short of the 10 h line
    assert not frame.loc["O", "over_sle"]  # SLE = p85 of lead times 1, 2, 3, 10 h = 10 h
    assert frame.loc["O", "team"] == "L1" and frame.loc["O", "assignee"] == "ann"
    assert frame.loc["O", "age_bucket"] == "< 1 day"
    assert frame.loc["W", "pace"] == "no history"
    assert frame.loc["W", "age_bucket"] == "1-7 days"
    assert bool(frame.loc["W", "over_sle"])
    assert result.notes[0] == "SLE (p85 of lead time): 0 days 10:00:00, n=4"
    assert result.n == 2


def test_age_from_the_start_state(log: TicketLog) -> None:
    frame = aging_wip(log, now=NOW, settings=FlowSettings(age_from="start")).frame
    # only started tickets are work in progress; O started 4 h ago
    assert frame["ticket_id"].tolist() == ["O"]
    assert frame["age"].tolist() == [4 * H]


def test_bottlenecks_rank_where_open_work_waits(log: TicketLog) -> None:
    result = bottlenecks(log, now=NOW)
    frame = result.frame
    states = frame[frame["dimension"] == "state"].set_index("value")
    assert states.index.tolist() == ["waiting_other", "in_progress"]
    assert states["rank"].tolist() == [1, 2]
    assert states.loc["waiting_other", "open_age_total"] == 30 * H
    assert states.loc["in_progress", "open_age_total"] == 4 * H
    assert states.loc["in_progress", "completed_tickets"] == 4
    assert states.loc["in_progress", "completed_time_p50"] == 2 * H
    assert states.loc["waiting_other", "completed_tickets"] == 0
    assert states.loc["waiting_other", "open_age_share"] == 30 / 34
    teams = frame[frame["dimension"] == "team"].set_index("value")
    assert teams.loc["L2", "open_age_total"] == 40 * H
    assert teams.loc["L1", "open_age_total"] == 5 * H
    assert teams.loc["L1", "completed_tickets"] == 4
    assert result.n == 2
