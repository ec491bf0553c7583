"""The data side of a fake instance: tables, clock, sys_ids, users, groups and choices.

``Records`` (``records``) adds the record changes and their rules; ``FakeServiceNow``
(``server``) the HTTP side.
"""

from __future__ import annotations

import pickle
import random
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.fakes.servicenow.schema import DEFAULT_CHOICES, SCHEMAS, task_schema
from tests.fakes.servicenow.store import Table

__all__ = ["AUDIT_COLUMNS", "FORMAT", "SAVE_VERSION", "Instance", "fmt", "parse_stamp"]

FORMAT = "%Y-%m-%d %H:%M:%S"
SAVE_VERSION = 1
"""bump when the stored shape of tables or rows changes (old cache files are then refused)"""
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
"""``sys_audit`` columns in storage order (``Records._audit`` writes rows in this order)"""


def fmt(value: datetime) -> str:
    """A datetime as the Table API stores it: UTC, ``YYYY-MM-DD HH:MM:SS``."""
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give a time zone")
        value = value.astimezone(UTC)
    return value.isoformat(" ")[:19]


def parse_stamp(value: str) -> datetime:
    return datetime.strptime(value, FORMAT).replace(tzinfo=UTC)


class Instance:
    """The data side of the fake: tables, clock, users, groups and choices."""

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
