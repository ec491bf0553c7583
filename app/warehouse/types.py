"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import JSON, String
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = ["JSONType", "UTCDateTime", "utc_strings"]

# SQLite keeps instants as fixed-width ISO 8601 text in UTC, which sorts and compares correctly
SQLITE_TIME_WIDTH = 26


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC instant: ``timestamptz`` on PostgreSQL, ISO text on SQLite.

    Binding a naive datetime is refused: every time in the warehouse is an instant.
    """

    impl = String(SQLITE_TIME_WIDTH)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.TIMESTAMP(timezone=True))
        return dialect.type_descriptor(String(SQLITE_TIME_WIDTH))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, pd.Timestamp):
            value = value.to_pydatetime()
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: warehouse times must be timezone-aware")
        value = value.astimezone(UTC)
        if dialect.name == "postgresql":
            return value
        return value.replace(tzinfo=None).isoformat(timespec="microseconds")

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.astimezone(UTC)
        return datetime.fromisoformat(value).replace(tzinfo=UTC)


class JSONType(TypeDecorator[Any]):
    """JSON text on SQLite, ``jsonb`` on PostgreSQL (comparable, indexable)."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSONB())
        return dialect.type_descriptor(JSON())


def utc_strings(values: pd.Series, *, dialect: str) -> np.ndarray:
    """Vectorised bind values for a UTC datetime column (None where missing).

    SQLite gets the same text ``UTCDateTime`` writes; PostgreSQL gets ISO text with ``Z``,
    which it parses as an instant whatever the session time zone.
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        stamps = values.dt.tz_convert("UTC")
    elif values.isna().all():
        stamps = pd.to_datetime(values, utc=True)
    else:
        raise ValueError(
            f"column `{values.name}` is {values.dtype}: warehouse times must be timezone-aware"
        )
    raw = stamps.dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    # timezone="UTC" appends the Z (cheaper than adding it to every string afterwards)
    text = np.datetime_as_string(
        raw, unit="us", timezone="UTC" if dialect == "postgresql" else "naive"
    )
    out: np.ndarray = text.astype(object)
    out[stamps.isna().to_numpy()] = None
    return out
