"""What every event-log format shares: reading the file, parsing times, deriving the frames.

A format reader turns its file into a *changes* frame, one row per log row, and hands it to
``derive``, which builds the canonical ticket and event frames. The changes frame has:

=============== ==================== ===================================================
column          type                 meaning
=============== ==================== ===================================================
``ticket``      str                  the ticket id
``instant``     datetime64, UTC      when the row happened
``order``       int                  tie-break between rows of a ticket at one instant
                                     (the file's own key, else the line number)
``row``         int                  position of the row in the frame of original columns
``status``      str or NA            the raw status the row sets; NA: it sets none
``team``        str, NA or CLEARED   NA: the row does not carry a team (forward-filled);
``assignee``                         CLEARED: the row says there is none
``priority_raw``
``category``
``title``
``requester``
``actor``       str or NA            who made the change
``update_kind`` str or NA            ``customer_update`` / ``internal_update``
``update_label`` str or NA           what the update was (the activity name)
=============== ==================== ===================================================

Every column after ``row`` is optional. How each format fills it is in docs/eventlog.md.
"""

from __future__ import annotations

import hashlib
import logging
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from connectors.base import (
    DONE_STATES,
    EVENT_COLUMNS,
    OPEN_STATES,
    TICKET_COLUMNS,
    TICKET_INT_COLUMNS,
    TICKET_TIME_COLUMNS,
    EventField,
    EventOrigin,
    LifecycleState,
    TicketType,
    derived_event_keys,
)
from connectors.errors import BadPayloadError, ConnectorConfigError
from connectors.eventlog import SkippedRow
from connectors.statusmap import StatusMap

__all__ = [
    "CLEARED",
    "Derived",
    "LogFile",
    "ParsedTimes",
    "collect_skipped",
    "conform_tickets",
    "derive",
    "json_rows",
    "map_distinct",
    "no_rows_left",
    "parse_times",
    "priority_from_map",
    "priority_from_number",
    "read_csv",
    "require_columns",
    "system_user_mask",
    "text",
    "without_duplicates",
]

log = logging.getLogger(__name__)

CLEARED = "\x00cleared"
"""a value that says "explicitly none" (e.g. a system user as owner), unlike NA ("not carried")"""

CARRIED = ("status", "team", "assignee", "priority_raw", "category", "title", "requester")
OPTIONAL = (*CARRIED, "actor", "update_kind", "update_label")
TRACKED: tuple[tuple[str, EventField], ...] = (
    ("state", EventField.STATE),
    ("status", EventField.STATUS),
    ("team", EventField.TEAM),
    ("assignee", EventField.ASSIGNEE),
    ("priority_raw", EventField.PRIORITY),
)
FIELD_RANK = {
    str(f): i
    for i, f in enumerate(
        [*(f for _, f in TRACKED), EventField.CUSTOMER_UPDATE, EventField.INTERNAL_UPDATE]
    )
}
DONE_VALUES = frozenset(s.value for s in DONE_STATES)
OPEN_VALUES = frozenset(s.value for s in OPEN_STATES)
FINAL_VALUES = frozenset({LifecycleState.CLOSED.value, LifecycleState.CANCELLED.value})

# a time followed by a UTC offset (or Z): "…T10:00:00+02:00", "… 10:00Z", "…10:00:00.5 -0500",
# written reversed and matched against the reversed cell: anchored at the start, so no scanning
_OFFSET_REVERSED = re.compile(r"(?:[zZ]|(?:\d{2}:?)?\d{2}[+-])\s*(?:(?:\d+[.,])?\d{2}:)?\d{2}:\d")

PriorityLevels = Callable[[pd.Series], pd.Series]
"""raw priority per ticket -> 1..5 (NA where unknown)"""


