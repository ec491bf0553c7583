"""Map each tool's raw statuses to the generic lifecycle.

Every source has a map with sensible defaults for its tool (``DEFAULT_STATUS_MAPS``) that the
configuration can extend or override. Matching ignores case and surrounding blanks. A raw status
the map does not know is kept raw, mapped to the source's fallback state and counted in
``StatusMapping.unknown`` so the import summary and ``ticketflow sources`` can report it: it is
never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from connectors.base import LifecycleState

__all__ = ["DEFAULT_STATUS_MAPS", "StatusMap", "StatusMapping", "default_status_map"]

S = LifecycleState

DEFAULT_STATUS_MAPS: dict[str, dict[str, LifecycleState]] = {
    # BPI Challenge 2013 (Volvo IT, VINST): "Status/Sub Status"
    "bpic2013": {
        "Queued/Awaiting Assignment": S.NEW,
        "Accepted/Assigned": S.IN_PROGRESS,
        "Accepted/In Progress": S.IN_PROGRESS,
        "Accepted/Wait": S.WAITING_OTHER,
        "Accepted/Wait - User": S.WAITING_CUSTOMER,
        "Accepted/Wait - Customer": S.WAITING_CUSTOMER,
        "Accepted/Wait - Vendor": S.WAITING_SUPPLIER,
        "Accepted/Wait - Implementation": S.WAITING_SUPPLIER,
        "Completed/In Call": S.RESOLVED,
        "Completed/Resolved": S.RESOLVED,
        "Completed/Closed": S.CLOSED,
        "Completed/Cancelled": S.CANCELLED,
        # incidents: always between Resolved and In Progress (a reopen); problems: mid-work
        "Unmatched/Unmatched": S.IN_PROGRESS,
    },
    # BPI Challenge 2014 (Rabobank): activity types that set a status
    "bpic2014": {
        "Open": S.NEW,
        "Assignment": S.IN_PROGRESS,
        "Reassignment": S.IN_PROGRESS,
        "Operator Update": S.IN_PROGRESS,
        "Pending vendor": S.WAITING_SUPPLIER,
        "External Vendor Assignment": S.WAITING_SUPPLIER,
        "External Vendor Reassignment": S.WAITING_SUPPLIER,
        "Resolved": S.RESOLVED,
        "Closed": S.CLOSED,
        "Reopen": S.IN_PROGRESS,
    },
    # helpdesk log of an Italian software company: activities that set a status
    "helpdesk": {
        "Insert ticket": S.NEW,
        "Assign seriousness": S.NEW,
        "Take in charge ticket": S.IN_PROGRESS,
        "Resolve SW anomaly": S.IN_PROGRESS,
        "Schedule intervention": S.IN_PROGRESS,
        "Wait": S.WAITING_OTHER,
        "Require upgrade": S.WAITING_CUSTOMER,
        "Create SW anomaly": S.WAITING_SUPPLIER,
        "Resolve ticket": S.RESOLVED,
        "RESOLVED": S.RESOLVED,
        "VERIFIED": S.RESOLVED,
        "Closed": S.CLOSED,
        "INVALID": S.CANCELLED,
        "DUPLICATE": S.CANCELLED,
    },
    # TOPdesk processing statuses as shipped (installations rename them: override in config)
    "topdesk": {
        "Logged": S.NEW,
        "Registered": S.NEW,
        "In progress": S.IN_PROGRESS,
        "Waiting for user": S.WAITING_CUSTOMER,
        "Waiting for customer": S.WAITING_CUSTOMER,
        "Waiting for supplier": S.WAITING_SUPPLIER,
        "Waiting for third party": S.WAITING_SUPPLIER,
        "Waiting": S.WAITING_OTHER,
        "Completed": S.RESOLVED,
        "Closed": S.CLOSED,
        "Cancelled": S.CANCELLED,
    },
    # ServiceNow incident state labels (numbers differ per instance: labels come from sys_choice)
    "servicenow": {
        "New": S.NEW,
        "In Progress": S.IN_PROGRESS,
        "Active": S.IN_PROGRESS,
        "On Hold": S.WAITING_OTHER,
        "On Hold/Awaiting Caller": S.WAITING_CUSTOMER,
        "On Hold/Awaiting Vendor": S.WAITING_SUPPLIER,
        "On Hold/Awaiting Problem": S.WAITING_OTHER,
        "On Hold/Awaiting Change": S.WAITING_OTHER,
        "On Hold/Awaiting Evidence": S.WAITING_OTHER,
        "Resolved": S.RESOLVED,
        "Closed": S.CLOSED,
        "Canceled": S.CANCELLED,
        "Cancelled": S.CANCELLED,
    },
    # a generic CSV log: common English names; configure the rest
    "csv": {
        "new": S.NEW,
        "open": S.NEW,
        "queued": S.NEW,
        "assigned": S.IN_PROGRESS,
        "in progress": S.IN_PROGRESS,
        "waiting for customer": S.WAITING_CUSTOMER,
        "waiting for user": S.WAITING_CUSTOMER,
        "pending customer": S.WAITING_CUSTOMER,
        "waiting for supplier": S.WAITING_SUPPLIER,
        "pending vendor": S.WAITING_SUPPLIER,
        "on hold": S.WAITING_OTHER,
        "pending": S.WAITING_OTHER,
        "resolved": S.RESOLVED,
        "solved": S.RESOLVED,
        "closed": S.CLOSED,
        "cancelled": S.CANCELLED,
        "canceled": S.CANCELLED,
    },
}


def _norm(raw: str) -> str:
    return " ".join(str(raw).split()).casefold()


@dataclass(frozen=True)
class StatusMapping:
    """The result of mapping a column of raw statuses."""

    states: pd.Series
    """lifecycle state per row (``LifecycleState`` values as str); None where raw was missing"""
    unknown: dict[str, int] = field(default_factory=dict)
    """raw status -> rows that were mapped to the fallback because the map did not know it"""


@dataclass(frozen=True)
class StatusMap:
    """A case-insensitive map from raw status to lifecycle state, with a fallback."""

    mapping: Mapping[str, LifecycleState]
    fallback: LifecycleState = LifecycleState.IN_PROGRESS

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "mapping", {_norm(k): LifecycleState(v) for k, v in self.mapping.items()}
        )

    def get(self, raw: str) -> LifecycleState | None:
        """The state for one raw status, or None when the map does not know it."""
        return self.mapping.get(_norm(raw))

    def knows(self, raw: str) -> bool:
        return _norm(raw) in self.mapping

    def map_series(self, raw: pd.Series) -> StatusMapping:
        """Map a column of raw statuses (vectorised over the distinct values)."""
        present = raw.dropna()
        distinct = pd.unique(present)
        lookup: dict[object, str] = {}
        unknown_values: list[object] = []
        for value in distinct:
            state = self.get(str(value))
            if state is None:
                unknown_values.append(value)
                state = self.fallback
            lookup[value] = state.value
        states = raw.map(lookup).astype(object)
        states = states.where(raw.notna(), None)
        unknown: dict[str, int] = {}
        if unknown_values:
            counts = present[present.isin(unknown_values)].value_counts()
            unknown = {str(k): int(v) for k, v in counts.items()}
        return StatusMapping(states=states, unknown=unknown)


def default_status_map(
    tool: str,
    *,
    overrides: Mapping[str, LifecycleState] | None = None,
    fallback: LifecycleState = LifecycleState.IN_PROGRESS,
) -> StatusMap:
    """The defaults for ``tool`` with the configured ``overrides`` applied on top."""
    merged: dict[str, LifecycleState] = dict(DEFAULT_STATUS_MAPS.get(tool, {}))
    merged.update(overrides or {})
    return StatusMap(mapping=merged, fallback=fallback)
