"""The contract every network connector keeps, checked against its fake server.

Parametrized over ``CASES`` (one entry per connector and paging dialect): follow every page,
honour ``since``, see incidents that change while paging, survive ties on the cursor field,
stop on bad credentials, wait out rate limits. A new connector adds a case.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.base import LifecycleState, TicketRecord
from connectors.config import TopdeskSourceConfig
from connectors.errors import ConnectorConfigError, RateLimitedError
from connectors.http import make_client
from connectors.topdesk import API_PATH, TopdeskConnector
from tests.fakes.topdesk import GROUPS, FakeTopdesk, Recorded

PAGE = 10


@dataclass
class Case:
    """How to drive one connector against its fake."""

    fake: FakeTopdesk
    connector: Callable[[], TopdeskConnector]
    list_path: str

    def fetch(self, since: datetime | None = None) -> list[TicketRecord]:
        return [t for page in self.connector().pages(since=since) for t in page.tickets]

    def pages(self, since: datetime | None = None) -> Iterator[Any]:
        return self.connector().pages(since=since)


def _topdesk(version: str) -> Case:
    fake = FakeTopdesk(version=version)
    config = TopdeskSourceConfig(
        name="td",
        kind="topdesk",
        base_url="https://td.example",
        username=fake.username,
        password_env="TD_CONTRACT_PASSWORD",
        page_size=PAGE,
        max_attempts=3,
    )

    def connector() -> TopdeskConnector:
        client = make_client(config, transport=httpx.MockTransport(fake), base_path=API_PATH)
        return TopdeskConnector(config, client, sleep=lambda _s: None)

    return Case(fake=fake, connector=connector, list_path=f"{API_PATH}/incidents")


CASES: dict[str, Callable[[], Case]] = {
    "topdesk": lambda: _topdesk("3.9.0"),
    "topdesk-legacy": lambda: _topdesk("3.2.1"),
}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Case:
    monkeypatch.setenv("TD_CONTRACT_PASSWORD", "app-pass-Zx81-secret")
    return CASES[request.param]()


def _lists(case: Case) -> list[Recorded]:
    return [r for r in case.fake.requests if r.path == case.list_path]


def test_yields_valid_records_and_follows_every_page(case: Case) -> None:
    for i in range(PAGE * 3 + 4):
        case.fake.add_incident(briefDescription=f"incident {i}")
    records = case.fetch()
    assert sorted(r.external_id for r in records) == sorted(case.fake.incidents)
    for record in records:
        assert record.source == "td"
        assert isinstance(record.state, LifecycleState)
        assert record.updated_at is not None and record.updated_at.tzinfo is not None
    statuses = [r.status for r in _lists(case)]
    assert statuses[-1] == 200
    assert set(statuses[:-1]) == {206}
    assert len(statuses) >= 4


def test_empty_source_gives_one_empty_last_page(case: Case) -> None:
    pages = list(case.pages())
    assert [(p.received, p.last) for p in pages] == [(0, True)]
    assert [r.status for r in _lists(case)] == [204]


def test_since_fetches_only_what_changed(case: Case) -> None:
    start = case.fake.clock
    ids = [case.fake.add_incident(at=start + timedelta(days=i))["id"] for i in range(PAGE * 4)]
    first = case.fetch()
    cursor = max(r.updated_at for r in first if r.updated_at)
    case.fake.advance(timedelta(days=3))  # legacy servers filter by day
    changed = {ids[2], ids[17], ids[33]}
    for incident_id in changed:
        case.fake.modify(incident_id, operatorGroup=GROUPS["Network"])
    requests_before = len(_lists(case))
    again = case.fetch(since=cursor + timedelta(seconds=1))
    assert {r.external_id for r in again} == changed
    assert all(r.team == "Network" for r in again)
    assert len(_lists(case)) - requests_before == 1


def test_incidents_changed_while_paging_are_not_lost(case: Case) -> None:
    ids = [case.fake.add_incident()["id"] for _ in range(PAGE * 5)]
    touched: list[str] = []

    def change_during_sync(number: int, request: Recorded) -> None:
        lists = len(_lists(case))
        if request.path == case.list_path and lists in (2, 4) and len(touched) < 4:
            # one already received (moves behind everything), one not yet received
            for incident_id in (ids[lists], ids[PAGE * 4 + lists]):
                case.fake.modify(incident_id, operatorGroup=GROUPS["Workplace"])
                touched.append(incident_id)

    case.fake.on_request = change_during_sync
    records = case.fetch()
    latest = {r.external_id: r for r in records}
    assert set(latest) == set(ids)
    for incident_id in touched:
        assert latest[incident_id].team == "Workplace"
        stored = case.fake.incidents[incident_id]["modificationDate"]
        assert latest[incident_id].raw["modificationDate"] == stored


def test_ties_on_the_cursor_field_across_pages_lose_nothing(case: Case) -> None:
    instant = case.fake.advance()
    ids = [case.fake.add_incident(at=instant)["id"] for _ in range(PAGE * 3 + 2)]
    after = case.fake.add_incident()["id"]
    records = case.fetch()
    assert sorted(r.external_id for r in records) == sorted([*ids, after])
    assert len(records) == len(ids) + 1


def test_a_change_inside_a_tie_while_paging_restarts_and_loses_nothing(case: Case) -> None:
    instant = case.fake.advance()
    ids = sorted(case.fake.add_incident(at=instant)["id"] for _ in range(PAGE * 3))
    done: list[bool] = []

    def shrink_the_tie(number: int, request: Recorded) -> None:
        if request.path == case.list_path and len(_lists(case)) == 2 and not done:
            case.fake.modify(ids[0], operatorGroup=GROUPS["Network"])  # already received
            done.append(True)

    case.fake.on_request = shrink_the_tie
    connector = case.connector()
    records = [t for page in connector.pages(since=None) for t in page.tickets]
    assert {r.external_id for r in records} == set(ids)
    assert {r.team for r in records if r.external_id == ids[0]} >= {"Network"}
    assert connector.stats.restarts >= 1


def test_bad_credentials_stop_with_a_config_error(case: Case) -> None:
    case.fake.password = "rotated-password"
    with pytest.raises(ConnectorConfigError, match="HTTP 401") as info:
        case.fetch()
    assert info.value.source == "td"
    assert "username" in str(info.value)


def test_rate_limits_are_waited_out_then_reported(case: Case) -> None:
    case.fake.add_incident()
    case.fake.rate_limit_next("1", path=case.list_path)
    assert len(case.fetch()) == 1
    case.fake.rate_limit_next("1", times=5, path=case.list_path)
    with pytest.raises(RateLimitedError):
        case.fetch()
