"""A fast path for cached analytics and chart answers, in front of FastAPI's routing.

Under load a cached answer costs almost nothing (a dictionary lookup), yet FastAPI's routing and
dependency resolution take about a millisecond per request, which at 50 concurrent connections
on two cores became the whole latency. So once a handler has answered a ``GET`` with cached
bytes, it *remembers* the request (path and query parameters, in any order) and
which ``AnalyticsCache`` entry the bytes came from. The next identical request is answered by
this ASGI middleware directly, if and only if

- the caller presents an API key with the read scope (or the server is in public-read mode and
  no key is sent); embed tokens and everything else take the normal path;
- the cache entry can be served (``AnalyticsCache.peek``: in the generation being served, the
  fingerprint not due for a check).

The answer is negotiated per request like the handler's (gzip, ETag/304, ``X-Data-*``).

Otherwise the request goes on to FastAPI untouched, which answers (401, 403, 422, a recompute)
as always. The telemetry and security-header middlewares sit outside this one, so fast answers
are counted, logged and get the same headers.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.cache import AnalyticsCache
from app.routes._rendered import Rendered, negotiate
from app.security import KeyRing, presented_key, with_security_headers

__all__ = ["FastPath", "FastPathMiddleware", "FrontDoor", "remember"]


@dataclass(frozen=True)
class _Route:
    """Stands in for the matched route in ``scope["route"]`` (telemetry labels by ``path``)."""

    path: str


@dataclass(frozen=True)
class _Answer:
    cache_key: Hashable
    pick: Callable[[Any], Rendered]
    """the rendered answer within the cached value"""
    route: _Route


def _request_key(path: str, query: bytes) -> Hashable:
    if not query:
        return (path, ())
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    return (path, tuple(sorted(pairs)))


class FastPath:
    """The remembered requests of one app (bounded, least recently used go first)."""

    def __init__(self, cache: AnalyticsCache, *, max_entries: int = 2048) -> None:
        self.cache = cache
        self._max = max_entries
        self._lock = threading.Lock()
        self._answers: OrderedDict[Hashable, _Answer] = OrderedDict()
        self.hits = 0

    def remember(
        self, request: Request, cache_key: Hashable, pick: Callable[[Any], Rendered]
    ) -> None:
        route = request.scope.get("route")
        key = _request_key(request.scope["path"], request.scope["query_string"])
        template = str(getattr(route, "path", None) or request.scope["path"])
        answer = _Answer(cache_key, pick, _Route(template))
        with self._lock:
            self._answers[key] = answer
            self._answers.move_to_end(key)
            while len(self._answers) > self._max:
                self._answers.popitem(last=False)

    def lookup(self, scope: Scope) -> tuple[_Answer, Rendered, bool] | None:
        """The remembered answer, its rendered bytes, and whether they are stale."""
        key = _request_key(scope["path"], scope["query_string"])
        with self._lock:
            answer = self._answers.get(key)
        if answer is None:
            return None
        hit = self.cache.peek(answer.cache_key)
        if hit is None:
            return None
        return answer, answer.pick(hit.value), not self.cache.is_current(hit)


def remember(request: Request, cache_key: Hashable, pick: Callable[[Any], Rendered]) -> None:
    """Let the fast path answer the next request like this one from ``cache_key``'s entry."""
    fast: FastPath | None = getattr(request.app.state, "fastpath", None)
    if fast is not None and request.method == "GET":
        fast.remember(request, cache_key, pick)


def _read_caller(
    keyring: KeyRing, public_read: bool, headers: list[tuple[bytes, bytes]]
) -> str | None:
    """The name of a caller with the read scope, or None (then FastAPI decides)."""
    presented = presented_key(headers)
    if presented is None:
        return "public" if public_read else None
    principal = keyring.lookup(presented)
    if principal is None or "read" not in principal.scopes:
        return None
    return principal.name


class FrontDoor:
    """The fast path *in front of* the app's whole middleware stack (``create_app`` installs
    it when no rate limit and no CORS origins are configured, which would have to see every
    request first): a remembered answer is sent with the security headers and recorded by the
    telemetry here, without the half-dozen ASGI layers around the routes (about half of the
    app's time on a cached request). Anything it does not answer goes through the stack,
    where ``FastPathMiddleware`` sits as before."""

    def __init__(
        self,
        *,
        fast: FastPath,
        keyring: KeyRing,
        public_read: bool,
        observe: Callable[[Scope, int, float], None],
    ) -> None:
        self.fast = fast
        self.keyring = keyring
        self.public_read = public_read
        self.observe = observe

    async def answer(self, scope: Scope, send: Send) -> bool:
        """Send the remembered answer for ``scope``; False when there is none to send."""
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or b"token=" in scope.get("query_string", b"")
        ):
            return False
        started = time.perf_counter()
        found = self.fast.lookup(scope)
        if found is None:
            return False
        caller = _read_caller(self.keyring, self.public_read, scope["headers"])
        if caller is None:
            return False
        answer, rendered, stale = found
        self.fast.hits += 1
        scope["route"] = answer.route
        scope.setdefault("state", {})["principal"] = caller
        status, headers, body = negotiate(rendered, scope["headers"], stale=stale)
        start = {
            "type": "http.response.start",
            "status": status,
            "headers": with_security_headers(headers),
        }
        await send(start)
        await send({"type": "http.response.body", "body": body})
        self.observe(scope, status, time.perf_counter() - started)
        return True


class FastPathMiddleware:
    def __init__(
        self, app: ASGIApp, *, fast: FastPath, keyring: KeyRing, public_read: bool
    ) -> None:
        self.app = app
        self.fast = fast
        self.keyring = keyring
        self.public_read = public_read

    def _caller(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        return _read_caller(self.keyring, self.public_read, headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and b"token=" not in scope.get("query_string", b"")
        ):
            found = self.fast.lookup(scope)
            if found is not None:
                caller = self._caller(scope["headers"])
                if caller is not None:
                    answer, rendered, stale = found
                    self.fast.hits += 1
                    scope["route"] = answer.route
                    scope.setdefault("state", {})["principal"] = caller
                    status, headers, body = negotiate(rendered, scope["headers"], stale=stale)
                    start = {"type": "http.response.start", "status": status, "headers": headers}
                    await send(start)
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)
