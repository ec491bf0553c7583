"""connectors/http.py as the TOPdesk connector uses it: client, error mapping, retries."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from connectors.config import TopdeskSourceConfig
from connectors.errors import (
    ConnectorConfigError,
    ConnectorError,
    RateLimitedError,
    TransientConnectorError,
    UpstreamResponseError,
)
from connectors.http import (
    USER_AGENT,
    RetryPolicy,
    error_for_response,
    make_client,
    parse_retry_after,
    send,
)


def _config(**kw: object) -> TopdeskSourceConfig:
    base: dict[str, object] = {
        "name": "td",
        "kind": "topdesk",
        "base_url": "https://td.example",
        "username": "api-operator",
        "password_env": "TD_TEST_PASSWORD",
    }
    return TopdeskSourceConfig.model_validate(base | kw)


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TD_TEST_PASSWORD", "s3cret-app-pass")


class Script:
    """A transport answering from a list of statuses (or exceptions), recording requests."""

    def __init__(self, *answers: int | tuple[int, dict[str, str]] | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        return httpx.Response(status, json=[{"message": f"answer {status}"}], headers=headers)


def _send(script: Script, policy: RetryPolicy | None = None) -> tuple[httpx.Response, list[float]]:
    sleeps: list[float] = []
    client = make_client(_config(), transport=httpx.MockTransport(script), base_path="/tas/api")
    request = client.build_request("GET", "/incidents", params={"pageStart": "0"})
    response = send(
        client,
        request,
        source="td",
        policy=policy or RetryPolicy(max_attempts=4, backoff=1.0, max_backoff=8.0),
        sleep=sleeps.append,
    )
    return response, sleeps


def test_client_has_base_url_auth_timeouts_and_user_agent() -> None:
    script = Script(200)
    client = make_client(
        _config(timeout_seconds=42), transport=httpx.MockTransport(script), base_path="/tas/api"
    )
    client.get("/version")
    sent = script.requests[0]
    assert str(sent.url) == "https://td.example/tas/api/version"
    assert sent.headers["Authorization"].startswith("Basic ")
    assert sent.headers["User-Agent"] == USER_AGENT
    assert client.timeout == httpx.Timeout(42, connect=10)


def test_a_missing_password_variable_is_a_config_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TD_TEST_PASSWORD")
    with pytest.raises(ConnectorConfigError, match="TD_TEST_PASSWORD") as info:
        make_client(_config())
    assert info.value.source == "td"


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, ConnectorConfigError),
        (403, ConnectorConfigError),
        (404, ConnectorConfigError),
        (400, UpstreamResponseError),
        (409, UpstreamResponseError),
        (429, RateLimitedError),
        (500, TransientConnectorError),
        (503, TransientConnectorError),
        (599, TransientConnectorError),
    ],
    ids=str,
)
def test_status_maps_to_error_class(status: int, cls: type[ConnectorError]) -> None:
    request = httpx.Request("GET", "https://td.example/tas/api/incidents?pageStart=0")
    response = httpx.Response(status, json=[{"message": "nope"}], request=request)
    error = error_for_response(response, source="td", hints={401: "check the password"})
    assert type(error) is cls
    assert "GET /tas/api/incidents?pageStart=0" in str(error)
    assert "nope" in str(error)
    assert str(error).startswith("source `td`: ")
    if status == 401:
        assert "check the password" in str(error)


def test_success_is_no_error() -> None:
    request = httpx.Request("GET", "https://td.example/x")
    assert error_for_response(httpx.Response(206, request=request), source="td") is None


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7.0), ("0", 0.0), ("1.5", 1.5), ("", None), (None, None), ("soon", None)],
    ids=str,
)
def test_retry_after_in_seconds(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_retry_after_as_http_date() -> None:
    now = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(header, now=now) == 30.0


def test_5xx_is_retried_with_exponential_backoff_and_full_jitter() -> None:
    random.seed(7)
    response, sleeps = _send(Script(500, 502, 503, 200))
    assert response.status_code == 200
    assert len(sleeps) == 3
    for attempt, slept in enumerate(sleeps, start=1):
        assert 0 <= slept <= min(8.0, 2 ** (attempt - 1))
    policy = RetryPolicy(backoff=1.0, max_backoff=8.0)
    waits = [policy.wait(4, None) for _ in range(500)]
    assert max(waits) <= 8.0
    assert 3.0 < sum(waits) / len(waits) < 5.0  # uniform(0, 8): jittered, not a fixed 8


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(backoff=1.0, max_backoff=5.0)
    assert all(policy.wait(30, None) <= 5.0 for _ in range(100))


def test_timeouts_and_connection_errors_are_retried() -> None:
    script = Script(
        httpx.ReadTimeout("slow"), httpx.ConnectError("refused"), httpx.ConnectTimeout("x"), 200
    )
    response, sleeps = _send(script)
    assert response.status_code == 200
    assert len(script.requests) == 4
    assert len(sleeps) == 3


def test_429_waits_as_long_as_retry_after_says() -> None:
    response, sleeps = _send(Script((429, {"Retry-After": "7"}), 200))
    assert response.status_code == 200
    assert len(sleeps) == 1
    assert 7.0 <= sleeps[0] <= 8.0


def test_429_without_retry_after_backs_off() -> None:
    response, sleeps = _send(Script(429, 200))
    assert response.status_code == 200
    assert 0 <= sleeps[0] <= 1.0


def test_429_asking_for_more_than_the_cap_stops_at_once() -> None:
    script = Script((429, {"Retry-After": "3600"}), 200)
    with pytest.raises(ConnectorError, match="3600 s") as info:
        _send(script, RetryPolicy(max_attempts=4, max_retry_after=300))
    assert not isinstance(info.value, TransientConnectorError)
    assert len(script.requests) == 1


def test_retries_end_with_the_last_error() -> None:
    script = Script(500, 500, 500, 500, 200)
    with pytest.raises(TransientConnectorError, match="HTTP 500"):
        _send(script)
    assert len(script.requests) == 4
    rate_limited = Script(*[(429, {"Retry-After": "1"})] * 4)
    with pytest.raises(RateLimitedError) as info:
        _send(rate_limited)
    assert info.value.retry_after == 1.0


@pytest.mark.parametrize("status", [401, 403, 404, 400], ids=str)
def test_client_errors_are_not_retried(status: int) -> None:
    script = Script(status, 200)
    with pytest.raises(ConnectorError):
        _send(script)
    assert len(script.requests) == 1


def test_accepted_statuses_are_returned_not_raised() -> None:
    script = Script(404)
    client = make_client(_config(), transport=httpx.MockTransport(script))
    sleep: Callable[[float], None] = lambda _s: None  # noqa: E731
    response = send(
        client,
        client.build_request("GET", "/x"),
        source="td",
        policy=RetryPolicy(),
        sleep=sleep,
        accept=(404,),
    )
    assert response.status_code == 404


def test_tls_settings_build_without_warnings_and_share_one_context() -> None:
    import certifi

    first = make_client(_config())
    second = make_client(_config(base_url="https://other.example"))
    own_ca = make_client(_config(ca_file=certifi.where()))
    unverified = make_client(_config(verify_tls=False))
    pool = first._transport._pool  # type: ignore[attr-defined]
    assert pool._ssl_context is second._transport._pool._ssl_context  # type: ignore[attr-defined]
    for client in (first, second, own_ca, unverified):
        client.close()
