"""The REST API: status codes, filters, sorting, paging, schemas, CSV, 422s and 503s."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.warehouse import make_engine
from tests.app.test_api_support import (
    ADMIN,
    BOTH,
    READ,
    XSS_TITLE,
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
