"""Cell values shared by the event-log readers: text cleaning, per-distinct-value mapping,
system users and priority normalisers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "PriorityLevels",
    "fold",
    "map_distinct",
    "priority_from_map",
    "priority_from_number",
    "system_user_mask",
    "text",
]

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


def fold(value: object) -> str:
    """Text as the status map matches it: blanks collapsed, case folded ("" for non-text)."""
    return " ".join(value.split()).casefold() if isinstance(value, str) else ""


def system_user_mask(values: pd.Series, users: Iterable[str]) -> pd.Series:
    """True where the value is one of the system users (ignoring case and blanks)."""
    wanted = {fold(u) for u in users}
    return map_distinct(values, lambda v: fold(v) in wanted).astype(bool)


def priority_from_map(levels: Mapping[str, int]) -> PriorityLevels:
    """A priority normaliser from a label -> level map (matching ignores case and blanks)."""
    norm = {fold(k): v for k, v in levels.items()}

    def apply(raw: pd.Series) -> pd.Series:
        return map_distinct(raw, lambda v: norm.get(fold(v))).astype("Int64")

    return apply


def priority_from_number(raw: pd.Series) -> pd.Series:
    """1..5 from labels that start with the level: ``3``, ``P2``, ``1 - Critical``."""
    digits = (
        raw.astype(object)
        .where(raw.notna(), "")
        .str.extract(r"^\s*[Pp]?\s*([1-5])(?![0-9])", expand=False)
    )
    return pd.to_numeric(digits, errors="coerce").astype("Int64")
