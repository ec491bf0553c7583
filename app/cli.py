"""The ``ticketflow`` command line."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.errors import ConfigError, TicketflowError, WarehouseError
from app.importer import ImportSummary, import_log
from app.logs import configure_logging
from app.settings import Settings, load_settings
from app.warehouse import (
    current_revision,
    head_revision,
    make_engine,
    read_sync_states,
    read_unknown_statuses,
    upgrade,
)
from app.warehouse.stats import SourceTotals, warehouse_totals
from connectors.base import TicketType
from connectors.errors import ConnectorError

if TYPE_CHECKING:
    from app.sync import SourceResult

__all__ = ["app", "main"]

app = typer.Typer(
    name="ticketflow",
    help="Ticket-flow analytics for IT service desks.",
    epilog=(
        "Start here: `ticketflow demo` runs everything on a simulated service desk. "
        "Your own desk: write ticketflow.toml (README: Configuration), then "
        "`ticketflow sync` and `ticketflow serve`. Help on a command: "
        "`ticketflow COMMAND --help`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Warehouse schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")

# piped output (logs, CI, scripts) gets wide tables instead of rich's 80-column default
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)


class _State:
    config: Path | None = None


@app.callback()
def _root(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="TOML config file (default: $TICKETFLOW_CONFIG, else ./ticketflow.toml).",
        ),
    ] = None,
) -> None:
    _State.config = config


def _settings() -> Settings:
    settings = load_settings(_State.config)
    configure_logging(settings.logging.level, settings.logging.format)
    return settings


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[object]:
    """A rich progress bar on a terminal; None (logs only) otherwise."""
    if not enabled:
        yield None
        return
    with Progress(
        TextColumn("{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        yield bar


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the warehouse migrations (also done on first use of an empty database)."""
    settings = _settings()
    engine = make_engine(settings.warehouse.url, ensure=False)
    upgrade(engine)
    out.print(f"warehouse at revision {current_revision(engine)} ({engine.url!r})")


@db_app.command("current")
def db_current() -> None:
    """Show the warehouse's schema revision and the one this version needs."""
    settings = _settings()
    engine = make_engine(settings.warehouse.url, ensure=False)
    out.print(f"database: {current_revision(engine) or 'empty'}; code: {head_revision()}")


@app.command(
    "import-log",
    epilog=(
        "Examples:\n\n"
        "  ticketflow import-log bpic2013_incidents.csv.gz --format bpic2013 --source volvo\n\n"
        "  ticketflow import-log export.csv --source mydesk   # a configured csv source"
    ),
)
def import_log_command(
    path: Annotated[
        Path | None, typer.Argument(help="The log file (.csv or .csv.gz).", show_default=False)
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", "-f", help="bpic2013, bpic2014, helpdesk or csv."),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option("--source", "-s", help="Source name (configured or new; default: file name)."),
    ] = None,
    ticket_type: Annotated[
        TicketType | None, typer.Option("--ticket-type", help="Type of every ticket in the log.")
    ] = None,
    timezone: Annotated[
        str | None, typer.Option("--timezone", help="IANA zone of naive timestamps.")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Import nothing if any row cannot be read.")
    ] = False,
) -> None:
    """Import an exported event log into the warehouse, then print a summary."""
    settings = _settings()
    with _progress_bar(sys.stderr.isatty()) as bar:
        tasks: dict[str, object] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if bar is None:
                return
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)  # type: ignore[attr-defined]
            bar.update(tasks[phase], completed=done)  # type: ignore[attr-defined]

        summary = import_log(
            settings,
            path=path,
            fmt=fmt,
            source=source,
            strict=strict,
            overrides={"ticket_type": ticket_type, "timezone": timezone},
            progress=progress,
        )
    print_summary(summary)


