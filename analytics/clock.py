"""Clocks: calendar time and business time (working days, working hours, time zone, holidays).

Calendar time is plain elapsed time between two instants (a day across a daylight-saving change
lasts 23 or 25 hours). Business time is the part of that span that falls inside a work calendar:
the working hours, in the calendar's own time zone, of working weekdays that are not public
holidays. Public holidays come from the maintained ``holidays`` package (country and optional
subdivision), plus any extra closed dates.

Implementation: for the local dates that cover the inputs we build one row per day holding the
UTC instants of that day's opening and closing (so a DST change inside working hours is counted in
real elapsed time) and the business time of all earlier days. Business time up to an instant ``t``
is then ``cum[day(t)] + clip(t - open[day(t)], 0, length[day(t)])``; the business time between
two instants is the difference. Everything is vectorised over numpy arrays of int64 nanoseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib
import numpy as np
import numpy.typing as npt
import pandas as pd

from analytics.errors import InvalidSettingsError
from analytics.frames import NAT

__all__ = [
    "BusinessSpan",
    "Calendars",
    "WorkCalendar",
    "add_business",
    "business_between",
    "cumulative_business",
    "day_index",
]

I64 = npt.NDArray[np.int64]
_HOUR = 3_600_000_000_000
_DAY = 24 * _HOUR


@dataclass(frozen=True)
class WorkCalendar:
    """When a team works: weekdays, hours in a time zone, and the days it is closed.

    ``day_end == time(0)`` means midnight at the end of the day (a 24-hour working day).
    """

    name: str = "default"
    timezone: str = "UTC"
    workdays: tuple[int, ...] = (0, 1, 2, 3, 4)
    """ISO weekday numbers minus one: Monday is 0, Sunday is 6"""
    day_start: time = time(8, 0)
    day_end: time = time(17, 0)
    holiday_country: str | None = None
    """ISO country code for the ``holidays`` package, e.g. ``"NL"``, ``"BE"``, ``"US"``"""
    holiday_subdivision: str | None = None
    """state / province code where holidays differ by region, e.g. ``"BY"`` for Bavaria"""
    extra_closed_days: tuple[date, ...] = ()
    """company closing days beyond the public holidays"""

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise InvalidSettingsError(
                f"calendar `{self.name}`: unknown time zone `{self.timezone}`"
            ) from e
        if not self.workdays or any(d not in range(7) for d in self.workdays):
            raise InvalidSettingsError(
                f"calendar `{self.name}`: workdays must be a non-empty subset of 0..6 (Monday=0)"
            )
        if self.day_ns <= 0:
            raise InvalidSettingsError(
                f"calendar `{self.name}`: day_end {self.day_end} is not after day_start "
                f"{self.day_start}"
            )
        if self.holiday_country is not None:
            try:
                holidays_lib.country_holidays(
                    self.holiday_country, subdiv=self.holiday_subdivision, years=2024
                )
            except NotImplementedError as e:
                raise InvalidSettingsError(
                    f"calendar `{self.name}`: the holidays package has no country "
                    f"`{self.holiday_country}` (subdivision {self.holiday_subdivision!r})"
                ) from e

    @property
    def day_ns(self) -> int:
        """Length of one working day in nanoseconds (what "one business day" means)."""
        end = _time_ns(self.day_end) or _DAY
        return end - _time_ns(self.day_start)


def _time_ns(t: time) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000_000 + t.microsecond * 1000


@dataclass(frozen=True)
class BusinessSpan:
    """A length of business time: ``days`` of the calendar's working day plus ``hours``.

    "1 business day" is as long as the calendar's working day (9 hours for 08:00-17:00), so the
    same setting means the same thing for teams with different hours.
    """

    days: float = 0.0
    hours: float = 0.0

    def ns(self, calendar: WorkCalendar) -> int:
        return round(self.days * calendar.day_ns + self.hours * _HOUR)

    def __str__(self) -> str:
        parts = []
        if self.days:
            parts.append(f"{self.days:g} business day{'s' if self.days != 1 else ''}")
        if self.hours or not parts:
            parts.append(f"{self.hours:g} business hour{'s' if self.hours != 1 else ''}")
        return " + ".join(parts)


@dataclass(frozen=True)
class Calendars:
    """Which calendar applies: per team first, then per source, else the default."""

    default: WorkCalendar = field(default_factory=WorkCalendar)
    by_team: Mapping[str, WorkCalendar] = field(default_factory=dict)
    by_source: Mapping[str, WorkCalendar] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash(
            (
                self.default,
                tuple(sorted(self.by_team.items())),
                tuple(sorted(self.by_source.items())),
            )
        )

    def all(self) -> list[WorkCalendar]:
        """The distinct calendars, the default first; an index into this list identifies one."""
        found: list[WorkCalendar] = [self.default]
        for cal in (*self.by_team.values(), *self.by_source.values()):
            if cal not in found:
                found.append(cal)
        return found

    def index_for(
        self, *, team: npt.NDArray[np.object_], source: npt.NDArray[np.object_]
    ) -> npt.NDArray[np.int8]:
        """For each row, the index (into ``all()``) of the calendar of its team or source."""
        cals = self.all()
        out = np.zeros(len(team), dtype=np.int8)
        if len(cals) == 1:
            return out
        if self.by_source:
            out = _lookup(source, {k: cals.index(v) for k, v in self.by_source.items()}, out)
        if self.by_team:
            team_idx = _lookup(team, {k: cals.index(v) for k, v in self.by_team.items()}, None)
            out = np.where(team_idx >= 0, team_idx, out).astype(np.int8)
        return out

    def day_ns(self, which: npt.NDArray[np.int8]) -> I64:
        """Length of one working day (ns) of each row's calendar."""
        lengths = np.array([c.day_ns for c in self.all()], dtype=np.int64)
        return lengths[which]

    def span_ns(self, span: BusinessSpan, which: npt.NDArray[np.int8]) -> I64:
        """A business span in ns, per row's calendar."""
        return np.round(span.days * self.day_ns(which) + span.hours * _HOUR).astype(np.int64)


