"""Flow-analytics benchmark (not a test).

    python -m bench.bench_analytics [--tickets N] [--seed N] [--runs N] [--cache DIR]
                                    [--shared-data DIR] [--skip-synthetic] [--skip-pm4py]
                                    [--json PATH]

Two parts, each in a fresh child process so that one part's memory never shows in another:

1. **Full analytics on a synthetic desk** (``analytics.synthetic``: ``--tickets`` tickets, about
   8 events each, realistic distributions). The frames are generated once and cached as a pickle
   under ``--cache``; the measuring process loads them, then times ``prepare_log`` followed by
   ``flow_report`` (every metric: stale calls, all blockers, workload and takeover, ping-pong and
   handovers, time in state and team with business time, bottlenecks, aging WIP and pace, lead and
   cycle times, throughput per day and week, WIP, cumulative flow, arrivals/departures, flow
   efficiency, rates). Each of ``--runs`` runs starts from the canonical frames (nothing cached
   between runs). Reported: wall and CPU seconds per run, the peak resident memory of the process
   while the analytics run (sampled every 5 ms, input frames included) and the memory the loaded
   frames themselves hold.

2. **Time in status on BPIC 2013 vs PM4Py**, in one process on the same log: the incidents file
   read with ``connectors.eventlog.read_event_log``; both get its 56,885 status changes. Ours =
   ``prepare_log`` (ticket frame + the status events in canonical form) followed by
   ``time_in_values(field="status")`` (time per ticket and status); PM4Py =
   ``pm4py.discover_performance_dfg`` (aggregation ``all``) on the same events as a PM4Py event
   log (case, activity, timestamp), the frame built before its timer starts. After one warm-up
   each, ``--runs`` runs alternate so that all see the same machine load. A second figure
   compares like with like on prepared logs: our ``time_in_values`` on a freshly prepared
   ``TicketLog`` (its intervals built inside the timer) against PM4Py on its formatted frame.
   Totals agree when, per status, the sum over outgoing
   directly-follows edges of PM4Py's ``sum`` equals our time in that status over closed
   intervals (the last, still running interval of each ticket has no successor in a DFG).

Needs the ``bench`` extra (``pm4py``, ``psutil``). The load average is printed with the
figures: other processes on the machine slow the wall-clock times down.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = Path(os.environ.get("TICKETFLOW_BENCH_CACHE", "/tmp/ticketflow-bench"))
DEFAULT_SHARED = Path(os.environ.get("TICKETFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
BPIC2013 = "bpic2013_incidents.csv.gz"
NOW_2013 = pd.Timestamp("2012-06-01T00:00:00Z")


class PeakRss:
    """Samples the process's resident set size in a thread; ``peak`` is the highest seen."""

    def __init__(self, interval: float = 0.005) -> None:
        self.process = psutil.Process()
        self.interval = interval
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB ({n / 1e9:.2f} GB)"


