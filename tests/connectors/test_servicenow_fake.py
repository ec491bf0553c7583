"""The fake ServiceNow behaves like the real Table API (so the connector tests mean something)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes import ServedFake
from tests.fakes.servicenow import FakeServiceNow, measure, samples
from tests.fakes.servicenow.plan import select
from tests.fakes.servicenow.query import parse_query

BASE = "https://acme.service-now.com"
ROOT = Path(__file__).resolve().parents[2]


def _client(fake: FakeServiceNow, *, password: str | None = None) -> httpx.Client:
    return httpx.Client(
        base_url=BASE,
        transport=httpx.MockTransport(fake),
        auth=(fake.username, password or fake.password),
    )


def _list(client: httpx.Client, table: str = "incident", **params: Any) -> httpx.Response:
    response = client.get(f"/api/now/table/{table}", params=params)
    assert response.status_code == 200, response.text
    return response


@pytest.fixture
def fake() -> FakeServiceNow:
    fake = FakeServiceNow()
    network = fake.add_group("Network")
    desk = fake.add_group("Service Desk")
    anna = fake.add_user("anna.devries", "Anna de Vries")
    for i in range(25):
        record = fake.add_record(short_description=f"incident {i}")
        if i % 5 == 0:
            fake.modify(record["sys_id"], assignment_group=network)
            fake.modify(record["sys_id"], assignment_group=desk, assigned_to=anna, state="2")
    return fake


# --- auth -------------------------------------------------------------------------------------


def test_wrong_or_missing_credentials_get_servicenows_401_body(fake: FakeServiceNow) -> None:
    wrong = _client(fake, password="wrong").get("/api/now/table/incident")
    anonymous = httpx.Client(base_url=BASE, transport=httpx.MockTransport(fake))
    for response in (wrong, anonymous.get("/api/now/table/incident")):
        assert response.status_code == 401
        assert response.json() == {
            "error": {
                "message": "User Not Authenticated",
                "detail": "Required to provide Auth information",
            },
            "status": "failure",
        }
    assert _client(fake).get("/api/now/table/incident").status_code == 200
    assert "authorization" not in {k.lower() for k in fake.requests[-1].headers}


def test_oauth_password_and_refresh_grants_and_token_expiry() -> None:
    fake = FakeServiceNow(client_id="cid", client_secret="csecret")
    fake.add_record()
    client = httpx.Client(base_url=BASE, transport=httpx.MockTransport(fake))
    form = {
        "grant_type": "password",
        "client_id": "cid",
        "client_secret": "csecret",
        "username": fake.username,
        "password": fake.password,
    }
    assert client.post("/oauth_token.do", data={**form, "client_secret": "x"}).status_code == 401
    assert client.post("/oauth_token.do", data={**form, "password": "x"}).status_code == 401
    token = client.post("/oauth_token.do", data=form).json()
    assert token["token_type"] == "Bearer" and token["expires_in"] == 1799
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert client.get("/api/now/table/incident", headers=bearer).status_code == 200
    fake.expire_tokens()
    expired = client.get("/api/now/table/incident", headers=bearer)
    assert expired.status_code == 401
    assert expired.json()["error"]["message"] == "User Not Authenticated"
    refreshed = client.post(
        "/oauth_token.do",
        data={
            "grant_type": "refresh_token",
            "client_id": "cid",
            "client_secret": "csecret",
            "refresh_token": token["refresh_token"],
        },
    ).json()
    bearer = {"Authorization": f"Bearer {refreshed['access_token']}"}
    assert client.get("/api/now/table/incident", headers=bearer).status_code == 200
    clock = [fake.wall() + 1800]
    fake.wall = lambda: clock[0]
    assert client.get("/api/now/table/incident", headers=bearer).status_code == 401
    assert _client(fake).get("/api/now/table/incident").status_code == 200
    fake.basic_auth = False
    assert _client(fake).get("/api/now/table/incident").status_code == 401


def test_oauth_is_refused_without_a_registered_client(fake: FakeServiceNow) -> None:
    client = httpx.Client(base_url=BASE, transport=httpx.MockTransport(fake))
    response = client.post("/oauth_token.do", data={"grant_type": "password"})
    assert response.status_code == 401
    assert response.json() == {"error_description": "access_denied", "error": "server_error"}


# --- shapes -----------------------------------------------------------------------------------


def test_values_are_strings_and_references_are_link_objects(fake: FakeServiceNow) -> None:
    client = _client(fake)
    rows = _list(client, sysparm_query="assigned_toISNOTEMPTY^ORDERBYnumber").json()["result"]
    assert len(rows) == 5
    row = rows[0]
    assert all(isinstance(v, (str, dict)) for v in row.values())
    assert row["state"] == "2" and row["reassignment_count"] == "1"
    group = row["assignment_group"]
    assert group["link"] == f"{BASE}/api/now/table/sys_user_group/{group['value']}"
    assert len(group["value"]) == 32
    assert row["parent_incident"] == ""
    assert len(row["sys_updated_on"]) == 19 and row["sys_updated_on"][10] == " "
    plain = _list(
        client, sysparm_query="assigned_toISNOTEMPTY", sysparm_exclude_reference_link="true"
    ).json()["result"][0]
    assert plain["assignment_group"] == group["value"]


def test_display_values_true_and_all(fake: FakeServiceNow) -> None:
    client = _client(fake)
    fields = "number,state,assignment_group,priority,assigned_to,opened_at,parent_incident"
    query = "assigned_toISNOTEMPTY^ORDERBYnumber"
    shown = _list(client, sysparm_query=query, sysparm_fields=fields, sysparm_display_value="true")
    row = shown.json()["result"][0]
    assert list(row) == fields.split(",")
    assert row["state"] == "In Progress"
    assert row["priority"] == "5 - Planning"
    assert row["assignment_group"]["display_value"] == "Service Desk"
    assert row["assigned_to"]["display_value"] == "Anna de Vries"
    both = _list(
        client,
        sysparm_query=query,
        sysparm_fields=fields,
        sysparm_display_value="all",
        sysparm_exclude_reference_link="true",
    ).json()["result"][0]
    assert both["state"] == {"display_value": "In Progress", "value": "2"}
    assert both["assignment_group"]["display_value"] == "Service Desk"
    assert set(both["assignment_group"]) == {"display_value", "value"}
    assert both["parent_incident"] == {"display_value": "", "value": ""}
    assert both["opened_at"]["display_value"] == both["opened_at"]["value"]


def test_display_values_and_query_literals_use_the_users_time_zone() -> None:
    fake = FakeServiceNow()
    record = fake.add_record(at=datetime(2024, 3, 31, 0, 30, tzinfo=UTC))  # 01:30 CET
    later = fake.add_record(at=datetime(2024, 3, 31, 1, 30, tzinfo=UTC))  # 03:30 CEST
    fake.user_timezone = "Europe/Amsterdam"
    client = _client(fake)
    row = _list(
        client, sysparm_query=f"sys_id={record['sys_id']}", sysparm_display_value="all"
    ).json()["result"][0]
    assert row["opened_at"] == {
        "display_value": "2024-03-31 01:30:00",
        "value": "2024-03-31 00:30:00",
    }
    found = _list(
        client, sysparm_query="sys_created_on>=2024-03-31 03:00:00", sysparm_fields="sys_id"
    )
    assert [r["sys_id"] for r in found.json()["result"]] == [later["sys_id"]]


def test_references_sort_by_their_display_value() -> None:
    fake = FakeServiceNow()
    zed, abe = fake.add_group("Zed team"), fake.add_group("Abe team")
    first = fake.add_record(assignment_group=zed)["number"]
    second = fake.add_record(assignment_group=abe)["number"]
    third = fake.add_record()["number"]
    client = _client(fake)
    assert _numbers(client, "ORDERBYassignment_group") == [third, second, first]
    assert _numbers(client, "ORDERBYDESCassignment_group") == [first, second, third]


def test_dot_walked_fields_in_queries_and_fields(fake: FakeServiceNow) -> None:
    rows = _list(
        _client(fake),
        sysparm_query="assignment_group.name=Service Desk",
        sysparm_fields="number,assignment_group.name",
    ).json()["result"]
    assert len(rows) == 5
    assert {r["assignment_group.name"] for r in rows} == {"Service Desk"}


def test_single_record_and_404(fake: FakeServiceNow) -> None:
    client = _client(fake)
    sys_id = next(iter(fake.tables["incident"].rows))
    one = client.get(f"/api/now/table/incident/{sys_id}", params={"sysparm_fields": "sys_id"})
    assert one.json() == {"result": {"sys_id": sys_id}}
    missing = client.get("/api/now/table/incident/" + "0" * 32)
    assert missing.status_code == 404
    assert missing.json()["status"] == "failure"
    assert client.get("/api/now/table/no_such_table").status_code == 400


# --- paging -----------------------------------------------------------------------------------


def test_total_count_and_link_headers(fake: FakeServiceNow) -> None:
    client = _client(fake)
    response = _list(client, sysparm_limit=10, sysparm_offset=10, sysparm_query="ORDERBYnumber")
    assert response.headers["X-Total-Count"] == "25"
    links = {
        part.split(";rel=")[1].strip('"'): httpx.URL(part.split(">;")[0].lstrip("<"))
        for part in response.headers["Link"].split(",<")
    }
    offsets = {rel: url.params["sysparm_offset"] for rel, url in links.items()}
    assert offsets == {"first": "0", "prev": "0", "next": "20", "last": "15"}
    assert links["next"].params["sysparm_query"] == "ORDERBYnumber"
    assert links["next"].params["sysparm_limit"] == "10"
    numbers = [
        r["number"]
        for offset in (0, 10, 20)
        for r in _list(
            client, sysparm_limit=10, sysparm_offset=offset, sysparm_query="ORDERBYnumber"
        ).json()["result"]
    ]
    assert numbers == sorted(numbers) and len(set(numbers)) == 25
    last = _list(client, sysparm_limit=10, sysparm_offset=20)
    assert 'rel="next"' not in last.headers["Link"]
    quiet = _list(client, sysparm_no_count="true", sysparm_suppress_pagination_header="true")
    assert "X-Total-Count" not in quiet.headers and "Link" not in quiet.headers


def test_v1_answers_404_for_no_rows_v2_an_empty_list(fake: FakeServiceNow) -> None:
    client = _client(fake)
    params = {"sysparm_query": "number=nope"}
    assert client.get("/api/now/v1/table/incident", params=params).status_code == 404
    v2 = client.get("/api/now/v2/table/incident", params=params)
    assert v2.status_code == 200 and v2.json() == {"result": []}


def test_limit_default_and_cap() -> None:
    fake = FakeServiceNow(max_limit=7)
    for _ in range(10):
        fake.add_record()
    client = _client(fake)
    assert len(_list(client).json()["result"]) == 7
    assert len(_list(client, sysparm_limit=100).json()["result"]) == 7
    assert len(_list(client, sysparm_limit=3).json()["result"]) == 3


@pytest.mark.parametrize(
    "params",
    [
        {"sysparm_limit": "ten"},
        {"sysparm_offset": "-1"},
        {"sysparm_display_value": "yes"},
        {"sysparm_exclude_reference_link": "maybe"},
        {"sysparm_query": "sys_created_onBETWEEN2024-03-01"},
    ],
    ids=["limit", "offset", "display", "links", "between"],
)
def test_invalid_parameters_get_400(fake: FakeServiceNow, params: dict[str, str]) -> None:
    response = _client(fake).get("/api/now/table/incident", params=params)
    assert response.status_code == 400
    assert response.json()["status"] == "failure"


def test_unknown_fields_are_ignored_unless_the_instance_says_no_rows(fake: FakeServiceNow) -> None:
    client = _client(fake)
    response = _list(client, sysparm_query="no_such_field=1^state=2", sysparm_fields="number,nope")
    assert response.headers["X-Total-Count"] == "5"
    assert set(response.json()["result"][0]) == {"number"}
    fake.invalid_query_returns_no_rows = True
    assert _list(client, sysparm_query="no_such_field=1^state=2").json()["result"] == []


def test_hidden_rows_count_but_leave_short_pages(fake: FakeServiceNow) -> None:
    ids = sorted(fake.tables["incident"].rows)
    fake.hidden.update(ids[:3])
    response = _list(_client(fake), sysparm_limit=5, sysparm_query="ORDERBYsys_id")
    assert response.headers["X-Total-Count"] == "25"
    assert [r["sys_id"] for r in response.json()["result"]] == ids[3:5]


def test_name_value_pairs_filter_by_value_or_choice_label(fake: FakeServiceNow) -> None:
    client = _client(fake)
    assert _list(client, state="2", active="true").headers["X-Total-Count"] == "5"
    assert _list(client, state="In Progress").headers["X-Total-Count"] == "5"
    assert _list(client, state="new").headers["X-Total-Count"] == "20"


def test_user_date_format_and_long_urls(fake: FakeServiceNow) -> None:
    client = _client(fake)
    fake.user_date_format = "%d-%m-%Y %H:%M:%S"
    row = _list(client, sysparm_fields="opened_at", sysparm_display_value="all").json()["result"][0]
    value = row["opened_at"]["value"]
    assert (
        row["opened_at"]["display_value"] == f"{value[8:10]}-{value[5:7]}-{value[:4]}{value[10:]}"
    )
    fake.max_url_length = 200
    long = client.get("/api/now/table/incident", params={"sysparm_query": "sys_idIN" + "a" * 300})
    assert long.status_code == 414
    assert client.get("/api/now/table/incident", params={"sysparm_limit": 1}).status_code == 200


# --- encoded queries --------------------------------------------------------------------------


def test_parser_precedence_or_binds_tighter_than_and_nq_adds_groups() -> None:
    parsed = parse_query("a=1^b=2^ORc=3^NQd=4^ORDERBYe^ORDERBYDESCf^EQ")
    shape = [[[f"{c.field}{c.op}{c.value}" for c in clause] for clause in g] for g in parsed.groups]
    assert shape == [[["a=1"], ["b=2", "c=3"]], [["d=4"]]]
    assert parsed.order == [("e", False), ("f", True)]
    ops = parse_query("aIN1,2^bNOT IN3^cSTARTSWITHx^dISEMPTY^eBETWEEN1@2^fNOT LIKEz^g!=^h>=5")
    assert [(c[0].op, c[0].value) for c in ops.groups[0]] == [
        ("IN", "1,2"),
        ("NOT IN", "3"),
        ("STARTSWITH", "x"),
        ("ISEMPTY", ""),
        ("BETWEEN", "1@2"),
        ("NOT LIKE", "z"),
        ("!=", ""),
        (">=", "5"),
    ]
    assert parse_query("short_description=a^^b").groups[0][0][0].value == "a^b"


def _numbers(client: httpx.Client, query: str) -> list[str]:
    rows = _list(client, sysparm_query=query, sysparm_fields="number").json()["result"]
    return [r["number"] for r in rows]


def test_operators_and_precedence_on_records() -> None:
    fake = FakeServiceNow()
    specs = [("1", "3", "VPN down"), ("2", "1", "vpn slow"), ("3", "2", "Printer"), ("6", "1", "")]
    for state, urgency, text in specs:
        fake.add_record(state=state, urgency=urgency, short_description=text)
    client = _client(fake)
    first, second, third, fourth = (f"INC00{n}" for n in range(10001, 10005))
    assert _numbers(client, "state=1^urgency=1^ORurgency=3^ORDERBYnumber") == [first]
    assert _numbers(client, "state=1^NQurgency=1^ORDERBYnumber") == [first, second, fourth]
    assert _numbers(client, "urgency=1^ORurgency=3^state=2") == [second]
    assert _numbers(client, "short_descriptionLIKEvpn^ORDERBYnumber") == [first, second]
    assert _numbers(client, "short_descriptionSTARTSWITHvpn^ORDERBYnumber") == [first, second]
    assert _numbers(client, "short_descriptionENDSWITHDOWN") == [first]
    assert _numbers(client, "short_descriptionNOT LIKEvpn^ORDERBYnumber") == [third, fourth]
    assert _numbers(client, "short_descriptionISEMPTY") == [fourth]
    assert _numbers(client, "stateIN1,3^ORDERBYnumber") == [first, third]
    assert _numbers(client, "stateNOT IN1,3^ORDERBYnumber") == [second, fourth]
    assert _numbers(client, "state>2^ORDERBYDESCnumber") == [fourth, third]
    assert _numbers(client, "stateBETWEEN2@3^ORDERBYnumber") == [second, third]
    # numbers compare as numbers: "6" > "10" as text, not as a state
    assert _numbers(client, "state<10^state>=6") == [fourth]
    # != also matches empty values (ServiceNow adds OR IS NULL)
    assert _numbers(client, "hold_reason!=1^ORDERBYnumber") == [first, second, third, fourth]
    assert _numbers(client, "ORDERBYDESCurgency^ORDERBYnumber") == [first, third, second, fourth]


def test_keyset_queries_page_through_ties_without_gaps() -> None:
    fake = FakeServiceNow()
    stamp = datetime(2024, 3, 2, 9, tzinfo=UTC)
    ids = sorted(fake.add_record(at=stamp)["sys_id"] for _ in range(12))
    after = [fake.add_record()["sys_id"] for _ in range(3)]
    client = _client(fake)
    x = "2024-03-02 09:00:00"
    forms = [
        "sys_updated_on>{x}^NQsys_updated_on={x}^sys_id>{y}^ORDERBYsys_updated_on^ORDERBYsys_id",
        "sys_updated_on>={x}^sys_id>{y}^ORsys_updated_on>{x}^ORDERBYsys_updated_on^ORDERBYsys_id",
    ]
    for form in forms:
        seen: list[str] = []
        cursor = (x, "")
        while True:
            rows = _list(
                client,
                sysparm_query=form.format(x=cursor[0], y=cursor[1]),
                sysparm_limit=5,
                sysparm_fields="sys_id,sys_updated_on",
            ).json()["result"]
            if not rows:
                break
            seen += [r["sys_id"] for r in rows]
            cursor = (rows[-1]["sys_updated_on"], rows[-1]["sys_id"])
        assert seen == ids + after


def _brute(fake: FakeServiceNow, table: str, query: str) -> list[str]:
    store = fake.tables[table]
    compiled = fake.compile(store, query, {})
    ids = [i for i in sorted(store.rows) if compiled.predicate(store.rows[i])]
    for _name, descending, get, key in reversed(compiled.order):
        values = {i: key(get(store.rows[i])) for i in ids}
        ids.sort(key=values.__getitem__, reverse=descending)
    return ids


@pytest.fixture(scope="module")
def busy() -> FakeServiceNow:
    fake = FakeServiceNow()
    fake.generate(150, audit_rows=4500, seed=3)
    return fake


def test_indexed_plans_answer_exactly_like_a_full_scan(busy: FakeServiceNow) -> None:
    rng = random.Random(7)
    incidents = busy.tables["incident"]
    stamps = sorted({incidents.value(r, "sys_updated_on") for r in incidents.rows.values()})
    ids = sorted(incidents.rows)
    plans: defaultdict[str, int] = defaultdict(int)
    for _ in range(250):
        x, z, y = rng.choice(stamps), rng.choice(stamps), rng.choice(ids)
        query = rng.choice(
            [
                f"sys_updated_on>={x}^ORDERBYsys_updated_on^ORDERBYsys_id",
                f"sys_updated_on>{x}^NQsys_updated_on={x}^sys_id>{y}"
                "^ORDERBYsys_updated_on^ORDERBYsys_id",
                f"sys_updated_on>={x}^sys_id>{y}^ORsys_updated_on>{x}"
                "^ORDERBYsys_updated_on^ORDERBYsys_id",
                f"sys_updated_on>={x}^sys_updated_on<{z}^ORDERBYsys_updated_on",
                f"sys_updated_onBETWEEN{x}@{z}^ORDERBYDESCsys_updated_on^ORDERBYDESCsys_id",
                f"sys_updated_on>={x}^state=2^ORDERBYsys_updated_on",
                f"sys_updated_on>={x[:10]}^ORDERBYsys_updated_on^ORDERBYsys_id",
                f"sys_updated_on<={x}^ORsys_id<{y}^ORDERBYsys_updated_on",
                f"sys_id!={y}^sys_updated_on>{x}^ORDERBYsys_updated_on",
                f"sys_updated_on>={x}^ORDERBYsys_updated_on^ORDERBYnumber",
            ]
        )
        offset, limit = rng.choice([0, 0, 3, 40]), rng.choice([1, 7, 100])
        got = select(incidents, busy.compile(incidents, query, {}), offset=offset, limit=limit)
        expected = _brute(busy, "incident", query)
        assert (got.ids, got.total) == (expected[offset : offset + limit], len(expected)), query
        plans[got.plan] += 1
    assert plans["index"] > 100 and plans["filter"] > 10 and plans["scan"] > 10


def test_random_queries_answer_like_a_full_scan(busy: FakeServiceNow) -> None:
    rng = random.Random(11)
    incidents = busy.tables["incident"]
    rows = list(incidents.rows.values())
    stamps = sorted({incidents.value(r, "sys_updated_on") for r in rows})
    ids = sorted(incidents.rows)

    def condition() -> str:
        field = rng.choice(["sys_updated_on", "sys_updated_on", "sys_id", "state", "priority"])
        if field == "sys_updated_on":
            op = rng.choice([">", ">=", "<", "<=", "=", "!=", "BETWEEN", "IN", "ISNOTEMPTY"])
            value = rng.choice(stamps)
            if op == "BETWEEN":
                return f"{field}BETWEEN{value}@{rng.choice(stamps)}"
            if op == "IN":
                return f"{field}IN{value},{rng.choice(stamps)}"
            return f"{field}{op}" + ("" if op == "ISNOTEMPTY" else value)
        if field == "sys_id":
            op = rng.choice([">", ">=", "<", "<=", "=", "!=", "NOT IN"])
            return f"sys_id{op}{rng.choice(ids)}"
        return f"{field}{rng.choice(['=', '!=', '>', '<=', 'IN'])}{rng.choice('123678')}"

    plans: defaultdict[str, int] = defaultdict(int)
    for _ in range(300):
        groups = []
        for _g in range(rng.choice([1, 1, 2, 3])):
            clauses = [
                "^OR".join(condition() for _ in range(rng.choice([1, 1, 2])))
                for _ in range(rng.choice([1, 2, 3]))
            ]
            groups.append("^".join(clauses))
        order = rng.choice(
            [
                "^ORDERBYsys_updated_on^ORDERBYsys_id",
                "^ORDERBYDESCsys_updated_on^ORDERBYDESCsys_id",
                "^ORDERBYsys_updated_on",
                "",
                "^ORDERBYstate^ORDERBYsys_id",
            ]
        )
        query = "^NQ".join(groups) + order
        offset, limit = rng.choice([0, 0, 5]), rng.choice([3, 50, 1000])
        got = select(incidents, busy.compile(incidents, query, {}), offset=offset, limit=limit)
        expected = _brute(busy, "incident", query)
        plans[got.plan] += 1
        if not order:  # no order asked for: any order will do
            assert got.total == len(expected), query
            assert set(got.ids) <= set(expected), query
            if offset == 0 and limit >= len(expected):
                assert sorted(got.ids) == sorted(expected), query
        else:
            assert (got.ids, got.total) == (expected[offset : offset + limit], len(expected)), query
    assert plans["index"] >= 5 and plans["filter"] >= 20 and plans["scan"] >= 20, plans


def test_audit_queries_use_the_partitioned_index(busy: FakeServiceNow) -> None:
    audit = busy.tables["sys_audit"]
    stamps = sorted({audit.value(r, "sys_created_on") for r in audit.rows.values()})
    x = stamps[len(stamps) // 2]
    fields = "state,incident_state,hold_reason,assignment_group,assigned_to,priority"
    queries = {
        f"tablename=incident^fieldnameIN{fields}^sys_created_on>={x}"
        "^ORDERBYsys_created_on^ORDERBYsys_id": "index",
        f"fieldname=state^ORfieldname=priority^sys_created_on>={x}^ORDERBYsys_created_on": "index",
        f"tablename=incident^sys_created_on>={x}^user=admin^ORDERBYsys_created_on": "filter",
        f"documentkeyIN{','.join(sorted(busy.tables['incident'].rows)[:4])}"
        "^ORDERBYsys_created_on": "hash",
    }
    for query, plan in queries.items():
        got = select(audit, busy.compile(audit, query, {}), offset=0, limit=50)
        expected = _brute(busy, "sys_audit", query)
        assert (got.ids, got.total, got.plan) == (expected[:50], len(expected), plan), query


# --- history tables ---------------------------------------------------------------------------


def test_modify_writes_audit_rows_and_keeps_the_counters(fake: FakeServiceNow) -> None:
    a, b = fake.add_group("A"), fake.add_group("B")
    record = fake.add_record(short_description="x")
    sys_id = record["sys_id"]
    fake.modify(sys_id, assignment_group=a)
    fake.modify(sys_id, assignment_group=b, state="2", actor="anna.devries")
    fake.modify(sys_id, assignment_group=a)
    fake.modify(sys_id, state="3", hold_reason="4")
    held = fake.get_record(sys_id)
    assert (held["incident_state"], held["hold_reason"]) == ("3", "4")
    resolved = fake.modify(sys_id, state="6")
    assert resolved["hold_reason"] == "" and resolved["resolved_at"] == resolved["sys_updated_on"]
    assert resolved["calendar_stc"] == "5"
    reopened = fake.modify(sys_id, state="2", actor="anna.devries")
    assert (reopened["reopen_count"], reopened["resolved_at"]) == ("1", "")
    closed = fake.modify(sys_id, state="7")
    assert (closed["active"], closed["reassignment_count"], closed["sys_mod_count"]) == (
        "false",
        "2",
        "7",
    )
    assert fake.modify(sys_id, state="7")["sys_mod_count"] == "7"  # no change, no update
    rows = _list(
        _client(fake),
        "sys_audit",
        sysparm_query=f"documentkey={sys_id}^fieldname=assignment_group^ORDERBYsys_created_on",
    ).json()["result"]
    assert [(r["oldvalue"], r["newvalue"]) for r in rows] == [("", a), (a, b), (b, a)]
    assert [r["record_checkpoint"] for r in rows] == ["1", "2", "3"]
    assert rows[1]["user"] == "anna.devries"


def test_audit_inserts_record_the_initial_values() -> None:
    fake = FakeServiceNow()
    fake.audit_inserts = True
    record = fake.add_record(short_description="new")
    rows = _list(
        _client(fake), "sys_audit", sysparm_query=f"documentkey={record['sys_id']}"
    ).json()["result"]
    initial = {r["fieldname"]: (r["oldvalue"], r["newvalue"], r["record_checkpoint"]) for r in rows}
    assert initial["state"] == ("", "1", "0")
    assert initial["short_description"] == ("", "new", "0")
    assert "sys_updated_on" not in initial


def test_sys_audit_and_journal_403_when_not_readable(fake: FakeServiceNow) -> None:
    fake.audit_readable = False
    response = _client(fake).get("/api/now/table/sys_audit")
    assert response.status_code == 403
    assert response.json()["error"]["detail"] == (
        "ACL Exception Read Failed due to security constraints"
    )
    assert _client(fake).get("/api/now/table/sys_journal_field").status_code == 200
    fake.journal_readable = False
    assert _client(fake).get("/api/now/table/sys_journal_field").status_code == 403


def test_journal_entries_update_the_record(fake: FakeServiceNow) -> None:
    sys_id = next(iter(fake.tables["incident"].rows))
    before = fake.get_record(sys_id)
    entry = fake.add_journal(sys_id, "Any news?", actor="caller.one")
    fake.add_journal(sys_id, "internal", element="work_notes")
    after = fake.get_record(sys_id)
    assert after["sys_updated_on"] > before["sys_updated_on"]
    assert int(after["sys_mod_count"]) == int(before["sys_mod_count"]) + 2
    rows = _list(
        _client(fake),
        "sys_journal_field",
        sysparm_query=f"element_id={sys_id}^element=comments",
        sysparm_fields="element_id,name,element,value,sys_created_by,sys_created_on",
    ).json()["result"]
    assert rows == [
        {
            "element_id": sys_id,
            "name": "incident",
            "element": "comments",
            "value": "Any news?",
            "sys_created_by": "caller.one",
            "sys_created_on": entry["sys_created_on"],
        }
    ]
    with pytest.raises(ValueError, match="comments or work_notes"):
        fake.add_journal(sys_id, "x", element="description")


def test_choices_are_seeded_and_can_differ_per_instance(fake: FakeServiceNow) -> None:
    client = _client(fake)
    query = "name=incident^element=hold_reason^inactive=false^ORDERBYsequence"
    rows = _list(client, "sys_choice", sysparm_query=query, sysparm_fields="value,label")
    assert [(r["value"], r["label"]) for r in rows.json()["result"]] == [
        ("1", "Awaiting Caller"),
        ("3", "Awaiting Problem"),
        ("4", "Awaiting Vendor"),
        ("5", "Awaiting Change"),
    ]
    legacy = _list(
        client, "sys_choice", sysparm_query="name=incident^element=incident_state^value=4"
    )
    assert legacy.json()["result"][0]["label"] == "Awaiting User Info"
    fake.set_choice("hold_reason", "3", "Awaiting Vendor")
    fake.set_choice("hold_reason", "4", "Awaiting Problem")
    fake.set_choice("hold_reason", "5", "Awaiting Change", inactive=True)
    fake.set_choice("state", "9", "Waiting for Approval")
    rows = _list(client, "sys_choice", sysparm_query=query, sysparm_fields="value,label")
    assert [(r["value"], r["label"]) for r in rows.json()["result"]] == [
        ("1", "Awaiting Caller"),
        ("3", "Awaiting Vendor"),
        ("4", "Awaiting Problem"),
    ]
    sys_id = next(iter(fake.tables["incident"].rows))
    fake.modify(sys_id, state="9")
    shown = client.get(
        f"/api/now/table/incident/{sys_id}",
        params={"sysparm_display_value": "true", "sysparm_fields": "state"},
    )
    assert shown.json()["result"]["state"] == "Waiting for Approval"


def test_users_and_groups_are_tables(fake: FakeServiceNow) -> None:
    client = _client(fake)
    groups = _list(client, "sys_user_group", sysparm_query="name=Network").json()["result"]
    assert len(groups) == 1 and groups[0]["name"] == "Network"
    users = _list(client, "sys_user", sysparm_query="user_name=anna.devries").json()["result"]
    assert users[0]["name"] == "Anna de Vries"


def test_add_record_checks_its_input(fake: FakeServiceNow) -> None:
    with pytest.raises(ValueError, match="no field 'colour'"):
        fake.add_record(colour="red")
    with pytest.raises(TypeError, match="must be a string"):
        fake.add_record(state=2)  # type: ignore[arg-type]
    custom = fake.add_record(u_site="Delft")
    assert custom["u_site"] == "Delft"
    assert fake.add_record()["u_site"] == ""


# --- generate ---------------------------------------------------------------------------------


def _audit_by_record(fake: FakeServiceNow) -> dict[str, list[dict[str, str]]]:
    audit = fake.tables["sys_audit"]
    by_record: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in audit.rows.values():
        entry = audit.as_dict(row)
        by_record[entry["documentkey"]].append(entry)
    for entries in by_record.values():
        entries.sort(key=lambda e: (int(e["record_checkpoint"]), e["internal_checkpoint"]))
    return by_record


def _check_histories(fake: FakeServiceNow, table: str) -> tuple[set[str], int]:
    """Each record's audit trail replays to its current values and explains its
    reassignment_count; returns the states entered and how many records went A -> B -> A."""
    records = fake.tables[table]
    by_record = _audit_by_record(fake)
    states: set[str] = set()
    pingpong = 0
    for sys_id, row in records.rows.items():
        record = records.as_dict(row)
        entries = by_record.get(sys_id, [])
        groups = [e for e in entries if e["fieldname"] == "assignment_group"]
        moves = sum(1 for e in groups if e["oldvalue"])
        assert int(record["reassignment_count"]) == moves
        values = [e["newvalue"] for e in groups]
        pingpong += any(values[i] == values[i + 2] for i in range(len(values) - 2))
        # replaying the audit trail field by field ends at the record's current values
        current: dict[str, str] = {}
        for entry in entries:
            name = entry["fieldname"]
            if name in current:
                assert entry["oldvalue"] == current[name], (sys_id, name)
            current[name] = entry["newvalue"]
            if name == "state":
                states.add(entry["newvalue"])
        for name, value in current.items():
            assert record[name] == value, (sys_id, name)
        if entries:
            assert int(record["sys_mod_count"]) >= int(entries[-1]["record_checkpoint"])
            assert record["sys_updated_on"] >= max(e["sys_created_on"] for e in entries)
    latest = max(records.value(r, "sys_updated_on") for r in records.rows.values())
    assert fake.now.strftime("%Y-%m-%d %H:%M:%S") >= latest
    return states, pingpong


def test_generated_histories_are_consistent(busy: FakeServiceNow) -> None:
    incidents = busy.tables["incident"]
    by_record = _audit_by_record(busy)
    total = sum(len(v) for v in by_record.values())
    assert 4300 <= total <= 4700
    states, pingpong = _check_histories(busy, "incident")
    assert {"2", "3", "6", "7"} <= states
    assert pingpong > 0
    reopened = [r for r in incidents.rows.values() if incidents.value(r, "reopen_count") != "0"]
    assert reopened
    held = {e["newvalue"] for v in by_record.values() for e in v if e["fieldname"] == "hold_reason"}
    assert {"1", "3", "4", "5"} <= held
    now = {incidents.value(r, "state") for r in incidents.rows.values()}
    assert {"2", "3", "6", "7"} <= now
    journal = busy.tables["sys_journal_field"]
    assert {journal.value(r, "element") for r in journal.rows.values()} == {
        "comments",
        "work_notes",
    }


def test_generated_request_items_follow_the_task_state_model() -> None:
    fake = FakeServiceNow()
    fake.generate(80, audit_rows=800, seed=2, table="sc_req_item")
    items = fake.tables["sc_req_item"]
    assert len(items.rows) == 80 and not fake.tables["incident"].rows
    assert 700 <= len(fake.tables["sys_audit"].rows) <= 900
    states, _pingpong = _check_histories(fake, "sc_req_item")
    assert {"2", "-5", "3", "4"} <= states
    for row in items.rows.values():
        record = items.as_dict(row)
        closed = record["state"] in ("3", "4", "7")
        assert record["number"].startswith("RITM")
        assert (record["active"], bool(record["closed_at"])) == (
            ("false", True) if closed else ("true", False)
        )
    rows = _list(
        _client(fake),
        "sc_req_item",
        sysparm_query="state=-5",
        sysparm_fields="state",
        sysparm_display_value="true",
    ).json()["result"]
    assert {r["state"] for r in rows} <= {"Pending"}
    with pytest.raises(ValueError, match="not 'problem'"):
        fake.generate(1, table="problem")


def test_keyset_scan_over_http_sees_every_row_once(busy: FakeServiceNow) -> None:
    client = _client(busy)
    rows, _seconds, _slowest = measure.scan(
        client, "incident", "sys_updated_on", "", "sys_id,sys_updated_on", 40, "all"
    )
    assert rows == len(busy.tables["incident"].rows)
    audit = busy.tables["sys_audit"]
    wanted = set(measure.AUDIT.split(","))
    expected = sum(1 for r in audit.rows.values() if audit.value(r, "fieldname") in wanted)
    rows, _seconds, _slowest = measure.scan(
        client,
        "sys_audit",
        "sys_created_on",
        f"tablename=incident^fieldnameIN{measure.AUDIT}",
        "sys_id,sys_created_on",
        333,
        "false",
    )
    assert rows == expected


def test_save_and_load_keep_the_instance(tmp_path: Path) -> None:
    fake = FakeServiceNow()
    fake.generate(10, audit_rows=60)
    fake.save(tmp_path / "instance.pickle")
    copy = FakeServiceNow()
    copy.load(tmp_path / "instance.pickle")
    for name, table in fake.tables.items():
        assert copy.tables[name].rows == table.rows, name
    assert copy.now == fake.now
    query = {"sysparm_query": "ORDERBYsys_updated_on", "sysparm_display_value": "all"}
    assert _list(_client(copy), **query).json() == _list(_client(fake), **query).json()
    assert copy.add_record()["number"] == fake.add_record()["number"]


def test_with_audited_inserts_the_trail_rebuilds_every_field() -> None:
    fake = FakeServiceNow()
    fake.audit_inserts = True
    fake.generate(30, audit_rows=900, seed=5)
    incidents = fake.tables["incident"]
    by_record = _audit_by_record(fake)
    for sys_id, row in incidents.rows.items():
        record = incidents.as_dict(row)
        rebuilt: dict[str, str] = {}
        for entry in by_record[sys_id]:
            assert entry["oldvalue"] == rebuilt.get(entry["fieldname"], ""), entry
            rebuilt[entry["fieldname"]] = entry["newvalue"]
        audited = {
            k: v
            for k, v in record.items()
            if v and (not k.startswith("sys_") or k == "sys_class_name")
        }
        assert {k: v for k, v in rebuilt.items() if v} == audited
        assert by_record[sys_id][0]["record_checkpoint"] == "0"


def test_generate_is_deterministic_per_seed() -> None:
    def digest(seed: int) -> list[tuple[str, str, str]]:
        fake = FakeServiceNow()
        fake.generate(20, audit_rows=200, seed=seed)
        table = fake.tables["incident"]
        return sorted(
            (table.value(r, "number"), table.value(r, "state"), table.value(r, "sys_updated_on"))
            for r in table.rows.values()
        )

    assert digest(1) == digest(1)
    assert digest(1) != digest(2)


# --- knobs, rate limits, changes during a sync ------------------------------------------------


def test_knobs_fire_on_the_matching_request(fake: FakeServiceNow) -> None:
    client = _client(fake)
    fake.fail_next(500, path="/api/now/table/incident", skip=1)
    assert _list(client, "sys_user").status_code == 200
    assert client.get("/api/now/table/incident").status_code == 200
    failed = client.get("/api/now/table/incident")
    assert failed.status_code == 500 and failed.json()["status"] == "failure"
    assert client.get("/api/now/table/incident").status_code == 200
    fake.rate_limit_next(7)
    limited = client.get("/api/now/table/incident")
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "7")
    assert limited.json()["error"]["message"] == "Rate limit exceeded"
    fake.html_error_next()
    html = client.get("/api/now/table/incident")
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
    fake.invalid_json_next()
    with pytest.raises(ValueError):
        client.get("/api/now/table/incident").json()
    fake.fail_next(401)
    assert client.get("/api/now/table/incident").json()["error"]["message"] == (
        "User Not Authenticated"
    )
    assert [r.status for r in fake.requests[-3:]] == [200, 200, 401]


def test_slow_knob_times_out_like_a_real_client(fake: FakeServiceNow) -> None:
    client = httpx.Client(
        base_url=BASE,
        transport=httpx.MockTransport(fake),
        auth=(fake.username, fake.password),
        timeout=0.05,
    )
    fake.slow_next(5)
    with pytest.raises(httpx.ReadTimeout):
        client.get("/api/now/table/incident")
    fake.slow_next(0.01)
    assert client.get("/api/now/table/incident").status_code == 200


def test_rate_limit_headers_then_429_until_the_window_resets() -> None:
    fake = FakeServiceNow(rate_limit=3, rate_window_seconds=60)
    clock = [1_700_000_000.0]
    fake.wall = lambda: clock[0]
    client = _client(fake)
    seen = []
    for _ in range(3):
        response = client.get("/api/now/table/incident")
        seen.append(response.headers["X-RateLimit-Remaining"])
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert response.headers["X-RateLimit-Reset"] == "1700000060"
    assert seen == ["2", "1", "0"]
    clock[0] += 20
    limited = client.get("/api/now/table/incident")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "40"
    assert limited.json()["error"]["detail"] == (
        "Rate limit of 3 requests per hour for Table API exceeded"
    )
    clock[0] += 40
    again = client.get("/api/now/table/incident")
    assert again.status_code == 200 and again.headers["X-RateLimit-Remaining"] == "2"
    assert again.headers["X-RateLimit-Reset"] == "1700000120"


def test_offset_paging_over_a_changing_set_skips_and_repeats(fake: FakeServiceNow) -> None:
    client = _client(fake)
    query = "ORDERBYsys_updated_on^ORDERBYsys_id"
    first = _list(client, sysparm_query=query, sysparm_limit=10).json()["result"]
    # a record on the page already read is updated before the next page is read: it moves to
    # the end (read twice) and everything behind it slides up one place (order[10] is skipped)
    order = [r["sys_id"] for r in _list(client, sysparm_query=query).json()["result"]]
    moved = order[3]

    def touch(request: httpx.Request) -> None:
        if request.url.params.get("sysparm_offset") == "10":
            fake.modify(moved, short_description="changed during the sync")

    fake.on_request = touch
    rest = [
        r["sys_id"]
        for offset in (10, 20)
        for r in _list(client, sysparm_query=query, sysparm_limit=10, sysparm_offset=offset).json()[
            "result"
        ]
    ]
    seen = [r["sys_id"] for r in first] + rest
    assert len(seen) == 25 and seen.count(moved) == 2
    assert set(order) - set(seen) == {order[10]}


def test_served_over_loopback(fake: FakeServiceNow) -> None:
    with ServedFake(fake) as served:
        client = httpx.Client(base_url=served.url, auth=(fake.username, fake.password))
        response = client.get("/api/now/table/incident", params={"sysparm_limit": 5})
        assert response.status_code == 200 and len(response.json()["result"]) == 5
        assert response.headers["Link"].startswith(f"<{served.url}/api/now/table/incident?")
        assert response.headers["Date"].endswith("GMT")
        fake.slow_next(1.0)
        with pytest.raises(httpx.ReadTimeout):
            client.get("/api/now/table/incident", timeout=0.3)
        client.close()


def test_concurrent_reads_while_records_change() -> None:
    busy = FakeServiceNow()
    busy.generate(100, audit_rows=500)
    incidents = sorted(busy.tables["incident"].rows)
    errors: list[BaseException] = []

    def read() -> None:
        try:
            with httpx.Client(base_url=served.url, auth=(busy.username, busy.password)) as c:
                for _ in range(4):
                    rows = measure.scan(
                        c, "incident", "sys_updated_on", "", "sys_id,sys_updated_on", 50, "false"
                    )[0]
                    assert rows >= len(incidents)
        except BaseException as e:  # collected for the main thread
            errors.append(e)

    with ServedFake(busy) as served:
        readers = [threading.Thread(target=read) for _ in range(2)]
        for reader in readers:
            reader.start()
        for i in range(100):
            busy.modify(incidents[i % len(incidents)], short_description=f"edit {i}")
        for reader in readers:
            reader.join()
    assert errors == []


def test_runs_as_its_own_process() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.servicenow",
            "--incidents",
            "30",
            "--audit-rows",
            "200",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("listening http://127.0.0.1:")
        url = line.split()[1]
        response = httpx.get(
            url + "/api/now/table/incident",
            params={"sysparm_limit": 1},
            auth=("integration.user", "sn-pass-Qw3-secret"),
        )
        assert response.headers["X-Total-Count"] == "30"
    finally:
        process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def test_sample_payloads_match_what_the_fake_answers() -> None:
    built = samples.build()
    stored = {p.name: json.loads(p.read_text()) for p in samples.DATA.glob("*.json")}
    assert stored == built, "rewrite with: python -m tests.fakes.servicenow.samples"
    audit = built["sys_audit_page.json"]["result"]
    groups = [r for r in audit if r["fieldname"] == "assignment_group"]
    assert [r["oldvalue"] == "" for r in groups] == [True, False]
    incident = built["incident_list_all.json"]["result"][0]
    assert incident["reassignment_count"]["value"] == "1"


def test_clock_ticks_on_changes(fake: FakeServiceNow) -> None:
    before = fake.now
    fake.add_record()
    assert fake.now == before + timedelta(seconds=1)
    assert fake.advance(timedelta(minutes=5)) == before + timedelta(minutes=5, seconds=1)
