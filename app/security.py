"""Who may call what: API keys with scopes, signed embed tokens, public-read mode, headers.

- **API keys** come in the ``X-API-Key`` header (or ``Authorization: Bearer``), never in a URL.
  Keys are read from the environment or a file at start-up and kept only as HMAC-SHA256
  digests under a random per-process pepper; a presented key is compared against every stored
  digest in constant time. Scopes: ``read`` (API, charts, dashboard) and ``admin`` (embed
  tokens, /metrics). They are independent: an admin key does not read unless it also has read.
- **Embed tokens** let an ``<iframe>`` (which cannot send headers) show charts: a token names
  the charts it opens (or ``*`` for every chart and the dashboard), may pin filters (e.g. one
  team), and expires. It is signed with itsdangerous (HMAC-SHA256 under a salt used for
  nothing else; several keys for rotation); tokens work only on chart and dashboard routes,
  never on ``/api``.
- **Public-read mode** opens every read route without a key, for closed intranets.
- **Headers**: chart and dashboard pages carry ``Content-Security-Policy: frame-ancestors`` from
  the configured allow-list and ``script-src 'self'``; everything else may not be framed at all.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from itsdangerous import BadSignature, URLSafeSerializer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ConfigError
from app.settings import ApiSettings, RateLimitSettings

__all__ = [
    "ALL_CHARTS",
    "DASHBOARD",
    "RATE_LIMIT_EXEMPT",
    "EmbedGrant",
    "EmbedSigner",
    "InvalidTokenError",
    "KeyRing",
    "Principal",
    "RateLimitMiddleware",
    "SecurityHeadersMiddleware",
    "page_csp",
    "presented_key",
    "with_security_headers",
]

ALL_CHARTS = "*"
DASHBOARD = "dashboard"


@dataclass(frozen=True)
class Principal:
    """The caller of one request; ``name`` is safe to log (a key's name, never the key)."""

    kind: Literal["key", "token", "public"]
    name: str
    scopes: frozenset[str] = frozenset()
    charts: frozenset[str] = frozenset()
    """embed tokens: the charts (and ``dashboard``) the token opens; ``*`` opens all"""
    pins: Mapping[str, str] = field(default_factory=dict)
    """embed tokens: filters the token fixes, e.g. ``{"team": "Service Desk"}``"""

    def may_view(self, chart: str) -> bool:
        if self.kind != "token":
            return "read" in self.scopes
        return ALL_CHARTS in self.charts or chart in self.charts


class KeyRing:
    """The configured API keys, held as peppered digests."""

    def __init__(self, keys: Iterable[tuple[str, frozenset[str], str]]) -> None:
        self._pepper = secrets.token_bytes(32)
        self._entries = [(self._digest(key), name, scopes) for name, scopes, key in keys]

    @classmethod
    def from_settings(cls, api: ApiSettings) -> KeyRing:
        """Read every configured key.

        Raises:
            ConfigError: a key's variable is unset, its file unreadable, or it is too short.
        """
        keys = []
        problems = []
        for k in api.keys:
            try:
                keys.append((k.name, frozenset(k.scopes), k.key().get_secret_value()))
            except ValueError as e:
                problems.append((f"api.keys[{k.name}]", str(e)))
        if problems:
            raise ConfigError(problems)
        return cls(keys)

    def __len__(self) -> int:
        return len(self._entries)

    def _digest(self, key: str) -> bytes:
        return hmac.digest(self._pepper, key.encode(), "sha256")

    def lookup(self, presented: str) -> Principal | None:
        """The key's principal, None for an unknown key (every entry is compared, no early exit)."""
        digest = self._digest(presented)
        found: Principal | None = None
        for stored, name, scopes in self._entries:
            if hmac.compare_digest(stored, digest) and found is None:
                found = Principal(kind="key", name=name, scopes=scopes)
        return found


class InvalidTokenError(Exception):
    """An embed token that is malformed, tampered with, or expired; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"embed token refused: {reason}")


@dataclass(frozen=True)
class EmbedGrant:
    token: str
    charts: tuple[str, ...]
    pins: Mapping[str, str]
    expires_at: datetime


class EmbedSigner:
    """Mints and checks embed tokens: ``{charts, pins, expiry}`` signed with HMAC-SHA256.

    ``keys`` may hold several keys (whitespace-separated in the configured secret) for rotation:
    the last one signs, all of them verify.
    """

    _SALT = "ticketflow.embed.v1"

    def __init__(self, keys: Sequence[str], *, max_lifetime: timedelta) -> None:
        if not keys:
            raise ValueError("an embed signer needs at least one key")
        self._serializer = URLSafeSerializer(
            list(keys), salt=self._SALT, signer_kwargs={"digest_method": hashlib.sha256}
        )
        self.max_lifetime = max_lifetime

    @classmethod
    def from_settings(cls, api: ApiSettings) -> EmbedSigner | None:
        """The signer for the configured key, None when no key is configured.

        Raises:
            ConfigError: the key's variable is unset, its file unreadable, or it is too short.
        """
        try:
            secret = api.embed_key()
        except ValueError as e:
            raise ConfigError([("api.embed_key", str(e))]) from e
        if secret is None:
            return None
        return cls(
            secret.get_secret_value().split(),
            max_lifetime=timedelta(hours=api.embed_token_max_hours),
        )

    def mint(
        self,
        *,
        charts: Sequence[str],
        pins: Mapping[str, str],
        lifetime: timedelta,
        now: datetime,
    ) -> EmbedGrant:
        """A token for ``charts`` with ``pins`` that expires ``lifetime`` after ``now``.

        Raises:
            ValueError: the lifetime is not positive or longer than the configured maximum.
        """
        if lifetime <= timedelta(0) or lifetime > self.max_lifetime:
            raise ValueError(
                f"lifetime must be between 1 second and {self.max_lifetime.total_seconds():.0f} s"
            )
        expires = (now + lifetime).replace(microsecond=0)
        names = sorted(set(charts))
        payload = {"c": names, "p": dict(sorted(pins.items())), "e": expires.timestamp()}
        token = self._serializer.dumps(payload)
        assert isinstance(token, str)
        return EmbedGrant(token=token, charts=tuple(names), pins=dict(pins), expires_at=expires)

    def verify(self, token: str, *, now: datetime) -> Principal:
        """The principal a token stands for.

        Raises:
            InvalidTokenError: the token is malformed, its signature is wrong, or it expired.
        """
        try:
            payload = self._serializer.loads(token)
        except BadSignature:
            raise InvalidTokenError("bad signature") from None
        try:
            charts = frozenset(str(c) for c in payload["c"])
            pins = {str(k): str(v) for k, v in payload["p"].items()}
            expires = datetime.fromtimestamp(float(payload["e"]), UTC)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise InvalidTokenError("malformed") from None
        if expires <= now:
            raise InvalidTokenError("expired")
        # a token can never outlive the configured maximum, even if it was minted under a laxer one
        if expires - now > self.max_lifetime:
            raise InvalidTokenError("lifetime longer than allowed")
        return Principal(kind="token", name="embed-token", charts=charts, pins=pins)


def page_csp(frame_ancestors: Sequence[str]) -> str:
    """The policy of chart and dashboard pages: own scripts only, framed by the allow-list."""
    ancestors = " ".join(frame_ancestors) or "'none'"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
        f"frame-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}"
    )


_DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'"


_ALWAYS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)
_FRAMING = (
    (b"content-security-policy", _DEFAULT_CSP.encode()),
    (b"x-frame-options", b"DENY"),
)


def with_security_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """A response's raw headers plus nosniff, no-referrer, ``no-store`` unless it says how to
    cache, and a no-framing CSP unless it has a CSP of its own."""
    out = list(headers)
    present = {name.lower() for name, _ in out}
    out += [h for h in _ALWAYS if h[0] not in present]
    if b"content-security-policy" not in present:
        out += _FRAMING
    return out


class SecurityHeadersMiddleware:
    """Adds nosniff, no-referrer and, unless the route set its own, a no-framing CSP.

    Works on the raw header list of the response (no ``MutableHeaders`` per request: on a
    cached answer that was a third of the time the app spent)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = with_security_headers(message.get("headers", ()))
            await send(message)

        await self.app(scope, receive, send_with_headers)


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The API key a request presents (``X-API-Key``, else ``Authorization: Bearer``)."""
    presented: str | None = None
    for k, v in headers:
        if k == b"x-api-key":
            return v.decode("latin-1")
        if k == b"authorization":
            scheme, _, credentials = v.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials:
                presented = credentials.strip()
    return presented


RATE_LIMIT_EXEMPT = ("/healthz", "/static/")
"""paths never limited: liveness probes and the pages' static files"""


class RateLimitMiddleware:
    """Requests per API key (by name), or per client address for requests without a valid key
    (public-read, embed tokens, wrong keys): over the limit, **429** with ``Retry-After``.

    Counted in memory by the ``limits`` library (sliding window counter), per worker process:
    with ``--workers N`` a caller gets up to N times the limit. Behind a reverse proxy, run
    uvicorn with ``--proxy-headers`` so that the address is the client's, not the proxy's.
    """

    def __init__(self, app: ASGIApp, *, settings: RateLimitSettings, keyring: KeyRing) -> None:
        try:
            from limits import parse
            from limits.storage import MemoryStorage
            from limits.strategies import SlidingWindowCounterRateLimiter
        except ImportError as e:  # an optional dependency, needed only when enabled
            raise ConfigError(
                [("api.rate_limit.enabled", "needs the `limits` package (pip install limits)")]
            ) from e
        self.app = app
        self.keyring = keyring
        self.limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        self.per_key = parse(settings.per_key)
        self.per_address = parse(settings.per_address)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(RATE_LIMIT_EXEMPT):
            await self.app(scope, receive, send)
            return
        presented = presented_key(scope["headers"])
        principal = self.keyring.lookup(presented) if presented else None
        if principal is not None:
            limit, who = self.per_key, f"key:{principal.name}"
        else:
            client = scope.get("client")
            limit, who = self.per_address, f"address:{client[0] if client else 'unknown'}"
        if self.limiter.hit(limit, who):
            await self.app(scope, receive, send)
            return
        reset = self.limiter.get_window_stats(limit, who).reset_time
        retry = max(1, math.ceil(reset - time.time()))
        body = json.dumps(
            {"detail": f"rate limit exceeded ({limit}); retry after {retry} s"}
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"retry-after", str(retry).encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body})
