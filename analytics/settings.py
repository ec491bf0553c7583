"""Settings of the analytics: thresholds, cadences, percentiles and policies.

Plain frozen dataclasses with the defaults the issue and docs/metrics.md give. The app builds them
from its configuration and passes them in; the analytics never read configuration themselves.
Every result carries the settings object it was computed with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from analytics.clock import BusinessSpan
from analytics.errors import InvalidSettingsError
from analytics.frames import (
    FIELD_ASSIGNEE,
    FIELD_CUSTOMER_UPDATE,
    FIELD_STATE,
    FIELD_STATUS,
    FIELD_TEAM,
    FIELDS,
    IN_PROGRESS,
    NEW,
    STATES,
)

__all__ = [
    "BlockerSettings",
    "FlowSettings",
    "ReopenPolicy",
    "StaleSettings",
    "by_priority",
]

ReopenPolicy = Literal["last_stop", "sum_of_cycles"]
"""How a reopened ticket (resolved -> open again) is timed; see docs/metrics.md "Reopens"."""

PercentileMethod = Literal["nearest_rank", "linear"]


def by_priority(
    p1: BusinessSpan, p2: BusinessSpan, p3: BusinessSpan, p4: BusinessSpan, p5: BusinessSpan
) -> Mapping[int, BusinessSpan]:
    """A per-priority table (priority 1 = most urgent)."""
    return {1: p1, 2: p2, 3: p3, 4: p4, 5: p5}


def _hours(h: float) -> BusinessSpan:
    return BusinessSpan(hours=h)


def _days(d: float) -> BusinessSpan:
    return BusinessSpan(days=d)


def _check_table(name: str, table: Mapping[int, BusinessSpan]) -> None:
    for prio, span in table.items():
        if span.days < 0 or span.hours < 0:
            raise InvalidSettingsError(f"{name}[P{prio}] must not be negative, got {span}")


@dataclass(frozen=True)
class StaleSettings:
    """When an open ticket counts as stale, and when as dead."""

    thresholds: Mapping[int, BusinessSpan] = field(
        default_factory=lambda: by_priority(_hours(4), _days(1), _days(3), _days(5), _days(5))
    )
    """business time without real activity after which a ticket of that priority is stale"""
    unknown_priority: BusinessSpan = field(default_factory=lambda: _days(3))
    """threshold for tickets without a priority"""
    dead_after: timedelta = timedelta(days=45)
    """calendar time without real activity after which a ticket is flagged "dead?\""""
    activity_fields: frozenset[str] = frozenset(
        {FIELD_STATE, FIELD_STATUS, FIELD_TEAM, FIELD_ASSIGNEE, FIELD_CUSTOMER_UPDATE}
    )
    """event fields that count as real activity (priority changes and internal notes do not)"""
    system_actors: frozenset[str] = frozenset()
    """actors whose events never count as activity (automation, integrations, e.g. "Siebel")"""

    def __post_init__(self) -> None:
        _check_table("thresholds", self.thresholds)
        unknown = self.activity_fields - set(FIELDS)
        if unknown:
            raise InvalidSettingsError(f"unknown activity fields: {sorted(unknown)}")


@dataclass(frozen=True)
class BlockerSettings:
    """Thresholds of the flow blockers."""

    queue_thresholds: Mapping[int, BusinessSpan] = field(
        default_factory=lambda: by_priority(_hours(1), _hours(4), _days(1), _days(2), _days(2))
    )
    """business time a ticket may sit unassigned or queued (state new) before it is flagged"""
    unknown_priority: BusinessSpan = field(default_factory=lambda: _days(1))
    pingpong_field: Literal["team", "assignee"] = "team"
    sla_bands: tuple[float, ...] = (0.5, 0.75, 0.9)
    """shares of the target window used at which a ticket is reported as at risk"""
    sla_targets: Mapping[int, BusinessSpan] = field(default_factory=dict)
    """targets per priority for tickets without a ``due_at`` (resolution target from creation);
    empty: only tickets with a ``due_at`` are checked"""
    sla_clock: Literal["calendar", "business"] = "calendar"
    """how the used share of the target window is measured"""
    update_cadence: Mapping[int, BusinessSpan] = field(
        default_factory=lambda: by_priority(_hours(4), _days(1), _days(3), _days(5), _days(5))
    )
    """how often the customer must hear from us while the ball is with us"""
    unknown_priority_cadence: BusinessSpan = field(default_factory=lambda: _days(3))
    our_court_states: frozenset[str] = frozenset({NEW, IN_PROGRESS})
    """states in which the ball is with us (not with the customer or a supplier)"""
    overload_percentile: float = 0.85
    """an operator is overloaded above this percentile of open work in their team"""
    absent_after: BusinessSpan = field(default_factory=lambda: _days(2))
    """no activity by an operator for this long while holding open tickets: absent"""
    takeover_lookback: timedelta = timedelta(days=90)
    """how far back "recently resolved the same category" looks"""
    takeover_suggestions: int = 3
    system_actors: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("queue_thresholds", "sla_targets", "update_cadence"):
            _check_table(name, getattr(self, name))
        if not all(0 < b < 1 for b in self.sla_bands) or list(self.sla_bands) != sorted(
            self.sla_bands
        ):
            raise InvalidSettingsError("sla_bands must be increasing shares between 0 and 1")
        if not 0 < self.overload_percentile < 1:
            raise InvalidSettingsError("overload_percentile must be between 0 and 1")
        unknown = self.our_court_states - set(STATES)
        if unknown:
            raise InvalidSettingsError(f"unknown states in our_court_states: {sorted(unknown)}")


@dataclass(frozen=True)
class FlowSettings:
    """Percentiles, windows and policies of the flow metrics."""

    percentiles: tuple[float, ...] = (0.5, 0.7, 0.85, 0.95)
    sle_percentile: float = 0.85
    """the percentile that is the service-level expectation"""
    percentile_method: PercentileMethod = "nearest_rank"
    """nearest_rank: the smallest value with at least p of the sample at or below it"""
    window_days: float = 90.0
    """trailing window (days before ``now``) for completed-work metrics unless one is passed"""
    start_states: frozenset[str] = frozenset({IN_PROGRESS})
    """entering one of these starts the cycle time (the commitment point)"""
    active_states: frozenset[str] = frozenset({IN_PROGRESS})
    """time in these states, while assigned, is active time for flow efficiency"""
    reopen_policy: ReopenPolicy = "last_stop"
    age_from: Literal["created", "start"] = "created"
    """aging WIP measures age from creation (the customer's wait) or from the start state"""
    timezone: str = "UTC"
    """zone in which days and weeks of throughput, WIP and cumulative flow are counted"""
    week_start: Literal["MON", "SUN"] = "MON"

    def __post_init__(self) -> None:
        if not self.percentiles or not all(0 < p <= 1 for p in self.percentiles):
            raise InvalidSettingsError("percentiles must be shares in (0, 1]")
        if not 0 < self.sle_percentile <= 1:
            raise InvalidSettingsError("sle_percentile must be a share in (0, 1]")
        if self.window_days <= 0:
            raise InvalidSettingsError("window_days must be positive")
        for name in ("start_states", "active_states"):
            unknown = getattr(self, name) - set(STATES)
            if unknown:
                raise InvalidSettingsError(f"unknown states in {name}: {sorted(unknown)}")
