"""Choosing modelway's HTTP server and upstream client by measurement: the compiled alternatives side by side.

``python -m bench.stacks [--rounds N] [--out FILE]`` (under 5 minutes) writes a markdown report with:

1. **servers**: one tiny proxy-like app (:mod:`bench.stacks_apps`: read a ~400 B JSON body, parse it with orjson,
   answer ~700 B of JSON; ``/proxy`` gets its answer from the fake upstream through aiohttp) served by uvicorn +
   httptools (uvloop), by uvicorn with modelway's bounded ``GatewayHttpProtocol``, by granian ASGI and by granian
   RSGI, one worker each (granian: 1 worker, 1 runtime thread), and, where the code measured has it, by uvicorn
   with modelway's own ``LeanHttpProtocol`` (``--no-lean`` leaves it out). wrk at c=32 (req/s) and c=1 (latency),
   and the CPU of the server's process tree over the wrk run (utime + stime from /proc, children included) per
   request;
2. **the gateway**: ``modelway serve`` (``server.http: uvicorn``, and ``modelway`` where it exists) and the same app
   under ``granian --interface asgi --factory bench.stacks_apps:gateway_factory``, on the same config
   (bench.targets ``modelway_config``), JSON and streams;
3. **safety**: raw-socket probes (:mod:`bench.stacks_security`) of the gateway's servers: header size and count
   bounds, header and body deadlines, request smuggling, body size, and what a SIGTERM does to a stream in flight;
4. **clients**: aiohttp (as :mod:`modelway.transport` configures it), pyreqwest and a raw httptools Protocol client
   (the floor), each in its own process under the same uvloop driver (:mod:`bench.stacks_clients`): CPU µs per
   request over N requests at concurrency 1 and 32, JSON and streams read to the end.

Every measurement is repeated ``--rounds`` times, the candidates interleaved within each round (their order rotated
from round to round), and every ratio is taken within a round, then the median over rounds is shown. The machine is
shared: read the ratios, not the absolute numbers. ``--sweep`` adds granian's runtime-mode x loop options.

The modelway code measured is HEAD's ``src`` (a ``git archive`` snapshot in the scratch directory: the working tree
may be in the middle of someone's edit); ``--src worktree`` measures the working tree instead.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from .machine import background_cpu_percent
from .payloads import MODEL, chat_body
from .procs import Child, ProcessTable, cpu_seconds, free_port, wait_http_ok
from .stacks_security import disconnect_probe, probe_all, shutdown_probe
from .targets import Context, modelway_config, start_upstream, warm_bytecode
from .wrk import run_wrk

__all__ = ["main"]

_REPO = Path(__file__).resolve().parent.parent
_PY = sys.executable


# -- how each stack is started ---------------------------------------------------------------------------------------
_FACTS = """
import importlib, json
facts = {"gw": None, "choice": False, "lean": False}
for mod in ("modelway.server.protocol_uvicorn", "modelway.server.protocol"):
    try:
        if hasattr(importlib.import_module(mod), "GatewayHttpProtocol"):
            facts["gw"] = mod + ":GatewayHttpProtocol"
            break
    except ImportError:
        pass
try:
    facts["choice"] = hasattr(importlib.import_module("modelway.server.protocol"), "PROTOCOLS")
    facts["lean"] = hasattr(importlib.import_module("modelway.server.protocol_lean"), "LeanHttpProtocol")
except ImportError:
    pass
