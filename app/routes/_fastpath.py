"""A fast path for cached analytics and chart answers, in front of FastAPI's routing.

Under load a cached answer costs almost nothing (a dictionary lookup), yet FastAPI's routing and
dependency resolution take about a millisecond per request, which at 50 concurrent connections
on two cores became the whole latency. So once a handler has answered a ``GET`` with cached
bytes, it *remembers* the request (path, query parameters, whether the client takes gzip) and
which ``AnalyticsCache`` entry the bytes came from. The next identical request is answered by
this ASGI middleware directly, if and only if

- the caller presents an API key with the read scope (or the server is in public-read mode and
  no key is sent); embed tokens and everything else take the normal path;
- the cache entry is still current (``AnalyticsCache.peek``: same warehouse version, not older
  than ``cache_seconds``, fingerprint not due for a check).

Otherwise the request goes on to FastAPI untouched, which answers (401, 403, 422, a recompute)
as always. The telemetry and security-header middlewares sit outside this one, so fast answers
are counted, logged and get the same headers.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.cache import AnalyticsCache
from app.security import KeyRing

__all__ = ["FastPath", "FastPathMiddleware", "remember"]


@dataclass(frozen=True)
class _Route:
    """Stands in for the matched route in ``scope["route"]`` (telemetry labels by ``path``)."""

    path: str


@dataclass(frozen=True)
class _Answer:
    cache_key: Hashable
    body: Callable[[Any], bytes]
    """the bytes to send, from the cached value"""
    headers: tuple[tuple[bytes, bytes], ...]
    route: _Route


def _request_key(path: str, query: bytes, gzip: bool) -> Hashable:
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    return (path, tuple(sorted(pairs)), gzip)


def _takes_gzip(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(k == b"accept-encoding" and b"gzip" in v for k, v in headers)


class FastPath:
    """The remembered requests of one app (bounded, least recently used go first)."""

    def __init__(self, cache: AnalyticsCache, *, max_entries: int = 2048) -> None:
        self.cache = cache
        self._max = max_entries
        self._lock = threading.Lock()
        self._answers: OrderedDict[Hashable, _Answer] = OrderedDict()
        self.hits = 0

    def remember(
        self,
        request: Request,
        cache_key: Hashable,
        body: Callable[[Any], bytes],
        media_type: str,
        extra: dict[str, str] | None = None,
    ) -> None:
        route = request.scope.get("route")
        scope_headers = request.scope["headers"]
        gzip = _takes_gzip(scope_headers)
        key = _request_key(request.scope["path"], request.scope["query_string"], gzip)
        headers = [(b"content-type", media_type.encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in (extra or {}).items()]
        template = str(getattr(route, "path", None) or request.scope["path"])
        answer = _Answer(cache_key, body, tuple(headers), _Route(template))
        with self._lock:
            self._answers[key] = answer
            self._answers.move_to_end(key)
            while len(self._answers) > self._max:
                self._answers.popitem(last=False)

    def lookup(self, scope: Scope) -> tuple[_Answer, bytes] | None:
        key = _request_key(scope["path"], scope["query_string"], _takes_gzip(scope["headers"]))
        with self._lock:
            answer = self._answers.get(key)
        if answer is None:
            return None
        hit = self.cache.peek(answer.cache_key)
        if hit is None:
            return None
        return answer, answer.body(hit.value)


def remember(
    request: Request,
    cache_key: Hashable,
    body: Callable[[Any], bytes],
    media_type: str = "application/json",
    extra: dict[str, str] | None = None,
) -> None:
    """Let the fast path answer the next request like this one from ``cache_key``'s entry."""
    fast: FastPath | None = getattr(request.app.state, "fastpath", None)
    if fast is not None and request.method == "GET":
        fast.remember(request, cache_key, body, media_type, extra)


class FastPathMiddleware:
    def __init__(
        self, app: ASGIApp, *, fast: FastPath, keyring: KeyRing, public_read: bool
    ) -> None:
        self.app = app
        self.fast = fast
        self.keyring = keyring
        self.public_read = public_read

    def _caller(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        """The name of a caller with the read scope, or None (then FastAPI decides)."""
        presented: str | None = None
        for k, v in headers:
            if k == b"x-api-key":
                presented = v.decode("latin-1")
                break
            if k == b"authorization":
                scheme, _, credentials = v.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and credentials:
                    presented = credentials.strip()
        if presented is None:
            return "public" if self.public_read else None
        principal = self.keyring.lookup(presented)
        if principal is None or "read" not in principal.scopes:
            return None
        return principal.name

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
                    answer, body = found
                    self.fast.hits += 1
                    scope["route"] = answer.route
                    scope.setdefault("state", {})["principal"] = caller
                    headers = [*answer.headers, (b"content-length", str(len(body)).encode())]
                    await send({"type": "http.response.start", "status": 200, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)