def print_summary(summary: ImportSummary) -> None:
    """The end-of-run summary: tickets, events, unknown statuses, skipped rows."""
    t = summary.tickets
    table = Table(title=f"import of {summary.path.name} into source `{summary.source}`")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("detail")
    table.add_row("rows read", f"{summary.rows_read:,}", f"format {summary.format}")
    table.add_row(
        "tickets",
        f"{t.total:,}",
        f"{t.inserted:,} new, {t.updated:,} changed, {t.unchanged:,} unchanged",
    )
    table.add_row(
        "events",
        f"{summary.events_read:,}",
        f"{summary.events_inserted:,} new, "
        f"{summary.events_read - summary.events_inserted:,} already stored",
    )
    unknown = sum(summary.unknown_statuses.values())
    table.add_row(
        "unknown statuses",
        f"{len(summary.unknown_statuses):,}",
        ", ".join(f"{k!r} x{v}" for k, v in summary.unknown_statuses.items())
        + (f" -> mapped to {summary.unknown_mapped_to}" if unknown else ""),
    )
    if summary.unknown_activities:
        table.add_row(
            "unknown activities",
            f"{len(summary.unknown_activities):,}",
            ", ".join(f"{k!r} x{v}" for k, v in summary.unknown_activities.items()),
        )
    table.add_row(
        "skipped rows",
        f"{len(summary.skipped):,}",
        "; ".join(f"{reason} x{n}" for reason, n in summary.skipped_by_reason().items()),
    )
    for note, n in summary.notes.items():
        table.add_row("note", f"{n:,}", note)
    table.add_row("time", f"{summary.seconds:.1f} s", "")
    out.print(table)
    for row in summary.skipped[:10]:
        out.print(f"  skipped line {row.line}: {row.reason}")
    if len(summary.skipped) > 10:
        out.print(f"  ... and {len(summary.skipped) - 10} more")


@app.command(
    "sync",
    epilog=("Examples:\n\n  ticketflow sync\n\n  ticketflow sync --source servicedesk --full"),
)
def sync_command(
    source: Annotated[
        str | None,
        typer.Option("--source", "-s", help="Only this source (default: every network source)."),
    ] = None,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Re-read every ticket, not only those changed since the last sync; stored "
            "tickets the complete scan no longer finds are marked deleted.",
        ),
    ] = False,
) -> None:
    """Pull new and changed tickets from the helpdesk sources into the warehouse.

    Each page of tickets commits together with the source's cursor, so an interrupted sync
    loses nothing: run it again and it continues. Exits 1 when any source failed.
    """
    import logging

    from app.sync import sync_sources

    settings = _settings()
    if source is None and not any(s.kind != "eventlog" for s in settings.sources):
        raise ConfigError(
            [
                (
                    "sources",
                    "no helpdesk source is configured: add a [[sources]] table to "
                    "ticketflow.toml (README: Configuration), or try `ticketflow demo`",
                )
            ]
        )
    interactive = sys.stderr.isatty()
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)
    if interactive:
        logging.getLogger("app.sync").setLevel(logging.WARNING)  # the bar shows progress
    with _progress_bar(interactive) as bar:
        tasks: dict[str, object] = {}

        def progress(name: str, pages: int, incidents: int, done: bool) -> None:
            if bar is None:
                return
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=None)  # type: ignore[attr-defined]
            bar.update(  # type: ignore[attr-defined]
                tasks[name],
                completed=incidents,
                total=incidents if done else None,
                description=f"{name} p{pages}",
            )

        results = sync_sources(settings, source=source, full=full, progress=progress)
    print_sync_summary(results)
    if any(r.status == "error" for r in results):
        sys.exit(1)


