"""Flow blockers: waiting, queued/unassigned, SLA risk, customers not updated, the combination."""

from __future__ import annotations

import pandas as pd
import pytest

from analytics.blockers import (
    customers_not_updated,
    flow_blockers,
    queue_blockers,
    sla_risk,
    waiting_blockers,
)
from analytics.clock import BusinessSpan
from analytics.log import TicketLog, prepare_log
from analytics.settings import BlockerSettings
from tests.analytics.builders import NOW, make_events, make_tickets, ts
from tests.analytics.scenario import EVENTS, TICKETS

H = pd.Timedelta(hours=1)


def test_waiting_on_the_supplier_with_its_age() -> None:
    result = waiting_blockers(prepare_log(TICKETS, EVENTS), now=NOW)
    assert result.frame["ticket_id"].tolist() == ["B"]
    row = result.frame.iloc[0]
    assert row["blocker"] == "waiting_supplier"
    assert row["since"] == ts("2024-03-13T08:00Z")
    assert row["age"] == 52 * H
    assert row["business_age"] == 22 * H  # Wed 08-17, Thu 08-17, Fri 08-12
    assert row["reason"] == "waiting on a supplier for 2.2 d (22.0 business h)"
    assert result.n == 2  # B and C are open


@pytest.fixture(scope="module")
def queue_desk() -> TicketLog:
    tickets = make_tickets(
        {"external_id": "q-new", "priority": 2},
        {"external_id": "q-young", "priority": 2},
        {"external_id": "unassigned", "priority": 3, "state": "in_progress"},
        {"external_id": "assigned", "priority": 3, "state": "in_progress"},
        {"external_id": "waiting", "priority": 3, "state": "waiting_customer"},
    )
    events = make_events(
        ("q-new", "2024-03-15T08:00Z", "state", "new"),  # 4 business hours: P2 threshold
        ("q-young", "2024-03-15T09:00Z", "state", "new"),
        ("unassigned", "2024-03-14T08:00Z", "state", "in_progress"),
        ("unassigned", "2024-03-14T08:00Z", "assignee", "ann"),
        ("unassigned", "2024-03-14T09:00Z", "assignee", None),  # 8 + 4 = 12 h >= 9 h (P3)
        ("assigned", "2024-03-14T08:00Z", "state", "in_progress"),
        ("assigned", "2024-03-14T08:00Z", "assignee", "bob"),
        ("waiting", "2024-03-11T08:00Z", "state", "waiting_customer"),
    )
    return prepare_log(tickets, events)


def test_queued_and_unassigned_tickets_past_their_threshold(queue_desk: TicketLog) -> None:
    frame = queue_blockers(queue_desk, now=NOW).frame.set_index("ticket_id")
    assert sorted(frame.index) == ["q-new", "unassigned"]
    assert frame.loc["q-new", "blocker"] == "queued"
    assert frame.loc["q-new", "business_age"] == 4 * H
    assert frame.loc["q-new", "threshold"] == 4 * H
    assert frame.loc["unassigned", "blocker"] == "unassigned"
    assert frame.loc["unassigned", "since"] == ts("2024-03-14T09:00Z")
    assert frame.loc["unassigned", "business_age"] == 12 * H
    # the waiting ticket has no assignee either, but the ball is with the customer


def test_sources_without_assignees_are_not_flagged_unassigned() -> None:
    tickets = make_tickets({"external_id": "t", "state": "in_progress"})
    events = make_events(("t", "2024-03-01T08:00Z", "state", "in_progress"))
    assert queue_blockers(prepare_log(tickets, events), now=NOW).frame.empty


def _sla_desk() -> TicketLog:
    tickets = make_tickets(
        {"external_id": "at-75", "created_at": "2024-03-15T00:00Z", "due_at": "2024-03-15T16:00Z"},
        {"external_id": "at-50", "created_at": "2024-03-15T00:00Z", "due_at": "2024-03-15T22:00Z"},
        {"external_id": "fine", "created_at": "2024-03-15T00:00Z", "due_at": "2024-03-17T00:00Z"},
        {"external_id": "late", "created_at": "2024-03-14T00:00Z", "due_at": "2024-03-14T12:00Z"},
        {"external_id": "no-due", "priority": 3, "created_at": "2024-03-14T08:00Z"},
        {
            "external_id": "done",
            "state": "closed",
            "due_at": "2024-03-02T00:00Z",
            "resolved_at": "2024-03-10T00:00Z",
        },
    )
    return prepare_log(tickets, make_events())


