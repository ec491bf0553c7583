"""Display names of groups and users by sys_id, looked up in bulk and cached for a sync.

Audit rows hold references as sys_ids; the ticket columns hold names. Names seen in display
values are remembered; the rest are read ``sys_idIN...`` from ``sys_user_group`` (``name``) and
``sys_user`` (``name``, else ``user_name``), 100 at a time. An unreadable table (403) is
reported once as a warning and its sys_ids stay as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from connectors.errors import BadPayloadError
from connectors.servicenow.client import ServiceNowHttp
from connectors.servicenow.query import TABLE_PATH, lookup_params, parse_result

__all__ = ["LOOKUP_CHUNK", "NameCache"]

LOOKUP_CHUNK = 100
TABLES = {"assignment_group": "sys_user_group", "assigned_to": "sys_user"}


class NameCache:
    """sys_id -> display name for the reference fields the history tracks."""

    def __init__(self, http: ServiceNowHttp, *, warn: Callable[[str], None]) -> None:
        self.http = http
        self.warn = warn
        self.names: dict[str, str] = {}
        self.tried: set[str] = set()
        self.unreadable: set[str] = set()

    def seed(self, sys_id: str, name: str | None) -> None:
        if sys_id and name:
            self.names[sys_id] = name

    def get(self, _field: str, sys_id: str) -> str | None:
        return self.names.get(sys_id)

    def resolve(self, field: str, ids: Iterable[str]) -> None:
        """Look up the names of ``ids`` (references of ``field``) not known yet.

        Raises:
            ConnectorError: the lookup failed (other than 403).
        """
        table = TABLES[field]
        wanted = sorted({i for i in ids if i and i not in self.names and i not in self.tried})
        if not wanted or table in self.unreadable:
            return
        self.tried.update(wanted)
        fields = (
            ("sys_id", "name") if table == "sys_user_group" else ("sys_id", "name", "user_name")
        )
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            chunk = wanted[start : start + LOOKUP_CHUNK]
            response = self.http.get(
                f"{TABLE_PATH}/{table}",
                lookup_params(ids=chunk, fields=fields, limit=LOOKUP_CHUNK),
                accept=(403,),
            )
            if response.status_code == 403:
                self.unreadable.add(table)
                self.warn(
                    f"{table} is not readable (HTTP 403): earlier groups/assignees in the "
                    "history show as sys_ids; grant read on it (see docs/connectors/servicenow.md)"
                )
                return
            for row in parse_result(response, source=self.http.source):
                sys_id = row.get("sys_id")
                if not isinstance(sys_id, str):
                    raise BadPayloadError(
                        f"{table} row without sys_id: {row!r:.200}", source=self.http.source
                    )
                name = row.get("name") or row.get("user_name")
                self.seed(sys_id, str(name) if name else None)
