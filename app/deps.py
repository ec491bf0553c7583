"""Request dependencies: settings, warehouse, cache, callers and their rights, common filters.

The app's parts live on ``app.state`` (set by ``create_app``); nothing here reads configuration
or opens a database at import time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NoReturn

import pandas as pd
from fastapi import Depends, HTTPException, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection, Engine

from app.cache import AnalyticsCache
from app.security import EmbedSigner, InvalidTokenError, KeyRing, Principal
from app.settings import Settings
from connectors.base import LifecycleState

__all__ = [
    "AdminAccess",
    "CacheDep",
    "ConnectionDep",
    "EngineDep",
    "Filters",
    "FiltersDep",
    "FormatDep",
    "PagingDep",
    "ReadAccess",
    "SettingsDep",
    "bad_param",
    "chart_access",
]


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def get_cache(request: Request) -> AnalyticsCache:
    cache: AnalyticsCache = request.app.state.cache
    return cache


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
CacheDep = Annotated[AnalyticsCache, Depends(get_cache)]


def get_connection(engine: EngineDep) -> Iterator[Connection]:
    with engine.connect() as conn:
        yield conn


ConnectionDep = Annotated[Connection, Depends(get_connection)]


def bad_param(name: str, message: str, value: Any = None) -> NoReturn:
    """Answer 422 in FastAPI's own shape, naming the query parameter and what is wrong."""
    raise RequestValidationError(
        [{"type": "value_error", "loc": ("query", name), "msg": message, "input": value}]
    )


# callers

_api_key = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="an API key (scopes: read, admin)"
)
_bearer = HTTPBearer(auto_error=False, description="the same API key as a bearer token")
KeyHeader = Annotated[str | None, Security(_api_key)]
BearerHeader = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]

_CHALLENGE = {"WWW-Authenticate": 'ApiKey header="X-API-Key"'}


def _unauthorized(message: str) -> NoReturn:
    raise HTTPException(status_code=401, detail=message, headers=_CHALLENGE)


def _forbidden(message: str) -> NoReturn:
    raise HTTPException(status_code=403, detail=message)


def _key_caller(request: Request, key: str | None, bearer: Any) -> Principal | None:
    """The caller named by a key header; 401 for a key that is not ours."""
    presented = key or (bearer.credentials if bearer is not None else None)
    if not presented:
        return None
    keyring: KeyRing = request.app.state.keyring
    principal = keyring.lookup(presented)
    if principal is None:
        _unauthorized("unknown API key")
    request.state.principal = principal.name
    return principal


def _public(request: Request) -> Principal | None:
    settings: Settings = request.app.state.settings
    if not settings.api.public_read:
        return None
    request.state.principal = "public"
    return Principal(kind="public", name="public", scopes=frozenset({"read"}))


def read_principal(request: Request, key: str | None, bearer: Any) -> Principal:
    """A key with the read scope, or anyone in public-read mode."""
    principal = _key_caller(request, key, bearer) or _public(request)
    if principal is None:
        _unauthorized("an API key is required (header X-API-Key)")
    if "read" not in principal.scopes:
        _forbidden("this API key lacks the read scope")
    return principal


async def require_read(request: Request, key: KeyHeader, bearer: BearerHeader) -> Principal:
    """A key with the read scope, or anyone in public-read mode.

    Dependencies that do no I/O are ``async``: FastAPI runs sync ones in the thread pool, a
    thread hop each, which under load costs more than the work itself."""
    return read_principal(request, key, bearer)


async def require_admin(request: Request, key: KeyHeader, bearer: BearerHeader) -> Principal:
    """A key with the admin scope (public-read mode never grants it)."""
    principal = _key_caller(request, key, bearer)
    if principal is None:
        _unauthorized("an API key with the admin scope is required (header X-API-Key)")
    if "admin" not in principal.scopes:
        _forbidden("this API key lacks the admin scope")
    return principal


ReadAccess = Annotated[Principal, Depends(require_read)]
AdminAccess = Annotated[Principal, Depends(require_admin)]


def chart_access(
    request: Request,
    chart: str,
    *,
    token: str | None,
    key: str | None,
    bearer: Any,
) -> Principal:
    """Who may see ``chart``: a read key, an embed token that opens it, or public-read mode."""
    if token:
        signer: EmbedSigner | None = request.app.state.signer
        if signer is None:
            _unauthorized("embed tokens are not enabled on this server")
        try:
            principal = signer.verify(token, now=datetime.now(UTC))
        except InvalidTokenError as e:
            _unauthorized(str(e))
        request.state.principal = principal.name
        if not principal.may_view(chart):
            _forbidden(f"this embed token does not open `{chart}`")
        return principal
    return read_principal(request, key, bearer)


