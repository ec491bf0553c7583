"""Reading a page's history in bulk: ``sys_audit`` rows and ``sys_journal_field`` entries of
its new and changed records, 100 records a request (``documentkeyIN``/``element_idIN``), each
query paged by offset (these tables only grow at the end of the order, so offsets are stable).

A 403 on either table is not an error: the reader turns that source of history off for the run
and reports a warning (``ServiceNowConnector`` then falls back to snapshots for the audit).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any

import pandas as pd

from connectors.base import empty_events_frame
from connectors.config import ServiceNowSourceConfig
from connectors.errors import BadPayloadError
from connectors.servicenow.client import ServiceNowHttp
from connectors.servicenow.history import AuditRow, journal_events, parse_audit_rows
from connectors.servicenow.names import NameCache
from connectors.servicenow.query import (
    TABLE_PATH,
    audit_params,
    has_next,
    journal_params,
    parse_result,
)

__all__ = ["HISTORY_CHUNK", "TrailReader"]

HISTORY_CHUNK = 100
"""records per ``sys_audit``/``sys_journal_field`` request (keeps the URL near 4 kB)"""


class TrailReader:
    """The audit and journal requests of one sync."""

    def __init__(
        self,
        http: ServiceNowHttp,
        config: ServiceNowSourceConfig,
        *,
        names: NameCache,
        warn: Callable[[str], None],
        zone: Callable[[], tzinfo],
    ) -> None:
        self.http = http
        self.config = config
        self.names = names
        self.warn = warn
        self.zone = zone
        self.audit = config.audit
        """still reading ``sys_audit`` (off by config, or after a 403)"""
        self.journal = config.comments or config.work_notes
        self.elements = [
            e for e, on in (("comments", config.comments), ("work_notes", config.work_notes)) if on
        ]

    def _paged(
        self, path: str, build: Callable[[int], dict[str, str]]
    ) -> list[dict[str, Any]] | None:
        """Every row of a fixed query, by offset (rows are only ever appended to these
        tables, at the end of the order); None on 403."""
        out: list[dict[str, Any]] = []
        offset = 0
        limit = self.config.history_page_size
        while True:
            response = self.http.get(path, build(offset), accept=(403,))
            if response.status_code == 403:
                return None
            rows = parse_result(response, source=self.http.source)
            out += rows
            if not has_next(response, rows=len(rows), limit=limit, offset=offset):
                return out
            offset += limit

    def _per_chunk(
        self,
        path: str,
        new: list[str],
        changed: list[str],
        since: datetime | None,
        build: Callable[[list[str], datetime | None, int], dict[str, str]],
    ) -> list[dict[str, Any]] | None:
        rows: list[dict[str, Any]] = []
        for ids, start in ((new, None), (changed, since)):
            for i in range(0, len(ids), HISTORY_CHUNK):
                chunk = ids[i : i + HISTORY_CHUNK]
                got = self._paged(path, functools.partial(build, chunk, start))
                if got is None:
                    return None
                rows += got
        return rows

    def audit_rows(
        self, table: str, new: list[str], changed: list[str], since: datetime | None
    ) -> list[AuditRow] | None:
        """Audit rows of the tracked fields: all of ``new`` records', ``changed`` ones' from
        ``since`` on; None when ``sys_audit`` is not readable (then ``audit`` turns off).

        Raises:
            ConnectorError: a request failed; BadPayloadError for rows not in the shape parsed.
        """
        limit = self.config.history_page_size
        got = self._per_chunk(
            f"{TABLE_PATH}/sys_audit",
            new,
            changed,
            since,
            lambda ids, start, offset: audit_params(
                table=table, ids=ids, since=start, limit=limit, offset=offset, zone=self.zone()
            ),
        )
        if got is None:
            self.audit = False
            self.warn(
                "sys_audit is not readable (HTTP 403): history comes from comparing snapshots "
                "(changes between two syncs collapse into one); grant read on sys_audit "
                "(see docs/connectors/servicenow.md)"
            )
            return None
        try:
            return parse_audit_rows(got)
        except ValueError as e:
            raise BadPayloadError(str(e), source=self.http.source) from e

    def resolve_names(self, rows: list[AuditRow]) -> None:
        """Look up the names of the groups and users the rows mention (cached per sync)."""
        for name in ("assignment_group", "assigned_to"):
            ids = {v for r in rows if r.field == name for v in (r.old, r.new)}
            self.names.resolve(name, ids)

    def read_journal(
        self, table: str, new: list[str], changed: list[str], since: datetime | None
    ) -> pd.DataFrame:
        """Journal entries of these records as events; none when the table is not readable
        (then ``journal`` turns off).

        Raises:
            ConnectorError: a request failed; BadPayloadError for entries not in the shape parsed.
        """
        limit = self.config.history_page_size
        got = self._per_chunk(
            f"{TABLE_PATH}/sys_journal_field",
            new,
            changed,
            since,
            lambda ids, start, offset: journal_params(
                table=table,
                ids=ids,
                elements=self.elements,
                since=start,
                limit=limit,
                offset=offset,
                zone=self.zone(),
            ),
        )
        if got is None:
            self.journal = False
            self.warn(
                "sys_journal_field is not readable (HTTP 403): no customer-update events; "
                "grant read on sys_journal_field"
            )
            return empty_events_frame()
        try:
            return journal_events(got, source=self.http.source, records={*new, *changed})
        except ValueError as e:
            raise BadPayloadError(str(e), source=self.http.source) from e
