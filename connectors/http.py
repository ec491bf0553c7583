"""Shared HTTP plumbing for network connectors: the client, error mapping, retries.

- ``make_client(config)`` builds the ``httpx.Client`` a connector is given: base URL, Basic auth,
  explicit timeouts, TLS settings and a ``User-Agent`` with a contact address.
- ``ERROR_MAPPING`` turns an HTTP status into our error class (a dict, not an ``if`` chain).
- ``RetryPolicy`` + ``send`` retry 5xx, timeouts and connection errors with exponential backoff
  and full jitter, and wait out a 429's ``Retry-After`` (up to a cap); everything else fails at
  once. Retries use tenacity.

Nothing here logs or raises a secret: requests are described by method, path and query only,
and the ``Authorization`` header never leaves httpx.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import ssl
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from connectors.config import HttpSourceConfig
from connectors.errors import (
    ConnectorConfigError,
    ConnectorError,
    RateLimitedError,
    TransientConnectorError,
    UpstreamResponseError,
)

__all__ = [
    "ERROR_MAPPING",
    "USER_AGENT",
    "RequestCounters",
    "RetryPolicy",
    "counted_get",
    "describe",
    "error_for_response",
    "make_client",
    "parse_retry_after",
    "retry_policy",
    "send",
    "server_time",
]

log = logging.getLogger(__name__)

USER_AGENT = "ticketflow/0.1 (+https://github.com/ticketflow/ticketflow; ticket-flow analytics)"
CONNECT_TIMEOUT_CAP = 10.0

ERROR_MAPPING: dict[int, type[ConnectorError]] = {
    400: UpstreamResponseError,
    401: ConnectorConfigError,
    403: ConnectorConfigError,
    404: ConnectorConfigError,
    408: TransientConnectorError,
    429: RateLimitedError,
    500: TransientConnectorError,
    502: TransientConnectorError,
    503: TransientConnectorError,
    504: TransientConnectorError,
}
"""status -> error class; other 5xx are transient, other 4xx ``UpstreamResponseError``"""

Hints = Mapping[int, str]
"""status -> what the user should check, appended to the error message"""


def make_client(
    config: HttpSourceConfig,
    *,
    transport: httpx.BaseTransport | None = None,
    base_path: str = "",
) -> httpx.Client:
    """The client a connector uses for ``config``: auth, timeouts, TLS, headers.

    Args:
        config: the source; its password is resolved here (``password_env``/``password_file``).
        transport: replaces the network (tests pass ``httpx.MockTransport(fake)``).
        base_path: appended to ``config.base_url`` (e.g. ``/tas/api``).

    Raises:
        ConnectorConfigError: the password cannot be read.
    """
    try:
        secret = config.password()
    except ValueError as e:
        raise ConnectorConfigError(
            str(e).removeprefix(f"source `{config.name}`: "), source=config.name
        ) from e
    auth: httpx.Auth | None = None
    if config.username is not None:
        auth = httpx.BasicAuth(config.username, secret.get_secret_value() if secret else "")
    timeout = httpx.Timeout(
        config.timeout_seconds, connect=min(CONNECT_TIMEOUT_CAP, config.timeout_seconds)
    )
    kwargs: dict[str, Any] = {}
    if transport is not None:
        kwargs["transport"] = transport
    else:
        kwargs["verify"] = _ssl_context(
            config.verify_tls,
            str(config.ca_file) if config.ca_file else None,
            os.environ.get("SSL_CERT_FILE"),
            os.environ.get("SSL_CERT_DIR"),
        )
    return httpx.Client(
        base_url=config.base_url + base_path,
        auth=auth,
        timeout=timeout,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        follow_redirects=False,
        trust_env=True,
        **kwargs,
    )


@functools.lru_cache(maxsize=8)
def _ssl_context(
    verify: bool, ca_file: str | None, _cert_file: str | None, _cert_dir: str | None
) -> ssl.SSLContext:
    """One TLS context per setting (loading CA certificates costs ~0.1 s a client).

    The ``SSL_CERT_FILE``/``SSL_CERT_DIR`` arguments only key the cache: httpx reads them.
    """
    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    return httpx.create_ssl_context(verify=verify)


def describe(request: httpx.Request) -> str:
    """``GET /path?a=1&b=2``: what a log line or an error may say about a request.

    The query is shown decoded, and long values (``fields=`` lists) are shortened.
    """
    url = request.url
    params = [f"{k}={v if len(v) <= 60 else v[:40] + '...'}" for k, v in url.params.multi_items()]
    query = f"?{'&'.join(params)}" if params else ""
    return f"{request.method} {url.path}{query}"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _excerpt(response: httpx.Response, limit: int = 200) -> str:
    try:
        text = response.text
    except Exception:  # undecodable body: say so instead of failing the error path
        return "<undecodable body>"
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "")


def error_for_response(
    response: httpx.Response,
    *,
    source: str,
    hints: Hints | None = None,
    max_retry_after: float | None = None,
) -> ConnectorError | None:
    """The error a response means, or None for a success (2xx).

    The message names the request (method, path, query), the status and the start of the body;
    ``hints`` add what to check for a status (e.g. credentials on 401). A 429 whose
    ``Retry-After`` exceeds ``max_retry_after`` is a plain ``ConnectorError``: not retried.
    """
    status = response.status_code
    if 200 <= status < 300:
        return None
    where = describe(response.request)
    message = f"HTTP {status} {response.reason_phrase} for {where}"
    hint = (hints or {}).get(status)
    if hint:
        message += f": {hint}"
    body = _excerpt(response)
    if body:
        message += f" (server said: {body})"
    cls = ERROR_MAPPING.get(status)
    if cls is None:
        cls = TransientConnectorError if status >= 500 else UpstreamResponseError
    if cls is RateLimitedError:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if (
            retry_after is not None
            and max_retry_after is not None
            and retry_after > max_retry_after
        ):
            return ConnectorError(
                f"{message}; the server asks to wait {retry_after:.0f} s, more than "
                f"max_retry_after_seconds ({max_retry_after:.0f} s): try again later",
                source=source,
            )
        return RateLimitedError(message, source=source, retry_after=retry_after)
    if cls is UpstreamResponseError:
        return UpstreamResponseError(message, source=source, status=status, url=where)
    return cls(message, source=source)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a request.

    Waits are ``uniform(0, min(max_backoff, backoff * 2**(attempt-1)))`` ("full jitter"), except
    after a 429 with ``Retry-After``, which is honoured as given (a little jitter on top) when it
    is at most ``max_retry_after``; a longer one stops at once.
    """

    max_attempts: int = 6
    backoff: float = 1.0
    max_backoff: float = 60.0
    max_retry_after: float = 300.0

    def wait(self, attempt: int, error: BaseException | None) -> float:
        """Seconds to sleep after failed attempt number ``attempt`` (1-based)."""
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            return error.retry_after + random.uniform(0, min(1.0, self.backoff))
        ceiling = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)


