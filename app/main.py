"""The HTTP app: ``create_app(settings)`` builds it; ``ticketflow serve`` runs it with uvicorn.

Routes (each module owns an ``APIRouter``):

- ``/healthz`` (public), ``/metrics`` (admin) ............................ ``routes/ops.py``
- ``/api/v1/tickets``, ``/api/v1/tickets/{source}/{id}`` (read) ......... ``routes/tickets.py``
- ``/api/v1/sources`` (read) ............................................ ``routes/sources.py``
- ``/api/v1/<analysis>`` (read) ...................................... ``routes/analytics.py``
- ``/api/v1/embed-tokens`` (admin) ........................................ ``routes/embed.py``
- ``/charts/<name>``, ``/charts/<name>.json`` (read, embed token) ........ ``routes/charts.py``
- ``/`` the team dashboard (read, embed token) .......................... ``routes/dashboard.py``
- ``/static/plotly.min.js`` and the pages' own files (public) .............. ``routes/static.py``
- ``/api/v1/openapi.json`` (read)

Nothing here runs at import time: settings, engine and keys are read when the app is built.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy import Engine
from starlette.types import Receive, Scope, Send

from app.cache import AnalyticsCache
from app.deps import ReadAccess
from app.errors import install_error_handlers
from app.routes import alerts as alert_routes
from app.routes import analytics, charts, dashboard, embed, ops, sources, static, tickets
from app.routes._fastpath import FastPath, FastPathMiddleware, FrontDoor
from app.routes.ops import Telemetry, TelemetryMiddleware
from app.security import (
    EmbedSigner,
    KeyRing,
    RateLimitMiddleware,
    SecurityHeadersMiddleware,
)
from app.settings import Settings, load_settings
from app.warehouse import make_engine

__all__ = ["TicketflowAPI", "create_app", "create_app_from_environment"]

log = logging.getLogger(__name__)

# request metrics come from our own Prometheus telemetry; FastAPI's native OpenTelemetry
# (FastAPI releases that have it) checks its providers on every request, ~40 µs for nothing
_NO_NATIVE_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)


class TicketflowAPI(FastAPI):
    """FastAPI with the fast path's front door (``routes/_fastpath.py``) before its stack."""

    front: FrontDoor | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        front = self.front
        if front is not None and await front.answer(scope, send):
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, *, engine: Engine | None = None) -> FastAPI:
    """The FastAPI app for ``settings``; opens the warehouse unless ``engine`` is given.

    Raises:
        ConfigError: an API key or the embed key cannot be read, or is too short.
        WarehouseError: the warehouse cannot be opened or has an outdated schema.
    """
    keyring = KeyRing.from_settings(settings.api)
    signer = EmbedSigner.from_settings(settings.api)
    own_engine = engine is None
    if engine is None:
        engine = make_engine(settings.warehouse.url)
    telemetry = Telemetry()
    cache = AnalyticsCache(
        engine,
        max_age_seconds=settings.api.cache_seconds,
        check_seconds=settings.api.change_check_seconds,
        on_compute=telemetry.observe_compute,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        log.info(
            "api ready",
            extra={
                "keys": len(keyring),
                "embed_tokens": signer is not None,
                "public_read": settings.api.public_read,
            },
        )
        yield
        if own_engine:
            engine.dispose()

    app = TicketflowAPI(
        title="ticketflow",
        summary="Ticket-flow analytics for IT service desks",
        version=ops._version(),
        docs_url=None,  # the interactive docs load their scripts from a CDN
        redoc_url=None,
        openapi_url=None,  # served below, behind the read scope
        lifespan=lifespan,
        **_NO_NATIVE_TELEMETRY,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.cache = cache
    app.state.keyring = keyring
    app.state.signer = signer
    app.state.telemetry = telemetry
    app.state.fastpath = FastPath(cache)

    for module in (ops, tickets, sources, analytics, embed, charts, dashboard, static):
        app.include_router(module.router)
    app.include_router(alert_routes.router)

    @app.get("/api/v1/openapi.json", include_in_schema=False)
    def openapi(_caller: ReadAccess) -> dict[str, Any]:
        return app.openapi()

    install_error_handlers(app)
    # innermost: cached answers skip routing and dependencies (see routes/_fastpath.py)
    app.add_middleware(
        FastPathMiddleware,
        fast=app.state.fastpath,
        keyring=keyring,
        public_read=settings.api.public_read,
    )
    if settings.api.rate_limit.enabled:
        # outside the fast path: cached answers count too; inside telemetry and headers
        app.add_middleware(RateLimitMiddleware, settings=settings.api.rate_limit, keyring=keyring)
    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api.cors_origins,
            allow_methods=["GET"],
            allow_headers=["X-API-Key", "Authorization"],
            allow_credentials=False,
            max_age=600,
        )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(TelemetryMiddleware, telemetry=telemetry)
    if not settings.api.rate_limit.enabled and not settings.api.cors_origins:
        # the rate limiter and CORS must see every request: then cached answers take the
        # fast path inside the stack (FastPathMiddleware) instead
        app.front = FrontDoor(
            fast=app.state.fastpath,
            keyring=keyring,
            public_read=settings.api.public_read,
            observe=telemetry.observe_request,
        )
    return app


def create_app_from_environment() -> FastAPI:
    """The app for ``$TICKETFLOW_CONFIG`` (or ./ticketflow.toml) and the environment; the
    factory uvicorn imports in each worker when ``ticketflow serve --workers N``."""
    return create_app(load_settings())
