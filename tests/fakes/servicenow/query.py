"""Encoded queries (``sysparm_query``) as ServiceNow reads them, compiled to row predicates.

Syntax: ``^`` is AND, ``^OR`` is OR and binds tighter than AND (``a^b^ORc`` is ``a AND (b OR
c)``), ``^NQ`` starts a new query whose rows are added (OR of whole groups); ``ORDERBY<f>`` and
``ORDERBYDESC<f>`` anywhere; ``^EQ`` ends a query; ``^^`` is a literal ``^``. Operators: ``= !=
> >= < <= IN NOT IN LIKE NOT LIKE (NOTLIKE) STARTSWITH ENDSWITH ISEMPTY ISNOTEMPTY EMPTYSTRING
ANYTHING BETWEEN a@b SAMEAS NSAMEAS``. Date literals may be ``YYYY-MM-DD``, ``YYYY-MM-DD
HH:MM:SS`` or ``javascript:gs.dateGenerate('YYYY-MM-DD','HH:MM:SS')``, read in the session
user's time zone. Integer and choice fields compare as numbers, text case-insensitively, empty
values match no range and always match ``!=`` (ServiceNow adds ``OR field IS NULL``). A condition
on an unknown field is ignored, as the real instance does by default
(``glide.invalid_query.returns_no_rows=false``).

How a query is answered from the indexes: ``plan``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from tests.fakes.servicenow.schema import (
    DATETIME,
    JOURNAL,
    ORDERED_TYPES,
    STRING,
    TEXT_CHOICE,
)
from tests.fakes.servicenow.store import Getter, Table

__all__ = [
    "CompiledQuery",
    "Condition",
    "ParsedQuery",
    "QueryError",
    "Resolver",
    "compile_query",
    "parse_query",
]

OPERATORS = (
    "ISNOTEMPTY",
    "ISEMPTY",
    "EMPTYSTRING",
    "ANYTHING",
    "NOT IN",
    "NOT LIKE",
    "NOTLIKE",
    "NSAMEAS",
    "SAMEAS",
    "STARTSWITH",
    "ENDSWITH",
    "BETWEEN",
    "LIKE",
    "IN",
    "!=",
    ">=",
    "<=",
    "=",
    ">",
    "<",
)
NO_VALUE = frozenset({"ISNOTEMPTY", "ISEMPTY", "EMPTYSTRING", "ANYTHING"})
_CONDITION = re.compile(
    r"([a-z_][a-z0-9_.]*)(" + "|".join(re.escape(op) for op in OPERATORS) + r")(.*)", re.S
)
_DATE_GENERATE = re.compile(r"javascript:gs\.dateGenerate\('([^']*)',\s*'([^']*)'\)")
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
TEXT_TYPES = frozenset({STRING, TEXT_CHOICE, JOURNAL})

Resolver = Callable[[Table, str], tuple[Getter, str] | None]
Predicate = Callable[[list[str]], bool]


class QueryError(ValueError):
    """A query the fake cannot read at all (the caller answers 400)."""


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: str


@dataclass
class ParsedQuery:
    groups: list[list[list[Condition]]]
    """OR of groups (``^NQ``); each an AND of clauses (``^``); each an OR of conditions"""
    order: list[tuple[str, bool]]
    """``(field, descending)``"""
    invalid: list[str] = field(default_factory=list)
    """terms that are not conditions (ignored, like the real instance)"""


def _split(text: str) -> list[str]:
    """The terms between single ``^`` (``^^`` is a literal ``^``)."""
    if "^^" not in text:
        return text.split("^")
    return [part.replace("\0", "^") for part in text.replace("^^", "\0").split("^")]


def parse_query(text: str) -> ParsedQuery:
    """Split an encoded query into groups, clauses and conditions (fields not checked yet)."""
    parsed = ParsedQuery(groups=[[]], order=[])
    for term in _split(text):
        if term in ("", "EQ"):
            continue
        if term.startswith("ORDERBYDESC"):
            parsed.order.append((term[len("ORDERBYDESC") :], True))
            continue
        if term.startswith("ORDERBY"):
            parsed.order.append((term[len("ORDERBY") :], False))
            continue
        group = parsed.groups[-1]
        if term.startswith("NQ"):
            group = []
            parsed.groups.append(group)
            term = term[2:]
            if not term:
                continue
            joins = False
        elif term.startswith("OR") and group:
            term = term[2:]
            joins = True
        else:
            joins = False
        match = _CONDITION.fullmatch(term)
        if match is None:
            parsed.invalid.append(term)
            continue
        name, op, value = match.groups()
        condition = Condition(name, op, "" if op in NO_VALUE else value)
        if joins:
            group[-1].append(condition)
        else:
            group.append([condition])
    parsed.groups = [g for g in parsed.groups if g]
    return parsed


# --- values -------------------------------------------------------------------------------


def date_literal(text: str, zone: tzinfo | None) -> str:
    """A date literal as the stored UTC string (``zone``: the session user's time zone)."""
    text = text.strip()
    generated = _DATE_GENERATE.fullmatch(text)
    if generated:
        text = f"{generated.group(1)} {generated.group(2)}"
    if _DATE_ONLY.fullmatch(text):
        text += " 00:00:00"
    if zone is not None and _DATE_TIME.fullmatch(text):
        local = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=zone)
        text = local.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return text


