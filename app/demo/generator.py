"""The simulated service desk's calls: who calls when, and what happens to each call after.

Pure and deterministic by seed: ``history(start, end)`` gives every change of ~7 weeks of a
realistic desk, ``live(start, count)`` the calls that keep arriving while the demo runs. Each call
is a list of ``Change`` s in time order; ``app.demo.desk`` applies them to the TOPdesk-compatible
API as the clock passes them.

What the desk looks like (docs/demo.md):

- arrivals by weekday and hour in Europe/Amsterdam: morning and early-afternoon peaks on
  workdays, a trickle in the evening, few calls at the weekend;
- priorities P1..P5 skewed towards P3/P4; categories that route to five teams with 2-4
  operators each; targets (``targetDate``) per priority;
- every call lands at the Service Desk (first line), is triaged, routed (sometimes to the wrong
  team first, sometimes bounced between two teams: ping-pong), picked up, worked on with
  customer updates, put on hold for the user or a supplier, resolved, sometimes reopened, and
  closed a few working days later; a few are cancelled;
- some calls go dormant (nobody touches them for weeks: stale), one operator is overloaded and
  one has been absent for the last working days while holding open calls.

History waits follow office hours (08:00-17:30 on workdays); the live desk is staffed around the
clock and runs ``pace`` times faster than real time, so something happens every few seconds.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

__all__ = [
    "ABSENT_OPERATOR",
    "CATEGORIES",
    "OVERLOADED_OPERATOR",
    "TEAMS",
    "TIMEZONE",
    "Action",
    "Call",
    "Change",
    "DeskGenerator",
    "hourly_rate",
]

TIMEZONE = ZoneInfo("Europe/Amsterdam")
OFFICE_START = time(8, 0)
OFFICE_END = time(17, 30)

TEAMS: Mapping[str, tuple[str, ...]] = {
    "Service Desk": ("Anna de Vries", "Bram Jansen", "Chris Smit", "Daan Visser"),
    "Network": ("Eva Bakker", "Finn de Boer"),
    "Workplace": ("Gijs Mulder", "Hanna Peters", "Iris Bos"),
    "Applications": ("Jesse Meijer", "Kim de Groot", "Lars Hendriks"),
    "Security": ("Mila Dekker", "Noah Brouwer"),
}
FIRST_LINE = "Service Desk"
OVERLOADED_OPERATOR = "Chris Smit"
"""gets three times the share of the Service Desk's calls"""
ABSENT_OPERATOR = "Iris Bos"
"""does nothing in the last ``ABSENT_DAYS`` working days and keeps her open calls"""
ABSENT_DAYS = 3

CATEGORIES: Mapping[str, tuple[str, float, tuple[str, ...]]] = {
    # category: (team that solves it, share of calls, typical titles)
    "Access": (
        "Service Desk",
        0.30,
        (
            "Password reset",
            "Account locked after holiday",
            "New employee needs an account",
            "MFA app on new phone",
            "No access to shared mailbox",
        ),
    ),
    "Hardware": (
        "Workplace",
        0.22,
        (
            "Laptop does not start",
            "Docking station does not see second screen",
            "Printer on 3rd floor jams",
            "Headset crackles in Teams",
            "Replacement laptop battery",
        ),
    ),
    "Software": (
        "Applications",
        0.25,
        (
            "Outlook crashes on start",
            "ERP invoice export fails",
            "Excel add-in missing after update",
            "CRM search very slow",
            "Licence expired for drawing tool",
        ),
    ),
    "Network": (
        "Network",
        0.15,
        (
            "VPN drops every hour",
            "Wi-Fi slow in meeting room B",
            "No network on desk port 2.14",
            "Branch office cannot reach file server",
        ),
    ),
    "Security": (
        "Security",
        0.08,
        (
            "Phishing mail reported",
            "Suspicious sign-in alert",
            "USB stick found in car park",
            "Request firewall exception",
        ),
    ),
}
SUPPLIERS = ("Dell Support", "Microsoft Premier", "KPN Zakelijk", "ERP vendor")
CALLERS = (
    "Jan Willems",
    "Sanne de Wit",
    "Pieter van Dijk",
    "Lotte Vermeulen",
    "Tom Kok",
    "Eline Schouten",
    "Ruben Maas",
    "Fleur Smits",
    "Bas Kuipers",
    "Noor Hoekstra",
)
PRIORITY_WEIGHTS = {"P1": 0.03, "P2": 0.12, "P3": 0.45, "P4": 0.30, "P5": 0.10}
TARGET_HOURS = {"P1": 4.0, "P2": 8.0, "P3": 24.0, "P4": 40.0, "P5": 80.0}
"""office hours from logging to the target date"""
WORK_HOURS = {"P1": 1.5, "P2": 4.0, "P3": 10.0, "P4": 16.0, "P5": 28.0}
"""mean office hours of work before a call is resolved"""

