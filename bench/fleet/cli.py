"""The fleet test's command line: ``python -m bench.fleet --help``."""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .report import render_markdown
from .rig import FleetOptions, nginx_path
from .run import RunOptions, run_fleet

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: the Redis database of the fleet's counters (keys are per run: other users of the database are not disturbed)
REDIS_DB = 10


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m bench.fleet",
        description="The fleet test: N modelway serve replicas behind nginx on one PostgreSQL and one Redis, under "
        "mixed load: limits, key and deployment changes, a SIGKILL, a rolling restart, every usage record.",
    )
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="per replica (default 2)")
    ap.add_argument("--duration", type=float, default=20.0,
                    help="seconds of each of the three sizing loads (0: no sizing; default 20)")  # fmt: skip
    ap.add_argument("--rps", type=float, default=80.0, help="the steady load's requests per second (default 80)")
    ap.add_argument("--sizing-rps", type=float, default=300.0,
                    help="the sizing loads' top rate: non-stream at half of it and at it, streams at half of it "
                    "(default 300)")  # fmt: skip
    ap.add_argument("--key-refresh", type=float, default=5.0, help="store.key_refresh (default 5, the fleet config's)")
    ap.add_argument("--rpm", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=1, help="rolling restarts of the whole fleet (default 1)")
    ap.add_argument("--pg-url", default=os.environ.get("MODELWAY_TEST_PG_URL"),
                    help=f"a PostgreSQL server (a database of its own is made there; default {DEFAULT_PG_URL}, or "
                    "a throwaway server when none runs there)")  # fmt: skip
    ap.add_argument("--redis-url", default=os.environ.get("MODELWAY_TEST_REDIS_URL"),
                    help=f"a Redis server (database {REDIS_DB} is used; default {DEFAULT_REDIS_URL}, or a throwaway "
                    "server)")  # fmt: skip
    ap.add_argument("--out", type=Path, help="write the markdown report there too")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, nginx access log)")
    return ap


def _listening(url: str, port: int) -> bool:
    u = urlsplit(url)
    try:
        socket.create_connection((u.hostname or "127.0.0.1", u.port or port), timeout=0.5).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _services(pg_url: str | None, redis_url: str | None) -> Iterator[tuple[str, str]]:
    """The servers to use: those given, else the machine's at the defaults, else throwaway ones (tests/throwaway.py),
    stopped at the end."""
    started = []
    pg = pg_url or DEFAULT_PG_URL
    redis = redis_url or DEFAULT_REDIS_URL
    try:
        if pg_url is None and not _listening(pg, 5432) or redis_url is None and not _listening(redis, 6379):
            sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
            import throwaway

            if pg_url is None and not _listening(pg, 5432):
                server = throwaway.start_postgres(throwaway.free_port())
                started.append(server)
                pg = server.url
            if redis_url is None and not _listening(redis, 6379):
                server = throwaway.start_redis(throwaway.free_port())
                started.append(server)
                redis = server.url
        yield pg, urlunsplit(urlsplit(redis)._replace(path=f"/{REDIS_DB}"))
    finally:
        for server in started:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.replicas < 2 or args.workers < 1:
        _parser().error("a fleet needs --replicas 2 or more and --workers 1 or more")
    if nginx_path() is None:
        print("nginx is not installed (apt-get install nginx)", file=sys.stderr)
        return 2
    command = "python -m bench.fleet " + " ".join(argv if argv is not None else sys.argv[1:])
    with _services(args.pg_url, args.redis_url) as (pg, redis):
        fleet = FleetOptions(pg, redis, replicas=args.replicas, workers=args.workers, key_refresh=args.key_refresh,
                             keep=args.keep)  # fmt: skip
        opts = RunOptions(fleet, rps=args.rps, sizing_seconds=args.duration, sizing_rps=args.sizing_rps,
                          rpm=args.rpm, rpm_sent=args.rpm + args.rpm // 2, rounds=args.rounds,
                          command=command.strip())  # fmt: skip
        run = run_fleet(opts, say=lambda msg: print(msg, file=sys.stderr, flush=True))
    report = render_markdown(run)
    print(report)
    if args.out is not None:
        args.out.write_text(report)
    return 1 if run.problems() else 0
