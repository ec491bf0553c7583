"""Generated documentation: the configuration reference and the OpenAPI description.

``python -m app.docs_gen`` writes ``docs/configuration.md`` (every key of ticketflow.toml and
every environment variable, read from the pydantic settings models and the description under
each field) and ``docs/openapi.json`` (the FastAPI app's schema). ``--check`` writes nothing and
exits 1 when either file is out of date. ``tests/test_docs_config.py`` and
``tests/test_docs_openapi.py`` fail when the files drift from the code.

A field's description is the docstring written under it in its model; the few fields without
one are described in ``FIELD_NOTES`` below (a test fails when a field has neither).
"""

from __future__ import annotations

import argparse
import ast
import enum
import functools
import inspect
import ipaddress
import json
import sys
import textwrap
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from app.settings import Settings
from connectors.config import SourceConfigBase

__all__ = [
    "ENVIRONMENT",
    "EXAMPLE_CONFIG",
    "FIELD_NOTES",
    "ModelField",
    "configuration_markdown",
    "main",
    "model_fields",
    "openapi_json",
    "setting_paths",
]

REPO = Path(__file__).resolve().parents[1]
CONFIG_DOC = Path("docs/configuration.md")
OPENAPI_DOC = Path("docs/openapi.json")

# descriptions of fields whose model has no docstring under them ("Model.field")
FIELD_NOTES: dict[str, str] = {
    "LoggingSettings.level": "the lowest level that is logged",
    "ApiSettings.host": "address `ticketflow serve` listens on (`--host` overrides)",
    "ApiSettings.port": "port `ticketflow serve` listens on (`--port` overrides)",
    "ApiSettings.keys": "API keys, one `[[api.keys]]` table each (below)",
    "ApiSettings.embed_key_file": "a file holding the embed-token signing key (instead of "
    "`embed_key_env`)",
    "ApiSettings.max_page_size": "the largest `limit` a JSON list answers",
    "ApiSettings.csv_max_rows": "the most rows a `format=csv` answer holds",
    "ApiKeySettings.name": "a name for logs and metrics (letters, digits, `_.-`)",
    "ApiKeySettings.key_env": "environment variable holding the key (>= 32 characters)",
    "ApiKeySettings.key_file": "a file holding the key (instead of `key_env`)",
    "AlertSettings.webhooks": "receivers, one `[[alerts.webhooks]]` table each",
    "AlertSettings.rules": "alert rules, one `[[alerts.rules]]` table each",
    "AlertSettings.quiet_hours": "quiet hours, one `[[alerts.quiet_hours]]` table each",
    "AlertSettings.digests": "daily digests, one `[[alerts.digests]]` table each",
    "AlertSettings.retry_base_seconds": "wait after the first failed delivery attempt",
    "AlertSettings.retry_factor": "each further wait is this many times the previous one",
    "AlertSettings.retry_cap_hours": "the longest wait between two attempts",
    "AlertSettings.attempts_keep_days": "delivery attempts and finished messages are kept "
    "this long",
    "WebhookSettings.name": "the name rules and digests refer to",
    "WebhookSettings.url_env": "environment variable holding the URL (Slack, Teams)",
    "WebhookSettings.url_file": "a file holding the URL (Slack, Teams)",
    "WebhookSettings.format": "`standard`: signed JSON (Standard Webhooks); `slack`, `teams`: "
    "their incoming-webhook messages",
    "WebhookSettings.secret_file": "a file holding the signing secret(s) (instead of `secret_env`)",
    "WebhookSettings.enabled": "a disabled webhook gets no messages",
    "AlertRuleSettings.name": "the rule's name (in messages and the API)",
    "AlertRuleSettings.conditions": "which conditions raise an alert (docs/alerts.md)",
    "AlertRuleSettings.webhooks": "names of the webhooks that get this rule's messages",
    "AlertRuleSettings.max_reminders": "how many reminders one episode gets at most",
    "QuietHoursSettings.start": "local time the quiet hours begin (`HH:MM`)",
    "QuietHoursSettings.timezone": "IANA time zone of `start` and `end`",
    "DigestSettings.team": "the team whose open alerts the digest lists",
    "DigestSettings.webhook": "the webhook the digest goes to",
    "DigestSettings.at": "local time the digest is sent (`HH:MM`)",
    "DigestSettings.timezone": "IANA time zone of `at` and `days`",
    "DigestSettings.days": "weekdays the digest is sent on",
    "ScheduleSettings.sources": "per-source schedules, one `[[schedule.sources]]` table each",
    "ScheduleSettings.delivery_poll_seconds": "how often the outbox is checked for messages due",
    "SourceScheduleSettings.source": "the source's `name`",
    "SourceScheduleSettings.interval_minutes": "sync every this many minutes (or `cron`)",
    "SourceScheduleSettings.timezone": "IANA time zone of `cron`",
    "SourceConfigBase.name": "the source's name in the warehouse, the CLI and the API "
    "(letters, digits, `_.-`)",
    "SourceConfigBase.kind": "which tool: `topdesk`, `servicenow` or `eventlog`",
    "SourceConfigBase.enabled": "a disabled source is skipped by `sync` and the scheduler "
    "unless named with `--source`",
    "HttpSourceConfig.base_url": "the tool's address, `https://host` (no credentials, query "
    "or fragment)",
    "HttpSourceConfig.username": "the login name the API account signs in with",
    "HttpSourceConfig.password_env": "environment variable holding the password",
    "HttpSourceConfig.password_file": "a file holding the password (instead of `password_env`)",
    "HttpSourceConfig.page_size": "records per request (the server may cap it)",
    "HttpSourceConfig.max_backoff_seconds": "the longest backoff between two retries",
    "TopdeskSourceConfig.page_size": "incidents per request (the server may cap it)",
    "ServiceNowSourceConfig.auth": "`basic` (user name and password) or `oauth` (OAuth 2 "
    "password grant, with refresh)",
    "ServiceNowSourceConfig.client_id": "OAuth: the application registry's client id",
    "ServiceNowSourceConfig.client_secret_env": "OAuth: environment variable holding the "
    "client secret",
    "ServiceNowSourceConfig.client_secret_file": "OAuth: a file holding the client secret",
    "EventLogSourceConfig.format": "the log's format (docs/eventlog.md)",
    "EventLogSourceConfig.delimiter": "csv format: the column separator",
}

