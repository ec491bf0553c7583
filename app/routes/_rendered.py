"""Answers rendered once and served as bytes: gzip when the client takes it, ETag and 304.

A ``Rendered`` holds the serialized body, its gzipped form (compressed once, not per request),
a strong ETag over the body, and the headers that say what the data is: ``X-Data-As-Of`` (the
instant the figures were computed for) and ``X-Data-Version`` (a short digest of the warehouse
version they come from). A request whose ``If-None-Match`` names the ETag gets ``304 Not
Modified`` without a body. When the cache serves the previous results while it recomputes in
the background, the answer also carries ``X-Data-Stale: true``.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from fastapi import Request
from fastapi.responses import Response

__all__ = ["Headers", "Rendered", "negotiate", "render", "respond"]

Headers = list[tuple[bytes, bytes]]

GZIP_MIN_BYTES = 1024
"""smaller bodies are sent as they are (gzip would save little and cost a header)"""
_GZ_SUFFIX = "-gz"


@dataclass(frozen=True)
class Rendered:
    body: bytes
    gzipped: bytes | None
    etag: str
    """strong ETag of the identity body; the gzipped body's is the same with ``-gz``"""
    as_of: datetime
    version: str
    plain_headers: tuple[tuple[bytes, bytes], ...]
    gzip_headers: tuple[tuple[bytes, bytes], ...]
    not_modified_headers: tuple[tuple[bytes, bytes], ...]


def _version_tag(version: str) -> str:
    return hashlib.blake2b(version.encode(), digest_size=6).hexdigest()


def render(
    body: bytes,
    *,
    as_of: datetime,
    version: str,
    media_type: str = "application/json",
    cache_control: str = "private, no-cache",
) -> Rendered:
    """``body`` with its gzipped form, ETag and headers, computed once."""
    digest = hashlib.blake2b(body, digest_size=12).hexdigest()
    etag = f'"{digest}"'
    gzipped = gzip.compress(body, compresslevel=6, mtime=0) if len(body) >= GZIP_MIN_BYTES else None
    common = [
        (b"vary", b"Accept-Encoding"),
        (b"cache-control", cache_control.encode()),
        (b"x-data-as-of", as_of.isoformat(timespec="seconds").encode()),
        (b"x-data-version", _version_tag(version).encode()),
    ]
    plain = [(b"content-type", media_type.encode()), (b"etag", etag.encode()), *common]
    packed = [
        (b"content-type", media_type.encode()),
        (b"content-encoding", b"gzip"),
        (b"etag", f'"{digest}{_GZ_SUFFIX}"'.encode()),
        *common,
    ]
    return Rendered(
        body=body,
        gzipped=gzipped,
        etag=etag,
        as_of=as_of,
        version=version,
        plain_headers=tuple(plain),
        gzip_headers=tuple(packed) if gzipped is not None else tuple(plain),
        not_modified_headers=((b"etag", etag.encode()), *common),
    )


def _matches(if_none_match: str, etag: str) -> bool:
    base = etag.strip('"')
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*":
            return True
        tag = tag.removeprefix("W/").strip('"').removesuffix(_GZ_SUFFIX)
        if tag == base:
            return True
    return False


def negotiate(
    rendered: Rendered, request_headers: Sequence[tuple[bytes, bytes]], *, stale: bool
) -> tuple[int, Headers, bytes]:
    """(status, headers, body) for a request with these (raw ASGI) headers."""
    takes_gzip = False
    if_none_match: str | None = None
    for name, value in request_headers:
        if name == b"accept-encoding" and b"gzip" in value:
            takes_gzip = True
        elif name == b"if-none-match":
            if_none_match = value.decode("latin-1")
    extra: Headers = [(b"x-data-stale", b"true")] if stale else []
    if if_none_match is not None and _matches(if_none_match, rendered.etag):
        return 304, [*rendered.not_modified_headers, *extra], b""
    if takes_gzip and rendered.gzipped is not None:
        body = rendered.gzipped
        headers = [*rendered.gzip_headers, *extra]
    else:
        body = rendered.body
        headers = [*rendered.plain_headers, *extra]
    headers.append((b"content-length", str(len(body)).encode()))
    return 200, headers, body


class _RawResponse(Response):
    """A response whose headers are given as they go on the wire."""

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        super().__init__(content=body, status_code=status)
        self.raw_headers = headers


def respond(request: Request, rendered: Rendered, *, stale: bool = False) -> Response:
    """The answer to ``request`` from ``rendered`` (gzip, 304, data headers)."""
    status, headers, body = negotiate(rendered, request.scope["headers"], stale=stale)
    return _RawResponse(status, headers, body)
