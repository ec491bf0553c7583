"""The simulated service desk: generated calls applied to the TOPdesk-compatible API as the
clock passes them.

``SimulatedDesk`` holds a ``TopdeskApi`` and a queue of pending changes. ``advance_to(t)``
applies every change due by ``t`` (creating incidents, modifying them, adding actions) and moves
the API's clock to ``t``. The history (``load_history``) ends at the demo's start; its changes
that lie later, and the live calls (``top_up_live``), happen while the demo runs, ``pace`` times
faster than real time.
"""

from __future__ import annotations

import heapq
import threading
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from app.demo.generator import Call, Change, DeskGenerator
from app.demo.topdesk_api import STATUSES, TopdeskApi, fmt, ref

__all__ = ["SimulatedDesk"]


def _ref_or_none(name: str | None, namespace: str) -> dict[str, str] | None:
    return None if name is None else ref(name, namespace)


class SimulatedDesk:
    """A desk whose calls come from a ``DeskGenerator`` (see the module docstring)."""

    def __init__(
        self,
        api: TopdeskApi,
        generator: DeskGenerator,
        *,
        now: datetime,
        pace: float,
    ) -> None:
        self.api = api
        self.generator = generator
        self.origin = now
        """the real time the demo started: history before it, live after it"""
        self.pace = pace
        self._queue: list[tuple[datetime, int, int, Change]] = []
        self._calls: dict[int, Call] = {}
        self._ids: dict[int, str] = {}
        self._seq = 0
        self._live_until = now
        self._lock = threading.Lock()
        self.applied = 0
        """changes applied so far"""

    def _push(self, change: Change) -> None:
        # whole seconds, like the ``Date`` header the connector compares them with
        at = change.at.replace(microsecond=0)
        self._seq += 1
        heapq.heappush(
            self._queue,
            (at, self._seq, change.call, Change(at, change.call, change.fields, change.action)),
        )

    def _live_time(self, at: datetime) -> datetime:
        """A simulated instant after the start, as the real time it happens at."""
        if at <= self.origin:
            return at
        return self.origin + (at - self.origin) / self.pace

    def load_history(self, days: float) -> list[Call]:
        """Generate the calls of the ``days`` before the start and queue their changes."""
        calls = self.generator.history(self.origin - timedelta(days=days), self.origin)
        self._enqueue(calls, remap=True)
        return calls

    def _enqueue(self, calls: Iterable[Call], *, remap: bool) -> None:
        for call in calls:
            self._calls[call.key] = call
            for change in call.changes:
                at = self._live_time(change.at) if remap else change.at
                self._push(Change(at, change.call, change.fields, change.action))

    def top_up_live(self, *, ahead: timedelta) -> int:
        """Queue live calls until arrivals are known until ``ahead`` after the desk's clock;
        returns how many were added."""
        added = 0
        with self._lock:
            horizon = self.api.clock + ahead
            while self._live_until < horizon:
                calls = self.generator.live(self._live_until, 10, pace=self.pace)
                self._enqueue(calls, remap=False)
                self._live_until = calls[-1].created_at
                added += len(calls)
        return added

    def change_times(self, until: datetime) -> list[datetime]:
        """The instants of the queued changes due by ``until``, in order."""
        return sorted(at for at, *_ in self._queue if at <= until)

    def pending(self) -> int:
        return len(self._queue)

    def advance_to(self, t: datetime) -> int:
        """Apply every change due by ``t``; the API's clock is ``t`` afterwards. Returns the
        number of changes applied."""
        done = 0
        with self._lock:
            while self._queue and self._queue[0][0] <= t:
                _at, _seq, _key, change = heapq.heappop(self._queue)
                self._apply(change)
                done += 1
            with self.api.lock:
                self.api.clock = max(self.api.clock, t)
            self.applied += done
        return done

    def _apply(self, change: Change) -> None:
        call = self._calls[change.call]
        fields = _incident_fields(change.fields, at=change.at)
        operator = change.fields.get("operator")
        actor = _ref_or_none(operator, "operator") if operator else None
        incident_id = self._ids.get(change.call)
        if incident_id is None:
            created = self.api.add_incident(
                at=change.at,
                briefDescription=call.title,
                category={
                    "id": str(uuid.uuid5(uuid.NAMESPACE_URL, call.category)),
                    "name": call.category,
                },
                priority=ref(call.priority, "priority"),
                caller={"id": None, "dynamicName": call.caller, "branch": None},
                callType={"id": "ct-1", "name": "Incident"},
                targetDate=fmt(call.target_at),
                **fields,
            )
            incident_id = self._ids[change.call] = str(created["id"])
        elif fields:
            if fields.get("closed") and not self.api.incidents[incident_id].get("completed"):
                fields |= {"completed": True, "completedDate": fields["closedDate"]}
            if actor is not None:
                fields["modifier"] = actor
            self.api.modify(incident_id, at=change.at, **fields)
        if change.action is not None:
            action = change.action
            self.api.add_action(
                incident_id,
                visible=action.visible,
                by_caller=action.by_caller,
                text=action.text,
                at=change.at,
                operator=_ref_or_none(action.operator, "operator"),
                person={"id": None, "name": call.caller},
            )


def _incident_fields(changes: dict[str, Any] | Any, *, at: datetime) -> dict[str, Any]:
    """Generator fields (by name) as TOPdesk incident fields."""
    out: dict[str, Any] = {}
    for name, value in dict(changes).items():
        if name == "status":
            out["processingStatus"] = STATUSES.get(value) or ref(value, "status")
        elif name == "team":
            out["operatorGroup"] = _ref_or_none(value, "group")
        elif name == "operator":
            out["operator"] = _ref_or_none(value, "operator")
        elif name == "priority":
            out["priority"] = ref(value, "priority")
        elif name == "supplier":
            out["supplier"] = _ref_or_none(value, "supplier")
        elif name == "closureCode":
            out["closureCode"] = ref(value, "closure")
        elif name == "onHold":
            out["onHold"] = value
            out["onHoldDate"] = fmt(at) if value else None
        elif name == "completed":
            out["completed"] = value
            out["completedDate"] = fmt(at) if value else None
        elif name == "closed":
            out["closed"] = value
            out["closedDate"] = fmt(at) if value else None
        else:
            raise ValueError(f"unknown generated field `{name}`")
    return out