def map_distinct(values: pd.Series, fn: Callable[[Any], Any]) -> pd.Series:
    """``fn`` applied to each distinct value once (missing values become ``fn(None)``).

    Log columns repeat a few values many times, so this is much cheaper than a per-row map.
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    table = np.empty(len(uniques) + 1, dtype=object)  # the last slot serves missing values
    table[:-1] = [fn(u) for u in np.asarray(uniques, dtype=object)]
    table[-1] = fn(None)
    return pd.Series(table[codes], index=values.index, dtype=object)


def _clean(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    stripped = value.strip()
    return stripped or None


def text(values: pd.Series) -> pd.Series:
    """Cells as stripped Python strings (object dtype), None where blank."""
    return map_distinct(values, _clean)


def _fold(value: object) -> str:
    return " ".join(value.split()).casefold() if isinstance(value, str) else ""


def _objects(values: pd.Series, *, cleared: bool = True) -> pd.Series:
    """Object column with None for every kind of missing (and for CLEARED, when it can occur)."""
    arr = values.to_numpy(dtype=object, copy=True)
    missing = pd.isna(arr)
    if cleared:
        missing |= arr == CLEARED
    arr[missing] = None
    return pd.Series(arr, index=values.index, dtype=object)


def _like_constructor(values: pd.Series, *, cleared: bool = True) -> pd.Series:
    """Text as ``tickets_frame``/``events_frame`` type it: the DataFrame constructor's
    inference (``str`` when every value is text or missing, object when all are missing)."""
    return _objects(values, cleared=cleared).infer_objects()


def _utc_like_canonical(values: pd.Series) -> pd.Series:
    """UTC times in the unit ``tickets_frame``/``events_frame`` give (us; s for no values)."""
    stamps = pd.to_datetime(values, utc=True)
    return stamps.dt.as_unit("us" if stamps.notna().any() else "s")


@dataclass(frozen=True)
class LogFile:
    """A CSV read as text, with the file line of each row."""

    frame: pd.DataFrame
    """text cells ("" where empty), one row per data line, RangeIndex"""
    lines: np.ndarray
    """the file line of each row (the header is line 1)"""
    rows_read: int
    """data rows in the file (blank lines not counted)"""
    notes: dict[str, int] = field(default_factory=dict)


def read_csv(path: Path, *, source: str, delimiter: str = ",") -> LogFile:
    """Read a plain or gzip-compressed UTF-8 CSV as text cells.

    Compression is recognised by the gzip magic bytes, not the file name. Blank lines (and
    lines of bare delimiters) are dropped and counted; they do not shift the line numbers.

    Raises:
        BadPayloadError: the file is missing, empty, has no rows, is a truncated or corrupt
            gzip, is not UTF-8 or not CSV.
    """
    name = path.name
    try:
        with path.open("rb") as fh:
            magic = fh.read(2)
    except FileNotFoundError as e:
        raise BadPayloadError(f"{path}: no such file", source=source) from e
    except OSError as e:
        raise BadPayloadError(f"{path}: cannot be read: {e.strerror}", source=source) from e
    if not magic:
        raise BadPayloadError(f"{name}: the file is empty", source=source)
    compressed = magic == b"\x1f\x8b"
    try:
        frame = pd.read_csv(
            path,
            sep=delimiter,
            dtype=str,
            keep_default_na=False,
            na_filter=False,  # short rows and empty cells read as ""
            skip_blank_lines=False,  # keeps row n on file line n + 2
            compression="gzip" if compressed else None,
            encoding="utf-8-sig",
        )
    except pd.errors.EmptyDataError as e:
        raise BadPayloadError(f"{name}: the file is empty (no header line)", source=source) from e
    except (EOFError, zlib.error, OSError) as e:
        what = "truncated or corrupt gzip file" if compressed else "unreadable file"
        raise BadPayloadError(f"{name}: {what} ({e})", source=source) from e
    except UnicodeDecodeError as e:
        raise BadPayloadError(
            f"{name}: not UTF-8 text (byte {e.start}: {e.reason})", source=source
        ) from e
    except pd.errors.ParserError as e:
        raise BadPayloadError(
            f"{name}: not a CSV file this reader can parse: {e}", source=source
        ) from e
    frame.columns = pd.Index([str(c).strip() for c in frame.columns])
    lines = np.arange(2, len(frame) + 2)
    notes: dict[str, int] = {}
    if len(frame.columns):
        maybe = frame.iloc[:, 0].eq("").to_numpy()
        if maybe.any():
            blank = np.zeros(len(frame), dtype=bool)
            blank[maybe] = (frame.loc[maybe] == "").all(axis=1).to_numpy()
            if blank.any():
                notes["blank lines ignored"] = int(blank.sum())
                frame, lines = frame.loc[~blank].reset_index(drop=True), lines[~blank]
    if frame.empty:
        raise BadPayloadError(
            f"{name}: the file has a header but no rows (columns: {', '.join(frame.columns)})",
            source=source,
        )
    return LogFile(frame=frame, lines=lines, rows_read=len(frame), notes=notes)


def require_columns(
    frame: pd.DataFrame, required: Iterable[str], *, path: Path, source: str, what: str = ""
) -> None:
    """Raise ``BadPayloadError`` naming the missing columns and the columns found."""
    missing = [c for c in required if c not in frame.columns]
    if missing:
        names = ", ".join(f"`{c}`" for c in missing)
        found = ", ".join(f"`{c}`" for c in frame.columns)
        raise BadPayloadError(
            f"{path.name}: missing required column(s) {names}{what}; columns found: {found}",
            source=source,
        )


def without_duplicates(log_file: LogFile) -> LogFile:
    """The file without rows that repeat an earlier row in every column (first kept, counted)."""
    dup = log_file.frame.duplicated(keep="first").to_numpy()
    count = int(dup.sum())
    if not count:
        return log_file
    return LogFile(
        frame=log_file.frame.loc[~dup].reset_index(drop=True),
        lines=log_file.lines[~dup],
        rows_read=log_file.rows_read,
        notes={**log_file.notes, "duplicate rows dropped": count},
    )


def system_user_mask(values: pd.Series, users: Iterable[str]) -> pd.Series:
    """True where the value is one of the system users (ignoring case and blanks)."""
    wanted = {_fold(u) for u in users}
    return map_distinct(values, lambda v: _fold(v) in wanted).astype(bool)


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


def collect_skipped(
    *,
    tickets: pd.Series,
    instants: pd.Series,
    time_text: pd.Series,
    lines: np.ndarray,
    ticket_column: str,
    time_column: str,
) -> tuple[np.ndarray, list[SkippedRow]]:
    """Rows to keep, and the rows skipped for an empty ticket id or an unusable time."""
    no_ticket = tickets.isna().to_numpy()
    no_time = instants.isna().to_numpy() & ~no_ticket
    bad = no_ticket | no_time
    skipped: list[SkippedRow] = []
    if bad.any():
        # only the bad rows are visited, to word each reason
        raw_times = time_text.to_numpy(dtype=object)
        for i in np.flatnonzero(bad):
            if no_ticket[i]:
                reason = f"empty ticket id in column `{ticket_column}`"
            elif str(raw_times[i]).strip() == "":
                reason = f"empty timestamp in column `{time_column}`"
            else:
                reason = f"unparseable timestamp {str(raw_times[i])!r} in column `{time_column}`"
            skipped.append(SkippedRow(line=int(lines[i]), reason=reason))
    return ~bad, skipped


def no_rows_left(path: Path, *, source: str, skipped: Sequence[SkippedRow]) -> BadPayloadError:
    """The error for a file none of whose rows could be imported."""
    first = skipped[0]
    return BadPayloadError(
        f"{path.name}: no row could be imported ({len(skipped)} skipped; first: line "
        f"{first.line}, {first.reason})",
        source=source,
    )


@dataclass(frozen=True)
class Derived:
    tickets: pd.DataFrame
    events: pd.DataFrame
    unknown_statuses: dict[str, int] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)


def _unique_keys(events: pd.DataFrame) -> tuple[pd.Series, int]:
    """Content keys; the n-th repeat of identical content (n >= 1) gets ``#n`` hashed in."""
    keys = derived_event_keys(events)
    repeat = keys.duplicated(keep="first")
    count = int(repeat.sum())
    if count:
        nth = keys.groupby(keys, sort=False).cumcount().astype(str)
        salted = (keys[repeat] + "#" + nth[repeat]).map(
            lambda s: hashlib.blake2b(s.encode(), digest_size=16).hexdigest()
        )
        keys = keys.copy()
        keys[repeat] = salted
    return keys, count