import modelway
facts["file"] = modelway.__file__
print(json.dumps(facts))
"""


class SnapshotProcs(ProcessTable):
    """The harness's process table; with ``src``, every Python child imports modelway from there (a snapshot of
    HEAD's ``src``: the working tree may be in the middle of someone's edit)."""

    src: Path | None = None

    def python_env(self) -> dict[str, str]:
        env = super().python_env()
        if self.src is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.src), str(_REPO), env.get("PYTHONPATH")]))
        return env


def modelway_facts(procs: ProcessTable) -> dict[str, object]:
    """Where modelway's bounded uvicorn protocol lives in the code measured (it moved when a second protocol was
    added), whether ``modelway serve`` has a choice of protocols (``server.http``), and the lean one exists."""
    p = subprocess.run(
        [_PY, "-c", _FACTS], env=procs.python_env(), cwd=_REPO, capture_output=True, text=True, timeout=120
    )
    if p.returncode != 0:
        raise RuntimeError(f"cannot import modelway:\n{p.stderr[-2000:]}")
    facts = orjson.loads(p.stdout.strip().splitlines()[-1])
    assert isinstance(facts, dict)
    if not facts.get("gw"):
        raise RuntimeError("modelway's GatewayHttpProtocol was not found")
    return facts


def uvicorn_argv(target: str, port: int, http: str, factory: bool = False) -> list[str]:
    argv = [_PY, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop"]
    argv += ["--http", http, "--no-access-log", "--log-level", "warning", "--ws", "none", "--no-proxy-headers"]
    return argv + ["--lifespan", "on"] + (["--factory"] if factory else [])


def granian_argv(
    interface: str, target: str, port: int, mode: str, loop: str, factory: bool = False, extra: tuple[str, ...] = ()
) -> list[str]:
    argv = [_PY, "-m", "granian", "--interface", interface, "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", "1", "--runtime-threads", "1", "--runtime-mode", mode, "--loop", loop, "--http", "1"]
    argv += ["--no-ws", "--log-level", "warning", "--no-access-log", *extra]
    return argv + (["--factory"] if factory else []) + [target]


@dataclass
class Stack:
    key: str
    label: str
    argv: Callable[[int], list[str]]
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/health"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Running:
    stack: Stack
    port: int
    child: Child
    argv: list[str]


def _start(procs: ProcessTable, stack: Stack, timeout: float = 60.0) -> Running:
    port = free_port()
    argv = stack.argv(port)
    child = procs.spawn(stack.key, argv, env={**procs.python_env(), **stack.env}, cwd=_REPO)
    wait_http_ok(child, port, stack.ready_path, timeout=timeout, headers=stack.headers)
    return Running(stack, port, child, argv)


# -- one measurement ----------------------------------------------------------------------------------------------
@dataclass
class Sample:
    rps: float
    cpu_ms: float  # server process tree CPU per request
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


def _load(run: Running, path: str, body: bytes, conc: int, seconds: float, work: Path, stream: bool = False) -> Sample:
    headers = run.stack.headers
    c0 = cpu_seconds(run.child.pid)
    r = run_wrk(
        f"http://127.0.0.1:{run.port}{path}",
        body,
        connections=conc,
        seconds=seconds,
        headers=headers,
        script_dir=work,
        check_stream=stream,
    )
    cpu = cpu_seconds(run.child.pid) - c0
    return Sample(r.rps, cpu / max(1, r.requests) * 1e3, r.p50_ms, r.p99_ms, r.errors, r.requests)


@dataclass
class Scenario:
    name: str
    path: str
    body: bytes
    conc: int
    stream: bool = False


def _measure_and_stop(
    ctx: Context, runs: list[Running], scenarios: list[Scenario], args: argparse.Namespace, log: Callable[[str], None]
) -> dict[tuple[str, str], list[Sample]]:
    """:func:`_rounds` over ``runs``, then every server stopped (also when a run fails)."""
    try:
        return _rounds(runs, scenarios, args.rounds, args.seconds, ctx.work, log)
    finally:
        for r in runs:
            ctx.procs.stop(r.child)


def _rounds(
    runs: list[Running], scenarios: list[Scenario], rounds: int, seconds: float, work: Path, log: Callable[[str], None]
) -> dict[tuple[str, str], list[Sample]]:
    """Every scenario on every server, ``rounds`` times; within a round the servers take turns, in an order rotated
    from round to round. (A first, unrecorded run of each warms caches and pools.)"""
    out: dict[tuple[str, str], list[Sample]] = {}
    if not runs:
        return out
    for sc in scenarios:
        if sc.conc > 1:
            for run in runs:
                _load(run, sc.path, sc.body, sc.conc, 1, work, sc.stream)
    for rnd in range(rounds):
        order = runs[rnd % len(runs) :] + runs[: rnd % len(runs)]
        for sc in scenarios:
            for run in order:
                secs = seconds if sc.conc > 1 else max(1.0, seconds / 3)
                s = _load(run, sc.path, sc.body, sc.conc, secs, work, sc.stream)
                out.setdefault((run.stack.key, sc.name), []).append(s)
                log(f"  round {rnd + 1} {sc.name:>12} {run.stack.key:<16} {s.rps:8.0f} req/s {s.cpu_ms:.3f} ms/req")
    return out


def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _ratio(samples: dict[tuple[str, str], list[Sample]], key: str, base: str, sc: str) -> float:
    """Median over rounds of this server's CPU per request over the baseline's, within each round."""
    a, b = samples.get((key, sc), []), samples.get((base, sc), [])
    return _med([x.cpu_ms / y.cpu_ms for x, y in zip(a, b, strict=False) if y.cpu_ms > 0])


def _server_table(
    runs: list[Running], samples: dict[tuple[str, str], list[Sample]], pairs: list[tuple[str, str, str]]
) -> list[str]:
    """``pairs``: (label, c=32 scenario, c=1 scenario)."""
    base = runs[0].stack.key
    lines = [
        "| server | request | req/s c=32 | CPU ms/req c=32 | CPU vs "
        f"{runs[0].stack.label} | p50 / p99 ms c=1 | CPU ms/req c=1 | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, hi, lo in pairs:
        for run in runs:
            k = run.stack.key
            h, low = samples.get((k, hi), []), samples.get((k, lo), [])
            if not h:
                continue
            cpus = [s.cpu_ms for s in h]
            errs = sum(s.errors for s in h + low)
            lines.append(
                f"| {run.stack.label} | {label} | {_med([s.rps for s in h]):,.0f} | {_med(cpus):.3f} "
                f"({min(cpus):.3f}–{max(cpus):.3f}) | {_ratio(samples, k, base, hi):.2f} | "
                f"{_med([s.p50_ms for s in low]):.2f} / {_med([s.p99_ms for s in low]):.2f} | "
                f"{_med([s.cpu_ms for s in low]):.3f} | {errs} |"
            )
    return lines


# -- the sections -------------------------------------------------------------------------------------------------
def _tiny_stacks(upstream: str, mode: str, loop: str, facts: dict[str, object], lean: bool) -> list[Stack]:
    env = {"STACKS_UPSTREAM": upstream}
    gw = str(facts["gw"])
    stacks = [
        Stack("uvicorn", "uvicorn + httptools", lambda p: uvicorn_argv("bench.stacks_apps:tiny_asgi", p, "httptools")),
        Stack(
            "uvicorn-gw", "uvicorn + GatewayHttpProtocol", lambda p: uvicorn_argv("bench.stacks_apps:tiny_asgi", p, gw)
        ),
        Stack(
            "granian-asgi",
            f"granian ASGI ({mode}, {loop})",
            lambda p: granian_argv("asgi", "bench.stacks_apps:tiny_asgi", p, mode, loop),
        ),
        Stack(
            "granian-rsgi",
            f"granian RSGI ({mode}, {loop})",
            lambda p: granian_argv("rsgi", "bench.stacks_apps:tiny_rsgi", p, mode, loop),
        ),
    ]
    if lean and facts.get("lean"):
        lean_proto = "modelway.server.protocol_lean:LeanHttpProtocol"
        stacks.append(
            Stack(
                "uvicorn-lean",
                "uvicorn + LeanHttpProtocol",
                lambda p: uvicorn_argv("bench.stacks_apps:tiny_asgi", p, lean_proto),
            )
        )
    for s in stacks:
        s.env = env
    return stacks


def _start_all(procs: ProcessTable, stacks: list[Stack], log: Callable[[str], None]) -> list[Running]:
    runs = []
    for s in stacks:
        try:
            runs.append(_start(procs, s))
        except RuntimeError as exc:
            log(f"  {s.label}: did not start: {' / '.join(str(exc).splitlines()[-3:])}")
    return runs


def section_servers(args: argparse.Namespace, ctx: Context, log: Callable[[str], None]) -> list[str]:
    upstream = f"http://127.0.0.1:{ctx.upstream_port}"
    runs = _start_all(
        ctx.procs, _tiny_stacks(upstream, args.granian_mode, args.granian_loop, args.facts, args.with_lean), log
    )
    body = chat_body()
    scenarios = [
        Scenario("echo c=32", "/echo", body, 32),
        Scenario("echo c=1", "/echo", body, 1),
        Scenario("proxy c=32", "/proxy", body, 32),
        Scenario("proxy c=1", "/proxy", body, 1),
    ]
    samples = _measure_and_stop(ctx, runs, scenarios, args, log)
    lines = ["## 1. Servers: the tiny app (one worker each)", ""]
    lines += [
        f"Request body: {len(body)} B (bench.payloads.chat_body); `/echo` answers 691 B built from it; `/proxy` "
        "answers the upstream's 607 B, fetched with aiohttp. Commands (PORT chosen at run time):",
        "",
    ]
    lines += [f"- {r.stack.label}: `{shlex.join(_short(r.argv))}`" for r in runs]
    lines += [
        "",
        *_server_table(runs, samples, [("echo", "echo c=32", "echo c=1"), ("proxy", "proxy c=32", "proxy c=1")]),
    ]
    return lines


def _short(argv: list[str]) -> list[str]:
    return [".venv/bin/python" if a == _PY else a for a in argv]


def _gateway_stacks(
    ctx: Context, config: dict[str, object], mode: str, loop: str, facts: dict[str, object], lean: bool
) -> list[Stack]:
    cfg = ctx.work / "stacks-gateway.json"
    cfg.write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
    auth = {"Authorization": f"Bearer {ctx.master_key}"}
    mw = [str(Path(_PY).parent / "modelway"), "serve", "-c", str(cfg)]
    choice = bool(facts.get("choice"))
    stacks = [
        Stack(
            "modelway-serve",
            "modelway serve" + (" (server.http uvicorn: GatewayHttpProtocol)" if choice else ""),
            lambda p: [*mw, "--port", str(p)],
            {"MODELWAY_HTTP": "uvicorn"} if choice else {},
            "/health/readiness",
            auth,
        ),
    ]
    if lean and choice and facts.get("lean"):
        stacks.append(
            Stack(
                "modelway-lean",
                "modelway serve (server.http modelway: LeanHttpProtocol, the default)",
                lambda p: [*mw, "--port", str(p)],
                {"MODELWAY_HTTP": "modelway"},
                "/health/readiness",
                auth,
            )
        )
    stacks.append(
        Stack(
            "granian-gateway",
            f"granian ASGI ({mode}, {loop}) + gateway_factory",
            lambda p: granian_argv("asgi", "bench.stacks_apps:gateway_factory", p, mode, loop, factory=True),
            {"STACKS_GATEWAY_CONFIG": str(cfg)},
            "/health/readiness",
            auth,
        )
    )
    return stacks


def section_gateway(args: argparse.Namespace, ctx: Context, log: Callable[[str], None]) -> list[str]:
    stacks = _gateway_stacks(
        ctx, modelway_config(ctx), args.granian_mode, args.granian_loop, args.facts, args.with_lean
    )
    runs = _start_all(ctx.procs, stacks, log)
    path = "/v1/chat/completions"
    scenarios = [
        Scenario("json c=32", path, chat_body(MODEL), 32),
        Scenario("json c=1", path, chat_body(MODEL), 1),
        Scenario("stream c=32", path, chat_body(MODEL, stream=True), 32, True),
        Scenario("stream c=1", path, chat_body(MODEL, stream=True), 1, True),
    ]
    samples = _measure_and_stop(ctx, runs, scenarios, args, log)
    lines = ["## 2. The gateway: `modelway serve` vs granian ASGI, same app, same config", ""]
    lines += [
        "Config: bench.targets `modelway_config` (alias bench-model -> openai/bench-model at the fake upstream). "
        "Streams: 20 SSE events from the upstream, checked complete by wrk. Commands:",
        "",
    ]
    lines += [f"- {r.stack.label}: `{_env_str(r.stack.env)}{shlex.join(_short(r.argv))}`" for r in runs]
    pairs = [("JSON", "json c=32", "json c=1"), ("stream", "stream c=32", "stream c=1")]
    return lines + ["", *_server_table(runs, samples, pairs)]


def _env_str(env: dict[str, str]) -> str:
    return "".join(f"{k}={v} " for k, v in env.items() if k != "STACKS_UPSTREAM")


def section_security(args: argparse.Namespace, ctx: Context, log: Callable[[str], None]) -> list[str]:
    config = modelway_config(ctx)
    server = config["server"]
    assert isinstance(server, dict)
    server.update({"header_timeout": 2, "body_timeout": 2, "shutdown_timeout": 2})
    auth = f"Bearer {ctx.master_key}"
    extra = ("--http1-header-read-timeout", "2000")
    stacks = _gateway_stacks(ctx, config, args.granian_mode, args.granian_loop, args.facts, args.with_lean)
    stacks[-1].argv = lambda p: granian_argv(
        "asgi", "bench.stacks_apps:gateway_factory", p, args.granian_mode, args.granian_loop, True, extra
    )
    runs = _start_all(ctx.procs, stacks, log)
    results: dict[str, list[tuple[str, str]]] = {}
    for r in runs:
        log(f"  probing {r.stack.label}")
        results[r.stack.key] = probe_all(r.port, auth)
        ctx.procs.stop(r.child)
    lines = ["## 3. Safety: raw-socket probes of the gateway under each server", ""]
    lines += [
        "Same app and config; modelway's server.header_timeout, body_timeout and shutdown_timeout set to 2 s, "
        "granian given `--http1-header-read-timeout 2000` (it has no body deadline setting).",
        "",
    ]
    lines += ["| probe | " + " | ".join(r.stack.label for r in runs) + " |", "|---" * (len(runs) + 1) + "|"]
    names = [n for n, _ in next(iter(results.values()), [])]
    for i, name in enumerate(names):
        lines.append(f"| {name} | " + " | ".join(results[r.stack.key][i][1] for r in runs) + " |")

    # a SIGTERM with a stream in flight, on a slow upstream (an event every 0.4 s)
    _, slow_port = start_upstream(ctx.procs, name="upstream-slow", chunk_delay_ms=400)
    config = modelway_config(ctx, slow_port)
    server = config["server"]
    assert isinstance(server, dict)
    server["shutdown_timeout"] = 2
    stacks = _gateway_stacks(ctx, config, args.granian_mode, args.granian_loop, args.facts, args.with_lean)
    kill = Stack(
        "granian-kill-timeout",
        stacks[-1].label + " --workers-kill-timeout 2",
        lambda p: granian_argv(
            "asgi",
            "bench.stacks_apps:gateway_factory",
            p,
            args.granian_mode,
            args.granian_loop,
            True,
            ("--workers-kill-timeout", "2"),
        ),
        stacks[-1].env,
        "/health/readiness",
        stacks[-1].headers,
    )
    body = chat_body(MODEL, stream=True)
    shut: dict[str, dict[str, str]] = {}
    labels = []
    for s in [*stacks, kill]:
        try:
            run = _start(ctx.procs, s)
        except RuntimeError as exc:
            log(f"  {s.label}: did not start: {str(exc).splitlines()[0]}")
            continue
        log(f"  a client leaving a stream, SIGTERM with a stream in flight: {s.label}")
        gone = "(as without the kill timeout)" if s is kill else disconnect_probe(run.port, auth, body, slow_port, 5.0)
        shut[s.key] = {"client gone 0.5 s into a stream": gone, **shutdown_probe(run.port, run.child.popen, auth, body)}
        labels.append((s.key, s.label))
        ctx.procs.stop(run.child)
    lines += [
        "",
        "A stream whose upstream sends an event every 0.4 s (8 s in all): its client leaving 0.5 s in (does the "
        "upstream call stop?), and SIGTERM 1 s into another (modelway's shutdown_timeout 2 s):",
        "",
    ]
    lines += ["| | " + " | ".join(label for _, label in labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for what in next(iter(shut.values()), {}):
        lines.append(f"| {what} | " + " | ".join(shut[k][what] for k, _ in labels) + " |")
    return lines


def section_clients(args: argparse.Namespace, ctx: Context, log: Callable[[str], None]) -> list[str]:
    kinds = args.clients.split(",")
    configs = [(1, False), (32, False), (1, True), (32, True)]
    per = max(1, args.requests // args.rounds)
    results: dict[tuple[str, int, bool], list[dict[str, float]]] = {}
    cmd = ""
    for rnd in range(args.rounds):
        order = kinds[rnd % len(kinds) :] + kinds[: rnd % len(kinds)]
        for conc, stream in configs:
            for kind in order:
                argv = [_PY, "-m", "bench.stacks_clients", "--kind", kind, "--port", str(ctx.upstream_port)]
                argv += ["--n", str(per), "--conc", str(conc)] + (["--stream"] if stream else [])
                cmd = shlex.join(_short(argv))
                p = subprocess.run(argv, env=ctx.procs.python_env(), cwd=_REPO, capture_output=True, text=True)
                if p.returncode != 0:
                    log(f"  {kind} c={conc} stream={stream}: failed: {p.stderr.strip().splitlines()[-1:]}")
                    continue
                r = orjson.loads(p.stdout.strip().splitlines()[-1])
                results.setdefault((kind, conc, stream), []).append(r)
                log(
                    f"  round {rnd + 1} {kind:<13} c={conc:<2} stream={stream!s:<5} {r['cpu_us']:7.1f} µs/req "
                    f"{r['rps']:8.0f} req/s"
                )
    base = "raw" if "raw" in kinds else kinds[0]
    lines = ["## 4. Upstream clients: CPU per request of the calling process", ""]
    lines += [
        f"Each measurement in its own process, {per:,} requests per round after a warm-up, "
        f"{args.rounds} rounds interleaved: CPU µs/request is the process's `time.process_time()` over all "
        f"{per * args.rounds:,} requests (every thread counted). Command, e.g.: `{cmd}`.",
        "",
    ]
    lines += [
        f"| client | answer | c | CPU µs/req | vs {base} | req/s (wall) | answer sizes |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for conc, stream in configs:
        for kind in kinds:
            rs = results.get((kind, conc, stream), [])
            if not rs:
                lines.append(f"| {kind} | {'stream' if stream else 'JSON'} | {conc} | not measured | | | |")
                continue
            total = sum(r["requests"] for r in rs)
            cpu = sum(r["cpu_us"] * r["requests"] for r in rs) / total
            bs = results.get((base, conc, stream), [])
            ratio = _med([r["cpu_us"] / b["cpu_us"] for r, b in zip(rs, bs, strict=False)])
            sizes = sorted({s for r in rs for s in r["sizes"]})
            lines.append(
                f"| {kind} | {'stream' if stream else 'JSON'} | {conc} | {cpu:.1f} | {ratio:.2f} | "
                f"{_med([r['rps'] for r in rs]):,.0f} | {sizes} |"
            )
    return lines


def section_sweep(args: argparse.Namespace, ctx: Context, log: Callable[[str], None]) -> list[str]:
    upstream = f"http://127.0.0.1:{ctx.upstream_port}"
    stacks = []
    for iface, target in (("asgi", "tiny_asgi"), ("rsgi", "tiny_rsgi")):
        for mode in ("st", "mt"):
            for loop in ("uvloop", "rloop", "asyncio"):
                stacks.append(
                    Stack(
                        f"{iface}-{mode}-{loop}",
                        f"granian {iface.upper()} {mode} {loop}",
                        lambda p, i=iface, t=target, m=mode, lp=loop: granian_argv(
                            i, f"bench.stacks_apps:{t}", p, m, lp
                        ),
                        {"STACKS_UPSTREAM": upstream},
                    )
                )
    for iface, target in (("asgi", "tiny_asgi"), ("rsgi", "tiny_rsgi")):
        stacks.append(
            Stack(
                f"{iface}-st-uvloop-rust",
                f"granian {iface.upper()} st uvloop --task-impl rust",
                lambda p, i=iface, t=target: granian_argv(
                    i, f"bench.stacks_apps:{t}", p, "st", "uvloop", extra=("--task-impl", "rust")
                ),
                {"STACKS_UPSTREAM": upstream},
            )
        )
    stacks.insert(0, _tiny_stacks(upstream, "st", "uvloop", args.facts, False)[0])
    runs = _start_all(ctx.procs, stacks, log)
    body = chat_body()
    scenarios = [Scenario("echo c=32", "/echo", body, 32), Scenario("proxy c=32", "/proxy", body, 32)]
    samples = _measure_and_stop(ctx, runs, scenarios, args, log)
    lines = ["## Granian's options: `--runtime-mode` x `--loop` (1 worker, 1 runtime thread), c=32", ""]
    lines += [
        "| server | echo req/s | echo CPU ms/req | vs uvicorn | proxy req/s | proxy CPU ms/req | vs uvicorn | errors |"
    ]
    lines += ["|---|---:|---:|---:|---:|---:|---:|---:|"]
    base = runs[0].stack.key
    for r in runs:
        e, p = samples.get((r.stack.key, "echo c=32"), []), samples.get((r.stack.key, "proxy c=32"), [])
        lines.append(
            f"| {r.stack.label} | {_med([s.rps for s in e]):,.0f} | {_med([s.cpu_ms for s in e]):.3f} | "
            f"{_ratio(samples, r.stack.key, base, 'echo c=32'):.2f} | {_med([s.rps for s in p]):,.0f} | "
            f"{_med([s.cpu_ms for s in p]):.3f} | {_ratio(samples, r.stack.key, base, 'proxy c=32'):.2f} | "
            f"{sum(s.errors for s in e + p)} |"
        )
    return lines


def _git(*argv: str) -> str:
    p = subprocess.run(["git", *argv], cwd=_REPO, capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else "?"


def _snapshot(work: Path) -> Path:
    """HEAD's ``src`` in ``work`` (``git archive``: nothing in the repository changes)."""
    dest = work / "head"
    dest.mkdir()
    archive = subprocess.run(["git", "archive", "HEAD", "src"], cwd=_REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / "src"


# -- main -----------------------------------------------------------------------------------------------------------
def _versions() -> str:
    out = []
    for pkg in ("granian", "pyreqwest", "uvicorn", "httptools", "uvloop", "aiohttp", "orjson", "rloop"):
        try:
            out.append(f"{pkg} {importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{pkg} (not installed)")
    return ", ".join(out)


_SECTIONS = {
    "servers": section_servers,
    "gateway": section_gateway,
    "security": section_security,
    "clients": section_clients,
    "sweep": section_sweep,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.stacks", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds per measurement (default 2)")
    ap.add_argument("--out", type=Path, default=_REPO / "bench" / "results" / "stacks.md", help="markdown report")
    ap.add_argument(
        "--seconds", type=float, default=2.0, help="seconds per c=32 wrk run (c=1: a third of it, at least 1 s)"
    )
    ap.add_argument("--requests", type=int, default=20_000, help="client requests per measurement, over all rounds")
    ap.add_argument("--only", default="servers,gateway,security,clients", help=f"sections, of: {', '.join(_SECTIONS)}")
    ap.add_argument("--sweep", action="store_true", help="also sweep granian's --runtime-mode and --loop")
    ap.add_argument("--granian-mode", default="st", choices=("st", "mt"), help="granian --runtime-mode (default st)")
    ap.add_argument("--granian-loop", default="uvloop", help="granian --loop (default uvloop)")
    ap.add_argument(
        "--clients", default="aiohttp,pyreqwest,raw", help="of: aiohttp,transport,pyreqwest,pyreqwest-mt,raw"
    )
    ap.add_argument(
        "--src",
        choices=("head", "worktree"),
        default="head",
        help="modelway code measured: HEAD's src (a git-archive snapshot; default) or the working tree",
    )
    ap.add_argument(
        "--no-lean", dest="with_lean", action="store_false", help="leave out modelway's LeanHttpProtocol rows"
    )
    args = ap.parse_args(argv)
    sections = args.only.split(",") + (["sweep"] if args.sweep else [])
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    work = Path(tempfile.mkdtemp(prefix="stacks-"))
    procs = SnapshotProcs(work)
    commit = _git("rev-parse", "--short", "HEAD")
    if args.src == "head":
        procs.src = _snapshot(work)
    cmdline = shlex.join([".venv/bin/python", "-m", "bench.stacks", *(sys.argv[1:] if argv is None else argv)])
    short = max(1.0, args.seconds / 3)
    src = f"HEAD {commit} (git archive snapshot of src)" if args.src == "head" else f"the working tree (HEAD {commit})"
    lines = [
        "# Server and upstream-client stacks, side by side",
        "",
        f"`{cmdline}`: {dt.datetime.now().isoformat(timespec='seconds')}, {os.cpu_count()} cores (shared), "
        f"background load {background_cpu_percent(0.5):.0f}% before the run. modelway code: {src}. {_versions()}.",
        "",
        f"{args.rounds} rounds, interleaved; c=32 runs {args.seconds:g} s, c=1 runs {short:g} s (wrk, 1 thread); "
        "CPU = utime + stime of the server's process tree from /proc over the run, per request. Medians over rounds "
        "(CPU: median, min–max); ratios are taken within each round.",
    ]
    try:
        warm_bytecode(procs)
        args.facts = modelway_facts(procs)
        log(f"modelway from {args.facts['file']}")
        upstream, upstream_port = start_upstream(procs)
        ctx = Context(procs, work, upstream_port, upstream)
        for name in sections:
            log(f"section {name}")
            lines += ["", *_SECTIONS[name](args, ctx, log)]
    finally:
        procs.stop_all()
    lines += ["", f"Run time {time.perf_counter() - started:.0f} s."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
