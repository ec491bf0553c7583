"""Who may call the fake and how often: Basic auth, OAuth 2 tokens, the rate-limit window.

``POST /oauth_token.do`` takes a form: ``grant_type=password`` with ``client_id``,
``client_secret``, ``username`` and ``password``, or ``grant_type=refresh_token`` with the
refresh token; it answers ``{access_token, refresh_token, scope, token_type: "Bearer",
expires_in}``, or 401 ``{"error_description": "access_denied", "error": "server_error"}``.
Access tokens expire after ``token_lifetime`` seconds of ``wall`` time. With ``rate_limit``
set, each authenticated request counts against a fixed window of ``rate_window_seconds`` that
starts with its first request.
"""

from __future__ import annotations

import base64
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import httpx

__all__ = ["Access"]


@dataclass
class _Token:
    user: str
    expires: float


@dataclass
class _Window:
    start: float = 0.0
    used: int = 0
    rule: str = field(default_factory=lambda: secrets.token_hex(16))


class Access:
    """Mixed into the fake: credentials, tokens and the request window."""

    lock: threading.RLock

    def init_access(
        self,
        *,
        username: str,
        password: str,
        client_id: str | None,
        client_secret: str | None,
        rate_limit: int | None,
        rate_window_seconds: float,
    ) -> None:
        self.username = username
        self.password = password
        self.client_id = client_id
        self.client_secret = client_secret
        self.rate_limit = rate_limit
        self.rate_window_seconds = rate_window_seconds
        self.basic_auth = True
        """False: Basic credentials are refused (an instance that only takes OAuth tokens)"""
        self.token_lifetime: float = 1799
        """seconds an OAuth access token lives (``expires_in``)"""
        self.refresh_token_lifetime: float = 100 * 86_400
        self.wall: Callable[[], float] = time.time
        """real time, for token expiry and the rate-limit window (tests may replace it)"""
        self._tokens: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}
        self._window = _Window()

    def expire_tokens(self) -> None:
        """Make every OAuth access token expired (refresh tokens stay valid)."""
        with self.lock:
            for token in self._tokens.values():
                token.expires = 0

    def authenticated(self, request: httpx.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic" and self.basic_auth:
            expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return secrets.compare_digest(value.strip(), expected)
        if scheme.lower() == "bearer":
            with self.lock:
                token = self._tokens.get(value.strip())
                return token is not None and token.expires > self.wall()
        return False

    def count_request(self) -> tuple[bool, dict[str, str], float]:
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

    def oauth(self, request: httpx.Request) -> httpx.Response:
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
