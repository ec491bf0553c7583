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
    "EmbedTokenCreate",
    "EmbedTokenRead",
    "EventRead",
    "Health",
    "Page",
    "SourceRead",
    "ThroughputPage",
    "ThroughputRead",
    "TicketDetail",
    "TicketPage",
    "TicketRead",
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
    events: list[EventRead] = Field(description="the ticket's history, oldest first")


class UnknownStatusRead(_Model):
    raw_status: str
    mapped_to: str
    last_count: int


class SourceRead(_Model):
    name: str
    kind: str | None
    configured: bool = Field(description="named in the configuration (else only in the warehouse)")
    tickets: int
    open_tickets: int
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
