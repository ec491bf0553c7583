"""``ticketflow sync`` and ``ticketflow sources`` with a ServiceNow source, as a user runs them: a
real process against the fake instance served over loopback HTTP, its sys_audit unreadable."""

from __future__ import annotations

from pathlib import Path

from tests.app.cli_support import run_cli
from tests.fakes import ServedFake
from tests.fakes.servicenow import FakeServiceNow


def test_sync_then_sources_shows_the_audit_warning(tmp_path: Path) -> None:
    fake = FakeServiceNow(password="sn-Secret-4417", audit_readable=False)
    group = fake.add_group("Network")
    for _ in range(12):
        fake.add_record(assignment_group=group)
    with ServedFake(fake) as served:
        config = tmp_path / "ticketflow.toml"
        config.write_text(
            f'[warehouse]\nurl = "sqlite:///{tmp_path}/w.db"\n\n'
            f'[[sources]]\nname = "now"\nkind = "servicenow"\nbase_url = "{served.url}"\n'
            'username = "integration.user"\npassword_env = "SN_CLI_PASSWORD"\npage_size = 5\n'
        )
        env = {"SN_CLI_PASSWORD": "sn-Secret-4417"}
        done = run_cli(["-c", str(config), "sync"], tmp_path, **env)
        assert done.returncode == 0, done.stderr
        assert "now" in done.stdout and "ok" in done.stdout
        sources = run_cli(["-c", str(config), "sources"], tmp_path, **env)
    assert sources.returncode == 0, sources.stderr
    flat = " ".join(sources.stdout.split())
    assert "servicenow" in flat and "ok" in flat
    assert "warning: now: sys_audit is not readable (HTTP 403)" in flat
    for output in (done.stdout, done.stderr, sources.stdout, sources.stderr):
        assert "sn-Secret-4417" not in output
