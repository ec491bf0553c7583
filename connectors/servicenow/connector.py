"""``ServiceNowConnector``: task records, their audit history and comments, as sync pages.

Usage (the sync engine, app/sync.py, does this)::

    with make_servicenow_client(config) as client:
        sn = ServiceNowConnector(config, client)
        for page in sn.pages(since=cursor):
            events = sn.history(page, stored=..., fresh=...)
            store(page, events)   # then the cursor may move to page.position

Paging is keyset over ``(sys_updated_on, sys_id)`` (``query.keyset_query``): every request
starts after the last row received, so records that change during the scan move behind it and
are read again, and nothing shifts out of sight as it would with deep offsets. History is read
per page in bulk: ``sys_audit`` and ``sys_journal_field`` rows of the page's new and changed
records (``documentkeyIN``/``element_idIN``, 100 records a request, paged). Where ``sys_audit``
is not readable the history falls back to comparing snapshots, with a warning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import pandas as pd

from connectors.base import empty_events_frame
from connectors.config import ServiceNowSourceConfig
from connectors.errors import BadPayloadError
from connectors.protocol import ConnectorStats, TicketPage
from connectors.servicenow.choices import Choices, StateMapper, choice_params
from connectors.servicenow.client import ServiceNowHttp
from connectors.servicenow.history import audit_events
from connectors.servicenow.names import NameCache
from connectors.servicenow.query import (
    TABLE_PATH,
    format_sn_datetime,
    has_next,
    keyset_query,
    list_params,
    parse_result,
    parse_sn_datetime,
    total_count,
)
from connectors.servicenow.records import RECORD_FIELDS, Current, display, raw, records_frame
from connectors.servicenow.trail import TrailReader
from connectors.snapshot import snapshot_events

__all__ = ["PageContext", "ServiceNowConnector"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PageContext:
    table: str
    mapper: StateMapper
    currents: dict[str, Current]


@dataclass
class _Scan:
    """One table's keyset scan."""

    table: str
    position: datetime | None
    after: tuple[datetime, str] | None = None
    offset: int = 0
    seen: dict[str, datetime] = field(default_factory=dict)
    rows: int = 0
    done: bool = False
    finished_at: datetime | None = None


