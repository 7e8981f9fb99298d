"""Crash and restart, long form: SIGKILL a real ``modelway serve`` again and again in the middle of a burst, restart
it each time on the same config, and count: no usage record may be lost for a request that was answered, and none
may be stored twice.

    python -m bench.crash --requests 2000 --kills 5 --db sqlite
    python -m bench.crash --requests 2000 --kills 5 --db postgres [--pg-url postgresql://u@host/db]

One worker over the OpenAI simulator (streams and non-streams, some of them slow, ``--concurrency`` at a time, each
with its own ``x-request-id``), a store (SQLite in a temporary directory, or a PostgreSQL schema of its own, dropped
at the end; the URL defaults to ``MODELWAY_TEST_PG_URL``, else the test suite's default) and the usage journal in
its default place. After each ``1/(kills+1)`` of the requests answered, the server is SIGKILLed; no request is sent
until it has restarted and is ready (the requests in flight at the kill fail). The restart must have imported the
dead process's journal (no segment left). At the end the server gets SIGTERM (it must exit 0), and the store's
records are matched with the answers by request id. Prints requests sent, answered, records found, lost (must be 0)
and duplicated (must be 0); exits 1 otherwise. The short form runs in CI: ``tests/server/test_crash_restart.py``
(whose helper module, ``tests/server/crashkit.py``, this uses).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# the helper module of the short form (tests/server is not a package)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "server"))

from crashkit import (
    JOURNAL,
    Gateway,
    burst,
    burst_requests,
    burst_script,
    drop_schema,
    segments,
    stored,
    write_config,
)

from modelway.testing import OpenAISimulator

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Kill:
    pid: int
    segments_left: int  # journal segments of the killed process
    stored_before: int  # records in the store before the restart
    stored_after: int  # ... and once the restart is ready (the difference came from the journal)
    segments_after: int  # journal segments once the restart is ready (must be 0)
    restart_seconds: float


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.crash", description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--db", choices=["sqlite", "postgres"], required=True)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--pg-url", default=os.environ.get("MODELWAY_TEST_PG_URL", DEFAULT_PG_URL))
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, SQLite database)")
    args = ap.parse_args(argv)
    if args.requests < 1 or args.kills < 0 or args.concurrency < 1:
        ap.error("--requests and --concurrency must be positive, --kills not negative")
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # the simulator, when the gateway dies on it

    tmp = Path(tempfile.mkdtemp(prefix="modelway-crash-"))
    schema = None
    if args.db == "sqlite":
        url = f"sqlite:///{tmp / 'gw.db'}"
    else:
        schema = "mw_crash_" + secrets.token_hex(6)
        url = f"{args.pg_url}?schema={schema}"
    journal = tmp / JOURNAL
    kills: list[Kill] = []
    try:
        with OpenAISimulator() as sim:
            cfg = write_config(tmp, store_url=url, upstream=sim.base_url, upstream_key=sim.api_key)
            gw = Gateway(cfg, tmp)
            try:
                gw.start()
                sim.push(*burst_script(args.requests))

                def restart(pid: int) -> None:
                    left = sum(f"-{pid}-" in p.name for p in segments(journal))
                    before = sum(asyncio.run(stored(url))[0].values())
                    t0 = time.monotonic()
                    gw.start()
                    took = time.monotonic() - t0
                    after_segments = len(segments(journal))
                    after = sum(asyncio.run(stored(url))[0].values())
                    kills.append(Kill(pid, left, before, after, after_segments, took))

                requests = burst_requests(args.requests, "crash")
                every = args.requests / (args.kills + 1)
                t0 = time.monotonic()
                result = asyncio.run(
                    burst(
                        gw.url,
                        requests,
                        concurrency=args.concurrency,
                        kill_after=[round(every * (i + 1)) for i in range(args.kills)],
                        kill=gw.kill,
                        restart=restart,
                    )
                )
                elapsed = time.monotonic() - t0
                rc, stop_seconds = gw.terminate()
            finally:
                gw.stop()
        counts, outcomes = asyncio.run(stored(url))
    finally:
        if schema is not None:
            asyncio.run(drop_schema(args.pg_url, schema))

    answered = result.answered
    lost = sorted(rid for rid in answered if counts.get(rid, 0) == 0)
    duplicated = sorted(rid for rid, n in counts.items() if n > 1)
    wrong = sorted(rid for rid, st in answered.items() if rid in outcomes and outcomes[rid] != {(st, None)})
    unanswered_recorded = sum(1 for rid in counts if rid not in answered)
    statuses: dict[int, int] = {}
    for st in answered.values():
        statuses[st] = statuses.get(st, 0) + 1

    print(f"database:            {args.db} ({'SQLite file' if schema is None else 'PostgreSQL schema ' + schema})")
    print(
        f"requests sent:       {len(result.answers)} of {args.requests} ({args.concurrency} at a time, {elapsed:.1f} s)"
    )
    print(f"answered:            {len(answered)} (statuses {statuses})")
    cut = dict(result.errors())
    print(f"not answered:        {len(result.answers) - len(answered)} (cut or refused at a kill: {cut})")
    print(f"kills:               {len(result.killed)} (SIGKILL, pids {result.killed})")
    for i, k in enumerate(kills, 1):
        print(
            f"  kill {i}: pid {k.pid}, {k.segments_left} journal segment(s) left; records in the store "
            f"{k.stored_before} before the restart, {k.stored_after} once it was ready "
            f"(+{k.stored_after - k.stored_before} from the journal); segments left after it: {k.segments_after}; "
            f"restart {k.restart_seconds:.2f} s"
        )
    print(f"records found:       {sum(counts.values())} ({len(counts)} request ids)")
    print(f"  of answered:       {sum(1 for rid in answered if rid in counts)}")
    print(f"  of unanswered:     {unanswered_recorded} (counted before the kill cut their answer)")
    print(f"lost:                {len(lost)}" + (f" {lost[:10]}" if lost else ""))
    print(f"duplicated:          {len(duplicated)}" + (f" {duplicated[:10]}" if duplicated else ""))
    print(f"wrong outcome:       {len(wrong)}" + (f" {wrong[:10]}" if wrong else ""))
    print(f"final SIGTERM:       exit {rc} after {stop_seconds:.2f} s")
    leftover = [k for k in kills if k.segments_after]
    ok = not lost and not duplicated and not wrong and rc == 0 and not leftover and len(result.killed) == args.kills
    if args.keep or not ok:
        print(f"logs:                {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
