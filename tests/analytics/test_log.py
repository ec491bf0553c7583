"""Preparing the log: matching, ordering, ties, intervals, tickets without events, bad input."""

from __future__ import annotations

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from analytics.errors import InvalidInputError, MissingColumnsError
from analytics.intervals import field_intervals
from analytics.log import prepare_log
from tests.analytics.builders import as_categories, make_events, make_tickets, ts
from tests.analytics.scenario import EVENTS, TICKETS, shuffled


def _utc(*values: str | None) -> pd.DatetimeIndex:
    return pd.DatetimeIndex([None if v is None else ts(v) for v in values], tz="UTC").as_unit("ns")


def test_state_intervals_exact() -> None:
    frame = field_intervals(prepare_log(TICKETS, EVENTS), "state")
    expected = pd.DataFrame(
        {
            "source": "desk",
            "ticket_id": ["A"] * 8 + ["B"] * 3 + ["C", "D"],
            "value": [
                "new",
                "in_progress",
                "waiting_customer",
                "in_progress",
                "resolved",
                "in_progress",
                "resolved",
                "closed",
                "new",
                "in_progress",
                "waiting_supplier",
                "in_progress",
                "resolved",
            ],
            "start": _utc(
                "2024-03-11T09:00Z",
                "2024-03-11T10:00Z",
                "2024-03-12T10:00Z",
                "2024-03-13T09:00Z",
                "2024-03-13T15:00Z",
                "2024-03-14T09:00Z",
                "2024-03-14T11:00Z",
                "2024-03-15T09:00Z",
                "2024-03-12T08:00Z",
                "2024-03-12T08:00Z",  # tie broken by seq: "new" lasts zero time
                "2024-03-13T08:00Z",
                "2024-03-14T12:00Z",  # C: derived from the ticket, from creation
                "2024-03-12T09:00Z",  # D: derived, resolved: from resolved_at
            ),
            "end": _utc(
                "2024-03-11T10:00Z",
                "2024-03-12T10:00Z",
                "2024-03-13T09:00Z",
                "2024-03-13T15:00Z",
                "2024-03-14T09:00Z",
                "2024-03-14T11:00Z",
                "2024-03-15T09:00Z",
                None,
                "2024-03-12T08:00Z",
                "2024-03-13T08:00Z",
                None,
                None,
                None,
            ),
            "events": [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0],
            "derived": [False] * 11 + [True, True],
        }
    )
    assert_frame_equal(frame, expected, check_dtype=False)


def test_unsorted_input_gives_the_same_intervals() -> None:
    ordered = prepare_log(TICKETS, EVENTS)
    scrambled = prepare_log(shuffled(TICKETS), shuffled(EVENTS))
    for field in ("state", "team", "assignee", "status"):
        a = field_intervals(ordered, field).sort_values(["ticket_id", "start"], kind="stable")
        b = field_intervals(scrambled, field).sort_values(["ticket_id", "start"], kind="stable")
        assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def test_ties_follow_seq_not_input_order() -> None:
    tickets = make_tickets({"external_id": "T"})
    events = make_events(
        ("T", "2024-03-11T09:00Z", "state", "in_progress", None, 1),
        ("T", "2024-03-11T09:00Z", "state", "new", None, 0),
    )
    frame = field_intervals(prepare_log(tickets, events), "state")
    assert frame["value"].tolist() == ["new", "in_progress"]
    assert frame["end"].iloc[0] == ts("2024-03-11T09:00Z")


def test_repeated_values_merge_into_one_interval() -> None:
    tickets = make_tickets({"external_id": "T"})
    events = make_events(
        ("T", "2024-03-11T09:00Z", "team", "L1"),
        ("T", "2024-03-11T10:00Z", "team", "L1"),
        ("T", "2024-03-11T11:00Z", "team", None),
        ("T", "2024-03-11T12:00Z", "team", None),
        ("T", "2024-03-11T13:00Z", "team", "L2"),
    )
    frame = field_intervals(prepare_log(tickets, events), "team")
    assert frame["value"].fillna("-").tolist() == ["L1", "-", "L2"]
    assert frame["events"].tolist() == [2, 2, 1]


