"""The ``[alerts]`` and ``[schedule]`` settings blocks (nested in ``app.settings.Settings``).

```toml
[alerts]
allow_networks = ["10.20.0.0/16"]      # intranet receivers; everything private is refused otherwise
public_url = "https://ticketflow.intranet.example/"   # links back to the API in messages

[[alerts.webhooks]]
name = "ops"
url = "https://hooks.intranet.example/ticketflow"
format = "standard"                    # standard (signed JSON), slack, teams
secret_env = "TICKETFLOW_WEBHOOK_OPS_SECRET"    # whsec_... ; never inline

[[alerts.webhooks]]
name = "desk-teams"
format = "teams"
url_env = "TEAMS_DESK_URL"             # Slack/Teams URLs carry their secret: env or file only

[[alerts.rules]]
name = "desk-stale"
conditions = ["stale", "sla_risk", "sla_breached"]
teams = ["Service Desk"]
priorities = [1, 2]
webhooks = ["ops", "desk-teams"]
reminder_hours = 8

[[alerts.quiet_hours]]
team = "Service Desk"
start = "19:00"
end = "07:00"
timezone = "Europe/Amsterdam"
except_priorities = [1]

[[alerts.digests]]
team = "Service Desk"
webhook = "desk-teams"
at = "08:30"
timezone = "Europe/Amsterdam"

[schedule]
interval_minutes = 15
[[schedule.sources]]
source = "topdesk-prod"
cron = "*/10 7-19 * * mon-fri"
```
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import time
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = [
    "CONDITIONS",
    "AlertRuleSettings",
    "AlertSettings",
    "DigestSettings",
    "QuietHoursSettings",
    "ScheduleSettings",
    "SourceScheduleSettings",
    "WebhookSettings",
]

Condition = Literal[
    "stale",
    "sla_breached",
    "sla_risk",
    "queued",
    "unassigned",
    "ping_pong",
    "waiting_customer",
    "waiting_supplier",
    "waiting_other",
    "customer_not_updated",
    "overloaded",
    "absent",
]
CONDITIONS: tuple[str, ...] = Condition.__args__  # type: ignore[attr-defined]
"""every condition a rule can watch (docs/alerts.md "Conditions")"""

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = Weekday.__args__  # type: ignore[attr-defined]
_NAME = r"^[A-Za-z0-9_.\-]+$"
_MIN_SECRET_BYTES = 24


def _workdays() -> list[Weekday]:
    return ["mon", "tue", "wed", "thu", "fri"]


def _every_day() -> list[Weekday]:
    return [*_workdays(), "sat", "sun"]


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown time zone `{value}`") from e
    return value


def _read(owner: str, env: str | None, file: Path | None) -> str | None:
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ValueError(f"{owner}: environment variable `{env}` is not set")
        return value.strip()
    if file:
        try:
            return file.read_text().strip()
        except OSError as e:
            raise ValueError(f"{owner}: cannot read `{file}`: {e.strerror}") from e
    return None


def _check_url(owner: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{owner}: the URL must be http(s)://host/...")
    if parts.username or parts.password:
        raise ValueError(f"{owner}: the URL must not hold a user name or password")
    return url


class WebhookSettings(BaseModel):
    """One receiver: where to send, in which format, signed with which secret."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100, pattern=_NAME)
    url: str | None = None
    """the receiver's URL; for Slack and Teams (whose URL is the secret) use url_env/url_file"""
    url_env: str | None = None
    url_file: Path | None = None
    format: Literal["standard", "slack", "teams"] = "standard"
    secret_env: str | None = None
    """Standard Webhooks secret (``whsec_`` + base64 of 24-64 random bytes); several separated
    by spaces while rotating: every one signs, so receivers with the old or new one verify"""
    secret_file: Path | None = None
    timeout_seconds: float = Field(default=15.0, ge=1, le=30)
    """the whole request (connect, send, answer) must finish within this"""
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secret(cls, data: Any) -> Any:
        if isinstance(data, dict) and "secret" in data:
            raise ValueError(
                "`secret` must not be written in the config file: "
                "use `secret_env` (an environment variable) or `secret_file`"
            )
        return data

    @model_validator(mode="after")
    def _one_url(self) -> WebhookSettings:
        given = [x for x in (self.url, self.url_env, self.url_file) if x is not None]
        if len(given) != 1:
            raise ValueError(f"webhook `{self.name}`: set exactly one of url, url_env, url_file")
        if self.url is not None:
            _check_url(f"webhook `{self.name}`", self.url)
            if self.format != "standard":
                raise ValueError(
                    f"webhook `{self.name}`: a {self.format} URL is a secret: "
                    "use url_env or url_file"
                )
        if self.format == "standard" and self.secret_env is None and self.secret_file is None:
            raise ValueError(
                f"webhook `{self.name}`: standard webhooks are signed: "
                "set secret_env or secret_file"
            )
        if self.secret_env is not None and self.secret_file is not None:
            raise ValueError(f"webhook `{self.name}`: set only one of secret_env, secret_file")
        return self

    def target(self) -> str:
        """The URL to post to.

        Raises:
            ValueError: the variable is unset, the file unreadable or the URL malformed.
        """
        if self.url is not None:
            return self.url
        owner = f"webhook `{self.name}`"
        value = _read(owner, self.url_env, self.url_file)
        assert value is not None
        return _check_url(owner, value)

    def secrets(self) -> list[bytes]:
        """The signing secrets (decoded), newest last; empty for unsigned formats.

        Raises:
            ValueError: unset variable, unreadable file, or a secret that is not
                ``whsec_``-base64 of at least 24 bytes.
        """
        import base64
        import binascii

        owner = f"webhook `{self.name}`"
        raw = _read(owner, self.secret_env, self.secret_file)
        if raw is None:
            return []
        out = []
        for part in raw.split():
            try:
                key = base64.b64decode(part.removeprefix("whsec_"), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"{owner}: the secret is not whsec_ + base64") from None
            if len(key) < _MIN_SECRET_BYTES:
                raise ValueError(f"{owner}: the secret must decode to at least 24 bytes")
            out.append(key)
        if not out:
            raise ValueError(f"{owner}: the secret is empty")
        return out

    def secret_values(self) -> list[SecretStr]:
        """The raw configured secrets (for receivers' set-up help); masked in reprs."""
        raw = _read(f"webhook `{self.name}`", self.secret_env, self.secret_file) or ""
        return [SecretStr(p) for p in raw.split()]


