"""Settings: one TOML file plus environment variables (pydantic-settings).

Where the file comes from: ``--config PATH``, else env ``TICKETFLOW_CONFIG``, else
``./ticketflow.toml`` when it exists, else none (defaults and environment only).

Precedence, highest first: environment (``TICKETFLOW_WAREHOUSE_URL``, or any key as
``TICKETFLOW_<SECTION>__<KEY>``), then the TOML file, then defaults.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from app.errors import ConfigError
from connectors.config import SourceConfig

__all__ = ["DEFAULT_CONFIG_FILE", "Settings", "WarehouseSettings", "load_settings"]

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
