"""Per-source configuration models (one ``[[sources]]`` table in ticketflow.toml each).

``kind`` selects the model. Secrets are never written inline: a source names the environment
variable (``password_env``) or the file (``password_file``) that holds them, and the resolved
value is a ``SecretStr`` that never prints.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from connectors.base import LifecycleState, TicketType

__all__ = [
    "EventLogFormat",
    "EventLogSourceConfig",
    "HttpSourceConfig",
    "ServiceNowSourceConfig",
    "SourceConfig",
    "SourceConfigBase",
    "TopdeskSourceConfig",
]

_SECRET_KEYS = ("password", "token", "api_key", "secret", "client_secret")


class SourceConfigBase(BaseModel):
    """Keys every source has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    kind: str
    enabled: bool = True
    status_map: dict[str, LifecycleState] = Field(default_factory=dict)
    """raw status -> lifecycle state; extends and overrides the tool's defaults"""
    unknown_status: LifecycleState = LifecycleState.IN_PROGRESS
    """the state a raw status the map does not know is mapped to (and reported)"""

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in _SECRET_KEYS:
                if key in data:
                    raise ValueError(
                        f"`{key}` must not be written in the config file: "
                        f"use `{key}_env` (an environment variable) or `{key}_file`"
                    )
        return data


class HttpSourceConfig(SourceConfigBase):
    """A helpdesk reached over HTTP with Basic auth."""

    base_url: Annotated[str, Field(pattern=r"^https?://[^\s/]+")]
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    timeout_seconds: float = Field(default=30.0, gt=0)
    """read/write/pool timeout of every request; connecting gets at most 10 s of it"""
    page_size: int = Field(default=100, ge=1, le=10_000)
    verify_tls: bool = True
    """check the server's certificate (turn off only for a test server)"""
    ca_file: Path | None = None
    """a CA bundle for servers with an internal certificate authority"""
    max_attempts: int = Field(default=6, ge=1, le=20)
    """tries per request on 5xx, timeouts and 429 (the first try included)"""
    backoff_seconds: float = Field(default=1.0, ge=0)
    """first backoff before a retry; doubles each time, with full jitter"""
    max_backoff_seconds: float = Field(default=60.0, ge=0)
    max_retry_after_seconds: float = Field(default=300.0, ge=0)
    """the longest ``Retry-After`` honoured; a server asking for more stops the source"""
    max_delete_fraction: float = Field(default=0.5, ge=0, le=1)
    """a complete ``--full`` sync marks stored tickets it did not find as deleted, unless more
    than this share of them is missing (then it marks none and reports why)"""

    @field_validator("base_url")
    @classmethod
    def _no_credentials_in_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.username or parts.password:
            raise ValueError(
                "must not hold a user name or password: use `username` and `password_env` "
                "(or `password_file`)"
            )
        if parts.query or parts.fragment:
            raise ValueError("must not have a query string or fragment")
        return url.rstrip("/")

    def password_source(self) -> str:
        """Where the password comes from, in words (for error hints; never the secret)."""
        if self.password_env:
            return f"environment variable `{self.password_env}` (password_env)"
        if self.password_file:
            return f"file `{self.password_file}` (password_file)"
        return "none configured: set `password_env` or `password_file`"

    def password(self) -> SecretStr | None:
        """The secret from the named environment variable or file, None if neither is set.

        Raises:
            ValueError: the named variable is unset or the file is unreadable.
        """
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ValueError(
                    f"source `{self.name}`: environment variable `{self.password_env}` "
                    "(password_env) is not set"
                )
            return SecretStr(value)
        if self.password_file:
            try:
                return SecretStr(self.password_file.read_text().strip())
            except OSError as e:
                raise ValueError(
                    f"source `{self.name}`: cannot read password_file `{self.password_file}`: "
                    f"{e.strerror}"
                ) from e
        return None


