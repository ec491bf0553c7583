"""What goes over the wire: request options, Link headers, error bodies, recorded requests."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

import httpx
import orjson

__all__ = [
    "HIBERNATING",
    "Fault",
    "Options",
    "Recorded",
    "error",
    "links",
    "unauthenticated",
]

_BOOL = ("true", "false")
HIBERNATING = (
    b"<!DOCTYPE html><html><head><title>Instance Hibernating page</title></head><body>"
    b"<h1>Your instance is hibernating</h1><p>Sign in to wake it up.</p></body></html>"
)


def error(
    status: int, message: str, detail: str | None, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(
        status,
        content=orjson.dumps(
            {"error": {"message": message, "detail": detail}, "status": "failure"}
        ),
        headers={"Content-Type": "application/json;charset=UTF-8", **(headers or {})},
    )


def unauthenticated() -> httpx.Response:
    return error(401, "User Not Authenticated", "Required to provide Auth information")


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


def links(
    url: str, params: dict[str, str], options: Options, total: int | None, returned: int
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
class Options:
    query: str
    limit: int
    offset: int
    fields: list[str]
    display: str
    exclude_links: bool
    no_count: bool
    suppress_links: bool

    @classmethod
    def read(cls, params: dict[str, str], max_limit: int) -> Options:
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
