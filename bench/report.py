"""The results of one run as markdown tables (and JSON), with the issue's targets marked met or missed."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from .limits_phase import LimitsResult
from .measure import Plan, RowResult
from .phases import RAMP_INTERVAL_S, RAMP_STEP, ScaleResult, StartupResult, WorkersResult
from .profile import Profile

__all__ = ["RunResult", "render_markdown", "to_json", "evaluate_targets"]


@dataclass
class RunResult:
    command: str
    started: str
    machine: dict[str, str]
    background_cpu: float
    plan: Plan
    rows: list[RowResult] = field(default_factory=list)
    scale: ScaleResult | None = None
    startup: StartupResult | None = None
    workers: WorkersResult | None = None
    limits: LimitsResult | None = None
    profiles: list[Profile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # phases that were skipped or failed, and why
    wall_s: float = 0.0

    def row(self, name: str) -> RowResult | None:
        r = next((r for r in self.rows if r.name == name), None)
        return r if r is not None and r.skipped is None and r.failed is None else None


# -- formatting helpers ------------------------------------------------------------------------------------------------
def _f(v: float | None, digits: int = 2, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:,.{digits}f}{unit}"


def _n(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def _spread(value: float | None, runs: list[float]) -> str:
    """``5,061 ±8%``: the median and half the min-max range of the runs, relative to it."""
    if value is None:
        return "—"
    if len(runs) < 2 or not value:
        return _n(value)
    return f"{value:,.0f} ±{(max(runs) - min(runs)) / 2 / value:.0%}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b:
        return "—"
    r = a / b
    return f"{r:,.0f}×" if r >= 20 else f"{r:.2f}×"


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# -- sections ----------------------------------------------------------------------------------------------------------
def _json_table(res: RunResult) -> str:
    direct, lite, mini, pk = res.row("direct"), res.row("litellm"), res.row("minimal"), res.row("portkey")
    d50 = direct.latency_c1.p50_ms if direct and direct.latency_c1 else None
    head = [
        "target",
        "p50 c=1 ms",
        "p99 c=1 ms",
        "overhead p50 ms",
        "req/s c=32",
        "p99 c=32 ms",
        "CPU ms/req",
        "× direct",
        "× LiteLLM",
        "× minimal",
    ] + (["× Portkey"] if pk else [])
    rows = []
    for r in res.rows:
        if r.skipped or r.failed:
            rows.append([f"{r.name}", f"*{r.skipped or 'failed: ' + (r.failed or '')[:80]}*"] + ["—"] * (len(head) - 2))
            continue
        lat, tp = r.latency_c1, r.json_c32
        p50 = lat.p50_ms if lat else None
        over = p50 - d50 if p50 is not None and d50 is not None and r.name != "direct" else None
        rps = tp.rps if tp else None
        rows.append(
            [
                r.name,
                _f(p50, 3),
                _f(lat.p99_ms if lat else None, 3),
                _f(over, 3) if r.name != "direct" else "—",
                _spread(rps, r.json_rps_runs),
                _f(tp.p99_ms if tp else None, 2),
                _f(r.cpu_ms_per_req, 3),
                _ratio(rps, direct.json_c32.rps if direct and direct.json_c32 else None),
                _ratio(rps, lite.json_c32.rps if lite and lite.json_c32 else None),
                _ratio(rps, mini.json_c32.rps if mini and mini.json_c32 else None),
            ]
            + ([_ratio(rps, pk.json_c32.rps if pk.json_c32 else None)] if pk else [])
        )
    return _table(head, rows)


def _stream_table(res: RunResult) -> str:
    direct, lite, mini, pk = res.row("direct"), res.row("litellm"), res.row("minimal"), res.row("portkey")
    dt = direct.ttfb.ttfb_p50_ms if direct and direct.ttfb else None
    head = [
        "target",
        "TTFB p50 c=1 ms",
        "TTFB p99 c=1 ms",
        "TTFB overhead ms",
        "whole stream p50 c=1 ms",
        "streams/s c=32",
        "p99 c=32 ms",
        "CPU ms/stream",
        "× direct",
        "× LiteLLM",
        "× minimal",
    ] + (["× Portkey"] if pk else [])
    rows = []
    for r in res.rows:
        if r.skipped or r.failed:
            rows.append([r.name] + ["—"] * (len(head) - 1))
            continue
        t, s = r.ttfb, r.stream_c32
        ttfb = t.ttfb_p50_ms if t else None
        sps = s.rps if s else None
        rows.append(
            [
                r.name,
                _f(ttfb, 3),
                _f(t.ttfb_p99_ms if t else None, 3),
                _f(ttfb - dt, 3) if ttfb is not None and dt is not None and r.name != "direct" else "—",
                _f(t.total_p50_ms if t else None, 3),
                _spread(sps, r.stream_rps_runs),
                _f(s.p99_ms if s else None, 2),
                _f(r.cpu_ms_per_stream, 3),
                _ratio(sps, direct.stream_c32.rps if direct and direct.stream_c32 else None),
                _ratio(sps, lite.stream_c32.rps if lite and lite.stream_c32 else None),
                _ratio(sps, mini.stream_c32.rps if mini and mini.stream_c32 else None),
            ]
            + ([_ratio(sps, pk.stream_c32.rps if pk.stream_c32 else None)] if pk else [])
        )
    return _table(head, rows)


def _resource_table(res: RunResult) -> str:
    rows = []
    for r in res.rows:
        if r.skipped or r.failed:
            rows.append([r.name, "—", "—", "—", "—", f"skipped: {r.skipped}" if r.skipped else f"FAILED: {r.failed}"])
            continue
        rows.append(
            [
                r.name,
                _f(r.rss_idle_mb, 1) if r.rss_idle_mb is not None else "(same process)",
                _f(r.rss_after_mb, 1),
                _f(r.ready_s, 2) if r.ready_s else "—",
                str(r.errors),
                r.version,
            ]
        )
    return _table(["target", "RSS idle MB", "RSS after MB", "ready s", "errors", "what"], rows)


def _detail(kinds: dict[str, int]) -> str:
    return f": {', '.join(f'{k} {v}' for k, v in kinds.items())}" if kinds else ""


def _scale_section(s: ScaleResult) -> str:
    run, ref = s.run, s.direct
    return "\n".join(
        [
            f"modelway in front of a slow upstream (one SSE event every {s.chunk_delay_ms:g} ms, so a stream lasts "
            f"~{20 * s.chunk_delay_ms / 1000:g} s), wrk with {s.streams:,} connections for {s.seconds:g} s"
            + (
                f" once all were open (opened {RAMP_STEP:,} at a time by one wrk each, at least {RAMP_INTERVAL_S:g} s "
                f"apart and once modelway's accept queue was empty: the last {s.ramp_s:.1f} s after the first)"
                if s.streams > RAMP_STEP
                else ""
            )
            + ":",
            "",
            _table(
                [
                    "RSS idle MB",
                    "RSS after warm-up MB",
                    "RSS peak MB",
                    "growth MB",
                    "RSS 1 s after MB",
                    "peak client / upstream conns",
                    "streams done",
                    "p50 stream s (direct)",
                    "modelway CPU",
                    "errors",
                ],
                [
                    [
                        _f(s.rss_idle_mb, 1),
                        _f(s.rss_base_mb, 1),
                        _f(s.rss_peak_mb, 1),
                        _f(s.growth_mb, 1),
                        _f(s.rss_after_mb, 1),
                        f"{s.peak_client_conns:,} / {s.peak_upstream_conns:,}",
                        _n(run.requests),
                        f"{run.p50_ms / 1000:.2f} ({_f(ref.p50_ms / 1000 if ref else None, 2)})",
                        f"{s.cpu_percent:.0f}%",
                        f"{run.errors} (socket {run.socket_errors}{_detail(run.socket_detail)}, "
                        f"non-2xx {run.non_2xx}, bad stream {run.bad_streams})",
                    ]
                ],
            ),
            "",
            f"Connections counted {s.conn_samples} times during the run with `ss` (it walks every socket of the "
            f"machine: the slowest count took {s.conn_count_ms:.0f} ms, so it runs at most every second and at most "
            f"a tenth of the time); open-files limit per process: {s.nofile:,}. The stream time through modelway "
            "includes the wait for one of its pooled upstream connections.",
        ]
    )


def _startup_section(s: StartupResult) -> str:
    pkgs = ", ".join(f"{m} {ms:.0f} ms" for m, ms in s.by_package[:8])
    heavy = ", ".join(f"`{m}` {ms:.0f} ms" for m, ms in s.heaviest[:6])
    return "\n".join(
        [
            _table(
                [
                    "`import modelway` ms (median)",
                    "runs ms",
                    "`import modelway.server` ms",
                    "spawn → readiness 200 s",
                    "runs s",
                ],
                [
                    [
                        _f(s.import_ms, 1),
                        ", ".join(f"{x:.0f}" for x in s.import_runs_ms),
                        _f(s.import_server_ms, 1),
                        _f(s.ready_s, 3),
                        ", ".join(f"{x:.2f}" for x in s.ready_runs_s),
                    ]
                ],
            ),
            "",
            "`python -X importtime -c 'import modelway'` (its own overhead inflates the numbers; compare the shares): "
            f"self time per package: {pkgs}; heaviest modules (self): {heavy}.",
        ]
    )


def _workers_section(w: WorkersResult) -> str:
    rows = [
        [
            str(r.workers),
            _n(r.json_c32.rps),
            _f(r.json_c32.p99_ms, 2),
            _f(r.cpu_ms_per_req, 3),
            _n(r.stream_c32.rps),
            _f(r.stream_c32.p99_ms, 2),
            _f(r.rss_idle_mb, 1),
            " / ".join(f"{x:.0%}" for x in r.worker_cpu_share),
            str(r.json_c32.errors + r.stream_c32.errors),
        ]
        for r in w.runs
    ]
    ratio = w.ratio()
    ceiling = w.ceiling()
    two = next((r for r in w.runs if r.workers == 2), None)
    bound = ""
    if ceiling is not None and two is not None:
        bound = (
            f" This machine's ceiling for that ratio: **{_f(ceiling, 2)}×** — its {os.cpu_count()} cores over the CPU "
            f"one request costs everything on them in the two-worker runs (modelway {_f(two.cpu_ms_per_req, 3)} ms, "
            f"wrk {_f(two.wrk_ms_per_req, 3)} ms, the upstream {_f(two.upstream_ms_per_req, 3)} ms), as a multiple "
            "of one worker's rate: no number of workers can pass it here."
        )
    return "\n".join(
        [
            _table(
                [
                    "workers",
                    "req/s c=32",
                    "p99 ms",
                    "CPU ms/req",
                    "streams/s c=32",
                    "stream p99 ms",
                    "RSS idle MB (tree)",
                    "CPU split across workers",
                    "errors",
                ],
                rows,
            ),
            "",
            f"`--workers 2` / `--workers 1` non-stream throughput: **{_f(ratio, 2)}×** (2 cores shared with wrk and "
            f"the upstream).{bound}",
        ]
    )


def _profile_section(p: Profile) -> str:
    def lines(items: list[tuple[str, float]]) -> str:
        return "\n".join(f"  - {pct:5.1f}% `{name}`" for name, pct in items)

    return "\n".join(
        [
            f"**{p.label}** — {p.samples} busy samples at 250 Hz (collapsed stacks: `{p.raw_file.name}`). "
            "`Runner.run` self time is uvloop's C loop (epoll, callbacks); `RequestResponseCycle.send` self time is "
            "mostly the socket write it makes.",
            "",
            "- self time by package (leaf frame): " + ", ".join(f"{k} {v:.1f}%" for k, v in p.by_package),
            "- self time by function:",
            lines(p.self_top[:12]),
            "- inclusive time of modelway's functions:",
            lines(p.inclusive_top[:12]),
        ]
    )


# -- targets -----------------------------------------------------------------------------------------------------------
def _x(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}×" if v >= 20 else f"{v:.2f}×"


def evaluate_targets(res: RunResult) -> list[list[str]]:
    """[target, goal, measured, status] for each of issue 12's targets. Throughput ratios are judged on the
    ``modelway+cp`` row (the control plane on, as the issue asks) and shown for the plain ``modelway`` row too;
    latency, TTFB and RSS are judged on ``modelway`` and shown for ``modelway+cp``."""
    mw, cp, direct = res.row("modelway"), res.row("modelway+cp"), res.row("direct")
    lite, mini, pk = res.row("litellm"), res.row("minimal"), res.row("portkey")
    pk_raw = next((r for r in res.rows if r.name == "portkey"), None)
    out: list[list[str]] = []

    def add(name: str, goal: str, value: float | None, ok: bool | None, measured: str, why_missing: str) -> None:
        status = "not measured" if value is None else ("**met**" if ok else "**MISSED**")
        out.append([name, goal, measured if value is not None else why_missing, status])

    def tp(r: RowResult | None, stream: bool = False) -> float | None:
        run = (r.stream_c32 if stream else r.json_c32) if r else None
        return run.rps if run else None

    def div(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    def ratio(name: str, goal: float, other: RowResult | None, other_name: str, stream: bool, need: str) -> None:
        unit = "streams/s" if stream else "req/s"
        base = tp(other, stream)
        x_cp, x_mw = div(tp(cp, stream), base), div(tp(mw, stream), base)
        shown = []
        if x_cp is not None:
            shown.append(f"modelway+cp {_x(x_cp)} ({_n(tp(cp, stream))} vs {_n(base)} {unit})")
        if x_mw is not None:
            shown.append(f"modelway {_x(x_mw)} ({_n(tp(mw, stream))})")
        text = "; ".join(shown)
        add(
            name,
            f"≥ {goal:g}× {other_name}, modelway+cp",
            x_cp,
            x_cp is not None and x_cp >= goal,
            text,
            f"needs the modelway+cp and {need} rows" + (f" ({text})" if text else ""),
        )

    ratio("non-stream req/s c=32 vs minimal proxy", 2.0, mini, "minimal", False, "minimal")
    ratio("non-stream req/s c=32 vs LiteLLM", 100, lite, "LiteLLM", False, "litellm (--with-litellm)")
    ratio("non-stream req/s c=32 vs Portkey", 5, pk, "Portkey", False, "portkey (--with-portkey)")
    ratio("streams/s c=32 vs minimal proxy", 2.0, mini, "minimal", True, "minimal")
    ratio("streams/s c=32 vs LiteLLM", 100, lite, "LiteLLM", True, "litellm (--with-litellm)")

    # Portkey's stream row must work: every stream complete (the Lua check and the TTFB client), its ratio shown
    sps = tp(pk, True)
    if pk_raw is not None and pk_raw.failed:
        add(
            "Portkey stream row works",
            "0 errors; ratio shown",
            0.0,
            False,
            f"failed: {pk_raw.failed[:120]}",
            "",
        )
    else:
        add(
            "Portkey stream row works",
            "0 errors; ratio shown",
            sps if pk else None,
            bool(pk and sps and pk.stream_errors == 0),
            f"{_n(sps)} streams/s, {pk.stream_errors if pk else 0} stream errors; modelway+cp "
            f"{_x(div(tp(cp, True), sps))}, modelway {_x(div(tp(mw, True), sps))} of Portkey",
            "needs the portkey row (--with-portkey)",
        )

    def over(r: RowResult | None) -> float | None:
        if r and direct and r.latency_c1 and direct.latency_c1:
            return r.latency_c1.p50_ms - direct.latency_c1.p50_ms
        return None

    o = over(mw)
    add(
        "overhead p50, c=1",
        "≤ 0.25 ms",
        o,
        o is not None and o <= 0.25,
        f"{_f(o, 3)} ms (modelway+cp {_f(over(cp), 3)} ms)",
        "needs the direct and modelway rows",
    )

    def ttfb(r: RowResult | None) -> float | None:
        return r.ttfb.ttfb_p50_ms - direct.ttfb.ttfb_p50_ms if r and direct and r.ttfb and direct.ttfb else None

    t = ttfb(mw)
    add(
        "TTFB overhead p50, c=1",
        "≤ 0.4 ms",
        t,
        t is not None and t <= 0.4,
        f"{_f(t, 3)} ms (modelway+cp {_f(ttfb(cp), 3)} ms)",
        "needs the direct and modelway rows",
    )
    r = res.workers.ratio() if res.workers else None
    add(
        "`--workers 2` scales throughput",
        "≥ 1.8× of 1 worker",
        r,
        r is not None and r >= 1.8,
        f"{_f(r, 2)}× (non-stream req/s c=32; 2 cores shared with wrk and the upstream"
        + (f"; this machine's ceiling: {_f(c, 2)}×" if (c := res.workers.ceiling() if res.workers else None) else "")
        + ")",
        "workers phase not run",
    )
    s = res.scale
    want = 10_000
    if s is None:
        add(f"{want:,} concurrent slow streams", "RSS ≤ +300 MB, no errors", None, None, "", "scale phase not run")
    else:
        g, errs = s.growth_mb, s.run.errors
        text = (
            f"+{_f(g, 1)} MB, {errs} errors, {s.peak_client_conns:,} client / {s.peak_upstream_conns:,} upstream "
            "connections at the peak"
        )
        if s.peak_upstream_conns < s.peak_client_conns:
            text += (
                f" (no more than {s.peak_upstream_conns:,} streamed from the upstream at once: the other clients "
                "waited for one of modelway's pooled upstream connections)"
            )
        if s.streams < want:
            add(
                f"{want:,} concurrent slow streams",
                "RSS ≤ +300 MB, no errors",
                None,
                None,
                "",
                f"ran with --streams {s.streams:,}: {text}",
            )
        else:
            add(
                f"{s.streams:,} concurrent slow streams",
                "RSS ≤ +300 MB, no errors",
                g,
                g <= 300 and errs == 0 and s.peak_client_conns >= want,
                text,
                "",
            )
    st = res.startup
    add(
        "`import modelway`",
        "≤ 100 ms",
        st.import_ms if st else None,
        bool(st and st.import_ms <= 100),
        f"{_f(st.import_ms if st else None, 1)} ms",
        "startup phase not run",
    )
    add(
        "ready (spawn → /health/readiness 200)",
        "≤ 0.5 s",
        st.ready_s if st else None,
        bool(st and st.ready_s <= 0.5),
        f"{_f(st.ready_s if st else None, 3)} s",
        "startup phase not run",
    )
    rss = mw.rss_idle_mb if mw else None
    add(
        "RSS idle",
        "≤ 50 MB",
        rss,
        rss is not None and rss <= 50,
        f"{_f(rss, 1)} MB (modelway+cp {_f(cp.rss_idle_mb if cp else None, 1)} MB)",
        "needs the modelway row",
    )
    lim = res.limits
    add(
        "limits exact across workers",
        "admitted = the key's rpm",
        float(lim.admitted) if lim else None,
        bool(lim and lim.exact),
        (
            f"{lim.admitted} of {lim.sent} admitted with rpm {lim.rpm} ({lim.workers} workers, Redis; "
            f"admitted per worker: {' / '.join(map(str, lim.per_worker))}; 429: {lim.refused}"
            + (f"; other statuses {lim.other}" if lim.other else "")
            + ")"
            if lim
            else ""
        ),
        "limits phase not run",
    )
    return out


# -- the document ------------------------------------------------------------------------------------------------------
def render_markdown(res: RunResult) -> str:
    m = res.machine
    p = res.plan
    parts = [
        f"Run {res.started}: `{res.command}` — {res.wall_s:.0f} s.",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, Linux {m['kernel']}, Python {m['python']}, "
        f"{m['wrk']}, {m['nginx']}. Background CPU before the run: {res.background_cpu:.0f}%.",
        f"All servers run side by side; each row is measured {p.rounds}× in interleaved rounds and keeps the median "
        f"(± is half the range of its runs). Per round: wrk c=1 for {p.latency_seconds:g} s, wrk c=32 for "
        f"{p.seconds:g} s (non-stream, then streams), 1 wrk thread; TTFB: sequential streams on one keep-alive "
        f"connection for {p.ttfb_seconds:g} s. {p.warmup:g} s of warm-up per row first. CPU and RSS are of the "
        "server's process tree.",
        "",
        "### Non-streaming `POST /v1/chat/completions` (rows named after another API speak it: see `what` below)",
        "",
        _json_table(res),
        "",
        "### Streaming (20 upstream SSE events + `[DONE]`, chunked; each row in its own API's events)",
        "",
        _stream_table(res),
        "",
        "### Memory, start, errors",
        "",
        _resource_table(res),
    ]
    if res.scale:
        parts += ["", "### Memory at scale", "", _scale_section(res.scale)]
    if res.startup:
        parts += ["", "### Start-up", "", _startup_section(res.startup)]
    if res.workers:
        parts += ["", "### Workers", "", _workers_section(res.workers)]
    parts += ["", "### Targets", "", _table(["target", "goal", "measured", "status"], evaluate_targets(res))]
    if res.profiles:
        parts += ["", "### Profiles (py-spy)", ""]
        for prof in res.profiles:
            parts += [_profile_section(prof), ""]
    if res.notes:
        parts += ["", "Notes:", ""] + [f"- {n}" for n in res.notes]
    return "\n".join(parts).rstrip() + "\n"


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        d = {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        if hasattr(obj, "rps"):
            d["rps"] = obj.rps
        return d
    if isinstance(obj, list | tuple):
        return [_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)


def to_json(res: RunResult) -> str:
    return json.dumps(_plain(res), indent=2)
