"""Charts and the analytics endpoints behind them: figures, pages, filters, tokens, caching."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.charts import aging_figure, figure_json
from tests.app.test_api_support import (
    ADMIN,
    READ,
    XSS_TITLE,
    client_for,
    key_env,
    settings_for,
    warehouse,
)

WIRED = ("aging", "throughput", "stale", "cfd", "cycle-time", "time-in-status", "handover")
WITH_DATA = ("aging", "throughput", "stale", "cfd", "cycle-time", "time-in-status")


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Engine]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('charts') / 'w.db'}"
    engine = warehouse(url)
    yield url, engine
    engine.dispose()


@pytest.fixture
def client(filled: tuple[str, Engine], monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    key_env(monkeypatch)
    url, engine = filled
    with client_for(settings_for(url), engine) as c:
        yield c


def _values(array: object) -> list[float]:
    """A Plotly data array: a plain list, or typed-array JSON (``{"dtype", "bdata"}``)."""
    if isinstance(array, dict):
        raw = base64.b64decode(array["bdata"])
        return [float(v) for v in np.frombuffer(raw, dtype=np.dtype(array["dtype"]))]
    assert isinstance(array, list)
    return [float(v) for v in array]


def _points(figure: dict[str, object]) -> int:
    """Data points, not counting reference marks (the aging chart's pace bands)."""
    data = figure["data"]
    assert isinstance(data, list)
    return sum(
        len(_values(trace.get("y") or []))
        for trace in data
        if not str(trace.get("name", "")).endswith(" pace")
    )


def test_chart_list(client: TestClient) -> None:
    charts = {c["name"]: c for c in client.get("/charts", headers=READ).json()}
    assert set(WIRED) <= set(charts)
    assert charts["aging"]["page"] == "/charts/aging"
    assert charts["aging"]["figure"] == "/charts/aging.json"


@pytest.mark.parametrize("name", WIRED)
def test_figure_json_has_data_title_and_axes(client: TestClient, name: str) -> None:
    response = client.get(f"/charts/{name}.json", headers=READ)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    figure = response.json()
    layout = figure["layout"]
    assert layout["title"]["text"]
    if name not in WITH_DATA:  # the sample has no team-to-team handover: a figure that says so
        assert "No handovers" in json.dumps(figure)
        return
    assert _points(figure) > 0
    assert layout["xaxis"]["title"]["text"] and layout["yaxis"]["title"]["text"]


def test_aging_points_are_open_tickets_with_numbers_and_links(client: TestClient) -> None:
    figure = client.get("/charts/aging.json", headers=READ).json()
    tickets = [trace for trace in figure["data"] if "customdata" in trace]
    numbers = [c[1] for trace in tickets for c in trace["customdata"]]
    links = [c[0] for trace in tickets for c in trace["customdata"]]
    open_total = client.get("/api/v1/tickets?status=open", headers=READ).json()["total"]
    assert len(numbers) == open_total == 16
    assert "INC0001" in numbers
    # one hover template per trace instead of per-point text
    assert all("%{customdata[1]}" in trace["hovertemplate"] for trace in tickets)
    assert all("text" not in trace for trace in tickets)
    # the ticket with a javascript: URL gets no link; the others link to their tool
    assert None in links
    assert "https://desk.example.org/ticket/T1" in links
    assert not any(isinstance(u, str) and u.startswith("javascript") for u in links)
    # nothing is capped at this size, so there is no note
    assert "showing the oldest" not in json.dumps(figure)


def _aging_frame(ages: dict[str, list[float]]) -> pd.DataFrame:
    rows = [
        {
            "state": state,
            "age": pd.Timedelta(days=age),
            "pace": "> p95" if age > 35 else "< p50",
            "number": f"<b>{state}-{i}</b>",
            "url": f"https://desk.example.org/{state}/{i}",
        }
        for state, values in ages.items()
        for i, age in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_aging_chart_keeps_the_oldest_of_each_state_in_proportion_with_a_note() -> None:
    # 8 in progress, 2 new; room for 5: 4 in progress and 1 new, the oldest of each
    frame = _aging_frame({"in_progress": [1, 20, 3, 40, 5, 60, 7, 80], "new": [2, 30]})
    fig = aging_figure(frame, datetime(2024, 3, 15, tzinfo=UTC), "Aging", max_points=5)
    figure = json.loads(figure_json(fig))
    points = [
        (c[1], y)
        for trace in figure["data"]
        if "customdata" in trace
        for c, y in zip(trace["customdata"], _values(trace["y"]), strict=True)
    ]
    assert sorted(y for _, y in points) == [20.0, 30.0, 40.0, 60.0, 80.0]
    # numbers are escaped before they reach the hover label
    assert all(n.startswith("&lt;b&gt;") and "<b>" not in n for n, _ in points)
    notes = [a["text"] for a in figure["layout"]["annotations"]]
    assert any("showing the oldest 5 of 10 open tickets" in n for n in notes)
    ticks = figure["layout"]["xaxis"]["ticktext"]
    assert ticks == ["new<br>2 open", "in progress<br>8 open"]
    # each point sits within its state's strip
    xs = {
        c[1].split("-")[0]: x
        for trace in figure["data"]
        if "customdata" in trace
        for c, x in zip(trace["customdata"], _values(trace["x"]), strict=True)
    }
    assert abs(xs["&lt;b&gt;new"] - 0) < 0.5 and abs(xs["&lt;b&gt;in_progress"] - 1) < 0.5
    # the slowest band is red, the fastest green
    colors = {t["name"]: t["marker"]["color"] for t in figure["data"] if "customdata" in t}
    assert colors == {"&gt; p95": "#c62828", "&lt; p50": "#2e7d32"}


def test_filters_apply_to_charts(client: TestClient) -> None:
    network = client.get("/charts/aging.json?team=Network", headers=READ).json()
    listed = client.get("/api/v1/tickets?team=Network&status=open", headers=READ).json()["total"]
    assert _points(network) == listed
    finished = client.get("/charts/throughput.json?team=Network", headers=READ).json()
    everyone = client.get("/charts/throughput.json", headers=READ).json()
    total = sum(_values(everyone["data"][0]["y"]))
    assert sum(_values(finished["data"][0]["y"])) <= total
    assert total == 4  # the four resolved tickets
    empty = client.get("/charts/aging.json?team=Nobody", headers=READ).json()
    assert _points(empty) == 0 and "No open tickets" in json.dumps(empty)


def test_chart_page_is_self_contained(client: TestClient) -> None:
    response = client.get("/charts/aging?team=Network", headers=READ)
    assert response.status_code == 200
    page = response.text
    assert '<script src="/static/plotly.min.js' in page
    assert '<script src="/static/embed.js' in page
    assert "cdn" not in page.lower() and "https://" not in page.split("<body")[0]
    block = page.split('type="application/json" id="figure-aging">')[1].split("</script>")[0]
    assert "<" not in block  # the figure cannot close its script block
    assert _points(json.loads(block)) > 0
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'self'" in csp and "script-src 'self'" in csp


def test_unknown_chart_lists_the_known_ones(client: TestClient) -> None:
    response = client.get("/charts/nope.json", headers=READ)
    assert response.status_code == 404
    assert "aging" in response.json()["detail"]


def test_tokens_open_only_their_charts_and_pins(client: TestClient) -> None:
    minted = client.post(
        "/api/v1/embed-tokens", json={"charts": ["aging"], "team": "Network"}, headers=ADMIN
    ).json()
    token = minted["token"]
    assert minted["urls"] == {"aging": f"/charts/aging?token={token}"}
    own = client.get(f"/charts/aging.json?token={token}")
    assert own.status_code == 200
    listed = client.get("/api/v1/tickets?team=Network&status=open", headers=READ).json()["total"]
    assert _points(own.json()) == listed  # pinned to the team without asking
    assert client.get(f"/charts/aging?token={token}").status_code == 200
    assert client.get(f"/charts/throughput.json?token={token}").status_code == 403
    assert client.get(f"/charts/aging.json?team=Workplace&token={token}").status_code == 403
    assert client.get(f"/api/v1/aging?token={token}").status_code == 401


def test_charts_are_computed_once_per_warehouse_version(client: TestClient) -> None:
    cache = client.app.state.cache  # type: ignore[attr-defined]
    client.get("/charts/aging.json?team=Workplace", headers=READ)
    client.get("/api/v1/aging?team=Workplace", headers=READ)
    misses = cache.stats.misses
    for _ in range(5):
        assert client.get("/charts/aging.json?team=Workplace", headers=READ).status_code == 200
        assert client.get("/api/v1/aging?team=Workplace", headers=READ).status_code == 200
    assert cache.stats.misses == misses


def test_aging_endpoint(client: TestClient) -> None:
    body = client.get("/api/v1/aging?limit=5", headers=READ).json()
    assert body["total"] == 16 and len(body["items"]) == 5 and body["as_of"]
    first = body["items"][0]
    assert {"number", "title", "url", "age", "state", "pace", "over_sle"} <= set(first)
    ages = [i["age"] for i in client.get("/api/v1/aging", headers=READ).json()["items"]]
    assert len(ages) == 16
    rows = list(
        csv.DictReader(
            io.StringIO(client.get("/api/v1/aging?format=csv&team=Network", headers=READ).text)
        )
    )
    assert len(rows) == client.get("/api/v1/aging?team=Network", headers=READ).json()["total"]
    assert {r["team"] for r in rows} == {"Network"}
    assert client.get("/api/v1/aging?state=bogus", headers=READ).status_code == 422


def test_throughput_endpoint(client: TestClient) -> None:
    body = client.get("/api/v1/throughput", headers=READ).json()
    days = body["items"]
    assert sum(d["throughput"] for d in days) == 4
    assert any(d["throughput"] == 0 for d in days)  # zero days are kept
    text = client.get("/api/v1/throughput?format=csv", headers=READ).text
    assert text.splitlines()[0] == "date,throughput"


def test_dashboard_shows_charts_for_a_team(client: TestClient) -> None:
    token = client.post(
        "/api/v1/embed-tokens", json={"charts": ["dashboard"]}, headers=ADMIN
    ).json()["token"]
    page = client.get(f"/?team=Network&token={token}").text
    assert 'id="figure-aging"' in page and 'id="figure-throughput"' in page
    assert '<option value="Network" selected>' in page
    assert XSS_TITLE not in page


def test_aging_chart_draws_pace_bands(client: TestClient) -> None:
    figure = client.get("/charts/aging.json", headers=READ).json()
    pace = [t for t in figure["data"] if str(t.get("name", "")).endswith(" pace")]
    assert pace, "the sample has a finished ticket, so in_progress has pace percentiles"
    assert {t["name"] for t in pace} <= {"p50 pace", "p70 pace", "p85 pace", "p95 pace"}
    assert all("in progress" in t["text"] for t in pace)


@pytest.mark.parametrize("name", ["stale", "cycle-time"])
def test_ticket_charts_hover_with_number_and_link(client: TestClient, name: str) -> None:
    figure = client.get(f"/charts/{name}.json", headers=READ).json()
    texts = [t for trace in figure["data"] for t in trace.get("text") or []]
    links = [c[0] for trace in figure["data"] for c in trace.get("customdata") or []]
    assert texts and all(t.startswith(("INC", "OPS-")) for t in texts)
    assert all("<script>" not in t for t in texts)
    assert any(isinstance(u, str) and u.startswith("https://") for u in links)
    assert not any(isinstance(u, str) and u.startswith("javascript") for u in links)


def test_stale_chart_has_one_point_per_stale_call(client: TestClient) -> None:
    figure = client.get("/charts/stale.json?team=Network", headers=READ).json()
    listed = client.get("/api/v1/stale?team=Network", headers=READ).json()["total"]
    assert _points(figure) == listed > 0
    assert figure["layout"]["xaxis"]["title"]["text"] == "team"


def test_cycle_time_chart_has_percentile_lines(client: TestClient) -> None:
    figure = client.get("/charts/cycle-time.json", headers=READ).json()
    notes = [a["text"] for a in figure["layout"].get("annotations", [])]
    assert any(n.startswith("85%:") for n in notes) and any(n.startswith("50%:") for n in notes)


def test_time_in_status_chart_is_by_team_with_longest_ticket(client: TestClient) -> None:
    figure = client.get("/charts/time-in-status.json", headers=READ).json()
    teams = {x for trace in figure["data"] for x in trace["x"]}
    assert {"Network", "Workplace"} <= teams
    assert any("longest: INC" in t for trace in figure["data"] for t in trace["text"])


def test_cfd_is_stacked_per_state(client: TestClient) -> None:
    figure = client.get("/charts/cfd.json", headers=READ).json()
    names = {t["name"] for t in figure["data"]}
    assert {"new", "in progress", "resolved"} <= names
    assert all(t.get("stackgroup") == "cfd" for t in figure["data"])


def test_dashboard_lists_stale_and_blocked_tickets(client: TestClient) -> None:
    token = client.post(
        "/api/v1/embed-tokens", json={"charts": ["dashboard"]}, headers=ADMIN
    ).json()["token"]
    page = client.get(f"/?team=Network&token={token}").text
    assert "Stale calls" in page and "Blocked" in page
    assert "<h2>Milestones today</h2>" in page
    assert 'href="https://desk.example.org/ticket/' in page
    for name in ("stale", "cfd", "cycle-time", "time-in-status", "handover"):
        assert f'id="figure-{name}"' in page