def test_sla_bands_and_breaches() -> None:
    frame = sla_risk(_sla_desk(), now=NOW).frame.set_index("ticket_id")
    assert list(frame.index) == ["late", "at-75", "at-50"]  # most of the window used first
    assert frame.loc["late", "blocker"] == "sla_breached"
    assert frame.loc["late", "band"] == "breached"
    assert frame.loc["late", "since"] == ts("2024-03-14T12:00Z")
    assert frame.loc["late", "age"] == 24 * H
    assert frame.loc["late", "used"] == 3.0
    assert frame.loc["at-75", "band"] == "≥ 75 %"
    assert frame.loc["at-75", "used"] == 0.75
    assert frame.loc["at-75", "since"] == ts("2024-03-15T12:00Z")  # 75 % of 16 h after midnight
    assert frame.loc["at-50", "band"] == "≥ 50 %"
    assert frame.loc["at-50", "due_from"] == "ticket"
    assert frame.loc["at-50", "reason"] == "55 % of the target window used, 10.0 h left"


def test_sla_targets_per_priority_for_tickets_without_a_due_date() -> None:
    settings = BlockerSettings(sla_targets={3: BusinessSpan(days=1)})
    frame = sla_risk(_sla_desk(), now=NOW, settings=settings).frame.set_index("ticket_id")
    # created Thursday 08:00, one business day (9 h) later: Thursday 17:00; breached since
    assert frame.loc["no-due", "due_from"] == "target"
    assert frame.loc["no-due", "due_at"] == ts("2024-03-14T17:00Z")
    assert frame.loc["no-due", "blocker"] == "sla_breached"


def test_sla_used_share_on_the_business_clock() -> None:
    settings = BlockerSettings(sla_clock="business")
    frame = sla_risk(_sla_desk(), now=NOW, settings=settings).frame.set_index("ticket_id")
    # at-75: business window Fri 08-16 = 8 h, used 08-12 = 4 h -> 50 %
    assert frame.loc["at-75", "used"] == 0.5
    assert frame.loc["at-75", "band"] == "≥ 50 %"
    assert frame.loc["at-75", "since"] == ts("2024-03-15T12:00Z")


def _update_desk() -> TicketLog:
    tickets = make_tickets(
        {"external_id": "silent", "priority": 2, "state": "in_progress", "requester": "carl"},
        {"external_id": "told", "priority": 2, "state": "in_progress", "requester": "carl"},
        {"external_id": "on-hold", "priority": 2, "state": "waiting_customer"},
        {"external_id": "back", "priority": 2, "state": "in_progress", "requester": "dora"},
    )
    events = make_events(
        ("silent", "2024-03-13T08:00Z", "state", "in_progress"),
        ("silent", "2024-03-14T09:00Z", "customer_update", "mail", "ann"),
        ("silent", "2024-03-15T10:00Z", "customer_update", "reply", "carl"),  # the requester
        ("told", "2024-03-13T08:00Z", "state", "in_progress"),
        ("told", "2024-03-15T09:00Z", "customer_update", "call", "ann"),
        ("on-hold", "2024-03-11T08:00Z", "state", "waiting_customer"),
        ("back", "2024-03-11T08:00Z", "state", "waiting_customer"),
        ("back", "2024-03-14T08:00Z", "state", "in_progress"),  # answered: back with us
    )
    return prepare_log(tickets, events)


def test_customers_not_updated_while_the_ball_is_with_us() -> None:
    frame = customers_not_updated(_update_desk(), now=NOW).frame.set_index("ticket_id")
    assert sorted(frame.index) == ["back", "silent"]
    # the requester's own reply does not count: last update by us Thursday 09:00 = 8 + 4 h
    assert frame.loc["silent", "since"] == ts("2024-03-14T09:00Z")
    assert frame.loc["silent", "business_age"] == 12 * H
    assert frame.loc["silent", "threshold"] == 9 * H
    assert "since the last customer update" in frame.loc["silent", "reason"]
    # back in our court since Thursday 08:00: 9 + 4 h
    assert frame.loc["back", "business_age"] == 13 * H
    assert "came back to us" in frame.loc["back", "reason"]


def test_flow_blockers_combines_every_kind() -> None:
    tickets = pd.concat(
        [
            make_tickets(
                {
                    "external_id": "late",
                    "created_at": "2024-03-14T00:00Z",
                    "due_at": "2024-03-14T12:00Z",
                    "state": "waiting_supplier",
                }
            )
        ],
        ignore_index=True,
    )
    events = make_events(
        ("late", "2024-03-14T00:00Z", "state", "waiting_supplier"),
        ("late", "2024-03-14T00:00Z", "team", "L1"),
        ("late", "2024-03-14T01:00Z", "team", "L2"),
        ("late", "2024-03-14T02:00Z", "team", "L1"),
    )
    result = flow_blockers(prepare_log(tickets, events), now=NOW)
    assert result.frame["blocker"].tolist() == ["sla_breached", "ping_pong", "waiting_supplier"]
    assert result.frame.loc[1, "reason"] == "1 bounce(s) between 2 teams: L1 → L2 → L1"
    assert result.frame.loc[1, "since"] == ts("2024-03-14T02:00Z")
    assert list(result.frame.columns[:6]) == [
        "source",
        "ticket_id",
        "priority",
        "state",
        "team",
        "assignee",
    ]
    assert result.n == 1