# hour of day (local) -> share of a workday's calls
_WORKDAY = {
    7: 0.02,
    8: 0.09,
    9: 0.14,
    10: 0.13,
    11: 0.11,
    12: 0.06,
    13: 0.11,
    14: 0.11,
    15: 0.09,
    16: 0.07,
    17: 0.03,
    18: 0.015,
    19: 0.01,
    20: 0.005,
}
_WEEKEND_DAILY = 2.0
CALLS_PER_WORKDAY = 48.0


def hourly_rate(local: datetime) -> float:
    """Expected calls per hour starting at ``local`` (Europe/Amsterdam)."""
    if local.weekday() >= 5:
        return _WEEKEND_DAILY / 12 if 9 <= local.hour < 21 else 0.0
    return CALLS_PER_WORKDAY * _WORKDAY.get(local.hour, 0.0)


@dataclass(frozen=True)
class Action:
    """A note on the call: visible to the caller or internal, by an operator or the caller."""

    text: str
    visible: bool
    by_caller: bool = False
    operator: str | None = None


@dataclass(frozen=True)
class Change:
    """One change to a call at ``at``: TOPdesk incident fields to set, and/or an action."""

    at: datetime
    call: int
    fields: Mapping[str, Any] = field(default_factory=dict)
    """by name: ``status``, ``team``, ``operator``, ``priority``, ``supplier`` (None clears),
    ``onHold``, ``completed``, ``closed``, ``closureCode``"""
    action: Action | None = None


@dataclass(frozen=True)
class Call:
    """A call as it is logged; ``changes[0]`` is its creation."""

    key: int
    created_at: datetime
    title: str
    category: str
    priority: str
    caller: str
    target_at: datetime
    changes: tuple[Change, ...]
    traits: frozenset[str] = frozenset()
    """what the generator made of it: ping_pong, misrouted, reopened, dormant, waiting_user,
    waiting_supplier, cancelled, absent_holder (for tests and docs)"""


Delay = Callable[[datetime, float], datetime]
"""``delay(t, minutes)``: when ``minutes`` of working time after ``t`` have passed"""


def office_delay(t: datetime, minutes: float) -> datetime:
    """``t`` plus ``minutes`` of office time (workdays 08:00-17:30 Europe/Amsterdam)."""
    local = t.astimezone(TIMEZONE)
    left = timedelta(minutes=minutes)
    while True:
        day_start = datetime.combine(local.date(), OFFICE_START, TIMEZONE)
        day_end = datetime.combine(local.date(), OFFICE_END, TIMEZONE)
        if local.weekday() >= 5 or local >= day_end:
            local = datetime.combine(local.date() + timedelta(days=1), OFFICE_START, TIMEZONE)
            continue
        local = max(local, day_start)
        if local + left <= day_end:
            return (local + left).astimezone(t.tzinfo)
        left -= day_end - local
        local = datetime.combine(local.date() + timedelta(days=1), OFFICE_START, TIMEZONE)


