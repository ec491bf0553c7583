"""What every analytics function returns: the frame plus what it was computed from.

A lead acts on a number only when they can see what it is based on, so each result carries its
sample size ``n`` (what ``n`` counts is stated in ``n_of``), the time window, the ``now`` it was
computed at, the settings used and the metric's definition (a pointer into docs/metrics.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import pandas as pd

from analytics.clock import Calendars
from analytics.errors import InvalidInputError
from analytics.frames import timestamp_ns

__all__ = ["Result", "Window"]

S = TypeVar("S")


@dataclass(frozen=True)
class Window:
    """A half-open time window ``[start, end)`` in UTC."""

    start: pd.Timestamp
    end: pd.Timestamp

    def __post_init__(self) -> None:
        start, end = timestamp_ns(self.start, name="start"), timestamp_ns(self.end, name="end")
        if end < start:
            raise InvalidInputError(f"window end {self.end} is before its start {self.start}")
        object.__setattr__(self, "start", pd.Timestamp(start, tz="UTC"))
        object.__setattr__(self, "end", pd.Timestamp(end, tz="UTC"))

    @classmethod
    def trailing(cls, now: datetime | pd.Timestamp, days: float) -> Window:
        """The ``days`` before ``now``."""
        end = pd.Timestamp(timestamp_ns(now), tz="UTC")
        return cls(start=end - timedelta(days=days), end=end)

    @property
    def start_ns(self) -> int:
        return int(self.start.as_unit("ns").value)

    @property
    def end_ns(self) -> int:
        return int(self.end.as_unit("ns").value)

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


@dataclass(frozen=True)
class Result(Generic[S]):
    """One metric's frame with its sample size, window, ``now`` and settings."""

    name: str
    frame: pd.DataFrame
    n: int
    """sample size: how many items the numbers rest on (see ``n_of``)"""
    n_of: str
    """what ``n`` counts, e.g. "open tickets examined" or "tickets resolved in the window\""""
    now: pd.Timestamp
    settings: S
    window: Window | None = None
    """None for point-in-time results (as of ``now``)"""
    definition: str = ""
    """where the metric is defined: a section of docs/metrics.md"""
    notes: tuple[str, ...] = ()
    calendars: Calendars | None = None
    """the work calendars business times were measured in (None: calendar time only)"""

    def meta(self) -> dict[str, Any]:
        """Everything but the frame, as plain JSON-friendly values."""
        settings: Any = self.settings
        if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
            settings = _plain(dataclasses.asdict(settings))
        return {
            "name": self.name,
            "n": self.n,
            "n_of": self.n_of,
            "now": self.now.isoformat(),
            "window": None
            if self.window is None
            else {"start": self.window.start.isoformat(), "end": self.window.end.isoformat()},
            "settings": settings,
            "definition": self.definition,
            "notes": list(self.notes),
            "calendars": None
            if self.calendars is None
            else _plain(dataclasses.asdict(self.calendars)),
        }


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
