"""What an instance does when a record changes: business rules, audit rows, journal entries.

``Records`` extends ``Instance`` (tables, clock, users, choices); ``FakeServiceNow`` (the HTTP
side) extends it. The rules follow the out-of-box incident behaviour: ``reassignment_count``
goes up when ``assignment_group`` changes from a non-empty group; leaving Resolved/Closed for an
open state raises ``reopen_count`` and clears the resolution; resolving stamps ``resolved_at``/
``_by``, ``calendar_stc``/``business_stc`` and the durations; closing or cancelling stamps
``closed_at``/``_by`` and clears ``active``; leaving On Hold clears ``hold_reason``;
``incident_state`` follows ``state`` (On Hold awaiting the caller is legacy 4 Awaiting User
Info, other holds 3); a new impact or urgency recomputes ``priority``. A value given explicitly
always wins over a rule. On the task state model (``sc_req_item``, ``sc_request``, ``task``)
closing (3, 4, 7) stamps ``closed_at``/``_by`` and clears ``active``. Every changed field
writes one ``sys_audit`` row (references as sys_ids), except system fields (``schema.audited``);
``audit_inserts`` also audits each non-empty field of a new record (oldvalue empty,
record_checkpoint 0).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tests.fakes.servicenow.instance import AUDIT_COLUMNS, FORMAT, Instance, fmt, parse_stamp
from tests.fakes.servicenow.schema import STRING, TableSchema, audited
from tests.fakes.servicenow.store import Table

__all__ = ["AUDIT_COLUMNS", "PRIORITY", "Records", "business_seconds", "fmt"]

OPEN_STATES = frozenset({"1", "2", "3"})
TASK_CLOSED_STATES = frozenset({"3", "4", "7"})  # Closed Complete / Incomplete / Skipped
OWN_STATE_MODELS = frozenset({"problem", "change_request"})
"""task tables whose states are not the task model (no close rules for them here)"""
RESOLVED_STATES = frozenset({"6", "7"})
PRIORITY = {  # (impact, urgency) -> priority, the out-of-box lookup
    ("1", "1"): "1",
    ("1", "2"): "2",
    ("2", "1"): "2",
    ("1", "3"): "3",
    ("2", "2"): "3",
    ("3", "1"): "3",
    ("2", "3"): "4",
    ("3", "2"): "4",
    ("3", "3"): "5",
}


def business_seconds(start: datetime, end: datetime) -> int:
    """Seconds between ``start`` and ``end`` inside Monday-Friday 08:00-17:00 UTC."""
    total = 0.0
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day < end:
        if day.weekday() < 5:
            open_, close = day + timedelta(hours=8), day + timedelta(hours=17)
            low, high = max(open_, start), min(close, end)
            if high > low:
                total += (high - low).total_seconds()
        day += timedelta(days=1)
    return int(total)


def _duration(seconds: int) -> str:
    return (datetime(1970, 1, 1) + timedelta(seconds=seconds)).strftime(FORMAT)


class Records(Instance):
    """An instance whose records change the way ServiceNow's do (see the module docstring)."""

    @staticmethod
    def _check(fields: dict[str, Any], table: Table) -> None:
        for name, value in fields.items():
            if not isinstance(value, str):
                raise TypeError(f"{table.name}.{name} must be a string (got {value!r})")
            if name not in table.columns:
                if name.startswith("u_"):
                    table.add_column(name, STRING)
                else:
                    raise ValueError(f"{table.name} has no field {name!r}")

    def add_record(
        self,
        table: str = "incident",
        *,
        at: datetime | None = None,
        actor: str = "admin",
        **fields: str,
    ) -> dict[str, Any]:
        """A new record created now (or ``at``) by ``actor``; returns a copy of what is stored."""
        with self.lock:
            store = self.table(table)
            self._check(fields, store)
            when = self._at(at)
            stamp = fmt(when)
            schema = store.schema
            actor_id = self.user_id(actor)
            values: dict[str, str] = {
                "sys_id": self.new_sys_id(),
                "sys_created_on": stamp,
                "sys_updated_on": stamp,
                "sys_created_by": actor,
                "sys_updated_by": actor,
                "sys_mod_count": "0",
            }
            if schema.prefix is not None:
                values.update(self._task_defaults(schema, stamp, actor_id))
            values.update(fields)
            row = store.insert(values)
            if self.audit_inserts and table not in ("sys_audit", "sys_journal_field"):
                for name, value in values.items():
                    if value and audited(name):
                        self._audit(
                            store.name,
                            values["sys_id"],
                            name,
                            "",
                            value,
                            actor,
                            stamp,
                            int(when.timestamp() * 1000),
                            0,
                        )
            return store.as_dict(row)

    def _task_defaults(self, schema: TableSchema, stamp: str, actor_id: str) -> dict[str, str]:
        assert schema.prefix is not None
        number = self._numbers.get(schema.prefix, 10_000) + 1
        self._numbers[schema.prefix] = number
        defaults = {
            "number": f"{schema.prefix}{number:07d}",
            "state": "1",
            "active": "true",
            "impact": "3",
            "urgency": "3",
            "priority": "5",
            "escalation": "0",
            "approval": "not requested",
            "made_sla": "true",
            "knowledge": "false",
            "reassignment_count": "0",
            "opened_at": stamp,
            "opened_by": actor_id,
            "sys_class_name": schema.name,
            "sys_domain": "global",
            "sys_domain_path": "/",
            "contact_type": "phone",
        }
        if "incident_state" in schema.fields:
            defaults.update(
                incident_state="1",
                severity="3",
                notify="1",
                reopen_count="0",
                category="inquiry",
                caller_id=actor_id,
                child_incidents="0",
            )
        return defaults

    def get_record(self, sys_id: str, *, table: str = "incident") -> dict[str, Any]:
        """A copy of a stored record."""
        with self.lock:
            store = self.table(table)
            return store.as_dict(store.rows[sys_id])

    def delete_record(
        self,
        sys_id: str,
        *,
        table: str = "incident",
        at: datetime | None = None,
        actor: str = "admin",
    ) -> None:
        """Delete a record now (or ``at``): it stops being listed, its audit rows stay, and
        ``sys_audit_delete`` gets a row (the "Deleted Records" module), as on an instance
        where the table is audited."""
        with self.lock:
            store = self.table(table)
            number = store.value(store.rows[sys_id], "number")
            store.delete(sys_id)
            when = self._at(at)
            self.tables["sys_audit_delete"].insert(
                {
                    "sys_id": self.new_sys_id(),
                    "tablename": table,
                    "documentkey": sys_id,
                    "display_value": number,
                    "payload": f"<xml><{table}><sys_id>{sys_id}</sys_id></{table}></xml>",
                    "sys_created_on": fmt(when),
                    "sys_created_by": actor,
                }
            )

    def modify(
        self,
        sys_id: str,
        *,
        table: str = "incident",
        at: datetime | None = None,
        actor: str = "admin",
        **fields: str,
    ) -> dict[str, Any]:
        """Change a record as ``actor`` now (or ``at``), applying the business rules and
        writing the audit rows; nothing happens when no value changes. Returns a copy."""
        with self.lock:
            self.change(sys_id, table=table, at=at, actor=actor, **fields)
            store = self.table(table)
            return store.as_dict(store.rows[sys_id])

    def change(
        self,
        sys_id: str,
        *,
        table: str = "incident",
        at: datetime | None = None,
        actor: str = "admin",
        **fields: str,
    ) -> None:
        """``modify`` without the copy of the result (bulk generation)."""
        with self.lock:
            store = self.table(table)
            if sys_id not in store.rows:
                raise KeyError(f"no {table} record {sys_id}")
            self._check(fields, store)
            row = store.rows[sys_id]
            columns = store.columns
            if len(row) < len(columns):
                row.extend([""] * (len(columns) - len(row)))
            old = dict(zip(columns, row, strict=True))
            when = self._at(at)
            stamp = fmt(when)
            changes = fields
            if store.schema.prefix is not None:
                changes = self._rules(store, old, fields, when, stamp, actor)
            changed = {k: v for k, v in changes.items() if old[k] != v}
            if not changed:
                return
            mod_count = int(old["sys_mod_count"] or 0) + 1
            checkpoint = str(mod_count)
            store.update(
                sys_id,
                {
                    **changed,
                    "sys_updated_on": stamp,
                    "sys_updated_by": actor,
                    "sys_mod_count": checkpoint,
                },
            )
            millis = f"{int(when.timestamp() * 1000):x}"
            audit = self.tables["sys_audit"]
            for name, value in changed.items():
                if audited(name):
                    self._checkpoint += 1
                    audit.insert_row(  # AUDIT_COLUMNS order
                        [
                            self.new_sys_id(),
                            table,
                            sys_id,
                            name,
                            old[name],
                            value,
                            actor,
                            "",
                            checkpoint,
                            f"{millis}{self._checkpoint:07x}",
                            stamp,
                            actor,
                        ]
                    )

    def _rules(
        self,
        store: Table,
        old: dict[str, str],
        fields: dict[str, str],
        when: datetime,
        stamp: str,
        actor: str,
    ) -> dict[str, str]:
        out = dict(fields)

        def derive(name: str, value: str) -> None:
            if name not in fields and name in store.columns:
                out[name] = value

        group = fields.get("assignment_group", old["assignment_group"])
        if group != old["assignment_group"] and old["assignment_group"]:
            derive("reassignment_count", str(int(old["reassignment_count"] or 0) + 1))
        if ("impact" in fields or "urgency" in fields) and "priority" not in fields:
            key = (fields.get("impact", old["impact"]), fields.get("urgency", old["urgency"]))
            if key in PRIORITY:
                derive("priority", PRIORITY[key])
        if "incident_state" not in store.columns:
            if store.name not in OWN_STATE_MODELS:
                self._task_state_rules(store, old, fields, out, stamp, actor)
            return out
        state = fields.get("state", old["state"])
        hold = fields.get("hold_reason", old["hold_reason"])
        if state != "3" and old["hold_reason"] and "hold_reason" not in fields:
            hold = ""
            out["hold_reason"] = ""
        if state != old["state"] or "hold_reason" in fields:
            legacy = ("4" if hold == "1" else "3") if state == "3" else state
            derive("incident_state", legacy)
        if state == old["state"]:
            return out
        actor_id = self.user_id(actor)
        if old["state"] in RESOLVED_STATES and state in OPEN_STATES:
            derive("reopen_count", str(int(old["reopen_count"] or 0) + 1))
            derive("reopened_time", stamp)
            derive("reopened_by", actor_id)
            for name in ("resolved_at", "resolved_by", "closed_at", "closed_by"):
                derive(name, "")
            derive("active", "true")
        if state == "6" or (state == "7" and not old["resolved_at"]):
            opened = parse_stamp(old["opened_at"] or old["sys_created_on"])
            seconds = int((when - opened).total_seconds())
            business = business_seconds(opened, when)
            derive("resolved_at", stamp)
            derive("resolved_by", actor_id)
            derive("calendar_stc", str(seconds))
            derive("business_stc", str(business))
            derive("calendar_duration", _duration(seconds))
            derive("business_duration", _duration(business))
            if not old["close_code"]:
                derive("close_code", "Solved (Permanently)")
            if not old["close_notes"]:
                derive("close_notes", "Resolved by the service desk")
        if state in ("7", "8"):
            derive("closed_at", stamp)
            derive("closed_by", actor_id)
            derive("active", "false")
        return out

    def _task_state_rules(
        self,
        store: Table,
        old: dict[str, str],
        fields: dict[str, str],
        out: dict[str, str],
        stamp: str,
        actor: str,
    ) -> None:
        """The task state model (``sc_req_item``, ``sc_request``, ``task``): closing stamps
        ``closed_at``/``_by`` and clears ``active``; leaving a closed state undoes that."""
        state = fields.get("state", old["state"])
        if state == old["state"]:
            return
        closing = state in TASK_CLOSED_STATES
        if closing == (old["state"] in TASK_CLOSED_STATES):
            return
        values = (
            {"closed_at": stamp, "closed_by": self.user_id(actor), "active": "false"}
            if closing
            else {"closed_at": "", "closed_by": "", "active": "true"}
        )
        for name, value in values.items():
            if name not in fields:
                out[name] = value

    def _audit(
        self,
        table: str,
        sys_id: str,
        name: str,
        old: str,
        new: str,
        actor: str,
        stamp: str,
        millis: int,
        checkpoint: int,
    ) -> None:
        self._checkpoint += 1
        # AUDIT_COLUMNS order
        self.tables["sys_audit"].insert_row(
            [
                self.new_sys_id(),
                table,
                sys_id,
                name,
                old,
                new,
                actor,
                "",
                str(checkpoint),
                f"{millis:x}{self._checkpoint:07x}",
                stamp,
                actor,
            ]
        )

    def add_journal(
        self,
        sys_id: str,
        value: str,
        *,
        element: str = "comments",
        actor: str = "admin",
        table: str = "incident",
        at: datetime | None = None,
    ) -> dict[str, Any]:
        """A comment or work note on a record (one sys_journal_field row); the record counts
        it as an update (``sys_updated_on``, ``sys_updated_by``, ``sys_mod_count``)."""
        if element not in ("comments", "work_notes"):
            raise ValueError(f"element must be comments or work_notes, not {element!r}")
        with self.lock:
            store = self.table(table)
            if sys_id not in store.rows:
                raise KeyError(f"no {table} record {sys_id}")
            when = self._at(at)
            stamp = fmt(when)
            journal = self.tables["sys_journal_field"]
            row = journal.insert(
                {
                    "sys_id": self.new_sys_id(),
                    "element_id": sys_id,
                    "name": table,
                    "element": element,
                    "value": value,
                    "sys_created_on": stamp,
                    "sys_created_by": actor,
                }
            )
            current = store.rows[sys_id]
            mod_count = int(store.value(current, "sys_mod_count") or 0) + 1
            store.update(
                sys_id,
                {"sys_updated_on": stamp, "sys_updated_by": actor, "sys_mod_count": str(mod_count)},
            )
            return journal.as_dict(row)
