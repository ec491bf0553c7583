"""Row storage for the fake instance: compact rows plus sorted and exact-match indexes.

A row is a list of strings in the table's column order (a 100,000-incident, 1,000,000-audit-row
instance then fits in a few hundred MB). Sorted indexes hold ``(value, sys_id)`` per ordered
field and partition (``sys_audit`` is split by ``(tablename, fieldname)``), so a cursor query
is a bisect plus a slice. Indexes are built on first use and kept up to date on each change.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable

from tests.fakes.servicenow.schema import STRING, TableSchema

__all__ = ["Getter", "OrderedIndex", "Table"]

Getter = Callable[[list[str]], str]
Part = tuple[str, ...]
OrderedIndex = dict[Part, list[tuple[str, str]]]


class Table:
    """The rows of one table and their indexes."""

    def __init__(self, schema: TableSchema) -> None:
        self.schema = schema
        self.types: dict[str, str] = dict(schema.fields)
        self.columns: dict[str, int] = {name: i for i, name in enumerate(self.types)}
        self.rows: dict[str, list[str]] = {}
        self._ordered: dict[str, OrderedIndex] = {}
        self._hashed: dict[str, dict[str, set[str]]] = {}

    @property
    def name(self) -> str:
        return self.schema.name

    def add_column(self, name: str, kind: str = STRING) -> None:
        """A custom column (``u_...``); existing rows read it as empty."""
        if name not in self.columns:
            self.columns[name] = len(self.columns)
            self.types[name] = kind

    def getter(self, name: str) -> Getter:
        """Fast read of one field from a row (empty when the row predates the column)."""
        i = self.columns[name]

        def get(row: list[str]) -> str:
            return row[i] if i < len(row) else ""

        return get

    def value(self, row: list[str], name: str) -> str:
        i = self.columns.get(name)
        return row[i] if i is not None and i < len(row) else ""

    def as_dict(self, row: list[str]) -> dict[str, str]:
        if len(row) < len(self.columns):
            row = row + [""] * (len(self.columns) - len(row))
        return dict(zip(self.columns, row, strict=True))

    def insert(self, values: dict[str, str]) -> list[str]:
        """Store a new row (``values`` must hold ``sys_id``); indexes follow if built."""
        row = [""] * len(self.columns)
        for name, value in values.items():
            row[self.columns[name]] = value
        sys_id = row[self.columns["sys_id"]]
        self.rows[sys_id] = row
        if self._ordered or self._hashed:
            self._index_add(sys_id, row)
        return row

    def insert_row(self, row: list[str]) -> None:
        """Store a new row given in column order (bulk writers)."""
        sys_id = row[self.columns["sys_id"]]
        self.rows[sys_id] = row
        if self._ordered or self._hashed:
            self._index_add(sys_id, row)

    def update(self, sys_id: str, changes: dict[str, str]) -> list[str]:
        """Change a row in place; indexes on changed fields follow."""
        row = self.rows[sys_id]
        if len(row) < len(self.columns):
            row.extend([""] * (len(self.columns) - len(row)))
        watched = set(self._ordered) | set(self._hashed) | set(self.schema.partitions)
        touched = watched.intersection(changes)
        if touched and (self._ordered or self._hashed):
            self._index_remove(sys_id, row)
            for name, value in changes.items():
                row[self.columns[name]] = value
            self._index_add(sys_id, row)
        else:
            for name, value in changes.items():
                row[self.columns[name]] = value
        return row

    def delete(self, sys_id: str) -> None:
        """Remove a row; indexes follow if built."""
        row = self.rows[sys_id]
        if self._ordered or self._hashed:
            self._index_remove(sys_id, row)
        del self.rows[sys_id]

    def bulk_loaded(self) -> None:
        """Forget the indexes after writing rows directly (they rebuild on next use)."""
        self._ordered.clear()
        self._hashed.clear()

    # --- indexes ----------------------------------------------------------------------------

    def ordered_index(self, field: str) -> OrderedIndex:
        """``partition -> sorted [(value, sys_id)]`` for an ordered field (rows with an empty
        value are left out)."""
        index = self._ordered.get(field)
        if index is None:
            get = self.getter(field)
            parts = [self.getter(p) for p in self.schema.partitions]
            grouped: dict[Part, list[tuple[str, str]]] = {}
            for sys_id, row in self.rows.items():
                value = get(row)
                if value:
                    grouped.setdefault(tuple(p(row) for p in parts), []).append((value, sys_id))
            for keys in grouped.values():
                keys.sort()
            index = grouped
            self._ordered[field] = index
        return index

    def hashed_index(self, field: str) -> dict[str, set[str]]:
        index = self._hashed.get(field)
        if index is None:
            get = self.getter(field)
            index = {}
            for sys_id, row in self.rows.items():
                index.setdefault(get(row), set()).add(sys_id)
            self._hashed[field] = index
        return index

    def _part(self, row: list[str]) -> Part:
        return tuple(self.value(row, p) for p in self.schema.partitions)

    def _index_add(self, sys_id: str, row: list[str]) -> None:
        part = self._part(row)
        for field, index in self._ordered.items():
            value = self.value(row, field)
            if value:
                bisect.insort(index.setdefault(part, []), (value, sys_id))
        for field, hashed in self._hashed.items():
            hashed.setdefault(self.value(row, field), set()).add(sys_id)

    def _index_remove(self, sys_id: str, row: list[str]) -> None:
        part = self._part(row)
        for field, index in self._ordered.items():
            value = self.value(row, field)
            keys = index.get(part)
            if value and keys:
                at = bisect.bisect_left(keys, (value, sys_id))
                if at < len(keys) and keys[at] == (value, sys_id):
                    del keys[at]
        for field, hashed in self._hashed.items():
            hashed.get(self.value(row, field), set()).discard(sys_id)

    def partitions_matching(self, field: str, allowed: list[set[str] | None]) -> Iterable[Part]:
        """The partitions of ``field``'s index whose values are allowed (case-folded sets;
        None: any)."""
        for part in self.ordered_index(field):
            if all(a is None or v.casefold() in a for v, a in zip(part, allowed, strict=True)):
                yield part