class DeskGenerator:
    """Calls of one simulated desk; the same seed gives the same calls."""

    def __init__(self, seed: int = 1) -> None:
        self.seed = seed
        self._next_key = 0

    def _rng(self, salt: str) -> random.Random:
        return random.Random(f"{self.seed}:{salt}")

    # --- arrivals -------------------------------------------------------------------------

    def arrivals(self, start: datetime, end: datetime) -> list[datetime]:
        """Call times in ``[start, end)``: a Poisson process whose rate follows the hour of the
        week (``hourly_rate``)."""
        rng = self._rng(f"arrivals:{start.isoformat()}")
        out: list[datetime] = []
        hour = start.replace(minute=0, second=0, microsecond=0)
        while hour < end:
            rate = hourly_rate(hour.astimezone(TIMEZONE))
            if rate > 0:
                t = 0.0
                while True:
                    t += rng.expovariate(rate)
                    if t >= 1.0:
                        break
                    at = hour + timedelta(hours=t)
                    if start <= at < end:
                        out.append(at)
            hour += timedelta(hours=1)
        return out

    # --- calls ----------------------------------------------------------------------------

    def history(self, start: datetime, end: datetime) -> list[Call]:
        """Every call logged in ``[start, end)`` with its whole life (changes may lie after
        ``end``: they happen while the demo runs). The absent operator stops working
        ``ABSENT_DAYS`` working days before ``end``."""
        absent_from = _working_days_before(end, ABSENT_DAYS)
        return [
            self._call(at, delay=office_delay, absent_from=absent_from, dormant_share=0.07)
            for at in self.arrivals(start, end)
        ]

    def live(self, start: datetime, count: int, *, pace: float) -> list[Call]:
        """``count`` calls after ``start`` at the peak hour's rate, ``pace`` times faster than
        real time (every wait divided by ``pace``), staffed around the clock."""
        rng = self._rng(f"live:{start.isoformat()}:{self._next_key}")
        peak = max(_WORKDAY.values()) * CALLS_PER_WORKDAY  # calls per simulated hour
        calls = []
        at = start
        for _ in range(count):
            at += timedelta(hours=rng.expovariate(peak)) / pace
            calls.append(
                self._call(
                    at,
                    delay=lambda t, minutes: t + timedelta(minutes=minutes) / pace,
                    absent_from=None,
                    dormant_share=0.03,
                )
            )
        return calls

    def _call(
        self,
        created: datetime,
        *,
        delay: Delay,
        absent_from: datetime | None,
        dormant_share: float,
    ) -> Call:
        key = self._next_key
        self._next_key += 1
        rng = self._rng(f"call:{key}")
        category = _weighted(rng, {c: spec[1] for c, spec in CATEGORIES.items()})
        home, _share, titles = CATEGORIES[category]
        priority = _weighted(rng, PRIORITY_WEIGHTS)
        title = rng.choice(titles)
        caller = rng.choice(CALLERS)
        urgency = {"P1": 0.2, "P2": 0.5, "P3": 1.0, "P4": 1.3, "P5": 1.6}[priority]
        target = delay(created, TARGET_HOURS[priority] * 60)
        life = _Life(key, rng, delay, absent_from)
        life.at = created
        life.add(
            fields={"status": "Logged", "team": FIRST_LINE, "operator": None},
            action=Action(f"Caller reports: {title.lower()}", visible=True, by_caller=True),
        )
        traits: set[str] = set()

        # triage at the first line, then routing (sometimes wrong first, sometimes ping-pong)
        life.wait(rng.expovariate(1 / 20) * urgency + 2)
        if rng.random() < 0.03:
            life.add(fields={"status": "Cancelled", "closed": True, "closureCode": "Duplicate"})
            traits.add("cancelled")
            return life.call(created, title, category, priority, caller, target, traits)
        team = home
        if home != FIRST_LINE:
            others = [t for t in TEAMS if t not in (home, FIRST_LINE)]
            roll = rng.random()
            if roll < 0.06:
                # ping-pong: bounced between the right team and another one
                other = rng.choice(others)
                hops = [home, other, home] if rng.random() < 0.5 else [other, home, other, home]
                for hop in hops[:-1]:
                    life.add(fields={"team": hop, "operator": None, "status": "Logged"})
                    life.wait(rng.expovariate(1 / 90) * urgency + 10)
                traits.add("ping_pong")
            elif roll < 0.16:
                wrong = rng.choice(others)
                life.add(fields={"team": wrong, "operator": None, "status": "Logged"})
                life.wait(rng.expovariate(1 / 120) * urgency + 10)
                life.add(fields={"team": FIRST_LINE, "operator": None, "status": "Logged"})
                life.wait(rng.expovariate(1 / 30) + 5)
                traits.add("misrouted")
            if life.team != team:
                life.add(fields={"team": team, "operator": None, "status": "Logged"})
            life.wait(rng.expovariate(1 / 60) * urgency + 5)

        # pick-up
        operator = _pick_operator(rng, team, life.at, absent_from)
        life.add(
            fields={"operator": operator, "status": "In progress"},
            action=Action("Picked up, looking into it", visible=True, operator=operator),
        )
        if operator == ABSENT_OPERATOR:
            traits.add("absent_holder")
        if rng.random() < dormant_share:
            # forgotten: nobody touches it for weeks (stale, maybe dead)
            life.wait(rng.uniform(15, 40) * 9.5 * 60)
            traits.add("dormant")

        # work, with waits for the user or a supplier and customer updates
        work = rng.expovariate(1 / (WORK_HOURS[priority] * 60))
        chunks = rng.randint(1, 3)
        for chunk in range(chunks):
            life.wait(work / chunks)
            roll = rng.random()
            if chunk < chunks - 1 or roll < 0.35:
                if roll < 0.22:
                    life.add(
                        fields={"status": "Waiting for user", "onHold": True},
                        action=Action(
                            "Could you try again and send a screenshot?",
                            visible=True,
                            operator=operator,
                        ),
                    )
                    traits.add("waiting_user")
                    if rng.random() < 0.12:
                        life.wait(rng.uniform(6, 12) * 9.5 * 60)  # the user never answers
                        life.add(
                            fields={"status": "Closed", "closed": True, "onHold": False},
                            action=Action(
                                "Closed: no answer from you", visible=True, operator=operator
                            ),
                        )
                        return life.call(created, title, category, priority, caller, target, traits)
                    life.wait(rng.expovariate(1 / (9.5 * 60)) + 15)
                    life.add(
                        fields={"status": "In progress", "onHold": False},
                        action=Action("Screenshot attached", visible=True, by_caller=True),
                    )
                elif roll < 0.30:
                    supplier = rng.choice(SUPPLIERS)
                    life.add(
                        fields={
                            "status": "Waiting for supplier",
                            "onHold": True,
                            "supplier": supplier,
                        },
                        action=Action(f"Escalated to {supplier}", visible=False, operator=operator),
                    )
                    traits.add("waiting_supplier")
                    life.wait(rng.expovariate(1 / (2 * 9.5 * 60)) + 60)
                    life.add(
                        fields={"status": "In progress", "onHold": False, "supplier": None},
                        action=Action("Supplier delivered a fix", visible=False, operator=operator),
                    )
                elif roll < 0.55:
                    life.add(
                        action=Action(
                            "Update: still working on it", visible=True, operator=operator
                        )
                    )
                elif roll < 0.60:
                    bump = {"P3": "P2", "P4": "P3", "P5": "P4"}.get(priority)
                    if bump:
                        life.add(fields={"priority": bump})

        # resolve, maybe reopen, then close a few working days later
        life.add(
            fields={"status": "Completed", "completed": True},
            action=Action("Solved: please let us know if not", visible=True, operator=operator),
        )
        if rng.random() < 0.06:
            life.wait(rng.expovariate(1 / 240) + 30)
            life.add(
                fields={"status": "In progress", "completed": False},
                action=Action("It happens again", visible=True, by_caller=True),
            )
            traits.add("reopened")
            life.wait(rng.expovariate(1 / (WORK_HOURS[priority] * 30)) + 10)
            life.add(
                fields={"status": "Completed", "completed": True},
                action=Action("Solved again", visible=True, operator=operator),
            )
        life.wait(rng.uniform(2, 4) * 9.5 * 60)
        life.add(fields={"status": "Closed", "closed": True})
        return life.call(created, title, category, priority, caller, target, traits)


