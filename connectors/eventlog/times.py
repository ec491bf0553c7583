"""Time columns of an event log: ISO 8601 or strptime text to UTC instants, with UTC offsets,
local times in an IANA zone and the DST rules (ambiguous: summer time; gap: shifted forward)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from connectors.errors import ConnectorConfigError
from connectors.eventlog.values import text

__all__ = ["ParsedTimes", "parse_times"]

# a time followed by a UTC offset (or Z): "…T10:00:00+02:00", "… 10:00Z", "…10:00:00.5 -0500",
# written reversed and matched against the reversed cell: anchored at the start, so no scanning
_OFFSET_REVERSED = re.compile(r"(?:[zZ]|(?:\d{2}:?)?\d{2}[+-])\s*(?:(?:\d+[.,])?\d{2}:)?\d{2}:\d")


@dataclass(frozen=True)
class ParsedTimes:
    instants: pd.Series
    """UTC instants (datetime64[us, UTC]); NaT where the text is empty or unparseable"""
    notes: dict[str, int] = field(default_factory=dict)


def _zone(tz: str, *, source: str) -> str:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ConnectorConfigError(
            f"unknown time zone `{tz}`: use an IANA name such as Europe/Amsterdam", source=source
        ) from e
    return tz


def _localise(naive: pd.Series, tz: str) -> tuple[pd.Series, int, int]:
    """Naive local times to UTC: DST-ambiguous ones as summer time, nonexistent ones shifted on.

    Returns the instants and the counts of ambiguous and nonexistent times.
    """
    summer = np.ones(len(naive), dtype=bool)
    strict = naive.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    trouble = strict.isna() & naive.notna()
    if not trouble.any():
        return strict.dt.tz_convert("UTC"), 0, 0
    gap = naive.dt.tz_localize(tz, ambiguous=summer, nonexistent="NaT")
    nonexistent = gap.isna() & naive.notna()
    ambiguous = trouble & ~nonexistent
    done = naive.dt.tz_localize(tz, ambiguous=summer, nonexistent="shift_forward")
    return done.dt.tz_convert("UTC"), int(ambiguous.sum()), int(nonexistent.sum())


def parse_times(
    values: pd.Series,
    *,
    time_format: str | None,
    timezone: str | None,
    column: str,
    path: Path,
    source: str,
    lines: np.ndarray | None = None,
) -> ParsedTimes:
    """Parse a time column to UTC instants, vectorised.

    Times with a UTC offset are converted; naive times are local times in ``timezone``. With
    ``time_format`` (strptime) the whole column follows it; without, each cell is ISO 8601 and
    may or may not carry an offset. ``lines`` (the file line of each value) is for messages.

    Raises:
        ConnectorConfigError: naive times and no ``timezone``, or an unknown zone.
    """
    if timezone is not None:
        _zone(timezone, source=source)
    cells = text(values)
    present = cells.notna()
    instants = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us, UTC]")
    if time_format is not None:
        aware = pd.Series("%z" in time_format or "%Z" in time_format, index=values.index)
        fmt = time_format
    else:
        aware = cells.where(present, "").str[::-1].str.match(_OFFSET_REVERSED)
        fmt = "ISO8601"
    aware &= present
    naive = present & ~aware
    if aware.any():
        parsed = pd.to_datetime(cells[aware], format=fmt, utc=True, errors="coerce")
        instants[aware] = parsed.dt.as_unit("us")
    notes: dict[str, int] = {}
    if naive.any():
        local = pd.to_datetime(cells[naive], format=fmt, errors="coerce")
        if local.notna().any():
            if timezone is None:
                parsed_naive = np.flatnonzero(local.notna().to_numpy())[0]
                first = int(np.flatnonzero(naive.to_numpy())[parsed_naive])
                line = int(lines[first]) if lines is not None else first + 2
                raise ConnectorConfigError(
                    f"{path.name}: column `{column}` holds times without a UTC offset (line "
                    f"{line}: {cells.iloc[first]!r}); set `timezone` in the source config "
                    "(an IANA name such as Europe/Amsterdam)",
                    source=source,
                )
            utc, ambiguous, nonexistent = _localise(local, timezone)
            instants[naive] = utc.dt.as_unit("us")
            if ambiguous:
                notes["DST-ambiguous local times read as summer time"] = ambiguous
            if nonexistent:
                notes["nonexistent local times (DST gap) shifted forward"] = nonexistent
    return ParsedTimes(instants=instants, notes=notes)