# common query parameters

OpenFilter = Literal["open", "closed", "all"]


@dataclass(frozen=True)
class Filters:
    """The filters every list, chart and analytics endpoint accepts."""

    source: tuple[str, ...] = ()
    team: tuple[str, ...] = ()
    assignee: tuple[str, ...] = ()
    state: tuple[str, ...] = ()
    priority: tuple[int, ...] = ()
    status: OpenFilter = "all"
    updated_since: datetime | None = None

    def key(self) -> tuple[Any, ...]:
        """A hashable, order-independent form for cache keys."""
        return (
            tuple(sorted(self.source)),
            tuple(sorted(self.team)),
            tuple(sorted(self.assignee)),
            tuple(sorted(self.state)),
            tuple(sorted(self.priority)),
            self.status,
            self.updated_since,
        )

    def pinned(self, principal: Principal) -> Filters:
        """These filters within the pins of an embed token (403 when they ask for more)."""
        values = dict(self.__dict__)
        for name, pinned in principal.pins.items():
            asked: Sequence[str] = values.get(name, ())
            if asked and set(asked) != {pinned}:
                _forbidden(f"this embed token is limited to {name} `{pinned}`")
            values[name] = (pinned,)
        return Filters(**values)

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of a ticket-keyed frame that pass; filters on absent columns are skipped."""
        mask = pd.Series(True, index=frame.index)
        for name in ("source", "team", "assignee", "state"):
            values = getattr(self, name)
            if values and name in frame.columns:
                mask &= frame[name].isin(values)
        if self.priority and "priority" in frame.columns:
            mask &= frame["priority"].isin(self.priority).fillna(False).astype(bool)
        if self.status != "all" and "state" in frame.columns:
            is_open = frame["state"].isin([s.value for s in _OPEN])
            mask &= is_open if self.status == "open" else ~is_open
        if self.updated_since is not None and "updated_at" in frame.columns:
            mask &= (frame["updated_at"] >= pd.Timestamp(self.updated_since)).fillna(False)
        return frame[mask] if not bool(mask.all()) else frame


_OPEN = [s for s in LifecycleState if s.value not in ("resolved", "closed", "cancelled")]


async def get_filters(
    source: Annotated[
        list[str] | None, Query(description="source name; repeat for several")
    ] = None,
    team: Annotated[list[str] | None, Query(description="team; repeat for several")] = None,
    assignee: Annotated[list[str] | None, Query(description="assignee; repeat for several")] = None,
    state: Annotated[
        list[LifecycleState] | None, Query(description="lifecycle state; repeat for several")
    ] = None,
    priority: Annotated[
        list[Annotated[int, Query(ge=1, le=5)]] | None,
        Query(description="priority 1 (highest) to 5; repeat for several"),
    ] = None,
    status: Annotated[
        OpenFilter, Query(description="open tickets, closed (resolved, closed, cancelled), or all")
    ] = "all",
    updated_since: Annotated[
        datetime | None,
        Query(description="ISO 8601; only tickets updated at or after it (UTC when no offset)"),
    ] = None,
) -> Filters:
    if updated_since is not None and updated_since.tzinfo is None:
        updated_since = updated_since.replace(tzinfo=UTC)
    return Filters(
        source=tuple(source or ()),
        team=tuple(team or ()),
        assignee=tuple(assignee or ()),
        state=tuple(s.value for s in state or ()),
        priority=tuple(priority or ()),
        status=status,
        updated_since=updated_since,
    )


FiltersDep = Annotated[Filters, Depends(get_filters)]


async def get_format(
    format: Annotated[Literal["json", "csv"], Query(description="json or csv")] = "json",
) -> Literal["json", "csv"]:
    return format


FormatDep = Annotated[Literal["json", "csv"], Depends(get_format)]


@dataclass(frozen=True)
class Paging:
    limit: int
    offset: int


async def get_paging(
    settings: SettingsDep,
    format: FormatDep,
    limit: Annotated[
        int | None,
        Query(ge=1, description="rows per page; JSON: default 100, at most 500; CSV: all rows"),
    ] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="rows to skip")] = 0,
) -> Paging:
    cap = settings.api.max_page_size if format == "json" else settings.api.csv_max_rows
    if limit is None:
        limit = min(100, cap) if format == "json" else cap
    elif limit > cap:
        bad_param("limit", f"must be at most {cap} for format={format}", limit)
    return Paging(limit=limit, offset=offset)


PagingDep = Annotated[Paging, Depends(get_paging)]
