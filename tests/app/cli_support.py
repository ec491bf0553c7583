"""Running the ``ticketflow`` command as a user does: a real process, with no TICKETFLOW_*
variables inherited from the test run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_cli(
    args: list[str],
    cwd: Path,
    *,
    timeout: float = 180,
    repo_on_path: bool = True,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """``python -m app.cli ARGS`` in ``cwd`` with ``env`` added; ``repo_on_path`` puts this
    checkout on PYTHONPATH (for the ``tests.fakes`` a config may point at)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETFLOW_")}
    full_env.update(env)
    if repo_on_path:
        full_env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