def print_sync_summary(results: list[SourceResult]) -> None:
    """One row per source: outcome, pages, tickets, events, requests, time, cursor."""
    table = Table(title="sync")
    for col in ("source", "status", "pages", "received", "new", "changed", "events"):
        table.add_column(col, justify="left" if col in ("source", "status") else "right")
    table.add_column("requests", justify="right")
    table.add_column("time", justify="right")
    table.add_column("cursor (UTC)")
    for r in results:
        status = r.status + (" (full)" if r.full and r.status == "ok" else "")
        style = {"ok": "", "error": "red", "skipped": "dim"}[r.status]
        table.add_row(
            r.source,
            f"[{style}]{status}[/{style}]" if style else status,
            str(r.pages),
            f"{r.incidents:,}",
            f"{r.tickets.inserted:,}",
            f"{r.tickets.updated:,}",
            f"{r.events_inserted:,}",
            f"{r.requests:,}" + (f" ({r.retries} retried)" if r.retries else ""),
            f"{r.seconds:.1f} s",
            (r.cursor or "")[:19].replace("T", " "),
        )
    out.print(table)
    for r in results:
        if r.message:
            (err if r.status == "error" else out).print(
                f"{r.source}: {r.message}", highlight=False, markup=False
            )
        if r.deleted:
            out.print(
                f"{r.source}: {r.deleted:,} stored tickets are no longer in the tool: "
                "marked deleted (left out of lists and analytics)",
                highlight=False,
                markup=False,
            )
        if r.deletions_refused:
            err.print(f"warning: {r.source}: {r.deletions_refused}", highlight=False, markup=False)


def _state_text(state: dict[str, Any]) -> str:
    """The last run's outcome; a run whose last page was not final is running or was killed."""
    status = str(state.get("last_status") or "")
    details = state.get("details") or {}
    if status == "ok" and isinstance(details, dict) and details.get("state") == "running":
        return "interrupted or running (resumes from its cursor)"
    return status


def _stored_tickets(totals: SourceTotals | None) -> str:
    if totals is None:
        return "0"
    live = totals.tickets - totals.deleted
    return f"{live} (+{totals.deleted} deleted)" if totals.deleted else str(live)


@app.command("sources")
def sources_command() -> None:
    """Show each source: configured kind, last run, cursor, the last run's counts, what the
    warehouse holds; then last errors, warnings and unknown statuses."""
    settings = _settings()
    engine = make_engine(settings.warehouse.url)
    with engine.connect() as conn:
        states = {s["source"]: s for s in read_sync_states(conn)}
        unknown = read_unknown_statuses(conn)
        totals = warehouse_totals(conn)
    configured = {s.name: s.kind for s in settings.sources}
    table = Table(title="sources")
    columns = (
        "source",
        "kind",
        "last run",
        "status",
        "cursor",
        "tickets seen",
        "new events",
        "skipped",
        "stored tickets",
        "stored events",
    )
    for col in columns:
        table.add_column(col, no_wrap=col in ("cursor", "last run"))
    for name in sorted(set(configured) | set(states)):
        st = states.get(name, {})
        run = st.get("last_run_at")
        table.add_row(
            name + ("" if name in configured else " (not in config)"),
            configured.get(name) or st.get("kind", ""),
            run.strftime("%Y-%m-%d %H:%M:%S UTC") if run else "never",
            _state_text(st),
            str(st.get("cursor") or ""),
            str(st.get("tickets_seen", "")),
            str(st.get("events_inserted", "")),
            str(st.get("rows_skipped", "")),
            _stored_tickets(totals.get(name)),
            str(totals[name].events if name in totals else 0),
        )
    out.print(table)
    for name in sorted(states):
        if states[name].get("last_error"):
            out.print(f"error: {name}: {states[name]['last_error']}", highlight=False, markup=False)
    for name in sorted(states):
        details = states[name].get("details") or {}
        warnings = list(details.get("warnings") or []) if isinstance(details, dict) else []
        if isinstance(details, dict) and details.get("deletions_refused"):
            warnings.append(details["deletions_refused"])
        for warning in warnings:
            out.print(f"warning: {name}: {warning}", highlight=False, markup=False)
    if unknown:
        out.print("unknown statuses (kept raw, mapped to the fallback; add them to status_map):")
        for u in unknown:
            out.print(
                f"  {u['source']}: {u['raw_status']!r} -> {u['mapped_to']} "
                f"({u['last_count']} rows in the last run)"
            )


