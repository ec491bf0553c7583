"""Column names, lifecycle states and small frame helpers shared by every analytics module.

The analytics never import ``connectors`` or ``app``: the names of the canonical model
(``connectors/base.py``, ``docs/model.md``) are re-declared here, and a test checks that they
still agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from analytics.errors import InvalidInputError, MissingColumnsError

__all__ = [
    "ACTOR",
    "ASSIGNEE",
    "CANCELLED",
    "CATEGORY",
    "CLOSED",
    "CREATED_AT",
    "DONE_STATES",
    "DUE_AT",
    "EVENT_COLUMNS",
    "EXTERNAL_ID",
    "FIELDS",
    "FIELD_ASSIGNEE",
    "FIELD_CUSTOMER_UPDATE",
    "FIELD_INTERNAL_UPDATE",
    "FIELD_PRIORITY",
    "FIELD_STATE",
    "FIELD_STATUS",
    "FIELD_TEAM",
    "IN_PROGRESS",
    "NAT",
    "NEW",
    "NEW_VALUE",
    "OCCURRED_AT",
    "OLD_VALUE",
    "OPEN_STATES",
    "ORIGIN",
    "PRIORITY",
    "RAW_STATUS",
    "REQUESTER",
    "RESOLVED",
    "RESOLVED_AT",
    "SEQ",
    "SOURCE",
    "STATE",
    "STATES",
    "TEAM",
    "TICKET_COLUMNS",
    "TICKET_ID",
    "WAITING_CUSTOMER",
    "WAITING_OTHER",
    "WAITING_STATES",
    "WAITING_SUPPLIER",
    "from_ns",
    "require_columns",
    "timestamp_ns",
    "to_ns",
]

# --- ticket frame (connectors.base.TICKET_COLUMNS) -------------------------------------------
SOURCE = "source"
EXTERNAL_ID = "external_id"
NUMBER = "number"
TITLE = "title"
TYPE = "type"
RAW_STATUS = "raw_status"
STATE = "state"
PRIORITY_RAW = "priority_raw"
PRIORITY = "priority"
CATEGORY = "category"
TEAM = "team"
ASSIGNEE = "assignee"
REQUESTER = "requester"
CREATED_AT = "created_at"
UPDATED_AT = "updated_at"
RESOLVED_AT = "resolved_at"
CLOSED_AT = "closed_at"
DUE_AT = "due_at"
REASSIGNMENT_COUNT = "reassignment_count"
REOPEN_COUNT = "reopen_count"
URL = "url"
RAW = "raw"

TICKET_COLUMNS: tuple[str, ...] = (
    SOURCE,
    EXTERNAL_ID,
    NUMBER,
    TITLE,
    TYPE,
    RAW_STATUS,
    STATE,
    PRIORITY_RAW,
    PRIORITY,
    CATEGORY,
    TEAM,
    ASSIGNEE,
    REQUESTER,
    CREATED_AT,
    UPDATED_AT,
    RESOLVED_AT,
    CLOSED_AT,
    DUE_AT,
    REASSIGNMENT_COUNT,
    REOPEN_COUNT,
    URL,
    RAW,
)

# --- event frame (connectors.base.EVENT_COLUMNS) ---------------------------------------------
TICKET_ID = "ticket_id"
EVENT_KEY = "event_key"
OCCURRED_AT = "occurred_at"
SEQ = "seq"
FIELD = "field"
OLD_VALUE = "old_value"
NEW_VALUE = "new_value"
ACTOR = "actor"
ORIGIN = "origin"

EVENT_COLUMNS: tuple[str, ...] = (
    SOURCE,
    TICKET_ID,
    EVENT_KEY,
    OCCURRED_AT,
    SEQ,
    FIELD,
    OLD_VALUE,
    NEW_VALUE,
    ACTOR,
    ORIGIN,
)

# --- what an event changed (connectors.base.EventField) --------------------------------------
FIELD_STATE = "state"
FIELD_STATUS = "status"
FIELD_TEAM = "team"
FIELD_ASSIGNEE = "assignee"
FIELD_PRIORITY = "priority"
FIELD_CUSTOMER_UPDATE = "customer_update"
FIELD_INTERNAL_UPDATE = "internal_update"
FIELDS: tuple[str, ...] = (
    FIELD_STATE,
    FIELD_STATUS,
    FIELD_TEAM,
    FIELD_ASSIGNEE,
    FIELD_PRIORITY,
    FIELD_CUSTOMER_UPDATE,
    FIELD_INTERNAL_UPDATE,
)

# --- lifecycle states (connectors.base.LifecycleState), in flow order ------------------------
NEW = "new"
IN_PROGRESS = "in_progress"
WAITING_CUSTOMER = "waiting_customer"
WAITING_SUPPLIER = "waiting_supplier"
WAITING_OTHER = "waiting_other"
RESOLVED = "resolved"
CLOSED = "closed"
CANCELLED = "cancelled"
STATES: tuple[str, ...] = (
    NEW,
    IN_PROGRESS,
    WAITING_CUSTOMER,
    WAITING_SUPPLIER,
    WAITING_OTHER,
    RESOLVED,
    CLOSED,
    CANCELLED,
)
WAITING_STATES = frozenset({WAITING_CUSTOMER, WAITING_SUPPLIER, WAITING_OTHER})
DONE_STATES = frozenset({RESOLVED, CLOSED, CANCELLED})
OPEN_STATES = frozenset(set(STATES) - DONE_STATES)

NAT = np.iinfo(np.int64).min
"""the int64 value pandas uses for NaT; every internal time is int64 nanoseconds since the epoch"""

I64 = npt.NDArray[np.int64]
_NS_PER = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


def require_columns(df: pd.DataFrame, columns: Iterable[str], *, frame: str = "frame") -> None:
    """Raise ``MissingColumnsError`` listing every column of ``columns`` that ``df`` lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MissingColumnsError(missing=missing, frame=frame)