class AlertRuleSettings(BaseModel):
    """Which conditions of which tickets go to which webhooks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100, pattern=_NAME)
    conditions: list[Condition] = Field(min_length=1)
    webhooks: list[str] = Field(min_length=1)
    sources: list[str] = Field(default_factory=list)
    """empty: every source"""
    teams: list[str] = Field(default_factory=list)
    """empty: every team (tickets without a team included)"""
    priorities: list[int] = Field(default_factory=list)
    """empty: every priority (tickets without one included)"""
    reminder_hours: float | None = Field(default=None, gt=0)
    """remind of an episode still open this long after it started (or after the last reminder)"""
    max_reminders: int = Field(default=1, ge=0, le=100)
    send_cleared: bool = True
    """one message when the condition ends"""
    max_opened_per_run: int = Field(default=50, ge=1)
    """more new episodes than this in one run (a first run, a mass change) are sent as one
    summary message instead of one message each"""

    @field_validator("priorities")
    @classmethod
    def _priorities(cls, values: list[int]) -> list[int]:
        if any(p < 1 or p > 5 for p in values):
            raise ValueError("priorities are 1 (highest) to 5")
        return values


class QuietHoursSettings(BaseModel):
    """Hours in which a team gets no alert messages; they are held and sent when it ends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    team: str = Field(min_length=1)
    """a team name, or ``*`` for every team without quiet hours of its own"""
    start: time
    end: time
    """may be earlier than ``start``: the quiet time then runs over midnight"""
    timezone: str = "UTC"
    days: list[Weekday] = Field(default_factory=_every_day)
    """days on which the quiet time *starts*"""
    except_priorities: list[int] = Field(default_factory=list)
    """tickets of these priorities are sent even in quiet hours"""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _zone(value)


