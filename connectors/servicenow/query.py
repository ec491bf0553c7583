"""ServiceNow Table API requests and responses: pure functions, no I/O.

A list request is ``GET /api/now/table/<table>`` with an encoded query; the answer is
``{"result": [{...}, ...]}`` with ``X-Total-Count`` (rows matching the query) and a ``Link``
header (``rel="next"`` while more follow). Every raw value is a string; a reference is
``{"value": "<sys_id>"}`` (``link`` dropped by ``sysparm_exclude_reference_link``) or ``""``;
with ``sysparm_display_value=all`` each field is ``{"value": ..., "display_value": ...}``.
Date-times are ``YYYY-MM-DD HH:MM:SS`` in UTC; the literals of an encoded query are read in the
integration user's time zone, so they are written in it (see docs/connectors/servicenow.md).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

import httpx
import orjson

from connectors.errors import BadPayloadError
from connectors.http import describe

__all__ = [
    "AUDIT_FIELDS",
    "TABLE_PATH",
    "audit_params",
    "format_sn_datetime",
    "has_next",
    "journal_params",
    "keyset_query",
    "list_params",
    "lookup_params",
    "parse_result",
    "parse_sn_datetime",
    "total_count",
]

TABLE_PATH = "/api/now/table"
AUDIT_FIELDS: tuple[str, ...] = (
    "state",
    "incident_state",
    "hold_reason",
    "assignment_group",
    "assigned_to",
    "priority",
)
"""the audited fields the history is built from"""

_SN_FORMAT = "%Y-%m-%d %H:%M:%S"
_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?([a-z]+)"?')


def format_sn_datetime(value: datetime, zone: tzinfo = UTC) -> str:
    """An instant as a ServiceNow query literal, floored to the second: ``2024-03-01 08:12:00``.

    ``zone`` is the integration user's time zone, in which the instance reads the literals of
    an encoded query (UTC unless the user has another).

    Raises:
        ValueError: a naive datetime (its zone would be guessed).
    """
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: give it a time zone")
    return value.astimezone(zone).strftime(_SN_FORMAT)


def parse_sn_datetime(value: Any) -> datetime | None:
    """A ServiceNow raw date-time (UTC, ``YYYY-MM-DD HH:MM:SS``; ``""`` when unset) as aware UTC.

    Raises:
        ValueError: not in that form.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected a date-time string, got {type(value).__name__}")
    return _parse(value)


@functools.lru_cache(maxsize=65_536)
def _parse(value: str) -> datetime:
    """Sliced by position (``strptime`` costs ten times more; rows of one update share their
    time, so the cache hits often)."""
    if len(value) != 19 or value[4] != "-" or value[7] != "-" or value[10] != " ":
        raise ValueError(f"date-time `{value}` is not YYYY-MM-DD HH:MM:SS")
    if value[13] != ":" or value[16] != ":":
        raise ValueError(f"date-time `{value}` is not YYYY-MM-DD HH:MM:SS")
    try:
        return datetime(
            int(value[0:4]),
            int(value[5:7]),
            int(value[8:10]),
            int(value[11:13]),
            int(value[14:16]),
            int(value[17:19]),
            tzinfo=UTC,
        )
    except ValueError as e:
        raise ValueError(f"date-time `{value}` is not YYYY-MM-DD HH:MM:SS ({e})") from e


def keyset_query(
    *,
    since: datetime | None,
    after: tuple[datetime, str] | None,
    extra: str = "",
    zone: tzinfo = UTC,
) -> str:
    """``sysparm_query`` for one keyset page, ordered on ``(sys_updated_on, sys_id)``.

    ``after`` (the last row received) gives ``sys_updated_on>=T^sys_updated_on>T^ORsys_id>ID``,
    i.e. ``u >= T AND (u > T OR id > ID)``: ``^OR`` binds tighter than ``^``. Without it,
    ``since`` gives ``sys_updated_on>=T``.
    """
    parts: list[str] = []
    if after is not None:
        at = format_sn_datetime(after[0], zone)
        parts.append(f"sys_updated_on>={at}^sys_updated_on>{at}^ORsys_id>{after[1]}")
    elif since is not None:
        parts.append(f"sys_updated_on>={format_sn_datetime(since, zone)}")
    if extra:
        parts.append(extra)
    parts.append("ORDERBYsys_updated_on^ORDERBYsys_id")
    return "^".join(parts)


