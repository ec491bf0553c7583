"""The ServiceNow connector's pure parts: query literals, choices and lifecycle mapping, records,
audit replay, journal entries, pacing, and the OAuth flow against a small handler."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs

import httpx
import pandas as pd
import pytest

from connectors.base import LifecycleState
from connectors.config import ServiceNowSourceConfig
from connectors.errors import BadPayloadError, ConnectorConfigError
from connectors.servicenow.choices import Choices, StateMapper
from connectors.servicenow.client import OAuthPasswordAuth, make_servicenow_client, pace_wait
from connectors.servicenow.history import audit_events, journal_events, parse_audit_rows
from connectors.servicenow.query import (
    format_sn_datetime,
    has_next,
    keyset_query,
    parse_result,
    parse_sn_datetime,
)
from connectors.servicenow.records import Current, records_frame

S = LifecycleState
T0 = datetime(2024, 3, 31, 0, 30, tzinfo=UTC)


def _mapper(
    rows: list[dict[str, str]] | None = None, status_map: dict[str, LifecycleState] | None = None
) -> StateMapper:
    choices = Choices.from_rows(rows or [], table="incident")
    return StateMapper.build(
        choices, state_field="state", status_map=status_map or {}, fallback=S.IN_PROGRESS
    )


def test_datetime_literals_are_utc_to_the_second() -> None:
    amsterdam = timezone(timedelta(hours=2))
    at = datetime(2024, 3, 31, 3, 30, 15, 999_999, tzinfo=amsterdam)
    assert format_sn_datetime(at) == "2024-03-31 01:30:15"
    assert parse_sn_datetime("2024-03-31 01:30:15") == datetime(2024, 3, 31, 1, 30, 15, tzinfo=UTC)
    assert parse_sn_datetime("") is None
    with pytest.raises(ValueError):
        format_sn_datetime(datetime(2024, 3, 31, 1, 0))
    with pytest.raises(ValueError):
        parse_sn_datetime("31-03-2024 01:30")


def test_keyset_query_pages_after_the_last_row() -> None:
    assert keyset_query(since=None, after=None) == "ORDERBYsys_updated_on^ORDERBYsys_id"
    assert keyset_query(since=T0, after=None) == (
        "sys_updated_on>=2024-03-31 00:30:00^ORDERBYsys_updated_on^ORDERBYsys_id"
    )
    after = (T0 + timedelta(seconds=5), "abc")
    assert keyset_query(since=T0, after=after) == (
        "sys_updated_on>=2024-03-31 00:30:05^sys_updated_on>2024-03-31 00:30:05^ORsys_id>abc"
        "^ORDERBYsys_updated_on^ORDERBYsys_id"
    )


def _response(
    body: Any, *, headers: dict[str, str] | None = None, ctype: str = "application/json"
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(
        200,
        content=content,
        headers={"Content-Type": ctype, **(headers or {})},
        request=httpx.Request("GET", "https://sn.example/api/now/table/incident"),
    )


def test_parse_result_and_paging_headers() -> None:
    assert parse_result(_response({"result": [{"a": "1"}]})) == [{"a": "1"}]
    with pytest.raises(BadPayloadError, match="invalid JSON"):
        parse_result(_response(b'{"result": ['))
    with pytest.raises(BadPayloadError, match="HTML"):
        parse_result(_response(b"<html>login</html>", ctype="text/html"))
    with pytest.raises(BadPayloadError, match="result"):
        parse_result(_response({"error": {"message": "x"}}))
    link = '<https://x/a?sysparm_offset=0>;rel="first",<https://x/a?sysparm_offset=2>;rel="next"'
    assert has_next(_response({}, headers={"Link": link}), rows=2, limit=2, offset=0)
    last = '<https://x/a?sysparm_offset=0>;rel="first",<https://x/a?sysparm_offset=2>;rel="last"'
    assert not has_next(_response({}, headers={"Link": last}), rows=2, limit=2, offset=2)
    counted = _response({}, headers={"X-Total-Count": "5"})
    assert has_next(counted, rows=0, limit=2, offset=2)  # a page emptied by ACLs
    assert not has_next(counted, rows=1, limit=2, offset=4)
    assert not has_next(_response({}), rows=1, limit=2, offset=0)


def test_labels_come_from_the_instance_and_never_from_numbers() -> None:
    # an instance whose numbers differ from the out-of-box ones
    rows = [
        {"name": "incident", "element": "state", "value": "10", "label": "New"},
        {"name": "incident", "element": "state", "value": "20", "label": "In Progress"},
        {"name": "incident", "element": "state", "value": "30", "label": "On Hold"},
        {"name": "incident", "element": "state", "value": "60", "label": "Resolved"},
        {"name": "task", "element": "state", "value": "1", "label": "Open"},
        {"name": "incident", "element": "hold_reason", "value": "9", "label": "Awaiting Caller"},
        {"name": "incident", "element": "hold_reason", "value": "8", "label": "Awaiting Vendor"},
        {"name": "incident", "element": "hold_reason", "value": "7", "label": "Awaiting Change"},
        {"name": "incident", "element": "hold_reason", "value": "6", "label": "Awaiting Lunch"},
    ]
    mapper = _mapper(rows)
    assert mapper.map("10", "") == ("New", S.NEW, True)
    assert mapper.map("20", "9") == ("In Progress", S.IN_PROGRESS, True)  # stale hold reason
    assert mapper.map("30", "9") == ("On Hold/Awaiting Caller", S.WAITING_CUSTOMER, True)
    assert mapper.map("30", "8") == ("On Hold/Awaiting Vendor", S.WAITING_SUPPLIER, True)
    assert mapper.map("30", "7") == ("On Hold/Awaiting Change", S.WAITING_OTHER, True)
    assert mapper.map("30", "6") == ("On Hold/Awaiting Lunch", S.WAITING_OTHER, True)
    assert mapper.map("30", "") == ("On Hold", S.WAITING_OTHER, True)
    assert mapper.map("60", "") == ("Resolved", S.RESOLVED, True)
    # "1" is not a state of this instance: kept raw, fallback, reported unknown
    assert mapper.map("1", "") == ("1", S.IN_PROGRESS, False)
    assert mapper.map("", "") == (None, S.IN_PROGRESS, True)
    # priority labels: the instance has none, so the documented defaults
    assert mapper.choices.label("priority", "2") == "2 - High"
    assert "priority" not in mapper.choices.from_instance


def test_defaults_legacy_labels_and_overrides() -> None:
    defaults = _mapper()
    assert defaults.map("8", "") == ("Canceled", S.CANCELLED, True)
    assert defaults.map("3", "1") == ("On Hold/Awaiting Caller", S.WAITING_CUSTOMER, True)
    assert defaults.map("3", "4") == ("On Hold/Awaiting Vendor", S.WAITING_SUPPLIER, True)
    legacy = StateMapper.build(
        Choices.defaults(), state_field="incident_state", status_map={}, fallback=S.NEW
    )
    assert legacy.map("2", "") == ("Active", S.IN_PROGRESS, True)
    assert legacy.map("4", "") == ("Awaiting User Info", S.WAITING_CUSTOMER, True)
    assert legacy.map("5", "") == ("Awaiting Evidence", S.WAITING_OTHER, True)
    overrides = {"on hold/awaiting change": S.WAITING_SUPPLIER, "Resolved": S.CLOSED}
    overridden = _mapper(status_map=overrides)
    assert overridden.map("3", "5") == ("On Hold/Awaiting Change", S.WAITING_SUPPLIER, True)
    assert overridden.map("6", "") == ("Resolved", S.CLOSED, True)


def _rec(sys_id: str, updated: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sys_id": {"value": sys_id, "display_value": sys_id},
        "number": {"value": "INC0010001", "display_value": "INC0010001"},
        "state": {"value": "2", "display_value": "In Progress"},
        "hold_reason": {"value": "", "display_value": ""},
        "priority": {"value": "3", "display_value": "3 - Moderate"},
        "assignment_group": {"value": "g1", "display_value": "Network"},
        "assigned_to": {"value": "", "display_value": ""},
        "opened_at": {"value": "2024-03-01 08:00:00", "display_value": "01-03-2024 09:00:00"},
        "sys_updated_on": {"value": updated, "display_value": "whatever local"},
        "reassignment_count": {"value": "2", "display_value": "2"},
    }
    return base | fields


def test_records_map_to_canonical_tickets() -> None:
    mapper = _mapper()
    frame, currents, actors, unknown = records_frame(
        [_rec("a1", "2024-03-01 09:00:00"), _rec("b2", "2024-03-01 10:00:00", state="9")],
        source="sn",
        table="sc_req_item",
        base_url="https://acme.service-now.com",
        mapper=mapper,
        names={"g1": "Network"},
        audited=("state", "hold_reason", "assignment_group", "assigned_to", "priority"),
    )
    row = frame.iloc[0]
    assert row["type"] == "request"
    assert (row["raw_status"], row["state"], row["team"]) == (
        "In Progress",
        "in_progress",
        "Network",
    )
    assert (row["priority_raw"], row["priority"], row["reassignment_count"]) == (
        "3 - Moderate",
        3,
        2,
    )
    assert pd.isna(row["assignee"])
    assert row["created_at"] == pd.Timestamp("2024-03-01 08:00:00", tz="UTC")
    assert row["url"] == "https://acme.service-now.com/nav_to.do?uri=sc_req_item.do?sys_id=a1"
    assert unknown == {"9": 1}
    assert currents[1].values["state"] == "9" and actors == [None, None]


def _audit(
    sys_id: str, record: str, field: str, old: str, new: str, at: str, checkpoint: int
) -> dict[str, str]:
    return {
        "sys_id": sys_id,
        "documentkey": record,
        "fieldname": field,
        "oldvalue": old,
        "newvalue": new,
        "user": "beth",
        "sys_created_on": at,
        "record_checkpoint": str(checkpoint),
    }


def _text(value: Any) -> str | None:
    return None if pd.isna(value) else str(value)


def test_audit_rows_replay_into_events_with_a_baseline() -> None:
    mapper = _mapper()
    rows = parse_audit_rows(
        [
            _audit("a1", "r", "assignment_group", "g1", "g2", "2024-03-01 09:00:00", 1),
            _audit("a2", "r", "state", "1", "3", "2024-03-01 10:00:00", 2),
            _audit("a3", "r", "hold_reason", "", "1", "2024-03-01 10:00:00", 2),
            _audit("a4", "r", "state", "3", "2", "2024-03-01 11:00:00", 3),
            _audit("a5", "r", "hold_reason", "1", "", "2024-03-01 11:00:00", 3),
            _audit("a6", "r", "priority", "3", "2", "2024-03-01 11:00:00", 3),
            _audit("a7", "r", "state", "2", "6", "2024-03-01 13:00:00", 4),  # after the fetch
        ]
    )
    current = Current(
        sys_id="r",
        created_at=datetime(2024, 3, 1, 8, 0, tzinfo=UTC),
        updated_at=datetime(2024, 3, 1, 12, 0, tzinfo=UTC),
        values={
            "state": "2",
            "hold_reason": "",
            "assignment_group": "g2",
            "assigned_to": "",
            "priority": "2",
        },
    )
    names = {"g1": "Network", "g2": "Workplace"}
    events = audit_events(
        rows, [current], source="sn", new={"r"}, mapper=mapper, names=lambda _f, i: names.get(i)
    )
    got = [
        (str(e["occurred_at"])[11:16], e["field"], _text(e["old_value"]), e["new_value"])
        for e in events.to_dict("records")
    ]
    assert got == [
        ("08:00", "status", None, "New"),
        ("08:00", "state", None, "new"),
        ("08:00", "team", None, "Network"),
        ("08:00", "priority", None, "3 - Moderate"),
        ("09:00", "team", "Network", "Workplace"),
        ("10:00", "status", "New", "On Hold/Awaiting Caller"),
        ("10:00", "state", "new", "waiting_customer"),
        ("11:00", "status", "On Hold/Awaiting Caller", "In Progress"),
        ("11:00", "state", "waiting_customer", "in_progress"),
        ("11:00", "priority", "3 - Moderate", "2 - High"),
    ]
    keyed = events.dropna(subset=["actor"])
    assert set(keyed["event_key"]) >= {"sn-audit:a1", "sn-audit:a2:state", "sn-audit:a6"}
    assert events["event_key"].is_unique
    # the same rows again (an overlap re-read) give the same keys; a known record no baseline
    again = audit_events(
        rows, [current], source="sn", new=set(), mapper=mapper, names=lambda _f, i: names.get(i)
    )
    assert set(again["event_key"]) <= set(events["event_key"])
    assert len(again) == len(events) - 4


def test_journal_entries_become_update_events() -> None:
    rows = [
        {
            "sys_id": "j1",
            "element_id": "r",
            "element": "comments",
            "sys_created_on": "2024-03-01 09:00:00",
            "sys_created_by": "caller",
        },
        {
            "sys_id": "j2",
            "element_id": "r",
            "element": "work_notes",
            "sys_created_on": "2024-03-01 09:05:00",
            "sys_created_by": "beth",
        },
        {"sys_id": "j3", "element_id": "other", "element": "comments"},
    ]
    events = journal_events(rows, source="sn", records={"r"})
    assert list(zip(events["field"], events["new_value"], events["event_key"], strict=True)) == [
        ("customer_update", "comment", "sn-journal:j1"),
        ("internal_update", "work note", "sn-journal:j2"),
    ]


def test_pacing_waits_for_the_reset_only_when_the_window_is_used_up() -> None:
    headers = {"X-RateLimit-Remaining": "5", "X-RateLimit-Reset": "1000"}
    assert pace_wait(headers, reserve=1, now=990.0) == 0.0
    headers["X-RateLimit-Remaining"] = "1"
    assert pace_wait(headers, reserve=1, now=990.0) == 11.0  # 10 s + a second of margin
    assert pace_wait(headers, reserve=0, now=990.0) == 0.0
    assert pace_wait({}, reserve=1, now=990.0) == 0.0
    # an instance that sends only Limit and Reset: the client counts its own requests
    counted = {"X-RateLimit-Limit": "10", "X-RateLimit-Reset": "1000"}
    assert pace_wait(counted, reserve=1, now=990.0) == 0.0
    assert pace_wait(counted, reserve=1, now=990.0, used=8) == 0.0
    assert pace_wait(counted, reserve=1, now=990.0, used=9) == 11.0


def _config(**kw: Any) -> ServiceNowSourceConfig:
    base = {
        "name": "sn",
        "kind": "servicenow",
        "base_url": "https://sn.example",
        "username": "integration.user",
        "password_env": "SN_UNIT_PASSWORD",
    }
    return ServiceNowSourceConfig.model_validate(base | kw)


def test_config_checks_tables_auth_and_secrets() -> None:
    assert _config().effective_tables == ["incident"]
    assert _config(tables=["incident", "problem"]).effective_tables == ["incident", "problem"]
    with pytest.raises(ValueError, match="not both"):
        _config(table="incident", tables=["problem"])
    with pytest.raises(ValueError, match="client_id"):
        _config(auth="oauth")
    with pytest.raises(ValueError, match="client_secret_env"):
        _config(client_secret="inline")
    with pytest.raises(ValueError, match="pattern"):
        _config(table="incident;drop")


def test_oauth_password_grant_then_refresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SN_UNIT_PASSWORD", "pw-1")
    monkeypatch.setenv("SN_UNIT_SECRET", "secret-1")
    grants: list[dict[str, list[str]]] = []
    valid: set[str] = set()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth_token.do":
            form = parse_qs(request.content.decode())
            grants.append(form)
            if form["client_secret"] != ["secret-1"]:
                return httpx.Response(401, json={"error": "invalid_client"})
            token = f"tok-{len(grants)}"
            valid.clear()
            valid.add(token)
            return httpx.Response(
                200, json={"access_token": token, "refresh_token": "ref", "expires_in": 1799}
            )
        if request.headers.get("Authorization", "").removeprefix("Bearer ") in valid:
            return httpx.Response(200, json={"result": []})
        return httpx.Response(401, json={"error": {"message": "User Not Authenticated"}})

    config = _config(auth="oauth", client_id="cid", client_secret_env="SN_UNIT_SECRET")
    client = make_servicenow_client(config, transport=httpx.MockTransport(handler))
    assert isinstance(client.auth, OAuthPasswordAuth)
    assert client.get("/api/now/table/incident").status_code == 200
    assert client.get("/api/now/table/incident").status_code == 200
    assert [g["grant_type"] for g in grants] == [["password"]]
    valid.clear()  # the token is revoked: one refresh, then the request again
    assert client.get("/api/now/table/incident").status_code == 200
    assert [g["grant_type"] for g in grants] == [["password"], ["refresh_token"]]
    monkeypatch.setenv("SN_UNIT_SECRET", "wrong")
    bad = make_servicenow_client(config, transport=httpx.MockTransport(handler))
    with pytest.raises(ConnectorConfigError, match="client_id"):
        bad.get("/api/now/table/incident")
