"""A TOPdesk-compatible REST API (``/tas/api``) over in-memory incidents.

The simulated service desk of ``ticketflow demo`` serves it on loopback, and the tests' fake
(``tests/fakes/topdesk.py``) adds fault knobs on top. It behaves like the real API:

- incidents shaped like the real JSON (tests/data/topdesk/incident.json), dates written
  ``2024-03-01T08:12:00.000+0000``; a clock that moves with every change (its time is the
  ``Date`` header of every answer);
- ``GET /tas/api/version``; ``GET /tas/api/incidents`` in both paging dialects (``pageStart`` /
  ``pageSize`` from version 3.4, ``start``/``page_size`` before), answering 206 while more pages
  follow, 200 on the last page and 204 when nothing matches; unknown parameters get a 400 with
  ``[{"message": ...}]`` like the newest API; ``fields=``; ``all=true`` adds partial and archived
  incidents; FIQL ``query`` (``== != =gt= =ge= =lt= =le= =in= =out=``, ``;`` and, ``,`` or,
  parentheses) and ``sort=field:asc|desc,...``; legacy ``modification_date_start`` and
  ``order_by``; ``GET /tas/api/incidents/id/{id}/actions`` (``start``/``page_size``);
- HTTP Basic auth checked on every request (401 otherwise).

``TopdeskApi`` is a callable ``api(request: httpx.Request) -> httpx.Response``: wire it into a
client with ``httpx.MockTransport(api)``, or serve it over HTTP with ``app.demo.serving``.
"""

from __future__ import annotations

import base64
import bisect
import itertools
import json
import random
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx

__all__ = [
    "API",
    "API_OPERATOR",
    "GROUPS",
    "OPERATORS",
    "PRIORITIES",
    "STATUSES",
    "FiqlError",
    "Recorded",
    "TopdeskApi",
    "blank_incident",
    "fmt",
    "parse_fiql",
    "ref",
]

API = "/tas/api"
DATE_FIELDS = frozenset(
    {
        "callDate",
        "creationDate",
        "modificationDate",
        "targetDate",
        "onHoldDate",
        "completedDate",
        "closedDate",
        "responseDate",
    }
)


def ref(name: str, namespace: str) -> dict[str, str]:
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{name}")), "name": name}


STATUSES = {
    n: ref(n, "status")
    for n in (
        "Logged",
        "In progress",
        "Waiting for user",
        "Waiting for supplier",
        "Completed",
        "Closed",
        "Cancelled",
    )
}
GROUPS = {n: ref(n, "group") for n in ("Service Desk", "Network", "Workplace", "Applications")}
OPERATORS = {n: ref(n, "operator") for n in ("Anna de Vries", "Bram Jansen", "Chris Smit")}
PRIORITIES = {n: ref(n, "priority") for n in ("P1", "P2", "P3", "P4")}
API_OPERATOR = ref("API operator", "operator")


def fmt(value: datetime | None) -> str | None:
    """A datetime the way TOPdesk writes it."""
    if value is None:
        return None
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


def _parse_date(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"date without zone: {text}")
    return value.astimezone(UTC)


def errors(status: int, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=[{"message": message}], headers=headers)


# --- FIQL ---------------------------------------------------------------------------------

_OPS = ("==", "!=", "=gt=", "=ge=", "=lt=", "=le=", "=in=", "=out=")


class FiqlError(ValueError):
    pass


Predicate = Callable[[dict[str, Any]], bool]


def _lookup(incident: dict[str, Any], path: str) -> Any:
    value: Any = incident
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _literal(selector: str, text: str) -> Any:
    text = text.strip().strip("'\"")
    if text == "null":
        return None
    if text in ("true", "false"):
        return text == "true"
    if selector.split(".")[-1] in DATE_FIELDS:
        try:
            return _parse_date(text)
        except ValueError as e:
            raise FiqlError(f"invalid date '{text}' for {selector}") from e
    return text


def _comparison(text: str) -> tuple[str, str, Any]:
    for op in sorted(_OPS, key=len, reverse=True):
        at = text.find(op)
        if at > 0:
            selector, raw = text[:at].strip(), text[at + len(op) :]
            if op in ("=in=", "=out="):
                raw = raw.strip()
                if not (raw.startswith("(") and raw.endswith(")")):
                    raise FiqlError(f"{op} needs a (list): {text}")
                values = [_literal(selector, v) for v in raw[1:-1].split(",")]
                return selector, op, values
            return selector, op, _literal(selector, raw)
    raise FiqlError(f"not a comparison: {text}")