@app.command(
    "worker",
    epilog="Examples:\n\n  ticketflow worker\n\n  ticketflow worker --once   # e.g. from cron",
)
def worker_command(
    once: Annotated[
        bool, typer.Option("--once", help="Run every due job once, then exit.")
    ] = False,
) -> None:
    """Run the scheduler: sync, analytics and alerts per source schedule, and webhook delivery.

    With several replicas on one PostgreSQL warehouse, one holds the leader lock and schedules;
    the others wait as standbys and take over when it stops. Stops on SIGTERM or Ctrl-C.
    """
    from app.scheduler import start_scheduler

    settings = _settings()
    handle = start_scheduler(settings, once=once)
    handle.wait()


@app.command(
    "serve",
    epilog=(
        "Examples:\n\n"
        "  ticketflow serve\n\n"
        "  ticketflow --config prod.toml serve --host 0.0.0.0 --port 8080 --workers 4"
    ),
)
def serve_command(
    host: Annotated[
        str | None, typer.Option("--host", help="Address to listen on (default: api.host).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port to listen on (default: api.port).")
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Worker processes (each has its own cache).")
    ] = 1,
) -> None:
    """Run the REST API, the charts and the dashboard (uvicorn)."""
    import os

    import uvicorn

    from app.main import create_app

    settings = _settings()
    bind_host, bind_port = host or settings.api.host, port or settings.api.port
    scheduler = None
    if settings.schedule.in_serve:  # [schedule] in_serve: the scheduler runs beside the API
        from app.scheduler import start_scheduler

        scheduler = start_scheduler(settings, background=True)
    # access_log off: the app logs each request itself, without the query string (tokens);
    # log_config None keeps ticketflow's logging set-up
    if workers > 1:
        if _State.config is not None:
            os.environ["TICKETFLOW_CONFIG"] = str(_State.config)
        uvicorn.run(
            "app.main:create_app_from_environment",
            factory=True,
            workers=workers,
            host=bind_host,
            port=bind_port,
            access_log=False,
            log_config=None,
            server_header=False,
        )
    else:
        uvicorn.run(
            create_app(settings),
            host=bind_host,
            port=bind_port,
            access_log=False,
            log_config=None,
            server_header=False,
        )
    if scheduler is not None:
        scheduler.stop()


@app.command(
    "demo",
    epilog=(
        "Examples:\n\n"
        "  ticketflow demo                       # http://127.0.0.1:8000/\n\n"
        "  ticketflow demo --port 8080 --speed 5 # faster live desk on another port\n\n"
        "  ticketflow demo --reset --db /tmp/demo.db"
    ),
)
def demo_command(
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port of the dashboard and API.")
    ] = 8000,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to listen on. On loopback everything is readable without a key; "
            "elsewhere the printed dashboard link carries a signed token.",
        ),
    ] = "127.0.0.1",
    db: Annotated[
        Path,
        typer.Option(
            "--db",
            help="The demo's SQLite warehouse; an earlier demo's file there is replaced.",
        ),
    ] = Path("ticketflow-demo.db"),
    speed: Annotated[
        float,
        typer.Option(
            "--speed",
            min=0.1,
            max=100.0,
            help="Pace of the live desk: 1 = a new call every ~9 s and a simulated minute "
            "per second; 5 = five times that.",
        ),
    ] = 1.0,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the simulated desk (same seed, same calls).")
    ] = 1,
    reset: Annotated[
        bool,
        typer.Option(
            "--reset",
            help="Replace the file at --db even if it is not a demo database.",
        ),
    ] = False,
    history_days: Annotated[
        float,
        typer.Option(
            "--history-days", min=1, max=120, help="Days of history the desk starts with."
        ),
    ] = 42.0,
    replay_steps: Annotated[
        int,
        typer.Option(
            "--replay-steps",
            min=1,
            max=5000,
            help="Syncs that replay the history (more: finer history, slower start).",
        ),
    ] = 80,
) -> None:
    """Run the whole product on a simulated service desk: no helpdesk or set-up needed.

    A generator of realistic calls (weeks of history, then live calls) is served as a
    TOPdesk-compatible API on loopback; the real TOPdesk connector syncs it into a SQLite
    warehouse; the scheduler syncs, evaluates alerts and delivers them to a built-in webhook
    inbox every 10 s; the dashboard, charts and API are served. Prints the URLs once the
    first sync has landed. Stops on Ctrl-C. The config file is not used.
    """
    import logging

    from app.demo.run import Demo, DemoOptions

    configure_logging("WARNING", "text")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    demo = Demo(
        DemoOptions(
            host=host,
            port=port,
            db=db,
            speed=speed,
            seed=seed,
            reset=reset,
            history_days=history_days,
            steps=replay_steps,
        ),
        say=lambda text: err.print(text, highlight=False, markup=False),
    )
    try:
        demo.start()
        if not demo.stop_event.is_set():  # not stopped during the replay
            u = demo.urls
            out.print(
                "\n[bold]ticketflow demo is running[/bold] "
                f"(ready in {demo.ready_seconds:.0f} s; the simulated desk keeps working)\n"
                f"  dashboard      {u['dashboard']}\n"
                f"  webhook inbox  {u['inbox']}\n"
                f"  API            {u['api']}  (schema: {u['openapi']})\n"
                f"  warehouse      {db}\n"
                "  stop           Ctrl-C\n"
                'Point it at your own helpdesk: see docs/demo.md, "From the demo to your desk".',
                highlight=False,
                soft_wrap=True,
            )
            demo.wait()
    finally:
        demo.stop()
    err.print("demo stopped", highlight=False)


