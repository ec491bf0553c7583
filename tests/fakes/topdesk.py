"""The fake TOPdesk of the tests and benchmarks: the demo's TOPdesk-compatible API
(``app.demo.topdesk_api``) plus test-only fault knobs and a random incident generator.

- knobs: ``fail_next(status)``, ``rate_limit_next(retry_after)``, ``slow_next(seconds)``,
  ``invalid_json_next()``, ``html_error_next()``; each may target a path and skip matching
  requests first (``skip=2`` hits the third); ``on_request`` runs a hook before each request is
  answered (to change incidents during a sync, or to kill the syncing process);
- ``generate(count, seed=, ties=)``: varied incidents over two years.

Run it as a server process (the benchmark does)::

    python -m tests.fakes.topdesk --port 8765 --incidents 100000 --seed 1
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx

from app.demo.topdesk_api import (
    API,
    API_OPERATOR,
    GROUPS,
    OPERATORS,
    PRIORITIES,
    STATUSES,
    Recorded,
    TopdeskApi,
    blank_incident,
    errors,
    fmt,
)

__all__ = [
    "API",
    "API_OPERATOR",
    "GROUPS",
    "OPERATORS",
    "PRIORITIES",
    "STATUSES",
    "FakeTopdesk",
    "Fault",
    "Recorded",
    "fmt",
]


@dataclass
class Fault:
    """One armed knob: what to answer instead, for which requests, how often."""

    kind: str
    times: int = 1
    path: str | None = None
    skip: int = 0
    status: int = 500
    retry_after: str | None = None
    seconds: float = 0.0

    def matches(self, path: str) -> bool:
        return self.path is None or path == self.path or path.startswith(self.path + "/")


class FakeTopdesk(TopdeskApi):
    """``TopdeskApi`` with fault knobs, an ``on_request`` hook and a random generator."""

    def __init__(
        self,
        *,
        username: str = "api-operator",
        password: str = "app-pass-Zx81-secret",
        version: str = "3.9.0",
        clock: datetime = datetime(2024, 3, 1, 8, 0, tzinfo=UTC),
        tick: timedelta = timedelta(seconds=1),
        max_page_size: int = 10_000,
        keep_requests: bool = True,
    ) -> None:
        super().__init__(
            username=username,
            password=password,
            version=version,
            clock=clock,
            tick=tick,
            max_page_size=max_page_size,
            keep_requests=keep_requests,
        )
        self.faults: list[Fault] = []
        self.on_request: Callable[[int, Recorded], None] | None = None

    def generate(self, count: int, *, seed: int = 1, ties: int = 0) -> None:
        """``count`` varied incidents over two years; with ``ties`` = k, consecutive groups of k
        incidents share one ``modificationDate`` (an hour apart)."""
        rng = random.Random(seed)
        base = self.clock
        statuses = list(STATUSES.values())
        with self.lock:
            for i in range(count):
                created = base + timedelta(seconds=rng.randrange(0, 2 * 365 * 86_400))
                modified = created + timedelta(seconds=rng.randrange(0, 30 * 86_400))
                if ties:
                    modified = base + timedelta(days=800, hours=i // ties)
                status = rng.choice(statuses)
                name = status["name"]
                group = rng.choice([*GROUPS.values(), None])
                self._counter += 1
                incident_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                incident = blank_incident(incident_id, f"I {created:%y%m} {i:05d}", created)
                incident.update(
                    briefDescription=f"generated incident {i}",
                    processingStatus=status,
                    operatorGroup=group,
                    operator=rng.choice([*OPERATORS.values(), None]) if group else None,
                    priority=rng.choice(list(PRIORITIES.values())),
                    onHold=name.startswith("Waiting"),
                    completed=name in ("Completed", "Closed", "Cancelled"),
                    closed=name in ("Closed", "Cancelled"),
                    modificationDate=fmt(modified),
                    targetDate=fmt(created + timedelta(days=3)),
                )
                self.incidents[incident_id] = incident
                self._mods[incident_id] = modified
            self._index = None
            self.clock = max([self.clock, *self._mods.values()])

    # --- knobs ----------------------------------------------------------------------------

    def _arm(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def fail_next(
        self, status: int = 500, *, times: int = 1, path: str | None = None, skip: int = 0
    ) -> None:
        """Answer the next matching request(s) with ``status`` and a TOPdesk error body."""
        self._arm(Fault("status", times=times, path=path, skip=skip, status=status))

    def rate_limit_next(
        self,
        retry_after: str | None = "1",
        *,
        times: int = 1,
        path: str | None = None,
        skip: int = 0,
    ) -> None:
        """Answer 429 with this ``Retry-After`` (seconds or an HTTP date; None: no header)."""
        self._arm(Fault("429", times=times, path=path, skip=skip, retry_after=retry_after))

    def slow_next(
        self, seconds: float, *, times: int = 1, path: str | None = None, skip: int = 0
    ) -> None:
        """Delay the answer. Under MockTransport a delay beyond the client's read timeout
        raises ``httpx.ReadTimeout`` after that timeout, as the real client would."""
        self._arm(Fault("slow", times=times, path=path, skip=skip, seconds=seconds))

    def invalid_json_next(self, *, times: int = 1, path: str | None = None, skip: int = 0) -> None:
        """Answer with a JSON content type and a cut-off body."""
        self._arm(Fault("invalid_json", times=times, path=path, skip=skip))

    def html_error_next(self, *, times: int = 1, path: str | None = None, skip: int = 0) -> None:
        """Answer status 200 with an HTML error page (what a proxy or login portal sends)."""
        self._arm(Fault("html", times=times, path=path, skip=skip))

    def _take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if not fault.matches(path):
                    continue
                if fault.skip:
                    fault.skip -= 1
                    continue
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
            return None

    def _before_answer(self, number: int, recorded: Recorded) -> None:
        if self.on_request is not None:
            self.on_request(number, recorded)

    def _intercept(self, request: httpx.Request, path: str) -> httpx.Response | None:
        fault = self._take_fault(path)
        if fault is None:
            return None
        return self._fault_response(fault, request)

    def _fault_response(self, fault: Fault, request: httpx.Request) -> httpx.Response | None:
        if fault.kind == "status":
            return errors(fault.status, f"Simulated error {fault.status}")
        if fault.kind == "429":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            return errors(429, "Too many requests", headers)
        if fault.kind == "invalid_json":
            return httpx.Response(
                206,
                content=b'[{"id": "a1b2", "number": "I 2403 017", "briefDescription": "VPN',
                headers={"Content-Type": "application/json"},
            )
        if fault.kind == "html":
            return httpx.Response(
                200,
                content=b"<!DOCTYPE html><html><head><title>Service unavailable</title></head>"
                b"<body><h1>503 Service Temporarily Unavailable</h1></body></html>",
                headers={"Content-Type": "text/html; charset=utf-8"},
            )
        if fault.kind == "slow":
            timeout = request.extensions.get("timeout", {}).get("read")
            if timeout is not None and fault.seconds > timeout:
                time.sleep(timeout)
                raise httpx.ReadTimeout("timed out (fake)", request=request)
            time.sleep(fault.seconds)
            return None
        raise AssertionError(fault.kind)


def main(argv: list[str] | None = None) -> None:
    """Serve a generated fake on loopback until killed (used by the benchmark)."""
    import uvicorn

    from tests.fakes import bind_loopback, uvicorn_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ties", type=int, default=0)
    parser.add_argument("--username", default="api-operator")
    parser.add_argument("--password", default="app-pass-Zx81-secret")
    args = parser.parse_args(argv)
    fake = FakeTopdesk(username=args.username, password=args.password, keep_requests=False)
    fake.generate(args.incidents, seed=args.seed, ties=args.ties)
    sock = bind_loopback(args.port)
    print(f"listening http://127.0.0.1:{sock.getsockname()[1]}", flush=True)  # noqa: T201
    uvicorn.Server(uvicorn_config(fake)).run(sockets=[sock])


if __name__ == "__main__":
    main()
