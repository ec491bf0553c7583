"""docs/webhooks.md: the receivers' verification snippets, run against messages that
ticketflow's own code signs (``app.alert_formats``), so the page cannot rot."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app.alert_formats import message_id, render, signature_headers, summary_event

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "webhooks.md"


def snippet(name: str, page: Path = PAGE) -> str:
    """The fenced code block right after ``<!-- snippet: name -->`` on ``page``."""
    text = page.read_text()
    marker = f"<!-- snippet: {name} -->"
    assert marker in text, f"{page.name}: no snippet `{name}`"
    after = text.split(marker, 1)[1].lstrip("\n")
    assert after.startswith("```"), f"{page.name}: `{name}` is not followed by a code block"
    body = after.split("\n", 1)[1]
    return body.split("\n```", 1)[0] + "\n"


def _secret(seed: int) -> str:
    return "whsec_" + base64.b64encode(bytes((seed + i) % 256 for i in range(32))).decode()


def _signed(*secrets: str, timestamp: int | None = None) -> tuple[dict[str, str], bytes]:
    """A real ticketflow message: the summary event, rendered and signed as delivery does."""
    now = datetime.now(UTC)
    folded = [
        {
            "condition": "stale",
            "source": "servicedesk",
            "subject": "I 2403 017",
            "number": "I 2403 017",
            "title": 'Printer "3rd floor" ünreachable — again',
            "url": "https://acme.topdesk.net/tas/secure/incident?unid=1",
            "team": "Service Desk",
        }
    ]
    event = summary_event("desk", folded, now=now, public_url="https://tf.example/")
    body = render("standard", event)
    keys = [base64.b64decode(s.removeprefix("whsec_")) for s in secrets]
    headers = signature_headers(
        keys,
        msg_id=message_id("test", time.time_ns()),
        timestamp=int(time.time()) if timestamp is None else timestamp,
        body=body,
    )
    return {"content-type": "application/json", **headers}, body


def _hmac_verifier() -> tuple[Callable[..., Any], type[Exception]]:
    namespace: dict[str, Any] = {}
    exec(compile(snippet("python-hmac"), "docs/webhooks.md#python-hmac", "exec"), namespace)
    return namespace["verify_ticketflow_webhook"], namespace["InvalidSignature"]


def test_plain_hmac_snippet_accepts_what_ticketflow_signs() -> None:
    verify, _invalid = _hmac_verifier()
    secret = _secret(1)
    headers, body = _signed(secret)
    event = verify(secret, headers, body)
    assert event == json.loads(body)
    assert event["type"] == "ticketflow.alert.summary"
    # header names in any case, as frameworks hand them over
    assert verify(secret, {k.title(): v for k, v in headers.items()}, body) == event


def test_plain_hmac_snippet_accepts_either_secret_while_rotating() -> None:
    verify, _invalid = _hmac_verifier()
    old, new = _secret(1), _secret(2)
    headers, body = _signed(old, new)
    assert len(headers["webhook-signature"].split()) == 2
    assert verify(old, headers, body)["type"] == verify(new, headers, body)["type"]


@pytest.mark.parametrize(
    "tamper",
    ["body", "id", "timestamp", "secret", "stale", "missing", "unsigned_version"],
)
def test_plain_hmac_snippet_refuses_tampered_messages(tamper: str) -> None:
    verify, invalid = _hmac_verifier()
    secret = _secret(1)
    headers, body = _signed(secret, timestamp=int(time.time()) - 600 if tamper == "stale" else None)
    if tamper == "body":
        tampered = body.replace(b"Printer", b"Pointer")
        assert tampered != body
        body = tampered
    elif tamper == "id":
        headers["webhook-id"] += "x"
    elif tamper == "timestamp":
        headers["webhook-timestamp"] = str(int(headers["webhook-timestamp"]) + 1)
    elif tamper == "secret":
        secret = _secret(3)
    elif tamper == "missing":
        del headers["webhook-signature"]
    elif tamper == "unsigned_version":
        headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v2,")
    with pytest.raises(invalid):
        verify(secret, headers, body)


def test_library_snippet_accepts_and_refuses() -> None:
    pytest.importorskip("standardwebhooks", reason="standardwebhooks is not installed (dev extra)")
    processed: list[Any] = []
    namespace: dict[str, Any] = {"process": processed.append}
    exec(compile(snippet("python-library"), "docs/webhooks.md#python-library", "exec"), namespace)
    handle = namespace["handle"]
    secret = _secret(5)
    headers, body = _signed(secret)
    assert handle(secret, headers, body) == 204
    assert processed == [json.loads(body)]
    assert handle(secret, headers, body + b" ") == 401
    assert handle(_secret(6), headers, body) == 401
    assert len(processed) == 1


_NODE_HARNESS = """
const { verifyTicketflowWebhook } = require(process.argv[2]);
const input = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
const out = input.cases.map((c) => {
  try {
    const event = verifyTicketflowWebhook(c.secret, c.headers, Buffer.from(c.body, "base64"));
    return { ok: true, type: event.type };
  } catch (e) {
    return { ok: false, error: e.message };
  }
});
process.stdout.write(JSON.stringify(out));
"""


def test_node_snippet(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    module = tmp_path / "verify.js"
    module.write_text(snippet("node"))
    harness = tmp_path / "harness.js"
    harness.write_text(_NODE_HARNESS)
    secret, other = _secret(7), _secret(8)
    headers, body = _signed(secret, other)
    stale_headers, stale_body = _signed(secret, timestamp=int(time.time()) - 600)

    def case(s: str, h: dict[str, str], b: bytes) -> dict[str, Any]:
        return {"secret": s, "headers": h, "body": base64.b64encode(b).decode()}

    cases = [
        case(secret, headers, body),
        case(other, headers, body),
        case(secret, headers, body.replace(b"Printer", b"Pointer")),
        case(_secret(9), headers, body),
        case(secret, stale_headers, stale_body),
        case(secret, {k: v for k, v in headers.items() if k != "webhook-id"}, body),
    ]
    done = subprocess.run(
        [node, str(harness), str(module)],
        input=json.dumps({"cases": cases}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "NODE_OPTIONS": ""},
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert [r["ok"] for r in results] == [True, True, False, False, False, False], results
    assert results[0]["type"] == "ticketflow.alert.summary"
