"""Tables of the fake ServiceNow instance: their fields and types, and the seeded choice lists.

Field lists follow real Table API responses (ServiceNowDocs ``c_TableAPI.md``: INC0000046 and
PRB0000050). Every stored value is a string, as the real API returns it; references hold the
sys_id of the referenced row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_CHOICES",
    "JOURNAL_FIELDS",
    "SCHEMAS",
    "STRING",
    "TableSchema",
    "audited",
    "task_schema",
]

# field types
STRING = "string"
INTEGER = "integer"
CHOICE = "choice"  # integer-valued choice (state, priority, ...)
TEXT_CHOICE = "text_choice"  # string-valued choice (category, contact_type, ...)
DATETIME = "glide_date_time"
DURATION = "glide_duration"
BOOLEAN = "boolean"
REFERENCE = "reference"
JOURNAL = "journal"
SYS_ID = "GUID"

ORDERED_TYPES = frozenset({INTEGER, CHOICE})


@dataclass(frozen=True)
class TableSchema:
    """One table: field -> type, reference targets, how its rows are shown and indexed."""

    name: str
    fields: dict[str, str]
    references: dict[str, str] = field(default_factory=dict)
    display_field: str = "sys_id"
    prefix: str | None = None
    """number prefix (``INC``) for task tables"""
    ordered: tuple[str, ...] = ("sys_created_on", "sys_updated_on")
    """datetime fields kept in sorted indexes (range queries with ORDERBY use them)"""
    partitions: tuple[str, ...] = ()
    """low-cardinality fields the sorted indexes are split by (``tablename``, ``fieldname``)"""
    hashed: tuple[str, ...] = ("sys_id",)
    """fields with an exact-match index (``=`` and ``IN`` over them touch only the matches)"""
    choice_parent: str | None = None
    """table whose choices apply when this one has none for a field (``task``)"""


_SYS = {
    "sys_id": SYS_ID,
    "sys_created_on": DATETIME,
    "sys_created_by": STRING,
    "sys_updated_on": DATETIME,
    "sys_updated_by": STRING,
    "sys_mod_count": INTEGER,
    "sys_tags": STRING,
}

_TASK_FIELDS: dict[str, str] = {
    "parent": REFERENCE,
    "made_sla": BOOLEAN,
    "watch_list": STRING,
    "upon_reject": STRING,
    "approval_history": JOURNAL,
    "number": STRING,
    "opened_by": REFERENCE,
    "user_input": STRING,
    "sys_domain": REFERENCE,
    "state": CHOICE,
    "knowledge": BOOLEAN,
    "order": INTEGER,
    "closed_at": DATETIME,
    "cmdb_ci": REFERENCE,
    "delivery_plan": REFERENCE,
    "impact": CHOICE,
    "active": BOOLEAN,
    "work_notes_list": STRING,
    "business_service": REFERENCE,
    "priority": CHOICE,
    "sys_domain_path": STRING,
    "time_worked": STRING,
    "expected_start": DATETIME,
    "rejection_goto": REFERENCE,
    "opened_at": DATETIME,
    "business_duration": DURATION,
    "group_list": STRING,
    "work_end": DATETIME,
    "approval_set": DATETIME,
    "wf_activity": REFERENCE,
    "work_notes": JOURNAL,
    "short_description": STRING,
    "correlation_display": STRING,
    "delivery_task": REFERENCE,
    "work_start": DATETIME,
    "assignment_group": REFERENCE,
    "additional_assignee_list": STRING,
    "description": STRING,
    "calendar_duration": DURATION,
    "close_notes": STRING,
    "sys_class_name": STRING,
    "closed_by": REFERENCE,
    "follow_up": DATETIME,
    "contact_type": TEXT_CHOICE,
    "urgency": CHOICE,
    "company": REFERENCE,
    "reassignment_count": INTEGER,
    "activity_due": DATETIME,
    "assigned_to": REFERENCE,
    "comments": JOURNAL,
    "approval": TEXT_CHOICE,
    "sla_due": DATETIME,
    "comments_and_work_notes": JOURNAL,
    "due_date": DATETIME,
    "escalation": CHOICE,
    "upon_approval": STRING,
    "correlation_id": STRING,
    "location": REFERENCE,
}

_INCIDENT_FIELDS: dict[str, str] = {
    "caller_id": REFERENCE,
    "category": TEXT_CHOICE,
    "subcategory": TEXT_CHOICE,
    "incident_state": CHOICE,
    "hold_reason": CHOICE,
    "severity": CHOICE,
    "notify": CHOICE,
    "problem_id": REFERENCE,
    "rfc": REFERENCE,
    "caused_by": REFERENCE,
    "parent_incident": REFERENCE,
    "child_incidents": INTEGER,
    "reopen_count": INTEGER,
    "reopened_time": DATETIME,
    "reopened_by": REFERENCE,
    "resolved_at": DATETIME,
    "resolved_by": REFERENCE,
    "close_code": TEXT_CHOICE,
    "calendar_stc": INTEGER,
    "business_stc": INTEGER,
}

_TASK_REFERENCES = {
    "parent": "task",
    "opened_by": "sys_user",
    "sys_domain": "sys_user_group",
    "cmdb_ci": "cmdb_ci",
    "delivery_plan": "sc_cat_item_delivery_plan",
    "business_service": "cmdb_ci_service",
    "rejection_goto": "task",
    "wf_activity": "wf_activity",
    "delivery_task": "sc_cat_item_delivery_task",
    "assignment_group": "sys_user_group",
    "closed_by": "sys_user",
    "company": "core_company",
    "assigned_to": "sys_user",
    "location": "cmn_location",
}

_INCIDENT_REFERENCES = {
    "caller_id": "sys_user",
    "problem_id": "problem",
    "rfc": "change_request",
    "caused_by": "change_request",
    "parent_incident": "incident",
    "reopened_by": "sys_user",
    "resolved_by": "sys_user",
}


def task_schema(name: str, prefix: str, *, incident: bool = False) -> TableSchema:
    """A task table (``incident``, ``problem``, ``sc_req_item``, ...)."""
    fields = {**_TASK_FIELDS, **(_INCIDENT_FIELDS if incident else {}), **_SYS}
    refs = {**_TASK_REFERENCES, **(_INCIDENT_REFERENCES if incident else {})}
    return TableSchema(
        name,
        fields,
        refs,
        display_field="number",
        prefix=prefix,
        choice_parent=None if name == "task" else "task",
    )


SCHEMAS: dict[str, TableSchema] = {
    "incident": task_schema("incident", "INC", incident=True),
    "problem": task_schema("problem", "PRB"),
    "change_request": task_schema("change_request", "CHG"),
    "sc_req_item": task_schema("sc_req_item", "RITM"),
    "sc_request": task_schema("sc_request", "REQ"),
    "task": task_schema("task", "TASK"),
    "sys_audit": TableSchema(
        "sys_audit",
        {
            "sys_id": SYS_ID,
            "tablename": STRING,
            "documentkey": SYS_ID,  # a document id: the record's sys_id
            "fieldname": STRING,
            "oldvalue": STRING,
            "newvalue": STRING,
            "user": STRING,
            "reason": STRING,
            "record_checkpoint": INTEGER,
            "internal_checkpoint": STRING,
            "sys_created_on": DATETIME,
            "sys_created_by": STRING,
        },
        ordered=("sys_created_on",),
        partitions=("tablename", "fieldname"),
        hashed=("sys_id", "documentkey"),
    ),
    "sys_audit_delete": TableSchema(
        "sys_audit_delete",
        {
            "sys_id": SYS_ID,
            "tablename": STRING,
            "documentkey": SYS_ID,  # the deleted record's sys_id
            "display_value": STRING,
            "payload": STRING,
            "sys_created_on": DATETIME,
            "sys_created_by": STRING,
        },
        ordered=("sys_created_on",),
        partitions=("tablename",),
        hashed=("sys_id", "documentkey"),
    ),
    "sys_journal_field": TableSchema(
        "sys_journal_field",
        {
            "sys_id": SYS_ID,
            "element_id": SYS_ID,
            "name": STRING,
            "element": STRING,
            "value": STRING,
            "sys_created_on": DATETIME,
            "sys_created_by": STRING,
            "sys_tags": STRING,
        },
        ordered=("sys_created_on",),
        partitions=("name", "element"),
        hashed=("sys_id", "element_id"),
    ),
    "sys_choice": TableSchema(
        "sys_choice",
        {
            "sys_id": SYS_ID,
            "name": STRING,
            "element": STRING,
            "value": STRING,
            "label": STRING,
            "inactive": BOOLEAN,
            "language": STRING,
            "sequence": INTEGER,
            "dependent_value": STRING,
            "hint": STRING,
            **{k: v for k, v in _SYS.items() if k != "sys_id"},
        },
        display_field="label",
    ),
    "sys_user": TableSchema(
        "sys_user",
        {
            "user_name": STRING,
            "name": STRING,
            "first_name": STRING,
            "last_name": STRING,
            "email": STRING,
            "active": BOOLEAN,
            "time_zone": STRING,
            "sys_domain": REFERENCE,
            **_SYS,
        },
        {"sys_domain": "sys_user_group"},
        display_field="name",
        hashed=("sys_id", "user_name"),
    ),
    "sys_user_group": TableSchema(
        "sys_user_group",
        {
            "name": STRING,
            "description": STRING,
            "active": BOOLEAN,
            "manager": REFERENCE,
            "email": STRING,
            "type": STRING,
            **_SYS,
        },
        {"manager": "sys_user"},
        display_field="name",
    ),
}

JOURNAL_FIELDS = frozenset({"comments", "work_notes", "comments_and_work_notes"})


def audited(name: str) -> bool:
    """Whether a change of this field writes a sys_audit row: not for system fields (``sys_``,
    except ``sys_class_name`` and ``sys_domain_id``, as ServiceNow documents), nor journal
    fields (their entries go to sys_journal_field)."""
    if name in JOURNAL_FIELDS:
        return False
    return not name.startswith("sys_") or name in ("sys_class_name", "sys_domain_id")


# (table, element) -> [(value, label)], in sequence order
DEFAULT_CHOICES: dict[tuple[str, str], list[tuple[str, str]]] = {
    ("incident", "state"): [
        ("1", "New"),
        ("2", "In Progress"),
        ("3", "On Hold"),
        ("6", "Resolved"),
        ("7", "Closed"),
        ("8", "Canceled"),
    ],
    ("incident", "incident_state"): [
        ("1", "New"),
        ("2", "Active"),
        ("3", "Awaiting Problem"),
        ("4", "Awaiting User Info"),
        ("5", "Awaiting Evidence"),
        ("6", "Resolved"),
        ("7", "Closed"),
        ("8", "Canceled"),
    ],
    ("incident", "hold_reason"): [
        ("1", "Awaiting Caller"),
        ("3", "Awaiting Problem"),
        ("4", "Awaiting Vendor"),
        ("5", "Awaiting Change"),
    ],
    ("incident", "severity"): [("1", "1 - High"), ("2", "2 - Medium"), ("3", "3 - Low")],
    ("incident", "notify"): [("1", "Do Not Notify"), ("2", "Send Email"), ("3", "Send SMS")],
    ("incident", "category"): [
        ("inquiry", "Inquiry / Help"),
        ("software", "Software"),
        ("hardware", "Hardware"),
        ("network", "Network"),
        ("database", "Database"),
    ],
    ("incident", "close_code"): [
        ("Solved (Work Around)", "Solved (Work Around)"),
        ("Solved (Permanently)", "Solved (Permanently)"),
        ("Solved Remotely (Work Around)", "Solved Remotely (Work Around)"),
        ("Solved Remotely (Permanently)", "Solved Remotely (Permanently)"),
        ("Not Solved (Not Reproducible)", "Not Solved (Not Reproducible)"),
        ("Not Solved (Too Costly)", "Not Solved (Too Costly)"),
        ("Closed/Resolved by Caller", "Closed/Resolved by Caller"),
    ],
    ("task", "state"): [
        ("-5", "Pending"),
        ("1", "Open"),
        ("2", "Work in Progress"),
        ("3", "Closed Complete"),
        ("4", "Closed Incomplete"),
        ("7", "Closed Skipped"),
    ],
    ("task", "priority"): [
        ("1", "1 - Critical"),
        ("2", "2 - High"),
        ("3", "3 - Moderate"),
        ("4", "4 - Low"),
        ("5", "5 - Planning"),
    ],
    ("task", "impact"): [("1", "1 - High"), ("2", "2 - Medium"), ("3", "3 - Low")],
    ("task", "urgency"): [("1", "1 - High"), ("2", "2 - Medium"), ("3", "3 - Low")],
    ("task", "escalation"): [
        ("0", "Normal"),
        ("1", "Moderate"),
        ("2", "High"),
        ("3", "Overdue"),
    ],
    ("task", "contact_type"): [
        ("email", "Email"),
        ("phone", "Phone"),
        ("self-service", "Self-service"),
        ("walk-in", "Walk-in"),
    ],
    ("task", "approval"): [
        ("not requested", "Not Yet Requested"),
        ("requested", "Requested"),
        ("approved", "Approved"),
        ("rejected", "Rejected"),
    ],
    ("problem", "state"): [
        ("101", "New"),
        ("102", "Assess"),
        ("103", "Root Cause Analysis"),
        ("104", "Fix in Progress"),
        ("106", "Resolved"),
        ("107", "Closed"),
    ],
    ("change_request", "state"): [
        ("-5", "New"),
        ("-4", "Assess"),
        ("-3", "Authorize"),
        ("-2", "Scheduled"),
        ("-1", "Implement"),
        ("0", "Review"),
        ("3", "Closed"),
        ("4", "Canceled"),
    ],
}