class _Life:
    """The changes of one call as it is being generated."""

    def __init__(
        self, key: int, rng: random.Random, delay: Delay, absent_from: datetime | None
    ) -> None:
        self.key = key
        self.rng = rng
        self.delay = delay
        self.absent_from = absent_from
        self.at: datetime = datetime.min
        self.team: str | None = None
        self.operator: str | None = None
        self.changes: list[Change] = []
        self.frozen = False

    def wait(self, minutes: float) -> None:
        self.at = self.delay(self.at, max(minutes, 1.0))

    def add(self, *, fields: Mapping[str, Any] | None = None, action: Action | None = None) -> None:
        if self.frozen:
            return
        fields = dict(fields or {})
        # the absent operator's calls stand still from the day she went away
        if (
            self.absent_from is not None
            and self.operator == ABSENT_OPERATOR
            and self.at >= self.absent_from
        ):
            self.frozen = True
            return
        self.team = fields.get("team", self.team)
        self.operator = fields.get("operator", self.operator)
        self.changes.append(Change(self.at, self.key, fields, action))
        self.wait(self.rng.uniform(0.5, 3))  # changes of one call never share an instant

    def call(
        self,
        created: datetime,
        title: str,
        category: str,
        priority: str,
        caller: str,
        target: datetime,
        traits: set[str],
    ) -> Call:
        return Call(
            key=self.key,
            created_at=created,
            title=title,
            category=category,
            priority=priority,
            caller=caller,
            target_at=target,
            changes=tuple(self.changes),
            traits=frozenset(traits),
        )


def _weighted(rng: random.Random, weights: Mapping[str, float]) -> str:
    names = list(weights)
    return rng.choices(names, weights=[weights[n] for n in names])[0]


def _pick_operator(
    rng: random.Random, team: str, at: datetime, absent_from: datetime | None
) -> str:
    weights = {op: 3.0 if op == OVERLOADED_OPERATOR else 1.0 for op in TEAMS[team]}
    if absent_from is not None and at >= absent_from and ABSENT_OPERATOR in weights:
        del weights[ABSENT_OPERATOR]
    return _weighted(rng, weights)


def _working_days_before(end: datetime, days: int) -> datetime:
    """The start of the office day ``days`` working days before ``end``'s day."""
    local = end.astimezone(TIMEZONE)
    day = local.date()
    left = days
    while left > 0:
        day -= timedelta(days=1)
        if day.weekday() < 5:
            left -= 1
    return datetime.combine(day, OFFICE_START, TIMEZONE).astimezone(end.tzinfo)
