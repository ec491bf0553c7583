"""Connector errors.

```
ConnectorError(source)                  every connector failure
├── ConnectorConfigError                bad credentials, base URL or settings: don't retry
├── TransientConnectorError             5xx, timeouts: retry with backoff
│   └── RateLimitedError(retry_after)   429 + Retry-After
├── UpstreamResponseError(status, url)  other 4xx
├── BadPayloadError                     data not in the shape we parse (a page, a file, a row)
└── UnknownConnectorError(name, known)
```
Messages show the bad value and never a secret.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "BadPayloadError",
    "ConnectorConfigError",
    "ConnectorError",
    "RateLimitedError",
    "TransientConnectorError",
    "UnknownConnectorError",
    "UpstreamResponseError",
]


class ConnectorError(Exception):
    """Base of every connector failure; ``source`` names the configured source."""

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        prefix = f"source `{source}`: " if source else ""
        super().__init__(prefix + message)


class ConnectorConfigError(ConnectorError):
    """The source is misconfigured: retrying will not help."""


class TransientConnectorError(ConnectorError):
    """A failure that may pass: retry with backoff."""


class RateLimitedError(TransientConnectorError):
    def __init__(
        self, message: str, *, source: str | None = None, retry_after: float | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, source=source)


class UpstreamResponseError(ConnectorError):
    def __init__(self, message: str, *, source: str | None = None, status: int, url: str) -> None:
        self.status = status
        self.url = url
        super().__init__(message, source=source)


class BadPayloadError(ConnectorError):
    """The data is not in the shape we parse: a malformed page, file or column set."""


class UnknownConnectorError(ConnectorError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown kind `{name}`; known kinds: {', '.join(self.known)}")