def _lookup(
    values: npt.NDArray[np.object_], mapping: dict[str, int], base: npt.NDArray[np.int8] | None
) -> npt.NDArray[np.int8]:
    codes, uniques = pd.factorize(values)
    table = np.array([mapping.get(u, -1) for u in uniques] + [-1], dtype=np.int8)
    found = table[codes]  # code -1 (missing) picks the trailing -1
    if base is None:
        return found
    return np.where(found >= 0, found, base).astype(np.int8)


@dataclass(frozen=True)
class _Days:
    midnight: I64
    """UTC instant of each local midnight, one more than there are days"""
    opening: I64
    length: I64
    cum: I64
    """business time before each day, one more than there are days"""


@lru_cache(maxsize=64)
def _days(cal: WorkCalendar, first_year: int, last_year: int) -> _Days:
    dates = pd.date_range(f"{first_year}-01-01", f"{last_year + 1}-01-01", freq="D")
    ones = np.ones(len(dates), dtype=bool)

    def local(offset_ns: int) -> I64:
        stamps = (dates + pd.Timedelta(offset_ns, unit="ns")).tz_localize(
            cal.timezone, ambiguous=ones, nonexistent="shift_forward"
        )
        return np.asarray(stamps.tz_convert("UTC").as_unit("ns").asi8, dtype=np.int64)

    midnight = local(0)
    opening = local(_time_ns(cal.day_start))[:-1]
    end_ns = _time_ns(cal.day_end) or _DAY
    closing = local(end_ns)[:-1] if end_ns < _DAY else midnight[1:]
    workday = np.isin(dates[:-1].day_of_week, cal.workdays)
    closed: set[date] = set(cal.extra_closed_days)
    if cal.holiday_country is not None:
        closed |= set(
            holidays_lib.country_holidays(
                cal.holiday_country,
                subdiv=cal.holiday_subdivision,
                years=range(first_year, last_year + 1),
            ).keys()
        )
    if closed:
        workday &= ~np.isin(dates[:-1].date, np.array(sorted(closed), dtype=object))
    length = np.where(workday, closing - opening, 0).astype(np.int64)
    cum = np.concatenate([[0], np.cumsum(length)]).astype(np.int64)
    return _Days(midnight=midnight, opening=opening, length=length, cum=cum)


def _years(cal: WorkCalendar, *arrays: I64) -> tuple[int, int]:
    lo, hi = None, None
    big = np.iinfo(np.int64).max
    for arr in arrays:
        if not len(arr):
            continue
        b = int(arr.max())
        if b == NAT:
            continue
        a = int(np.min(arr, where=arr != NAT, initial=big))
        lo = a if lo is None else min(lo, a)
        hi = b if hi is None else max(hi, b)
    if lo is None or hi is None:
        return 2000, 2000
    tz = ZoneInfo(cal.timezone)
    first = pd.Timestamp(lo, tz="UTC").tz_convert(tz).year - 1
    last = pd.Timestamp(hi, tz="UTC").tz_convert(tz).year + 1
    return first, last


