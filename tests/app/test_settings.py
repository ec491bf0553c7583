from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import ConfigError
from app.settings import load_settings
from connectors.base import LifecycleState
from connectors.config import EventLogSourceConfig, TopdeskSourceConfig

ISSUE_EXAMPLE = """
[warehouse]
url = "sqlite:///ticketflow.db"

[[sources]]
name = "servicedesk"
kind = "topdesk"                 # servicenow, eventlog, ...
base_url = "https://example.topdesk.net"
username = "api-operator"
password_env = "TOPDESK_APP_PASSWORD"   # secrets only from env or a file, never inline
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("TICKETFLOW_CONFIG", "TICKETFLOW_WAREHOUSE_URL", "TICKETFLOW_WAREHOUSE__URL"):
        monkeypatch.delenv(var, raising=False)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ticketflow.toml"
    path.write_text(text)
    return path


def _problems(tmp_path: Path, text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_settings(_write(tmp_path, text))
    return dict(info.value.problems)


def test_issue_example_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(_write(tmp_path, ISSUE_EXAMPLE))
    assert settings.warehouse.url == "sqlite:///ticketflow.db"
    (source,) = settings.sources
    assert isinstance(source, TopdeskSourceConfig)
    assert source.username == "api-operator"
    monkeypatch.setenv("TOPDESK_APP_PASSWORD", "s3cret-app-pw")
    secret = source.password()
    assert secret is not None and secret.get_secret_value() == "s3cret-app-pw"
    assert "s3cret" not in repr(source) and "s3cret" not in str(secret)


def test_unset_password_env_names_the_variable(tmp_path: Path) -> None:
    settings = load_settings(_write(tmp_path, ISSUE_EXAMPLE))
    with pytest.raises(ValueError, match="TOPDESK_APP_PASSWORD"):
        settings.sources[0].password()


def test_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-a-file\n")
    text = ISSUE_EXAMPLE.replace(
        'password_env = "TOPDESK_APP_PASSWORD"', f'password_file = "{secret}"'
    )
    pw = load_settings(_write(tmp_path, text)).sources[0].password()
    assert pw is not None and pw.get_secret_value() == "from-a-file"


def test_environment_wins_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETFLOW_WAREHOUSE_URL", "postgresql://u@db:5432/tf")
    assert load_settings(_write(tmp_path, ISSUE_EXAMPLE)).warehouse.url == (
        "postgresql://u@db:5432/tf"
    )


def test_config_file_from_env_and_default_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, ISSUE_EXAMPLE)
    monkeypatch.setenv("TICKETFLOW_CONFIG", str(path))
    assert [s.name for s in load_settings().sources] == ["servicedesk"]
    monkeypatch.delenv("TICKETFLOW_CONFIG")
    monkeypatch.chdir(tmp_path)
    assert [s.name for s in load_settings().sources] == ["servicedesk"]
    monkeypatch.chdir(tmp_path.parent)
    assert load_settings().sources == []


def test_eventlog_source_with_status_map(tmp_path: Path) -> None:
    text = """
[[sources]]
name = "volvo"
kind = "eventlog"
format = "bpic2013"
unknown_status = "waiting_other"
[sources.status_map]
"Unmatched/Unmatched" = "cancelled"
"""
    (source,) = load_settings(_write(tmp_path, text)).sources
    assert isinstance(source, EventLogSourceConfig)
    assert source.status_map == {"Unmatched/Unmatched": LifecycleState.CANCELLED}
    assert source.unknown_status is LifecycleState.WAITING_OTHER


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ('[warehouse]\nurl = "mysql://x"\n', "warehouse.url", "sqlite:/// or postgresql://"),
        ('[warehouse]\nurls = "x"\n', "warehouse.urls", "unknown key"),
        ('[[sources]]\nname = "a"\nkind = "zendeskx"\n', "sources[0]", "known kinds: eventlog"),
        (
            '[[sources]]\nname = "a"\nkind = "topdesk"\nbase_url = "https://x"\npassword = "pw"\n',
            "sources[0]",
            "must not be written in the config file",
        ),
        (
            '[[sources]]\nname = "a"\nkind = "topdesk"\nbase_url = "ftp:/x"\n',
            "sources[0].base_url",
            "should match pattern",
        ),
        (
            '[[sources]]\nname = "a"\nkind = "eventlog"\n[sources.status_map]\nX = "blocked"\n',
            "sources[0].status_map.X",
            "Input should be",
        ),
        (
            '[[sources]]\nname = "a"\nkind = "eventlog"\n'
            '[[sources]]\nname = "a"\nkind = "eventlog"\n',
            "sources",
            "repeated: a",
        ),
        ('[[sources]]\nkind = "eventlog"\n', "sources[0].name", "Field required"),
    ],
    ids=[
        "bad-url",
        "unknown-key",
        "unknown-kind",
        "inline-secret",
        "bad-base-url",
        "bad-state",
        "duplicate-names",
        "missing-name",
    ],
)
def test_invalid_config_names_key_and_reason(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    problems = _problems(tmp_path, text)
    assert key in problems, problems
    assert reason in problems[key]


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(_write(tmp_path, "[warehouse\nurl="))
