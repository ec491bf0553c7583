"""Fake helpdesk servers for tests and benchmarks, and ways to serve them.

A fake is a callable ``fake(request: httpx.Request) -> httpx.Response``. Tests wire it in with
``httpx.Client(transport=httpx.MockTransport(fake))``; tests that need a real socket (timeouts,
killing a separate sync process) serve it over loopback with ``ServedFake`` (uvicorn in a
thread), and the benchmarks run it in its own process (``python -m tests.fakes.topdesk``).
The serving parts are the demo's own (``app.demo.serving``): one ASGI adapter, one loopback
socket with ``TCP_NODELAY``, one threaded uvicorn.
"""

from __future__ import annotations

import socket
from types import TracebackType

import uvicorn

from app.demo.serving import Handler, ThreadedServer, asgi_app, bind, handler_config

__all__ = ["Handler", "ServedFake", "asgi_app", "bind_loopback", "uvicorn_config"]


def bind_loopback(port: int = 0) -> socket.socket:
    """A listening TCP socket on 127.0.0.1 (``port`` 0: any free one)."""
    return bind("127.0.0.1", port)


def uvicorn_config(handler: Handler) -> uvicorn.Config:
    """Quiet uvicorn settings for serving a fake (the fake writes its own ``Date`` header)."""
    return handler_config(handler)


class ServedFake:
    """Serve a fake over loopback HTTP from a background thread::

    with ServedFake(fake) as served:
        client = httpx.Client(base_url=served.url)
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self._server = ThreadedServer(handler_config(handler), bind_loopback(), name="fake-server")
        self.port: int = self._server.port
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServedFake:
        self._server.start(timeout=10)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.stop(timeout=10)
