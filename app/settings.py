"""Settings: one TOML file plus environment variables (pydantic-settings).

Where the file comes from: ``--config PATH``, else env ``TICKETFLOW_CONFIG``, else
``./ticketflow.toml`` when it exists, else none (defaults and environment only).

Precedence, highest first: environment (``TICKETFLOW_WAREHOUSE_URL``, or any key as
``TICKETFLOW_<SECTION>__<KEY>``), then the TOML file, then defaults.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from app.alert_settings import AlertSettings, ScheduleSettings
from app.errors import ConfigError
from connectors.config import SourceConfig

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ApiKeySettings",
    "ApiSettings",
    "Settings",
    "WarehouseSettings",
    "load_settings",
]

DEFAULT_CONFIG_FILE = Path("ticketflow.toml")
KNOWN_KINDS = ("eventlog", "servicenow", "topdesk")


class WarehouseSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = "sqlite:///ticketflow.db"
    """SQLAlchemy URL: ``sqlite:///path.db`` (default) or ``postgresql://user@host/db``"""
    batch_size: int = Field(default=20_000, ge=100)
    """tickets per write batch"""

    @field_validator("url")
    @classmethod
    def _known_backend(cls, url: str) -> str:
        if not url.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return url


class LoggingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "text", "json"] = "auto"
    """auto: readable text on a terminal, JSON lines otherwise"""


def _read_secret(*, owner: str, env: str | None, file: Path | None) -> SecretStr | None:
    """A secret from the named environment variable or file; None when neither is named.

    Raises:
        ValueError: the variable is unset or the file unreadable; the message names the
            variable or file, never the value.
    """
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ValueError(f"{owner}: environment variable `{env}` is not set")
        return SecretStr(value.strip())
    if file:
        try:
            return SecretStr(file.read_text().strip())
        except OSError as e:
            raise ValueError(f"{owner}: cannot read `{file}`: {e.strerror}") from e
    return None


ApiScope = Literal["read", "admin"]
# a CSP source expression we accept for frame-ancestors: keywords or a scheme://host[:port]
_FRAME_SOURCE = re.compile(r"^('self'|'none'|https?://(\*\.)?[A-Za-z0-9.\-]+(:\d{1,5})?)$")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-]+(:\d{1,5})?$")


class ApiKeySettings(BaseModel):
    """One API key: a name for logs, its scopes, and where the key itself is read from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    scopes: list[ApiScope] = Field(min_length=1)
    """read: the API, charts and dashboard; admin: embed tokens and /metrics (not implied)"""
    key_env: str | None = None
    key_file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_inline_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "key" in data:
            raise ValueError(
                "`key` must not be written in the config file: "
                "use `key_env` (an environment variable) or `key_file`"
            )
        return data

    @model_validator(mode="after")
    def _one_location(self) -> ApiKeySettings:
        if (self.key_env is None) == (self.key_file is None):
            raise ValueError(f"api key `{self.name}`: set exactly one of key_env, key_file")
        return self

    def key(self) -> SecretStr:
        """The key itself.

        Raises:
            ValueError: the variable is unset, the file unreadable, or the key too short.
        """
        owner = f"api key `{self.name}`"
        secret = _read_secret(owner=owner, env=self.key_env, file=self.key_file)
        assert secret is not None  # _one_location guarantees a location
        if len(secret.get_secret_value()) < 32:
            raise ValueError(f"{owner}: the key must be at least 32 characters long")
        return secret


_RATE = re.compile(r"^\s*\d+\s*(/|per)\s*(\d+\s*)?(second|minute|hour|day)s?\s*$")


class RateLimitSettings(BaseModel):
    """``[api.rate_limit]``: requests per API key (or per client address without a valid key);
    over the limit the API answers 429 with ``Retry-After``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    """off by default (put the service behind the intranet's proxy, or turn this on)"""
    per_key: str = "1200/minute"
    """for each API key (by its name), e.g. ``"20/second"``, ``"1200/minute"``, ``"50000/day"``"""
    per_address: str = "300/minute"
    """for each client address of requests without a valid key (public-read, embed tokens)"""

    @field_validator("per_key", "per_address")
    @classmethod
    def _rate(cls, value: str) -> str:
        if not _RATE.match(value):
            raise ValueError(f"not a rate: {value!r} (use e.g. '1200/minute' or '20/second')")
        return value