class ServiceNowConnector:
    """Reads task records and their history from one ServiceNow instance."""

    def __init__(
        self,
        config: ServiceNowSourceConfig,
        client: httpx.Client,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.http = ServiceNowHttp(config, client, sleep=sleep, clock=clock)
        self.warnings: list[str] = []
        self.names = NameCache(self.http, warn=self._warn)
        self.zone: tzinfo = UTC
        """the integration user's time zone: the instance reads query literals in it"""
        self.trail = TrailReader(
            self.http, config, names=self.names, warn=self._warn, zone=lambda: self.zone
        )
        self.mappers: dict[str, StateMapper] = {}
        self.fields = tuple(dict.fromkeys((*RECORD_FIELDS, *config.extra_fields)))
        self.audited = (
            config.state_field,
            "hold_reason",
            "assignment_group",
            "assigned_to",
            "priority",
        )
        self.unknown_mapped_to = config.unknown_status.value
        self.total: int | None = None

    @property
    def source(self) -> str:
        return self.config.name

    @property
    def stats(self) -> ConnectorStats:
        return self.http.stats

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
            log.warning("%s: %s", self.source, message, extra={"source": self.source})

    def details(self) -> dict[str, Any]:
        return {
            "tables": self.config.effective_tables,
            "user_time_zone": str(self.zone),
            "history": "sys_audit" if self.trail.audit else "snapshots",
            "paced_seconds": round(self.http.paced, 3),
            "warnings": list(self.warnings),
        }

    # --- choices --------------------------------------------------------------------------

    def mapper(self, table: str) -> StateMapper:
        """The table's state mapper, its labels read from ``sys_choice`` once per sync."""
        if table not in self.mappers:
            response = self.http.get(
                f"{TABLE_PATH}/sys_choice",
                choice_params(table=table, language=self.config.choice_language),
                accept=(403,),
            )
            if response.status_code == 403:
                self._warn(
                    "sys_choice is not readable (HTTP 403): state labels are the documented "
                    "defaults, which may not match this instance; grant read on sys_choice"
                )
                choices = Choices.defaults()
            else:
                rows = [
                    r
                    for r in parse_result(response, source=self.source)
                    if str(r.get("inactive", "false")).lower() != "true"
                    and r.get("language", self.config.choice_language)
                    == self.config.choice_language
                ]
                choices = Choices.from_rows(rows, table=table)
            self.mappers[table] = StateMapper.build(
                choices,
                state_field=self.config.state_field,
                status_map=self.config.status_map,
                fallback=self.config.unknown_status,
            )
        return self.mappers[table]

    def user_zone(self) -> tzinfo:
        """The integration user's time zone (``sys_user.time_zone``; UTC when unset or unreadable).

        ServiceNow reads the date literals of an encoded query in it, so the literals are
        written in it; anything but UTC is reported as a warning (an ambiguous hour at the end
        of daylight saving time cannot be written unambiguously).
        """
        response = self.http.get(
            f"{TABLE_PATH}/sys_user",
            {
                "sysparm_query": f"user_name={self.config.username or ''}",
                "sysparm_fields": "user_name,time_zone",
                "sysparm_limit": "1",
                "sysparm_display_value": "false",
            },
            accept=(403,),
        )
        if response.status_code == 403:
            return UTC
        rows = parse_result(response, source=self.source)
        name = str(rows[0].get("time_zone") or "") if rows else ""
        if name in ("", "UTC", "GMT", "Etc/UTC", "Etc/GMT", "Universal", "Zulu"):
            return UTC
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            self._warn(
                f"the integration user's time zone `{name}` is unknown here: query dates are "
                "written in UTC and may be off; set the user's time zone to GMT"
            )
            return UTC
        self._warn(
            f"the integration user's time zone is {name}, not UTC: query dates are written in "
            "it, which is ambiguous for an hour when daylight saving time ends; set the "
            "user's time zone to GMT"
        )
        return zone

    # --- tickets --------------------------------------------------------------------------

    def pages(self, *, since: datetime | None) -> Iterator[TicketPage]:
        """Every record of the configured tables modified at or after ``since``, oldest first.

        Raises:
            ConnectorError: see ``connectors.errors``; pages already yielded stay valid.
        """
        self.zone = self.user_zone()
        tables = self.config.effective_tables
        scans = [_Scan(table=t, position=since) for t in tables]
        number = 0
        for scan in scans:
            mapper = self.mapper(scan.table)
            while not scan.done:
                number += 1
                yield self._page(number, scan, scans, since, mapper, last_table=scan is scans[-1])

    def _page(
        self,
        number: int,
        scan: _Scan,
        scans: Sequence[_Scan],
        since: datetime | None,
        mapper: StateMapper,
        *,
        last_table: bool,
    ) -> TicketPage:
        limit = self.config.page_size
        params = list_params(
            query=keyset_query(since=since, after=scan.after, zone=self.zone),
            fields=self.fields,
            limit=limit,
            offset=scan.offset,
            display_value=self.config.display_value,
        )
        response = self.http.get(f"{TABLE_PATH}/{scan.table}", params)
        started = time.perf_counter()
        rows = parse_result(response, source=self.source)
        keys = self._keys(rows, response, scan.after)
        more = has_next(response, rows=len(rows), limit=limit, offset=scan.offset)
        if scan.after is None and scan.offset == 0:
            count = total_count(response)
            if count is not None:
                self.total = (self.total or 0) + count
        self.stats.seconds["decode"] += time.perf_counter() - started
        started = time.perf_counter()
        wanted: list[dict[str, Any]] = []
        for row, (updated, sys_id) in zip(rows, keys, strict=True):
            if since is not None and updated < since:
                continue
            previous = scan.seen.get(sys_id)
            if previous is not None and previous >= updated:
                continue
            scan.seen[sys_id] = updated
            wanted.append(row)
        if keys:
            scan.after, scan.offset = keys[-1], 0
            top = keys[-1][0]
            scan.position = top if scan.position is None else max(scan.position, top)
            scan.rows += len(rows)
        elif more:
            scan.offset += limit  # a page emptied by ACLs: step over it
        scan.done = not more
        when = self.http.last_date
        if scan.done:
            scan.finished_at = when
        frame, currents, actors, unknown = self._map(wanted, scan.table, mapper)
        self.stats.seconds["map"] += time.perf_counter() - started
        last = scan.done and last_table
        return TicketPage(
            number=number,
            tickets=frame,
            actors=actors,
            position=_frontier(scans),
            received=len(rows),
            last=last,
            unknown_statuses=unknown,
            server_time=when,
            total=self.total,
            context=PageContext(
                table=scan.table, mapper=mapper, currents={c.sys_id: c for c in currents}
            ),
            deleted=self.deleted_since(since) if last and since is not None else [],
        )

    # --- deletions ------------------------------------------------------------------------

    def deleted_since(self, since: datetime) -> list[str]:
        """sys_ids of records of the configured tables deleted at or after ``since``, from
        ``sys_audit_delete`` (the "Deleted Records" module), oldest first.

        Deletions are filed under the record's own table, which is what is configured here
        (``incident``, ``sc_req_item``...). Where the table is not readable (HTTP 403) or a
        table's deletions are not audited (``no_audit_delete``), this finds nothing and says
        so once: the weekly full sync still finds those deletions.
        """
        if not self.config.read_deletions:
            return []
        started = time.perf_counter()
        tables = ",".join(self.config.effective_tables)
        literal = format_sn_datetime(since, self.zone)
        query = f"tablenameIN{tables}^sys_created_on>={literal}^ORDERBYsys_created_on^ORDERBYsys_id"
        limit = self.config.history_page_size
        found: list[str] = []
        offset = 0
        while True:
            params = list_params(
                query=query,
                fields=("sys_id", "tablename", "documentkey", "sys_created_on"),
                limit=limit,
                offset=offset,
                display_value="false",
            )
            response = self.http.get(f"{TABLE_PATH}/sys_audit_delete", params, accept=(403,))
            if response.status_code == 403:
                self._warn(
                    "sys_audit_delete is not readable (HTTP 403): deleted records are found "
                    "by full syncs only; grant read on sys_audit_delete to see them at once"
                )
                return []
            rows = parse_result(response, source=self.source)
            found += [key for r in rows if (key := raw(r.get("documentkey")))]
            if not has_next(response, rows=len(rows), limit=limit, offset=offset):
                break
            offset += limit
        self.stats.seconds["deletions"] += time.perf_counter() - started
        return list(dict.fromkeys(found))

    def _keys(
        self,
        rows: list[dict[str, Any]],
        response: httpx.Response,
        after: tuple[datetime, str] | None,
    ) -> list[tuple[datetime, str]]:
        """Each row's ``(sys_updated_on, sys_id)``, checked to be sorted and past ``after``.

        Raises:
            BadPayloadError: a row without them, or rows out of order (the instance ignored
                the ORDERBY or the keyset condition: paging on would skip or loop).
        """
        keys: list[tuple[datetime, str]] = []
        for i, row in enumerate(rows):
            sys_id = raw(row.get("sys_id"))
            try:
                updated = parse_sn_datetime(raw(row.get("sys_updated_on")))
            except ValueError as e:
                raise BadPayloadError(
                    f"record {sys_id or i} has an unreadable sys_updated_on ({e})",
                    source=self.source,
                ) from e
            if not sys_id or updated is None:
                raise BadPayloadError(
                    f"row {i} of {response.request.url.path} has no sys_id or sys_updated_on "
                    "(is sysparm_fields honoured?)",
                    source=self.source,
                )
            key = (updated, sys_id)
            bound = keys[-1] if keys else after
            if bound is not None and key <= bound:
                raise BadPayloadError(
                    f"{response.request.url.path} returned rows out of (sys_updated_on, sys_id) "
                    f"order ({key[0]} {key[1]} after {bound[0]} {bound[1]}): the instance "
                    "ignored the query, so paging on it would skip or repeat records",
                    source=self.source,
                )
            keys.append(key)
        return keys

    def _map(
        self, rows: list[dict[str, Any]], table: str, mapper: StateMapper
    ) -> tuple[pd.DataFrame, list[Current], list[str | None], Any]:
        groups: set[str] = set()
        users: set[str] = set()
        for row in rows:
            for name, bucket in (("assignment_group", groups), ("assigned_to", users)):
                value = row.get(name)
                sys_id = raw(value)
                if sys_id:
                    bucket.add(sys_id)
                    self.names.seed(sys_id, display(value))
        self.names.resolve("assignment_group", groups)
        self.names.resolve("assigned_to", users)
        try:
            return records_frame(
                rows,
                source=self.source,
                table=table,
                base_url=self.config.base_url,
                mapper=mapper,
                names=self.names.names,
                audited=self.audited,
            )
        except ValueError as e:
            raise BadPayloadError(f"{table}: {e}", source=self.source) from e

    # --- history --------------------------------------------------------------------------

    def history(
        self, page: TicketPage, *, stored: pd.DataFrame, fresh: pd.DataFrame
    ) -> pd.DataFrame:
        """Events for the page's fresh records: from ``sys_audit`` (or snapshots), plus the
        journal. Records unchanged since they were stored cost no request."""
        if fresh.empty:
            return empty_events_frame()
        started = time.perf_counter()
        ctx: PageContext = page.context
        known = dict(zip(stored["external_id"], stored["updated_at"], strict=True))
        new: list[str] = []
        changed: list[str] = []
        for sys_id, updated in zip(fresh["external_id"], fresh["updated_at"], strict=True):
            before = known.get(sys_id)
            if before is None or pd.isna(before):
                new.append(str(sys_id))
            elif updated > before:
                changed.append(str(sys_id))
        window = min((known[i] for i in changed), default=None)
        since = window.to_pydatetime() if isinstance(window, pd.Timestamp) else window
        frames: list[pd.DataFrame] = []
        if self.trail.audit:
            rows = self.trail.audit_rows(ctx.table, new, changed, since)
            if rows is not None:
                self.trail.resolve_names(rows)
                currents = [ctx.currents[i] for i in (*new, *changed)]
                frames.append(
                    audit_events(
                        rows,
                        currents,
                        source=self.source,
                        new=set(new),
                        mapper=ctx.mapper,
                        names=self.names.get,
                    )
                )
        if not self.trail.audit:
            actors = pd.Series(page.actors, dtype=object)
            frames.append(snapshot_events(stored, fresh, actors=actors[fresh.index]))
        if self.trail.journal and (new or changed):
            frames.append(self.trail.read_journal(ctx.table, new, changed, since))
        self.stats.seconds["history"] += time.perf_counter() - started
        frames = [f for f in frames if not f.empty]
        if not frames:
            return empty_events_frame()
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _frontier(scans: Sequence[_Scan]) -> datetime | None:
    """How far every table's scan has come: the least of their positions.

    A table not started yet is at the run's start; a finished table that returned rows at its
    newest row; one that returned none (when there are several tables) at the server's time of
    its last answer, less a second (the resolution of ``sys_updated_on``), so an idle table does
    not hold the cursor back for ever.
    """
    if len(scans) == 1:
        return scans[0].position
    positions: list[datetime | None] = []
    for scan in scans:
        if scan.done and scan.rows == 0 and scan.finished_at is not None:
            positions.append(scan.finished_at.replace(microsecond=0) - timedelta(seconds=1))
        else:
            positions.append(scan.position)
    if any(p is None for p in positions):
        return None
    return min(p for p in positions if p is not None)
