"""A webhook receiver on a loopback address: records requests, verifies Standard Webhooks
signatures with the official ``standardwebhooks`` library, and misbehaves on demand.

Modes (``receiver.mode``): ``ok`` (204), ``status:<code>`` (e.g. ``status:503``),
``retry_after:<code>:<seconds>``, ``redirect:<url>``, ``hang:<seconds>``. ``stop()`` closes
the listening socket (connections are refused) and ``start()`` opens it again on the same port.

``delivered`` counts the 2xx answers per ``webhook-id``: exactly-once delivery means every id
there has the count 1.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from unittest import mock

import standardwebhooks.webhooks as swh


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool | None
    """None: no secret to check against; False: the library refused it"""
    error: str | None = None


@dataclass
class Receiver:
    host: str = "127.0.0.1"
    secret: str | None = None
    """whsec_... to verify with; None accepts unsigned bodies (Slack/Teams formats)"""
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    mode: str = "ok"
    requests: list[Received] = field(default_factory=list)
    delivered: Counter[str] = field(default_factory=Counter)
    """2xx answers per ``webhook-id`` (a spec-following receiver acts once per id)"""
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                receiver._handle(self)

        server = ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _verify(self, body: bytes, headers: dict[str, str]) -> tuple[bool | None, str | None]:
        if self.secret is None:
            return None, None
        now = self.clock()

        class Frozen(datetime):
            @classmethod
            def now(cls, tz: Any = None) -> Frozen:
                return cls.fromtimestamp(now.timestamp(), tz)

        try:
            with mock.patch.object(swh, "datetime", Frozen):
                swh.Webhook(self.secret).verify(body, headers)
        except swh.WebhookVerificationError as e:
            return False, str(e)
        return True, None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            verified, error = self._verify(body, headers)
            self.requests.append(Received(handler.path, headers, body, verified, error))
            mode = self.mode
        kind, _, arg = mode.partition(":")
        if kind == "hang":
            time.sleep(float(arg))
            kind = "ok"
        if kind == "ok":
            if verified is not False:
                with self._lock:
                    self.delivered[headers.get("webhook-id", "")] += 1
            handler.send_response(204 if verified is not False else 400)
            handler.send_header("content-length", "0")
            handler.end_headers()
            return
        if kind == "status":
            handler.send_response(int(arg))
            payload = b"receiver says no"
        elif kind == "retry_after":
            code, _, seconds = arg.partition(":")
            handler.send_response(int(code))
            handler.send_header("retry-after", seconds)
            payload = b""
        elif kind == "redirect":
            handler.send_response(302)
            handler.send_header("location", arg)
            payload = b""
        else:
            raise AssertionError(f"unknown mode {mode}")
        handler.send_header("content-length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def ids(self) -> list[str]:
        return [r.headers.get("webhook-id", "") for r in self.requests]
