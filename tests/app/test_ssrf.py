"""SSRF: forbidden destinations are refused when configured and when connecting; an
allow-listed intranet receiver works; redirects never lead into forbidden ranges."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import Engine, select

from app.alert_settings import AlertRuleSettings, AlertSettings, WebhookSettings
from app.delivery import deliver_due, make_client
from app.outbox import evaluate_alerts
from app.ssrf import EgressPolicy, ForbiddenDestinationError, make_guarded_client
from app.warehouse.alerts_schema import AlertAttempt
from tests.app.test_delivery import _conditions
from tests.fakes.receiver import Receiver

SECRET = "whsec_" + base64.b64encode(b"i" * 32).decode()
NOW = datetime.now(UTC)

# (label, URL template); {port} is a live receiver's port on 127.0.0.1
FORBIDDEN = [
    ("loopback", "http://127.0.0.1:{port}/hook"),
    ("loopback-v6", "http://[::1]:{port}/hook"),
    ("metadata", "http://169.254.169.254/latest/meta-data/"),
    ("unspecified", "http://0.0.0.0:{port}/hook"),
    ("localhost-name", "http://localhost:{port}/hook"),
    ("decimal", "http://2130706433:{port}/hook"),
    ("hex", "http://0x7f000001:{port}/hook"),
    ("short", "http://127.1:{port}/hook"),
    ("mapped-v6", "http://[::ffff:127.0.0.1]:{port}/hook"),
    ("private-10", "https://10.1.2.3/hook"),
    ("private-192", "https://192.168.1.10/hook"),
    ("private-172", "https://172.16.5.4/hook"),
    ("cgnat", "https://100.64.0.1/hook"),
    ("link-local-v6", "https://[fe80::1]/hook"),
    ("ula-v6", "https://[fd12::1]/hook"),
]


@pytest.fixture
def loopback() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.mark.parametrize(("label", "url"), FORBIDDEN, ids=[f[0] for f in FORBIDDEN])
def test_forbidden_destinations_are_refused_when_connecting(
    label: str, url: str, loopback: Receiver
) -> None:
    with make_guarded_client(EgressPolicy()) as client, pytest.raises(ForbiddenDestinationError):
        client.post(url.format(port=loopback.port), content=b"{}")
    assert loopback.requests == []


@pytest.mark.parametrize(
    "url",
    [
        *(u.format(port=8443) for _, u in FORBIDDEN if "localhost" not in u),
        "http://0177.0.0.1/",
        "https://localhost/",
        "https://metadata.google.internal/computeMetadata/v1/",
        "ftp://files.example.com/",
        "https://user:pw@hooks.example.com/",
        "https://8.8.8.8:22/",
        "http://8.8.8.8/",
    ],
)
def test_forbidden_urls_are_refused_when_configured(url: str) -> None:
    assert EgressPolicy().url_problem(url) is not None


def test_public_https_urls_pass_the_configuration_check() -> None:
    policy = EgressPolicy()
    assert policy.url_problem("https://hooks.slack.com/services/T/B/x") is None
    assert policy.url_problem("https://93.184.216.34/hook") is None


def test_allow_list_opens_private_networks_but_never_metadata() -> None:
    policy = EgressPolicy(
        allow_networks=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("169.254.0.0/16"))
    )
    assert policy.connection_problem("10.1.2.3", port=8081, scheme="http") is None
    assert policy.connection_problem("192.168.1.1", port=443, scheme="https") is not None
    assert "metadata" in (policy.address_problem("169.254.169.254") or "")
    assert policy.address_problem("169.254.1.1") is None
    assert "metadata" in (policy.address_problem("::ffff:169.254.169.254") or "")


def test_a_name_resolving_to_loopback_and_dns_rebinding_are_refused(loopback: Receiver) -> None:
    answers = {"evil.example": ["127.0.0.1"], "rebind.example": ["93.184.216.34"]}

    def resolver(host: str, port: int) -> list[str]:
        found = answers[host]
        if host == "rebind.example":
            answers[host] = ["127.0.0.1"]  # the next lookup answers differently
        return found

    policy = EgressPolicy(require_https=False, allowed_ports=frozenset({loopback.port}))
    with make_guarded_client(policy, resolver=resolver) as client:
        with pytest.raises(ForbiddenDestinationError, match="loopback"):
            client.post(f"http://evil.example:{loopback.port}/hook")
        # configuration time: public; connect time: loopback
        assert resolver("rebind.example", 80) == ["93.184.216.34"]
        with pytest.raises(ForbiddenDestinationError, match="loopback"):
            client.post(f"http://rebind.example:{loopback.port}/hook")
    assert loopback.requests == []


def test_redirects_into_forbidden_ranges_are_refused() -> None:
    inner = Receiver(host="127.0.0.1").start()
    intranet = Receiver(host="127.0.0.2", mode=f"redirect:{inner.url}").start()
    policy = EgressPolicy(allow_networks=(ipaddress.ip_network("127.0.0.2/32"),))
    try:
        with (
            make_guarded_client(policy, follow_redirects=True) as client,
            pytest.raises(ForbiddenDestinationError, match=r"127\.0\.0\.1"),
        ):
            client.post(intranet.url, content=b"{}")
        with make_guarded_client(policy) as client:  # the delivery client: never follows
            assert client.post(intranet.url, content=b"{}").status_code == 302
    finally:
        inner.stop()
        intranet.stop()
    assert len(intranet.requests) == 2 and inner.requests == []


def test_an_allow_listed_intranet_receiver_gets_signed_alerts(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = Receiver(host="127.0.0.2", secret=SECRET).start()
    monkeypatch.setenv("TF_TEST_INTRANET_SECRET", SECRET)
    settings = AlertSettings(
        webhooks=[
            WebhookSettings(
                name="itsm",
                url=f"http://alerts.intranet.test:{receiver.port}/hook",
                secret_env="TF_TEST_INTRANET_SECRET",
            ),
            WebhookSettings(
                name="outside",
                url=f"http://127.0.0.1:{receiver.port}/hook",
                secret_env="TF_TEST_INTRANET_SECRET",
            ),
        ],
        rules=[AlertRuleSettings(name="r", conditions=["stale"], webhooks=["itsm", "outside"])],
        allow_networks=[ipaddress.ip_network("127.0.0.2/32")],
    )
    intranet_dns = {"alerts.intranet.test": ["127.0.0.2"], "127.0.0.1": ["127.0.0.1"]}
    evaluate_alerts(engine, settings, now=NOW, conditions=_conditions(range(3)))
    with make_client(settings, resolver=lambda host, port: intranet_dns[host]) as client:
        stats = deliver_due(engine, settings, client=client, now=NOW)
    receiver.stop()
    assert stats.delivered == 3 and len(receiver.requests) == 3
    assert all(r.verified for r in receiver.requests)
    with engine.connect() as conn:
        refused = conn.execute(select(AlertAttempt).where(AlertAttempt.webhook == "outside")).all()
    assert [a.outcome for a in refused] == ["refused"] * 3
    assert all("loopback" in a.error for a in refused)


def test_environment_proxies_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with make_guarded_client(EgressPolicy()) as client:
        assert client.trust_env is False
        assert isinstance(client._transport, httpx.HTTPTransport)
