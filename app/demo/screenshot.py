"""Take the dashboard screenshot in the docs (docs/img/dashboard.png) from a running demo.

    .venv/bin/python -m app.demo.screenshot                   # starts its own demo (temp db)
    .venv/bin/python -m app.demo.screenshot --url http://127.0.0.1:8000/

Drives Debian's chromium (``/usr/bin/chromium``, or ``--chromium``) through Playwright (a dev
dependency); never a downloaded browser build.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

__all__ = ["main", "take"]

log = logging.getLogger(__name__)


def take(url: str, out: Path, *, chromium: str, width: int = 1400, height: int = 1800) -> None:
    """Open ``url``, wait until every chart has drawn, and save a full-page PNG at ``out``."""
    from playwright.sync_api import sync_playwright

    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                # plotly draws some charts with WebGL: software GL when there is no GPU
                "--use-gl=angle",
                "--use-angle=swiftshader-webgl",
                "--enable-unsafe-swiftshader",
                "--ignore-gpu-blocklist",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url, wait_until="networkidle", timeout=120_000)
            page.wait_for_function(
                "document.querySelectorAll('.chart').length > 0 && "
                "[...document.querySelectorAll('.chart')].every(c => c.querySelector('svg'))",
                timeout=60_000,
            )
            page.wait_for_timeout(1000)  # let plotly finish its transitions
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()


def _with_team(url: str, team: str | None) -> str:
    if not team:
        return url
    from urllib.parse import quote

    return url + ("&" if "?" in url else "?") + "team=" + quote(team)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running dashboard (default: start a demo here)")
    parser.add_argument("--out", type=Path, default=Path("docs/img/dashboard.png"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--team", help="show this team's dashboard (default: all teams)")
    args = parser.parse_args(argv)
    if args.url:
        take(_with_team(args.url, args.team), args.out, chromium=args.chromium)
        return
    from app.demo.run import Demo, DemoOptions

    with tempfile.TemporaryDirectory() as tmp:
        demo = Demo(
            DemoOptions(port=0, db=Path(tmp) / "demo.db", seed=args.seed),
            say=lambda text: print(text, file=sys.stderr),  # noqa: T201
        )
        try:
            demo.start()
            take(_with_team(demo.urls["dashboard"], args.team), args.out, chromium=args.chromium)
        finally:
            demo.stop()
    print(f"wrote {args.out}", file=sys.stderr)  # noqa: T201


if __name__ == "__main__":
    main()