# every environment variable ticketflow (and its scripts and tests) reads by a fixed name
ENVIRONMENT: list[tuple[str, str, str]] = [
    (
        "TICKETFLOW_CONFIG",
        "the config file, when `--config` is not given",
        "`./ticketflow.toml` if it exists, else none",
    ),
    (
        "TICKETFLOW_WAREHOUSE_URL",
        "shorthand for `TICKETFLOW_WAREHOUSE__URL`, the warehouse's SQLAlchemy URL",
        "`sqlite:///ticketflow.db`",
    ),
    (
        "TICKETFLOW_<SECTION>__<KEY>",
        "any key of the sections below, e.g. `TICKETFLOW_API__PORT=9000`; lists and tables "
        'as JSON, e.g. `TICKETFLOW_SOURCES=\'[{"name": "log", "kind": "eventlog"}]\'`',
        "",
    ),
    (
        "TICKETFLOW_SYNC_FAULT",
        "test hook of the crash tests: kills `ticketflow sync` at a named point "
        "(`tickets|events|cursor|commit:<page>`); never set it otherwise",
        "unset",
    ),
    (
        "TICKETFLOW_DEMO_TOPDESK_PASSWORD",
        "set by `ticketflow demo` in its own process: the simulated desk's generated password "
        "(never printed); nothing to set",
        "generated",
    ),
    (
        "TICKETFLOW_DEMO_WEBHOOK_SECRET",
        "set by `ticketflow demo` in its own process: the generated secret that signs the "
        "alerts to its webhook inbox; nothing to set",
        "generated",
    ),
    (
        "TICKETFLOW_DEMO_EMBED_KEY",
        "set by `ticketflow demo` in its own process: the generated embed-token key; nothing "
        "to set",
        "generated",
    ),
    (
        "TICKETFLOW_TEST_PG_URL",
        "tests: the PostgreSQL server the PostgreSQL tests use",
        "`postgresql+psycopg://postgres@127.0.0.1:5432/test`",
    ),
    (
        "TICKETFLOW_SHARED_DATA",
        "tests: the folder of real event logs",
        "`../shared/data`",
    ),
    (
        "TICKETFLOW_INSTALL_TEST",
        "tests: `1` runs the Dockerfile's pip steps in a fresh venv (2-4 minutes)",
        "unset",
    ),
    (
        "TICKETFLOW_NO_CHROMIUM",
        "`scripts/bootstrap`: set to skip installing Debian's chromium for the browser tests",
        "unset",
    ),
]

