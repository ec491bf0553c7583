"""Serve an ``httpx``-style handler (``handler(request) -> response``) over loopback HTTP.

The demo serves its TOPdesk-compatible API this way: uvicorn in a thread of the demo process,
on a socket bound to 127.0.0.1, so the real connector syncs over real HTTP.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio.to_thread
import httpx
import uvicorn

__all__ = ["Handler", "ThreadedServer", "asgi_app", "bind", "handler_config"]

Handler = Callable[[httpx.Request], httpx.Response]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def asgi_app(handler: Handler) -> ASGIApp:
    """An ASGI app that hands each HTTP request to ``handler`` (in a worker thread)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
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


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (``port`` 0: any free one).

    Raises:
        OSError: the address is taken or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted sockets inherit it: without it every keep-alive answer (head, then body) waits
    # ~40 ms for the client's delayed ACK
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


class ThreadedServer:
    """uvicorn serving ``config``'s app on ``sock`` in a daemon thread."""

    def __init__(self, config: uvicorn.Config, sock: socket.socket, *, name: str) -> None:
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self, timeout: float = 20.0) -> None:
        """Start and wait until it accepts connections.

        Raises:
            RuntimeError: it did not start within ``timeout`` seconds.
        """
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the {self.thread.name} server did not start")
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=timeout)
        self.sock.close()


def handler_config(handler: Handler) -> uvicorn.Config:
    """Quiet uvicorn settings for a handler (the handler writes its own ``Date`` header)."""
    return uvicorn.Config(
        asgi_app(handler),
        log_level="warning",
        access_log=False,
        lifespan="off",
        date_header=False,
        server_header=False,
        log_config=None,
        timeout_keep_alive=30,
    )
