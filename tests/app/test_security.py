"""Security: every route's access rule, embed tokens, headers, CORS, and no secret anywhere."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.errors import ConfigError
from app.main import create_app
from app.security import EmbedSigner, InvalidTokenError, KeyRing
from tests.app.test_api_support import (
    ADMIN,
    ADMIN_KEY,
    BOTH,
    EMBED_KEY,
    READ,
    READ_KEY,
    SECRETS,
    client_for,
    key_env,
    settings_for,
    warehouse,
)

PUBLIC = {"/healthz", "/static/{name}"}
ADMIN_ROUTES = {"/metrics", "/api/v1/embed-tokens"}
ALERT_ADMIN = ("", "/{name}/deliveries", "/{name}/redeliver", "/{name}/enable")
ADMIN_ROUTES |= {f"/api/v1/alerts/webhooks{p}" for p in ALERT_ADMIN}
PATH_VALUES = {"source": "desk", "external_id": "T1", "name": "aging"}


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Engine]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('sec') / 'w.db'}"
    engine = warehouse(url)
    yield url, engine
    engine.dispose()


@pytest.fixture
def client(filled: tuple[str, Engine], monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    key_env(monkeypatch)
    url, engine = filled
    with client_for(
        settings_for(url, frame_ancestors=["'self'", "https://intranet.example.org"]), engine
    ) as c:
        yield c


def _routes(client: TestClient) -> list[tuple[str, str, str]]:
    """(method, template, concrete path) of every route the app serves."""
    out = []
    for route in iter_route_contexts(client.app.routes):  # type: ignore[attr-defined]
        path = str(route.path_format)
        concrete = path
        for name, value in PATH_VALUES.items():
            concrete = concrete.replace(f"{{{name}}}", value)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            out.append((method, path, concrete))
    return out


def _call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> int:
    if method == "POST":
        return client.post(path, json={"charts": ["*"]}, headers=headers).status_code
    return client.get(path, headers=headers).status_code


def test_route_inventory_is_known(client: TestClient) -> None:
    """A new route must be placed in one of the access classes this file checks."""
    templates = {path for _, path, _ in _routes(client)}
    assert templates >= PUBLIC and templates >= ADMIN_ROUTES
    assert len(templates - PUBLIC - ADMIN_ROUTES) >= 6


def test_every_protected_route_wants_a_key_and_the_right_scope(client: TestClient) -> None:
    checked = 0
    for method, template, path in _routes(client):
        if template in PUBLIC:
            continue
        admin = template in ADMIN_ROUTES
        wrong_scope = READ if admin else ADMIN
        assert _call(client, method, path, {}) == 401, f"{method} {template} without a key"
        assert _call(client, method, path, {"X-API-Key": "not-a-key" * 5}) == 401, template
        assert _call(client, method, path, wrong_scope) == 403, f"{method} {template} wrong scope"
        right = BOTH if admin else READ
        assert _call(client, method, path, right) not in (401, 403), f"{method} {template} ok key"
        checked += 1
    assert checked >= 8


def test_public_routes_answer_without_a_key(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    js = client.get("/static/plotly.min.js")
    assert js.status_code == 200 and b"plotly.js" in js.content[:200]
    assert js.headers["content-type"].startswith("text/javascript")
    assert client.get("/static/embed.js").status_code == 200
    assert client.get("/static/../settings.py").status_code == 404
    assert client.get("/static/nothing.js").status_code == 404


def test_unauthorized_answers_carry_a_challenge(client: TestClient) -> None:
    response = client.get("/api/v1/tickets")
    assert response.headers["www-authenticate"].startswith("ApiKey")


def _token(client: TestClient, **body: object) -> str:
    response = client.post("/api/v1/embed-tokens", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    token = response.json()["token"]
    assert isinstance(token, str)
    return token


def test_minting_tokens(client: TestClient) -> None:
    response = client.post(
        "/api/v1/embed-tokens", json={"charts": ["dashboard"], "team": "Network"}, headers=ADMIN
    )
    body = response.json()
    assert body["pins"] == {"team": "Network"}
    assert body["urls"]["dashboard"].startswith("/?token=")
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(hours=23) < expires - datetime.now(UTC) <= timedelta(hours=24)
    too_long = client.post(
        "/api/v1/embed-tokens", json={"charts": ["*"], "lifetime_hours": 48}, headers=ADMIN
    )
    assert too_long.status_code == 422
    unknown = client.post("/api/v1/embed-tokens", json={"charts": ["nope"]}, headers=ADMIN)
    assert unknown.status_code == 422 and "nope" in unknown.json()["detail"]
    bad_body = client.post("/api/v1/embed-tokens", json={"charts": []}, headers=ADMIN)
    assert bad_body.status_code == 422


def test_a_token_opens_the_dashboard_but_not_the_api(client: TestClient) -> None:
    token = _token(client, charts=["dashboard"])
    assert client.get(f"/?token={token}").status_code == 200
    # the API never takes tokens: iframes are the only reason tokens exist
    assert client.get(f"/api/v1/tickets?token={token}").status_code == 401
    assert client.get("/api/v1/tickets", headers={"X-API-Key": token}).status_code == 401
    assert client.get(f"/metrics?token={token}").status_code == 401


def test_a_chart_token_does_not_open_other_charts(client: TestClient) -> None:
    token = _token(client, charts=["dashboard"])
    # a token that names only the dashboard opens no single chart
    assert client.get(f"/charts/aging.json?token={token}").status_code == 403
    assert client.get(f"/charts/aging?token={token}").status_code == 403


def test_tampered_and_expired_tokens_are_refused(client: TestClient) -> None:
    token = _token(client, charts=["dashboard"])
    payload, signature = token.rsplit(".", 1)
    # a character in the middle: the last one may carry only padding bits, so changing it
    # can leave the decoded signature as it was
    flipped = signature[:5] + ("A" if signature[5] != "A" else "B") + signature[6:]
    assert client.get(f"/?token={payload}.{flipped}").status_code == 401
    # a payload changed to ask for more, with the old signature
    other = _token(client, charts=["*"])
    assert client.get(f"/?token={other.rsplit('.', 1)[0]}.{signature}").status_code == 401
    assert client.get("/?token=garbage").status_code == 401

    signer = EmbedSigner([EMBED_KEY], max_lifetime=timedelta(hours=24))
    old = signer.mint(
        charts=["*"],
        pins={},
        lifetime=timedelta(hours=1),
        now=datetime.now(UTC) - timedelta(hours=2),
    )
    response = client.get(f"/?token={old.token}")
    assert response.status_code == 401 and "expired" in response.json()["detail"]
    foreign = EmbedSigner(["another-key-" + "k" * 40], max_lifetime=timedelta(hours=24))
    forged = foreign.mint(charts=["*"], pins={}, lifetime=timedelta(hours=1), now=datetime.now(UTC))
    assert client.get(f"/?token={forged.token}").status_code == 401


def test_signer_unit_rules() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    signer = EmbedSigner(["old-" + "o" * 40, "new-" + "n" * 40], max_lifetime=timedelta(hours=24))
    grant = signer.mint(charts=["aging"], pins={"team": "A"}, lifetime=timedelta(hours=2), now=now)
    principal = signer.verify(grant.token, now=now + timedelta(hours=1))
    assert principal.may_view("aging") and not principal.may_view("cfd")
    assert principal.pins == {"team": "A"}
    with pytest.raises(InvalidTokenError, match="expired"):
        signer.verify(grant.token, now=now + timedelta(hours=2))
    # rotation: a token signed with the old key (now listed first) still verifies
    old_only = EmbedSigner(["new-" + "n" * 40], max_lifetime=timedelta(hours=24))
    rotated = EmbedSigner(
        ["new-" + "n" * 40, "newer-" + "m" * 40], max_lifetime=timedelta(hours=24)
    )
    token = old_only.mint(charts=["*"], pins={}, lifetime=timedelta(hours=1), now=now).token
    assert rotated.verify(token, now=now).may_view("anything")
    # a shorter maximum is enforced on tokens minted under a longer one
    long = EmbedSigner(["new-" + "n" * 40], max_lifetime=timedelta(hours=48))
    token = long.mint(charts=["*"], pins={}, lifetime=timedelta(hours=40), now=now).token
    with pytest.raises(InvalidTokenError):
        old_only.verify(token, now=now)
    with pytest.raises(ValueError):
        signer.mint(charts=["*"], pins={}, lifetime=timedelta(hours=25), now=now)


def test_keys_are_compared_as_digests() -> None:
    ring = KeyRing([("a", frozenset({"read"}), "k" * 40)])
    assert ring.lookup("k" * 40) is not None
    assert ring.lookup("k" * 39) is None and ring.lookup("") is None
    assert "k" * 40 not in repr(vars(ring))


def test_headers_on_pages_and_api(client: TestClient) -> None:
    token = _token(client, charts=["dashboard"])
    page = client.get(f"/?token={token}")
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'self' https://intranet.example.org" in csp
    assert (
        "script-src 'self'" in csp
        and "unsafe-eval" not in csp
        and "unsafe-inline" not in csp.split("style-src")[0]
    )
    assert "x-frame-options" not in page.headers
    api = client.get("/api/v1/tickets", headers=READ)
    assert api.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert api.headers["x-frame-options"] == "DENY"
    for response in (page, api, client.get("/healthz")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"


def test_cors_is_closed_by_default(client: TestClient) -> None:
    preflight = client.options(
        "/api/v1/tickets",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_allows_only_listed_origins(
    filled: tuple[str, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    key_env(monkeypatch)
    url, engine = filled
    settings = settings_for(url, cors_origins=["https://intranet.example.org"])
    with client_for(settings, engine) as c:
        ok = c.options(
            "/api/v1/tickets",
            headers={
                "Origin": "https://intranet.example.org",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "X-API-Key",
            },
        )
        assert ok.headers["access-control-allow-origin"] == "https://intranet.example.org"
        assert "access-control-allow-credentials" not in ok.headers
        bad = c.options(
            "/api/v1/tickets",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in bad.headers
        simple = c.get("/api/v1/tickets", headers={**READ, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in simple.headers


def test_settings_refuse_wildcards_and_inline_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    with pytest.raises(ConfigError, match="no '\\*'"):
        settings_for(url, cors_origins=["*"])
    with pytest.raises(ConfigError, match="frame-ancestors"):
        settings_for(url, frame_ancestors=["https://a.example; script-src *"])
    with pytest.raises(ConfigError, match="must not be written"):
        settings_for(url, keys=[{"name": "x", "scopes": ["read"], "key": "k" * 40}])


def test_missing_or_short_keys_stop_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    key_env(monkeypatch)
    monkeypatch.delenv("TF_TEST_ADMIN_KEY")
    with pytest.raises(ConfigError, match="TF_TEST_ADMIN_KEY") as info:
        create_app(settings_for(url))
    monkeypatch.setenv("TF_TEST_ADMIN_KEY", "short")
    with pytest.raises(ConfigError, match="at least 32") as info:
        create_app(settings_for(url))
    assert "short" not in str(info.value).replace("too short", "")


def test_no_secret_in_any_response_or_log_line(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Canary test: keys and tokens used in every way never come back, nor reach a log."""
    caplog.set_level(logging.DEBUG)
    token = _token(client, charts=["*"])
    bodies: list[str] = []
    calls = [
        ("/api/v1/tickets", READ),
        ("/api/v1/tickets?sort=nope", READ),
        ("/api/v1/tickets", {"X-API-Key": ADMIN_KEY}),
        ("/api/v1/tickets", {"X-API-Key": READ_KEY + "x"}),
        ("/api/v1/tickets", {"Authorization": f"Bearer {READ_KEY[:-1]}"}),
        (f"/?token={token}", {}),
        (f"/?token={token}x", {}),
        (f"/charts/aging.json?token={token}", {}),
        ("/api/v1/sources", READ),
        ("/api/v1/openapi.json", READ),
        ("/metrics", ADMIN),
    ]
    for path, headers in calls:
        response = client.get(path, headers=headers)
        text = response.text
        if path.startswith("/?token=") and response.status_code == 200:
            # the dashboard keeps the caller's own token in its team picker, and only there
            field = f'<input type="hidden" name="token" value="{token}">'
            assert text.count(token) == 1 and field in text
            text = text.replace(field, "")
        bodies.append(text + " " + " ".join(f"{k}: {v}" for k, v in response.headers.items()))
    # the server's own log lines (the test client logs the URLs it requests itself)
    server = [r for r in caplog.records if not r.name.startswith("httpx")]
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in server)
    assert any("/api/v1/tickets" in r.getMessage() for r in server), "requests are logged"
    for secret in (*SECRETS, token):
        for body in bodies:
            assert secret not in body
        assert secret not in logged


