"""The fake TOPdesk behaves like the real API (so the connector tests mean something)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.fakes import ServedFake
from tests.fakes.topdesk import GROUPS, STATUSES, FakeTopdesk, fmt


@pytest.fixture
def fake() -> FakeTopdesk:
    fake = FakeTopdesk()
    for i in range(25):
        fake.add_incident(briefDescription=f"incident {i}")
    return fake


def _client(fake: FakeTopdesk, *, password: str | None = None) -> httpx.Client:
    return httpx.Client(
        base_url="https://td.example/tas/api",
        transport=httpx.MockTransport(fake),
        auth=(fake.username, password or fake.password),
    )


def test_wrong_or_missing_credentials_get_401(fake: FakeTopdesk) -> None:
    assert _client(fake, password="wrong").get("/version").status_code == 401
    anonymous = httpx.Client(base_url="https://td.example", transport=httpx.MockTransport(fake))
    assert anonymous.get("/tas/api/version").status_code == 401
    assert _client(fake).get("/version").json() == {"version": "3.9.0"}


def test_pages_answer_206_then_200_then_204(fake: FakeTopdesk) -> None:
    client = _client(fake)
    statuses = [
        client.get("/incidents", params={"pageStart": start, "pageSize": 10}).status_code
        for start in (0, 10, 20, 30)
    ]
    assert statuses == [206, 206, 200, 204]
    last = client.get("/incidents", params={"pageStart": 20, "pageSize": 10})
    assert len(last.json()) == 5
    assert client.get("/incidents", params={"query": "number==nope"}).status_code == 204


def test_unknown_parameters_get_400_with_messages(fake: FakeTopdesk) -> None:
    client = _client(fake)
    response = client.get("/incidents", params={"start": 0, "page_size": 10})
    assert response.status_code == 400
    assert "start" in response.json()[0]["message"]
    assert client.get("/incidents", params={"pageSize": 10_001}).status_code == 400
    assert (
        client.get("/incidents", params={"query": "modificationDate=ge=2024-03-01"}).status_code
        == 400
    )


def test_fiql_filters_and_sorts(fake: FakeTopdesk) -> None:
    client = _client(fake)
    ids = list(fake.incidents)
    fake.modify(ids[3], operatorGroup=GROUPS["Network"])
    fake.modify(ids[7], operatorGroup=GROUPS["Network"], processingStatus=STATUSES["In progress"])
    since = fmt(fake.clock - timedelta(seconds=1))
    assert since is not None

    def query(q: str, sort: str = "modificationDate:asc,id:asc") -> list[str]:
        response = client.get("/incidents", params={"query": q, "sort": sort, "pageSize": 100})
        assert response.status_code in (200, 204), response.text
        return [i["id"] for i in response.json()] if response.status_code == 200 else []

    assert query(f"modificationDate=ge={since.replace('+0000', 'Z')}") == [ids[3], ids[7]]
    assert query(f"modificationDate=gt={since.replace('+0000', 'Z')}") == [ids[7]]
    network = GROUPS["Network"]["id"]
    assert query(f"operatorGroup.id=={network}") == [ids[3], ids[7]]
    assert query(f"operatorGroup.id=={network};processingStatus.name==Logged") == [ids[3]]
    assert sorted(
        query(f"number=={fake.incidents[ids[0]]['number']},operatorGroup.id=={network}")
    ) == sorted([ids[0], ids[3], ids[7]])
    assert query(f"(operatorGroup.id=={network},closed==true);completed==false") == [ids[3], ids[7]]
    assert query(f"id=in=({ids[1]},{ids[2]})") == [ids[1], ids[2]]
    assert query(f"operatorGroup.id=={network}", sort="modificationDate:desc") == [ids[7], ids[3]]


def test_fields_trim_the_incidents(fake: FakeTopdesk) -> None:
    page = _client(fake).get("/incidents", params={"fields": "id,number,operatorGroup.name"})
    assert set(page.json()[0]) == {"id", "number", "operatorGroup"}


def test_partial_and_archived_incidents_need_all(fake: FakeTopdesk) -> None:
    ids = list(fake.incidents)
    fake.modify(ids[0], status="partial")
    fake.modify(ids[1], archivingReason={"id": "a", "name": "Old"})
    client = _client(fake)
    default = client.get("/incidents", params={"pageSize": 100}).json()
    everything = client.get("/incidents", params={"pageSize": 100, "all": "true"}).json()
    assert len(default) == 23
    assert len(everything) == 25


def test_legacy_versions_page_with_start_and_filter_by_day() -> None:
    fake = FakeTopdesk(version="3.1.0")
    old = fake.add_incident(at=datetime(2024, 2, 27, 10, tzinfo=UTC))
    new = fake.add_incident(at=datetime(2024, 3, 2, 10, tzinfo=UTC))
    client = _client(fake)
    assert client.get("/incidents", params={"pageStart": 0}).status_code == 400
    response = client.get(
        "/incidents",
        params={
            "start": 0,
            "page_size": 10,
            "order_by": "modification_date asc",
            "modification_date_start": "2024-03-01",
        },
    )
    assert [i["id"] for i in response.json()] == [new["id"]]
    both = client.get("/incidents", params={"order_by": "modification_date+asc"}).json()
    assert [i["id"] for i in both] == [old["id"], new["id"]]


def test_actions_are_paged_and_404_for_unknown_incidents(fake: FakeTopdesk) -> None:
    incident = next(iter(fake.incidents))
    for i in range(3):
        fake.add_action(incident, visible=i != 1)
    client = _client(fake)
    first = client.get(f"/incidents/id/{incident}/actions", params={"start": 0, "page_size": 2})
    rest = client.get(f"/incidents/id/{incident}/actions", params={"start": 2, "page_size": 2})
    assert (first.status_code, len(first.json())) == (206, 2)
    assert (rest.status_code, len(rest.json())) == (200, 1)
    assert [a["invisibleForCaller"] for a in first.json()] == [False, True]
    assert client.get("/incidents/id/nope/actions").status_code == 404


def test_knobs_fire_once_on_the_matching_request(fake: FakeTopdesk) -> None:
    client = _client(fake)
    fake.fail_next(500, path="/tas/api/incidents", skip=1)
    assert client.get("/version").status_code == 200
    assert client.get("/incidents").status_code == 206
    assert client.get("/incidents").status_code == 500
    assert client.get("/incidents").status_code == 206
    fake.rate_limit_next("7")
    limited = client.get("/incidents")
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "7")
    fake.html_error_next()
    html = client.get("/incidents")
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
    fake.invalid_json_next()
    with pytest.raises(ValueError):
        client.get("/incidents").json()
    fake.fail_next(403)
    assert client.get("/incidents").status_code == 403
    assert client.get("/incidents").status_code == 206


def test_slow_knob_times_out_like_a_real_client(fake: FakeTopdesk) -> None:
    client = httpx.Client(
        base_url="https://td.example/tas/api",
        transport=httpx.MockTransport(fake),
        auth=(fake.username, fake.password),
        timeout=0.05,
    )
    fake.slow_next(5)
    with pytest.raises(httpx.ReadTimeout):
        client.get("/version")
    fake.slow_next(0.01)
    assert client.get("/version").status_code == 200


def test_served_over_loopback_with_real_timeouts(fake: FakeTopdesk) -> None:
    with ServedFake(fake) as served:
        client = httpx.Client(
            base_url=served.url + "/tas/api", auth=(fake.username, fake.password), timeout=0.3
        )
        assert client.get("/incidents", params={"pageSize": 5}).status_code == 206
        fake.slow_next(1.0)
        with pytest.raises(httpx.ReadTimeout):
            client.get("/version")
        response = client.get("/version")
        assert response.status_code == 200
        assert response.headers["Date"].endswith("GMT")
        client.close()