class TopdeskSourceConfig(HttpSourceConfig):
    """A TOPdesk installation (see docs/connectors/topdesk.md).

    ``base_url`` is the installation's address, e.g. ``https://acme.topdesk.net`` (a trailing
    ``/tas/api`` is accepted); ``username`` is the operator's login name and the password is one
    of its application passwords. ``status_map`` overrides the lifecycle state per processing
    status name, ahead of the onHold/completed/closed flags.
    """

    kind: Literal["topdesk"]
    page_size: int = Field(default=1000, ge=1, le=10_000)
    overlap_seconds: float = Field(default=120.0, ge=0)
    """each incremental sync re-reads this much before the stored cursor"""
    partials: bool = False
    """also sync partial incidents (``status == "partial"``)"""
    archived: bool = False
    """also sync archived incidents"""
    actions: bool = False
    """fetch each changed incident's actions (one call per changed incident): those the
    caller sees become ``customer_update`` events, the others ``internal_update`` events"""
    paging: Literal["auto", "pageStart", "legacy"] = "auto"
    """``auto`` probes ``/tas/api/version``: 3.4 and later use ``pageStart``/``pageSize`` with a
    FIQL ``query``, older servers ``start``/``page_size`` with ``modification_date_start``"""
    extra_fields: list[str] = Field(default_factory=list)
    """more incident fields to request and keep in ``raw`` (e.g. ``optionalFields1``)"""


_TABLE_NAME = r"^[a-z][a-z0-9_]*$"


class ServiceNowSourceConfig(HttpSourceConfig):
    """A ServiceNow instance through the Table API (see docs/connectors/servicenow.md).

    ``base_url`` is the instance's address, e.g. ``https://acme.service-now.com``. ``auth`` is
    ``basic`` (``username`` + password) or ``oauth`` (OAuth 2 password grant with refresh:
    ``client_id`` and ``client_secret_env``/``client_secret_file`` as well). ``status_map``
    overrides the lifecycle state per state label (``On Hold/Awaiting Caller`` for an on-hold
    reason), ahead of the documented defaults.
    """

    kind: Literal["servicenow"]
    table: Annotated[str, Field(pattern=_TABLE_NAME)] | None = None
    """one task table; shorthand for ``tables = [table]``"""
    tables: list[Annotated[str, Field(pattern=_TABLE_NAME)]] = Field(default_factory=list)
    """task tables to read (``incident``, ``sc_req_item``, ``problem``, ``change_request``...);
    ``["incident"]`` when neither this nor ``table`` is set"""
    auth: Literal["basic", "oauth"] = "basic"
    client_id: str | None = None
    client_secret_env: str | None = None
    client_secret_file: Path | None = None
    page_size: int = Field(default=1000, ge=2, le=10_000)
    """``sysparm_limit`` of the record list requests"""
    history_page_size: int = Field(default=1000, ge=1, le=10_000)
    """``sysparm_limit`` of the ``sys_audit``/``sys_journal_field``/``sys_audit_delete``
    requests"""
    read_deletions: bool = True
    """each incremental sync reads ``sys_audit_delete`` and marks deleted records at once
    (without it, or without read access, only full syncs find deletions)"""
    overlap_seconds: float = Field(default=120.0, ge=0)
    """each incremental sync re-reads this much before the stored cursor"""
    display_value: Literal["all", "false"] = "all"
    """``all``: the instance sends labels and names with the values; ``false``: raw values
    only, labels from ``sys_choice`` and names from ``sys_user``/``sys_user_group`` lookups"""
    state_field: Literal["state", "incident_state"] = "state"
    """the lifecycle field: ``incident_state`` for instances still on the legacy model"""
    audit: bool = True
    """history from ``sys_audit``; off (or unreadable): by comparing snapshots"""
    comments: bool = True
    """customer-visible comments (``sys_journal_field``, element ``comments``) as
    ``customer_update`` events"""
    work_notes: bool = False
    """work notes as ``internal_update`` events"""
    choice_language: str = "en"
    """language of the ``sys_choice`` labels to read"""
    pace: bool = True
    """read ``X-RateLimit-Remaining``/``-Reset`` and wait for the window to reset rather than
    running into 429"""
    pace_reserve: int = Field(default=1, ge=0)
    """requests left unused in each rate-limit window (for other clients of the same user)"""
    extra_fields: list[str] = Field(default_factory=list)
    """more fields to request and keep in ``raw``"""

    @model_validator(mode="after")
    def _tables_and_auth(self) -> ServiceNowSourceConfig:
        if self.table is not None and self.tables and self.tables != [self.table]:
            raise ValueError("set `table` or `tables`, not both")
        if len(set(self.effective_tables)) != len(self.effective_tables):
            raise ValueError("`tables` lists a table twice")
        if self.auth == "oauth":
            missing = [k for k in ("client_id", "username") if getattr(self, k) is None]
            if not (self.client_secret_env or self.client_secret_file):
                missing.append("client_secret_env (or client_secret_file)")
            if missing:
                raise ValueError(f"auth = 'oauth' needs {', '.join(missing)}")
        return self

    @property
    def effective_tables(self) -> list[str]:
        """The tables to read, in order."""
        if self.tables:
            return list(self.tables)
        return [self.table or "incident"]

    def client_secret(self) -> SecretStr | None:
        """The OAuth client secret from ``client_secret_env`` or ``client_secret_file``.

        Raises:
            ValueError: the named variable is unset or the file is unreadable.
        """
        if self.client_secret_env:
            value = os.environ.get(self.client_secret_env)
            if value is None:
                raise ValueError(
                    f"source `{self.name}`: environment variable `{self.client_secret_env}` "
                    "(client_secret_env) is not set"
                )
            return SecretStr(value)
        if self.client_secret_file:
            try:
                return SecretStr(self.client_secret_file.read_text().strip())
            except OSError as e:
                raise ValueError(
                    f"source `{self.name}`: cannot read client_secret_file "
                    f"`{self.client_secret_file}`: {e.strerror}"
                ) from e
        return None