def test_rate_limits_per_key_and_per_address(
    filled: tuple[str, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    key_env(monkeypatch)
    url, engine = filled
    limits = {"enabled": True, "per_key": "3/minute", "per_address": "2/minute"}
    settings = settings_for(url, rate_limit=limits, change_check_seconds=60)
    with client_for(settings, engine) as client:
        # the same cached answer, through the handler and then the fast path: all counted
        answers = [client.get("/api/v1/stale", headers=READ) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        over = answers[-1]
        assert 1 <= int(over.headers["retry-after"]) <= 60
        assert over.json()["detail"].startswith("rate limit exceeded (3 per 1 minute)")
        assert over.headers["x-content-type-options"] == "nosniff"
        # another key has its own budget
        assert client.get("/api/v1/stale", headers=BOTH).status_code == 200
        # without a valid key, per client address (a wrong key does not get a key's budget)
        wrong = {"X-API-Key": "w" * 40}
        assert [client.get("/api/v1/stale", headers=wrong).status_code for _ in range(3)] == [
            401,
            401,
            429,
        ]
        # liveness probes and static files are never limited
        assert {client.get("/healthz").status_code for _ in range(5)} == {200}
        assert {client.get("/static/embed.js").status_code for _ in range(5)} == {200}
        metrics = client.get("/metrics", headers=ADMIN)
        assert metrics.status_code == 200
        assert 'status="429"' in metrics.text


def test_rate_limits_are_off_by_default_and_checked_when_configured(
    filled: tuple[str, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    key_env(monkeypatch)
    url, engine = filled
    with client_for(settings_for(url), engine) as client:
        assert {client.get("/api/v1/sources", headers=READ).status_code for _ in range(30)} == {200}
    with pytest.raises(ConfigError, match="per_key"):
        settings_for(url, rate_limit={"enabled": True, "per_key": "lots"})
