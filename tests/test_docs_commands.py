"""The README and the docs pages this project's docs engineer keeps: every command they show
exists with that spelling, every link lands, and every TOML snippet is a valid config."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer.main

from app.cli import app as cli_app
from tests.test_docs_config import load_snippet

REPO = Path(__file__).resolve().parents[1]
PAGES = [
    REPO / "README.md",
    REPO / "docs" / "configuration.md",
    REPO / "docs" / "embedding.md",
    REPO / "docs" / "webhooks.md",
    REPO / "docs" / "api.md",
    REPO / "docs" / "metrics.md",
    REPO / "docs" / "connectors" / "topdesk.md",
    REPO / "docs" / "alerts.md",
]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def _blocks(page: Path, *languages: str) -> list[str]:
    return [body for lang, body in FENCE.findall(page.read_text()) if lang in languages]


def _command_lines(page: Path) -> list[str]:
    """Shell lines of the page's sh blocks (continuations joined, comments dropped)."""
    out = []
    for block in _blocks(page, "sh", ""):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s#.*$", "", line).strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def _cli() -> Any:
    return typer.main.get_command(cli_app)


def _check_ticketflow(words: list[str]) -> str | None:
    """None when `ticketflow <words>` names real commands and options, else the problem."""
    command = _cli()
    root_options = {o for p in command.params for o in getattr(p, "opts", [])}
    for word in words:
        if word.startswith("-"):
            name = word.split("=")[0]
            known = {o for p in command.params for o in getattr(p, "opts", [])}
            if name not in known | root_options | {"--help"}:
                return f"unknown option {name} of `{command.name}`"
        elif hasattr(command, "commands"):
            if word not in command.commands:
                return f"unknown command `{word}` (known: {', '.join(sorted(command.commands))})"
            command = command.commands[word]
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_command_exists(page: Path) -> None:
    problems = []
    for line in _command_lines(page):
        try:
            words = shlex.split(line)
        except ValueError:
            continue  # not a shell line (e.g. an HTTP request shown as text)
        if not words:
            continue
        head = words[0]
        if head == "ticketflow" or head.endswith("/ticketflow"):
            problem = _check_ticketflow(words[1:])
            if problem:
                problems.append(f"{line}: {problem}")
        elif head.startswith(("scripts/", ".ci/")):
            script = REPO / head
            if not (script.is_file() and os.access(script, os.X_OK)):
                problems.append(f"{line}: {head} is not an executable script")
        elif head.endswith("python") and "-m" in words:
            module = words[words.index("-m") + 1]
            if module != "pip" and importlib.util.find_spec(module) is None:
                problems.append(f"{line}: no module {module}")
    assert not problems, "\n".join(problems)


def test_readme_lists_every_command() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Commands")[1].split("```")[1]
    cli = _cli()
    listed = set()
    for line in block.splitlines():
        words = line.split("#")[0].split()
        if words:
            group = words[1] in cli.commands and hasattr(cli.commands[words[1]], "commands")
            listed.add(" ".join(words[1:3]) if group else words[1])
    real = set()
    for name, command in cli.commands.items():
        if hasattr(command, "commands"):
            real |= {f"{name} {sub}" for sub in command.commands}
        else:
            real.add(name)
    assert listed == real, f"README Commands: missing {real - listed}, unknown {listed - real}"


def _anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_lands(page: Path) -> None:
    text = re.sub(FENCE, "", page.read_text())
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # an external address
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(target)
            continue
        if anchor and dest.suffix == ".md":
            headings = [
                _anchor(line.lstrip("#").replace("`", ""))
                for line in dest.read_text().splitlines()
                if line.startswith("#")
            ]
            if anchor not in headings:
                broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_toml_snippet_is_a_valid_config(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for block in _blocks(page, "toml"):
        tomllib.loads(block)  # the syntax first, for a clear failure
        load_snippet(block, tmp_path, monkeypatch)