EXAMPLE_CONFIG = """\
# ticketflow.toml: every section, with values a real desk might use.
# Secrets are never written here: *_env keys name the environment variables that hold them.

[warehouse]
url = "postgresql://ticketflow@db.intranet.example:5432/ticketflow"
batch_size = 20000

[logging]
level = "INFO"
format = "json"

[[sources]]
name = "servicedesk"
kind = "topdesk"
base_url = "https://acme.topdesk.net"
username = "api-ticketflow"
password_env = "TOPDESK_APP_PASSWORD"
actions = true
status_map = { "Wacht op leverancier" = "waiting_supplier" }

[[sources]]
name = "itsm"
kind = "servicenow"
base_url = "https://acme.service-now.com"
username = "svc.ticketflow"
password_env = "SERVICENOW_PASSWORD"

[[sources]]
name = "legacy-desk"
kind = "eventlog"
format = "csv"
path = "exports/legacy.csv"
timezone = "Europe/Amsterdam"
columns = { ticket = "Ticket", time = "Changed", status = "Status", team = "Group" }

[api]
host = "0.0.0.0"
port = 8000
embed_key_env = "TICKETFLOW_EMBED_KEY"
frame_ancestors = ["'self'", "https://intranet.example.org"]

[[api.keys]]
name = "grafana"
scopes = ["read"]
key_env = "TICKETFLOW_KEY_GRAFANA"

[[api.keys]]
name = "ops"
scopes = ["read", "admin"]
key_env = "TICKETFLOW_KEY_OPS"

[alerts]
public_url = "https://ticketflow.intranet.example/"
allow_networks = ["10.20.0.0/16"]

[[alerts.webhooks]]
name = "ops"
url = "https://hooks.intranet.example/ticketflow"
format = "standard"
secret_env = "TICKETFLOW_WEBHOOK_OPS_SECRET"

[[alerts.webhooks]]
name = "desk-teams"
format = "teams"
url_env = "TEAMS_DESK_URL"

[[alerts.rules]]
name = "desk"
conditions = ["stale", "sla_risk", "sla_breached", "unassigned"]
teams = ["Service Desk"]
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
source = "servicedesk"
cron = "*/10 7-19 * * mon-fri"
timezone = "Europe/Amsterdam"
"""


@dataclass(frozen=True)
class ModelField:
    """One key of a settings model, as the reference shows it."""

    name: str
    owner: type[BaseModel]
    info: FieldInfo
    description: str


@functools.cache
def _attribute_docstrings(cls: type) -> dict[str, str]:
    """The docstrings written under the fields of ``cls`` itself (not its bases)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.ClassDef)
    out: dict[str, str] = {}
    for field, doc in zip(node.body, node.body[1:], strict=False):
        if (
            isinstance(field, ast.AnnAssign)
            and isinstance(field.target, ast.Name)
            and isinstance(doc, ast.Expr)
            and isinstance(doc.value, ast.Constant)
            and isinstance(doc.value.value, str)
        ):
            out[field.target.id] = inspect.cleandoc(doc.value.value)
    return out


def _owner(model: type[BaseModel], name: str) -> type[BaseModel]:
    """The class in ``model``'s MRO that last declared field ``name``."""
    for cls in model.__mro__:
        if name in getattr(cls, "__annotations__", {}) and issubclass(cls, BaseModel):
            return cls
    return model