class DigestSettings(BaseModel):
    """A daily message per team: everything open for the team, as one message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    team: str = Field(min_length=1)
    webhook: str
    at: time = time(8, 0)
    timezone: str = "UTC"
    days: list[Weekday] = Field(default_factory=_workdays)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _zone(value)


class AlertSettings(BaseModel):
    """``[alerts]``: rules, webhooks, quiet hours, digests, egress policy and retries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhooks: list[WebhookSettings] = Field(default_factory=list)
    rules: list[AlertRuleSettings] = Field(default_factory=list)
    quiet_hours: list[QuietHoursSettings] = Field(default_factory=list)
    digests: list[DigestSettings] = Field(default_factory=list)
    public_url: str | None = None
    """the address people open ticketflow at; messages link to it"""
    allow_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(
        default_factory=list
    )
    """networks receivers may be in although they are private, loopback or link-local
    (cloud metadata addresses stay refused)"""
    require_https: bool = True
    """outside ``allow_networks`` only https is sent to"""
    allowed_ports: list[int] = Field(default_factory=lambda: [80, 443, 8080, 8443])
    """ports allowed outside ``allow_networks`` (inside them every port is)"""
    retry_base_seconds: float = Field(default=5.0, gt=0)
    retry_factor: float = Field(default=4.0, ge=1)
    retry_cap_hours: float = Field(default=8.0, gt=0)
    retry_horizon_hours: float = Field(default=72.0, gt=0)
    """a message not delivered this long after it was raised is marked failed (redeliverable)"""
    max_retry_after_seconds: float = Field(default=3600.0, ge=0)
    """``Retry-After`` (429/503) is honoured up to this"""
    disable_after_hours: float = Field(default=120.0, gt=0)
    """an endpoint whose every attempt failed for this long (and at least 5 times) is disabled"""
    attempts_keep_days: int = Field(default=30, ge=1)

    @model_validator(mode="after")
    def _references(self) -> AlertSettings:
        names = [w.name for w in self.webhooks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"webhook names must be unique; repeated: {', '.join(dupes)}")
        rules = [r.name for r in self.rules]
        dupes = sorted({n for n in rules if rules.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(dupes)}")
        for r in self.rules:
            unknown = sorted(set(r.webhooks) - set(names))
            if unknown:
                raise ValueError(f"rule `{r.name}`: unknown webhooks {', '.join(unknown)}")
        for d in self.digests:
            if d.webhook not in names:
                raise ValueError(f"digest of `{d.team}`: unknown webhook `{d.webhook}`")
        if self.public_url is not None:
            _check_url("alerts.public_url", self.public_url)
        return self

    def webhook(self, name: str) -> WebhookSettings | None:
        return next((w for w in self.webhooks if w.name == name), None)


_CRON = re.compile(r"^\S+(\s+\S+){4}$")


def _check_cron(expression: str, timezone: str, where: str) -> None:
    from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

    if not _CRON.match(expression.strip()):
        raise ValueError(f"{where}: cron needs five fields")
    if re.search(r"\d", expression.split()[4].split("/")[0]):
        # APScheduler reads 0 as Monday, standard cron as Sunday: refuse rather than guess
        raise ValueError(
            f"{where}: write the day of week as names (mon-fri, sun), not numbers "
            "(cron dialects disagree on which day 0 is)"
        )
    try:
        CronTrigger.from_crontab(expression, timezone=timezone)
    except ValueError as e:
        raise ValueError(f"{where}: bad cron: {e}") from e


class SourceScheduleSettings(BaseModel):
    """When one source is synced: every N minutes or on a cron expression."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(min_length=1)
    interval_minutes: float | None = Field(default=None, gt=0)
    cron: str | None = None
    """five fields: minute hour day-of-month month day-of-week, in ``timezone``"""
    timezone: str = "UTC"
    full_cron: str | None = None
    """when this source gets a full sync (finds deleted tickets), in ``timezone``; default
    ``[schedule] full_sync_cron``"""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _zone(value)

    @model_validator(mode="after")
    def _one_kind(self) -> SourceScheduleSettings:
        if (self.interval_minutes is None) == (self.cron is None):
            raise ValueError(
                f"schedule of `{self.source}`: set exactly one of interval_minutes, cron"
            )
        if self.cron is not None:
            _check_cron(self.cron, self.timezone, f"schedule of `{self.source}`")
        if self.full_cron is not None:
            _check_cron(self.full_cron, self.timezone, f"full_cron of `{self.source}`")
        return self


class ScheduleSettings(BaseModel):
    """``[schedule]``: the periodic sync → analytics → alerts runs and the delivery worker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval_minutes: float = Field(default=15.0, gt=0)
    """sync interval of network sources without an entry in ``sources``"""
    sources: list[SourceScheduleSettings] = Field(default_factory=list)
    alerts_interval_minutes: float = Field(default=5.0, gt=0)
    """alerts are also evaluated this often when no sync is due (ages grow with the clock)"""
    full_sync_cron: str | None = "0 3 * * sun"
    """when every network source gets a full sync, in UTC (Sundays 03:00 by default): it
    re-reads everything and marks tickets gone from the tool as deleted; a source's own
    ``full_cron`` overrides it; empty: never"""

    @field_validator("full_sync_cron")
    @classmethod
    def _full_cron(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        _check_cron(value, "UTC", "schedule full_sync_cron")
        return value

    delivery_poll_seconds: float = Field(default=5.0, gt=0)
    in_serve: bool = False
    """run the scheduler inside ``ticketflow serve`` (single worker) instead of a separate
    ``ticketflow worker``"""
    leader_retry_seconds: float = Field(default=10.0, gt=0)
    """how often a standby replica tries to become the scheduler"""
