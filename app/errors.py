"""Errors of the app layer.

```
TicketflowError
├── ConfigError(key, reason)   invalid or missing configuration
├── WarehouseError             database unreachable, outdated or foreign schema      -> HTTP 503
├── ImportFailedError          an event log could not be imported; nothing was written
└── NotFoundError(what)        the API was asked for something that does not exist  -> HTTP 404
```

``HTTP_STATUS`` maps the errors the API can meet to status codes; ``install_error_handlers``
turns them into JSON ``{"detail": message}`` answers. Database driver errors (SQLAlchemy's
``OperationalError``, e.g. the server went away) answer 503, never 500 with a traceback.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

__all__ = [
    "HTTP_STATUS",
    "ConfigError",
    "ImportFailedError",
    "NotFoundError",
    "TicketflowError",
    "WarehouseError",
    "install_error_handlers",
]

log = logging.getLogger(__name__)


class TicketflowError(Exception):
    """Base of the app's own errors: the CLI prints the message and exits non-zero."""


class ConfigError(TicketflowError):
    def __init__(self, problems: list[tuple[str, str]], *, origin: str | None = None) -> None:
        self.problems = problems
        where = f" in {origin}" if origin else ""
        lines = [f"invalid configuration{where}:"]
        lines += [f"  {key}: {reason}" for key, reason in problems]
        super().__init__("\n".join(lines))


class WarehouseError(TicketflowError):
    pass


class ImportFailedError(TicketflowError):
    pass


class NotFoundError(TicketflowError):
    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"{what} not found")


HTTP_STATUS: dict[type[Exception], int] = {
    NotFoundError: 404,
    WarehouseError: 503,
}


def install_error_handlers(app: FastAPI) -> None:
    """Answer our errors with their status and message, and database outages with 503."""
    from fastapi.responses import JSONResponse
    from sqlalchemy.exc import DBAPIError, OperationalError

    async def known(_request: Request, exc: Exception) -> JSONResponse:
        status = next(code for cls, code in HTTP_STATUS.items() if isinstance(exc, cls))
        return JSONResponse({"detail": str(exc)}, status_code=status)

    async def database_down(_request: Request, exc: Exception) -> JSONResponse:
        # a driver's message can hold the connection URL: log the class only
        log.error("warehouse unavailable: %s", type(exc).__name__)
        return JSONResponse({"detail": "the warehouse is unavailable"}, status_code=503)

    app.add_exception_handler(NotFoundError, known)
    app.add_exception_handler(WarehouseError, database_down)
    app.add_exception_handler(OperationalError, database_down)
    app.add_exception_handler(DBAPIError, database_down)
