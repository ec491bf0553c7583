"""Business time: working days and hours, time zones with daylight saving, public holidays."""

from __future__ import annotations

from datetime import date, time

import numpy as np
import pytest

from analytics.clock import (
    BusinessSpan,
    Calendars,
    WorkCalendar,
    add_business,
    business_between,
)
from analytics.errors import InvalidSettingsError
from analytics.frames import NAT
from tests.analytics.builders import ts

H = 3_600_000_000_000

AMSTERDAM = WorkCalendar(
    name="nl", timezone="Europe/Amsterdam", day_start=time(9), day_end=time(17)
)
AMSTERDAM_HOLIDAYS = WorkCalendar(
    name="nl-hol",
    timezone="Europe/Amsterdam",
    day_start=time(9),
    day_end=time(17),
    holiday_country="NL",
)


def between(cal: WorkCalendar, pairs: list[tuple[str, str]]) -> list[float]:
    cals = Calendars(default=cal)
    start = np.array([ts(a).value for a, _ in pairs], dtype=np.int64)
    end = np.array([ts(b).value for _, b in pairs], dtype=np.int64)
    which = np.zeros(len(pairs), dtype=np.int8)
    return list(business_between(cals, which, start, end) / H)


def test_business_hours_default_calendar_weekdays_8_to_17_utc() -> None:
    hours = between(
        WorkCalendar(),
        [
            ("2024-03-11T10:00Z", "2024-03-11T15:00Z"),  # Monday, inside the day
            ("2024-03-15T16:00Z", "2024-03-18T09:00Z"),  # Friday 16:00 to Monday 09:00
            ("2024-03-16T10:00Z", "2024-03-17T10:00Z"),  # the weekend
            ("2024-03-12T06:00Z", "2024-03-12T10:00Z"),  # starts before opening
            ("2024-03-12T15:00Z", "2024-03-12T20:00Z"),  # ends after closing
            ("2024-03-04T08:00Z", "2024-03-11T08:00Z"),  # one full week
            ("2024-03-12T10:00Z", "2024-03-12T10:00Z"),  # empty span
        ],
    )
    assert hours == [5.0, 2.0, 0.0, 2.0, 2.0, 45.0, 0.0]


def test_public_holidays_and_the_dst_weekend_in_amsterdam() -> None:
    # Thursday 16:00 CET to Tuesday 10:00 CEST across Easter 2024 and the switch to summer time
    span = [("2024-03-28T15:00Z", "2024-04-02T08:00Z")]
    # Good Friday and Easter Monday are Dutch public holidays: Thursday 1 h + Tuesday 1 h
    assert between(AMSTERDAM_HOLIDAYS, span) == [2.0]
    # without holidays Friday and Monday count: 1 + 8 + 8 + 1
    assert between(AMSTERDAM, span) == [18.0]


def test_extra_closed_days() -> None:
    cal = WorkCalendar(extra_closed_days=(date(2024, 3, 12),))
    assert between(cal, [("2024-03-11T08:00Z", "2024-03-14T08:00Z")]) == [18.0]


def test_dst_change_inside_working_hours_counts_real_elapsed_time() -> None:
    night_shift = WorkCalendar(
        name="night",
        timezone="Europe/Amsterdam",
        workdays=(0, 1, 2, 3, 4, 5, 6),
        day_start=time(1),
        day_end=time(5),
    )
    hours = between(
        night_shift,
        [
            # 31 March 2024: 02:00 CET jumps to 03:00 CEST, local 01:00-05:00 lasts 3 hours
            ("2024-03-30T23:30Z", "2024-03-31T12:00Z"),
            # 27 October 2024: 03:00 CEST falls back to 02:00 CET, local 01:00-05:00 lasts 5 h
            ("2024-10-26T22:00Z", "2024-10-27T12:00Z"),
        ],
    )
    assert hours == [3.0, 5.0]


def test_a_24_hour_calendar_day_lasts_23_hours_on_the_spring_dst_day() -> None:
    always = WorkCalendar(
        timezone="Europe/Amsterdam",
        workdays=(0, 1, 2, 3, 4, 5, 6),
        day_start=time(0),
        day_end=time(0),
    )
    # local midnight to local midnight of Sunday 31 March 2024
    assert between(always, [("2024-03-30T23:00Z", "2024-03-31T22:00Z")]) == [23.0]
    assert always.day_ns == 24 * H


def test_missing_instants_give_nat() -> None:
    cals = Calendars()
    out = business_between(
        cals,
        np.zeros(2, dtype=np.int8),
        np.array([NAT, ts("2024-03-11T10:00Z").value]),
        np.array([ts("2024-03-11T12:00Z").value, NAT]),
    )
    assert list(out) == [NAT, NAT]


def test_add_business_time() -> None:
    cals = Calendars(default=WorkCalendar(), by_team={"nl": AMSTERDAM_HOLIDAYS})
    start = np.array(
        [
            ts("2024-03-15T16:00Z").value,  # Friday
            ts("2024-03-15T16:00Z").value,
            ts("2024-03-16T10:00Z").value,  # Saturday
            ts("2024-03-28T15:00Z").value,  # Thursday before Easter, Amsterdam calendar
        ]
    )
    span = np.array([2 * H, 1 * H, 0, 2 * H])
    which = np.array([0, 0, 0, 1], dtype=np.int8)
    out = add_business(cals, which, start, span)
    assert [str(np.datetime64(int(v), "ns")) for v in out] == [
        "2024-03-18T09:00:00.000000000",  # Friday 16-17, Monday 08-09
        "2024-03-15T17:00:00.000000000",  # exactly the closing time
        "2024-03-16T10:00:00.000000000",  # nothing to add: the start itself
        "2024-04-02T08:00:00.000000000",  # Tuesday 10:00 CEST after Easter
    ]


def test_business_span_is_measured_in_the_calendars_working_day() -> None:
    assert BusinessSpan(days=1).ns(AMSTERDAM) == 8 * H
    assert BusinessSpan(days=1).ns(WorkCalendar()) == 9 * H
    assert BusinessSpan(days=0.5, hours=1).ns(WorkCalendar()) == round(5.5 * H)
    assert str(BusinessSpan(hours=4)) == "4 business hours"
    assert str(BusinessSpan(days=1)) == "1 business day"


def test_calendar_lookup_team_beats_source_beats_default() -> None:
    ops = WorkCalendar(name="ops", workdays=(0, 1, 2, 3, 4, 5, 6))
    cals = Calendars(by_team={"nl": AMSTERDAM}, by_source={"volvo": ops})
    assert cals.all() == [WorkCalendar(), AMSTERDAM, ops]
    team = np.array(["nl", "nl", None, "other"], dtype=object)
    source = np.array(["volvo", "x", "volvo", "x"], dtype=object)
    assert list(cals.index_for(team=team, source=source)) == [1, 1, 2, 0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"workdays": ()}, "workdays"),
        ({"workdays": (7,)}, "workdays"),
        ({"day_start": time(17), "day_end": time(8)}, "is not after"),
        ({"holiday_country": "XX"}, "no country"),
    ],
    ids=["zone", "no-workdays", "bad-weekday", "reversed-hours", "country"],
)
def test_invalid_calendars_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidSettingsError, match=message):
        WorkCalendar(**kwargs)  # type: ignore[arg-type]
