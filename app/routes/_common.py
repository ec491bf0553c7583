"""Helpers the route modules share: CSV answers and paging of result frames."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Any

import pandas as pd
from fastapi.responses import StreamingResponse

__all__ = ["csv_response", "frame_records", "page_frame"]

# a spreadsheet runs a cell that starts with one of these as a formula (CSV injection)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, datetime | date | pd.Timestamp):
        return value.isoformat()
    if isinstance(value, bool | int | float):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_lines(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for n, row in enumerate(rows, start=1):
        writer.writerow([_cell(v) for v in row])
        if n % 1000 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def csv_response(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], *, filename: str, total: int
) -> StreamingResponse:
    """Rows as a CSV download (RFC 4180, UTF-8, header row; formula-like text defused)."""
    return StreamingResponse(
        _csv_lines(columns, rows),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}.csv"',
            "X-Total-Count": str(total),
        },
    )


def page_frame(frame: pd.DataFrame, *, limit: int, offset: int) -> pd.DataFrame:
    return frame.iloc[offset : offset + limit]


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def frame_records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """Rows as dicts with None for every kind of missing value (NaN, NaT, pd.NA).

    Column-wise ``tolist`` and a plain loop: much faster than ``DataFrame.where`` on the
    extension dtypes for the page-sized frames the API answers.
    """
    data = {c: frame[c].tolist() if c in frame.columns else [None] * len(frame) for c in columns}
    return [{c: _plain(data[c][i]) for c in columns} for i in range(len(frame))]
