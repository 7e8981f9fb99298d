"""``python -m bench``: start the upstream, measure every target and phase, write the report, stop every child."""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from .limits_phase import measure_limits
from .machine import background_cpu_percent, machine_info
from .measure import MB, Live, Plan, RowResult, measure_rows
from .payloads import MODEL
from .phases import (
    measure_scale,
    measure_startup,
    measure_workers,
    raise_nofile,
    scale_event_ms,
    scale_seconds,
)
from .procs import ProcessTable, rss_bytes
from .profile import profile_server, py_spy
from .report import RunResult, render_markdown, to_json
from .targets import TARGETS, Context, Server, start_modelway, start_server, start_upstream, unavailable, warm_bytecode
from .wrk import wrk_path

__all__ = ["main"]

_PHASES = ("scale", "startup", "workers", "limits")
_RESULTS = Path(__file__).resolve().parent / "results"


def _parser() -> argparse.ArgumentParser:
    names = ", ".join([t.name for t in TARGETS] + list(_PHASES))
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark modelway against a direct call, nginx, a minimal Python proxy and (opt-in) LiteLLM "
        "and Portkey, "
        "with a fast fake upstream, wrk and a raw-socket TTFB client. Everything runs on 127.0.0.1.",
    )
    ap.add_argument("--quick", action="store_true", help="one round of short runs: a smoke test, not numbers to quote")
    ap.add_argument("--only", metavar="LIST", help=f"comma-separated targets and phases to run, out of: {names}")
    ap.add_argument("--duration", type=float, metavar="S", help="seconds per c=32 wrk run (default 3, --quick 2)")
    ap.add_argument(
        "--rounds", type=int, metavar="N", help="times each row is measured, interleaved (default 3, --quick 1)"
    )
    ap.add_argument(
        "--with-litellm",
        action="store_true",
        help="also measure LiteLLM's proxy (installed on first use into bench/.venv-litellm)",
    )
    ap.add_argument(
        "--with-portkey",
        action="store_true",
        help="also measure Portkey's gateway (npm-installed on first use into bench/.portkey, run on Node 22)",
    )
    ap.add_argument("--streams", type=int, default=10_000, help="concurrent streams in the scale phase (default 10000)")
    ap.add_argument(
        "--scale-event-ms",
        type=float,
        metavar="MS",
        help="gap between the slow upstream's stream events in the scale phase (default 100 up to 1000 streams, "
        "then 100 x streams / 1000: the upstream sends 10,000 events/s; 1000 ms for 10,000 streams)",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="also record modelway under c=32 load with py-spy and list what costs the time",
    )
    ap.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="markdown report path (default bench/results/latest.md; JSON next to it)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory (configs, child logs)")
    ap.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="another checkout of modelway (e.g. a `git worktree` of the commit before a change): adds the rows "
        "baseline and baseline+cp, the modelway rows served by its code, measured side by side",
    )
    return ap


def _select(args: argparse.Namespace) -> tuple[list[str], set[str], bool, bool]:
    """(target names, phase names, with_litellm, with_portkey) from ``--only``, ``--with-litellm`` and
    ``--with-portkey``."""
    known = [t.name for t in TARGETS]
    if not args.only:
        return known, set(_PHASES), bool(args.with_litellm), bool(args.with_portkey)
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    bad = [w for w in wanted if w not in known and w not in _PHASES]
    if bad:
        raise SystemExit(f"error: unknown --only name(s): {', '.join(bad)} (known: {', '.join(known + list(_PHASES))})")
    return (
        [n for n in known if n in wanted],
        {w for w in wanted if w in _PHASES},
        args.with_litellm or ("litellm" in wanted),
        args.with_portkey or ("portkey" in wanted),
    )


class _Progress:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self, label: str) -> Callable[[str], None]:
        def say(msg: str) -> None:
            print(f"[{time.perf_counter() - self.t0:6.1f}s] {label}: {msg}", flush=True)

        return say


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _rows(ctx: Context, names: list[str], plan: Plan, progress: _Progress) -> list[RowResult]:
    """Start every wanted server (idle RSS right after its start), measure all rows together, stop the servers."""
    rows: list[RowResult] = []
    lives: list[Live] = []
    servers: dict[str, Server | None] = {}  # None: failed to start
    try:
        for target in (t for t in TARGETS if t.name in names):
            say = progress(target.name)
            row = RowResult(target.name, target.description)
            rows.append(row)
            row.skipped = unavailable(target, ctx)
            if row.skipped is not None:
                say(f"skipped: {row.skipped}")
                continue
            if target.server not in servers:
                say("starting")
                try:
                    server = servers[target.server] = start_server(target.server, ctx)
                except Exception as exc:
                    servers[target.server] = None
                    row.failed = f"start: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                    say(f"FAILED to start: {exc}")
                    continue
                row.ready_s = server.ready_s or None
                row.rss_idle_mb = rss_bytes(server.pid) / MB
                say(f"ready in {server.ready_s:.2f}s ({server.version}), {row.rss_idle_mb:.1f} MB")
            started = servers[target.server]
            if started is None:
                row.failed = "start failed (see the row above)"
                continue
            row.version = started.version
            lives.append(Live(target, started, row))
        measure_rows(lives, plan, ctx.work, progress)
    finally:
        for running in servers.values():
            if running is not None and running.child is not None:
                ctx.procs.stop(running.child)
    return rows


