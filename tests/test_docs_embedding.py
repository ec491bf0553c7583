"""docs/embedding.md against a running app: its config loads, its token request mints a token,
and every ticketflow URL on the page answers (with that token, or in public-read mode)."""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings, load_settings
from tests.app.test_api_support import warehouse
from tests.test_docs_webhooks import snippet

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "embedding.md"
HOST = "https://ticketflow.intranet.example"
EMBED_KEY = "embed-key-for-the-docs-test-" + "e" * 20
ADMIN_KEY = "admin-key-for-the-docs-test-" + "a" * 20


def _urls(name: str) -> list[str]:
    return re.findall(re.escape(HOST) + r"[^\s\"'<>)]*", snippet(name, PAGE))


@pytest.fixture(scope="module")
def engine_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('embed') / 'w.db'}"
    engine = warehouse(url)  # the API tests' sample desk: three teams, two sources
    engine.dispose()
    yield url


def _settings(url: str, monkeypatch: pytest.MonkeyPatch, **api: object) -> Settings:
    for name in list(os.environ):
        if name.startswith("TICKETFLOW_"):
            monkeypatch.delenv(name)
    config = tomllib.loads(snippet("config", PAGE))
    monkeypatch.setenv(config["api"]["embed_key_env"], EMBED_KEY)
    monkeypatch.setenv(config["api"]["keys"][0]["key_env"], ADMIN_KEY)
    return load_settings(None, warehouse={"url": url}, api={**config["api"], **api})


@pytest.fixture(scope="module")
def client(engine_url: str) -> Iterator[TestClient]:
    """One app for the module (keys are read when it is built)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        app = create_app(_settings(engine_url, monkeypatch))
    with TestClient(app) as c:
        yield c


def _mint(client: TestClient, body: dict[str, object]) -> dict[str, object]:
    answer = client.post("/api/v1/embed-tokens", json=body, headers={"X-API-Key": ADMIN_KEY})
    assert answer.status_code == 201, answer.text
    minted: dict[str, object] = answer.json()
    return minted


def _curl_body() -> dict[str, object]:
    words = shlex.split(snippet("mint", PAGE).replace("\\\n", " "))
    body: dict[str, object] = json.loads(words[words.index("-d") + 1])
    return body


def test_the_documented_request_mints_the_documented_answer(client: TestClient) -> None:
    words = shlex.split(snippet("mint", PAGE).replace("\\\n", " "))
    assert words[words.index("-X") + 1] == "POST"
    path = urlsplit(next(w for w in words if w.startswith(HOST))).path
    assert path == "/api/v1/embed-tokens"
    minted = _mint(client, _curl_body())
    documented = json.loads(
        PAGE.read_text().split("The answer holds")[1].split("```json")[1].split("```")[0]
    )
    assert set(minted) == set(documented)
    assert minted["charts"] == documented["charts"]
    assert minted["pins"] == documented["pins"]
    assert isinstance(minted["urls"], dict)
    assert set(minted["urls"]) == set(documented["urls"])
    token = str(minted["token"])
    for name, url in documented["urls"].items():
        assert minted["urls"][name] == url.replace("eyJ...", token)


@pytest.mark.parametrize("name", ["iframe", "responsive", "dashboard", "filters", "json"])
def test_every_url_on_the_page_answers_with_a_token(client: TestClient, name: str) -> None:
    body = _curl_body()
    pinned = str(_mint(client, body)["token"])
    everything = str(_mint(client, {"charts": ["*"], "lifetime_hours": 1})["token"])
    urls = _urls(name)
    assert urls, f"snippet {name} has no ticketflow URL"
    for url in urls:
        parts = urlsplit(url)
        chart = parts.path.removeprefix("/charts/").removesuffix(".json").strip("/")
        opens = chart in body["charts"] or (chart == "" and "dashboard" in body["charts"])  # type: ignore[operator]
        only_the_pinned_team = parse_qs(parts.query).get("team") == [body["team"]]
        # the minted token where it fits the URL, else one that opens everything
        token = pinned if opens and only_the_pinned_team else everything
        query = parts.query.replace("TOKEN", token)
        answer = client.get(f"{parts.path}?{query}" if query else parts.path)
        assert answer.status_code == 200, f"{url}: {answer.status_code} {answer.text[:300]}"
        if parts.path.startswith("/charts/") and not parts.path.endswith(".json"):
            policy = answer.headers["content-security-policy"]
            assert "frame-ancestors 'self' https://intranet.example.org" in policy
        if not query:
            continue
        # the same URL without the token is refused: the page really needs it
        bare = re.sub(r"&?token=[^&]*", "", query)
        refused = client.get(f"{parts.path}?{bare}")
        assert refused.status_code == 401, url


def test_a_pinned_token_cannot_be_widened(client: TestClient) -> None:
    pinned = str(_mint(client, _curl_body())["token"])
    answer = client.get(f"/charts/aging?team=Network&token={pinned}")
    assert answer.status_code == 403


def test_public_read_urls_answer_without_a_token(
    engine_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(engine_url, monkeypatch, public_read=True)
    with TestClient(create_app(settings)) as c:
        urls = _urls("public")
        assert urls and all("token" not in u for u in urls)
        for url in urls:
            parts = urlsplit(url)
            assert c.get(f"{parts.path}?{parts.query}").status_code == 200, url


def test_scripts_the_page_loads_are_served(client: TestClient) -> None:
    for url in _urls("json"):
        parts = urlsplit(url)
        if parts.path.startswith("/static/"):
            assert client.get(parts.path).status_code == 200


def test_the_chart_list_is_the_servers() -> None:
    from app.routes.charts import available_charts

    intro = PAGE.read_text().split("The charts:")[1].split("(what each")[0]
    documented = set(re.findall(r"`([a-z-]+)`", intro))
    assert documented == set(available_charts())