def typed(kind: str) -> Callable[[str], Any]:
    """How values of a field type compare: numbers, case-folded text, or as stored."""
    if kind in ORDERED_TYPES:

        def number(value: str) -> tuple[int, Any]:
            try:
                return (1, int(value))
            except ValueError:
                return (2, value)

        return number
    if kind in TEXT_TYPES:
        return str.casefold
    return str


def sort_key(kind: str) -> Callable[[str], Any]:
    """ORDERBY key: empty values first, then typed values."""
    convert = typed(kind)

    def key(value: str) -> tuple[int, Any]:
        return (0, "") if value == "" else (1, convert(value))

    return key


# --- compiling ----------------------------------------------------------------------------


@dataclass
class Term:
    condition: Condition
    kind: str
    literals: tuple[str, ...]
    """normalised literal(s): one for most operators, two for BETWEEN, the list for IN"""
    predicate: Predicate


@dataclass
class CompiledQuery:
    groups: list[list[list[Term]]]
    order: list[tuple[str, bool, Getter, Callable[[str], Any]]]
    ignored: list[str]
    """terms and fields the instance ignored (unknown fields, malformed terms)"""
    predicate: Predicate


def _term(
    condition: Condition,
    getter: Getter,
    kind: str,
    table: Table,
    resolve: Resolver,
    zone: tzinfo | None,
) -> Term:
    op, raw = condition.op, condition.value

    def norm(text: str) -> str:
        return date_literal(text, zone) if kind == DATETIME else text

    convert = typed(kind)
    get = getter
    predicate: Predicate
    literals: tuple[str, ...]
    if op in ("IN", "NOT IN"):
        literals = tuple(norm(v) for v in raw.split(","))
        wanted = {convert(v) for v in literals}
        if op == "IN":
            predicate = lambda r: convert(get(r)) in wanted  # noqa: E731
        else:
            predicate = lambda r: convert(get(r)) not in wanted  # noqa: E731
    elif op == "BETWEEN":
        low, sep, high = raw.partition("@")
        if not sep:
            raise QueryError(f"BETWEEN needs 'low@high': {condition.field}{op}{raw}")
        literals = (norm(low), norm(high))
        lo, hi = convert(literals[0]), convert(literals[1])
        predicate = lambda r: (v := get(r)) != "" and lo <= convert(v) <= hi  # noqa: E731
    elif op in ("SAMEAS", "NSAMEAS"):
        other = resolve(table, raw)
        if other is None:
            raise QueryError(f"unknown field in {op}: {raw}")
        other_get = other[0]
        literals = (raw,)
        if op == "SAMEAS":
            predicate = lambda r: convert(get(r)) == convert(other_get(r))  # noqa: E731
        else:
            predicate = lambda r: convert(get(r)) != convert(other_get(r))  # noqa: E731
    else:
        literals = (norm(raw),)
        predicate = _simple(op, literals[0], get, convert)
    return Term(condition, kind, literals, predicate)


