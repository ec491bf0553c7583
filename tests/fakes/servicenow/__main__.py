"""Serve a generated fake ServiceNow instance on loopback until killed (used by benchmarks)::

    python -m tests.fakes.servicenow --port 0 --incidents 100000 --audit-rows 1000000 --seed 1

(``--cache DIR`` keeps the generated instance as a pickle and starts from it next time); it
prints ``listening http://127.0.0.1:PORT`` once it accepts connections.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import sys
import time
from pathlib import Path

import uvicorn

from tests.fakes import bind_loopback, uvicorn_config
from tests.fakes.servicenow.instance import SAVE_VERSION
from tests.fakes.servicenow.server import FakeServiceNow
from tests.fakes.servicenow.wire import Recorded


class _Discard(list[Recorded]):
    """A request log that keeps nothing (long benchmark runs)."""

    def append(self, item: Recorded) -> None:
        pass


def _code_digest() -> str:
    """A digest of the code that shapes a generated instance (a changed generator or rule makes
    a new cache file instead of reusing a stale one)."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for name in ("generate.py", "records.py", "instance.py", "schema.py", "store.py"):
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:12]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake ServiceNow instance.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--audit-rows", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--username", default="integration.user")
    parser.add_argument("--password", default="sn-pass-Qw3-secret")
    parser.add_argument("--client-id", default=None)
    parser.add_argument("--client-secret", default=None)
    parser.add_argument("--rate-limit", type=int, default=None)
    parser.add_argument("--audit-inserts", action="store_true")
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="directory for a pickle of the generated instance (reused by later starts)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    fake = FakeServiceNow(
        username=args.username,
        password=args.password,
        client_id=args.client_id,
        client_secret=args.client_secret,
        rate_limit=args.rate_limit,
    )
    fake.audit_inserts = args.audit_inserts
    gc.disable()
    cached = None
    if args.cache is not None:
        args.cache.mkdir(parents=True, exist_ok=True)
        cached = args.cache / (
            f"servicenow-{args.incidents}-{args.audit_rows}-{args.seed}"
            f"-{int(args.audit_inserts)}-v{SAVE_VERSION}-{_code_digest()}.pickle"
        )
    loaded = cached is not None and cached.exists()
    if cached is not None and loaded:
        fake.load(cached)
    else:
        fake.generate(args.incidents, audit_rows=args.audit_rows, seed=args.seed)
        if cached is not None:
            fake.save(cached)
    fake.warm()
    gc.enable()
    gc.freeze()
    fake.requests = _Discard()
    sock = bind_loopback(args.port)
    print(  # noqa: T201
        f"{'loaded' if loaded else 'generated'}"
        f" {args.incidents} incidents, {len(fake.tables['sys_audit'].rows)} audit rows"
        f" in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    print(f"listening http://127.0.0.1:{sock.getsockname()[1]}", flush=True)  # noqa: T201
    uvicorn.Server(uvicorn_config(fake)).run(sockets=[sock])


if __name__ == "__main__":
    main()
