"""Fake helpdesk servers for tests and benchmarks, and ways to serve them.

A fake is a callable ``fake(request: httpx.Request) -> httpx.Response``. Tests wire it in with
``httpx.Client(transport=httpx.MockTransport(fake))``; tests that need a real socket (timeouts,
killing a separate sync process) serve it over loopback with ``ServedFake`` (uvicorn in a
thread), and the benchmark runs it in its own process (``python -m tests.fakes.topdesk``).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from types import TracebackType
from typing import Any

import anyio.to_thread
import httpx
import uvicorn

__all__ = ["Handler", "ServedFake", "asgi_app", "bind_loopback", "uvicorn_config"]

Handler = Callable[[httpx.Request], httpx.Response]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def asgi_app(handler: Handler) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI app that hands each request to ``handler`` (in a worker thread)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        host, port = scope.get("server") or ("127.0.0.1", 80)
        query = scope.get("query_string", b"").decode("latin-1")
        url = f"http://{host}:{port}{scope['raw_path'].decode('latin-1').split('?')[0]}"
        if query:
            url += "?" + query
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        request = httpx.Request(scope["method"], url, headers=headers, content=body)
        response = await anyio.to_thread.run_sync(handler, request)
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [
                    (k.lower().encode("latin-1"), v.encode("latin-1"))
                    for k, v in response.headers.multi_items()
                ],
            }
        )
        await send({"type": "http.response.body", "body": response.content})

    return app


def bind_loopback(port: int = 0) -> socket.socket:
    """A listening TCP socket on 127.0.0.1 (``port`` 0: any free one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock


def uvicorn_config(handler: Handler) -> uvicorn.Config:
    """Quiet uvicorn settings for serving a fake (the fake writes its own ``Date`` header)."""
    return uvicorn.Config(
        asgi_app(handler),
        log_level="warning",
        access_log=False,
        lifespan="off",
        date_header=False,
        server_header=False,
        timeout_keep_alive=30,
    )


class ServedFake:
    """Serve a fake over loopback HTTP from a background thread::

    with ServedFake(fake) as served:
        client = httpx.Client(base_url=served.url)
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self._sock = bind_loopback()
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn_config(handler))
        self._thread = threading.Thread(target=self._run, name="fake-server", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    def __enter__(self) -> ServedFake:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake server did not start")
            time.sleep(0.01)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