def day_index(midnight: I64, t: I64) -> I64:
    """Index of the local day containing each instant, given the UTC instants of consecutive
    local midnights (clipped to the days given).

    Days are 24 hours give or take a DST hour, so ``(t - first midnight) // 24 h`` is off by at
    most one day; two correction passes make it exact. Cheaper than a binary search per instant.
    """
    last = len(midnight) - 2
    d: I64 = np.clip((t - midnight[0]) // _DAY, 0, last).astype(np.int64)
    if midnight[-1] - midnight[0] == (len(midnight) - 1) * _DAY:
        return d  # no DST in this range: every day is 24 hours
    for _ in range(2):
        d -= (t < midnight[d]) & (d > 0)
        d += (t >= midnight[d + 1]) & (d < last)
    return d


def _cumulative(days: _Days, t: I64) -> I64:
    d = day_index(days.midnight, t)
    inside = np.clip(t - days.opening[d], 0, days.length[d])
    return np.asarray(days.cum[d] + inside, dtype=np.int64)


def business_between(
    calendars: Calendars, which: npt.NDArray[np.int8], start: I64, end: I64
) -> I64:
    """Business time (ns) from ``start`` to ``end`` per row, in the calendar ``which`` names.

    Rows with a missing end or start give ``NAT``; a reversed span gives a negative value.
    """
    out = np.full(len(start), NAT, dtype=np.int64)
    valid = (start != NAT) & (end != NAT)
    cals = calendars.all()
    if len(cals) == 1 and bool(valid.all()):
        days = _days(cals[0], *_years(cals[0], start, end))
        return _cumulative(days, end) - _cumulative(days, start)
    for k, cal in enumerate(cals):
        rows = np.flatnonzero(valid & (which == k))
        if not len(rows):
            continue
        days = _days(cal, *_years(cal, start[rows], end[rows]))
        out[rows] = _cumulative(days, end[rows]) - _cumulative(days, start[rows])
    return out


def cumulative_business(
    calendars: Calendars, parts: list[tuple[npt.NDArray[np.int8], I64]]
) -> list[I64]:
    """Business time up to each instant, per ``(which calendar, instants)`` part.

    Values of the same calendar are on one scale across all parts (differences between them
    are business durations); ``NAT`` stays ``NAT``.
    """
    outs = [np.full(len(t), NAT, dtype=np.int64) for _w, t in parts]
    for k, cal in enumerate(calendars.all()):
        picks = [(w == k) & (t != NAT) for w, t in parts]
        chosen = [t[p] if not p.all() else t for (_w, t), p in zip(parts, picks, strict=True)]
        days = _days(cal, *_years(cal, *chosen))
        for out, pick, t in zip(outs, picks, chosen, strict=True):
            if pick.all():
                out[:] = _cumulative(days, t)
            elif pick.any():
                out[pick] = _cumulative(days, t)
    return outs


def add_business(calendars: Calendars, which: npt.NDArray[np.int8], start: I64, span: I64) -> I64:
    """The instant at which ``span`` ns of business time have passed since ``start``.

    A span that ends exactly at a closing time gives that closing time, not the next opening.
    """
    out = np.full(len(start), NAT, dtype=np.int64)
    valid = (start != NAT) & (span >= 0)
    for k, cal in enumerate(calendars.all()):
        rows = np.flatnonzero(valid & (which == k))
        if not len(rows):
            continue
        week = cal.day_ns * len(cal.workdays)
        weeks_ahead = int(span[rows].max() // week) + 1
        first, last = _years(cal, start[rows])
        # holidays can stretch a span: leave a generous margin of years beyond the plain estimate
        last += weeks_ahead // 52 + 2
        days = _days(cal, first, last)
        target = _cumulative(days, start[rows]) + span[rows]
        cum_end = days.cum[1:]
        d = np.searchsorted(cum_end, target, side="left")
        d = np.clip(d, 0, len(days.length) - 1)
        out[rows] = np.maximum(days.opening[d] + (target - days.cum[d]), start[rows])
    return out
