"""Response and request shapes of the HTTP API (what OpenAPI documents).

These are separate from the warehouse tables on purpose: the API leaves out the raw vendor
payload and the requester (personal data), and names things for the reader, not the database.
``*Read`` is one item, ``*Page`` is ``{items, total, limit, offset}`` (plus ``as_of`` when the
items are computed by analytics).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AgingPage",
    "AgingRead",
    "BlockerPage",
    "BlockerRead",
    "CfdPage",
    "CfdRead",
    "CycleSummaryRead",
    "CycleTimePage",
    "CycleTimeRead",
    "DailyReport",
    "EmbedTokenCreate",
    "EmbedTokenRead",
    "EventRead",
    "FlowRateRead",
    "FlowSummary",
    "HandoverPage",
    "HandoverRead",
    "Health",
    "Milestone",
    "Page",
    "ReportTicket",
    "SourceRead",
    "StalePage",
    "StaleRead",
    "ThroughputPage",
    "ThroughputRead",
    "TicketDetail",
    "TicketPage",
    "TicketRead",
    "TimeInStatusPage",
    "TimeInStatusRead",
    "UnknownStatusRead",
]

ItemT = TypeVar("ItemT")


class _Model(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(_Model, Generic[ItemT]):
    items: list[ItemT]
    total: int = Field(description="rows that match the filters, over all pages")
    limit: int
    offset: int


class AnalyticsPage(Page[ItemT], Generic[ItemT]):
    as_of: datetime = Field(description="the instant the figures were computed for")


class TicketRead(_Model):
    source: str
    external_id: str
    number: str | None
    title: str | None
    type: str
    raw_status: str | None
    state: str
    priority_raw: str | None
    priority: int | None
    category: str | None
    team: str | None
    assignee: str | None
    created_at: datetime | None
    updated_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    due_at: datetime | None
    reassignment_count: int | None
    reopen_count: int | None
    url: str | None = Field(description="the ticket in its own tool")


TICKET_FIELDS: tuple[str, ...] = tuple(TicketRead.model_fields)


class TicketPage(Page[TicketRead]):
    pass


class EventRead(_Model):
    occurred_at: datetime
    seq: int
    field: str
    old_value: str | None
    new_value: str | None
    actor: str | None
    origin: str


class TicketDetail(TicketRead):
    deleted_at: datetime | None = Field(
        default=None,
        description="when a complete full sync no longer found the ticket in its tool "
        "(deleted tickets are left out of lists and analytics)",
    )
    events: list[EventRead] = Field(description="the ticket's history, oldest first")


class UnknownStatusRead(_Model):
    raw_status: str
    mapped_to: str
    last_count: int


class SourceRead(_Model):
    name: str
    kind: str | None
    configured: bool = Field(description="named in the configuration (else only in the warehouse)")
    tickets: int = Field(description="tickets stored, those marked deleted not counted")
    open_tickets: int
    deleted_tickets: int = Field(
        default=0, description="tickets a complete full sync no longer found in the tool"
    )
    events: int
    last_run_at: datetime | None
    last_success_at: datetime | None
    last_status: str | None
    last_error: str | None
    unknown_statuses: list[UnknownStatusRead]


class Health(_Model):
    status: Literal["ok", "degraded"]
    warehouse: Literal["ok", "unavailable"]
    version: str


class EmbedTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    charts: list[str] = Field(
        min_length=1, description="chart names, `dashboard`, or `*` for all of them"
    )
    team: str | None = Field(default=None, description="pin the embeds to one team")
    source: str | None = Field(default=None, description="pin the embeds to one source")
    lifetime_hours: float = Field(
        default=24.0, gt=0, description="at most api.embed_token_max_hours"
    )


class EmbedTokenRead(_Model):
    token: str
    charts: list[str]
    pins: dict[str, str]
    expires_at: datetime
    urls: dict[str, str] = Field(description="ready-to-embed paths per chart")


class AgingRead(_Model):
    source: str
    ticket_id: str
    number: str | None
    title: str | None
    url: str | None
    priority: int | None
    state: str
    team: str | None
    assignee: str | None
    age: timedelta = Field(description="since the ticket started (ISO 8601 duration)")
    age_bucket: str
    state_since: datetime | None
    in_state: timedelta | None
    pace: str = Field(description="the pace band the age has passed in this state, e.g. `> p85`")
    over_sle: bool = Field(description="older than the service-level expectation")


class AgingPage(AnalyticsPage[AgingRead]):
    pass


class ThroughputRead(_Model):
    date: date
    throughput: int


class ThroughputPage(AnalyticsPage[ThroughputRead]):
    pass


class _TicketRef(_Model):
    """The ticket a per-ticket analytics row is about, with its link."""

    source: str
    ticket_id: str
    number: str | None
    title: str | None
    url: str | None = Field(description="the ticket in its own tool")


class StaleRead(_TicketRef):
    priority: int | None
    state: str
    team: str | None
    assignee: str | None
    last_activity_at: datetime | None
    last_activity: str | None = Field(description="what the last real activity was")
    age: timedelta = Field(description="since the last real activity (ISO 8601 duration)")
    business_age: timedelta | None
    threshold: timedelta | None = Field(description="the staleness threshold for the priority")
    overdue: float | None = Field(description="age ÷ threshold")
    dead: bool = Field(description="far past the threshold: probably forgotten")
    reason: str


class StalePage(AnalyticsPage[StaleRead]):
    pass


BlockerKind = Literal[
    "sla_breached",
    "sla_risk",
    "queued",
    "unassigned",
    "ping_pong",
    "waiting_customer",
    "waiting_supplier",
    "waiting_other",
    "customer_not_updated",
]


class BlockerRead(_TicketRef):
    priority: int | None
    state: str | None
    team: str | None
    assignee: str | None
    blocker: str = Field(description="the kind of blocker, e.g. `queued`, `sla_risk`")
    reason: str
    since: datetime | None
    age: timedelta | None
    business_age: timedelta | None


class BlockerPage(AnalyticsPage[BlockerRead]):
    pass


class TimeInStatusRead(_TicketRef):
    team: str | None
    state: str | None = Field(description="the ticket's current lifecycle state")
    new: timedelta
    in_progress: timedelta
    waiting_customer: timedelta
    waiting_supplier: timedelta
    waiting_other: timedelta
    resolved: timedelta
    closed: timedelta
    cancelled: timedelta


class TimeInStatusPage(AnalyticsPage[TimeInStatusRead]):
    pass


class CycleTimeRead(_TicketRef):
    team: str | None
    state: str
    created: datetime | None
    first_start: datetime | None
    first_stop: datetime | None
    stop: datetime | None
    reopens: int
    lead_time: timedelta | None
    cycle_time: timedelta | None


class CycleTimePage(AnalyticsPage[CycleTimeRead]):
    pass


class CycleSummaryRead(_Model):
    metric: str
    n: int
    mean: timedelta | None
    p50: timedelta | None
    p70: timedelta | None
    p85: timedelta | None
    p95: timedelta | None
    sle: timedelta | None


class FlowRateRead(_Model):
    metric: str
    numerator: int
    denominator: int
    rate: float | None


class FlowSummary(_Model):
    as_of: datetime
    cycle_time: list[CycleSummaryRead] = Field(description="lead and cycle time percentiles")
    rates: list[FlowRateRead] = Field(description="reopen and first-assignment rates")


class CfdRead(_Model):
    date: date
    new: int
    in_progress: int
    waiting_customer: int
    waiting_supplier: int
    waiting_other: int
    resolved: int
    closed: int
    cancelled: int
    arrived: int
    departed: int


class CfdPage(AnalyticsPage[CfdRead]):
    pass


class HandoverRead(_Model):
    from_team: str | None = Field(description="the team that handed tickets over")
    to_team: str | None = Field(description="the team that received them")
    handovers: int
    tickets: int
    bounces: int = Field(description="handovers back to a team that had the ticket before")


class HandoverPage(AnalyticsPage[HandoverRead]):
    pass


class ReportTicket(_TicketRef):
    team: str | None
    state: str | None
    priority: int | None
    at: datetime | None = Field(description="when it came in, was resolved, or was last active")
    reason: str | None = Field(default=None, description="why it is stale or blocked")


class Milestone(_Model):
    kind: Literal[
        "throughput_record",
        "backlog_down",
        "oldest_resolved",
        "no_stale_calls",
        "sla_breached",
        "dead",
    ] = Field(description="see docs/metrics.md#milestones")
    text: str = Field(description="what happened, in words")
    value: float = Field(
        description="the number behind it: tickets finished, days in a row, age in days, "
        "open tickets, hours past the SLA target, or days without real activity"
    )
    at: datetime | None = Field(default=None, description="when it happened, if known")
    source: str | None = None
    ticket_id: str | None = None
    number: str | None = None
    title: str | None = None
    url: str | None = Field(default=None, description="the ticket in its own tool")


class DailyReport(_Model):
    date: date
    team: str | None
    as_of: datetime
    milestones: list[Milestone] = Field(
        description="what stood out on the day: records, streaks, the oldest ticket finished; "
        "for today also SLA targets passed, tickets turned dead?, or no stale calls"
    )
    arrived: list[ReportTicket]
    resolved: list[ReportTicket]
    stale: list[ReportTicket]
    blocked: list[ReportTicket]
    counts: dict[str, int] = Field(
        description="open, arrived, resolved, stale, blocked, milestones"
    )