def _simple(op: str, literal: str, get: Getter, convert: Callable[[str], Any]) -> Predicate:
    if op in ("ISEMPTY", "EMPTYSTRING"):
        return lambda r: get(r) == ""
    if op == "ISNOTEMPTY":
        return lambda r: get(r) != ""
    if op == "ANYTHING":
        return lambda r: True
    folded = literal.casefold()
    if op == "LIKE":
        return lambda r: folded in get(r).casefold()
    if op in ("NOT LIKE", "NOTLIKE"):
        return lambda r: folded not in get(r).casefold()
    if op == "STARTSWITH":
        return lambda r: get(r).casefold().startswith(folded)
    if op == "ENDSWITH":
        return lambda r: get(r).casefold().endswith(folded)
    if literal == "" and op in ("=", "!="):
        return (lambda r: get(r) == "") if op == "=" else (lambda r: get(r) != "")
    want = convert(literal)
    if op == "=":
        return lambda r: (v := get(r)) != "" and convert(v) == want
    if op == "!=":
        return lambda r: (v := get(r)) == "" or convert(v) != want
    if op == ">":
        return lambda r: (v := get(r)) != "" and convert(v) > want
    if op == ">=":
        return lambda r: (v := get(r)) != "" and convert(v) >= want
    if op == "<":
        return lambda r: (v := get(r)) != "" and convert(v) < want
    if op == "<=":
        return lambda r: (v := get(r)) != "" and convert(v) <= want
    raise QueryError(f"unsupported operator {op}")


def _any(predicates: list[Predicate]) -> Predicate:
    if len(predicates) == 1:
        return predicates[0]
    if len(predicates) == 2:
        first, second = predicates
        return lambda r: first(r) or second(r)
    return lambda r: any(p(r) for p in predicates)


def _all(predicates: list[Predicate]) -> Predicate:
    if len(predicates) == 1:
        return predicates[0]
    if len(predicates) == 2:
        first, second = predicates
        return lambda r: first(r) and second(r)
    if len(predicates) == 3:
        first, second, third = predicates
        return lambda r: first(r) and second(r) and third(r)
    return lambda r: all(p(r) for p in predicates)


def compile_query(
    parsed: ParsedQuery, table: Table, resolve: Resolver, *, zone: tzinfo | None = None
) -> CompiledQuery:
    """Typed predicates for each condition; unknown fields are dropped and listed."""
    ignored = list(parsed.invalid)
    groups: list[list[list[Term]]] = []
    for group in parsed.groups:
        clauses: list[list[Term]] = []
        for clause in group:
            terms: list[Term] = []
            for condition in clause:
                found = resolve(table, condition.field)
                if found is None:
                    ignored.append(condition.field)
                    continue
                getter, kind = found
                terms.append(_term(condition, getter, kind, table, resolve, zone))
            if terms:
                clauses.append(terms)
        groups.append(clauses)
    order: list[tuple[str, bool, Getter, Callable[[str], Any]]] = []
    for name, descending in parsed.order:
        found = resolve(table, name)
        if found is None:
            ignored.append(name)
            continue
        order.append((name, descending, found[0], sort_key(found[1])))
    group_predicates = [
        _all([_any([t.predicate for t in c]) for c in g]) if g else None for g in groups
    ]
    if not groups or any(p is None for p in group_predicates):
        predicate: Predicate = lambda r: True  # noqa: E731
    else:
        predicate = _any([p for p in group_predicates if p is not None])
    return CompiledQuery(groups, order, ignored, predicate)
