"""Percentiles (per group, vectorised) and local-day bucketing.

Percentile method (docs/metrics.md "Percentiles"): by default the nearest rank — the smallest
value such that at least ``p`` of the sample is at or below it (``x[ceil(p*n) - 1]`` of the sorted
sample). It is conservative and always an observed value, which suits a service-level expectation
("85 % of calls finished within 6 days" is then literally true of the sample). ``linear`` is
numpy's default interpolation, for comparison with spreadsheets and pandas.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt
import pandas as pd

from analytics.clock import day_index
from analytics.frames import NAT

__all__ = [
    "Days",
    "distinct_count",
    "exact_bincount",
    "grouped_means",
    "grouped_percentiles",
    "local_days",
    "nearest_rank",
    "percentile_label",
    "rows_of",
    "unique_counts",
]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


def percentile_label(p: float) -> str:
    """``0.85`` -> ``"p85"``; ``0.995`` -> ``"p99.5"``."""
    return f"p{100 * p:g}"


def grouped_percentiles(
    group: I64, values: I64, n_groups: int, percentiles: tuple[float, ...], method: str
) -> tuple[I64, I64]:
    """Percentiles of int64 ``values`` per group ``0..n_groups-1``.

    Returns ``(table, counts)``: ``table[g, j]`` is percentile ``percentiles[j]`` of group ``g``
    (``NAT`` for an empty group), ``counts[g]`` the group's sample size.
    """
    counts = np.bincount(group, minlength=n_groups).astype(np.int64)
    table = np.full((n_groups, len(percentiles)), NAT, dtype=np.int64)
    if not len(values):
        return table, counts
    order = np.lexsort((values, group))
    ordered = values[order]
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    has = counts > 0
    n = counts[has]
    base = first[has]
    for j, p in enumerate(percentiles):
        if method == "linear":
            pos = p * (n - 1)
            lo = np.floor(pos).astype(np.int64)
            hi = np.minimum(lo + 1, n - 1)
            frac = pos - lo
            a = ordered[base + lo].astype(np.float64)
            b = ordered[base + hi].astype(np.float64)
            table[has, j] = np.round(a + (b - a) * frac).astype(np.int64)
        else:
            rank = np.ceil(np.round(p * n, 9)).astype(np.int64) - 1
            table[has, j] = ordered[base + np.clip(rank, 0, n - 1)]
    return table, counts


def grouped_means(group: I64, values: I64, n_groups: int) -> F64:
    """Mean of int64 ``values`` per group (NaN for empty groups), independent of input order:
    values are summed in sorted order, as float64 (totals of many durations overflow int64)."""
    counts = np.bincount(group, minlength=n_groups)
    out = np.full(n_groups, np.nan)
    if not len(values):
        return out
    order = np.lexsort((values, group))
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    has = counts > 0
    sums = np.add.reduceat(values[order].astype(np.float64), first[has])
    out[has] = sums / counts[has]
    return out


@dataclass(frozen=True)
class Days:
    """Consecutive local days of a time zone, as UTC instants of their midnights."""

    dates: pd.DatetimeIndex
    """the local dates (naive, midnight)"""
    midnight: I64
    """UTC ns of each day's start, plus the start of the day after the last"""

    def index(self, t: I64) -> I64:
        """Day number of each instant; -1 before the first day (or NaT), ``len`` after the last."""
        idx = day_index(self.midnight, t)
        idx[t < self.midnight[0]] = -1
        idx[t >= self.midnight[-1]] = len(self.dates)
        return idx

    def __len__(self) -> int:
        return len(self.dates)


def local_days(first: date, last: date, timezone: str) -> Days:
    """The local days ``first..last`` (inclusive) of ``timezone``."""
    dates = pd.date_range(first, last, freq="D")
    bounds = pd.date_range(first, last + pd.Timedelta(days=1), freq="D")
    ones = np.ones(len(bounds), dtype=bool)
    midnight = bounds.tz_localize(timezone, ambiguous=ones, nonexistent="shift_forward")
    return Days(dates=dates, midnight=np.asarray(midnight.tz_convert("UTC").as_unit("ns").asi8))


def nearest_rank(values: F64, p: float, method: str = "nearest_rank") -> float:
    """One percentile of a float sample (NaN for an empty sample)."""
    sample = np.sort(values[~np.isnan(values)])
    n = len(sample)
    if not n:
        return float("nan")
    if method == "linear":
        return float(np.percentile(sample, 100 * p))
    rank = int(np.ceil(np.round(p * n, 9))) - 1
    return float(sample[min(max(rank, 0), n - 1)])


def unique_counts(values: I64) -> tuple[I64, I64]:
    """Sorted distinct values and how often each occurs (sort-based; numpy's hash-based
    ``unique`` is far slower on large int64 arrays)."""
    ordered = np.sort(values)
    if not len(ordered):
        return ordered, np.zeros(0, dtype=np.int64)
    heads = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    counts = np.diff(np.append(heads, len(ordered))).astype(np.int64)
    return ordered[heads], counts


def distinct_count(values: I64, n: int) -> int:
    """How many distinct values in ``0..n-1`` occur."""
    seen = np.zeros(n, dtype=bool)
    seen[values] = True
    return int(seen.sum())


def exact_bincount(keys: I64, values: I64, size: int) -> I64:
    """Exact int64 sums of ``values`` per key ``0..size-1`` (0 for keys without rows).

    ``np.bincount`` only sums float64 weights (exact up to 2**53 ns, about 104 days);
    ``np.add.at`` on int64 is exact and, since numpy 2, fast.
    """
    out = np.zeros(size, dtype=np.int64)
    np.add.at(out, keys, np.asarray(values, dtype=np.int64))
    return out


def rows_of(offsets: I64, tickets: I64) -> I64:
    """Row numbers of the given tickets' segments ``offsets[k]:offsets[k+1]``, concatenated."""
    starts = offsets[tickets]
    lengths = offsets[tickets + 1] - starts
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    shift = np.repeat(starts - (ends - lengths), lengths)
    return np.asarray(np.arange(total, dtype=np.int64) + shift, dtype=np.int64)
