"""What an instance does when a record changes: business rules, audit rows, journal entries.

``Instance`` holds the tables and the clock; ``FakeServiceNow`` (the HTTP side) extends it.
The rules follow the out-of-box incident behaviour: ``reassignment_count`` goes up when
``assignment_group`` changes from a non-empty group; leaving Resolved/Closed for an open state
raises ``reopen_count`` and clears the resolution; resolving stamps ``resolved_at``/``_by``,
``calendar_stc``/``business_stc`` and the durations; closing or cancelling stamps ``closed_at``/
``_by`` and clears ``active``; leaving On Hold clears ``hold_reason``; ``incident_state`` follows
``state`` (On Hold awaiting the caller is legacy 4 Awaiting User Info, other holds 3); a new
impact or urgency recomputes ``priority``. A value given explicitly always wins over a rule.
Every changed field except ``sys_*`` writes one ``sys_audit`` row (references as sys_ids);
``audit_inserts`` also audits each non-empty field of a new record (oldvalue empty).
"""

from __future__ import annotations

import pickle
import random
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.fakes.servicenow.schema import (
    DEFAULT_CHOICES,
    NOT_AUDITED,
    SCHEMAS,
    STRING,
    TableSchema,
    task_schema,
)
from tests.fakes.servicenow.store import Table

__all__ = ["FORMAT", "Instance", "business_seconds", "fmt"]

FORMAT = "%Y-%m-%d %H:%M:%S"
SAVE_VERSION = 1
"""bump when the stored shape of tables or rows changes (old cache files are then refused)"""
OPEN_STATES = frozenset({"1", "2", "3"})
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


AUDIT_COLUMNS = (
    "sys_id",
    "tablename",
    "documentkey",
    "fieldname",
    "oldvalue",
    "newvalue",
    "user",
    "reason",
    "record_checkpoint",
    "internal_checkpoint",
    "sys_created_on",
    "sys_created_by",
)
"""``sys_audit`` columns in storage order (``_audit`` writes rows in this order)"""


def fmt(value: datetime) -> str:
    """A datetime as the Table API stores it: UTC, ``YYYY-MM-DD HH:MM:SS``."""
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give a time zone")
        value = value.astimezone(UTC)
    return value.isoformat(" ")[:19]


class _Old:
    """Read access to a row's current values (before a change is applied)."""

    __slots__ = ("row", "table")

    def __init__(self, table: Table, row: list[str]) -> None:
        self.table, self.row = table, row

    def __getitem__(self, name: str) -> str:
        return self.table.value(self.row, name)


def _parse(value: str) -> datetime:
    return datetime.strptime(value, FORMAT).replace(tzinfo=UTC)


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