def list_params(
    *,
    query: str,
    fields: Sequence[str],
    limit: int,
    offset: int = 0,
    display_value: str = "all",
) -> dict[str, str]:
    """Query parameters of one list request."""
    params = {
        "sysparm_query": query,
        "sysparm_fields": ",".join(fields),
        "sysparm_limit": str(limit),
        "sysparm_display_value": display_value,
        "sysparm_exclude_reference_link": "true",
    }
    if offset:
        params["sysparm_offset"] = str(offset)
    return params


def _in(ids: Iterable[str]) -> str:
    return ",".join(ids)


def audit_params(
    *,
    table: str,
    ids: Sequence[str],
    since: datetime | None,
    fields: Sequence[str] = AUDIT_FIELDS,
    limit: int,
    offset: int = 0,
    zone: tzinfo = UTC,
) -> dict[str, str]:
    """``sys_audit`` rows of some records (from ``since`` on), in the order they happened."""
    query = f"tablename={table}^documentkeyIN{_in(ids)}^fieldnameIN{_in(fields)}"
    if since is not None:
        query += f"^sys_created_on>={format_sn_datetime(since, zone)}"
    query += "^ORDERBYsys_created_on^ORDERBYrecord_checkpoint^ORDERBYsys_id"
    return {
        "sysparm_query": query,
        "sysparm_fields": (
            "sys_id,documentkey,fieldname,oldvalue,newvalue,user,sys_created_on,record_checkpoint"
        ),
        "sysparm_limit": str(limit),
        "sysparm_offset": str(offset),
    }


def journal_params(
    *,
    table: str,
    ids: Sequence[str],
    elements: Sequence[str],
    since: datetime | None,
    limit: int,
    offset: int = 0,
    zone: tzinfo = UTC,
) -> dict[str, str]:
    """``sys_journal_field`` entries (comments, work notes) of some records."""
    query = f"name={table}^element_idIN{_in(ids)}^elementIN{_in(elements)}"
    if since is not None:
        query += f"^sys_created_on>={format_sn_datetime(since, zone)}"
    query += "^ORDERBYsys_created_on^ORDERBYsys_id"
    return {
        "sysparm_query": query,
        "sysparm_fields": "sys_id,element_id,element,sys_created_on,sys_created_by",
        "sysparm_limit": str(limit),
        "sysparm_offset": str(offset),
    }


def lookup_params(*, ids: Sequence[str], fields: Sequence[str], limit: int) -> dict[str, str]:
    """Rows of a reference table (``sys_user``, ``sys_user_group``) by sys_id."""
    return {
        "sysparm_query": f"sys_idIN{_in(ids)}",
        "sysparm_fields": ",".join(fields),
        "sysparm_limit": str(limit),
        "sysparm_display_value": "false",
    }


def _excerpt(response: httpx.Response) -> str:
    return " ".join(response.content[:300].decode("utf-8", "replace").split())[:160]


def parse_result(response: httpx.Response, *, source: str | None = None) -> list[dict[str, Any]]:
    """The rows of a list response (``{"result": [...]}``), each an object.

    Raises:
        BadPayloadError: not JSON (an HTML login or error page, a cut-off body), or not a
            ``result`` array of objects.
    """
    where = describe(response.request)
    ctype = response.headers.get("Content-Type", "")
    if "html" in ctype.lower():
        raise BadPayloadError(
            f"got an HTML page ({ctype}) instead of JSON for {where}: a login page, or an "
            f"instance that is asleep or being upgraded? It starts: {_excerpt(response)}",
            source=source,
        )
    try:
        payload = orjson.loads(response.content)
    except ValueError as e:
        raise BadPayloadError(
            f"invalid JSON for {where} ({e}); it starts: {_excerpt(response)}", source=source
        ) from e
    rows = payload.get("result") if isinstance(payload, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BadPayloadError(
            f'expected {{"result": [...]}} for {where}, got: {_excerpt(response)}',
            source=source,
        )
    return rows


def total_count(response: httpx.Response) -> int | None:
    """``X-Total-Count``: rows matching the query (None when absent or unreadable)."""
    value = response.headers.get("X-Total-Count")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def has_next(response: httpx.Response, *, rows: int, limit: int, offset: int) -> bool:
    """Whether more rows follow this page.

    The ``Link`` header's ``rel="next"`` says so; without it, ``X-Total-Count`` against the
    offset; without both, a full page. (A short page alone proves nothing: the instance
    applies ``sysparm_limit`` before its ACLs, so a page can come back short or empty.)
    """
    link = response.headers.get("Link")
    if link is not None:
        return any(rel == "next" for _url, rel in _LINK.findall(link))
    total = total_count(response)
    if total is not None:
        return offset + limit < total
    return rows >= limit
