"""The simulated desk's generator: deterministic, and shaped like a real service desk."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from app.demo.generator import (
    ABSENT_OPERATOR,
    OVERLOADED_OPERATOR,
    TEAMS,
    TIMEZONE,
    Call,
    DeskGenerator,
    office_delay,
)

END = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)  # a Friday afternoon
START = END - timedelta(days=42)


@pytest.fixture(scope="module")
def calls() -> list[Call]:
    return DeskGenerator(seed=7).history(START, END)


def test_same_seed_same_calls_other_seed_other_calls(calls: list[Call]) -> None:
    again = DeskGenerator(seed=7).history(START, END)
    assert again == calls
    other = DeskGenerator(seed=8).history(START, END)
    assert [c.created_at for c in other] != [c.created_at for c in calls]


def test_arrivals_follow_the_week_and_the_office_day(calls: list[Call]) -> None:
    local = [c.created_at.astimezone(TIMEZONE) for c in calls]
    per_day = Counter(t.date() for t in local)
    weekdays = [n for d, n in per_day.items() if d.weekday() < 5]
    weekend = [per_day.get(d, 0) for d in {t.date() for t in local} if d.weekday() >= 5]
    assert sum(weekdays) / len(weekdays) > 5 * (sum(weekend) / max(len(weekend), 1))
    office = sum(1 for t in local if t.weekday() < 5 and 8 <= t.hour < 17)
    night = sum(1 for t in local if t.hour < 7 or t.hour >= 21)
    assert office > 0.8 * len(local)
    assert night < 0.02 * len(local)
    morning = sum(1 for t in local if t.weekday() < 5 and t.hour in (9, 10))
    lunch = sum(1 for t in local if t.weekday() < 5 and t.hour == 12)
    assert morning > 3 * lunch


def test_priorities_are_skewed_to_p3_p4(calls: list[Call]) -> None:
    share = Counter(c.priority for c in calls)
    assert share["P3"] > share["P4"] > share["P2"] > share["P1"] > 0
    assert share["P3"] / len(calls) == pytest.approx(0.45, abs=0.06)


def test_every_kind_of_trouble_is_present(calls: list[Call]) -> None:
    traits = Counter(t for c in calls for t in c.traits)
    n = len(calls)
    for trait, low, high in (
        ("ping_pong", 0.01, 0.08),
        ("misrouted", 0.02, 0.12),
        ("reopened", 0.02, 0.12),
        ("dormant", 0.03, 0.12),
        ("waiting_user", 0.15, 0.6),
        ("waiting_supplier", 0.05, 0.3),
        ("cancelled", 0.005, 0.06),
    ):
        assert low * n <= traits[trait] <= high * n, (trait, traits[trait], n)


def test_ping_pong_calls_bounce_between_two_teams(calls: list[Call]) -> None:
    for call in (c for c in calls if "ping_pong" in c.traits):
        teams = [ch.fields["team"] for ch in call.changes if "team" in ch.fields]
        hops = [t for t in teams if t != "Service Desk"]
        assert len(hops) >= 3
        assert len(set(hops)) == 2
        assert all(a != b for a, b in itertools.pairwise(hops))


def test_changes_of_a_call_are_in_time_order_and_start_at_its_creation(calls: list[Call]) -> None:
    for call in calls:
        times = [ch.at for ch in call.changes]
        assert times[0] == call.created_at
        assert times == sorted(times)
        assert len(set(times)) == len(times)
        assert call.changes[0].fields["status"] == "Logged"


def test_dormant_calls_leave_stale_work_at_the_end(calls: list[Call]) -> None:
    open_at_end = [
        c
        for c in calls
        if "dormant" in c.traits
        and c.created_at < END - timedelta(days=14)
        # still untouched for a week before the end
        and not any(END - timedelta(days=7) <= ch.at <= END for ch in c.changes)
        and any(ch.at > END for ch in c.changes)
    ]
    assert len(open_at_end) >= 3


def test_the_absent_operator_stops_and_the_overloaded_one_gets_more(calls: list[Call]) -> None:
    last_work = max(
        ch.at
        for c in calls
        for ch in c.changes
        if (ch.fields.get("operator") == ABSENT_OPERATOR)
        or (ch.action is not None and ch.action.operator == ABSENT_OPERATOR)
    )
    assert last_work < END - timedelta(days=2)
    held = [c for c in calls if "absent_holder" in c.traits and c.changes[-1].at < END]
    assert held, "the absent operator must hold open calls"
    pickups = Counter(
        ch.fields["operator"]
        for c in calls
        for ch in c.changes
        if ch.fields.get("operator") in TEAMS["Service Desk"]
    )
    others = [n for op, n in pickups.items() if op != OVERLOADED_OPERATOR]
    assert pickups[OVERLOADED_OPERATOR] > 2 * max(others)


def test_customer_updates_are_actions_the_caller_sees(calls: list[Call]) -> None:
    actions = [ch.action for c in calls for ch in c.changes if ch.action is not None]
    visible = sum(1 for a in actions if a.visible and not a.by_caller)
    by_caller = sum(1 for a in actions if a.by_caller)
    internal = sum(1 for a in actions if not a.visible)
    assert visible > len(calls) and by_caller > len(calls) and internal > 0


def test_live_calls_come_every_few_seconds_at_speed_one() -> None:
    start = END
    live = DeskGenerator(seed=3).live(start, 200, pace=60.0)
    span = (live[-1].created_at - start).total_seconds()
    assert 3 < span / 200 < 15  # seconds between arrivals
    # a live call is closed within the hour (a real one within days)
    lives = sorted((c.changes[-1].at - c.created_at).total_seconds() for c in live)
    assert lives[len(lives) // 2] < 60 * 60


def test_office_delay_skips_nights_and_weekends() -> None:
    friday_late = datetime(2026, 11, 27, 17, 0, tzinfo=TIMEZONE)
    monday = office_delay(friday_late, 60)
    assert monday == datetime(2026, 11, 30, 8, 30, tzinfo=TIMEZONE)
    assert office_delay(datetime(2026, 11, 25, 9, 0, tzinfo=TIMEZONE), 30) == datetime(
        2026, 11, 25, 9, 30, tzinfo=TIMEZONE
    )
