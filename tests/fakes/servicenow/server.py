"""The HTTP side of the fake ServiceNow instance: Table API, OAuth, auth, rate limits, knobs."""

from __future__ import annotations

import base64
import math
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, urlencode
from zoneinfo import ZoneInfo

import httpx
import orjson

from tests.fakes.servicenow.generate import generate
from tests.fakes.servicenow.query import (
    CompiledQuery,
    Condition,
    QueryError,
    compile_query,
    parse_query,
    select,
)
from tests.fakes.servicenow.records import Instance
from tests.fakes.servicenow.render import writers
from tests.fakes.servicenow.schema import REFERENCE
from tests.fakes.servicenow.store import Getter, Table

__all__ = ["FakeServiceNow", "Fault", "Recorded"]

_TABLE_PATH = re.compile(r"/api/now(?:/(v1|v2))?/table/([A-Za-z0-9_]+)(?:/([^/]+))?/?")
_BOOL = ("true", "false")
HIBERNATING = (
    b"<!DOCTYPE html><html><head><title>Instance Hibernating page</title></head><body>"
    b"<h1>Your instance is hibernating</h1><p>Sign in to wake it up.</p></body></html>"
)


def _error(
    status: int, message: str, detail: str | None, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(
        status,
        content=orjson.dumps(
            {"error": {"message": message, "detail": detail}, "status": "failure"}
        ),
        headers={"Content-Type": "application/json;charset=UTF-8", **(headers or {})},
    )


def _unauthenticated() -> httpx.Response:
    return _error(401, "User Not Authenticated", "Required to provide Auth information")


@dataclass
class Recorded:
    """What the fake saw of one request (the Authorization header left out)."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    status: int = 0


@dataclass
class Fault:
    """One armed knob: what to answer instead, for which requests, how often."""

    kind: str
    times: int = 1
    path: str | None = None
    skip: int = 0
    status: int = 500
    retry_after: float = 1
    seconds: float = 0.0

    def matches(self, path: str) -> bool:
        return self.path is None or path == self.path or path.startswith(self.path + "/")


@dataclass
class _Token:
    user: str
    expires: float


@dataclass
class _Window:
    start: float = 0.0
    used: int = 0
    rule: str = field(default_factory=lambda: secrets.token_hex(16))


class FakeServiceNow(Instance):
    """A ServiceNow instance in memory behind the Table API (see the package docstring)."""

    def __init__(
        self,
        *,
        username: str = "integration.user",
        password: str = "sn-pass-Qw3-secret",
        client_id: str | None = None,
        client_secret: str | None = None,
        start: datetime = datetime(2024, 3, 1, 8, 0, tzinfo=UTC),
        rate_limit: int | None = None,
        rate_window_seconds: int = 3600,
        audit_readable: bool = True,
        journal_readable: bool = True,
        max_limit: int = 10_000,
    ) -> None:
        super().__init__(start=start)
        self.username = username
        self.password = password
        self.client_id = client_id
        self.client_secret = client_secret
        self.rate_limit = rate_limit
        self.rate_window_seconds: float = rate_window_seconds
        self.audit_readable = audit_readable
        self.journal_readable = journal_readable
        self.max_limit = max_limit
        self.token_lifetime: float = 1799
        """seconds an OAuth access token lives (``expires_in``)"""
        self.refresh_token_lifetime: float = 100 * 86_400
        self.user_timezone = "UTC"
        """the integration user's zone: display values and query date literals use it"""
        self.user_date_format = "%Y-%m-%d %H:%M:%S"
        """the integration user's date-time format for display values (strftime)"""
        self.max_url_length: int | None = None
        """longer request URLs get 414 (a proxy or the instance's header limit); None: no limit"""
        self.invalid_query_returns_no_rows = False
        """``glide.invalid_query.returns_no_rows``: unknown fields give no rows, not all"""
        self.hidden: set[str] = set()
        """sys_ids an ACL hides: counted and paged like the rest, left out of the page"""
        self.wall: Callable[[], float] = time.time
        """real time, for token expiry and the rate-limit window (tests may replace it)"""
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.on_request: Callable[[httpx.Request], None] | None = None
        self._tokens: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}
        self._window = _Window()
        self._request_lock = threading.Lock()
        self.add_user(username, "Integration User")

    def generate(self, count: int, *, audit_rows: int | None = None, seed: int = 1) -> None:
        """Add ``count`` incidents with realistic histories (see ``generate``); with
        ``audit_rows`` the instance ends up with about that many sys_audit rows."""
        generate(self, count, audit_rows=audit_rows, seed=seed)

    def warm(self) -> None:
        """Build the sorted indexes now (the first query would otherwise pay for it)."""
        with self.lock:
            for table in self.tables.values():
                for name in table.schema.ordered:
                    table.ordered_index(name)
                for name in table.schema.hashed:
                    if name != "sys_id":
                        table.hashed_index(name)

    # --- knobs ----------------------------------------------------------------------------

    def _arm(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def fail_next(
        self, status: int = 500, *, times: int = 1, path: str | None = None, skip: int = 0
    ) -> None:
        """Answer the next matching request(s) with ``status`` and a ServiceNow error body."""
        self._arm(Fault("status", times=times, path=path, skip=skip, status=status))

    def rate_limit_next(
        self, retry_after: float = 1, *, times: int = 1, path: str | None = None, skip: int = 0
    ) -> None:
        """Answer 429 ``Rate limit exceeded`` with this ``Retry-After`` (seconds)."""
        self._arm(Fault("429", times=times, path=path, skip=skip, retry_after=retry_after))

    def slow_next(
        self, seconds: float, *, times: int = 1, path: str | None = None, skip: int = 0
    ) -> None:
        """Delay the answer. Under MockTransport a delay beyond the client's read timeout
        raises ``httpx.ReadTimeout`` after that timeout, as the real client would."""
        self._arm(Fault("slow", times=times, path=path, skip=skip, seconds=seconds))

    def invalid_json_next(self, *, times: int = 1, path: str | None = None, skip: int = 0) -> None:
        """Answer 200 with a JSON content type and a cut-off body."""
        self._arm(Fault("invalid_json", times=times, path=path, skip=skip))

    def html_error_next(self, *, times: int = 1, path: str | None = None, skip: int = 0) -> None:
        """Answer 200 with an HTML page (what a hibernating developer instance sends)."""
        self._arm(Fault("html", times=times, path=path, skip=skip))

    def expire_tokens(self) -> None:
        """Make every OAuth access token expired (refresh tokens stay valid)."""
        with self.lock:
            for token in self._tokens.values():
                token.expires = 0

    def _take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if not fault.matches(path):
                    continue
                if fault.skip:
                    fault.skip -= 1
                    continue
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
            return None

    def _fault_response(self, fault: Fault, request: httpx.Request) -> httpx.Response | None:
        if fault.kind == "status":
            if fault.status == 401:
                return _unauthenticated()
            return _error(fault.status, f"Simulated error {fault.status}", "fake fault")
        if fault.kind == "429":
            return self._too_many(fault.retry_after)
        if fault.kind == "invalid_json":
            return httpx.Response(
                200,
                content=b'{"result":[{"sys_id":"1c741bd70b2322007518478d83673af3","number":"INC00',
                headers={"Content-Type": "application/json;charset=UTF-8"},
            )
        if fault.kind == "html":
            return httpx.Response(
                200, content=HIBERNATING, headers={"Content-Type": "text/html;charset=UTF-8"}
            )
        if fault.kind == "slow":
            timeout = request.extensions.get("timeout", {}).get("read")
            if timeout is not None and fault.seconds > timeout:
                time.sleep(timeout)
                raise httpx.ReadTimeout("timed out (fake)", request=request)
            time.sleep(fault.seconds)
            return None
        raise AssertionError(fault.kind)

    def _too_many(self, retry_after: float) -> httpx.Response:
        limit = self.rate_limit or 1000  # a nominal rule for the rate_limit_next knob
        return _error(
            429,
            "Rate limit exceeded",
            f"Rate limit of {limit} requests per hour for Table API exceeded",
            {"Retry-After": str(max(0, math.ceil(retry_after)))},
        )

    # --- HTTP -----------------------------------------------------------------------------

    def table_requests(self, table: str = "incident") -> list[Recorded]:
        """The requests received so far for one table (list and single-record reads)."""
        prefix = f"/table/{table}"
        return [r for r in self.requests if r.path.endswith(prefix) or f"{prefix}/" in r.path]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        params = dict(request.url.params.multi_items())
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        recorded = Recorded(request.method, path, params, headers)
        with self.lock:
            self.requests.append(recorded)
        if self.on_request is not None:
            self.on_request(request)
        response = self._answer(request, path, params)
        recorded.status = response.status_code
        with self.lock:
            response.headers["Date"] = format_datetime(self.now, usegmt=True)
        return response

    def _answer(self, request: httpx.Request, path: str, params: dict[str, str]) -> httpx.Response:
        if self.max_url_length is not None and len(str(request.url)) > self.max_url_length:
            return httpx.Response(
                414,
                content=b"<html><body><h1>414 Request-URI Too Large</h1></body></html>",
                headers={"Content-Type": "text/html"},
            )
        if path == "/oauth_token.do":
            return self._oauth(request)
        if not self._authenticated(request):
            return _unauthenticated()
        rate_headers: dict[str, str] = {}
        if self.rate_limit is not None:
            allowed, rate_headers, wait = self._count_request()
            if not allowed:
                limited = self._too_many(wait)
                limited.headers.update(rate_headers)
                return limited
        fault = self._take_fault(path)
        answer = self._fault_response(fault, request) if fault is not None else None
        response = answer if answer is not None else self._route(request, path, params)
        response.headers.update(rate_headers)
        return response

    def _authenticated(self, request: httpx.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return secrets.compare_digest(value.strip(), expected)
        if scheme.lower() == "bearer":
            with self.lock:
                token = self._tokens.get(value.strip())
                return token is not None and token.expires > self.wall()
        return False

    def _count_request(self) -> tuple[bool, dict[str, str], float]:
        assert self.rate_limit is not None
        with self.lock:
            now = self.wall()
            window = self._window
            if window.used == 0 or now >= window.start + self.rate_window_seconds:
                window.start, window.used = now, 0
            reset = window.start + self.rate_window_seconds
            allowed = window.used < self.rate_limit
            if allowed:
                window.used += 1
            headers = {
                "X-RateLimit-Limit": str(self.rate_limit),
                "X-RateLimit-Remaining": str(self.rate_limit - window.used),
                "X-RateLimit-Reset": str(math.ceil(reset)),
                "X-RateLimit-Rule": window.rule,
            }
            return allowed, headers, reset - now

    def _oauth(self, request: httpx.Request) -> httpx.Response:
        denied = httpx.Response(
            401, json={"error_description": "access_denied", "error": "server_error"}
        )
        if request.method != "POST" or self.client_id is None:
            return denied
        form = {
            k: v[0] for k, v in parse_qs(request.content.decode(), keep_blank_values=True).items()
        }
        if form.get("client_id") != self.client_id or form.get("client_secret") != (
            self.client_secret or ""
        ):
            return denied
        now = self.wall()
        with self.lock:
            grant = form.get("grant_type")
            if grant == "password":
                if (form.get("username"), form.get("password")) != (self.username, self.password):
                    return denied
                refresh = secrets.token_urlsafe(64)
                self._refresh[refresh] = _Token(self.username, now + self.refresh_token_lifetime)
            elif grant == "refresh_token":
                refresh = form.get("refresh_token", "")
                known = self._refresh.get(refresh)
                if known is None or known.expires <= now:
                    return denied
            else:
                return httpx.Response(
                    400, json={"error_description": "invalid_grant", "error": "invalid_request"}
                )
            access = secrets.token_urlsafe(64)
            self._tokens[access] = _Token(self.username, now + self.token_lifetime)
        return httpx.Response(
            200,
            json={
                "access_token": access,
                "refresh_token": refresh,
                "scope": "useraccount",
                "token_type": "Bearer",
                "expires_in": int(self.token_lifetime),
            },
        )

    def _route(self, request: httpx.Request, path: str, params: dict[str, str]) -> httpx.Response:
        match = _TABLE_PATH.fullmatch(path)
        if match is None:
            return _error(400, "Requested URI does not represent any resource", None)
        version, name, sys_id = match.groups()
        if request.method != "GET":
            return _error(405, "Method not Supported", f"{request.method} is not supported here")
        table = self.tables.get(name)
        if table is None:
            return _error(400, f"Invalid table {name}", None)
        if (name == "sys_audit" and not self.audit_readable) or (
            name == "sys_journal_field" and not self.journal_readable
        ):
            return _error(
                403,
                "User Not Authorized",
                "ACL Exception Read Failed due to security constraints",
            )
        try:
            options = _Options.read(params, self.max_limit)
        except ValueError as e:
            return _error(400, str(e), None)
        base = f"{request.url.scheme}://{request.url.netloc.decode('ascii')}"
        with self.lock:
            if sys_id is not None:
                return self._one(table, sys_id, options, base)
            return self._list(table, options, params, base, path, version)

    def _resolve(self, table: Table, name: str) -> tuple[Getter, str, str | None] | None:
        """Getter, type and reference target of a field, following ``ref.field`` dot-walks."""
        head, dot, rest = name.partition(".")
        if head not in table.columns:
            return None
        kind = table.types[head]
        target = table.schema.references.get(head) if kind == REFERENCE else None
        if not dot:
            return table.getter(head), kind, target
        if target is None or target not in self.tables:
            return None
        other = self.tables[target]
        inner = self._resolve(other, rest)
        if inner is None:
            return None
        get_ref, rows, get_inner = table.getter(head), other.rows, inner[0]

        def get(row: list[str]) -> str:
            found = rows.get(get_ref(row))
            return get_inner(found) if found is not None else ""

        return get, inner[1], inner[2]

    def _query_resolve(self, table: Table, name: str) -> tuple[Getter, str] | None:
        found = self._resolve(table, name)
        return None if found is None else (found[0], found[1])

    def _choice_map(self, table: str, element: str) -> dict[str, str]:
        """value -> label for one field (the parent table's labels, overridden by the table's)."""
        parent = self.tables[table].schema.choice_parent if table in self.tables else None
        out: dict[str, str] = {}
        for (owner, name, value), label in self.choice_labels().items():
            if name == element and owner == parent:
                out[value] = label
        for (owner, name, value), label in self.choice_labels().items():
            if name == element and owner == table:
                out[value] = label
        return out

    def _reference_display(self, target: str, sys_id: str) -> str:
        other = self.tables.get(target)
        row = other.rows.get(sys_id) if other is not None else None
        if other is None or row is None:
            return sys_id if sys_id == "global" else ""
        return other.value(row, other.schema.display_field)

    def _render(
        self, table: Table, ids: list[str], options: _Options, base: str
    ) -> list[dict[str, Any]]:
        names = options.fields or list(table.columns)
        out = writers(
            table,
            names,
            mode=options.display,
            links=not options.exclude_links,
            base=base,
            zone=self._zone(),
            form=self.user_date_format,
            resolve=self._resolve,
            choice=self._choice_map,
            reference=self._reference_display,
        )
        rows = table.rows
        return [{name: write(rows[i]) for name, write in out} for i in ids]

    def _one(self, table: Table, sys_id: str, options: _Options, base: str) -> httpx.Response:
        if sys_id not in table.rows or sys_id in self.hidden:
            return _error(
                404,
                "No Record found",
                "Record doesn't exist or ACL restricts the record retrieval",
            )
        body = orjson.dumps({"result": self._render(table, [sys_id], options, base)[0]})
        return httpx.Response(
            200, content=body, headers={"Content-Type": "application/json;charset=UTF-8"}
        )

    def _zone(self) -> ZoneInfo | None:
        return (
            None
            if self.user_timezone in ("UTC", "GMT", "Etc/UTC")
            else ZoneInfo(self.user_timezone)
        )

    def _filter_value(self, table: Table, name: str, value: str) -> str:
        """A name=value filter's value: a choice label stands for its value (``state=Closed``)."""
        if self.choice_label(table.name, name, value) is not None:
            return value
        owners = (table.name, table.schema.choice_parent)
        for (owner, element, raw), label in self.choice_labels().items():
            if element == name and owner in owners and label.casefold() == value.casefold():
                return raw
        return value

    def compile(self, table: Table, query: str, filters: dict[str, str]) -> CompiledQuery:
        """A parsed and typed query (``filters``: name=value parameters, AND-ed to each group;
        a choice field's label may stand for its value, as on the real API)."""
        parsed = parse_query(query)
        extra = [[Condition(k, "=", self._filter_value(table, k, v))] for k, v in filters.items()]
        if extra:
            parsed.groups = [g + extra for g in parsed.groups] or [extra]
        zone = self._zone()
        return compile_query(parsed, table, self._query_resolve, zone=zone)

    def _list(
        self,
        table: Table,
        options: _Options,
        params: dict[str, str],
        base: str,
        path: str,
        version: str | None,
    ) -> httpx.Response:
        filters = {k: v for k, v in params.items() if not k.startswith("sysparm_")}
        try:
            compiled = self.compile(table, options.query, filters)
        except QueryError as e:
            return _error(400, str(e), None)
        if compiled.ignored and self.invalid_query_returns_no_rows:
            ids: list[str] = []
            total: int | None = 0
        else:
            selection = select(
                table,
                compiled,
                offset=options.offset,
                limit=options.limit,
                count=not options.no_count,
            )
            ids, total = selection.ids, selection.total
            if options.no_count:
                total = None
        page = [i for i in ids if i not in self.hidden]
        if version == "v1" and not page:
            return _error(404, "No Record found", "Records not found")
        headers = {"Content-Type": "application/json;charset=UTF-8"}
        if total is not None:
            headers["X-Total-Count"] = str(total)
        if not options.suppress_links:
            headers["Link"] = _links(base + path, params, options, total, len(ids))
        body = orjson.dumps({"result": self._render(table, page, options, base)})
        return httpx.Response(200, content=body, headers=headers)


def _links(
    url: str, params: dict[str, str], options: _Options, total: int | None, returned: int
) -> str:
    limit, offset = options.limit, options.offset

    def link(at: int, rel: str) -> str:
        query = {**params, "sysparm_limit": str(limit), "sysparm_offset": str(at)}
        return f'<{url}?{urlencode(query)}>;rel="{rel}"'

    parts = [link(0, "first")]
    if offset > 0:
        parts.append(link(max(offset - limit, 0), "prev"))
    more = offset + limit < total if total is not None else returned >= limit
    if more:
        parts.append(link(offset + limit, "next"))
    if total is not None:
        parts.append(link(max(total - limit, 0), "last"))
    return ",".join(parts)


@dataclass
class _Options:
    query: str
    limit: int
    offset: int
    fields: list[str]
    display: str
    exclude_links: bool
    no_count: bool
    suppress_links: bool

    @classmethod
    def read(cls, params: dict[str, str], max_limit: int) -> _Options:
        def flag(name: str) -> bool:
            value = params.get(name, "false").lower()
            if value not in _BOOL:
                raise ValueError(f"Invalid value '{params[name]}' for {name}: true or false")
            return value == "true"

        def number(name: str, default: int) -> int:
            raw = params.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ValueError(f"Invalid value '{raw}' for {name}: not a number") from None
            if value < 0:
                raise ValueError(f"Invalid value '{raw}' for {name}: negative")
            return value

        display = params.get("sysparm_display_value", "false").lower()
        if display not in ("true", "false", "all"):
            raise ValueError(
                f"Invalid value '{params['sysparm_display_value']}' for sysparm_display_value:"
                " true, false or all"
            )
        limit = number("sysparm_limit", max_limit) or max_limit
        return cls(
            query=params.get("sysparm_query", ""),
            limit=min(limit, max_limit),
            offset=number("sysparm_offset", 0),
            fields=[f.strip() for f in params.get("sysparm_fields", "").split(",") if f.strip()],
            display=display,
            exclude_links=flag("sysparm_exclude_reference_link"),
            no_count=flag("sysparm_no_count"),
            suppress_links=flag("sysparm_suppress_pagination_header"),
        )
