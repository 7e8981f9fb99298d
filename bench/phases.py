"""The phases beyond the main table: memory at 1,000 concurrent streams, start-up, and ``--workers 2``."""

from __future__ import annotations

import re
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .measure import MB, wrk_with_cpu
from .payloads import chat_body
from .procs import cpu_seconds, rss_bytes, tree_pids
from .profile import Profile, record_during
from .targets import Context, modelway_config, start_modelway, start_upstream
from .wrk import WrkResult, run_wrk

__all__ = [
    "ScaleResult",
    "StartupResult",
    "WorkersResult",
    "measure_scale",
    "measure_startup",
    "measure_workers",
    "raise_nofile",
]

Say = Callable[[str], None]


def raise_nofile(want: int = 65536) -> int:
    """Raise the soft open-files limit (inherited by the children) as far as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


# -- memory at scale ---------------------------------------------------------------------------------------------------
@dataclass
class ScaleResult:
    streams: int  # concurrent client connections, each one stream after another
    chunk_delay_ms: float
    seconds: float
    rss_idle_mb: float  # just started
    rss_base_mb: float  # after a small warm-up: the baseline the growth is measured from
    rss_peak_mb: float
    rss_after_mb: float  # 1 s after the load stopped
    run: WrkResult  # through modelway
    peak_client_conns: int  # established connections to modelway (sampled every 100 ms)
    peak_upstream_conns: int  # established connections from modelway to the upstream
    direct: WrkResult | None  # the same load straight at the slow upstream: the stream time to compare with
    cpu_percent: float  # modelway's CPU during the run, percent of one core
    profile: Profile | None = None  # py-spy during a second, identical run (``--profile``)

    @property
    def growth_mb(self) -> float:
        return self.rss_peak_mb - self.rss_base_mb


def established(port: int) -> int:
    """Established TCP connections whose local port is ``port`` (server side), from /proc/net/tcp."""
    want = f":{port:04X} "
    n = 0
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split(None, 4)
                if parts[3] == "01" and (parts[1] + " ").endswith(want):
                    n += 1
    except OSError:
        pass
    return n


@dataclass
class _Peaks:
    rss: int = 0
    clients: int = 0
    upstream: int = 0


def _sample(pid: int, port: int, upstream_port: int, stop: threading.Event, peaks: _Peaks) -> None:
    while not stop.wait(0.1):
        peaks.rss = max(peaks.rss, rss_bytes(pid))
        peaks.clients = max(peaks.clients, established(port))
        peaks.upstream = max(peaks.upstream, established(upstream_port))


def measure_scale(
    ctx: Context,
    *,
    streams: int,
    chunk_delay_ms: float,
    seconds: float,
    say: Say,
    direct: bool = True,
    profile_dir: Path | None = None,
) -> ScaleResult:
    """modelway in front of a slow upstream (one event per ``chunk_delay_ms``), ``streams`` concurrent streams."""
    say(f"slow upstream ({chunk_delay_ms:g} ms per event) + modelway")
    slow, slow_port = start_upstream(ctx.procs, "upstream-slow", chunk_delay_ms=chunk_delay_ms)
    server = start_modelway(ctx, config=modelway_config(ctx, slow_port), name="modelway-scale")
    assert server.child is not None
    body = chat_body(stream=True)

    def load(port: int, connections: int, secs: float) -> WrkResult:
        return run_wrk(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            body,
            connections=connections,
            seconds=secs,
            headers=server.headers,
            script_dir=ctx.work,
            check_stream=True,
            timeout_s=30,
        )

    try:
        idle = rss_bytes(server.pid)
        say("warm-up: 32 streams")
        load(server.port, 32, 2)
        time.sleep(0.5)
        base = rss_bytes(server.pid)
        say(f"{streams} concurrent streams through modelway for {seconds:g}s")
        stop = threading.Event()
        peaks = _Peaks()
        sampler = threading.Thread(target=_sample, args=(server.pid, server.port, slow_port, stop, peaks), daemon=True)
        sampler.start()
        cpu0, t0 = cpu_seconds(server.pid), time.perf_counter()
        try:
            run = load(server.port, streams, seconds)
        finally:
            cpu = (cpu_seconds(server.pid) - cpu0) / (time.perf_counter() - t0) * 100
            stop.set()
            sampler.join(5)
        time.sleep(1.0)
        after = rss_bytes(server.pid)
        prof = None
        if profile_dir is not None:
            say(f"py-spy record during another {streams}-stream run")
            try:
                prof = record_during(
                    server.pid,
                    lambda: load(server.port, streams, seconds + 2),
                    seconds=seconds,
                    raw=profile_dir / "profile-modelway-scale.txt",
                    label=f"modelway, {streams} concurrent slow streams ({chunk_delay_ms:g} ms per event)",
                )
            except RuntimeError as exc:
                say(f"profile FAILED: {exc}")
        ctx.procs.stop(server.child)
        ref = None
        if direct:
            say(f"{streams} concurrent streams straight to the slow upstream for {seconds:g}s (reference)")
            ref = load(slow_port, streams, seconds)
        return ScaleResult(
            streams=streams,
            chunk_delay_ms=chunk_delay_ms,
            seconds=seconds,
            rss_idle_mb=idle / MB,
            rss_base_mb=base / MB,
            rss_peak_mb=peaks.rss / MB,
            rss_after_mb=after / MB,
            run=run,
            peak_client_conns=peaks.clients,
            peak_upstream_conns=peaks.upstream,
            direct=ref,
            cpu_percent=cpu,
            profile=prof,
        )
    finally:
        ctx.procs.stop(server.child)
        ctx.procs.stop(slow)


# -- start-up ----------------------------------------------------------------------------------------------------------
@dataclass
class StartupResult:
    import_ms: float  # median in-process time of ``import modelway`` in a fresh interpreter
    import_runs_ms: list[float]
    import_server_ms: float  # ``import modelway.server`` (what a server worker needs)
    by_package: list[tuple[str, float]]  # (top-level package, self ms) from ``python -X importtime``
    heaviest: list[tuple[str, float]]  # (module, self ms)
    ready_s: float  # median seconds from ``modelway serve`` spawn until /health/readiness answers 200
    ready_runs_s: list[float] = field(default_factory=list)


_TIMER = "import time; t = time.perf_counter(); import {mod}; print(time.perf_counter() - t)"
_IMPORTTIME = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def import_ms(python: str, module: str, runs: int, env: dict[str, str]) -> list[float]:
    out = []
    for _ in range(runs):
        proc = subprocess.run(
            [python, "-c", _TIMER.format(mod=module)], capture_output=True, text=True, timeout=120, env=env
        )
        if proc.returncode != 0:
            raise RuntimeError(f"import {module} failed:\n{proc.stderr[-2000:]}")
        out.append(float(proc.stdout.strip().splitlines()[-1]) * 1000)
    return out


def _importtime(
    python: str, module: str, env: dict[str, str], top: int = 8
) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """From ``python -X importtime -c 'import module'``: (self ms summed per top-level package, heaviest modules by
    self ms). importtime's own overhead inflates the absolute numbers; the shares are what matter."""
    proc = subprocess.run(
        [python, "-X", "importtime", "-c", f"import {module}"], capture_output=True, text=True, timeout=120, env=env
    )
    per_package: dict[str, float] = {}
    modules: list[tuple[str, float]] = []
    for line in proc.stderr.splitlines():
        m = _IMPORTTIME.match(line)
        if m:
            name, self_ms = m.group(4), int(m.group(1)) / 1000
            pkg = name.split(".", 1)[0].lstrip("_")
            per_package[pkg] = per_package.get(pkg, 0.0) + self_ms
            modules.append((name, self_ms))
    by_package = sorted(per_package.items(), key=lambda r: -r[1])[:top]
    modules.sort(key=lambda r: -r[1])
    return by_package, modules[:top]