def retry_policy(config: HttpSourceConfig) -> RetryPolicy:
    """The policy a source's settings ask for."""
    return RetryPolicy(
        max_attempts=config.max_attempts,
        backoff=config.backoff_seconds,
        max_backoff=config.max_backoff_seconds,
        max_retry_after=config.max_retry_after_seconds,
    )


def _transport_error(
    e: httpx.TransportError, request: httpx.Request, source: str
) -> ConnectorError:
    kind = "timed out" if isinstance(e, httpx.TimeoutException) else "failed"
    message = f"{describe(request)} {kind} ({type(e).__name__})"
    if isinstance(e, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return ConnectorConfigError(message + ": check base_url", source=source)
    return TransientConnectorError(message, source=source)


def send(
    client: httpx.Client,
    request: httpx.Request,
    *,
    source: str,
    policy: RetryPolicy,
    hints: Hints | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[ConnectorError, float], None] | None = None,
    accept: Collection[int] = (),
) -> httpx.Response:
    """Send ``request``, retrying what may pass; return the 2xx response (or one whose status
    is in ``accept``).

    Raises:
        ConnectorConfigError: 401/403/404 and the like (never retried).
        RateLimitedError: still rate limited after ``policy.max_attempts``, or asked to wait
            longer than ``policy.max_retry_after``.
        TransientConnectorError: 5xx or timeouts after ``policy.max_attempts``.
        UpstreamResponseError: any other 4xx.
    """

    def attempt() -> httpx.Response:
        try:
            response = client.send(request)
        except httpx.TransportError as e:
            raise _transport_error(e, request, source) from e
        if response.status_code in accept:
            return response
        error = error_for_response(
            response, source=source, hints=hints, max_retry_after=policy.max_retry_after
        )
        if error is None:
            return response
        response.close()
        raise error

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        return policy.wait(state.attempt_number, error)

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        seconds = state.upcoming_sleep
        assert isinstance(error, ConnectorError)
        log.warning(
            "retrying %s in %.1f s after: %s",
            describe(request),
            seconds,
            error,
            extra={"source": source, "attempt": state.attempt_number, "wait_seconds": seconds},
        )
        if on_retry is not None:
            on_retry(error, seconds)

    retrying = Retrying(
        stop=stop_after_attempt(policy.max_attempts),
        wait=wait,
        retry=retry_if_exception_type(TransientConnectorError),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(attempt)


class RequestCounters(Protocol):
    """The counters ``counted_get`` keeps (a connector's stats)."""

    requests: int
    retries: int
    seconds: defaultdict[str, float]


def counted_get(
    client: httpx.Client,
    path: str,
    params: Mapping[str, str],
    *,
    source: str,
    policy: RetryPolicy,
    stats: RequestCounters,
    hints: Hints | None = None,
    sleep: Callable[[float], None] = time.sleep,
    accept: Collection[int] = (),
) -> httpx.Response:
    """GET ``path`` (below the client's base URL) through ``send``, counting every request and
    retry in ``stats`` and the time spent waiting on the server in ``stats.seconds["http"]``.

    Raises:
        ConnectorError: see ``send``.
    """
    request = client.build_request("GET", path, params=params, timeout=client.timeout)
    log.debug("GET %s", describe(request), extra={"source": source})

    def on_retry(_error: ConnectorError, _wait: float) -> None:
        stats.retries += 1
        stats.requests += 1

    started = time.perf_counter()
    try:
        return send(
            client,
            request,
            source=source,
            policy=policy,
            hints=hints,
            sleep=sleep,
            on_retry=on_retry,
            accept=accept,
        )
    finally:
        stats.requests += 1
        stats.seconds["http"] += time.perf_counter() - started


def server_time(response: httpx.Response) -> datetime | None:
    """The response's ``Date`` header as aware UTC (None when absent or unreadable)."""
    value = response.headers.get("Date")
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