def _one_line(text: object) -> str:
    """A message on one line (driver errors span several; their "Background" link is noise)."""
    lines = [line.strip() for line in str(text).splitlines()]
    return " ".join(x for x in lines if x and not x.startswith("(Background on this error"))


def _config_hint(e: ConfigError) -> str:
    keys = [key for key, _reason in e.problems]
    if "config file" in keys:
        return "; pass an existing TOML file with --config, or fix TICKETFLOW_CONFIG"
    if all(key.startswith("--") or "README" in reason for key, reason in e.problems):
        return ""  # these say what to do themselves
    return "; fix these keys in the config file or the environment (README: Configuration)"


def _fail(message: str, code: int) -> None:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def main() -> None:
    """Entry point: run the CLI, turning every error into ONE line that says what to do.

    Exit codes: 2 usage and configuration errors, 1 other failures (warehouse, helpdesk,
    import), 130 interrupted.
    """
    from sqlalchemy.exc import DBAPIError
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

    try:
        app(standalone_mode=False, prog_name="ticketflow")
    except ConfigError as e:
        _fail(_one_line(e) + _config_hint(e), 2)
    except WarehouseError as e:
        text = _one_line(e)
        if text.startswith("cannot open warehouse"):
            text += (
                "; check [warehouse] url (or TICKETFLOW_WAREHOUSE_URL) and that the database "
                "server is running"
            )
        _fail(text, 1)
    except (TicketflowError, ConnectorError) as e:
        _fail(_one_line(e), 1)
    except DBAPIError as e:  # a command that reached the database without make_engine's check
        _fail(
            f"the warehouse failed: {_one_line(e.orig or e)}; check [warehouse] url "
            "(or TICKETFLOW_WAREHOUSE_URL) and that the database server is running",
            1,
        )
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted")
        sys.exit(130)
    except NoArgsIsHelpError as e:
        e.show()  # the help text itself
        sys.exit(0)
    except UsageError as e:
        path = e.ctx.command_path.split()[1:] if e.ctx is not None else []
        command = " ".join(["ticketflow", *path])
        _fail(f"{_one_line(e.format_message())} (see `{command} --help`)", 2)
    except ClickException as e:
        _fail(_one_line(e.format_message()), e.exit_code)


if __name__ == "__main__":
    main()