def _profile(ctx: Context, res: RunResult, out_dir: Path, say: Callable[[str], None]) -> None:
    """py-spy on a fresh modelway under c=32 non-stream and stream load (``--profile``)."""
    if py_spy() is None:
        res.notes.append("profile skipped: py-spy is not installed (.venv/bin/pip install py-spy)")
        say("skipped: py-spy is not installed")
        return
    server = start_modelway(ctx, name="modelway-profile")
    assert server.child is not None
    seconds = 2.0 if res.plan.rounds == 1 and res.plan.seconds <= 2 else 5.0
    try:
        for stream in (False, True):
            say(f"py-spy record, {'stream' if stream else 'non-stream'} c=32, {seconds:g}s")
            prof = profile_server(
                server, MODEL, seconds=seconds, out_dir=out_dir, work=ctx.work, name="modelway", stream=stream
            )
            res.profiles.append(prof)
    except Exception as exc:
        res.notes.append(f"profile failed: {exc}")
        say(f"FAILED: {exc}")
    finally:
        ctx.procs.stop(server.child)


def _run(
    args: argparse.Namespace,
    res: RunResult,
    ctx: Context,
    names: list[str],
    phases: set[str],
    progress: _Progress,
    out_dir: Path,
) -> None:
    plan = res.plan
    res.rows = _rows(ctx, names, plan, progress)
    if args.profile:
        _profile(ctx, res, out_dir, progress("profile"))

    def scale() -> None:
        event_ms = args.scale_event_ms or scale_event_ms(args.streams)
        run_s, ref_s = scale_seconds(args.streams, event_ms, args.quick)
        res.scale = measure_scale(
            ctx,
            streams=args.streams,
            chunk_delay_ms=event_ms,
            seconds=run_s,
            direct_seconds=ref_s,
            say=progress("scale"),
            profile_dir=out_dir if args.profile and py_spy() else None,
        )
        if res.scale.profile is not None:
            res.profiles.append(res.scale.profile)

    def startup() -> None:
        res.startup = measure_startup(ctx, runs=5 if args.quick else 9, say=progress("startup"))

    def workers() -> None:
        res.workers = measure_workers(
            ctx, seconds=plan.seconds, warmup=plan.warmup, rounds=plan.rounds, say=progress("workers")
        )

    def limits() -> None:
        res.limits = measure_limits(ctx, say=progress("limits"))

    phase_runs: list[tuple[str, Callable[[], None]]] = [
        ("scale", scale),
        ("startup", startup),
        ("workers", workers),
        ("limits", limits),
    ]
    for name, fn in phase_runs:
        if name not in phases:
            continue
        try:
            fn()
        except Exception as exc:
            progress(name)(f"FAILED: {exc}")
            res.notes.append(f"{name} failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    names, phases, with_litellm, with_portkey = _select(args)
    if args.baseline is not None and not (args.baseline / "src" / "modelway").is_dir():
        print(f"error: --baseline {args.baseline}: no src/modelway there", file=sys.stderr)
        return 2
    if wrk_path() is None:
        print("error: wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    if args.duration is not None and args.duration < 1:
        print("error: --duration must be at least 1 second", file=sys.stderr)
        return 2
    if args.rounds is not None and args.rounds < 1:
        print("error: --rounds must be at least 1", file=sys.stderr)
        return 2
    seconds = args.duration or (2.0 if args.quick else 3.0)
    plan = Plan(
        seconds=seconds,
        latency_seconds=min(seconds, 1.0 if args.quick else 2.0),
        ttfb_seconds=1.0 if args.quick else 1.5,
        warmup=1.0 if args.quick else 2.0,
        rounds=args.rounds or (1 if args.quick else 3),
    )
    out_md = args.out or _RESULTS / "latest.md"
    out_md.parent.mkdir(parents=True, exist_ok=True)
    nofile = raise_nofile()
    progress = _Progress()
    say = progress("setup")
    say(f"open-files limit {nofile}; measuring background CPU for 1 s")
    res = RunResult(
        command=" ".join(["python -m bench", *map(shlex.quote, sys.argv[1:] if argv is None else argv)]),
        started=dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        machine=machine_info(),
        background_cpu=background_cpu_percent(),
        plan=plan,
    )
    if res.background_cpu > 10:
        say(f"WARNING: the machine is already {res.background_cpu:.0f}% busy; numbers will be noisy")
        res.notes.append(f"the machine was {res.background_cpu:.0f}% busy before the run: numbers are noisy")
    work = Path(tempfile.mkdtemp(prefix="modelway-bench-"))
    procs = ProcessTable(work)
    old = signal.signal(signal.SIGTERM, _on_sigterm)
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    rc = 0
    try:
        say("caching the bytecode of the servers' modules")
        warm_bytecode(procs)
        say("starting the fake upstream")
        upstream, port = start_upstream(procs)
        baseline = args.baseline.resolve() if args.baseline is not None else None
        ctx = Context(
            procs, work, port, upstream, with_litellm=with_litellm, with_portkey=with_portkey, baseline=baseline
        )
        _run(args, res, ctx, names, phases, progress, out_md.parent)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every child process", file=sys.stderr)
        rc = 130
    except Exception:
        traceback.print_exc()
        rc = 1
    finally:
        procs.stop_all()
        signal.signal(signal.SIGTERM, old)
        signal.signal(signal.SIGINT, old_int)
        res.wall_s = time.perf_counter() - progress.t0
        if rc == 1 or args.keep:
            print(f"scratch directory (configs, child logs) kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if rc == 130:
        return rc
    md = render_markdown(res)
    out_md.write_text(md)
    out_md.with_suffix(".json").write_text(to_json(res))
    print("\n" + md)
    print(f"written: {out_md} and {out_md.with_suffix('.json')} ({res.wall_s:.0f} s)")
    return rc