def _release_freed_memory() -> None:
    """Hand memory freed by the unpickler back to the OS (glibc), so that the resident size
    before a run is what the frames really hold."""
    gc.collect()
    with contextlib.suppress(OSError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def warehouse_frames(
    tickets: pd.DataFrame, events: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The frames as ``app.warehouse.reads`` hands them over: the same columns as categoricals."""
    from app.warehouse.reads import EVENT_CATEGORIES, TICKET_CATEGORIES, as_categories

    return (
        as_categories(tickets, TICKET_CATEGORIES, sorted_by=("source",)),
        as_categories(events, EVENT_CATEGORIES, sorted_by=("source", "ticket_id")),
    )


# --- part 1: synthetic ---------------------------------------------------------------------


def generate(n: int, seed: int, path: Path) -> None:
    from analytics.synthetic import synthetic_desk

    started = time.perf_counter()
    desk = synthetic_desk(n, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        pickle.dump(desk, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    print(
        f"generated {n:,} tickets, {len(desk.events):,} events in "
        f"{time.perf_counter() - started:.0f} s -> {path}",
        file=sys.stderr,
    )


def measure_synthetic(path: Path, runs: int) -> dict[str, Any]:
    from analytics.log import prepare_log
    from analytics.report import flow_report

    with path.open("rb") as f:
        desk = pickle.load(f)
    # the canonical frames as the warehouse read hands them over (categorical text columns)
    tickets, events = warehouse_frames(desk.tickets, desk.events)
    now = desk.now
    del desk
    _release_freed_memory()
    process = psutil.Process()
    baseline = process.memory_info().rss
    out: dict[str, Any] = {
        "tickets": len(tickets),
        "events": len(events),
        "rss_with_frames": baseline,
        "runs": [],
    }
    for _ in range(runs):
        _release_freed_memory()
        load_before = os.getloadavg()[0]
        with PeakRss() as rss:
            wall, cpu = time.perf_counter(), time.process_time()
            log = prepare_log(tickets, events)
            prepared_wall = time.perf_counter() - wall
            report = flow_report(log, now=now)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        sizes = {name: r.n for name, r in report.results().items()}
        out["runs"].append(
            {
                "wall_s": wall,
                "cpu_s": cpu,
                "prepare_wall_s": prepared_wall,
                "peak_rss": rss.peak,
                "load_avg_1m_before": load_before,
                "load_avg_1m_after": os.getloadavg()[0],
            }
        )
        out["sample_sizes"] = sizes
        out["open_tickets"] = report.aging_wip.n
        del log, report
    # one more run, untimed, tracing allocations: the memory the analytics themselves hold at
    # their peak, on top of the input frames
    _release_freed_memory()
    tracemalloc.start()
    log = prepare_log(tickets, events)
    flow_report(log, now=now)
    out["traced_peak"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out


# --- part 2: BPIC 2013 vs PM4Py ---------------------------------------------------------------


def measure_pm4py(shared: Path, runs: int) -> dict[str, Any]:
    import pm4py

    from analytics.intervals import field_intervals
    from analytics.log import prepare_log
    from analytics.timein import time_in_values
    from connectors.config import EventLogSourceConfig
    from connectors.eventlog import read_event_log
    from connectors.statusmap import default_status_map

    config = EventLogSourceConfig(name="bpic2013", kind="eventlog", format="bpic2013")
    imported = read_event_log(
        shared / BPIC2013, config=config, status_map=default_status_map("bpic2013")
    )
    # the canonical frames as the warehouse read hands them over (categorical text columns)
    tickets, events = warehouse_frames(imported.tickets, imported.events)
    status = events[events["field"] == "status"]
    log_frame = pd.DataFrame(
        {
            "case:concept:name": status["ticket_id"].to_numpy(dtype=object),
            "concept:name": status["new_value"].to_numpy(dtype=object),
            "time:timestamp": status["occurred_at"].to_numpy(),
        }
    )
    log_frame["time:timestamp"] = pd.to_datetime(log_frame["time:timestamp"], utc=True)

    status = status.reset_index(drop=True)

    def ours() -> pd.DataFrame:
        log = prepare_log(tickets, status)
        return time_in_values(log, field="status", now=NOW_2013).frame

    def ours_query(log: Any) -> pd.DataFrame:
        # on a freshly prepared log: its intervals are built inside the timer
        return time_in_values(log, field="status", now=NOW_2013).frame

    def theirs() -> dict[tuple[str, str], dict[str, float]]:
        dfg, _start, _end = pm4py.discover_performance_dfg(
            log_frame,
            case_id_key="case:concept:name",
            activity_key="concept:name",
            timestamp_key="time:timestamp",
            perf_aggregation_key="all",
        )
        return dict(dfg)

    def timed(fn: Any, *args: Any) -> tuple[float, float, Any]:
        gc.collect()
        started, cpu = time.perf_counter(), time.process_time()
        result = fn(*args)
        return time.perf_counter() - started, time.process_time() - cpu, result

    ours(), theirs()  # warm-up
    load_before = os.getloadavg()[0]
    # interleaved, so that all three see the same load on a shared machine
    wall: dict[str, list[float]] = {"ours": [], "query": [], "pm4py": []}
    cpu: dict[str, list[float]] = {"ours": [], "query": [], "pm4py": []}
    for _ in range(runs):
        w, c, our_frame = timed(ours)
        wall["ours"].append(w)
        cpu["ours"].append(c)
        fresh = prepare_log(tickets, status)
        w, c, _ = timed(ours_query, fresh)
        wall["query"].append(w)
        cpu["query"].append(c)
        w, c, dfg = timed(theirs)
        wall["pm4py"].append(w)
        cpu["pm4py"].append(c)

    # totals per status: ours over closed intervals = all time - the running interval up to now
    # (in seconds: the totals span more than the 292 years a nanosecond timedelta can hold)
    per_status = our_frame["time"].dt.total_seconds().groupby(our_frame["value"]).sum()
    intervals = field_intervals(prepare_log(tickets, status), "status")
    running = intervals[intervals["end"].isna()]
    open_part = (NOW_2013 - running["start"]).dt.total_seconds().groupby(running["value"]).sum()
    closed = per_status.sub(open_part, fill_value=0.0)
    theirs_total: dict[str, float] = {}
    for (a, _b), stats in dfg.items():
        theirs_total[a] = theirs_total.get(a, 0.0) + float(stats["sum"])
    statuses = sorted(set(closed.index) | set(theirs_total))
    diffs = [abs(float(closed.get(s, 0.0)) - theirs_total.get(s, 0.0)) for s in statuses]
    return {
        "events": len(events),
        "status_events": len(status),
        "tickets": len(tickets),
        "ours_s": wall["ours"],
        "ours_query_s": wall["query"],
        "pm4py_s": wall["pm4py"],
        "ours_cpu_s": cpu["ours"],
        "ours_query_cpu_s": cpu["query"],
        "pm4py_cpu_s": cpu["pm4py"],
        "ratio_median": _ratio(wall["pm4py"], wall["ours"]),
        "ratio_of_pairs_median": statistics.median(
            b / a for a, b in zip(wall["ours"], wall["pm4py"], strict=True)
        ),
        "query_ratio_median": _ratio(wall["pm4py"], wall["query"]),
        "cpu_ratio_median": _ratio(cpu["pm4py"], cpu["ours"]),
        "cpu_query_ratio_median": _ratio(cpu["pm4py"], cpu["query"]),
        "statuses": len(statuses),
        "max_abs_diff_s": max(diffs),
        "total_ours_s": float(closed.sum()),
        "total_pm4py_s": float(sum(theirs_total.values())),
        "load_avg_1m_before": load_before,
        "load_avg_1m_after": os.getloadavg()[0],
        "pm4py_version": pm4py.__version__,
    }


def _ratio(theirs: list[float], ours: list[float]) -> float:
    return statistics.median(theirs) / statistics.median(ours)


# --- driver --------------------------------------------------------------------------------


def _child(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_analytics", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    sys.stderr.write(done.stderr)
    if done.returncode:
        raise SystemExit(f"child {' '.join(args)} failed with exit status {done.returncode}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--shared-data", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--skip-pm4py", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--measure-synthetic", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--measure-pm4py", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.generate:
        generate(args.tickets, args.seed, args.generate)
        print("{}")
        return 0
    if args.measure_synthetic:
        print(json.dumps(measure_synthetic(args.measure_synthetic, args.runs)))
        return 0
    if args.measure_pm4py:
        print(json.dumps(measure_pm4py(args.shared_data, args.runs)))
        return 0

    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}",
        "versions": {"pandas": pd.__version__, "numpy": np.__version__},
    }
    if not args.skip_synthetic:
        cached = args.cache / f"synthetic-{args.tickets}-{args.seed}.pickle"
        if not cached.exists():
            _child(
                "--generate", str(cached), "--tickets", str(args.tickets), "--seed", str(args.seed)
            )
        syn = _child("--measure-synthetic", str(cached), "--runs", str(args.runs))
        results["synthetic"] = syn
        walls = [r["wall_s"] for r in syn["runs"]]
        cpus = [r["cpu_s"] for r in syn["runs"]]
        peaks = [r["peak_rss"] for r in syn["runs"]]
        print(
            f"synthetic: {syn['tickets']:,} tickets, {syn['events']:,} events "
            f"({syn['open_tickets']:,} open at now)"
        )
        print(
            f"  full analytics wall s per run: {', '.join(f'{w:.2f}' for w in walls)} "
            f"(median {statistics.median(walls):.2f})"
        )
        print(f"  cpu s per run: {', '.join(f'{c:.2f}' for c in cpus)}")
        prepares = ", ".join(f"{r['prepare_wall_s']:.2f}" for r in syn["runs"])
        print(f"  prepare_log wall s: {prepares}")
        print(f"  peak RSS while running: {_gib(max(peaks))}")
        print(f"  RSS with the frames loaded, before running: {_gib(syn['rss_with_frames'])}")
        print(f"  peak memory allocated by the analytics (tracemalloc): {_gib(syn['traced_peak'])}")
        loads = ", ".join(f"{r['load_avg_1m_before']:.1f}" for r in syn["runs"])
        print(f"  load average (1 min) before runs: {loads}")
    if not args.skip_pm4py:
        pm = _child(
            "--measure-pm4py", "--shared-data", str(args.shared_data), "--runs", str(args.runs)
        )
        results["pm4py"] = pm
        print(
            f"BPIC 2013: {pm['tickets']:,} tickets, {pm['events']:,} events "
            f"({pm['status_events']:,} status changes)"
        )
        for label, key in (
            ("ours, from canonical frames (prepare_log + time_in_values)", "ours"),
            ("ours, on a prepared log (intervals + time_in_values)", "ours_query"),
            ("PM4Py performance DFG", "pm4py"),
        ):
            print(f"  {label}:")
            print(f"    wall s: {', '.join(f'{t:.4f}' for t in pm[key + '_s'])}")
            print(f"    cpu s:  {', '.join(f'{t:.4f}' for t in pm[key + '_cpu_s'])}")
        print(
            f"  ratio from canonical frames (median PM4Py / median ours): wall "
            f"{pm['ratio_median']:.1f}x (median of paired runs "
            f"{pm['ratio_of_pairs_median']:.1f}x), "
            f"cpu {pm['cpu_ratio_median']:.1f}x"
        )
        print(
            f"  ratio on prepared logs: wall {pm['query_ratio_median']:.1f}x, "
            f"cpu {pm['cpu_query_ratio_median']:.1f}x"
        )
        print(
            f"  totals: ours {pm['total_ours_s']:,.0f} s, PM4Py {pm['total_pm4py_s']:,.0f} s, "
            f"max difference per status {pm['max_abs_diff_s']:.6f} s over "
            f"{pm['statuses']} statuses"
        )
        print(f"  load average (1 min) before: {pm['load_avg_1m_before']:.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