class Instance:
    """The data side of the fake: tables, clock, users, groups, choices and change rules."""

    def __init__(self, *, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("start needs a time zone")
        self.now = start.astimezone(UTC)
        self.tick = timedelta(seconds=1)
        self.audit_inserts = False
        self.lock = threading.RLock()
        self.tables: dict[str, Table] = {name: Table(s) for name, s in SCHEMAS.items()}
        assert tuple(self.tables["sys_audit"].columns) == AUDIT_COLUMNS
        self._rng = random.Random(20240301)
        self._numbers: dict[str, int] = {}
        self._checkpoint = 0
        self._users: dict[str, str] = {}
        self._labels: dict[tuple[str, str, str], str] | None = None
        self.add_user("admin", "System Administrator")
        for (table, element), choices in DEFAULT_CHOICES.items():
            for value, label in choices:
                self.set_choice(element, value, label, table=table)
        for element in ("priority", "impact", "urgency"):
            for value, label in DEFAULT_CHOICES[("task", element)]:
                self.set_choice(element, value, label, table="incident")

    # --- saving -----------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the data (tables, counters, clock) to a pickle file, e.g. a generated
        instance a benchmark wants to start from again."""
        with self.lock:
            for table in self.tables.values():
                table.bulk_loaded()
            state = {
                "version": SAVE_VERSION,
                "tables": self.tables,
                "numbers": self._numbers,
                "users": self._users,
                "checkpoint": self._checkpoint,
                "now": self.now,
                "rng": self._rng.getstate(),
            }
            temporary = path.with_name(path.name + ".tmp")
            with temporary.open("wb") as out:
                pickle.dump(state, out, protocol=pickle.HIGHEST_PROTOCOL)
            temporary.replace(path)

    def load(self, path: Path) -> None:
        """Replace the data with what ``save`` wrote (a file this code wrote: pickle)."""
        with path.open("rb") as source:
            state = pickle.load(source)
        if state.get("version") != SAVE_VERSION:
            raise ValueError(f"{path} was saved by another version of the fake")
        with self.lock:
            self.tables = state["tables"]
            self._numbers = state["numbers"]
            self._users = state["users"]
            self._checkpoint = state["checkpoint"]
            self.now = state["now"]
            self._rng.setstate(state["rng"])
            self._labels = None

    # --- clock and ids --------------------------------------------------------------------

    def advance(self, step: timedelta | None = None) -> datetime:
        """Move the clock on (one tick by default) and return the new time."""
        with self.lock:
            self.now += self.tick if step is None else step
            return self.now

    def _at(self, at: datetime | None) -> datetime:
        if at is None:
            return self.advance()
        if at.tzinfo is None:
            raise ValueError(f"naive datetime {at!r}: give a time zone")
        if at.tzinfo is not UTC or at.microsecond:
            at = at.astimezone(UTC).replace(microsecond=0)
        self.now = max(self.now, at)
        return at

    def new_sys_id(self) -> str:
        return f"{self._rng.getrandbits(128):032x}"

    def table(self, name: str) -> Table:
        found = self.tables.get(name)
        if found is None:
            raise KeyError(f"unknown table {name!r}; known: {sorted(self.tables)}")
        return found

    def add_table(self, name: str, prefix: str) -> Table:
        """Another task table (``u_custom_task``), shaped like ``task``."""
        with self.lock:
            if name not in self.tables:
                self.tables[name] = Table(task_schema(name, prefix))
            return self.tables[name]

    # --- users, groups, choices -----------------------------------------------------------

    def _insert_plain(self, table: str, values: dict[str, str], at: datetime) -> str:
        sys_id = values.get("sys_id") or self.new_sys_id()
        stamp = fmt(at)
        row = {
            "sys_id": sys_id,
            "sys_created_on": stamp,
            "sys_updated_on": stamp,
            "sys_created_by": "admin",
            "sys_updated_by": "admin",
            "sys_mod_count": "0",
            **values,
        }
        self.table(table).insert(row)
        return sys_id

    def add_user(self, user_name: str, name: str) -> str:
        """A sys_user row (or the existing one with that user_name); returns its sys_id."""
        with self.lock:
            if user_name in self._users:
                return self._users[user_name]
            first, _, last = name.partition(" ")
            sys_id = self._insert_plain(
                "sys_user",
                {
                    "user_name": user_name,
                    "name": name,
                    "first_name": first,
                    "last_name": last,
                    "email": f"{user_name}@example.com",
                    "active": "true",
                    "time_zone": "GMT",
                    "sys_domain": "global",
                },
                self.now,
            )
            self._users[user_name] = sys_id
            return sys_id

    def user_id(self, user_name: str) -> str:
        """The sys_id of a user, created on first mention."""
        with self.lock:
            known = self._users.get(user_name)
            if known is not None:
                return known
            return self.add_user(user_name, user_name.replace(".", " ").title())

    def add_group(self, name: str) -> str:
        """A sys_user_group row; returns its sys_id."""
        with self.lock:
            return self._insert_plain(
                "sys_user_group",
                {"name": name, "description": f"{name} team", "active": "true"},
                self.now,
            )

    def set_choice(
        self,
        element: str,
        value: str,
        label: str,
        *,
        table: str = "incident",
        inactive: bool = False,
        language: str = "en",
    ) -> None:
        """Add or change one sys_choice row (``(table, element, value, language)`` is its key)."""
        with self.lock:
            choices = self.tables["sys_choice"]
            get = {f: choices.getter(f) for f in ("name", "element", "value", "language")}
            sequence = 0
            for sys_id, row in choices.rows.items():
                if get["name"](row) == table and get["element"](row) == element:
                    sequence += 1
                    if get["value"](row) == value and get["language"](row) == language:
                        choices.update(
                            sys_id,
                            {
                                "label": label,
                                "inactive": "true" if inactive else "false",
                                "sys_updated_on": fmt(self.now),
                            },
                        )
                        self._labels = None
                        return
            self._insert_plain(
                "sys_choice",
                {
                    "name": table,
                    "element": element,
                    "value": value,
                    "label": label,
                    "inactive": "true" if inactive else "false",
                    "language": language,
                    "sequence": str((sequence + 1) * 10),
                },
                self.now,
            )
            self._labels = None

    def choice_labels(self) -> dict[tuple[str, str, str], str]:
        """``(table, element, value) -> label`` of the English choices (cached)."""
        labels = self._labels
        if labels is None:
            choices = self.tables["sys_choice"]
            get = {f: choices.getter(f) for f in ("name", "element", "value", "label", "language")}
            labels = {
                (get["name"](r), get["element"](r), get["value"](r)): get["label"](r)
                for r in choices.rows.values()
                if get["language"](r) == "en"
            }
            self._labels = labels
        return labels

    def choice_label(self, table: str, element: str, value: str) -> str | None:
        """The English label of a choice value (the parent table's when the table has none)."""
        labels = self.choice_labels()
        found = labels.get((table, element, value))
        if found is None and table in self.tables:
            parent = self.tables[table].schema.choice_parent
            if parent is not None:
                found = labels.get((parent, element, value))
        return found

    # --- records --------------------------------------------------------------------------

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
                    if value and name not in NOT_AUDITED:
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
            old = _Old(store, row)
            when = self._at(at)
            stamp = fmt(when)
            changes = dict(fields)
            if store.schema.prefix is not None:
                changes = self._rules(store, old, fields, when, actor)
            columns = store.columns
            if len(row) < len(columns):
                row.extend([""] * (len(columns) - len(row)))
            previous = {k: row[columns[k]] for k in changes}
            changed = {k: v for k, v in changes.items() if previous[k] != v}
            if not changed:
                return
            mod_count = int(old["sys_mod_count"] or 0) + 1
            store.update(
                sys_id,
                {
                    **changed,
                    "sys_updated_on": stamp,
                    "sys_updated_by": actor,
                    "sys_mod_count": str(mod_count),
                },
            )
            millis = int(when.timestamp() * 1000)
            for name, value in changed.items():
                if name not in NOT_AUDITED:
                    self._audit(
                        table,
                        sys_id,
                        name,
                        previous[name],
                        value,
                        actor,
                        stamp,
                        millis,
                        mod_count,
                    )

    def _rules(
        self, store: Table, old: _Old, fields: dict[str, str], when: datetime, actor: str
    ) -> dict[str, str]:
        out = dict(fields)
        stamp = fmt(when)

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
            opened = _parse(old["opened_at"] or old["sys_created_on"])
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
