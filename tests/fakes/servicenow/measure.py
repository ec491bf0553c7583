"""How fast a served fake answers the reads a sync makes (a check of the fake, not a benchmark
of ticketflow)::

    python -m tests.fakes.servicenow --incidents 100000 --audit-rows 1000000 --cache /tmp/sn &
    python -m tests.fakes.servicenow.measure http://127.0.0.1:PORT

Pages through every incident with keyset queries on ``(sys_updated_on, sys_id)`` (display values,
no reference links) and through every ``sys_audit`` row of the six history fields by
``sys_created_on`` window, and prints rows per second and the slowest page.
"""

from __future__ import annotations

import argparse
import time

import httpx

FIELDS = (
    "sys_id,number,short_description,state,incident_state,hold_reason,priority,"
    "assignment_group,assigned_to,caller_id,opened_at,resolved_at,closed_at,"
    "reassignment_count,reopen_count,sys_updated_on"
)
AUDIT = "state,incident_state,hold_reason,assignment_group,assigned_to,priority"


def _page(
    client: httpx.Client, table: str, query: str, fields: str, limit: int, display: str
) -> tuple[list[dict[str, object]], float]:
    started = time.perf_counter()
    response = client.get(
        f"/api/now/table/{table}",
        params={
            "sysparm_query": query,
            "sysparm_fields": fields,
            "sysparm_limit": str(limit),
            "sysparm_display_value": display,
            "sysparm_exclude_reference_link": "true",
        },
    )
    response.raise_for_status()
    rows: list[dict[str, object]] = response.json()["result"]
    return rows, time.perf_counter() - started


def _value(row: dict[str, object], name: str) -> str:
    value = row[name]
    if isinstance(value, dict):
        return str(value["value"])
    return str(value)


def scan(
    client: httpx.Client, table: str, key: str, extra: str, fields: str, limit: int, display: str
) -> tuple[int, float, float]:
    """Keyset-page through a table: rows, seconds, slowest page in seconds."""
    rows_seen, slowest, cursor = 0, 0.0, None
    started = time.perf_counter()
    while True:
        where = extra
        if cursor is not None:
            where += f"^{key}>={cursor[0]}^{key}>{cursor[0]}^ORsys_id>{cursor[1]}"
        query = f"{where.lstrip('^')}^ORDERBY{key}^ORDERBYsys_id".lstrip("^")
        rows, seconds = _page(client, table, query, fields, limit, display)
        slowest = max(slowest, seconds)
        if not rows:
            return rows_seen, time.perf_counter() - started, slowest
        rows_seen += len(rows)
        cursor = (_value(rows[-1], key), _value(rows[-1], "sys_id"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Page through a served fake ServiceNow.")
    parser.add_argument("url")
    parser.add_argument("--username", default="integration.user")
    parser.add_argument("--password", default="sn-pass-Qw3-secret")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--audit-limit", type=int, default=5000)
    args = parser.parse_args(argv)
    with httpx.Client(
        base_url=args.url, auth=(args.username, args.password), timeout=120
    ) as client:
        n, seconds, slowest = scan(
            client, "incident", "sys_updated_on", "", FIELDS, args.limit, "all"
        )
        print(  # noqa: T201
            f"incidents: {n} in {seconds:.1f} s = {n / seconds:,.0f}/s"
            f" (pages of {args.limit}, display values; slowest page {slowest * 1000:.0f} ms)"
        )
        fields = (
            "sys_id,documentkey,fieldname,oldvalue,newvalue,user,sys_created_on,record_checkpoint"
        )
        n, seconds, slowest = scan(
            client,
            "sys_audit",
            "sys_created_on",
            f"tablename=incident^fieldnameIN{AUDIT}",
            fields,
            args.audit_limit,
            "false",
        )
        print(  # noqa: T201
            f"audit rows: {n} in {seconds:.1f} s = {n / seconds:,.0f}/s"
            f" (pages of {args.audit_limit}; slowest page {slowest * 1000:.0f} ms)"
        )


if __name__ == "__main__":
    main()
