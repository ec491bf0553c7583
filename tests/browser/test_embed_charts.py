"""A real browser embeds two charts from the running server, as an intranet page would.

Debian's ``chromium`` (installed by ``scripts/bootstrap``) is driven by Playwright through
``executable_path``; no browser is downloaded. The app runs under uvicorn on 127.0.0.1; the
"intranet page" is a plain HTML file served from a second loopback port (another origin), which
the app's CSP ``frame-ancestors`` allows. The test checks that Plotly drew SVG with data points
in both iframes, that the console shows no errors (CSP violations included), and that every
request the browser made went to the loopback address — the others are blocked and recorded.
"""

from __future__ import annotations

import http.server
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn

from app.main import create_app
from app.warehouse import make_engine
from tests.app.test_api_support import ADMIN, fill_warehouse, key_env, settings_for

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHARTS = ("aging", "throughput")
LOCAL = {"127.0.0.1", "localhost"}

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not CHROMIUM.exists() and shutil.which("chromium") is None:
    pytest.skip(
        "Debian's chromium is not installed (scripts/bootstrap installs it)",
        allow_module_level=True,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # running in a thread
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(app base URL, intranet page URL), both on loopback."""
    mp = pytest.MonkeyPatch()
    key_env(mp)
    tmp = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{tmp / 'w.db'}"
    engine = make_engine(url)
    fill_warehouse(engine)
    app_port, page_port = _free_port(), _free_port()
    page_origin = f"http://127.0.0.1:{page_port}"
    settings = settings_for(url, frame_ancestors=["'self'", page_origin])
    app = create_app(settings, engine=engine)
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=app_port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    base = f"http://127.0.0.1:{app_port}"

    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        minted = client.post("/api/v1/embed-tokens", json={"charts": list(CHARTS)}, headers=ADMIN)
        assert minted.status_code == 201, minted.text
        token = minted.json()["token"]
    frames = "\n".join(
        f'<iframe id="{name}" src="{base}/charts/{name}?token={token}" '
        f'width="900" height="500" title="{name}"></iframe>'
        for name in CHARTS
    )
    (tmp / "intranet.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>Intranet</title></head>"
        f"<body><h1>Service desk this week</h1>{frames}</body></html>"
    )

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, directory=str(tmp), **kw)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    pages = http.server.ThreadingHTTPServer(("127.0.0.1", page_port), Quiet)
    page_thread = threading.Thread(target=pages.serve_forever, daemon=True)
    page_thread.start()
    try:
        yield base, f"{page_origin}/intranet.html"
    finally:
        pages.shutdown()
        pages.server_close()
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()
        mp.undo()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


def test_two_embedded_charts_render_offline(served: tuple[str, str], browser: object) -> None:
    _base, page_url = served
    context = browser.new_context()  # type: ignore[attr-defined]
    requested: list[str] = []
    blocked: list[str] = []

    def guard(route: object) -> None:
        url = route.request.url  # type: ignore[attr-defined]
        requested.append(url)
        if urlsplit(url).hostname in LOCAL or url.startswith(("data:", "blob:", "about:")):
            route.continue_()  # type: ignore[attr-defined]
        else:
            blocked.append(url)
            route.abort()  # type: ignore[attr-defined]

    context.route("**/*", guard)
    page = context.new_page()
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console_errors.append(str(e)))
    page.goto(page_url, wait_until="load")
    for name in CHARTS:
        frame = page.frame_locator(f"iframe#{name}")
        drawn = frame.locator(".chart[data-drawn='true'] svg.main-svg").first
        drawn.wait_for(state="attached", timeout=20_000)
        points = frame.locator(
            ".scatterlayer .point, .barlayer .point, .scatterlayer .js-line"
        ).count()
        assert points > 0, f"{name}: Plotly drew no data points"
        title = frame.locator(".gtitle").first.text_content()
        assert title, f"{name}: the chart has no title"
    context.close()
    assert console_errors == [], console_errors
    assert blocked == [], f"requests that would have left the machine: {blocked}"
    hosts = {urlsplit(u).hostname for u in requested if u.startswith("http")}
    assert hosts <= LOCAL and hosts, hosts
    assert any(
        u.endswith(tuple(f"/charts/{n}" for n in CHARTS)) or "/charts/" in u for u in requested
    )
    assert any("/static/plotly.min.js" in u for u in requested)


def test_an_unlisted_origin_cannot_frame_a_chart(served: tuple[str, str], browser: object) -> None:
    _base, page_url = served
    # the same page from "localhost" is another origin, absent from frame-ancestors
    other = page_url.replace("127.0.0.1", "localhost")
    context = browser.new_context()  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(other, wait_until="load")
    page.wait_for_timeout(1500)
    frame = page.frame_locator(f"iframe#{CHARTS[0]}")
    assert frame.locator(".chart").count() == 0, "the chart rendered inside a foreign page"
    context.close()
