"""Text columns of the input, as plain objects or as dictionary codes.

The warehouse hands low-cardinality text columns (source, field, status, team, assignee, actor,
...) over as pandas categoricals: each row is a small integer code into a table of distinct
values. The analytics then never hash those strings again — matching, grouping and mapping work
on the codes. Object and ``str`` columns work too; they are factorised where codes are needed.
Either way the results are the same: codes handed out by ``TextColumn.factorize`` follow the
order in which values first appear, exactly as ``pandas.factorize`` numbers them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from analytics.frames import codes_in, lookup, objects

__all__ = ["TextColumn", "categorical_codes", "factorize_codes"]

I64 = npt.NDArray[np.int64]
Obj = npt.NDArray[np.object_]
Codes = npt.NDArray[np.signedinteger[Any]]


def categorical_codes(series: pd.Series) -> tuple[Codes, Obj] | None:
    """The codes (-1 for missing) and the categories (as objects) of a categorical column; None
    for any other dtype."""
    dtype = series.dtype
    if not isinstance(dtype, pd.CategoricalDtype):
        return None
    codes = np.asarray(series.array.codes)
    table = np.asarray(dtype.categories.to_numpy(dtype=object), dtype=object)
    return codes, table


def factorize_codes(codes: Codes, n_values: int) -> tuple[I64, I64]:
    """Renumber codes ``0..n_values-1`` in order of first appearance (-1 stays -1).

    Returns the new codes and, for each new code, the old one — what ``pandas.factorize`` would
    give for the values the codes stand for, without hashing them.
    """
    n = len(codes)
    if n and int(codes.min()) >= 0:
        present, picked = np.arange(n, dtype=np.int64), codes
    else:
        present = np.flatnonzero(codes >= 0)
        picked = codes.take(present)
    first = np.full(n_values, n, dtype=np.int64)
    np.minimum.at(first, picked, present)
    used = np.flatnonzero(first < n)
    used = used.take(np.argsort(first.take(used), kind="stable"))
    renumber = np.full(n_values + 1, -1, dtype=np.int64)  # the last slot maps -1 to -1
    renumber[used] = np.arange(len(used), dtype=np.int64)
    return renumber.take(codes), used


@dataclass(frozen=True, eq=False)
class TextColumn:
    """One text column, optionally reordered (``order``: input rows in the wanted order).

    Holds either the objects (``values``) or, for a categorical input, its codes and categories
    (``codes``, ``table``); nothing is materialised or reordered until asked for.
    """

    values: Obj | None
    codes: Codes | None
    table: Obj | None
    order: I64 | None = None

    @classmethod
    def of(cls, series: pd.Series) -> TextColumn:
        coded = categorical_codes(series)
        if coded is None:
            return cls(values=objects(series), codes=None, table=None)
        return cls(values=None, codes=coded[0], table=coded[1])

    def __len__(self) -> int:
        if self.order is not None:
            return len(self.order)
        return len(self.codes if self.codes is not None else self.values)  # type: ignore[arg-type]

    def reordered(self, order: I64 | None) -> TextColumn:
        """The same column with its rows in ``order`` (positions in this column)."""
        if order is None:
            return self
        if self.order is not None:
            order = self.order[order]
        return TextColumn(values=self.values, codes=self.codes, table=self.table, order=order)

    @property
    def is_coded(self) -> bool:
        return self.codes is not None

    @cached_property
    def keys(self) -> npt.NDArray[Any]:
        """Per row, something equal exactly where the values are (the codes when there are):
        for finding runs of equal values."""
        if self.codes is not None:
            return self.codes if self.order is None else self.codes.take(self.order)
        return self.objects

    @cached_property
    def objects(self) -> Obj:
        """The values as objects (missing: None for coded columns, as given otherwise)."""
        if self.codes is not None:
            assert self.table is not None
            return lookup(self.table, self.keys)
        assert self.values is not None
        return self.values if self.order is None else self.values.take(self.order)

    def take(self, rows: I64) -> Obj:
        """The values at ``rows`` as objects (missing: None for coded columns)."""
        if self.codes is not None and "objects" not in self.__dict__:
            assert self.table is not None
            codes = self.keys.take(rows)
            if len(codes) and int(codes.min()) >= 0:
                out: Obj = self.table.take(codes)
                return out
            return lookup(self.table, codes)
        taken: Obj = self.objects.take(rows)
        return taken

    def single(self) -> str | None:
        """The string every row holds, when all hold the same one (None otherwise)."""
        if self.codes is not None:
            assert self.table is not None
            keys = self.keys
            if not len(keys) or keys[0] < 0 or not bool((keys == keys[0]).all()):
                return None
            value = self.table[keys[0]]
        else:
            values = self.objects
            if not len(values) or not bool((values == values[0]).all()):
                return None
            value = values[0]
        return value if isinstance(value, str) else None

    def equals(self, value: str, rows: I64) -> npt.NDArray[np.bool_]:
        """Whether the value at each of ``rows`` is ``value``."""
        if self.codes is not None:
            assert self.table is not None
            code = np.flatnonzero(self.table == value)
            if not len(code):
                return np.zeros(len(rows), dtype=bool)
            out: npt.NDArray[np.bool_] = self.keys.take(rows) == code[0]
            return out
        return np.asarray(self.objects.take(rows) == value, dtype=bool)

    def codes_in(
        self,
        known: tuple[str, ...],
        rows: I64 | None = None,
        *,
        dtype: type[np.signedinteger[Any]] = np.int64,
    ) -> npt.NDArray[np.signedinteger[Any]]:
        """Index of each value (at ``rows``, else all) in ``known``; -1 for missing or unknown."""
        if self.codes is None:
            values = self.objects if rows is None else self.objects.take(rows)
            return codes_in(values, known).astype(dtype, copy=False)
        assert self.table is not None
        table = np.append(codes_in(self.table, known), -1).astype(dtype)
        keys = self.keys if rows is None else self.keys.take(rows)
        if len(keys) and bool((keys == keys[0]).all()):  # e.g. a log of one field
            return np.full(len(keys), table[keys[0]], dtype=dtype)
        out: npt.NDArray[np.signedinteger[Any]] = table.take(keys)
        return out

    def factorize(self, rows: I64 | None = None) -> tuple[I64, Obj]:
        """Codes (-1 for missing) and distinct values of the values at ``rows`` (else all), the
        codes numbered in order of first appearance (as ``pandas.factorize``)."""
        if self.codes is None:
            values = self.objects if rows is None else self.objects.take(rows)
            codes, uniques = pd.factorize(values)
            return np.asarray(codes, dtype=np.int64), np.asarray(uniques, dtype=object)
        assert self.table is not None
        picked = self.keys if rows is None else self.keys.take(rows)
        codes, used = factorize_codes(picked, len(self.table))
        return codes, self.table[used]
