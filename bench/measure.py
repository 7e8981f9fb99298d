"""The main table: every row's latency at c=1, throughput at c=32, streams at c=32, TTFB at c=1, RSS, CPU/request.

All servers run side by side and each measurement goes round the rows ``rounds`` times (A B C, A B C, ...); a row
keeps the median of its runs. On a shared 2-core VM the speed drifts by tens of percent over minutes, so
interleaving is what keeps the ratios between rows honest.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .payloads import APIS, Api
from .procs import cpu_seconds, rss_bytes
from .targets import Server, Target
from .ttfb import TtfbResult, measure_ttfb
from .wrk import WrkResult, run_wrk

__all__ = ["MB", "Live", "Plan", "RowResult", "measure_rows", "wrk_with_cpu"]

MB = 1024 * 1024
Say = Callable[[str], None]


@dataclass(frozen=True)
class Plan:
    seconds: float  # per c=32 wrk run
    latency_seconds: float  # per c=1 wrk run
    ttfb_seconds: float  # per TTFB round
    warmup: float  # seconds of c=32 load per row before measuring
    rounds: int
    concurrency: int = 32


@dataclass
class RowResult:
    name: str
    description: str
    version: str = ""
    skipped: str | None = None  # why the row did not run
    failed: str | None = None  # what went wrong while it ran
    ready_s: float | None = None
    rss_idle_mb: float | None = None
    rss_after_mb: float | None = None
    latency_c1: WrkResult | None = None  # the run with the median p50
    json_c32: WrkResult | None = None  # the run with the median req/s
    json_rps_runs: list[float] = field(default_factory=list)
    cpu_ms_per_req: float | None = None  # median over the runs
    stream_c32: WrkResult | None = None
    stream_rps_runs: list[float] = field(default_factory=list)
    cpu_ms_per_stream: float | None = None
    ttfb: TtfbResult | None = None  # medians over the rounds
    errors: int = 0  # over every run: socket errors, non-2xx, broken streams
    stream_errors: int = 0  # the same over the stream runs only (wrk c=32 and TTFB)

    @property
    def ok(self) -> bool:
        return self.skipped is None and self.failed is None


@dataclass
class Live:
    """A row being measured: its target, the server answering it, its result so far."""

    target: Target
    server: Server
    row: RowResult
    _lat: list[WrkResult] = field(default_factory=list)
    _json: list[tuple[WrkResult, float | None]] = field(default_factory=list)
    _stream: list[tuple[WrkResult, float | None]] = field(default_factory=list)
    _ttfb: list[TtfbResult] = field(default_factory=list)

    @property
    def api(self) -> Api:
        return APIS[self.target.api]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}{self.api.path}"


def wrk_with_cpu(
    server: Server,
    body: bytes,
    *,
    connections: int,
    seconds: float,
    work: Path,
    stream: bool,
    api: Api = APIS["chat"],
) -> tuple[WrkResult, float | None]:
    """A wrk run and the server tree's CPU milliseconds per completed request during it."""
    before = cpu_seconds(server.pid)
    res = run_wrk(
        f"http://127.0.0.1:{server.port}{api.path}",
        body,
        connections=connections,
        seconds=seconds,
        headers=server.headers,
        script_dir=work,
        check_stream=stream,
        api=api,
    )
    used = cpu_seconds(server.pid) - before
    return res, (used * 1000 / res.requests if res.requests else None)


def _median_run(runs: list[WrkResult], key: Callable[[WrkResult], float]) -> WrkResult:
    return sorted(runs, key=key)[(len(runs) - 1) // 2]


def _median(values: list[float | None]) -> float | None:
    vs = [v for v in values if v is not None]
    return statistics.median(vs) if vs else None


def _finish(lv: Live) -> None:
    row = lv.row
    if lv._lat:
        row.latency_c1 = _median_run(lv._lat, lambda r: r.p50_ms)
    if lv._json:
        row.json_c32 = _median_run([r for r, _ in lv._json], lambda r: r.rps)
        row.json_rps_runs = [r.rps for r, _ in lv._json]
        row.cpu_ms_per_req = _median([c for _, c in lv._json])
    if lv._stream:
        row.stream_c32 = _median_run([r for r, _ in lv._stream], lambda r: r.rps)
        row.stream_rps_runs = [r.rps for r, _ in lv._stream]
        row.cpu_ms_per_stream = _median([c for _, c in lv._stream])
    if lv._ttfb:
        t = lv._ttfb
        row.ttfb = TtfbResult(
            streams=sum(x.streams for x in t),
            ttfb_p50_ms=statistics.median(x.ttfb_p50_ms for x in t),
            ttfb_p99_ms=statistics.median(x.ttfb_p99_ms for x in t),
            total_p50_ms=statistics.median(x.total_p50_ms for x in t),
            errors=sum(x.errors for x in t),
        )
    runs = lv._lat + [r for r, _ in lv._json] + [r for r, _ in lv._stream]
    row.errors = sum(r.errors for r in runs) + sum(x.errors for x in lv._ttfb)
    row.stream_errors = sum(r.errors for r, _ in lv._stream) + sum(x.errors for x in lv._ttfb)
    row.rss_after_mb = rss_bytes(lv.server.pid) / MB


def measure_rows(lives: list[Live], plan: Plan, work: Path, progress: Callable[[str], Say]) -> None:
    """Warm every row up, then go round the rows ``plan.rounds`` times per measurement; results land in ``row``."""
    c = plan.concurrency
    for lv in lives:
        say = progress(lv.target.name)
        say(f"warm-up {plan.warmup:g}s")
        hdr = lv.server.headers
        api = lv.api
        run_wrk(lv.url, api.body(lv.target.model), connections=c, seconds=plan.warmup, headers=hdr, script_dir=work)
        run_wrk(
            lv.url,
            api.body(lv.target.model, stream=True),
            connections=c,
            seconds=max(1.0, plan.warmup / 2),
            headers=hdr,
            script_dir=work,
            check_stream=True,
            api=api,
        )

    def step(lv: Live) -> None:
        model, srv, api = lv.target.model, lv.server, lv.api
        lv._lat.append(
            run_wrk(
                lv.url,
                api.body(model),
                connections=1,
                seconds=plan.latency_seconds,
                headers=srv.headers,
                script_dir=work,
            )
        )
        lv._json.append(
            wrk_with_cpu(srv, api.body(model), connections=c, seconds=plan.seconds, work=work, stream=False, api=api)
        )
        lv._ttfb.append(
            measure_ttfb(
                srv.port,
                api.path,
                api.body(model, stream=True),
                headers=srv.headers,
                seconds=plan.ttfb_seconds,
                api=api,
            )
        )
        lv._stream.append(
            wrk_with_cpu(
                srv, api.body(model, stream=True), connections=c, seconds=plan.seconds, work=work, stream=True, api=api
            )
        )

    for rnd in range(1, plan.rounds + 1):
        for lv in lives:
            if not lv.row.ok:
                continue
            say = progress(lv.target.name)
            say(
                f"round {rnd}/{plan.rounds}: c=1 {plan.latency_seconds:g}s, c={c} {plan.seconds:g}s, "
                f"TTFB {plan.ttfb_seconds:g}s, streams c={c} {plan.seconds:g}s"
            )
            try:
                step(lv)
            except Exception as exc:
                say(f"FAILED: {exc}")
                lv.row.failed = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    for lv in lives:
        if lv.row.ok:
            _finish(lv)
            if lv.row.errors:
                progress(lv.target.name)(f"WARNING: {lv.row.errors} errors (see the errors column)")
