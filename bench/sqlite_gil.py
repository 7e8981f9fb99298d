"""A batch of usage rows into SQLite beside a busy event-loop thread: ``executemany`` against multi-row INSERTs.

``python -m bench.sqlite_gil [--batches 20] [--rows 500]``

sqlite3 gives up the GIL around every ``sqlite3_step``; ``executemany`` steps once per row, so a writer thread has
to win the GIL back from a thread running Python once per row (decision 36 in BENCHMARKS.md). This runs a thread
that spins in Python, as the event loop's thread does under load, and times batches written both ways from the
main thread, with the voluntary context switches they cost. It uses only sqlite3: the mechanism, not the gateway.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence

__all__ = ["main"]

_COLS = "rid, key_id, model, ts, prompt, completion, total, cost, deployment"
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?)"

Writer = Callable[[sqlite3.Connection, Sequence[tuple[object, ...]]], None]


def _open(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("PRAGMA synchronous=normal")
    conn.execute(f"CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, {_COLS}, UNIQUE (rid))")
    conn.execute("CREATE INDEX t_key ON t (key_id, ts)")
    conn.execute("CREATE INDEX t_ts ON t (ts)")
    return conn


def _many(conn: sqlite3.Connection, rows: Sequence[tuple[object, ...]]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(f"INSERT INTO t ({_COLS}) VALUES {_ROW}", rows)
    conn.execute("COMMIT")


def _multi(conn: sqlite3.Connection, rows: Sequence[tuple[object, ...]]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(f"INSERT INTO t ({_COLS}) VALUES {', '.join([_ROW] * len(rows))}", [v for r in rows for v in r])
    conn.execute("COMMIT")


def _run(write: Writer, path: str, batches: int, n: int) -> tuple[float, int, float]:
    """Median ms per batch, voluntary context switches, and the spinning thread's rounds per second."""
    conn = _open(path)
    stop = threading.Event()
    spins = 0

    def busy() -> None:
        nonlocal spins
        while not stop.is_set():
            x = 0
            for i in range(1000):
                x += i
            spins += 1

    spinner = threading.Thread(target=busy)
    spinner.start()
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    times = []
    for b in range(batches):
        rows = [(f"r{b}-{i}", "key_1", "bench-model", time.time(), 10, 20, 30, 1e-5, "openai/x") for i in range(n)]
        t = time.perf_counter()
        write(conn, rows)
        times.append(time.perf_counter() - t)
    stop.set()
    spinner.join()
    after = resource.getrusage(resource.RUSAGE_SELF)
    conn.close()
    return statistics.median(times) * 1e3, after.ru_nvcsw - before.ru_nvcsw, spins / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.sqlite_gil", description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=20, help="batches written each way (default 20)")
    ap.add_argument("--rows", type=int, default=500, help="rows per batch (default 500, the ledger's batch_size)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="modelway-sqlite-gil-") as tmp:
        print(f"{args.batches} batches of {args.rows} rows beside a thread spinning in Python:")
        for name, write in (("executemany", _many), ("multi-row INSERT", _multi)):
            ms, switches, spins = _run(write, os.path.join(tmp, f"{name.split()[0]}.db"), args.batches, args.rows)
            print(f"  {name:18} {ms:9.1f} ms per batch (median)  {switches:6} voluntary switches  {spins:8.0f} spins/s")


if __name__ == "__main__":
    main()