class ApiSettings(BaseModel):
    """``[api]``: the HTTP server, its keys, embeds, CORS, caching and rate limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    keys: list[ApiKeySettings] = Field(default_factory=list)
    public_read: bool = False
    """closed intranets only: every read route (API, charts, dashboard) answers without a key"""
    embed_key_env: str | None = None
    """environment variable holding the key that signs embed tokens (>= 32 characters)"""
    embed_key_file: Path | None = None
    embed_token_max_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    """the longest lifetime an embed token may be given"""
    frame_ancestors: list[str] = Field(default_factory=lambda: ["'self'"])
    """origins allowed to show charts in an iframe (CSP frame-ancestors)"""
    cors_origins: list[str] = Field(default_factory=list)
    """origins whose scripts may call the API from a browser; none by default"""
    cache_seconds: float = Field(default=300.0, ge=0)
    """analytics are recomputed at the latest this long after the last computation"""
    change_check_seconds: float = Field(default=10.0, ge=0)
    """how often the warehouse is checked for changes (a change starts a background recompute)"""
    max_page_size: int = Field(default=500, ge=1, le=10_000)
    csv_max_rows: int = Field(default=200_000, ge=1)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    """requests per key or client address; 429 with Retry-After beyond (needs `limits`)"""

    @model_validator(mode="before")
    @classmethod
    def _no_inline_embed_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "embed_key" in data:
            raise ValueError(
                "`embed_key` must not be written in the config file: "
                "use `embed_key_env` (an environment variable) or `embed_key_file`"
            )
        return data

    @field_validator("frame_ancestors")
    @classmethod
    def _frame_sources(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if not _FRAME_SOURCE.match(v)]
        if bad:
            raise ValueError(
                f"not a frame-ancestors source: {', '.join(map(repr, bad))} "
                "(use 'self', 'none' or https://host[:port])"
            )
        return values

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if not _ORIGIN.match(v)]
        if bad:
            raise ValueError(
                f"not an origin: {', '.join(map(repr, bad))} (use https://host[:port]; no '*')"
            )
        return values

    @field_validator("keys")
    @classmethod
    def _unique_key_names(cls, keys: list[ApiKeySettings]) -> list[ApiKeySettings]:
        names = [k.name for k in keys]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"api key names must be unique; repeated: {', '.join(dupes)}")
        return keys

    def embed_key(self) -> SecretStr | None:
        """The embed-token signing key, None when none is configured.

        Raises:
            ValueError: the variable is unset, the file unreadable, or the key too short.
        """
        secret = _read_secret(
            owner="api embed key", env=self.embed_key_env, file=self.embed_key_file
        )
        if secret is not None and len(secret.get_secret_value()) < 32:
            raise ValueError("api embed key: the key must be at least 32 characters long")
        return secret


class _LegacyWarehouseUrlSource(PydanticBaseSettingsSource):
    """``TICKETFLOW_WAREHOUSE_URL`` as a shorthand for ``TICKETFLOW_WAREHOUSE__URL``."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        url = os.environ.get("TICKETFLOW_WAREHOUSE_URL")
        return {"warehouse": {"url": url}} if url else {}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TICKETFLOW_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    warehouse: WarehouseSettings = Field(default_factory=WarehouseSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    sources: list[SourceConfig] = Field(default_factory=list)
    api: ApiSettings = Field(default_factory=ApiSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[Any]) -> list[Any]:
        names = [s.name for s in sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dupes)}")
        return sources

    def source(self, name: str) -> Any:
        """The configured source called ``name``.

        Raises:
            ConfigError: no source has that name.
        """
        for s in self.sources:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.sources) or "none configured"
        raise ConfigError([(f"source `{name}`", f"not configured (known: {known})")])

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _CONFIG_FILE.get("path")
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            _LegacyWarehouseUrlSource(settings_cls),
            env_settings,
        ]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


# the file the next Settings() reads; set only inside load_settings
_CONFIG_FILE: dict[str, Path | None] = {}


def _key(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in KNOWN_KINDS:
            continue  # the discriminator's branch name, not a key the user wrote
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def resolve_config_path(path: Path | None) -> Path | None:
    """The config file to read: explicit, from ``TICKETFLOW_CONFIG``, or ``./ticketflow.toml``."""
    if path is not None:
        return path
    env = os.environ.get("TICKETFLOW_CONFIG")
    if env:
        return Path(env)
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read and validate the settings.

    Raises:
        ConfigError: the file is missing or unreadable, or a key is invalid; the message names
            each bad key and the reason.
    """
    config_path = resolve_config_path(path)
    origin = str(config_path) if config_path else "environment"
    if config_path is not None:
        try:
            with config_path.open("rb") as fh:
                tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError([("config file", f"{config_path} does not exist")]) from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError([("config file", f"not valid TOML: {e}")], origin=origin) from e
    _CONFIG_FILE["path"] = config_path
    try:
        return Settings(**overrides)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            reason = err["msg"].removeprefix("Value error, ")
            if err["type"] == "union_tag_invalid":
                reason = f"unknown kind; known kinds: {', '.join(KNOWN_KINDS)}"
            elif err["type"] == "extra_forbidden":
                reason = "unknown key"
            problems.append((_key(err["loc"]), reason))
        raise ConfigError(problems, origin=origin) from e
    finally:
        _CONFIG_FILE.pop("path", None)