def to_ns(series: pd.Series, *, name: str) -> I64:
    """A UTC datetime column as int64 nanoseconds (NaT -> ``NAT``).

    Raises:
        InvalidInputError: the column is not timezone-aware datetime (or all-null).
    """
    dtype = series.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        unit = dtype.unit
        # the stored values are UTC already; read them in their own unit and scale to ns
        raw = np.asarray(series.array.to_numpy(dtype=f"datetime64[{unit}]")).view(np.int64)
        factor = _NS_PER[unit]
        if factor == 1:
            return raw.copy()
        out = raw * factor
        if len(raw) and int(raw.min()) == NAT:  # one pass to find out, not two
            out[raw == NAT] = NAT
        return out
    if series.isna().all():
        return np.full(len(series), NAT, dtype=np.int64)
    raise InvalidInputError(
        f"column `{name}` must be timezone-aware datetimes (UTC), got dtype {dtype}"
    )


def timestamp_ns(value: datetime | pd.Timestamp | str, *, name: str = "now") -> int:
    """One timezone-aware instant as int nanoseconds since the epoch.

    Raises:
        InvalidInputError: the instant is naive (a naive ``now`` is ambiguous).
    """
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        raise InvalidInputError(f"`{name}` must be timezone-aware, got naive {ts}")
    return int(ts.tz_convert("UTC").as_unit("ns").value)


def from_ns(values: npt.NDArray[Any]) -> pd.DatetimeIndex:
    """int64 nanoseconds (``NAT`` for missing) as UTC datetimes, for an output column."""
    return pd.DatetimeIndex(np.asarray(values, dtype=np.int64).view("datetime64[ns]"), tz="UTC")


def objects(series: pd.Series) -> npt.NDArray[np.object_]:
    """A text column as a numpy object array, without copying where possible.

    Missing values stay None or NaN (test them with ``pd.isna``); ``pd.NA`` (the ``string``
    dtype) becomes None, because it cannot be compared element-wise.
    """
    dtype = series.dtype
    if isinstance(dtype, pd.StringDtype) and dtype.na_value is pd.NA:
        return np.asarray(series.array.to_numpy(dtype=object, na_value=None), dtype=object)
    return np.asarray(series.to_numpy(dtype=object), dtype=object)


def codes_in(values: npt.NDArray[np.object_], known: tuple[str, ...]) -> npt.NDArray[np.int64]:
    """Index of each value in ``known`` (-1 for missing or unknown values)."""
    if len(values) <= 64:  # a few values (e.g. a categorical's categories): no hashing
        position = {k: i for i, k in reversed(list(enumerate(known)))}  # first index wins
        return np.array(
            [position.get(v, -1) if isinstance(v, str) else -1 for v in values], dtype=np.int64
        )
    if isinstance(values[0], str):
        # a column holding one value only (a frame of one field, one source): no hashing
        first = values[0]
        if bool((values[:: max(len(values) // 64, 1)] == first).all()) and bool(
            (values == first).all()
        ):
            code = known.index(first) if first in known else -1
            return np.full(len(values), code, dtype=np.int64)
    codes, uniques = pd.factorize(values)
    table = np.array(
        [known.index(u) if isinstance(u, str) and u in known else -1 for u in uniques] + [-1],
        dtype=np.int64,
    )
    return table[codes]


_PANDAS_3 = int(pd.__version__.split(".")[0]) >= 3


def text(values: npt.NDArray[np.object_]) -> Any:
    """Strings (None/NaN for missing) as an output column.

    On pandas 3 the ``str`` array is built directly: a frame built from an object array would
    first try to read the strings as dates, which costs more than the analytics themselves on
    small logs.
    """
    if _PANDAS_3:
        return pd.array(values, dtype="str")
    return values


def text_of(values: npt.NDArray[Any], codes: npt.NDArray[np.integer[Any]]) -> Any:
    """``values[codes]`` as an output text column; ``codes`` are indices into ``values`` or -1
    (missing).

    The few distinct values become a ``str`` array once and are then taken by code: far cheaper
    than checking every element of a long object column.
    """
    if _PANDAS_3:
        # the trailing missing entry is index -1: missing codes need no remapping
        return pd.array(with_none(values), dtype="str").take(codes)
    return lookup(values, codes)


def with_none(values: npt.NDArray[Any]) -> npt.NDArray[np.object_]:
    """``values`` as an object array with one trailing None (index ``len(values)`` = missing)."""
    out = np.empty(len(values) + 1, dtype=object)
    out[: len(values)] = values
    out[len(values)] = None
    return out


def lookup(table: npt.NDArray[Any], codes: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.object_]:
    """``table[codes]`` as objects, for ``codes`` that are indices into ``table`` or -1 (None)."""
    out: npt.NDArray[np.object_] = with_none(table).take(codes)
    return out


def pick_or_none(table: npt.NDArray[Any], codes: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
    """``table[codes]`` as objects, None where a code is negative."""
    return with_none(table)[np.where(codes >= 0, codes, len(table))]


def td(values: npt.NDArray[Any]) -> pd.TimedeltaIndex:
    """int64 nanosecond durations (``NAT`` for missing) as timedeltas, for an output column."""
    return pd.TimedeltaIndex(np.asarray(values, dtype=np.int64).view("timedelta64[ns]"))
