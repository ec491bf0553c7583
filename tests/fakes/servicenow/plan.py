"""Answering a compiled query from a table: which rows, in which order, how many.

When the order is one indexed datetime field (``ORDERBYsys_updated_on`` with or
without ``^ORDERBYsys_id``, or no ORDERBY and every group bounded by that field), each group's
conditions on that field and on ``sys_id`` become exact ranges of the sorted ``(value, sys_id)``
index (split by partition fields such as ``sys_audit.tablename``/``fieldname``), so a keyset page
and its ``X-Total-Count`` cost a few bisects. Other conditions filter the candidate ranges row by
row; anything else is a scan and a sort.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tests.fakes.servicenow.query import CompiledQuery, Term
from tests.fakes.servicenow.store import Getter, Table

__all__ = ["Selection", "select"]

MAX = "\uffff"
"""sorts after every sys_id"""

Region = tuple[str | None, str | None, bool]
"""``(low, high, is_point)``: a point (``low == high``) or the open gap between two constants"""


def _regions(constants: set[str]) -> list[Region]:
    points = sorted(constants)
    regions: list[Region] = []
    previous: str | None = None
    for point in points:
        regions.append((previous, point, False))
        regions.append((point, point, True))
        previous = point
    regions.append((previous, None, False))
    return regions


def _holds(term: Term, region: Region) -> bool | None:
    """Whether a condition on the key holds over the whole region (None: not a key op)."""
    op, lits = term.condition.op, term.literals
    low, high, point = region
    if op in ("ISNOTEMPTY", "ANYTHING"):
        return True
    if point:
        assert low is not None
        v = low
        if op == "=":
            return v == lits[0]
        if op == "!=":
            return v != lits[0]
        if op == ">":
            return v > lits[0]
        if op == ">=":
            return v >= lits[0]
        if op == "<":
            return v < lits[0]
        if op == "<=":
            return v <= lits[0]
        if op == "IN":
            return v in lits
        if op == "NOT IN":
            return v not in lits
        if op == "BETWEEN":
            return lits[0] <= v <= lits[1]
        return None
    if op in ("=", "IN"):
        return False
    if op in ("!=", "NOT IN"):
        return True
    if op in (">", ">="):
        return low is not None and lits[0] <= low
    if op in ("<", "<="):
        return high is not None and lits[0] >= high
    if op == "BETWEEN":
        return low is not None and high is not None and lits[0] <= low and lits[1] >= high
    return None


_KEY_OPS = frozenset({"=", ">", ">=", "<", "<=", "IN", "BETWEEN", "ISNOTEMPTY", "ANYTHING"})
_ID_OPS = _KEY_OPS | {"!=", "NOT IN"}

Bound = tuple[tuple[str, str], bool] | None
"""a key and whether to bisect right of it; None: the start (low) or end (high)"""


@dataclass
class _GroupPlan:
    allowed: list[set[str] | None]
    ranges: list[tuple[Bound, Bound]]
    exact: bool


def _plan_group(group: list[list[Term]], key: str, table: Table) -> _GroupPlan:
    partitions = table.schema.partitions
    allowed: list[set[str] | None] = [None] * len(partitions)
    key_clauses: list[list[Term]] = []
    exact = True
    for clause in group:
        fields = {t.condition.field for t in clause}
        if fields <= {key, "sys_id"} and all(
            t.condition.op in (_KEY_OPS if t.condition.field == key else _ID_OPS) for t in clause
        ):
            key_clauses.append(clause)
            continue
        names = {t.condition.field for t in clause}
        if (
            len(names) == 1
            and clause[0].condition.field in partitions
            and all(t.condition.op in ("=", "IN") for t in clause)
        ):
            at = partitions.index(clause[0].condition.field)
            values = {v.casefold() for t in clause for v in t.literals}
            current = allowed[at]
            allowed[at] = values if current is None else current & values
            continue
        exact = False
    u_constants = {
        lit
        for c in key_clauses
        for t in c
        if t.condition.field == key
        for lit in t.literals
        if t.condition.op not in ("ISNOTEMPTY", "ANYTHING")
    }
    s_constants = {
        lit
        for c in key_clauses
        for t in c
        if t.condition.field == "sys_id"
        for lit in t.literals
        if t.condition.op not in ("ISNOTEMPTY", "ANYTHING")
    }
    s_regions = _regions(s_constants)
    ranges: list[tuple[Bound, Bound]] = []

    def truth(u: Region, s: Region) -> bool:
        for clause in key_clauses:
            if not any(_holds(t, u if t.condition.field == key else s) for t in clause):
                return False
        return True

    for u in _regions(u_constants):
        low, high, point = u
        if point:
            assert low is not None
            for s in s_regions:
                if not truth(u, s):
                    continue
                s_low, s_high, s_point = s
                if s_point:
                    assert s_low is not None
                    ranges.append((((low, s_low), False), ((low, s_low), True)))
                else:
                    start = ((low, s_low), True) if s_low is not None else ((low, ""), False)
                    end = ((low, s_high), False) if s_high is not None else ((low, MAX), True)
                    ranges.append((start, end))
            continue
        answers = [truth(u, s) for s in s_regions]
        if not any(answers):
            continue
        if not all(answers):
            exact = False
        start_b: Bound = ((low, MAX), True) if low is not None else None
        end_b: Bound = ((high, ""), False) if high is not None else None
        ranges.append((start_b, end_b))
    return _GroupPlan(allowed, ranges, exact)


def _position(keys: list[tuple[str, str]], bound: Bound, default: int) -> int:
    if bound is None:
        return default
    value, right = bound
    return bisect.bisect_right(keys, value) if right else bisect.bisect_left(keys, value)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(s for s in spans if s[0] < s[1]):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _index_key(compiled: CompiledQuery, table: Table) -> tuple[str, bool] | None:
    """The indexed field whose order answers this query, and its direction."""
    order = compiled.order
    if order:
        name, descending = order[0][0], order[0][1]
        if name not in table.schema.ordered:
            return None
        if len(order) == 1 or (
            len(order) == 2 and order[1][0] == "sys_id" and order[1][1] == descending
        ):
            return name, descending
        return None
    if not compiled.groups:
        return None
    for name in table.schema.ordered:
        if all(any(all(t.condition.field == name for t in c) for c in g) for g in compiled.groups):
            return name, False
    return None


@dataclass
class Selection:
    ids: list[str]
    total: int | None
    plan: str
    """``index`` (ranges of a sorted index), ``filter`` (ranges checked row by row), ``hash``
    or ``scan``"""


def select(
    table: Table, compiled: CompiledQuery, *, offset: int, limit: int, count: bool = True
) -> Selection:
    """The page ``[offset, offset + limit)`` of matching sys_ids in the requested order, and
    the number of matches (when ``count``)."""
    pinned = _pinned(table, compiled)
    found = _index_key(compiled, table) if pinned is None else None
    if found is not None:
        return _select_indexed(table, compiled, found[0], found[1], offset, limit, count)
    return _select_scan(table, compiled, offset, limit, pinned)


def _select_indexed(
    table: Table,
    compiled: CompiledQuery,
    key: str,
    descending: bool,
    offset: int,
    limit: int,
    count: bool,
) -> Selection:
    index = table.ordered_index(key)
    groups = compiled.groups or [[]]
    plans = [_plan_group(g, key, table) for g in groups]
    spans: dict[tuple[str, ...], list[tuple[int, int]]] = {}
    for plan in plans:
        for part in table.partitions_matching(key, plan.allowed):
            keys = index[part]
            for start, end in plan.ranges:
                spans.setdefault(part, []).append(
                    (_position(keys, start, 0), _position(keys, end, len(keys)))
                )
    merged = {part: _merge(s) for part, s in spans.items()}
    exact = all(p.exact for p in plans)
    streams = [
        _stream(index[part], ranges, descending=descending) for part, ranges in merged.items()
    ]
    if exact:
        total = sum(b - a for ranges in merged.values() for a, b in ranges)
        if len(merged) == 1 and not descending:
            part = next(iter(merged))
            ids = _slice_ranges(merged[part], index[part], offset, limit)
        else:
            stream = heapq.merge(*streams, reverse=descending)
            ids = [sid for _v, sid in itertools.islice(stream, offset, offset + limit)]
        return Selection(ids, total, "index")
    rows = table.rows
    predicate = compiled.predicate
    matches = (sid for _v, sid in heapq.merge(*streams, reverse=descending) if predicate(rows[sid]))
    if not count:
        return Selection(list(itertools.islice(matches, offset, offset + limit)), None, "filter")
    every = list(matches)
    return Selection(every[offset : offset + limit], len(every), "filter")


def _stream(
    keys: list[tuple[str, str]], ranges: list[tuple[int, int]], *, descending: bool
) -> Iterator[tuple[str, str]]:
    if descending:
        for a, b in reversed(ranges):
            for i in range(b - 1, a - 1, -1):
                yield keys[i]
    else:
        for a, b in ranges:
            yield from keys[a:b]


def _slice_ranges(
    ranges: list[tuple[int, int]], keys: list[tuple[str, str]], offset: int, limit: int
) -> list[str]:
    ids: list[str] = []
    skip = offset
    for a, b in ranges:
        size = b - a
        if skip >= size:
            skip -= size
            continue
        start = a + skip
        skip = 0
        stop = min(b, start + (limit - len(ids)))
        ids.extend(sid for _v, sid in keys[start:stop])
        if len(ids) >= limit:
            break
    return ids


def _pinned(table: Table, compiled: CompiledQuery) -> list[str] | None:
    """Exact-match index hits when every group pins a hashed field (``documentkeyIN...``)."""
    if not compiled.groups or not all(compiled.groups):
        return None
    hits: set[str] = set()
    for group in compiled.groups:
        pinned = next(
            (
                c[0]
                for c in group
                if len(c) == 1
                and c[0].condition.field in table.schema.hashed
                and c[0].condition.op in ("=", "IN")
            ),
            None,
        )
        if pinned is None:
            return None
        if pinned.condition.field == "sys_id":  # the rows are keyed by it already
            hits.update(v for v in pinned.literals if v in table.rows)
            continue
        hashed = table.hashed_index(pinned.condition.field)
        for literal in pinned.literals:
            hits |= hashed.get(literal, set())
    return list(hits)


def _select_scan(
    table: Table, compiled: CompiledQuery, offset: int, limit: int, pinned: list[str] | None
) -> Selection:
    candidates, plan = (list(table.rows), "scan") if pinned is None else (pinned, "hash")
    rows = table.rows
    predicate = compiled.predicate
    ids = [sid for sid in candidates if predicate(rows[sid])]
    # without ORDERBY rows come in primary-key (sys_id) order, as a table scan does
    ids.sort()
    order = compiled.order
    if order and not any(descending for _n, descending, _g, _k in order):
        keys = [(get, key) for _n, _d, get, key in order]
        ids.sort(key=lambda sid: [key(get(rows[sid])) for get, key in keys])
    elif order:
        for _name, descending, get, key in reversed(order):

            def order_key(sid: str, get: Getter = get, key: Callable[[str], Any] = key) -> Any:
                return key(get(rows[sid]))

            ids.sort(key=order_key, reverse=descending)
    return Selection(ids[offset : offset + limit], len(ids), plan)