def json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-safe dicts: str values as read, None where empty or missing."""
    columns = [str(c) for c in frame.columns]
    values = frame.to_numpy(dtype=object, copy=True)
    values[pd.isna(values) | (values == "")] = None
    return [dict(zip(columns, row, strict=True)) for row in values.tolist()]


def derive(
    changes: pd.DataFrame,
    *,
    raw: pd.DataFrame,
    source: str,
    status_map: StatusMap,
    ticket_type: TicketType,
    url_template: str | None = None,
    priority_levels: PriorityLevels | None = None,
) -> Derived:
    """Build the canonical ticket and event frames from a changes frame (see module docs).

    Args:
        changes: one row per log row (skipped rows already removed).
        raw: the file's original columns; ``changes.row`` indexes it by position.
        source: the configured source name, the ``source`` of every row.
        status_map: raw status -> lifecycle state.
        ticket_type: the type of every ticket.
        url_template: ``str.format`` template with ``{external_id}``.
        priority_levels: raw priority -> 1..5; priority stays None without it.
    """
    df = changes.copy()
    for col in OPTIONAL:
        if col not in df.columns:
            df[col] = None
        df[col] = df[col].astype(object)
    df["ticket"] = df["ticket"].astype(object)
    df = df.sort_values(["ticket", "instant", "order"], kind="stable", ignore_index=True)
    ticket = df["ticket"]
    first = ticket.ne(ticket.shift()).to_numpy()
    last = ticket.ne(ticket.shift(-1)).to_numpy()
    gid = np.cumsum(first) - 1
    n_tickets = int(first.sum())
    positions = np.arange(len(df))
    seq = positions - np.flatnonzero(first)[gid]
    notes: dict[str, int] = {}

    mapping = status_map.map_series(df["status"].where(df["status"].ne(CLEARED)))
    df["state"] = mapping.states
    filled = df[["state", *CARRIED]].groupby(gid, sort=False).ffill()

    parts: list[pd.DataFrame] = []
    prevs: dict[str, pd.Series] = {}
    for col, fld in TRACKED:
        values = filled[col]
        prev = values.shift().mask(first)
        prevs[col] = prev
        changed = values.notna() & (prev.isna() | values.ne(prev))
        changed &= ~(prev.isna() & values.eq(CLEARED))
        if changed.any():
            parts.append(
                pd.DataFrame(
                    {
                        "ticket_id": ticket[changed],
                        "occurred_at": df["instant"][changed],
                        "seq": seq[changed.to_numpy()],
                        "field": str(fld),
                        "_rank": FIELD_RANK[str(fld)],
                        "old_value": prev[changed],
                        "new_value": values[changed],
                        "actor": df["actor"][changed],
                    }
                )
            )
    updates = df["update_kind"].notna()
    if updates.any():
        parts.append(
            pd.DataFrame(
                {
                    "ticket_id": ticket[updates],
                    "occurred_at": df["instant"][updates],
                    "seq": seq[updates.to_numpy()],
                    "field": df["update_kind"][updates].map(str),
                    "_rank": df["update_kind"][updates].map(FIELD_RANK),
                    "old_value": None,
                    "new_value": df["update_label"][updates],
                    "actor": df["actor"][updates],
                }
            )
        )
    events = _events_frame(parts, source=source)
    keys, repeats = _unique_keys(events)
    events["event_key"] = keys
    if repeats:
        notes["identical events at one instant (keys made unique)"] = repeats

    state = filled["state"]
    is_done = state.isin(DONE_VALUES).to_numpy()
    prev_done = np.r_[False, is_done[:-1]] & ~first
    reopen = prev_done & state.isin(OPEN_VALUES).to_numpy()
    run_start = is_done & ~prev_done
    final_done = is_done[last]
    last_start = np.full(n_tickets, -1)
    np.maximum.at(last_start, gid[run_start], positions[run_start])
    in_final_run = (positions >= last_start[gid]) & (last_start[gid] >= 0) & final_done[gid]
    closing = in_final_run & state.isin(FINAL_VALUES).to_numpy()
    instants = df["instant"]
    resolved_at = pd.Series(pd.NaT, index=range(n_tickets), dtype=instants.dtype)
    done_tickets = np.flatnonzero(final_done)
    resolved_at.iloc[done_tickets] = instants.iloc[last_start[done_tickets]].array
    closed_at = pd.Series(pd.NaT, index=range(n_tickets), dtype=instants.dtype)
    first_close = instants[closing].groupby(gid[closing], sort=True).min()
    closed_at.iloc[first_close.index.to_numpy()] = first_close.array
    team_prev = prevs["team"]
    team_changes = (
        filled["team"].notna() & team_prev.notna() & filled["team"].ne(team_prev)
    ).to_numpy()

    lastrows = filled.iloc[np.flatnonzero(last)].reset_index(drop=True)
    ids = ticket.iloc[np.flatnonzero(last)].reset_index(drop=True)
    no_state = lastrows["state"].isna()
    if no_state.any():
        notes["tickets without any status (state new)"] = int(no_state.sum())
    priority_raw = _objects(lastrows["priority_raw"])
    if priority_levels is None:
        priority = pd.Series(pd.NA, index=lastrows.index, dtype="Int64")
    else:
        priority = priority_levels(priority_raw).astype("Int64")
    url: list[str] | None = None
    if url_template:
        try:
            url = [url_template.format(external_id=i) for i in ids]
        except (KeyError, IndexError, ValueError) as e:
            raise ConnectorConfigError(
                f"`url_template` {url_template!r} cannot be filled ({type(e).__name__}: {e}); "
                "the only placeholder is {external_id}",
                source=source,
            ) from e
    tickets = pd.DataFrame(
        {
            "source": source,
            "external_id": ids,
            "number": ids,
            "title": _objects(lastrows["title"]),
            "type": ticket_type.value,
            "raw_status": _objects(lastrows["status"]),
            "state": lastrows["state"].where(~no_state, LifecycleState.NEW.value),
            "priority_raw": priority_raw,
            "priority": priority,
            "category": _objects(lastrows["category"]),
            "team": _objects(lastrows["team"]),
            "assignee": _objects(lastrows["assignee"]),
            "requester": _objects(lastrows["requester"]),
            "created_at": instants.iloc[np.flatnonzero(first)].array,
            "updated_at": instants.iloc[np.flatnonzero(last)].array,
            "resolved_at": resolved_at,
            "closed_at": closed_at,
            "due_at": None,
            "reassignment_count": np.bincount(gid[team_changes], minlength=n_tickets),
            "reopen_count": np.bincount(gid[reopen], minlength=n_tickets),
            "url": url,
            "raw": json_rows(raw.iloc[df["row"].to_numpy()[last]]),
        }
    )
    return Derived(
        tickets=conform_tickets(tickets),
        events=events,
        unknown_statuses=mapping.unknown,
        notes=notes,
    )


def _events_frame(parts: list[pd.DataFrame], *, source: str) -> pd.DataFrame:
    if not parts:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in EVENT_COLUMNS})
        frame["occurred_at"] = pd.Series(dtype="datetime64[s, UTC]")
        frame["seq"] = frame["seq"].astype("int64")
        return frame
    # each part is indexed by its row in the ticket-sorted changes frame, so (row, field rank)
    # is the (ticket, seq, field) order: an integer sort, no string comparisons
    events = pd.concat(parts)
    key = events.index.to_numpy() * len(FIELD_RANK) + events["_rank"].to_numpy(dtype=np.int64)
    events = events.iloc[np.argsort(key, kind="stable")].reset_index(drop=True)
    events["source"] = source
    events["event_key"] = None
    events["origin"] = EventOrigin.HISTORY.value
    for col in ("source", "ticket_id", "actor"):
        events[col] = _like_constructor(events[col], cleared=False)
    for col in ("old_value", "new_value"):
        events[col] = _like_constructor(events[col])
    for col in ("field", "origin"):
        events[col] = _objects(events[col], cleared=False)
    events["occurred_at"] = _utc_like_canonical(events["occurred_at"])
    events["seq"] = events["seq"].astype("int64")
    return events[list(EVENT_COLUMNS)]


def conform_tickets(frame: pd.DataFrame) -> pd.DataFrame:
    """The ticket frame with exactly the canonical columns and dtypes."""
    out = frame[list(TICKET_COLUMNS)].copy()
    for col in TICKET_COLUMNS:
        if col in TICKET_TIME_COLUMNS:
            out[col] = _utc_like_canonical(out[col])
        elif col in TICKET_INT_COLUMNS:
            out[col] = out[col].astype("Int64")
        elif col in ("state", "type"):
            out[col] = _objects(out[col])
        elif col != "raw":
            out[col] = _like_constructor(out[col])
    return out.reset_index(drop=True)


def priority_from_map(levels: Mapping[str, int]) -> PriorityLevels:
    """A priority normaliser from a label -> level map (matching ignores case and blanks)."""
    norm = {_fold(k): v for k, v in levels.items()}

    def apply(raw: pd.Series) -> pd.Series:
        return map_distinct(raw, lambda v: norm.get(_fold(v))).astype("Int64")

    return apply


def priority_from_number(raw: pd.Series) -> pd.Series:
    """1..5 from labels that start with the level: ``3``, ``P2``, ``1 - Critical``."""
    digits = (
        raw.astype(object)
        .where(raw.notna(), "")
        .str.extract(r"^\s*[Pp]?\s*([1-5])(?![0-9])", expand=False)
    )
    return pd.to_numeric(digits, errors="coerce").astype("Int64")