EventLogFormat = Literal["bpic2013", "bpic2014", "helpdesk", "csv"]


class EventLogSourceConfig(SourceConfigBase):
    """An exported event log (see docs/eventlog.md)."""

    kind: Literal["eventlog"]
    format: EventLogFormat = "csv"
    path: Path | None = None
    """the file ``ticketflow import-log`` reads when no PATH is given"""
    ticket_type: TicketType | None = None
    """the type of every ticket in the log; the format's default when unset"""
    timezone: str | None = None
    """zone of naive timestamps (IANA name); the format's default when unset"""
    columns: dict[str, str] = Field(default_factory=dict)
    """csv format: canonical name -> column in the file (see docs/eventlog.md)"""
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    time_format: str | None = None
    """csv format: strptime format of the time column; ISO 8601 when unset"""
    system_users: list[str] | None = None
    """actors that are the tool itself, never an assignee; the format's default when unset"""
    cases_path: Path | None = None
    """bpic2014: the case table; found beside the activity file when unset"""
    url_template: str | None = None
    """link to a ticket in its own tool, e.g. ``https://tool/ticket/{external_id}``"""
    customer_update_activities: list[str] = Field(default_factory=list)
    """csv format, ``activity`` column: activities that are ``customer_update`` events
    (matched ignoring case and blanks, like the status map; a status-map entry wins)"""
    internal_update_activities: list[str] = Field(default_factory=list)
    """csv format, ``activity`` column: known activities that are ``internal_update`` events and
    are not reported in ``unknown_activities``"""

    @model_validator(mode="after")
    def _update_lists_disjoint(self) -> EventLogSourceConfig:
        def fold(values: list[str]) -> set[str]:
            return {" ".join(v.split()).casefold() for v in values}

        both = fold(self.customer_update_activities) & fold(self.internal_update_activities)
        if both:
            raise ValueError(
                "activities in both `customer_update_activities` and "
                f"`internal_update_activities`: {', '.join(sorted(both))}"
            )
        return self


SourceConfig = Annotated[
    TopdeskSourceConfig | ServiceNowSourceConfig | EventLogSourceConfig,
    Field(discriminator="kind"),
]
