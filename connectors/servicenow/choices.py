"""Choice labels (``sys_choice``) and the lifecycle mapping of ``state`` + ``hold_reason``.

State numbers differ between instances and tables, so the connector reads the labels once per
sync from the instance's ``sys_choice`` table and maps LABELS, never numbers::

    GET /api/now/table/sys_choice?sysparm_query=nameINincident,task^elementINstate,...
        ^inactive=false^language=en
    {"result": [{"name": "incident", "element": "state", "value": "3", "label": "On Hold",
                 "sequence": "3"}, ...]}

A table's own choices win over those it inherits from ``task``; an element with no rows at all
(or an unreadable ``sys_choice``) falls back to the documented out-of-box labels
(``DEFAULT_CHOICES``). A value without a label keeps its raw value as label, which the status
map then reports as unknown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.base import WAITING_STATES, LifecycleState
from connectors.statusmap import StatusMap, default_status_map

__all__ = [
    "CHOICE_ELEMENTS",
    "DEFAULT_CHOICES",
    "SERVICENOW_DEFAULTS",
    "Choices",
    "StateMapper",
    "choice_params",
]

S = LifecycleState

CHOICE_ELEMENTS: tuple[str, ...] = ("state", "incident_state", "hold_reason", "priority")

DEFAULT_CHOICES: dict[str, dict[str, str]] = {
    # the documented incident state model (Helsinki and later)
    "state": {
        "1": "New",
        "2": "In Progress",
        "3": "On Hold",
        "6": "Resolved",
        "7": "Closed",
        "8": "Canceled",
    },
    # the legacy model of upgraded instances
    "incident_state": {
        "1": "New",
        "2": "Active",
        "3": "Awaiting Problem",
        "4": "Awaiting User Info",
        "5": "Awaiting Evidence",
        "6": "Resolved",
        "7": "Closed",
        "8": "Canceled",
    },
    "hold_reason": {
        "1": "Awaiting Caller",
        "3": "Awaiting Problem",
        "4": "Awaiting Vendor",
        "5": "Awaiting Change",
    },
    "priority": {
        "1": "1 - Critical",
        "2": "2 - High",
        "3": "3 - Moderate",
        "4": "4 - Low",
        "5": "5 - Planning",
    },
}
"""out-of-box labels, used only for an element the instance has no choices for"""

SERVICENOW_DEFAULTS: dict[str, LifecycleState] = {
    # on-hold reasons as documented (helpdesk-apis.md 2.6): the caller -> customer, a vendor ->
    # supplier, another process (problem, change) -> other
    "On Hold/Awaiting Problem": S.WAITING_OTHER,
    "On Hold/Awaiting Change": S.WAITING_OTHER,
    "On Hold/Awaiting Evidence": S.WAITING_OTHER,
    # the legacy incident_state model
    "Awaiting Problem": S.WAITING_OTHER,
    "Awaiting User Info": S.WAITING_CUSTOMER,
    "Awaiting Evidence": S.WAITING_OTHER,
    "Awaiting Vendor": S.WAITING_SUPPLIER,
    # task, sc_req_item, problem and change_request out-of-box states
    "Pending": S.WAITING_OTHER,
    "Open": S.NEW,
    "Work in Progress": S.IN_PROGRESS,
    "Closed Complete": S.CLOSED,
    "Closed Incomplete": S.CANCELLED,
    "Closed Skipped": S.CANCELLED,
    "Assess": S.IN_PROGRESS,
    "Root Cause Analysis": S.IN_PROGRESS,
    "Fix in Progress": S.IN_PROGRESS,
    "Authorize": S.IN_PROGRESS,
    "Scheduled": S.IN_PROGRESS,
    "Implement": S.IN_PROGRESS,
    "Review": S.IN_PROGRESS,
}
"""added to ``connectors.statusmap.DEFAULT_STATUS_MAPS["servicenow"]`` (and winning over it)"""

_CUSTOMER = re.compile(r"caller|user|customer|requester|requestor", re.I)
_SUPPLIER = re.compile(r"vendor|supplier|third", re.I)


def choice_params(*, table: str, language: str) -> dict[str, str]:
    """The one ``sys_choice`` request a sync makes per table."""
    names = table if table == "task" else f"{table},task"
    return {
        "sysparm_query": (
            f"nameIN{names}^elementIN{','.join(CHOICE_ELEMENTS)}^inactive=false"
            f"^language={language}^ORDERBYsequence"
        ),
        "sysparm_fields": "name,element,value,label,sequence",
        "sysparm_limit": "1000",
        "sysparm_display_value": "false",
    }


@dataclass(frozen=True)
class Choices:
    """element -> value -> label, for one table."""

    labels: Mapping[str, Mapping[str, str]]
    from_instance: frozenset[str] = frozenset()
    """elements whose labels came from the instance (the others are the defaults)"""

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]], *, table: str) -> Choices:
        """Build from ``sys_choice`` rows: the table's own rows win over ``task``'s."""
        own: dict[str, dict[str, str]] = {}
        inherited: dict[str, dict[str, str]] = {}
        for row in rows:
            element, value, label = row.get("element"), row.get("value"), row.get("label")
            if not isinstance(element, str) or not isinstance(value, str) or value == "":
                continue
            target = own if row.get("name") == table else inherited
            target.setdefault(element, {}).setdefault(value, str(label or value))
        labels: dict[str, dict[str, str]] = {}
        found: set[str] = set()
        for element in CHOICE_ELEMENTS:
            chosen = own.get(element) or inherited.get(element)
            if chosen:
                labels[element] = chosen
                found.add(element)
            else:
                labels[element] = dict(DEFAULT_CHOICES.get(element, {}))
        return cls(labels=labels, from_instance=frozenset(found))

    @classmethod
    def defaults(cls) -> Choices:
        return cls.from_rows([], table="incident")

    def label(self, element: str, value: str | None) -> str | None:
        """The label of a raw value (the value itself when it has none; None for empty)."""
        if value is None or value == "":
            return None
        return self.labels.get(element, {}).get(value, value)


@dataclass
class StateMapper:
    """(state, hold_reason) raw values -> (raw status label, lifecycle state, known).

    Order: the configured ``status_map`` for ``"<state label>/<hold reason label>"`` then for
    the state label, then the defaults the same way; an on-hold state whose reason is in no
    map is read by its words (caller/user -> waiting_customer, vendor/supplier ->
    waiting_supplier). The hold reason joins the raw status only while the state label maps to
    a waiting state. An unknown state label gets the source's fallback and counts as unknown.
    """

    choices: Choices
    state_field: str
    overrides: StatusMap
    defaults: StatusMap
    _memo: dict[tuple[str | None, str | None], tuple[str | None, LifecycleState, bool]] = field(
        default_factory=dict
    )

    @classmethod
    def build(
        cls,
        choices: Choices,
        *,
        state_field: str,
        status_map: Mapping[str, LifecycleState],
        fallback: LifecycleState,
    ) -> StateMapper:
        return cls(
            choices=choices,
            state_field=state_field,
            overrides=StatusMap(mapping=status_map, fallback=fallback),
            defaults=default_status_map(
                "servicenow", overrides=SERVICENOW_DEFAULTS, fallback=fallback
            ),
        )

    def map(self, state: str | None, hold: str | None) -> tuple[str | None, LifecycleState, bool]:
        key = (state or None, hold or None)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = self._map(*key)
        return hit

    def _map(self, state: str | None, hold: str | None) -> tuple[str | None, LifecycleState, bool]:
        label = self.choices.label(self.state_field, state)
        if label is None:
            return None, self.overrides.fallback, True
        base = self.overrides.get(label) or self.defaults.get(label)
        reason = self.choices.label("hold_reason", hold)
        if base is None:
            return label, self.overrides.fallback, False
        if reason is None or base not in WAITING_STATES:
            return label, base, True
        raw = f"{label}/{reason}"
        for states in (self.overrides, self.defaults):
            combined = states.get(raw)
            if combined is not None:
                return raw, combined, True
        if _CUSTOMER.search(reason):
            return raw, S.WAITING_CUSTOMER, True
        if _SUPPLIER.search(reason):
            return raw, S.WAITING_SUPPLIER, True
        return raw, base, True