def measure_startup(ctx: Context, *, runs: int, say: Say) -> StartupResult:
    say(f"import modelway x{runs}")
    env = ctx.procs.python_env()
    runs_ms = import_ms(sys.executable, "modelway", runs, env)
    server_ms = statistics.median(import_ms(sys.executable, "modelway.server", max(3, runs // 2), env))
    by_package, heaviest = _importtime(sys.executable, "modelway", env)
    ready: list[float] = []
    for i in range(max(3, runs // 2)):
        say(f"modelway serve until ready, run {i + 1}")
        server = start_modelway(ctx, name=f"modelway-start{i}", timeout=30)
        ready.append(server.ready_s)
        assert server.child is not None
        ctx.procs.stop(server.child)
    return StartupResult(
        statistics.median(runs_ms), runs_ms, server_ms, by_package, heaviest, statistics.median(ready), ready
    )


# -- workers -----------------------------------------------------------------------------------------------------------
@dataclass
class WorkersRun:
    workers: int
    json_c32: WrkResult
    cpu_ms_per_req: float | None
    stream_c32: WrkResult
    rss_idle_mb: float
    worker_cpu_share: list[float]  # share of the non-stream run's CPU per worker process (balance)


@dataclass
class WorkersResult:
    runs: list[WorkersRun]

    def ratio(self) -> float | None:
        one = next((r for r in self.runs if r.workers == 1), None)
        two = next((r for r in self.runs if r.workers == 2), None)
        if one is None or two is None or not one.json_c32.rps:
            return None
        return two.json_c32.rps / one.json_c32.rps


def _worker_cpu(pid: int) -> dict[int, float]:
    pids = tree_pids(pid)
    leaves = [p for p in pids if p != pid] or [pid]
    return {p: cpu_seconds(p) for p in leaves}


def _median_rps(runs: list[WrkResult]) -> WrkResult:
    return sorted(runs, key=lambda r: r.rps)[(len(runs) - 1) // 2]


def measure_workers(ctx: Context, *, seconds: float, warmup: float, rounds: int, say: Say) -> WorkersResult:
    """``--workers 1`` and ``--workers 2`` side by side, measured in alternation ``rounds`` times (medians)."""
    servers = []
    try:
        for n in (1, 2):
            say(f"starting modelway --workers {n}")
            servers.append(start_modelway(ctx, workers=n, name=f"modelway-w{n}"))
        time.sleep(1.0)  # let every worker finish starting
        idle = [rss_bytes(s.pid) / MB for s in servers]
        for s in servers:
            url = f"http://127.0.0.1:{s.port}/v1/chat/completions"
            run_wrk(url, chat_body(), connections=32, seconds=warmup, headers=s.headers, script_dir=ctx.work)
        json_runs: list[list[WrkResult]] = [[], []]
        cpus: list[list[float]] = [[], []]
        stream_runs: list[list[WrkResult]] = [[], []]
        used: list[dict[int, float]] = [{}, {}]
        for rnd in range(1, rounds + 1):
            for i, s in enumerate(servers):
                say(f"round {rnd}/{rounds}: --workers {i + 1}, c=32 non-stream and streams, {seconds:g}s each")
                before = _worker_cpu(s.pid)
                run, cpu = wrk_with_cpu(s, chat_body(), connections=32, seconds=seconds, work=ctx.work, stream=False)
                after = _worker_cpu(s.pid)
                for p, t in after.items():
                    used[i][p] = used[i].get(p, 0.0) + t - before.get(p, 0.0)
                json_runs[i].append(run)
                if cpu is not None:
                    cpus[i].append(cpu)
                srun, _ = wrk_with_cpu(
                    s, chat_body(stream=True), connections=32, seconds=seconds, work=ctx.work, stream=True
                )
                stream_runs[i].append(srun)
        out = []
        for i in range(2):
            total = sum(used[i].values()) or 1.0
            shares = sorted((u / total for u in used[i].values() if u / total >= 0.01), reverse=True)
            out.append(
                WorkersRun(
                    i + 1,
                    _median_rps(json_runs[i]),
                    statistics.median(cpus[i]) if cpus[i] else None,
                    _median_rps(stream_runs[i]),
                    idle[i],
                    shares,
                )
            )
        return WorkersResult(out)
    finally:
        for s in servers:
            if s.child is not None:
                ctx.procs.stop(s.child)
