"""The ticketflow command as a user runs it: a real process, its output and exit code."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from app.warehouse import head_revision
from tests.app.cli_support import run_cli


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(args, cwd, timeout=120, repo_on_path=False, **env)


def test_db_upgrade_and_current(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    done = _run(["db", "upgrade"], tmp_path, TICKETFLOW_WAREHOUSE_URL=url)
    assert done.returncode == 0, done.stderr
    head = head_revision()
    assert f"revision {head}" in done.stdout
    current = _run(["db", "current"], tmp_path, TICKETFLOW_WAREHOUSE_URL=url)
    assert f"database: {head}; code: {head}" in current.stdout


def test_invalid_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "ticketflow.toml").write_text('[warehouse]\nurl = "oracle://x"\n')
    done = _run(["sources"], tmp_path)
    assert done.returncode == 2
    assert "warehouse.url" in done.stderr


@pytest.mark.realdata
def test_import_bpic2013_summary_and_idempotence(tmp_path: Path, shared_data: Path) -> None:
    log = shared_data / "bpic2013_incidents.csv.gz"
    args = ["import-log", str(log), "--format", "bpic2013", "--source", "volvo"]
    first = _run(args, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "7,554 new, 0 changed, 0 unchanged" in first.stdout
    assert "160,170 new, 0 already stored" in first.stdout
    second = _run(args, tmp_path)
    assert second.returncode == 0, second.stderr
    assert "0 new, 0 changed, 7,554 unchanged" in second.stdout
    assert "0 new," in second.stdout.split("events")[1]
    sources = _run(["sources"], tmp_path)
    assert "volvo" in sources.stdout and "eventlog" in sources.stdout
    # the last run stored nothing new, but the stored totals are still shown
    row = next(line for line in sources.stdout.splitlines() if "volvo" in line)
    cells = [c.strip() for c in row.split("│")]
    assert cells[6:11] == ["7554", "0", "0", "7554", "160170"], cells


def test_unknown_statuses_are_reported(tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_text(
        "id,at,st\n1,2024-01-01T10:00:00Z,Open\n1,2024-01-01T11:00:00Z,Parked\n"
    )
    (tmp_path / "ticketflow.toml").write_text(
        '[[sources]]\nname = "d"\nkind = "eventlog"\nformat = "csv"\n'
        'columns = { ticket = "id", time = "at", status = "st" }\n'
    )
    done = _run(["import-log", "log.csv", "--source", "d"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "'Parked' x1 -> mapped to in_progress" in done.stdout
    sources = _run(["sources"], tmp_path)
    assert "d: 'Parked' -> in_progress (1 rows in the last run)" in sources.stdout


def test_truncated_gzip_fails_with_a_clear_message(tmp_path: Path) -> None:
    import gzip

    data = gzip.compress(
        b"SR Number,Change Date+Time\n" + b"1-1,2012-01-01T00:00:00+01:00\n" * 5000
    )
    (tmp_path / "cut.csv.gz").write_bytes(data[:200])
    done = _run(["import-log", "cut.csv.gz", "--format", "bpic2013"], tmp_path)
    assert done.returncode == 1
    assert "cut.csv.gz" in done.stderr and "nothing was imported" in done.stderr
