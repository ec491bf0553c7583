"""Sample Table API payloads from a small fixed instance, kept in ``tests/data/servicenow/``.

They show the shapes a connector parses (raw values with reference links, display values,
``sys_audit`` and ``sys_journal_field`` pages, ``sys_choice`` rows, error bodies). The fake is
deterministic, so ``tests/connectors/test_servicenow_fake.py`` checks the files still match
what it answers. Rewrite them after a deliberate change with::

    python -m tests.fakes.servicenow.samples
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.fakes.servicenow.server import FakeServiceNow

__all__ = ["DATA", "build", "write"]

DATA = Path(__file__).resolve().parents[2] / "data" / "servicenow"
BASE = "https://acme.service-now.com"


def _instance() -> FakeServiceNow:
    fake = FakeServiceNow()
    network = fake.add_group("Network")
    desk = fake.add_group("Service Desk")
    anna = fake.add_user("anna.devries", "Anna de Vries")
    caller = fake.add_user("jan.jansen", "Jan Jansen")
    start = datetime(2024, 3, 4, 8, 12, tzinfo=UTC)
    record = fake.add_record(
        at=start,
        actor="jan.jansen",
        caller_id=caller,
        short_description="VPN drops every few minutes",
        contact_type="self-service",
        category="network",
        impact="2",
        urgency="2",
        priority="3",
    )
    sys_id = record["sys_id"]
    steps: list[tuple[timedelta, str, dict[str, str]]] = [
        (timedelta(minutes=5), "admin", {"assignment_group": desk}),
        (timedelta(minutes=20), "anna.devries", {"assignment_group": network, "state": "2"}),
        (timedelta(hours=1), "anna.devries", {"assigned_to": anna}),
        (timedelta(hours=2), "anna.devries", {"state": "3", "hold_reason": "1"}),
        (timedelta(days=1), "jan.jansen", {"state": "2"}),
        (timedelta(days=1, hours=3), "anna.devries", {"state": "6"}),
    ]
    for offset, actor, fields in steps:
        fake.modify(sys_id, at=start + offset, actor=actor, **fields)
    fake.add_journal(
        sys_id, "Is there any news?", actor="jan.jansen", at=start + timedelta(hours=5)
    )
    fake.add_journal(
        sys_id,
        "Caller asked for an update; tunnel logs attached.",
        element="work_notes",
        actor="anna.devries",
        at=start + timedelta(hours=6),
    )
    fake.add_record(at=start + timedelta(days=3), short_description="Printer offline")
    return fake


def build() -> dict[str, Any]:
    """File name -> payload (the body, plus status and headers for the error samples)."""
    fake = _instance()
    client = httpx.Client(
        base_url=BASE, transport=httpx.MockTransport(fake), auth=(fake.username, fake.password)
    )
    fields = (
        "sys_id,number,short_description,state,incident_state,hold_reason,priority,"
        "assignment_group,assigned_to,caller_id,opened_at,resolved_at,closed_at,"
        "reassignment_count,reopen_count,sys_mod_count,sys_updated_on"
    )
    query = "ORDERBYsys_updated_on^ORDERBYsys_id"
    out: dict[str, Any] = {}

    def body(path: str, **params: str) -> Any:
        response = client.get(path, params=params)
        response.raise_for_status()
        return response.json()

    out["incident_list_raw.json"] = body(
        "/api/now/table/incident", sysparm_query=query, sysparm_limit="1"
    )
    out["incident_list_all.json"] = body(
        "/api/now/table/incident",
        sysparm_query=query,
        sysparm_fields=fields,
        sysparm_display_value="all",
        sysparm_exclude_reference_link="true",
    )
    out["incident_list_display.json"] = body(
        "/api/now/table/incident",
        sysparm_query=query,
        sysparm_fields=fields,
        sysparm_display_value="true",
    )
    out["sys_audit_page.json"] = body(
        "/api/now/table/sys_audit",
        sysparm_query="tablename=incident^fieldnameINstate,incident_state,hold_reason,"
        "assignment_group,assigned_to,priority^ORDERBYsys_created_on^ORDERBYsys_id",
        sysparm_fields="sys_id,documentkey,fieldname,oldvalue,newvalue,user,sys_created_on,"
        "record_checkpoint,internal_checkpoint,reason",
    )
    out["sys_journal_field_page.json"] = body(
        "/api/now/table/sys_journal_field",
        sysparm_query="name=incident^ORDERBYsys_created_on",
        sysparm_fields="sys_id,element_id,name,element,value,sys_created_on,sys_created_by",
    )
    out["sys_choice_hold_reason.json"] = body(
        "/api/now/table/sys_choice",
        sysparm_query="name=incident^element=hold_reason^inactive=false^ORDERBYsequence",
        sysparm_fields="name,element,value,label,inactive,language,sequence",
    )
    errors: dict[str, Any] = {}
    anonymous = httpx.Client(base_url=BASE, transport=httpx.MockTransport(fake))
    response = anonymous.get("/api/now/table/incident")
    errors["401"] = {"status": response.status_code, "body": response.json()}
    fake.audit_readable = False
    response = client.get("/api/now/table/sys_audit")
    errors["403_sys_audit"] = {"status": response.status_code, "body": response.json()}
    fake.rate_limit = 1000
    fake.rate_limit_next(30)
    response = client.get("/api/now/table/incident")
    errors["429"] = {
        "status": response.status_code,
        "retry_after": response.headers["Retry-After"],
        "body": response.json(),
    }
    out["errors.json"] = errors
    return out


def write() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    for name, payload in build().items():
        (DATA / name).write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    write()
