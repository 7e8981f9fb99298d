"""The phases beyond the main table: memory at 10,000 concurrent streams, start-up, and ``--workers 2``."""

from __future__ import annotations

import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
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
    """Raise the soft open-files limit (inherited by the children) as far as the hard limit allows (it cannot be
    raised without CAP_SYS_RESOURCE: in this sandbox it is 20,000 per process)."""
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
    ramp_s: float  # how long opening the connections took (steps of RAMP_STEP, see ``ramped_wrk``)
    peak_client_conns: int  # established connections to modelway (sampled, see ``conn_samples``)
    peak_upstream_conns: int  # established connections from modelway to the upstream
    direct: WrkResult | None  # the same load straight at the slow upstream: the stream time to compare with
    cpu_percent: float  # modelway's CPU during the run, percent of one core
    profile: Profile | None = None  # py-spy during a second, identical run (``--profile``)
    conn_samples: int = 0  # how many times the connections were counted during the run
    conn_count_ms: float = 0.0  # the slowest count (ss or /proc/net/tcp walks every socket of the machine)
    nofile: int = 0  # the open-files limit of every process (a server needs one per client and upstream socket)

    @property
    def growth_mb(self) -> float:
        return self.rss_peak_mb - self.rss_base_mb


def _count_ss(ss: str, ports: tuple[int, ...]) -> dict[int, int] | None:
    """Established connections per local port with ``ss`` (the kernel filters the sockets: sock_diag)."""
    flt = " or ".join(f"sport = :{p}" for p in ports)
    try:
        proc = subprocess.run(
            [ss, "-Htn", "state", "established", f"( {flt} )"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    seen: dict[int, set[str]] = {p: set() for p in ports}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        local, peer = parts[-2], parts[-1]
        port = int(local.rpartition(":")[2]) if local.rpartition(":")[2].isdigit() else -1
        if port in seen:
            seen[port].add(peer)
    return {p: len(peers) for p, peers in seen.items()}


def _count_proc(ports: tuple[int, ...]) -> dict[int, int]:
    """The same from /proc/net/tcp, one pass for every port; a connection is counted once even if the table
    changes while it is read (the kernel then lists some sockets twice)."""
    want = {f"{p:04X}": p for p in ports}
    seen: dict[int, set[str]] = {p: set() for p in ports}
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split(None, 4)
                if parts[3] == "01":
                    port = want.get(parts[1].rpartition(":")[2])
                    if port is not None:
                        seen[port].add(parts[2])
    except OSError:
        pass
    return {p: len(peers) for p, peers in seen.items()}


def established(*ports: int) -> dict[int, int]:
    """Established TCP connections per local (server-side) port: with ``ss`` if it is installed, else from
    /proc/net/tcp. Either walks every socket of the machine: ~0.1 s with 25,000 of them."""
    ss = shutil.which("ss")
    got = _count_ss(ss, ports) if ss else None
    return got if got is not None else _count_proc(ports)


@dataclass
class _Peaks:
    rss: int = 0
    clients: int = 0
    upstream: int = 0
    conn_samples: int = 0
    conn_count_s: float = 0.0


def _sample(pid: int, port: int, upstream_port: int, stop: threading.Event, peaks: _Peaks) -> None:
    """RSS every 100 ms; the connections at most every second and so that counting them takes at most a tenth of
    the time (it walks every socket, and this 2-core machine also runs the server, wrk and the upstream)."""
    next_count = 0.0
    while not stop.wait(0.1):
        peaks.rss = max(peaks.rss, rss_bytes(pid))
        now = time.perf_counter()
        if now < next_count:
            continue
        counts = established(port, upstream_port)
        took = time.perf_counter() - now
        peaks.conn_samples += 1
        peaks.conn_count_s = max(peaks.conn_count_s, took)
        peaks.clients = max(peaks.clients, counts[port])
        peaks.upstream = max(peaks.upstream, counts[upstream_port])
        next_count = now + max(1.0, 10 * took)


def scale_event_ms(streams: int) -> float:
    """The gap between the slow upstream's events: 100 ms up to 1,000 streams, then longer in proportion, so that
    the upstream sends 10,000 events/s whatever the number of streams. The fake upstream is one Python process: at
    10,000 streams and 100 ms it would have to write 100,000 events/s, which it cannot on this 2-core machine even
    alone (measured: its streams took 3.6-4.6 s instead of 2, and connections were dropped from its listen queue),
    and a gateway in front would have to relay them. With 1 s per event it holds 10,000 streams exactly: 10,000
    connections, p50 stream 20.07 s for 20 s of events, no error."""
    return max(100.0, 100.0 * streams / 1000)


def scale_seconds(streams: int, event_ms: float, quick: bool) -> tuple[float, float]:
    """(seconds of load through modelway, seconds of the reference straight at the slow upstream): 10 s each for
    1,000 streams of 2 s; longer streams need longer runs for one to complete (10,000 streams of 20 s: 30 s and
    25 s). ``--quick``: 5 s each for 1,000 streams, 25 s and 23 s for 10,000."""
    stream_s = 20 * event_ms / 1000
    if quick:
        return max(5.0, 1.25 * stream_s), max(5.0, stream_s + 3)
    return max(10.0, 1.5 * stream_s), max(10.0, stream_s + 5)


#: the scale load opens its connections in steps of this many (one wrk process each), at least this far apart, and
#: each step once the server's accept queue is empty again (waiting at most ``RAMP_MAX_WAIT_S``)
RAMP_STEP = 1000
RAMP_INTERVAL_S = 0.25
RAMP_MAX_WAIT_S = 5.0


def accept_queue(port: int) -> int | None:
    """Connections waiting in the accept queue of the listener on ``port`` (``ss -l``: Recv-Q), or None."""
    ss = shutil.which("ss")
    if ss is None:
        return None
    try:
        out = subprocess.run([ss, "-Hltn", f"( sport = :{port} )"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    queued = [int(p[1]) for p in (line.split() for line in out.splitlines()) if len(p) > 1 and p[1].isdigit()]
    return max(queued) if queued else None


@dataclass
class Ramped:
    run: WrkResult  # the runs of every step together
    ramp_s: float  # from the first step's start until the last one started


def ramped_wrk(
    url: str,
    body: bytes,
    *,
    connections: int,
    seconds: float,
    headers: Mapping[str, str],
    script_dir: Path,
    server_port: int | None = None,
) -> Ramped:
    """Stream load with ``connections`` connections, opened ``RAMP_STEP`` at a time, all of them kept for ``seconds``
    once the last step has started (every step is stopped then, with SIGINT).

    One wrk opens all its connections at once; 10,000 SYNs in a few milliseconds overflow the server's listen queue
    (the kernel caps it at net.core.somaxconn, 4,096 here; uvicorn asks for 2,048): the handshakes dropped wait for
    SYN retransmits (1, 3, 7, 15 s ...), those answered with a SYN cookie the server cannot take in end in resets
    (wrk read errors). That measures the kernel's queue and how soon a busy server gets round to ``accept``, not the
    streams it holds, so the connections arrive in steps: one wrk of 1,000 connections at a time, at least
    ``RAMP_INTERVAL_S`` apart, the next once the accept queue of ``server_port`` is empty again (at most
    ``RAMP_MAX_WAIT_S`` later). Their results are summed; p50 and p90 are request-weighted means of theirs, p99 and
    max the largest. Each stream is checked (``[DONE]``, no error event); wrk's per-request timeout is 60 s, as a
    stream waits for a pooled upstream connection and shares the server's CPU with thousands of others."""
    sizes = [min(RAMP_STEP, connections - i) for i in range(0, connections, RAMP_STEP)]

    stop = threading.Event()
    # a step runs until ``stop``, set ``seconds`` after the last step started (at most this long)
    longest = seconds + len(sizes) * (RAMP_INTERVAL_S + RAMP_MAX_WAIT_S) + 5

    def one(i: int, n: int) -> WrkResult:
        return run_wrk(
            url,
            body,
            connections=n,
            seconds=seconds if len(sizes) == 1 else longest,
            headers=headers,
            script_dir=script_dir,
            check_stream=True,
            timeout_s=60,
            tag=f"-ramp{i}",
            stop=None if len(sizes) == 1 else stop,
        )

    if len(sizes) == 1:
        return Ramped(one(0, sizes[0]), 0.0)
    results: list[WrkResult | BaseException | None] = [None] * len(sizes)

    def run(i: int, n: int) -> None:
        try:
            results[i] = one(i, n)
        except BaseException as exc:  # reported below
            results[i] = exc

    threads = []
    t0 = time.perf_counter()
    for i, n in enumerate(sizes):
        if i:
            time.sleep(RAMP_INTERVAL_S)
            until = time.perf_counter() + RAMP_MAX_WAIT_S
            while server_port is not None and time.perf_counter() < until:
                queued = accept_queue(server_port)
                if queued is None or queued == 0:
                    break
                time.sleep(0.05)
        t = threading.Thread(target=run, args=(i, n), daemon=True)
        t.start()
        threads.append(t)
    ramp_s = time.perf_counter() - t0
    try:
        time.sleep(seconds)
    finally:
        stop.set()
    for t in threads:
        t.join()
    done: list[WrkResult] = []
    for r in results:
        if not isinstance(r, WrkResult):
            raise RuntimeError(f"one of the ramped wrk runs failed: {r}")
        done.append(r)
    total = sum(r.requests for r in done)

    def mean(key: Callable[[WrkResult], float]) -> float:
        return sum(key(r) * r.requests for r in done) / total if total else 0.0

    detail: dict[str, int] = {}
    for r in done:
        for k, v in r.socket_detail.items():
            detail[k] = detail.get(k, 0) + v
    merged = WrkResult(
        requests=total,
        seconds=max(r.seconds for r in done),
        p50_ms=mean(lambda r: r.p50_ms),
        p90_ms=mean(lambda r: r.p90_ms),
        p99_ms=max(r.p99_ms for r in done),
        max_ms=max(r.max_ms for r in done),
        socket_errors=sum(r.socket_errors for r in done),
        non_2xx=sum(r.non_2xx for r in done),
        bad_streams=sum(r.bad_streams for r in done),
        socket_detail=detail,
    )
    return Ramped(merged, ramp_s)


def measure_scale(
    ctx: Context,
    *,
    streams: int,
    chunk_delay_ms: float,
    seconds: float,
    say: Say,
    direct: bool = True,
    profile_dir: Path | None = None,
    direct_seconds: float | None = None,
) -> ScaleResult:
    """modelway in front of a slow upstream (one event per ``chunk_delay_ms``), ``streams`` concurrent streams;
    then (``direct``) the same load straight at the slow upstream for ``direct_seconds`` (default ``seconds``)."""
    say(f"slow upstream ({chunk_delay_ms:g} ms per event) + modelway")
    slow, slow_port = start_upstream(ctx.procs, "upstream-slow", chunk_delay_ms=chunk_delay_ms)
    config = modelway_config(ctx, slow_port)
    # every stream its own provider connection, as far as the open-files limit lets a process hold a client and a
    # provider connection per stream (the default pool, 4,096 per worker, would make more streams wait)
    import resource

    files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    pool = max(4096, min(streams + 100, files - streams - 1024))
    config["server"] = {**config["server"], "upstream_connections": pool}  # type: ignore[dict-item]
    server = start_modelway(ctx, config=config, name="modelway-scale")
    assert server.child is not None
    body = chat_body(stream=True)

    def load(port: int, connections: int, secs: float) -> Ramped:
        return ramped_wrk(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            body,
            connections=connections,
            seconds=secs,
            headers=server.headers,
            script_dir=ctx.work,
            server_port=port,
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
            ramped = load(server.port, streams, seconds)
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
            ref_s = direct_seconds or seconds
            say(f"{streams} concurrent streams straight to the slow upstream for {ref_s:g}s (reference)")
            ref = load(slow_port, streams, ref_s).run
        return ScaleResult(
            streams=streams,
            chunk_delay_ms=chunk_delay_ms,
            seconds=seconds,
            rss_idle_mb=idle / MB,
            rss_base_mb=base / MB,
            rss_peak_mb=peaks.rss / MB,
            rss_after_mb=after / MB,
            run=ramped.run,
            ramp_s=ramped.ramp_s,
            peak_client_conns=peaks.clients,
            peak_upstream_conns=peaks.upstream,
            direct=ref,
            cpu_percent=cpu,
            profile=prof,
            conn_samples=peaks.conn_samples,
            conn_count_ms=peaks.conn_count_s * 1000,
            nofile=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
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
    #: CPU ms per non-stream request of the load generator (wrk) and of the fake upstream during this row's runs
    wrk_ms_per_req: float | None = None
    upstream_ms_per_req: float | None = None


@dataclass
class WorkersResult:
    runs: list[WorkersRun]

    def ratio(self) -> float | None:
        one = next((r for r in self.runs if r.workers == 1), None)
        two = next((r for r in self.runs if r.workers == 2), None)
        if one is None or two is None or not one.json_c32.rps:
            return None
        return two.json_c32.rps / one.json_c32.rps

    def ceiling(self) -> float | None:
        """The highest ``ratio`` this machine allows: its cores divided by the CPU one request costs everything that
        runs here (the two workers, wrk and the upstream, as measured in the two-worker runs) is the most requests
        per second any number of workers can get, over what one worker got."""
        one = next((r for r in self.runs if r.workers == 1), None)
        two = next((r for r in self.runs if r.workers == 2), None)
        if one is None or two is None or not one.json_c32.rps:
            return None
        if two.cpu_ms_per_req is None or two.wrk_ms_per_req is None or two.upstream_ms_per_req is None:
            return None
        per_request_s = (two.cpu_ms_per_req + two.wrk_ms_per_req + two.upstream_ms_per_req) / 1000
        return (os.cpu_count() or 1) / per_request_s / one.json_c32.rps


def _worker_cpu(pid: int) -> dict[int, float]:
    pids = tree_pids(pid)
    leaves = [p for p in pids if p != pid] or [pid]
    return {p: cpu_seconds(p) for p in leaves}


def _children_cpu() -> float:
    """CPU seconds of this process's children that have exited and been waited for (the wrk runs)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


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
        # the CPU of wrk (a child that has exited: RUSAGE_CHILDREN) and of the upstream, per request, per row
        others: list[tuple[list[float], list[float]]] = [([], []), ([], [])]
        upstream_pid = ctx.upstream.pid if ctx.upstream is not None else None
        for rnd in range(1, rounds + 1):
            for i, s in enumerate(servers):
                say(f"round {rnd}/{rounds}: --workers {i + 1}, c=32 non-stream and streams, {seconds:g}s each")
                before = _worker_cpu(s.pid)
                wrk_before = _children_cpu()
                up_before = cpu_seconds(upstream_pid) if upstream_pid is not None else 0.0
                run, cpu = wrk_with_cpu(s, chat_body(), connections=32, seconds=seconds, work=ctx.work, stream=False)
                if run.requests:
                    others[i][0].append((_children_cpu() - wrk_before) * 1000 / run.requests)
                    if upstream_pid is not None:
                        others[i][1].append((cpu_seconds(upstream_pid) - up_before) * 1000 / run.requests)
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
                    statistics.median(others[i][0]) if others[i][0] else None,
                    statistics.median(others[i][1]) if others[i][1] else None,
                )
            )
        return WorkersResult(out)
    finally:
        for s in servers:
            if s.child is not None:
                ctx.procs.stop(s.child)
