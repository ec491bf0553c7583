"""The TOPdesk connector's pure parts: dates, request parameters, responses, mapping."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from connectors.base import (
    EventField,
    EventOrigin,
    LifecycleState,
    TicketType,
    tickets_frame,
)
from connectors.config import TopdeskSourceConfig
from connectors.errors import BadPayloadError
from connectors.statusmap import StatusMap, default_status_map
from connectors.topdesk import (
    INCIDENT_FIELDS,
    PageKind,
    Paging,
    action_events,
    api_root,
    format_fiql_datetime,
    format_topdesk_datetime,
    incident_record,
    incident_state,
    list_params,
    page_kind,
    paging_for_version,
    parse_datetime,
    parse_page,
    parse_priority,
    records_frame,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "topdesk"
S = LifecycleState
DEFAULTS = default_status_map("topdesk")
NO_OVERRIDES = StatusMap(mapping={})


def _incident() -> dict[str, Any]:
    incident: dict[str, Any] = json.loads((DATA / "incident.json").read_text())
    return incident


def _response(status: int, content: bytes = b"", ctype: str = "application/json") -> httpx.Response:
    request = httpx.Request("GET", "https://td.example/tas/api/incidents?pageStart=0")
    return httpx.Response(status, content=content, headers={"Content-Type": ctype}, request=request)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01T08:12:00.000+0000", datetime(2024, 3, 1, 8, 12, tzinfo=UTC)),
        ("2021-02-11T06:32:36.303+0000", datetime(2021, 2, 11, 6, 32, 36, 303000, tzinfo=UTC)),
        ("2022-04-26T08:21:48.520Z", datetime(2022, 4, 26, 8, 21, 48, 520000, tzinfo=UTC)),
        ("2024-03-01T09:12:00.000+0100", datetime(2024, 3, 1, 8, 12, tzinfo=UTC)),
        (None, None),
        ("", None),
    ],
    ids=["plus0000", "millis", "zulu", "offset", "none", "empty"],
)
def test_parse_datetime_reads_topdesk_forms(text: str | None, expected: datetime | None) -> None:
    assert parse_datetime(text) == expected


@pytest.mark.parametrize("text", ["2024-03-01T08:12:00", "yesterday", 17], ids=str)
def test_parse_datetime_refuses_what_is_not_an_instant(text: object) -> None:
    with pytest.raises(ValueError):
        parse_datetime(text)


def test_dates_are_written_the_way_topdesk_and_fiql_want_them() -> None:
    when = datetime(2024, 3, 1, 8, 12, 0, 123456, tzinfo=UTC)
    assert format_topdesk_datetime(when) == "2024-03-01T08:12:00.123+0000"
    assert format_fiql_datetime(when) == "2024-03-01T08:12:00Z"


@pytest.mark.parametrize(
    ("version", "paging"),
    [
        ("3.9.0", Paging.PAGE_START),
        ("3.4.0", Paging.PAGE_START),
        ("4.2.2", Paging.PAGE_START),
        ("3.3.9", Paging.LEGACY),
        ("2.1", Paging.LEGACY),
        (None, Paging.PAGE_START),
        ("unknown", Paging.PAGE_START),
    ],
    ids=str,
)
def test_paging_dialect_follows_the_api_version(version: str | None, paging: Paging) -> None:
    assert paging_for_version(version) is paging


def test_api_root_accepts_a_base_url_with_or_without_tas_api() -> None:
    assert api_root("https://acme.topdesk.net/tas/api/") == "https://acme.topdesk.net"
    assert api_root("https://acme.topdesk.net") == "https://acme.topdesk.net"


def test_page_start_params_filter_sort_and_trim_fields() -> None:
    since = datetime(2024, 3, 1, 8, 12, 30, 900000, tzinfo=UTC)
    params = list_params(paging=Paging.PAGE_START, since=since, start=40, page_size=1000)
    assert params == {
        "fields": ",".join(INCIDENT_FIELDS),
        "pageStart": "40",
        "pageSize": "1000",
        "sort": "modificationDate:asc,id:asc",
        "query": "modificationDate=ge=2024-03-01T08:12:30Z",
    }
    everything = list_params(
        paging=Paging.PAGE_START, since=None, start=0, page_size=10, include_all=True
    )
    assert "query" not in everything
    assert everything["all"] == "true"


def test_legacy_params_filter_by_the_day_before_since() -> None:
    since = datetime(2024, 3, 1, 0, 30, tzinfo=UTC)
    params = list_params(paging=Paging.LEGACY, since=since, start=5, page_size=100)
    assert params["start"] == "5"
    assert params["page_size"] == "100"
    assert params["order_by"] == "modification_date asc"
    assert params["modification_date_start"] == "2024-02-29"
    assert not {"pageStart", "pageSize", "query", "sort"} & set(params)


@pytest.mark.parametrize(
    ("status", "kind"),
    [(206, PageKind.MORE), (200, PageKind.LAST), (204, PageKind.EMPTY)],
    ids=["206", "200", "204"],
)
def test_page_kind_reads_the_status(status: int, kind: PageKind) -> None:
    assert page_kind(_response(status)) is kind


def test_page_kind_refuses_other_success_codes() -> None:
    with pytest.raises(BadPayloadError, match="201"):
        page_kind(_response(201))


def test_parse_page_returns_the_incidents() -> None:
    body = json.dumps([_incident()]).encode()
    assert parse_page(_response(206, body))[0]["number"] == "I 2403 017"
    assert parse_page(_response(204)) == []


@pytest.mark.parametrize(
    ("content", "ctype", "match"),
    [
        (b"<html><body>Service unavailable</body></html>", "text/html", "HTML page"),
        (b'[{"id": "a", "number": ', "application/json", "invalid JSON"),
        (b'{"dataSet": []}', "application/json", "array of incidents"),
        (b'[{"number": "I 1"}]', "application/json", "not an incident with an id"),
        (b'[{"id": "a", "modificationDate": "soon"}]', "application/json", "modificationDate"),
        (b'[{"id": "a"}]', "application/json", "modificationDate"),
        (b"", "application/json", "empty body"),
    ],
    ids=["html", "cut-off", "envelope", "no-id", "bad-date", "no-date", "empty"],
)
def test_parse_page_refuses_malformed_pages(content: bytes, ctype: str, match: str) -> None:
    with pytest.raises(BadPayloadError, match=match) as info:
        parse_page(_response(200, content, ctype), source="td")
    assert "GET /tas/api/incidents?pageStart=0" in str(info.value)
    assert info.value.source == "td"


def test_incident_maps_to_the_canonical_ticket() -> None:
    incident = _incident()
    record = incident_record(
        incident,
        source="td",
        root="https://acme.topdesk.net/tas/api",
        overrides=NO_OVERRIDES,
        defaults=DEFAULTS,
    )
    assert record.source == "td"
    assert record.external_id == incident["id"]
    assert record.number == "I 2403 017"
    assert record.title == "VPN down"
    assert record.type is TicketType.INCIDENT
    assert record.raw_status == "In progress"
    assert record.state is S.IN_PROGRESS
    assert record.priority_raw == "P2 - High"
    assert record.priority == 2
    assert record.category == "Network"
    assert record.team == "Network"
    assert record.assignee == "Anna de Vries"
    assert record.requester == "Jansen, Pieter"
    assert record.created_at == datetime(2024, 3, 1, 8, 12, tzinfo=UTC)
    assert record.updated_at == datetime(2024, 3, 1, 9, 40, 11, 303000, tzinfo=UTC)
    assert record.due_at == datetime(2024, 3, 2, 8, 12, tzinfo=UTC)
    assert record.resolved_at is None
    assert record.closed_at is None
    assert record.url == f"https://acme.topdesk.net/tas/secure/incident?unid={incident['id']}"
    assert record.raw == incident


def test_resolution_and_closure_times_come_with_their_flags() -> None:
    incident = _incident() | {
        "completed": True,
        "completedDate": "2024-03-01T10:00:00.000+0000",
        "closed": True,
        "closedDate": "2024-03-02T10:00:00.000+0000",
        "processingStatus": {"id": "x", "name": "Closed"},
        "callType": {"id": "y", "name": "Service request"},
    }
    record = incident_record(
        incident, source="td", root="https://a", overrides=NO_OVERRIDES, defaults=DEFAULTS
    )
    assert record.state is S.CLOSED
    assert record.resolved_at == datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert record.closed_at == datetime(2024, 3, 2, 10, tzinfo=UTC)
    assert record.type is TicketType.REQUEST


def test_an_operator_that_is_the_group_itself_is_no_assignee() -> None:
    group = {"id": "og-net", "name": "Network"}
    incident = _incident() | {"operator": group, "operatorGroup": group}
    record = incident_record(
        incident, source="td", root="https://a", overrides=NO_OVERRIDES, defaults=DEFAULTS
    )
    assert record.assignee is None
    assert record.team == "Network"


def test_bad_dates_in_an_incident_are_a_bad_payload() -> None:
    incident = _incident() | {"targetDate": "next week"}
    with pytest.raises(BadPayloadError, match="next week"):
        incident_record(
            incident, source="td", root="https://a", overrides=NO_OVERRIDES, defaults=DEFAULTS
        )


def _flags(name: str | None, **flags: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "processingStatus": {"id": "s", "name": name} if name else None,
        "onHold": False,
        "completed": False,
        "closed": False,
        "operator": None,
        "operatorGroup": None,
        "supplier": None,
        "closureCode": None,
    }
    return base | flags


TEAM = {"id": "g", "name": "Network"}


@pytest.mark.parametrize(
    ("incident", "state", "known"),
    [
        (_flags("Logged"), S.NEW, True),
        (_flags("In progress", operatorGroup=TEAM), S.IN_PROGRESS, True),
        (_flags("Waiting for user", onHold=True), S.WAITING_CUSTOMER, True),
        (_flags("Waiting for supplier", onHold=True), S.WAITING_SUPPLIER, True),
        (_flags("Wacht op melder", onHold=True), S.WAITING_CUSTOMER, False),
        (
            _flags("Parked", onHold=True, supplier={"id": "s", "name": "Dell"}),
            S.WAITING_SUPPLIER,
            False,
        ),
        (_flags("Parked", onHold=True), S.WAITING_OTHER, False),
        (_flags("Completed", completed=True), S.RESOLVED, True),
        (_flags("Closed", completed=True, closed=True), S.CLOSED, True),
        (_flags("Cancelled", closed=True), S.CANCELLED, True),
        (
            _flags("Closed", closed=True, closureCode={"id": "c", "name": "Duplicate call"}),
            S.CANCELLED,
            True,
        ),
        (_flags("Afgemeld", completed=True), S.RESOLVED, False),
        (_flags("Triage"), S.NEW, False),
        (_flags("Triage", operatorGroup=TEAM), S.IN_PROGRESS, False),
        (_flags("Completed", operatorGroup=TEAM), S.IN_PROGRESS, True),
        (_flags(None), S.NEW, True),
    ],
    ids=[
        "logged",
        "in-progress",
        "waiting-user",
        "waiting-supplier",
        "dutch-caller",
        "supplier-set",
        "hold-unknown",
        "completed",
        "closed",
        "cancelled-name",
        "duplicate-closure",
        "dutch-done",
        "unknown-unassigned",
        "unknown-assigned",
        "name-says-done-flags-say-open",
        "no-status",
    ],
)
def test_lifecycle_follows_flags_then_status_name(
    incident: dict[str, Any], state: LifecycleState, known: bool
) -> None:
    assert incident_state(incident, overrides=NO_OVERRIDES, defaults=DEFAULTS) == (state, known)


def test_configured_status_names_override_the_flags() -> None:
    overrides = StatusMap(mapping={"Parked": S.WAITING_SUPPLIER, "Completed": S.CLOSED})
    parked = _flags("Parked", onHold=True)
    assert incident_state(parked, overrides=overrides, defaults=DEFAULTS) == (
        S.WAITING_SUPPLIER,
        True,
    )
    done = _flags("completed", completed=True)
    assert incident_state(done, overrides=overrides, defaults=DEFAULTS)[0] is S.CLOSED


@pytest.mark.parametrize(
    ("name", "priority"),
    [
        ("P2", 2),
        ("2", 2),
        ("P1 - Critical", 1),
        ("Priority 9", None),
        ("High", 2),
        ("Very low", 5),
        ("Laag", 4),
        ("Gemiddeld", 3),
        ("Whenever", None),
        (None, None),
    ],
    ids=str,
)
def test_priority_number_from_its_name(name: str | None, priority: int | None) -> None:
    assert parse_priority(name) == priority


def test_actions_become_customer_and_internal_update_events() -> None:
    actions = json.loads((DATA / "actions.json").read_text())
    events = action_events(actions, source="td", ticket_id="inc-1")
    assert [(e.field, e.new_value, e.actor, e.event_key) for e in events] == [
        (EventField.CUSTOMER_UPDATE, "operator action", "Anna de Vries", "topdesk-action:a-0001"),
        (EventField.INTERNAL_UPDATE, "operator action", "Anna de Vries", "topdesk-action:a-0002"),
        (EventField.CUSTOMER_UPDATE, "caller action", "Jansen, Pieter", "topdesk-action:a-0003"),
    ]
    assert events[2].occurred_at == datetime(2024, 3, 1, 9, 38, 48, 520000, tzinfo=UTC)
    assert all(e.origin is EventOrigin.HISTORY and e.ticket_id == "inc-1" for e in events)


def test_an_action_without_a_date_is_a_bad_payload() -> None:
    with pytest.raises(BadPayloadError, match="entryDate"):
        action_events([{"id": "a", "invisibleForCaller": False}], source="td", ticket_id="i")


def test_records_frame_equals_tickets_frame() -> None:
    incident = _incident()
    records = [
        incident_record(
            incident | {"id": f"id-{i}", "operator": None if i % 2 else incident["operator"]},
            source="td",
            root="https://a",
            overrides=NO_OVERRIDES,
            defaults=DEFAULTS,
        )
        for i in range(5)
    ]
    pd.testing.assert_frame_equal(records_frame(records), tickets_frame(records))
    pd.testing.assert_frame_equal(records_frame([]), tickets_frame([]))


def test_config_refuses_credentials_in_the_base_url() -> None:
    with pytest.raises(ValueError, match="password_env"):
        TopdeskSourceConfig(name="td", kind="topdesk", base_url="https://user:pw@acme.topdesk.net")
    config = TopdeskSourceConfig(name="td", kind="topdesk", base_url="https://acme.topdesk.net/")
    assert config.base_url == "https://acme.topdesk.net"
    assert config.page_size == 1000
