"""The REST API: status codes, filters, sorting, paging, schemas, CSV, 422s and 503s."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.warehouse import insert_events, make_engine, mark_deleted, upsert_tickets
from connectors.base import (
    EventField,
    EventOrigin,
    EventRecord,
    LifecycleState,
    events_frame,
    tickets_frame,
)
from tests.app.test_api_support import (
    ADMIN,
    BOTH,
    NOW,
    READ,
    XSS_TITLE,
    _ticket,
    client_for,
    key_env,
    settings_for,
    warehouse,
)


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Engine]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('api') / 'w.db'}"
    engine = warehouse(url)
    yield url, engine
    engine.dispose()


@pytest.fixture
def client(filled: tuple[str, Engine], monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    key_env(monkeypatch)
    url, engine = filled
    with client_for(settings_for(url), engine) as c:
        yield c


def _ids(response_json: dict[str, object]) -> list[str]:
    items = response_json["items"]
    assert isinstance(items, list)
    return [f"{t['source']}/{t['external_id']}" for t in items]


def test_healthz_needs_no_key(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["warehouse"] == "ok"


def test_tickets_page_shape_and_default_order(client: TestClient) -> None:
    response = client.get("/api/v1/tickets", headers=READ)
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 20 and body["limit"] == 100 and body["offset"] == 0
    assert len(body["items"]) == 20
    first = body["items"][0]
    # personal data and the raw vendor payload stay in the warehouse
    assert "raw" not in first and "requester" not in first
    assert set(first) >= {"source", "external_id", "number", "state", "team", "url", "priority"}
    updated = [t["updated_at"] for t in body["items"]]
    assert updated == sorted(updated, reverse=True)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("source=ops", 5),
        ("source=ops&source=desk", 20),
        ("team=Network", 5 + 5),
        ("state=resolved", 4),
        ("state=resolved&state=new", 5),
        ("status=closed", 4),
        ("status=open", 16),
        ("priority=1", 5),
        ("priority=1&priority=2", 10),
        ("assignee=ann", 5),
        ("updated_since=2999-03-10T00:00:00Z", 0),
        ("updated_since=2000-01-01T00:00:00%2B02:00", 20),
        ("team=Network&status=open&source=desk", 5),
    ],
    ids=lambda v: str(v),
)
def test_ticket_filters(client: TestClient, query: str, expected: int) -> None:
    response = client.get(f"/api/v1/tickets?{query}", headers=READ)
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == expected
    assert len(body["items"]) == expected


def test_filter_values_are_respected_row_by_row(client: TestClient) -> None:
    body = client.get(
        "/api/v1/tickets?team=Network&state=waiting_customer&priority=1", headers=READ
    ).json()
    assert body["items"], "the sample has such tickets"
    for t in body["items"]:
        assert t["team"] == "Network" and t["state"] == "waiting_customer" and t["priority"] == 1


def test_updated_since_is_inclusive_and_naive_means_utc(client: TestClient) -> None:
    everything = client.get("/api/v1/tickets?sort=updated_at", headers=READ).json()["items"]
    pivot = everything[10]["updated_at"]
    naive = pivot.replace("Z", "").replace("+00:00", "")
    body = client.get(f"/api/v1/tickets?updated_since={naive}", headers=READ).json()
    assert body["total"] == len([t for t in everything if t["updated_at"] >= pivot])
    assert body["total"] >= 10


def test_sorting_by_several_fields(client: TestClient) -> None:
    items = client.get("/api/v1/tickets?sort=-priority,external_id", headers=READ).json()["items"]
    keys = [(-(t["priority"] or 0), t["external_id"]) for t in items]
    assert keys == sorted(keys)


def test_paging_covers_every_row_once(client: TestClient) -> None:
    seen: list[str] = []
    for offset in range(0, 20, 7):
        body = client.get(f"/api/v1/tickets?limit=7&offset={offset}", headers=READ).json()
        assert body["limit"] == 7 and body["offset"] == offset and body["total"] == 20
        seen += _ids(body)
    assert len(seen) == 20 and len(set(seen)) == 20


def test_tickets_csv(client: TestClient) -> None:
    response = client.get("/api/v1/tickets?format=csv&team=Service%20Desk", headers=READ)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    json_total = client.get("/api/v1/tickets?team=Service%20Desk", headers=READ).json()["total"]
    assert len(rows) == json_total == int(response.headers["x-total-count"])
    assert {r["team"] for r in rows} == {"Service Desk"}
    assert "raw" not in rows[0] and "requester" not in rows[0]


def test_csv_defuses_formulas(client: TestClient) -> None:
    response = client.get("/api/v1/tickets?format=csv&state=new", headers=READ)
    (row,) = csv.DictReader(io.StringIO(response.text))
    assert row["title"] == '\'=HYPERLINK("http://evil")'


def test_csv_takes_all_rows_json_is_capped(client: TestClient) -> None:
    assert client.get("/api/v1/tickets?limit=501", headers=READ).status_code == 422
    response = client.get("/api/v1/tickets?limit=501&format=csv", headers=READ)
    assert response.status_code == 200
    assert len(list(csv.DictReader(io.StringIO(response.text)))) == 20


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("sort=password", "sort"),
        ("sort=-", "sort"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=abc", "limit"),
        ("offset=-1", "offset"),
        ("offset=99999999999", "offset"),
        ("state=open", "state"),
        ("priority=9", "priority"),
        ("priority=x", "priority"),
        ("status=maybe", "status"),
        ("updated_since=yesterday", "updated_since"),
        ("updated_since=2024-13-45", "updated_since"),
        ("format=xml", "format"),
    ],
    ids=lambda v: str(v),
)
def test_bad_parameters_give_422_with_a_message(client: TestClient, query: str, param: str) -> None:
    response = client.get(f"/api/v1/tickets?{query}", headers=READ)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(param in err["loc"] and err["msg"] for err in detail), detail


def test_one_ticket_with_its_timeline(client: TestClient) -> None:
    response = client.get("/api/v1/tickets/desk/T1", headers=READ)
    assert response.status_code == 200
    body = response.json()
    assert body["number"] == "INC0001" and "raw" not in body
    events = body["events"]
    assert [e["field"] for e in events] == ["team", "assignee", "state"]
    assert [e["occurred_at"] for e in events] == sorted(e["occurred_at"] for e in events)
    assert set(events[0]) == {
        "occurred_at",
        "seq",
        "field",
        "old_value",
        "new_value",
        "actor",
        "origin",
    }


def test_ticket_without_events_and_unknown_ticket(client: TestClient) -> None:
    body = client.get("/api/v1/tickets/ops/OPS-16", headers=READ).json()
    assert body["events"] == []
    response = client.get("/api/v1/tickets/desk/NOPE", headers=READ)
    assert response.status_code == 404
    assert "desk/NOPE" in response.json()["detail"]


def test_hostile_titles_come_back_as_plain_json_strings(client: TestClient) -> None:
    body = client.get("/api/v1/tickets/desk/T5", headers=READ).json()
    assert body["title"] == XSS_TITLE
    assert (
        client.get("/api/v1/tickets/desk/T5", headers=READ)
        .headers["content-type"]
        .startswith("application/json")
    )


def test_sources(client: TestClient) -> None:
    response = client.get("/api/v1/sources", headers=READ)
    assert response.status_code == 200
    by_name = {s["name"]: s for s in response.json()}
    assert set(by_name) == {"desk", "ops"}
    desk = by_name["desk"]
    assert desk["tickets"] == 15 and desk["open_tickets"] == 11 and desk["events"] == 5
    assert desk["kind"] == "topdesk" and desk["last_status"] == "ok"
    assert desk["configured"] is False
    assert by_name["ops"]["last_run_at"] is None and by_name["ops"]["tickets"] == 5
    rows = list(
        csv.DictReader(io.StringIO(client.get("/api/v1/sources?format=csv", headers=READ).text))
    )
    assert [r["name"] for r in rows] == ["desk", "ops"]


def test_metrics_in_prometheus_format(client: TestClient) -> None:
    client.get("/api/v1/tickets", headers=READ)
    response = client.get("/metrics", headers=ADMIN)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert (
        'ticketflow_http_requests_total{method="GET",route="/api/v1/tickets",status="200"}' in text
    )
    assert "ticketflow_http_request_duration_seconds_bucket" in text
    assert "# TYPE ticketflow_cache_hits gauge" in text


def test_openapi_documents_the_routes_and_the_key_header(client: TestClient) -> None:
    response = client.get("/api/v1/openapi.json", headers=READ)
    assert response.status_code == 200
    spec = response.json()
    assert {"/api/v1/tickets", "/api/v1/sources", "/healthz", "/metrics"} <= set(spec["paths"])
    schemes = spec["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"]["name"] == "X-API-Key"
    ticket_page = spec["components"]["schemas"]["TicketPage"]
    assert set(ticket_page["properties"]) == {"items", "total", "limit", "offset"}
    assert client.get("/docs").status_code == 404  # the interactive docs would need a CDN


def test_a_key_with_both_scopes_reads_and_administers(client: TestClient) -> None:
    assert client.get("/api/v1/tickets", headers=BOTH).status_code == 200
    assert client.get("/metrics", headers=BOTH).status_code == 200
    bearer = {"Authorization": f"Bearer {BOTH['X-API-Key']}"}
    assert client.get("/api/v1/tickets", headers=bearer).status_code == 200


def test_public_read_mode(filled: tuple[str, Engine], monkeypatch: pytest.MonkeyPatch) -> None:
    key_env(monkeypatch)
    url, engine = filled
    with client_for(settings_for(url, public_read=True), engine) as c:
        assert c.get("/api/v1/tickets").status_code == 200
        assert c.get("/api/v1/sources").status_code == 200
        # public read never grants admin, and a wrong key is still refused
        assert c.get("/metrics").status_code == 401
        assert c.post("/api/v1/embed-tokens", json={"charts": ["*"]}).status_code == 401
        assert c.get("/api/v1/tickets", headers={"X-API-Key": "x" * 40}).status_code == 401


def test_database_errors_answer_503_not_500(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_env(monkeypatch)
    url = f"sqlite:///{tmp_path / 'w.db'}"
    engine = make_engine(url)
    with client_for(settings_for(url), engine) as c:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE events")
        response = c.get("/api/v1/tickets/desk/T1", headers=READ)
        assert response.status_code in (404, 503)
        response = c.get("/api/v1/sources", headers=READ)
        assert response.status_code == 503
        assert response.json() == {"detail": "the warehouse is unavailable"}


# analytics endpoints

LISTS = {
    "/api/v1/stale": {"number", "url", "age", "threshold", "reason", "dead", "team"},
    "/api/v1/blockers": {"number", "url", "blocker", "reason", "since", "age"},
    "/api/v1/time-in-status": {"number", "url", "team", "new", "in_progress", "resolved"},
    "/api/v1/cycle-time": {"number", "url", "lead_time", "cycle_time", "stop", "reopens"},
    "/api/v1/aging": {"number", "url", "age", "pace"},
    "/api/v1/throughput": {"date", "throughput"},
    "/api/v1/cfd": {"date", "new", "in_progress", "resolved", "arrived", "departed"},
    "/api/v1/handovers": {"from_team", "to_team", "handovers", "tickets", "bounces"},
}


@pytest.mark.parametrize("path", sorted(LISTS))
def test_analytics_lists_answer_pages_with_their_schema(client: TestClient, path: str) -> None:
    response = client.get(path, headers=READ)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"items", "total", "limit", "offset", "as_of"}
    assert body["total"] >= len(body["items"])
    if body["items"]:
        assert set(body["items"][0]) >= LISTS[path]
    # the same schema is what OpenAPI documents
    spec = client.get("/api/v1/openapi.json", headers=READ).json()
    assert "200" in spec["paths"][path]["get"]["responses"]


@pytest.mark.parametrize("path", sorted(LISTS))
def test_analytics_lists_answer_csv(client: TestClient, path: str) -> None:
    response = client.get(f"{path}?format=csv", headers=READ)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert set(rows[0]) >= LISTS[path]
    assert int(response.headers["x-total-count"]) == len(rows) - 1
    total = client.get(path, headers=READ).json()["total"]
    assert len(rows) - 1 == total


@pytest.mark.parametrize(
    "query",
    [
        "state=bogus",
        "priority=9",
        "status=maybe",
        "limit=0",
        "limit=100000",
        "offset=-1",
        "updated_since=yesterday",
        "format=xml",
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/stale", "/api/v1/blockers", "/api/v1/cycle-time"])
def test_analytics_bad_params_are_422(client: TestClient, path: str, query: str) -> None:
    response = client.get(f"{path}?{query}", headers=READ)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] == "query"


def test_stale_calls_filters_and_order(client: TestClient) -> None:
    body = client.get("/api/v1/stale", headers=READ).json()
    assert body["total"] > 0
    overdue = [i["overdue"] for i in body["items"]]
    assert overdue == sorted(overdue, reverse=True)  # most overdue first
    network = client.get("/api/v1/stale?team=Network", headers=READ).json()
    assert 0 < network["total"] < body["total"]
    assert {i["team"] for i in network["items"]} == {"Network"}
    p1 = client.get("/api/v1/stale?priority=1&source=desk", headers=READ).json()
    assert all(i["priority"] == 1 and i["source"] == "desk" for i in p1["items"])
    assert any((i["url"] or "").startswith("https://") for i in body["items"])
    page = client.get("/api/v1/stale?limit=2&offset=1", headers=READ).json()
    assert [i["ticket_id"] for i in page["items"]] == [i["ticket_id"] for i in body["items"][1:3]]
    assert client.get("/api/v1/stale?status=closed", headers=READ).json()["total"] == 0


def test_blockers_filter_by_kind(client: TestClient) -> None:
    every = client.get("/api/v1/blockers", headers=READ).json()
    kinds = {i["blocker"] for i in every["items"]}
    assert kinds, "the sample has blocked tickets"
    kind = sorted(kinds)[0]
    one = client.get(f"/api/v1/blockers?kind={kind}", headers=READ).json()
    assert one["total"] > 0 and {i["blocker"] for i in one["items"]} == {kind}
    both = client.get(
        "/api/v1/blockers?" + "&".join(f"kind={k}" for k in kinds), headers=READ
    ).json()
    assert both["total"] == every["total"]
    rows = list(
        csv.DictReader(
            io.StringIO(client.get(f"/api/v1/blockers?kind={kind}&format=csv", headers=READ).text)
        )
    )
    assert len(rows) == one["total"] and {r["blocker"] for r in rows} == {kind}
    bad = client.get("/api/v1/blockers?kind=bogus", headers=READ)
    assert bad.status_code == 422 and "kind" in bad.json()["detail"][0]["loc"]


def test_time_in_status_and_cycle_time_filter_by_ticket_columns(client: TestClient) -> None:
    for path in ("/api/v1/time-in-status", "/api/v1/cycle-time"):
        every = client.get(path, headers=READ).json()
        assert every["total"] == 20
        closed = client.get(f"{path}?status=closed", headers=READ).json()
        assert closed["total"] == 4
        assert client.get(f"{path}?team=Network", headers=READ).json()["total"] == 10
    done = client.get("/api/v1/cycle-time?status=closed", headers=READ).json()["items"]
    assert all(i["lead_time"] for i in done)


def test_flow_summary(client: TestClient) -> None:
    response = client.get("/api/v1/flow", headers=READ)
    assert response.status_code == 200
    body = response.json()
    assert {r["metric"] for r in body["cycle_time"]} == {"lead_time", "cycle_time"}
    assert {"p50", "p85", "p95", "sle", "n"} <= set(body["cycle_time"][0])
    assert "reopen_rate" in {r["metric"] for r in body["rates"]}
    assert body["as_of"]
    assert client.get("/api/v1/flow?team=Nobody", headers=READ).status_code == 200
    assert client.get("/api/v1/flow?priority=0", headers=READ).status_code == 422


def test_cumulative_flow_counts_every_ticket_on_the_last_day(client: TestClient) -> None:
    days = client.get("/api/v1/cfd", headers=READ).json()["items"]
    states = ("new", "in_progress", "waiting_customer", "waiting_supplier", "waiting_other")
    done = ("resolved", "closed", "cancelled")
    assert sum(days[-1][s] for s in (*states, *done)) == 20
    network = client.get("/api/v1/cfd?team=Network", headers=READ).json()["items"]
    assert sum(network[-1][s] for s in (*states, *done)) == 10


def test_daily_report(client: TestClient) -> None:
    response = client.get("/api/v1/report/daily?team=Network", headers=READ)
    assert response.status_code == 200
    body = response.json()
    assert body["team"] == "Network"
    assert set(body) >= {"date", "arrived", "resolved", "stale", "blocked", "counts", "as_of"}
    assert body["counts"]["stale"] == len(body["stale"]) > 0
    assert body["counts"]["milestones"] == len(body["milestones"])
    assert all(t["team"] == "Network" for t in body["stale"] + body["blocked"])
    assert all(t["reason"] and t["number"] for t in body["stale"])
    stale = client.get("/api/v1/stale?team=Network", headers=READ).json()["total"]
    assert body["counts"]["stale"] == stale
    # a day in the past: what came in and what was resolved on that day
    tickets = client.get("/api/v1/tickets?status=closed", headers=READ).json()["items"]
    day = tickets[0]["resolved_at"][:10]
    past = client.get(f"/api/v1/report/daily?date={day}", headers=READ).json()
    assert past["date"] == day and past["counts"]["resolved"] >= 1
    assert any(t["ticket_id"] == tickets[0]["external_id"] for t in past["resolved"])
    assert client.get("/api/v1/report/daily?date=2999-01-01", headers=READ).status_code == 422
    assert client.get("/api/v1/report/daily?date=nonsense", headers=READ).status_code == 422


def test_daily_report_milestones_of_today(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_env(monkeypatch)
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    done_at = midnight + (now - midnight) / 2
    created = midnight - timedelta(days=10)
    # A: open for ten days, the oldest open ticket this morning, finished today;
    # B: came in today and was taken up at once (not stale)
    oldest = _ticket(
        1,
        number="INC0042",
        state=LifecycleState.RESOLVED,
        created_at=created,
        updated_at=done_at,
        resolved_at=done_at,
        priority=5,
    )
    fresh = _ticket(2, created_at=done_at, updated_at=done_at, priority=5)

    def ev(ticket: str, at: datetime, old: str | None, new: str) -> EventRecord:
        return EventRecord(
            source="desk",
            ticket_id=ticket,
            occurred_at=at,
            field=EventField.STATE,
            old_value=old,
            new_value=new,
            origin=EventOrigin.HISTORY,
            actor="ann",
        )

    events = [
        ev("T1", created, None, "new"),
        ev("T1", created + timedelta(hours=1), "new", "in_progress"),
        ev("T1", done_at, "in_progress", "resolved"),
        ev("T2", done_at, None, "new"),
        ev("T2", done_at, "new", "in_progress"),
    ]
    url = f"sqlite:///{tmp_path / 'milestones.db'}"
    engine = make_engine(url)
    with engine.begin() as conn:
        upsert_tickets(conn, tickets_frame([oldest, fresh]), now=now)
        insert_events(conn, events_frame(events), now=now)
    with client_for(settings_for(url), engine) as client:
        body = client.get("/api/v1/report/daily", headers=READ).json()
    engine.dispose()
    days = (done_at - created).total_seconds() / 86400
    assert body["milestones"] == [
        {
            "kind": "oldest_resolved",
            "text": f"the oldest open ticket was finished after {days:.1f} days",
            "value": round(days, 2),
            "at": done_at.isoformat().replace("+00:00", "Z"),
            "source": "desk",
            "ticket_id": "T1",
            "number": "INC0042",
            "title": "Printer 1 jammed",
            "url": "https://desk.example.org/ticket/T1",
        },
        {
            "kind": "no_stale_calls",
            "text": "no stale calls among 1 open ticket",
            "value": 1.0,
            "at": None,
            "source": None,
            "ticket_id": None,
            "number": None,
            "title": None,
            "url": None,
        },
    ]
    assert body["counts"]["milestones"] == 2


def test_deleted_tickets_are_left_out_but_still_answer_by_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_env(monkeypatch)
    url = f"sqlite:///{tmp_path / 'w.db'}"
    engine = warehouse(url)
    with engine.begin() as conn:
        stored = [
            r[0]
            for r in conn.exec_driver_sql("SELECT external_id FROM tickets WHERE source = 'desk'")
        ]
        gone = mark_deleted(
            conn, source="desk", found=set(stored) - {"T1", "T2"}, now=datetime.now(UTC)
        )
    assert gone.marked == 2
    with client_for(settings_for(url), engine) as c:
        listed = c.get("/api/v1/tickets?limit=500", headers=READ).json()
        assert listed["total"] == 18
        assert not {"desk/T1", "desk/T2"} & set(_ids(listed))
        detail = c.get("/api/v1/tickets/desk/T1", headers=READ)
        assert detail.status_code == 200 and detail.json()["deleted_at"] is not None
        assert c.get("/api/v1/tickets/desk/T3", headers=READ).json()["deleted_at"] is None
        desk = {s["name"]: s for s in c.get("/api/v1/sources", headers=READ).json()}["desk"]
        assert (desk["tickets"], desk["deleted_tickets"]) == (13, 2)
    engine.dispose()


def test_flow_charts_start_when_the_warehouse_history_starts(client: TestClient) -> None:
    """The fixture's first ticket was logged 29 days ago: the 90-day flow window is cut to the
    days the warehouse knows, instead of 60 days of zeros that read as an idle desk."""
    first_day = (NOW - timedelta(days=29)).date().isoformat()  # _ticket(1)
    for path in ("/api/v1/cfd", "/api/v1/throughput"):
        days = client.get(f"{path}?limit=500", headers=READ).json()["items"]
        assert days[0]["date"] == first_day, path
        assert len(days) in (30, 31), path  # up to today, in the desk's time zone


def test_the_flow_window_is_only_cut_where_the_data_starts_later() -> None:
    from app.routes.analytics import _data_window

    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    recent = pd.DataFrame({"created_at": pd.to_datetime(["2026-11-01", "2026-11-20"], utc=True)})
    old = pd.DataFrame({"created_at": pd.to_datetime(["2025-01-01", "2026-11-20"], utc=True)})
    window = _data_window(recent, now)
    assert window is not None
    assert window.start == pd.Timestamp("2026-11-01", tz="UTC")
    assert window.end == pd.Timestamp(now)
    assert _data_window(old, now) is None
    assert _data_window(recent.iloc[0:0], now) is None