def _compare(incident: dict[str, Any], selector: str, op: str, expected: Any) -> bool:
    actual = _lookup(incident, selector)
    if selector.split(".")[-1] in DATE_FIELDS and isinstance(actual, str):
        actual = _parse_date(actual)
    if op == "==":
        return bool(actual == expected)
    if op == "!=":
        return bool(actual != expected)
    if op == "=in=":
        return bool(actual in expected)
    if op == "=out=":
        return bool(actual not in expected)
    if actual is None or expected is None:
        return False
    return bool(
        {
            "=gt=": actual > expected,
            "=ge=": actual >= expected,
            "=lt=": actual < expected,
            "=le=": actual <= expected,
        }[op]
    )


def parse_fiql(text: str) -> tuple[Predicate, tuple[str, str, Any] | None]:
    """A predicate for a FIQL expression, plus the comparison itself when it is just one."""
    tokens: list[str] = []
    i = 0
    while i < len(text):
        if text[i] in "();,":
            tokens.append(text[i])
            i += 1
            continue
        j = i
        while j < len(text) and text[j] not in "();,":
            j += 1
        token = text[i:j]
        if token.endswith(("=in=", "=out=")) and text[j : j + 1] == "(":
            close = text.find(")", j)
            if close < 0:
                raise FiqlError(f"missing ')' in {text}")
            token, j = text[i : close + 1], close + 1
        tokens.append(token.strip())
        i = j
    pos = 0

    def expr() -> Predicate:
        nonlocal pos
        terms = [term()]
        while pos < len(tokens) and tokens[pos] == ",":
            pos += 1
            terms.append(term())
        return terms[0] if len(terms) == 1 else (lambda inc: any(t(inc) for t in terms))

    def term() -> Predicate:
        nonlocal pos
        factors = [factor()]
        while pos < len(tokens) and tokens[pos] == ";":
            pos += 1
            factors.append(factor())
        return factors[0] if len(factors) == 1 else (lambda inc: all(f(inc) for f in factors))

    def factor() -> Predicate:
        nonlocal pos
        if pos >= len(tokens):
            raise FiqlError(f"query ends early: {text}")
        tok = tokens[pos]
        if tok == "(":
            pos += 1
            inner = expr()
            if pos >= len(tokens) or tokens[pos] != ")":
                raise FiqlError(f"missing ')': {text}")
            pos += 1
            return inner
        pos += 1
        selector, op, expected = _comparison(tok)
        return lambda inc: _compare(inc, selector, op, expected)

    predicate = expr()
    if pos != len(tokens):
        raise FiqlError(f"unexpected '{tokens[pos]}' in query: {text}")
    single = _comparison(tokens[0]) if len(tokens) == 1 else None
    return predicate, single


# --- the fake -----------------------------------------------------------------------------


@dataclass
class Recorded:
    """What the fake saw of one request."""

    method: str
    path: str
    params: dict[str, str]
    status: int = 0


