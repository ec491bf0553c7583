"""A small hand-built desk used by several test modules; expected values are worked out by hand
in the tests (now = Friday 2024-03-15 12:00 UTC)."""

from __future__ import annotations

import pandas as pd

from tests.analytics.builders import make_events, make_tickets, states

# A: reopened once, then closed.   B: two changes at the same instant, then waiting on a supplier.
# C: no events, in progress.        D: no events, resolved (its history before is unknown).
TICKETS = make_tickets(
    {
        "external_id": "A",
        "state": "closed",
        "priority": 2,
        "team": "L2",
        "assignee": "ann",
        "created_at": "2024-03-11T09:00Z",
        "resolved_at": "2024-03-14T11:00Z",
        "closed_at": "2024-03-15T09:00Z",
    },
    {
        "external_id": "B",
        "state": "waiting_supplier",
        "priority": 1,
        "team": "L1",
        "assignee": "bob",
        "created_at": "2024-03-12T08:00Z",
    },
    {
        "external_id": "C",
        "state": "in_progress",
        "team": "L1",
        "assignee": "bob",
        "created_at": "2024-03-14T12:00Z",
    },
    {
        "external_id": "D",
        "state": "resolved",
        "team": "L2",
        "created_at": "2024-03-11T09:00Z",
        "resolved_at": "2024-03-12T09:00Z",
    },
)

EVENTS = make_events(
    *states(
        "A",
        ("2024-03-11T09:00Z", "new"),
        ("2024-03-11T10:00Z", "in_progress"),
        ("2024-03-12T10:00Z", "waiting_customer"),
        ("2024-03-13T09:00Z", "in_progress"),
        ("2024-03-13T15:00Z", "resolved"),
        ("2024-03-14T09:00Z", "in_progress"),
        ("2024-03-14T11:00Z", "resolved"),
        ("2024-03-15T09:00Z", "closed"),
    ),
    ("A", "2024-03-11T09:00Z", "team", "L1"),
    ("A", "2024-03-11T09:30Z", "team", "L2"),
    ("A", "2024-03-11T10:00Z", "assignee", "ann"),
    ("B", "2024-03-12T08:00Z", "state", "new", None, 0),
    ("B", "2024-03-12T08:00Z", "state", "in_progress", "bob", 1),
    ("B", "2024-03-13T08:00Z", "state", "waiting_supplier", "bob"),
    ("B", "2024-03-12T08:00Z", "team", "L1"),
    ("B", "2024-03-12T08:00Z", "assignee", "bob", "bob", 2),
)


def shuffled(frame: pd.DataFrame, seed: int = 7) -> pd.DataFrame:
    """The same rows in another order, with a scrambled index."""
    out = frame.sample(frac=1.0, random_state=seed)
    out.index = pd.RangeIndex(100, 100 + len(out))
    return out
