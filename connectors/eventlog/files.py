"""Reading an event-log file: CSV or gzip as text cells, required columns, exact duplicate
rows, and the rows skipped for an empty ticket id or an unusable time."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from connectors.errors import BadPayloadError
from connectors.eventlog import SkippedRow
from connectors.eventlog.times import parse_times
from connectors.eventlog.values import text

__all__ = [
    "LogFile",
    "LogRows",
    "collect_skipped",
    "json_rows",
    "log_rows",
    "no_rows_left",
    "read_csv",
    "require_columns",
    "without_duplicates",
]


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


def json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-safe dicts: str values as read, None where empty or missing."""
    columns = [str(c) for c in frame.columns]
    values = frame.to_numpy(dtype=object, copy=True)
    values[pd.isna(values) | (values == "")] = None
    return [dict(zip(columns, row, strict=True)) for row in values.tolist()]


@dataclass(frozen=True)
class LogRows:
    """A log file's rows after dropping duplicates, with parsed times and the rows to keep."""

    frame: pd.DataFrame
    lines: np.ndarray
    rows_read: int
    notes: dict[str, int]
    tickets: pd.Series
    instants: pd.Series
    keep: np.ndarray
    skipped: list[SkippedRow]


def log_rows(
    log_file: LogFile,
    *,
    path: Path,
    source: str,
    ticket_column: str,
    time_column: str,
    time_format: str | None,
    timezone: str | None,
) -> LogRows:
    """The steps every format shares once its columns are checked: drop exact duplicates,
    parse the times, and set aside rows with an empty ticket id or an unusable time.

    Raises:
        BadPayloadError: no row is left to import.
    """
    log_file = without_duplicates(log_file)
    frame, lines = log_file.frame, log_file.lines
    notes = dict(log_file.notes)
    tickets = text(frame[ticket_column])
    times = parse_times(
        frame[time_column],
        time_format=time_format,
        timezone=timezone,
        column=time_column,
        path=path,
        source=source,
        lines=lines,
    )
    notes.update(times.notes)
    keep, skipped = collect_skipped(
        tickets=tickets,
        instants=times.instants,
        time_text=frame[time_column],
        lines=lines,
        ticket_column=ticket_column,
        time_column=time_column,
    )
    if not keep.any():
        raise no_rows_left(path, source=source, skipped=skipped)
    return LogRows(
        frame=frame,
        lines=lines,
        rows_read=log_file.rows_read,
        notes=notes,
        tickets=tickets,
        instants=times.instants,
        keep=keep,
        skipped=skipped,
    )