class TopdeskApi:
    """In-memory TOPdesk incidents behind the REST API (see the module docstring).

    Subclasses may override ``_intercept`` (answer a request before the API does, e.g. with a
    simulated fault) and ``_before_answer`` (run code as each request arrives).
    """

    def __init__(
        self,
        *,
        username: str = "api-operator",
        password: str = "app-pass-Zx81-secret",
        version: str = "3.9.0",
        clock: datetime = datetime(2024, 3, 1, 8, 0, tzinfo=UTC),
        tick: timedelta = timedelta(seconds=1),
        max_page_size: int = 10_000,
        keep_requests: bool = True,
    ) -> None:
        self.username = username
        self.password = password
        self.version = version
        self.clock = clock
        self.tick = tick
        self.max_page_size = max_page_size
        self.incidents: dict[str, dict[str, Any]] = {}
        self.actions: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[Recorded] = []
        """every request received (unless ``keep_requests`` is off: long-running servers)"""
        self.keep_requests = keep_requests
        self.request_count = 0
        self.lock = threading.RLock()
        self._mods: dict[str, datetime] = {}
        self._index: list[tuple[datetime, str]] | None = None
        self._counter = 0

    # --- data -----------------------------------------------------------------------------

    @property
    def legacy(self) -> bool:
        major, minor = (int(p) for p in re.findall(r"\d+", self.version)[:2])
        return (major, minor) < (3, 4)

    def advance(self, step: timedelta | None = None) -> datetime:
        """Move the clock on (by one tick) and return the new time."""
        with self.lock:
            self.clock += self.tick if step is None else step
            return self.clock

    def add_incident(self, *, at: datetime | None = None, **fields: Any) -> dict[str, Any]:
        """A new incident created now (or ``at``); ``fields`` override the defaults."""
        with self.lock:
            now = at or self.advance()
            self.clock = max(self.clock, now)
            self._counter += 1
            n = self._counter
            incident_id = str(uuid.UUID(int=random.Random(n).getrandbits(128), version=4))
            incident = blank_incident(incident_id, f"I {now:%y%m} {n:03d}", now)
            incident.update(fields)
            self._store(incident)
            return incident

    def modify(
        self, incident_id: str, *, at: datetime | None = None, **changes: Any
    ) -> dict[str, Any]:
        """Change an incident now (or ``at``): its ``modificationDate`` moves along."""
        with self.lock:
            now = at or self.advance()
            self.clock = max(self.clock, now)
            incident = self.incidents[incident_id]
            incident.update(changes)
            incident["modificationDate"] = fmt(now)
            incident["modifier"] = changes.get("modifier", API_OPERATOR)
            self._store(incident)
            return incident

    def delete(self, incident_id: str) -> None:
        """Remove an incident, as an operator with delete rights can (TOPdesk lists no
        deletions: the incident just stops being listed)."""
        with self.lock:
            del self.incidents[incident_id]
            del self._mods[incident_id]
            self.actions.pop(incident_id, None)
            self._index = None

    def restore(self, incident: dict[str, Any]) -> None:
        """Put an incident back as it was (after ``delete``: a restore from a backup)."""
        with self.lock:
            self._store(dict(incident))

    def add_action(
        self,
        incident_id: str,
        *,
        visible: bool,
        by_caller: bool = False,
        text: str = "update",
        at: datetime | None = None,
        operator: dict[str, Any] | None = None,
        person: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """An action on the incident now (or ``at``), which modifies it; written by
        ``operator`` (default: the first operator) or, with ``by_caller``, by ``person``."""
        with self.lock:
            incident = self.modify(incident_id, at=at)
            existing = self.actions.setdefault(incident_id, [])
            action = {
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"action/{incident_id}/{len(existing)}")),
                "memoText": text,
                "flag": 0,
                "invisibleForCaller": not visible,
                "entryDate": incident["modificationDate"],
                "operator": None if by_caller else (operator or OPERATORS["Anna de Vries"]),
                "person": (person or {"id": "p-1", "name": "Caller Person"}) if by_caller else None,
            }
            existing.append(action)
            return action

    def _store(self, incident: dict[str, Any]) -> None:
        self.incidents[incident["id"]] = incident
        self._mods[incident["id"]] = _parse_date(incident["modificationDate"])
        self._index = None

    # --- HTTP -----------------------------------------------------------------------------

    def list_requests(self) -> list[Recorded]:
        """The incident-list requests received so far."""
        return [r for r in self.requests if r.path == f"{API}/incidents"]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        params = dict(request.url.params.multi_items())
        recorded = Recorded(request.method, path, params)
        with self.lock:
            if self.keep_requests:
                self.requests.append(recorded)
            self.request_count += 1
            number = self.request_count
        self._before_answer(number, recorded)
        response = self._answer(request, path, params)
        recorded.status = response.status_code
        with self.lock:
            response.headers["Date"] = format_datetime(self.clock, usegmt=True)
        return response

    def _answer(self, request: httpx.Request, path: str, params: dict[str, str]) -> httpx.Response:
        if not self._authorized(request):
            return errors(401, "Unauthorized")
        answer = self._intercept(request, path)
        if answer is not None:
            return answer
        if request.method != "GET":
            return errors(405, "Method not allowed")
        if path == f"{API}/version":
            return httpx.Response(200, json={"version": self.version})
        if path == f"{API}/incidents":
            return self._list(params)
        match = re.fullmatch(rf"{API}/incidents/id/([^/]+)/actions", path)
        if match:
            return self._actions(match.group(1), params)
        return errors(404, f"Not found: {path}")

    def _before_answer(self, number: int, recorded: Recorded) -> None:
        """Called as the ``number``-th request arrives, before it is answered."""

    def _intercept(self, request: httpx.Request, path: str) -> httpx.Response | None:
        """An answer that replaces the API's for an authorised request; None: no override."""
        return None

    def _authorized(self, request: httpx.Request) -> bool:
        header = request.headers.get("Authorization", "")
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return bool(header == f"Basic {expected}")

    def _sorted_ids(self) -> list[tuple[datetime, str]]:
        if self._index is None:
            self._index = sorted((mod, i) for i, mod in self._mods.items())
        return self._index

    def _list(self, params: dict[str, str]) -> httpx.Response:
        new_params = {"pageStart", "pageSize", "query", "sort", "fields", "all", "dateFormat"}
        old_params = {
            "start",
            "page_size",
            "order_by",
            "fields",
            "all",
            "modification_date_start",
            "modification_date_end",
        }
        allowed = old_params if self.legacy else new_params
        unknown = sorted(set(params) - allowed)
        if unknown:
            return errors(400, f"Unknown or unsupported parameter(s): {', '.join(unknown)}")
        try:
            if self.legacy:
                start = int(params.get("start", "0"))
                size = int(params.get("page_size", "10"))
            else:
                start = int(params.get("pageStart", "0"))
                size = int(params.get("pageSize", "10"))
        except ValueError:
            return errors(400, "Paging parameters must be numbers")
        if start < 0 or not 1 <= size <= self.max_page_size:
            return errors(400, f"Page size must be between 1 and {self.max_page_size}")
        include_all = params.get("all") == "true"
        with self.lock:
            try:
                rows = self._select(params, include_all=include_all, limit=start + size + 1)
            except FiqlError as e:
                return errors(400, str(e))
            page = rows[start : start + size]
            fields = [f for f in params.get("fields", "").split(",") if f]
            body = [self._project(self.incidents[i], fields) for i in page]
        if not page:
            return httpx.Response(204)
        status = 206 if start + size < len(rows) else 200
        return httpx.Response(
            status,
            content=json.dumps(body, separators=(",", ":")).encode(),
            headers={"Content-Type": "application/json"},
        )

    def _visible(self, incident_id: str, include_all: bool) -> bool:
        if include_all:
            return True
        incident = self.incidents[incident_id]
        return incident.get("status") != "partial" and not incident.get("archivingReason")

    def _select(self, params: dict[str, str], *, include_all: bool, limit: int) -> list[str]:
        """Ids matching the filter, in the requested order (the first ``limit`` at least)."""
        index = self._sorted_ids()
        if self.legacy:
            since = params.get("modification_date_start")
            lower = 0
            if since:
                day = datetime.fromisoformat(since).replace(tzinfo=UTC)
                lower = bisect.bisect_left(index, (day, ""))
            order = params.get("order_by", "").replace("+", " ").split()
            ids = [i for _m, i in index[lower:] if self._visible(i, include_all)]
            if order[:1] != ["modification_date"]:
                return self._sort(ids, "creationDate:desc")
            return ids[::-1] if order[1:] == ["desc"] else ids
        query = params.get("query")
        sort = params.get("sort", "creationDate:desc")
        if query:
            predicate, single = parse_fiql(query)
        else:
            predicate, single = (lambda _inc: True), None
        fast = sort in ("modificationDate:asc,id:asc", "modificationDate:asc")
        on_modification = single is not None and single[0] == "modificationDate"
        if fast and (not query or on_modification):
            lower, upper = 0, len(index)
            if single is not None:
                _sel, op, value = single
                if op in ("=ge=", "=gt="):
                    bound = (value, "") if op == "=ge=" else (value, "\uffff")
                    lower = bisect.bisect_left(index, bound)
                else:
                    return self._sort([i for _m, i in index if predicate(self.incidents[i])], sort)
            return list(
                itertools.islice(
                    (i for _m, i in index[lower:upper] if self._visible(i, include_all)), limit
                )
            )
        ids = [
            i for _m, i in index if self._visible(i, include_all) and predicate(self.incidents[i])
        ]
        return self._sort(ids, sort)

    def _sort(self, ids: list[str], sort: str) -> list[str]:
        for spec in reversed(sort.split(",")):
            name, _, direction = spec.partition(":")
            if direction not in ("asc", "desc", ""):
                raise FiqlError(f"bad sort direction in {sort}")

            def key(i: str, name: str = name) -> tuple[bool, Any]:
                value = _lookup(self.incidents[i], name)
                if name in DATE_FIELDS and isinstance(value, str):
                    value = _parse_date(value)
                return (value is None, value if value is not None else "")

            ids = sorted(ids, key=key, reverse=direction == "desc")
        return ids

    @staticmethod
    def _project(incident: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
        wanted = list(fields)
        if not wanted:
            return incident
        out: dict[str, Any] = {}
        for name in wanted:
            top = name.split(".")[0]
            if top in incident:
                out[top] = incident[top]
        return out

    def _actions(self, incident_id: str, params: dict[str, str]) -> httpx.Response:
        unknown = sorted(set(params) - {"start", "page_size", "inlineimages"})
        if unknown:
            return errors(400, f"Unknown parameter(s): {', '.join(unknown)}")
        with self.lock:
            if incident_id not in self.incidents:
                return errors(404, f"No incident with id {incident_id}")
            actions = list(self.actions.get(incident_id, []))
        start = int(params.get("start", "0"))
        size = int(params.get("page_size", "10"))
        if not 1 <= size <= 100:
            return errors(400, "page_size must be between 1 and 100")
        page = actions[start : start + size]
        if not page:
            return httpx.Response(204)
        return httpx.Response(206 if start + size < len(actions) else 200, json=page)


def blank_incident(incident_id: str, number: str, now: datetime) -> dict[str, Any]:
    """A new, unassigned incident with every top-level field the real API returns."""
    stamp = fmt(now)
    return {
        "id": incident_id,
        "status": "firstLine",
        "number": number,
        "request": None,
        "requests": f"/tas/api/incidents/id/{incident_id}/requests",
        "action": f"/tas/api/incidents/id/{incident_id}/actions",
        "attachments": f"/tas/api/incidents/id/{incident_id}/attachments",
        "caller": {"id": None, "dynamicName": "Jan Caller", "branch": None},
        "callerBranch": None,
        "callerLocation": None,
        "briefDescription": "",
        "externalNumber": "",
        "category": {"id": "c-1", "name": "Network"},
        "subcategory": None,
        "callType": {"id": "ct-1", "name": "Incident"},
        "entryType": {"id": "et-1", "name": "Telephone"},
        "object": None,
        "asset": None,
        "branch": None,
        "location": None,
        "impact": None,
        "urgency": None,
        "priority": PRIORITIES["P3"],
        "duration": None,
        "targetDate": fmt(now + timedelta(days=2)),
        "sla": None,
        "onHold": False,
        "onHoldDate": None,
        "onHoldDuration": 0,
        "feedbackMessage": None,
        "feedbackRating": None,
        "operator": None,
        "operatorGroup": None,
        "supplier": None,
        "processingStatus": STATUSES["Logged"],
        "responded": False,
        "responseDate": None,
        "completed": False,
        "completedDate": None,
        "closed": False,
        "closedDate": None,
        "closureCode": None,
        "timeSpent": 0,
        "timeSpentFirstLine": 0,
        "timeSpentSecondLineAndPartials": 0,
        "costs": 0.0,
        "escalationStatus": None,
        "escalationReason": None,
        "escalationOperator": None,
        "callDate": stamp,
        "creator": API_OPERATOR,
        "creationDate": stamp,
        "modifier": API_OPERATOR,
        "modificationDate": stamp,
        "majorCall": False,
        "majorCallObject": None,
        "publishToSsd": False,
        "monitored": False,
        "expectedTimeSpent": 0,
        "archivingReason": None,
        "mainIncident": None,
        "partialIncidents": [],
        "optionalFields1": {"boolean1": False, "text1": "", "searchlist1": None},
        "optionalFields2": {"boolean1": False, "text1": "", "searchlist1": None},
        "externalLinks": [],
    }
