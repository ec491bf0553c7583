"""Every command's help is complete, and every error is one line that says what to do.

Runs ``app.cli.main`` in-process (as the ``ticketflow`` script does) for speed; test_cli.py runs
real processes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import typer
from typer._click.core import Command
from typer.core import TyperGroup as Group

from app import cli

ROOT = typer.main.get_command(cli.app)


def _commands(group: Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Command]]:
    out = [(path, group)]
    if isinstance(group, Group):
        for name, sub in sorted(group.commands.items()):
            out += _commands(sub, (*path, name))
    return out


COMMANDS = _commands(ROOT)
LEAVES = [path for path, command in COMMANDS if not isinstance(command, Group)]


def _run(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["ticketflow", *args])
    code = 0
    try:
        cli.main()
    except SystemExit as e:
        code = int(e.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(autouse=True)
def _clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in __import__("os").environ if k.startswith("TICKETFLOW_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli._State, "config", None)


def test_every_command_and_option_is_described() -> None:
    names = {" ".join(p) for p, _c in COMMANDS}
    for expected in ("demo", "sync", "serve", "worker", "sources", "import-log", "db upgrade"):
        assert expected in names
    for path, command in COMMANDS:
        where = " ".join(["ticketflow", *path])
        assert (command.help or "").strip(), f"{where} has no help text"
        for param in command.params:
            if param.name == "help":
                continue
            text = getattr(param, "help", None)
            assert text and text.strip(), f"{where}: {param.name} has no help"


@pytest.mark.parametrize("path", [p for p, _c in COMMANDS], ids=lambda p: " ".join(p) or "root")
def test_help_exits_0_and_shows_usage(
    path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _err = _run([*path, "--help"], monkeypatch, capsys)
    assert code == 0
    assert "Usage: ticketflow" in out


def test_commands_with_examples_show_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("demo", "sync", "serve", "import-log", "worker"):
        code, out, _err = _run([name, "--help"], monkeypatch, capsys)
        assert code == 0 and "Examples" in out and f"ticketflow {name}" in out


def _one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("path", LEAVES, ids=lambda p: " ".join(p))
def test_a_wrong_option_is_one_line_exit_2_pointing_at_help(
    path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = _run([*path, "--no-such-option"], monkeypatch, capsys)
    assert code == 2
    line = _one_line_error(err)
    assert "--no-such-option" in line
    assert f"ticketflow {' '.join(path)} --help" in line


def test_an_unknown_command_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = _run(["frobnicate"], monkeypatch, capsys)
    assert code == 2
    assert "ticketflow --help" in _one_line_error(err)


def test_a_bad_option_value_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = _run(["demo", "--speed", "0"], monkeypatch, capsys)
    assert code == 2
    assert "--speed" in _one_line_error(err)


# the commands that read the configuration, with the arguments they need
CONFIG_READERS = [
    ["sync"],
    ["sources"],
    ["worker", "--once"],
    ["serve"],
    ["import-log", "x.csv", "--format", "csv"],
    ["db", "upgrade"],
    ["db", "current"],
]


@pytest.mark.parametrize("args", CONFIG_READERS, ids=lambda a: " ".join(a[:2]))
def test_a_missing_config_file_is_one_line_exit_2(
    args: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = tmp_path / "nope.toml"
    code, _out, err = _run(["--config", str(missing), *args], monkeypatch, capsys)
    assert code == 2
    line = _one_line_error(err)
    assert str(missing) in line and "--config" in line


@pytest.mark.parametrize("args", CONFIG_READERS, ids=lambda a: " ".join(a[:2]))
def test_an_invalid_config_file_is_one_line_exit_2_naming_the_keys(
    args: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[warehouse]\nurl = "oracle://x"\n[logging]\nlevel = "LOUD"\n')
    code, _out, err = _run(["--config", str(bad), *args], monkeypatch, capsys)
    assert code == 2
    line = _one_line_error(err)
    assert "warehouse.url" in line and "logging.level" in line and "fix these keys" in line


@pytest.mark.parametrize(
    "args", [["sources"], ["db", "current"], ["serve"]], ids=lambda a: " ".join(a)
)
def test_an_unreachable_database_is_one_line_exit_1_with_what_to_check(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TICKETFLOW_WAREHOUSE_URL", "postgresql://nobody@127.0.0.1:1/none")
    code, _out, err = _run(args, monkeypatch, capsys)
    assert code == 1
    line = _one_line_error(err)
    assert "TICKETFLOW_WAREHOUSE_URL" in line and "running" in line


def test_sync_without_any_source_says_how_to_add_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = _run(["sync"], monkeypatch, capsys)
    assert code == 2
    line = _one_line_error(err)
    assert "[[sources]]" in line and "ticketflow demo" in line