def _describe(model: type[BaseModel], name: str, info: FieldInfo) -> str:
    for cls in model.__mro__:
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            continue
        doc = _attribute_docstrings(cls).get(name)
        if doc:
            return doc
        if name in getattr(cls, "__annotations__", {}):
            break  # the declaring class has none; a base's docstring would describe another type
    if info.description:
        return info.description
    for cls in model.__mro__:
        note = FIELD_NOTES.get(f"{cls.__name__}.{name}")
        if note:
            return note
    subs = _models_in(info.annotation)
    if len(subs) == 1 and not _is_list(info.annotation):
        return _model_doc(subs[0])  # a single table: what its model says it is
    return ""


def model_fields(model: type[BaseModel]) -> list[ModelField]:
    """The fields of ``model`` in declaration order, each with its description ("" if none)."""
    return [
        ModelField(name, _owner(model, name), info, _describe(model, name, info))
        for name, info in model.model_fields.items()
    ]


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _union_members(annotation: Any) -> list[Any]:
    annotation = _unwrap(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [_unwrap(a) for a in typing.get_args(annotation)]
    return [annotation]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The settings models a field holds (a table, a list of tables, a tagged union)."""
    out: list[type[BaseModel]] = []
    for member in _union_members(annotation):
        if typing.get_origin(member) is list:
            out.extend(_models_in(typing.get_args(member)[0]))
        elif isinstance(member, type) and issubclass(member, BaseModel):
            out.append(member)
    return out


def _is_list(annotation: Any) -> bool:
    return any(typing.get_origin(m) is list for m in _union_members(annotation))


def _type_text(annotation: Any) -> str:
    members = _union_members(annotation)
    optional = type(None) in members
    parts = [_one_type(m) for m in members if m is not type(None)]
    text = " or ".join(dict.fromkeys(parts))
    return f"{text} (optional)" if optional else text


def _one_type(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(f"`{json.dumps(a)}`" for a in typing.get_args(tp))
    if origin is list:
        inner = _type_text(typing.get_args(tp)[0])
        return "list of " + inner.replace("table (below)", "tables (below)")
    if origin is dict:
        key, value = typing.get_args(tp)
        return f"table of {_type_text(key)} → {_type_text(value)}"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " | ".join(f'`"{m.value}"`' for m in tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "table (below)"
    names: dict[Any, str] = {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        Path: "path",
        time: '`"HH:MM"`',
        ipaddress.IPv4Network: "network (CIDR)",
        ipaddress.IPv6Network: "network (CIDR)",
    }
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _constraints(info: FieldInfo) -> str:
    out: list[str] = []
    unit = "items" if typing.get_origin(_unwrap(info.annotation)) is list else "characters"
    words = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    for meta in info.metadata:
        for attr, sign in words.items():
            value = getattr(meta, attr, None)
            if value is not None:
                out.append(f"{sign} {value:g}" if isinstance(value, float) else f"{sign} {value}")
        for attr, text in (("min_length", "at least"), ("max_length", "at most")):
            value = getattr(meta, attr, None)
            if value is not None:
                out.append(f"{text} {value} {unit}")
        pattern = getattr(meta, "pattern", None)
        if pattern:
            out.append(f"pattern `{pattern}`")
    return ", ".join(out)


def _toml_value(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return json.dumps(value.value)
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, time):
        return f'"{value.strftime("%H:%M")}"'
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


def _default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(table)"
    return f"`{_toml_value(value)}`"


def _md(text: str) -> str:
    """Docstring text as Markdown: reST's double backticks become single ones."""
    return text.replace("``", "`")


def _cell(text: str) -> str:
    return " ".join(_md(text).split()).replace("|", "\\|")


def _table(rows: list[ModelField], *, env_prefix: str | None) -> list[str]:
    head = "| key | type | default | meaning |"
    rule = "|---|---|---|---|"
    if env_prefix is not None:
        head = "| key | type | default | environment variable | meaning |"
        rule = "|---|---|---|---|---|"
    out = [head, rule]
    for f in rows:
        limits = _constraints(f.info)
        meaning = f.description + (f" ({limits})" if limits else "")
        cells = [f"`{f.name}`", _type_text(f.info.annotation), _default_text(f.info)]
        if env_prefix is not None:
            cells.append(f"`{env_prefix}{f.name.upper()}`")
        cells.append(meaning)
        out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return out


def _source_layers() -> list[type[BaseModel]]:
    """The source models from the shared base down to each kind, each listed once."""
    kinds = _models_in(Settings.model_fields["sources"].annotation)
    layers: list[type[BaseModel]] = []
    for kind in kinds:
        for cls in reversed(kind.__mro__):
            if (
                isinstance(cls, type)
                and issubclass(cls, SourceConfigBase)
                and cls not in layers
                and (cls in kinds or any(cls in k.__mro__ for k in kinds if k is not cls))
            ):
                layers.append(cls)
    return layers


def _layer_rows(layer: type[BaseModel], parents: list[type[BaseModel]]) -> list[ModelField]:
    """The fields ``layer`` adds or changes (type or default) against its nearest listed base."""
    base = next((p for p in layer.__mro__[1:] if p in parents), None)
    rows = []
    for f in model_fields(layer):
        if base is not None and f.name in base.model_fields:
            old = base.model_fields[f.name]
            same_type = old.annotation == f.info.annotation
            same_default = _default_text(old) == _default_text(f.info)
            if same_type and same_default and f.owner is not layer:
                continue
        rows.append(f)
    return rows


def _kind_of(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("kind")
    if field is None:
        return None
    args = typing.get_args(_unwrap(field.annotation))
    return str(args[0]) if typing.get_origin(_unwrap(field.annotation)) is Literal else None


def _model_doc(model: type[BaseModel]) -> str:
    doc = inspect.getdoc(model) or ""
    if doc == inspect.getdoc(BaseModel) or not model.__doc__:
        return ""
    return _md(" ".join(doc.split("\n\n")[0].split()))


def _section(
    title: str, model: type[BaseModel], env_prefix: str | None, path: str
) -> Iterator[str]:
    yield f"## `{title}`"
    yield ""
    doc = _model_doc(model)
    if doc:
        yield doc
        yield ""
    yield from _table(model_fields(model), env_prefix=env_prefix)
    yield ""
    for f in model_fields(model):
        listed = _is_list(f.info.annotation)
        for sub in _models_in(f.info.annotation):
            yield f"### `[[{path}.{f.name}]]`" if listed else f"### `[{path}.{f.name}]`"
            yield ""
            sub_doc = _model_doc(sub)
            if sub_doc:
                yield sub_doc
                yield ""
            env = f"{env_prefix}{f.name.upper()}" if env_prefix else ""
            if listed:
                yield (
                    "A list of tables; as an environment variable the whole list as JSON "
                    f"(`{env}`)."
                )
                yield ""
            yield from _table(model_fields(sub), env_prefix=None if listed else f"{env}__")
            yield ""


_INTRO = """\
# Configuration reference

<!-- Generated by `python -m app.docs_gen` from the settings models (app/settings.py,
app/alert_settings.py, connectors/config.py); do not edit by hand. -->

ticketflow reads **one TOML file** plus **environment variables**:

- the file: `ticketflow --config PATH`, else `$TICKETFLOW_CONFIG`, else `./ticketflow.toml` when
  it exists, else none (defaults and environment only);
- precedence, highest first: environment variables, the file, the defaults below. An
  environment variable overrides one key and leaves the rest of the file's section alone; a
  list (`sources`, `api.keys`, ...) given in the environment replaces the file's list;
- names: `TICKETFLOW_<SECTION>__<KEY>` (two underscores), e.g. `TICKETFLOW_API__PORT=9000`,
  `TICKETFLOW_LOGGING__LEVEL=DEBUG`; lists and tables as JSON;
- **secrets are never written in the file**: a key ending in `_env` names the environment
  variable that holds the secret, one ending in `_file` a file (a Docker or Kubernetes secret);
  `password = ...`, `key = ...`, `secret = ...` in the file are refused. Those variables' names
  are yours to choose;
- an invalid file or value stops every command with exit code 2 and one line that names each
  bad key and the reason, e.g. `sources[0].base_url: String should match pattern
  '^https?://[^\\s/]+'`; an unknown key is an error too (typos do not pass silently).

To check a file, run `ticketflow --config ticketflow.toml sources`: it validates the file, then
opens the warehouse and lists the sources.
"""


def configuration_markdown() -> str:
    """The whole of docs/configuration.md."""
    lines: list[str] = [_INTRO]
    lines += ["## Environment variables", ""]
    lines += ["| variable | what | default |", "|---|---|---|"]
    for name, what, default in ENVIRONMENT:
        lines.append(f"| `{name}` | {_cell(what)} | {_cell(default)} |")
    lines += [
        "",
        "Secret variables named by `*_env` keys (`password_env`, `client_secret_env`, "
        "`key_env`, `embed_key_env`, `secret_env`, `url_env`) are read when the value is "
        "needed: a missing one stops that command with a message naming the variable, never "
        "the value.",
        "",
    ]
    for section, info in Settings.model_fields.items():
        if section == "sources":
            lines += list(_sources_section())
            continue
        model = _models_in(info.annotation)[0]
        lines += list(_section(f"[{section}]", model, f"TICKETFLOW_{section.upper()}__", section))
    lines += [
        "## A complete example",
        "",
        "Every section once (tests/test_docs_config.py checks that it is valid):",
        "",
        "```toml",
        EXAMPLE_CONFIG.rstrip("\n"),
        "```",
        "",
    ]
    return "\n".join(lines)


def _sources_section() -> Iterator[str]:
    yield "## `[[sources]]`"
    yield ""
    yield (
        "One table per helpdesk or event log; `kind` picks which keys apply. As an environment "
        "variable the whole list as JSON (`TICKETFLOW_SOURCES`). Setup per tool: "
        "[TOPdesk](connectors/topdesk.md), [ServiceNow](connectors/servicenow.md), "
        "[event logs](eventlog.md)."
    )
    yield ""
    layers = _source_layers()
    for i, layer in enumerate(layers):
        kind = _kind_of(layer)
        users = [
            _kind_of(k)
            for k in _models_in(Settings.model_fields["sources"].annotation)
            if layer in k.__mro__
        ]
        if kind is not None:
            title = f'### `kind = "{kind}"`'
        elif len(users) > 1 and i == 0:
            title = "### Keys of every source"
        else:
            title = "### Keys of " + ", ".join(f"`{u}`" for u in users) + " sources"
        yield title
        yield ""
        doc = _model_doc(layer)
        if doc:
            yield doc
            yield ""
        rows = _layer_rows(layer, layers[:i])
        if kind is not None and i > 0:
            yield "Besides the keys above:"
            yield ""
        yield from _table(rows, env_prefix=None)
        yield ""


def setting_paths() -> list[str]:
    """Every key as a dotted path (``api.keys.key_env``, ``sources.topdesk.actions``)."""
    out: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for f in model_fields(model):
            path = f"{prefix}.{f.name}" if prefix else f.name
            subs = _models_in(f.info.annotation)
            if not subs:
                out.append(path)
            for sub in subs:
                kind = _kind_of(sub)
                walk(sub, f"{path}.{kind}" if kind else path)

    walk(Settings, "")
    return out


def openapi_json() -> str:
    """The HTTP API's OpenAPI description (no database is opened)."""
    from sqlalchemy import create_engine

    from app.main import create_app

    engine = create_engine("sqlite://")
    try:
        app = create_app(Settings.model_construct(), engine=engine)
        schema = app.openapi()
    finally:
        engine.dispose()
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def _outputs() -> dict[Path, str]:
    return {CONFIG_DOC: configuration_markdown(), OPENAPI_DOC: openapi_json()}


def main(argv: list[str] | None = None) -> int:
    """Write the generated docs, or with ``--check`` report which are out of date (exit 1)."""
    parser = argparse.ArgumentParser(prog="python -m app.docs_gen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    parser.add_argument("--root", type=Path, default=REPO, help="the repository (default: here)")
    args = parser.parse_args(argv)
    stale = []
    for rel, text in _outputs().items():
        path = args.root / rel
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(str(rel))
        else:
            path.write_text(text)
            print(f"wrote {rel}")  # noqa: T201
    if stale:
        print(f"out of date: {', '.join(stale)}; run python -m app.docs_gen", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
