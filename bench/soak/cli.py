"""The soak's command line: ``python -m bench.soak --help``."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from .report import render_markdown, to_json
from .result import DEFAULT_PG_URL, SoakOptions
from .run import run_soak

_RESULTS = Path(__file__).resolve().parent.parent / "results"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Soak test: a real modelway serve under a long mixed load (streams, abandoned streams, "
        "failovers, errors) with RSS, descriptors and tasks sampled every second, and every usage record checked.",
    )
    ap.add_argument("--requests", type=int, default=50_000, help="requests in all (default 50,000)")
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite",
                    help="the store: SQLite in the scratch directory (default), or PostgreSQL at MODELWAY_BENCH_PG "
                    f"(default {DEFAULT_PG_URL}) in a schema of its own, dropped afterwards")  # fmt: skip
    ap.add_argument("--warmup", type=int, help="warm-up requests, part of --requests (default 10%%, 100-5,000)")
    ap.add_argument("--seed", type=int, default=20261122, help="seed of the order of the mix")
    ap.add_argument("--drain", type=float, default=45.0,
                    help="seconds to wait at the end for the idle upstream connections to close (0: skip; "
                    "default 45)")  # fmt: skip
    ap.add_argument("--out", type=Path, metavar="FILE",
                    help="markdown report (default bench/results/soak-<db>.md; JSON next to it)")  # fmt: skip
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory and the PostgreSQL schema")
    return ap


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.requests < 200 or args.concurrency < 1:
        print("error: --requests must be at least 200 and --concurrency at least 1", file=sys.stderr)
        return 2
    out_md: Path = args.out or _RESULTS / f"soak-{args.db}.md"
    out_md.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f}s] {msg}", flush=True)

    opts = SoakOptions(
        requests=args.requests,
        concurrency=args.concurrency,
        db=args.db,
        seed=args.seed,
        warmup=args.warmup,
        drain=args.drain,
        keep=args.keep,
        command="python -m bench.soak " + " ".join(sys.argv[1:] if argv is None else argv),
        say=say,
    )
    old = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        res = run_soak(opts)
    except KeyboardInterrupt:
        print("\ninterrupted: every child process was stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, old)
    md = render_markdown(res)
    out_md.write_text(md)
    out_md.with_suffix(".json").write_text(to_json(res))
    print("\n" + md)
    print(f"written: {out_md} and {out_md.with_suffix('.json')}")
    return 0 if res.passed else 1