def test_events_that_cannot_be_used_are_counted_not_kept() -> None:
    tickets = make_tickets({"external_id": "T"})
    events = make_events(
        ("T", "2024-03-11T09:00Z", "state", "new"),
        ("X", "2024-03-11T09:00Z", "state", "new"),  # no such ticket
        ("T", None, "state", "in_progress"),  # no time
        ("T", "2024-03-11T10:00Z", "colour", "blue"),  # not a field we know
        {
            "source": "other",
            "ticket_id": "T",
            "occurred_at": "2024-03-11T09:00Z",
            "field": "state",
            "new_value": "new",
        },  # same id, another source
    )
    log = prepare_log(tickets, events)
    assert log.dropped_events == {"unknown ticket": 2, "missing time": 1, "unknown field": 1}
    assert len(log.ev_time) == 1


def test_tickets_matched_by_source_and_id() -> None:
    tickets = make_tickets({"external_id": "1", "source": "b"}, {"external_id": "1", "source": "a"})
    events = make_events(
        {
            "source": "a",
            "ticket_id": "1",
            "occurred_at": "2024-03-11T09:00Z",
            "field": "state",
            "new_value": "in_progress",
        },
        {
            "source": "b",
            "ticket_id": "1",
            "occurred_at": "2024-03-11T09:00Z",
            "field": "state",
            "new_value": "waiting_other",
        },
    )
    frame = field_intervals(prepare_log(tickets, events), "state")
    assert dict(zip(frame["source"], frame["value"], strict=True)) == {
        "b": "waiting_other",
        "a": "in_progress",
    }


@pytest.mark.parametrize("coded", [False, True], ids=["plain", "categorical"])
@pytest.mark.parametrize("with_events", [False, True], ids=["no-events", "events-in-order"])
def test_duplicate_tickets_are_refused(coded: bool, with_events: bool) -> None:
    tickets = make_tickets({"external_id": "B"}, {"external_id": "A"}, {"external_id": "B"})
    # events grouped in the ticket frame's order: each run matches its ticket row
    events = make_events(
        *(
            [(t, "2024-03-12T09:00Z", "state", "new") for t in ("B", "A", "B")]
            if with_events
            else []
        )
    )
    if coded:
        tickets, events = as_categories(tickets), as_categories(events)
    with pytest.raises(InvalidInputError, match="unique"):
        prepare_log(tickets, events)


def test_missing_columns_are_listed() -> None:
    with pytest.raises(MissingColumnsError) as err:
        prepare_log(TICKETS.drop(columns=["team", "created_at"]), EVENTS)
    assert err.value.missing == ["created_at", "team"]
    assert "`created_at`" in str(err.value)
    with pytest.raises(MissingColumnsError, match="events is missing"):
        prepare_log(TICKETS, EVENTS.drop(columns=["seq"]))


def test_naive_times_are_refused() -> None:
    naive = EVENTS.assign(occurred_at=EVENTS["occurred_at"].dt.tz_localize(None))
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        prepare_log(TICKETS, naive)


def test_inputs_are_not_modified() -> None:
    tickets, events = TICKETS.copy(), shuffled(EVENTS)
    before_t, before_e = tickets.copy(), events.copy()
    log = prepare_log(tickets, events)
    field_intervals(log, "state")
    assert_frame_equal(tickets, before_t)
    assert_frame_equal(events, before_e)


def test_created_is_the_earlier_of_created_at_and_the_first_event() -> None:
    tickets = make_tickets({"external_id": "T", "created_at": "2024-03-11T10:00Z"})
    events = make_events(("T", "2024-03-11T08:30Z", "state", "new"))
    log = prepare_log(tickets, events)
    assert log.created[0] == ts("2024-03-11T08:30Z").value


def test_status_intervals_fall_back_to_raw_status() -> None:
    tickets = make_tickets({"external_id": "T", "raw_status": "Assigned"})
    frame = field_intervals(prepare_log(tickets, make_events()), "status")
    assert frame["value"].tolist() == ["Assigned"]
    assert bool(frame["derived"].iloc[0])


def test_unknown_interval_field_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="intervals exist"):
        prepare_log(TICKETS, EVENTS).intervals("priority")


@pytest.mark.parametrize("coded", [False, True], ids=["plain", "categorical"])
@pytest.mark.parametrize("row", [0, 1])
@pytest.mark.parametrize("column", ["source", "external_id"])
def test_tickets_without_a_key_are_refused(column: str, row: int, coded: bool) -> None:
    tickets = make_tickets({"external_id": "A"}, {"external_id": "B"}, {"external_id": "C"})
    tickets.loc[row, column] = None
    with pytest.raises(InvalidInputError, match="on every row"):
        prepare_log(as_categories(tickets) if coded else tickets, make_events())
