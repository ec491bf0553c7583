"""The HTTP side of the fake ServiceNow instance: Table API, OAuth, auth, rate limits, knobs."""

from __future__ import annotations

import math
import operator
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson

from tests.fakes.servicenow.access import Access
from tests.fakes.servicenow.generate import generate
from tests.fakes.servicenow.plan import select
from tests.fakes.servicenow.query import (
    CompiledQuery,
    Condition,
    QueryError,
    compile_query,
    parse_query,
)
from tests.fakes.servicenow.records import Records
from tests.fakes.servicenow.render import writers
from tests.fakes.servicenow.schema import REFERENCE
from tests.fakes.servicenow.store import Getter, Table
from tests.fakes.servicenow.wire import (
    HIBERNATING,
    Fault,
    Options,
    Recorded,
    error,
    links,
    unauthenticated,
)

__all__ = ["FakeServiceNow", "Fault", "Recorded"]

_TABLE_PATH = re.compile(r"/api/now(?:/(v1|v2))?/table/([A-Za-z0-9_]+)(?:/([^/]+))?/?")


def _padded(row: list[str], width: int) -> list[str]:
    return row if len(row) >= width else row + [""] * (width - len(row))


def _as_tuple(picked: Any) -> tuple[str, ...]:
    return picked if isinstance(picked, tuple) else (picked,)


class FakeServiceNow(Records, Access):
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
        deletions_readable: bool = True,
        max_limit: int = 10_000,
    ) -> None:
        super().__init__(start=start)
        self.init_access(
            username=username,
            password=password,
            client_id=client_id,
            client_secret=client_secret,
            rate_limit=rate_limit,
            rate_window_seconds=rate_window_seconds,
        )
        self.audit_readable = audit_readable
        self.journal_readable = journal_readable
        self.deletions_readable = deletions_readable
        self.max_limit = max_limit
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
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.on_request: Callable[[httpx.Request], None] | None = None
        self.add_user(username, "Integration User")

    def generate(
        self, count: int, *, audit_rows: int | None = None, seed: int = 1, table: str = "incident"
    ) -> None:
        """Add ``count`` incidents (or ``sc_req_item``/``sc_request``/``task`` records) with
        realistic histories (see ``generate``); with ``audit_rows`` the instance ends up with
        about that many more sys_audit rows."""
        generate(self, count, audit_rows=audit_rows, seed=seed, table=table)

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
                return unauthenticated()
            return error(fault.status, f"Simulated error {fault.status}", "fake fault")
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
        return error(
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
            return self.oauth(request)
        if not self.authenticated(request):
            return unauthenticated()
        rate_headers: dict[str, str] = {}
        if self.rate_limit is not None:
            allowed, rate_headers, wait = self.count_request()
            if not allowed:
                limited = self._too_many(wait)
                limited.headers.update(rate_headers)
                return limited
        fault = self._take_fault(path)
        answer = self._fault_response(fault, request) if fault is not None else None
        response = answer if answer is not None else self._route(request, path, params)
        response.headers.update(rate_headers)
        return response

    def _route(self, request: httpx.Request, path: str, params: dict[str, str]) -> httpx.Response:
        match = _TABLE_PATH.fullmatch(path)
        if match is None:
            return error(400, "Requested URI does not represent any resource", None)
        version, name, sys_id = match.groups()
        if request.method != "GET":
            return error(405, "Method not Supported", f"{request.method} is not supported here")
        table = self.tables.get(name)
        if table is None:
            return error(400, f"Invalid table {name}", None)
        if (
            (name == "sys_audit" and not self.audit_readable)
            or (name == "sys_journal_field" and not self.journal_readable)
            or (name == "sys_audit_delete" and not self.deletions_readable)
        ):
            return error(
                403,
                "User Not Authorized",
                "ACL Exception Read Failed due to security constraints",
            )
        try:
            options = Options.read(params, self.max_limit)
        except ValueError as e:
            return error(400, str(e), None)
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
        self, table: Table, ids: list[str], options: Options, base: str
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
        plain = [table.columns.get(name) for name, _write in out]
        if options.display == "false" and all(
            at is not None and (options.exclude_links or table.types[name] != REFERENCE)
            for (name, _write), at in zip(out, plain, strict=True)
        ):
            # stored values as they are: one C-level pick per row
            names = [name for name, _write in out]
            pick = operator.itemgetter(*[at for at in plain if at is not None])
            width = len(table.columns)
            return [
                dict(zip(names, _as_tuple(pick(_padded(rows[i], width))), strict=True)) for i in ids
            ]
        return [{name: write(rows[i]) for name, write in out} for i in ids]

    def _one(self, table: Table, sys_id: str, options: Options, base: str) -> httpx.Response:
        if sys_id not in table.rows or sys_id in self.hidden:
            return error(
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
        compiled = compile_query(parsed, table, self._query_resolve, zone=self._zone())
        # a reference sorts by what it shows (the user's name, the group's name)
        for at, (name, descending, get, key) in enumerate(compiled.order):
            found = self._resolve(table, name)
            if found is not None and found[2] is not None:
                compiled.order[at] = (name, descending, self._shown(found[2], get), key)
        return compiled

    def _shown(self, target: str, get: Getter) -> Getter:
        def shown(row: list[str]) -> str:
            value = get(row)
            return self._reference_display(target, value) if value else ""

        return shown

    def _list(
        self,
        table: Table,
        options: Options,
        params: dict[str, str],
        base: str,
        path: str,
        version: str | None,
    ) -> httpx.Response:
        filters = {k: v for k, v in params.items() if not k.startswith("sysparm_")}
        try:
            compiled = self.compile(table, options.query, filters)
        except QueryError as e:
            return error(400, str(e), None)
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
            return error(404, "No Record found", "Records not found")
        headers = {"Content-Type": "application/json;charset=UTF-8"}
        if total is not None:
            headers["X-Total-Count"] = str(total)
        if not options.suppress_links:
            headers["Link"] = links(base + path, params, options, total, len(ids))
        body = orjson.dumps({"result": self._render(table, page, options, base)})
        return httpx.Response(200, content=body, headers=headers)
