"""Errors of the app layer.

```
TicketflowError
├── ConfigError(key, reason)   invalid or missing configuration
├── WarehouseError             database unreachable, outdated or foreign schema
└── ImportFailedError          an event log could not be imported; nothing was written
```
"""

from __future__ import annotations

__all__ = ["ConfigError", "ImportFailedError", "TicketflowError", "WarehouseError"]


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
