"""The HTTP side of the ServiceNow connector: the client (Basic or OAuth 2), requests with
retries, and pacing on the instance's rate-limit headers.

- ``make_servicenow_client(config)``: ``connectors.http.make_client`` with Basic auth, or with
  ``OAuthPasswordAuth`` (``POST /oauth_token.do``, password grant, then the refresh token when
  the access token expires or is refused).
- ``ServiceNowHttp.get``: one GET through ``connectors.http.send`` (5xx and timeouts retried,
  429 waits ``Retry-After``), counted in ``stats``, then paced: when ``X-RateLimit-Remaining``
  reaches ``pace_reserve`` it sleeps until ``X-RateLimit-Reset`` so the next request does not
  run into the limit at all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Mapping
from datetime import datetime

import httpx

from connectors.config import ServiceNowSourceConfig
from connectors.errors import ConnectorConfigError, TransientConnectorError
from connectors.http import RetryPolicy, counted_get, make_client, retry_policy, server_time
from connectors.protocol import ConnectorStats

__all__ = [
    "TOKEN_PATH",
    "OAuthPasswordAuth",
    "ServiceNowHttp",
    "make_servicenow_client",
    "pace_wait",
]

log = logging.getLogger(__name__)

TOKEN_PATH = "/oauth_token.do"
TOKEN_MARGIN = 30.0
"""seconds before its expiry that an access token is renewed"""
MAX_PACE_WAIT = 3600.0
PACE_MARGIN = 1.0
"""seconds added to a pacing wait (the reset time has a resolution of one second)"""


class OAuthPasswordAuth(httpx.Auth):
    """OAuth 2 password grant against ``/oauth_token.do``, renewing with the refresh token.

    The token answer is ``{"access_token", "refresh_token", "token_type": "Bearer",
    "expires_in": 1799, "scope"}``. A request refused with 401 gets one new token (refresh
    grant, else the password grant again) and is sent once more.
    """

    requires_response_body = True

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        username: str,
        password: str,
        source: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token_url = token_url
        self._form = {
            "client_id": client_id,
            "client_secret": client_secret,
            "username": username,
            "password": password,
        }
        self.source = source
        self.clock = clock
        self.access: str | None = None
        self.refresh: str | None = None
        self.expires_at = 0.0
        self.tokens_fetched = 0
        self._lock = threading.Lock()

    def _token_request(self, grant: str) -> httpx.Request:
        if grant == "refresh_token":
            assert self.refresh is not None
            data = {
                "grant_type": "refresh_token",
                "client_id": self._form["client_id"],
                "client_secret": self._form["client_secret"],
                "refresh_token": self.refresh,
            }
        else:
            data = {"grant_type": "password", **self._form}
        return httpx.Request("POST", self.token_url, data=data)

    def _take(self, response: httpx.Response, grant: str) -> bool:
        """Store a token answer; False when the grant was refused."""
        status = response.status_code
        if status >= 500 or status == 429:
            raise TransientConnectorError(
                f"the OAuth token request ({grant} grant) got HTTP {status}", source=self.source
            )
        if status != 200:
            if grant == "refresh_token":
                self.refresh = None
                return False
            raise ConnectorConfigError(
                f"the OAuth token request ({grant} grant) got HTTP {status}: check `client_id`, "
                "the client secret (client_secret_env / client_secret_file), `username` and the "
                "password, and that the OAuth application is active",
                source=self.source,
            )
        try:
            body = response.json()
            self.access = str(body["access_token"])
            refresh = body.get("refresh_token")
            self.refresh = str(refresh) if refresh else self.refresh
            self.expires_at = self.clock() + float(body.get("expires_in") or 1800) - TOKEN_MARGIN
        except (ValueError, KeyError, TypeError) as e:
            raise ConnectorConfigError(
                f"the OAuth token answer is not a token ({type(e).__name__}): is base_url "
                "a ServiceNow instance?",
                source=self.source,
            ) from e
        self.tokens_fetched += 1
        return True

    def _renew(self) -> Generator[httpx.Request, httpx.Response, None]:
        if self.refresh is not None:
            response = yield self._token_request("refresh_token")
            if self._take(response, "refresh_token"):
                return
        response = yield self._token_request("password")
        self._take(response, "password")

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.access is None or self.clock() >= self.expires_at:
            yield from self._renew()
        request.headers["Authorization"] = f"Bearer {self.access}"
        response = yield request
        if response.status_code == 401:
            yield from self._renew()
            request.headers["Authorization"] = f"Bearer {self.access}"
            yield request


def make_servicenow_client(
    config: ServiceNowSourceConfig, *, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """The client for ``config``: Basic auth, or OAuth 2 when ``auth = "oauth"``.

    Raises:
        ConnectorConfigError: a secret cannot be read.
    """
    client = make_client(config, transport=transport)
    if config.auth == "oauth":
        try:
            secret = config.client_secret()
            password = config.password()
        except ValueError as e:
            client.close()
            raise ConnectorConfigError(
                str(e).removeprefix(f"source `{config.name}`: "), source=config.name
            ) from e
        client.auth = OAuthPasswordAuth(
            token_url=config.base_url + TOKEN_PATH,
            client_id=config.client_id or "",
            client_secret=secret.get_secret_value() if secret else "",
            username=config.username or "",
            password=password.get_secret_value() if password else "",
            source=config.name,
        )
    return client


def pace_wait(
    headers: Mapping[str, str], *, reserve: int, now: float, used: int | None = None
) -> float:
    """Seconds to wait before the next request so that it stays within the rate limit.

    Requests left in the window: ``X-RateLimit-Remaining``, else ``X-RateLimit-Limit`` less
    ``used`` (the requests this client made since ``X-RateLimit-Reset`` last changed; the
    instance may send only Limit, Reset and Rule). At or below ``reserve``: until
    ``X-RateLimit-Reset`` (Unix time of the window's end, against ``now`` in Unix seconds) plus
    a second; otherwise 0.
    """
    try:
        reset = float(headers["X-RateLimit-Reset"])
        if "X-RateLimit-Remaining" in headers:
            remaining = int(headers["X-RateLimit-Remaining"])
        elif used is not None:
            remaining = int(headers["X-RateLimit-Limit"]) - used
        else:
            return 0.0
    except (KeyError, ValueError):
        return 0.0
    if remaining > reserve:
        return 0.0
    return min(MAX_PACE_WAIT, max(0.0, reset - now) + PACE_MARGIN)


def _wall() -> float:
    """Unix time, which ``X-RateLimit-Reset`` is written in."""
    return time.time()


def _hints(config: ServiceNowSourceConfig) -> dict[int, str]:
    password = config.password_source()
    what = "the OAuth token was refused" if config.auth == "oauth" else "the credentials"
    return {
        401: (
            f"ServiceNow refused {what}: check `username` ({config.username!r}) and the "
            f"password ({password}), that the user is active and not locked out, and that "
            "'Web service access only' users are allowed"
        ),
        403: (
            "the user may not read this table: give it the itil or snc_read_only role and "
            "read ACLs on the tables listed in docs/connectors/servicenow.md"
        ),
        404: (
            "not found: check `base_url` (the instance's address, e.g. "
            "https://acme.service-now.com) and the table names"
        ),
    }


class ServiceNowHttp:
    """GET requests to one instance, with retries, counters and rate-limit pacing."""

    def __init__(
        self,
        config: ServiceNowSourceConfig,
        client: httpx.Client,
        *,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        stats: ConnectorStats | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or _wall
        self.client = client
        self.policy = policy or retry_policy(config)
        self.sleep = sleep
        self.stats = stats or ConnectorStats()
        self.hints = _hints(config)
        self.paced = 0.0
        """seconds slept to stay within the rate limit"""
        self._window: str | None = None
        self._used = 0
        self.last_date: datetime | None = None

    @property
    def source(self) -> str:
        return self.config.name

    def get(
        self, path: str, params: Mapping[str, str], *, accept: tuple[int, ...] = ()
    ) -> httpx.Response:
        """GET ``path`` (below ``base_url``).

        Raises:
            ConnectorError: see ``connectors.http.send``.
        """
        response = counted_get(
            self.client,
            path,
            params,
            source=self.source,
            policy=self.policy,
            stats=self.stats,
            hints=self.hints,
            sleep=self.sleep,
            accept=accept,
        )
        self.last_date = server_time(response) or self.last_date
        self._pace(response)
        return response

    def _pace(self, response: httpx.Response) -> None:
        if not self.config.pace:
            return
        reset = response.headers.get("X-RateLimit-Reset")
        if reset != self._window:
            self._window, self._used = reset, 0
        self._used += 1
        wait = pace_wait(
            response.headers, reserve=self.config.pace_reserve, now=self.clock(), used=self._used
        )
        if wait > 0:
            log.info(
                "rate limit nearly used up (%s left): waiting %.1f s for the window to reset",
                response.headers.get("X-RateLimit-Remaining"),
                wait,
                extra={"source": self.source, "wait_seconds": wait},
            )
            self.paced += wait
            self.sleep(wait)
