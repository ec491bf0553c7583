"""Errors raised by the analytics package.

```
AnalyticsError                      # every analytics failure
├── MissingColumnsError(missing)    # an input frame lacks columns a function needs
├── InvalidInputError(detail)       # wrong dtypes, naive timestamps, duplicate ticket keys
└── InvalidSettingsError(detail)    # settings that cannot work (a calendar without work days, ...)
```

``app/errors.py`` maps ``MissingColumnsError`` and ``InvalidInputError`` to 422.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["AnalyticsError", "InvalidInputError", "InvalidSettingsError", "MissingColumnsError"]


class AnalyticsError(Exception):
    """Root of every error the analytics raise."""


class MissingColumnsError(AnalyticsError):
    """An input frame lacks columns the function needs."""

    def __init__(self, *, missing: Iterable[str], frame: str = "frame") -> None:
        self.missing = sorted(missing)
        self.frame = frame
        super().__init__(f"{frame} is missing columns: {', '.join(f'`{c}`' for c in self.missing)}")


class InvalidInputError(AnalyticsError):
    """An input has the columns but not the shape the analytics need."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class InvalidSettingsError(AnalyticsError):
    """Settings that cannot produce a meaningful result."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)
