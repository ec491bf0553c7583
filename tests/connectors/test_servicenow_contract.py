"""The network-connector contract (tests/connectors/test_contract.py) kept by the ServiceNow
connector against its fake: follow every page, honour ``since``, see records that change while
paging, survive ties on the cursor field, stop on bad credentials, wait out rate limits; plus
pages that the instance's ACLs empty."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pandas as pd
import pytest

from connectors.base import LifecycleState
from connectors.config import ServiceNowSourceConfig
from connectors.errors import ConnectorConfigError, RateLimitedError
from connectors.protocol import TicketPage
from connectors.servicenow import ServiceNowConnector, make_servicenow_client
from tests.fakes.servicenow import FakeServiceNow, Recorded

PAGE = 10
LIST = "/api/now/table/incident"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeServiceNow:
    monkeypatch.setenv("SN_CONTRACT_PASSWORD", "sn-pass-Qw3-secret")
    return FakeServiceNow()


def _connector(fake: FakeServiceNow) -> ServiceNowConnector:
    config = ServiceNowSourceConfig(
        name="sn",
        kind="servicenow",
        base_url="https://sn.example",
        username=fake.username,
        password_env="SN_CONTRACT_PASSWORD",
        page_size=PAGE,
        max_attempts=3,
    )
    client = make_servicenow_client(config, transport=httpx.MockTransport(fake))
    return ServiceNowConnector(config, client, sleep=lambda _s: None)


def _pages(fake: FakeServiceNow, since: pd.Timestamp | None = None) -> list[TicketPage]:
    return list(_connector(fake).pages(since=None if since is None else since.to_pydatetime()))


def _tickets(pages: list[TicketPage]) -> pd.DataFrame:
    return pd.concat([p.tickets for p in pages], ignore_index=True)


def _lists(fake: FakeServiceNow) -> list[Recorded]:
    return [r for r in fake.requests if r.path == LIST]


def test_yields_valid_records_and_follows_every_page(fake: FakeServiceNow) -> None:
    for i in range(PAGE * 3 + 4):
        fake.add_record(short_description=f"incident {i}")
    pages = _pages(fake)
    tickets = _tickets(pages)
    assert sorted(tickets["external_id"]) == sorted(fake.tables["incident"].rows)
    assert set(tickets["source"]) == {"sn"}
    assert set(tickets["state"]) <= {s.value for s in LifecycleState}
    assert tickets["updated_at"].dt.tz is not None
    assert [p.last for p in pages] == [False, False, False, True]
    assert pages[0].total == PAGE * 3 + 4
    assert len(_lists(fake)) == 4
    # every page after the first starts after the last row received (keyset, no offsets)
    assert all("^ORsys_id>" in r.params["sysparm_query"] for r in _lists(fake)[1:])
    assert all("sysparm_offset" not in r.params for r in _lists(fake))


def test_empty_source_gives_one_empty_last_page(fake: FakeServiceNow) -> None:
    pages = _pages(fake)
    assert [(p.received, p.last) for p in pages] == [(0, True)]


def test_since_fetches_only_what_changed(fake: FakeServiceNow) -> None:
    start = fake.now
    ids = [fake.add_record(at=start + timedelta(days=i))["sys_id"] for i in range(PAGE * 4)]
    cursor = _tickets(_pages(fake))["updated_at"].max()
    fake.advance(timedelta(days=3))
    group = fake.add_group("Network")
    changed = {ids[2], ids[17], ids[33]}
    for sys_id in changed:
        fake.modify(sys_id, assignment_group=group)
    before = len(_lists(fake))
    again = _tickets(_pages(fake, since=cursor + pd.Timedelta(seconds=1)))
    assert set(again["external_id"]) == changed
    assert set(again["team"]) == {"Network"}
    assert len(_lists(fake)) - before == 1


def test_records_changed_while_paging_are_not_lost(fake: FakeServiceNow) -> None:
    ids = [fake.add_record()["sys_id"] for _ in range(PAGE * 5)]
    group = fake.add_group("Workplace")
    touched: list[str] = []

    def change_during_sync(request: httpx.Request) -> None:
        lists = len(_lists(fake))
        if request.url.path == LIST and lists in (2, 4) and len(touched) < 4:
            # one already received (moves behind everything), one not yet received
            for sys_id in (ids[lists], ids[PAGE * 4 + lists]):
                fake.modify(sys_id, assignment_group=group)
                touched.append(sys_id)

    fake.on_request = change_during_sync
    tickets = _tickets(_pages(fake))
    latest = tickets.drop_duplicates("external_id", keep="last").set_index("external_id")
    assert set(latest.index) == set(ids)
    for sys_id in touched:
        assert latest.loc[sys_id, "team"] == "Workplace"
        stored = fake.get_record(sys_id)["sys_updated_on"]
        assert latest.loc[sys_id, "updated_at"] == pd.Timestamp(stored, tz="UTC")


def test_ties_on_the_cursor_field_across_pages_lose_nothing(fake: FakeServiceNow) -> None:
    instant = fake.advance()
    ids = [fake.add_record(at=instant)["sys_id"] for _ in range(PAGE * 3 + 2)]
    after = fake.add_record()["sys_id"]
    tickets = _tickets(_pages(fake))
    assert sorted(tickets["external_id"]) == sorted([*ids, after])


def test_a_change_inside_a_tie_while_paging_loses_nothing(fake: FakeServiceNow) -> None:
    instant = fake.advance()
    ids = sorted(fake.add_record(at=instant)["sys_id"] for _ in range(PAGE * 3))
    group = fake.add_group("Network")
    done: list[bool] = []

    def shrink_the_tie(request: httpx.Request) -> None:
        if request.url.path == LIST and len(_lists(fake)) == 2 and not done:
            fake.modify(ids[0], assignment_group=group)  # already received
            fake.modify(ids[-1], assignment_group=group)  # not yet
            done.append(True)

    fake.on_request = shrink_the_tie
    tickets = _tickets(_pages(fake))
    assert set(tickets["external_id"]) == set(ids)
    for sys_id in (ids[0], ids[-1]):
        assert "Network" in set(tickets.loc[tickets["external_id"] == sys_id, "team"])


def test_pages_emptied_by_acls_are_stepped_over(fake: FakeServiceNow) -> None:
    ids = [fake.add_record()["sys_id"] for _ in range(PAGE * 4)]
    fake.hidden = set(ids[PAGE : PAGE * 3 - 2])  # more than a whole page the user may not see
    tickets = _tickets(_pages(fake))
    assert sorted(tickets["external_id"]) == sorted(set(ids) - fake.hidden)


def test_bad_credentials_stop_with_a_config_error(fake: FakeServiceNow) -> None:
    fake.password = "rotated-password"
    with pytest.raises(ConnectorConfigError, match="HTTP 401") as info:
        _pages(fake)
    assert info.value.source == "sn"
    assert "username" in str(info.value)


def test_rate_limits_are_waited_out_then_reported(fake: FakeServiceNow) -> None:
    fake.add_record()
    fake.rate_limit_next(1, path=LIST)
    assert len(_tickets(_pages(fake))) == 1
    fake.rate_limit_next(1, times=5, path=LIST)
    with pytest.raises(RateLimitedError):
        _pages(fake)
