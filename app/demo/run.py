"""``ticketflow demo``: the whole product on a simulated service desk, in one process.

1. The demo warehouse (SQLite, ``./ticketflow-demo.db``) is created, or an earlier demo's
   replaced (a file holding other sources is never touched without ``--reset``).
2. The simulated desk (``app.demo.desk``) generates ~6 weeks of calls ending now and serves
   them through the TOPdesk-compatible API (``app.demo.topdesk_api``) on a loopback port, with
   credentials made up in-process and handed to the connector through an environment variable.
3. Catch-up: the desk's clock replays the history in steps, and after each step the real sync
   (``app.sync.sync_sources``, the TOPdesk connector) reads what changed. TOPdesk keeps no
   field history, so the sync derives it from successive snapshots, exactly as against a real
   TOPdesk polled every so often; the replay steps set how fine that history is.
4. Live: the desk's clock follows real time, new calls keep arriving (``pace`` times faster
   than a real desk's peak hour), and the scheduler syncs, evaluates alerts and delivers them
   every few seconds to the webhook inbox (``app.demo.inbox``), the only loopback address the
   egress policy allows.
5. The web app (dashboard, charts, API) answers without a key on loopback (public-read mode);
   bound elsewhere, it needs a key and the printed dashboard link carries a signed token.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import os
import secrets
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from pydantic import ValidationError

from app.demo.desk import SimulatedDesk
from app.demo.generator import DeskGenerator
from app.demo.inbox import Inbox, inbox_router
from app.demo.serving import ThreadedServer, bind, handler_config
from app.demo.topdesk_api import TopdeskApi
from app.errors import ConfigError
from app.settings import Settings

__all__ = [
    "PASSWORD_ENV",
    "SOURCE",
    "Demo",
    "DemoOptions",
    "catch_up_steps",
    "demo_settings",
    "prepare_database",
]

log = logging.getLogger(__name__)

SOURCE = "demo-desk"
PASSWORD_ENV = "TICKETFLOW_DEMO_TOPDESK_PASSWORD"
SECRET_ENV = "TICKETFLOW_DEMO_WEBHOOK_SECRET"
EMBED_ENV = "TICKETFLOW_DEMO_EMBED_KEY"
USERNAME = "ticketflow-demo"
BASE_PACE = 60.0
"""simulated seconds per real second at ``--speed 1`` (a simulated minute every second)"""


@dataclass(frozen=True)
class DemoOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    db: Path = Path("ticketflow-demo.db")
    speed: float = 1.0
    seed: int = 1
    reset: bool = False
    history_days: float = 42.0
    steps: int = 80
    """catch-up replay steps (more: finer history, slower start)"""
    sync_seconds: float = 10.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def prepare_database(path: Path, *, reset: bool) -> None:
    """Make room for a new demo warehouse at ``path``.

    An earlier demo's file (its only source is the demo's) is replaced; any other file only
    with ``reset``.

    Raises:
        ConfigError: the file holds other data and ``reset`` is off, or cannot be removed.
    """
    if not path.exists():
        if not path.parent.is_dir():
            raise ConfigError(
                [("--db", f"the folder {path.parent} does not exist: create it or pick another")]
            )
        return
    if _in_use(path):
        raise ConfigError(
            [("--db", f"another demo is using {path}: stop it first, or use --db another path")]
        )
    if not reset and not _is_demo_database(path):
        raise ConfigError(
            [
                (
                    "--db",
                    f"{path} is not a ticketflow demo database: pass --reset to replace it, "
                    "or --db another path",
                )
            ]
        )
    for suffix in ("", "-wal", "-shm", "-journal"):
        victim = Path(f"{path}{suffix}")
        try:
            victim.unlink(missing_ok=True)
        except OSError as e:
            raise ConfigError([("--db", f"cannot remove {victim}: {e.strerror}")]) from e
    for lock in path.parent.glob(f"{path.name}.*lock"):
        lock.unlink(missing_ok=True)


def _in_use(path: Path) -> bool:
    """Whether a running scheduler holds the lock beside the database (see app.scheduler)."""
    import fcntl

    lock = Path(f"{path}.scheduler.lock")
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _is_demo_database(path: Path) -> bool:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT source FROM tickets GROUP BY source").fetchall()
            states = conn.execute("SELECT source FROM sync_state").fetchall()
    except sqlite3.Error:
        return path.stat().st_size == 0
    return {r[0] for r in rows} | {r[0] for r in states} <= {SOURCE}


def demo_settings(
    options: DemoOptions, *, desk_url: str, public_url: str, public_read: bool
) -> Settings:
    """The settings of a demo run (the user's config file and environment are not read for
    the parts set here).

    Raises:
        ConfigError: a value does not validate (e.g. the host).
    """
    inbox_host = "127.0.0.1" if options.host in ("0.0.0.0", "::", "localhost") else options.host
    bracket = f"[{inbox_host}]" if ":" in inbox_host else inbox_host
    net = ipaddress.ip_network(inbox_host) if _is_ip(inbox_host) else None
    values: dict[str, Any] = {
        "warehouse": {"url": f"sqlite:///{options.db.resolve()}"},
        "logging": {"level": "WARNING", "format": "text"},
        "sources": [
            {
                "name": SOURCE,
                "kind": "topdesk",
                "base_url": desk_url,
                "username": USERNAME,
                "password_env": PASSWORD_ENV,
                "actions": True,
                "overlap_seconds": 5,
                "max_attempts": 3,
                "timeout_seconds": 20,
            }
        ],
        "api": {
            "host": options.host,
            "port": options.port,
            "public_read": public_read,
            "embed_key_env": None if public_read else EMBED_ENV,
            "embed_token_max_hours": 24 * 7,
            "cache_seconds": 30,
            "change_check_seconds": 2,
        },
        "alerts": {
            "public_url": public_url,
            "allow_networks": [str(net)] if net else [],
            "webhooks": [
                {
                    "name": "demo-inbox",
                    "url": f"http://{bracket}:{options.port}/demo/inbox/hooks",
                    "secret_env": SECRET_ENV,
                    "timeout_seconds": 10,
                }
            ],
            "rules": [
                {
                    "name": "stale-and-sla",
                    "conditions": ["stale", "sla_breached", "sla_risk"],
                    "webhooks": ["demo-inbox"],
                    "max_opened_per_run": 25,
                },
                {
                    "name": "flow",
                    "conditions": ["ping_pong", "unassigned", "queued", "customer_not_updated"],
                    "webhooks": ["demo-inbox"],
                    "max_opened_per_run": 25,
                },
                {
                    "name": "people",
                    "conditions": ["overloaded", "absent"],
                    "webhooks": ["demo-inbox"],
                },
            ],
        },
        "schedule": {
            "interval_minutes": options.sync_seconds / 60,
            "alerts_interval_minutes": options.sync_seconds / 60,
            "delivery_poll_seconds": 2,
        },
    }
    try:
        return Settings(**values)
    except ValidationError as e:
        problems = [
            (".".join(str(p) for p in err["loc"]), err["msg"].removeprefix("Value error, "))
            for err in e.errors()
        ]
        raise ConfigError(problems, origin="ticketflow demo") from e


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def catch_up_steps(times: list[datetime], *, steps: int, end: datetime) -> list[datetime]:
    """Replay boundaries over the sorted change ``times``: about ``steps`` of them, each after
    roughly the same number of changes (so busy office hours get fine steps, nights coarse
    ones), ending at ``end``."""
    if not times:
        return [end]
    per = max(1, len(times) // max(steps, 1))
    out = [times[i] for i in range(per - 1, len(times), per)]
    if not out or out[-1] < end:
        out.append(end)
    return out


Say = Callable[[str], None]


class Demo:
    """One demo run: ``start()`` (catch-up, servers, scheduler), then ``stop()``."""

    def __init__(self, options: DemoOptions, *, say: Say) -> None:
        self.options = options
        self.say = say
        self.stop_event = threading.Event()
        self._servers: list[ThreadedServer] = []
        self._threads: list[threading.Thread] = []
        self.scheduler: Any = None
        self.urls: dict[str, str] = {}

    def start(self) -> None:
        """Prepare everything; returns when the dashboard has data and the URLs are known.

        Raises:
            ConfigError: bad options, a taken port, or a database that is not the demo's.
        """
        from app.scheduler import start_scheduler
        from app.sync import sync_sources
        from app.warehouse import make_engine
        from connectors.http import make_client

        o = self.options
        started = time.monotonic()
        self._handle_signals()
        prepare_database(o.db, reset=o.reset)
        try:
            web_sock = bind(o.host, o.port)
        except OSError as e:
            raise ConfigError(
                [("--port", f"cannot listen on {o.host}:{o.port} ({e.strerror}): pick another")]
            ) from e
        try:
            self._start(web_sock, started, make_engine, sync_sources, start_scheduler, make_client)
        except BaseException:
            web_sock.close()
            self.stop()
            raise

    def _start(
        self,
        web_sock: Any,
        started: float,
        make_engine: Any,
        sync_sources: Any,
        start_scheduler: Any,
        make_client: Any,
    ) -> None:
        from app.main import create_app

        o = self.options
        public_read = is_loopback(o.host)
        password = secrets.token_urlsafe(24)
        os.environ[PASSWORD_ENV] = password
        webhook_key = secrets.token_bytes(32)
        os.environ[SECRET_ENV] = "whsec_" + base64.b64encode(webhook_key).decode()
        if not public_read:
            os.environ[EMBED_ENV] = secrets.token_urlsafe(32)

        now = datetime.now(UTC).replace(microsecond=0)
        pace = BASE_PACE * o.speed
        api = TopdeskApi(
            username=USERNAME,
            password=password,
            clock=now - timedelta(days=o.history_days + 1),
            keep_requests=False,
        )
        desk = SimulatedDesk(api, DeskGenerator(o.seed), now=now, pace=pace)
        calls = desk.load_history(o.history_days)
        desk_server = ThreadedServer(handler_config(api), bind("127.0.0.1", 0), name="demo-desk")
        desk_server.start()
        self._servers.append(desk_server)
        desk_url = f"http://127.0.0.1:{desk_server.port}"

        shown_host = "127.0.0.1" if o.host in ("0.0.0.0", "localhost") else o.host
        shown_host = "[::1]" if shown_host == "::" else shown_host
        shown_host = (
            f"[{shown_host}]" if ":" in shown_host and "[" not in shown_host else shown_host
        )
        port = int(web_sock.getsockname()[1])
        base = f"http://{shown_host}:{port}"
        settings = demo_settings(
            replace(o, port=port), desk_url=desk_url, public_url=base + "/", public_read=public_read
        )
        engine = make_engine(settings.warehouse.url)

        # catch-up: replay the history through the real connector, step by step
        boundaries = catch_up_steps(desk.change_times(now), steps=o.steps, end=now)
        self.say(
            f"simulated desk: {len(calls):,} calls over the last {o.history_days:g} days; "
            f"replaying them through the TOPdesk connector in {len(boundaries)} syncs ..."
        )

        def in_process(config: Any) -> httpx.Client:
            # the replay talks to the same API object without the socket (faster); the live
            # syncs of the scheduler go over HTTP to the desk's port
            return make_client(  # type: ignore[no-any-return]
                config, transport=httpx.MockTransport(api), base_path="/tas/api"
            )

        last_report = time.monotonic()
        for i, boundary in enumerate(boundaries, 1):
            if self.stop_event.is_set():
                return
            desk.advance_to(boundary)
            results = sync_sources(settings, engine=engine, client_factory=in_process)
            failed = [r for r in results if r.status == "error"]
            if failed:
                raise RuntimeError(f"demo sync failed: {failed[0].message}")
            if time.monotonic() - last_report > 5:
                self.say(
                    f"  {i}/{len(boundaries)} syncs, history up to {boundary:%Y-%m-%d %H:%M} UTC"
                )
                last_report = time.monotonic()
        engine.dispose()
        replayed = time.monotonic() - started

        # live: the desk follows real time; the scheduler syncs, alerts and delivers
        driver = threading.Thread(target=self._drive, args=(desk,), name="demo-clock", daemon=True)
        driver.start()
        self._threads.append(driver)
        inbox = Inbox([webhook_key])
        app = create_app(settings)
        app.include_router(inbox_router(inbox))
        app.state.demo_inbox = inbox
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            server_header=False,
            log_level="warning",
            timeout_graceful_shutdown=3,
        )
        web = ThreadedServer(config, web_sock, name="demo-web")
        web.start()
        self._servers.append(web)
        token = ""
        if not public_read:
            token = "?token=" + _dashboard_token(settings)
        self.urls = {
            "dashboard": f"{base}/{token}",
            "inbox": f"{base}/demo/inbox{token}",
            "api": f"{base}/api/v1/tickets",
            "openapi": f"{base}/api/v1/openapi.json",
        }
        # the dashboard's analytics are computed now, before the scheduler's first alert
        # evaluation competes for the same interpreter: the first visit finds them ready
        _warm_up(self.urls["dashboard"])
        self.scheduler = start_scheduler(settings, background=True)
        self.ready_seconds = time.monotonic() - started
        log.info("demo ready", extra={"replay_seconds": round(replayed, 1)})

    def _drive(self, desk: SimulatedDesk) -> None:
        """Move the desk's clock with real time and keep live calls queued."""
        while not self.stop_event.wait(0.5):
            try:
                desk.top_up_live(ahead=timedelta(seconds=60))
                desk.advance_to(datetime.now(UTC))
            except Exception:
                log.exception("the simulated desk failed; it stops changing")
                return

    def _handle_signals(self) -> None:
        """Ctrl-C and SIGTERM stop the demo (also during the replay, and when the shell that
        started it ignores SIGINT)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: self.stop_event.set())

    def wait(self) -> None:
        """Block until Ctrl-C or SIGTERM."""
        self._handle_signals()
        while not self.stop_event.wait(0.5):
            for server in self._servers:
                if not server.thread.is_alive():
                    self.say(f"the {server.thread.name} server stopped; stopping the demo")
                    self.stop_event.set()

    def stop(self) -> None:
        self.stop_event.set()
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()


def _warm_up(url: str) -> None:
    try:
        httpx.get(url, timeout=120)
    except httpx.HTTPError as e:  # the visitor's own request computes it then
        log.warning("dashboard warm-up failed: %s", e)


def _dashboard_token(settings: Settings) -> str:
    from app.security import ALL_CHARTS, EmbedSigner

    signer = EmbedSigner.from_settings(settings.api)
    assert signer is not None
    grant = signer.mint(
        charts=[ALL_CHARTS], pins={}, lifetime=signer.max_lifetime, now=datetime.now(UTC)
    )
    return grant.token
