"""Operations: ``/healthz`` (public), ``/metrics`` (Prometheus, admin scope), request telemetry."""

from __future__ import annotations

import logging
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.deps import AdminAccess, CacheDep, EngineDep
from app.schemas import Health

__all__ = ["Telemetry", "TelemetryMiddleware", "router"]

router = APIRouter(tags=["operations"])
log = logging.getLogger("app.access")


def _version() -> str:
    try:
        return version("ticketflow")
    except PackageNotFoundError:
        return "unknown"


class Telemetry:
    """The app's Prometheus metrics, in a registry of its own (one per app, not global)."""

    def __init__(self) -> None:
        self._label_cache: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "ticketflow_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ticketflow_http_request_duration_seconds",
            "Time to answer a request, by route template",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.compute = Histogram(
            "ticketflow_analytics_compute_seconds",
            "Time to compute one cached result (or load the warehouse snapshot)",
            ["analysis"],
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.cache_hits = Gauge(
            "ticketflow_cache_hits", "Cached results reused since start", registry=self.registry
        )
        self.cache_misses = Gauge(
            "ticketflow_cache_misses", "Results computed since start", registry=self.registry
        )
        self.cache_refreshes = Gauge(
            "ticketflow_cache_refreshes",
            "Result generations recomputed in the background and put in service since start",
            registry=self.registry,
        )
        self.cache_refresh_errors = Gauge(
            "ticketflow_cache_refresh_errors",
            "Results a background refresh could not compute (left to the next request)",
            registry=self.registry,
        )
        self.snapshot_tickets = Gauge(
            "ticketflow_snapshot_tickets",
            "Tickets in the warehouse snapshot the analytics use",
            registry=self.registry,
        )

    def observe_compute(self, analysis: str, seconds: float) -> None:
        self.compute.labels(analysis=analysis).observe(seconds)

    def observe_request(self, scope: Scope, status: int, seconds: float) -> None:
        """Count, time and log one answered request."""
        route = getattr(scope.get("route"), "path", None) or "(unmatched)"
        method = scope["method"]
        counter, histogram = self._children(method, route, status)
        counter.inc()
        histogram.observe(seconds)
        if log.isEnabledFor(logging.INFO):
            state = scope.get("state") or {}
            log.info(
                "%s %s %s %.1f ms",
                method,
                scope["path"],
                status,
                seconds * 1000,
                extra={
                    "method": method,
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "ms": round(seconds * 1000, 2),
                    "caller": state.get("principal", "anonymous"),
                },
            )

    def _children(self, method: str, route: str, status: int) -> tuple[Any, Any]:
        """The counter and histogram of one label set (``labels()`` costs more than the
        observation itself; route templates and statuses are few)."""
        key = (method, route, status)
        found = self._label_cache.get(key)
        if found is None:
            found = (
                self.requests.labels(method=method, route=route, status=str(status)),
                self.latency.labels(method=method, route=route),
            )
            if len(self._label_cache) < 4096:
                self._label_cache[key] = found
        return found


class TelemetryMiddleware:
    """Counts and times every request and logs one line for it: method, path, route, status,
    milliseconds and the caller's name. The query string is never logged (embed tokens)."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.telemetry.observe_request(scope, status, time.perf_counter() - started)


@router.get("/healthz", response_model=Health, summary="Liveness and warehouse reachability")
def healthz(engine: EngineDep) -> JSONResponse:
    """200 when the warehouse answers, 503 when it does not; never needs a key."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        ok = True
    except Exception:  # any failure to reach the database means: degraded
        log.warning("healthz: warehouse unreachable")
        ok = False
    body = Health(
        status="ok" if ok else "degraded",
        warehouse="ok" if ok else "unavailable",
        version=_version(),
    )
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
def metrics(_caller: AdminAccess, request: Request, cache: CacheDep) -> Response:
    """Request counts and latencies per route, analytics compute times, cache use."""
    telemetry: Telemetry = request.app.state.telemetry
    telemetry.cache_hits.set(cache.stats.hits)
    telemetry.cache_misses.set(cache.stats.misses)
    telemetry.cache_refreshes.set(cache.stats.refreshes)
    telemetry.cache_refresh_errors.set(cache.stats.refresh_errors)
    snapshot = cache.current_snapshot()
    if snapshot is not None:
        telemetry.snapshot_tickets.set(len(snapshot.tickets))
    return Response(generate_latest(telemetry.registry), media_type=CONTENT_TYPE_LATEST)
