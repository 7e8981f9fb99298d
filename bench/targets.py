"""What the harness measures: the upstream, and each target (a row of the table) with the server that serves it.

Rows that share a server (``modelway`` and ``modelway-direct``) share one process. A target that cannot run says
why (``unavailable``) and becomes a clearly skipped row; nothing is ever faked.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from . import litellm_env, portkey_env
from .payloads import COMPAT_MODEL, MODEL
from .procs import Child, ProcessTable, free_port, wait_http_ok

__all__ = [
    "CONTROL_PLANE",
    "TARGETS",
    "Context",
    "Server",
    "Target",
    "modelway_config",
    "create_virtual_key",
    "modelway_control_plane_config",
    "start_modelway",
    "start_server",
    "start_upstream",
    "unavailable",
    "warm_bytecode",
]

_BENCH_DIR = Path(__file__).resolve().parent
_REPO = _BENCH_DIR.parent
_UPSTREAM_KEY = "sk-bench-upstream"


@dataclass
class Context:
    """What starting a server needs: the process table, a scratch directory, the upstream, the options."""

    procs: ProcessTable
    work: Path
    upstream_port: int
    upstream: Child | None
    master_key: str = field(default_factory=lambda: "sk-bench-" + secrets.token_hex(16))
    with_litellm: bool = False
    with_portkey: bool = False
    #: another checkout of modelway (its ``src`` is put first on PYTHONPATH) for the ``baseline`` rows: the same
    #: measurements, before and after a change, side by side in one run
    baseline: Path | None = None


@dataclass
class Server:
    """A running server: where to send load, whose process tree to measure, how long it took to get ready."""

    port: int
    pid: int  # root of the measured process tree
    ready_s: float
    version: str
    child: Child | None  # None when owned by someone else (the upstream, for ``direct``)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    name: str
    server: str  # key of the server that serves this row
    model: str  # the "model" field the row's requests carry
    description: str
    api: str = "chat"  # the inbound API the row's requests speak (bench.payloads.APIS)


CONTROL_PLANE = "modelway+cp"
FAILOVER = "modelway-failover"
FAILOVER_RETRY = "modelway-failover-retry"
BASELINE = "baseline"
BASELINE_CP = "baseline+cp"
PORTKEY = "portkey"

TARGETS: list[Target] = [
    Target("direct", "direct", MODEL, "straight to the fake upstream (the floor)"),
    Target("nginx", "nginx", MODEL, "nginx proxy_pass, 1 worker, keepalive to the upstream (the pass-through floor)"),
    Target("minimal", "minimal", MODEL, "Starlette + uvicorn + aiohttp + orjson pass-through (the Python floor)"),
    Target(
        "python-floor",
        "python-floor",
        MODEL,
        "uvloop Protocols + httptools + orjson byte relay, nothing else (bench.floor_proxy: the least any Python "
        "gateway spends)",
    ),
    Target("modelway", "modelway", MODEL, "modelway serve, defaults, alias bench-model -> openai/bench-model"),
    Target("modelway-direct", "modelway", "openai/bench-model", "the same server, the model addressed directly"),
    Target("modelway-completions", "modelway", MODEL, "the same server, POST /v1/completions", "completions"),
    Target("modelway-messages", "modelway", MODEL, "the same server, POST /v1/messages (Anthropic)", "messages"),
    Target(
        "modelway-responses",
        "modelway",
        COMPAT_MODEL,
        "the same server, POST /v1/responses (store false) translated to chat: the upstream as vllm/, since OpenAI's "
        "own deployments get /v1/responses natively and the fake upstream speaks chat only",
        "responses",
    ),
    Target(CONTROL_PLANE, CONTROL_PLANE, MODEL, "modelway + virtual key, rate limit, usage ledger, metrics"),
    Target(
        FAILOVER,
        FAILOVER,
        MODEL,
        "modelway, the alias over 3 deployments, one of them failing every 2nd request (500); routing: circuit "
        "breakers on, max_attempts 3",
    ),
    Target(
        FAILOVER_RETRY,
        FAILOVER_RETRY,
        MODEL,
        "the same without circuit breakers: every failure is met by a failover to another deployment",
    ),
    Target(BASELINE, BASELINE, MODEL, "the modelway row, served by the --baseline checkout"),
    Target(BASELINE_CP, BASELINE_CP, MODEL, "the modelway+cp row, served by the --baseline checkout"),
    Target("litellm", "litellm", MODEL, f"LiteLLM proxy {litellm_env.LITELLM_VERSION}, 1 worker, no DB"),
    Target(
        PORTKEY,
        PORTKEY,
        MODEL,
        f"Portkey's gateway {portkey_env.PORTKEY_VERSION} on Node {portkey_env.NODE_VERSION}, 1 process, "
        "configured per request by its x-portkey-config header (provider openai, custom_host the upstream)",
    ),
]


# -- the upstream ------------------------------------------------------------------------------------------------------
def start_upstream(
    procs: ProcessTable, name: str = "upstream", chunk_delay_ms: float = 0.0, fail_every: int = 0
) -> tuple[Child, int]:
    port = free_port()
    argv = [sys.executable, "-m", "bench.upstream", "--port", str(port)]
    if chunk_delay_ms:
        argv += ["--chunk-delay-ms", f"{chunk_delay_ms:g}"]
    if fail_every:
        argv += ["--fail-every", str(fail_every)]
    child = procs.spawn(name, argv, env=procs.python_env(), cwd=_REPO)
    wait_http_ok(child, port, "/health", timeout=15)
    return child, port


_WARM_IMPORTS = (
    "modelway.server.main",
    "modelway.cli",
    "bench.upstream",
    "bench.minimal_proxy",
    "uvicorn.main",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.lifespan.on",
    "uvloop",
    "httptools",
)


def warm_bytecode(procs: ProcessTable) -> None:
    """Import everything the Python children run once, so their bytecode is cached before anything is timed."""
    code = "\n".join(f"import {m}" for m in _WARM_IMPORTS)
    proc = subprocess.run(
        [sys.executable, "-c", code], env=procs.python_env(), cwd=_REPO, capture_output=True, text=True, timeout=300
    )
    if proc.returncode != 0:
        raise RuntimeError(f"cannot import the servers' modules:\n{proc.stderr[-2000:]}")


# -- availability ------------------------------------------------------------------------------------------------------
def modelway_control_plane_config(ctx: Context, name: str = "modelway-cp") -> dict[str, object]:
    """The config for the ``modelway+cp`` row: modelway's with the control plane on — the store (SQLite) holding
    virtual keys and the usage ledger, a price on the model so every request is costed, metrics (on by default)."""
    config = modelway_config(ctx)
    config["store"] = {"url": f"sqlite:///{ctx.work / (name + '.db')}"}
    config["usage"] = {"spill_path": str(ctx.work / f"{name}-spill.jsonl")}
    models = config["models"]
    assert isinstance(models, list)
    models[0]["price"] = {"input": 0.15, "output": 0.6}
    return config


def create_virtual_key(ctx: Context, config_file: Path, *, baseline: bool = False, **limits: object) -> str:
    """``modelway keys create`` against the config's store; the key's secret."""
    argv = [*_modelway_argv(ctx.baseline if baseline else None), "keys", "create", "-c", str(config_file)]
    argv += ["--name", "bench", "--json"]
    for k, v in limits.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    env = _python_env(ctx, baseline)
    proc = subprocess.run(argv, env=env, cwd=ctx.work, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"modelway keys create failed:\n{proc.stderr[-2000:]}")
    secret = orjson.loads(proc.stdout)["key"]
    assert isinstance(secret, str)
    return secret


def unavailable(target: Target, ctx: Context) -> str | None:
    """Why ``target`` cannot run here (a reason shown in its row), or None."""
    if target.server == "nginx" and _nginx() is None:
        return "nginx is not installed: apt-get install -y nginx-light"
    if target.server == "litellm" and not ctx.with_litellm:
        return "opt-in: --with-litellm"
    if target.server == PORTKEY and not ctx.with_portkey:
        return "opt-in: --with-portkey"
    if target.server == PORTKEY and not portkey_env.installed() and portkey_env.npm_path() is None:
        return "npm is not installed (apt-get install -y npm): it installs Portkey's gateway"
    if target.server in (BASELINE, BASELINE_CP) and ctx.baseline is None:
        return "opt-in: --baseline DIR"
    return None


# -- servers -----------------------------------------------------------------------------------------------------------
def _nginx() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)


def _nginx_version(exe: str) -> str:
    out = subprocess.run([exe, "-v"], capture_output=True, text=True).stderr.strip()
    return out.rpartition("/")[2] if "/" in out else out


def _start_direct(ctx: Context) -> Server:
    assert ctx.upstream is not None
    return Server(ctx.upstream_port, ctx.upstream.pid, 0.0, "bench.upstream (uvloop Protocol)", None)


def _start_nginx(ctx: Context) -> Server:
    exe = _nginx()
    assert exe is not None
    port = free_port()
    d = ctx.work / "nginx"
    d.mkdir(exist_ok=True)
    conf = d / "nginx.conf"
    conf.write_text(
        f"""worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    upstream bench_upstream {{
        server 127.0.0.1:{ctx.upstream_port};
        keepalive 256;
        keepalive_requests 10000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""
    )
    child = ctx.procs.spawn(
        "nginx", [exe, "-p", str(d), "-e", str(d / "error.log"), "-c", str(conf), "-g", "daemon off;"]
    )
    ready = wait_http_ok(child, port, "/health", timeout=15)
    return Server(port, child.pid, ready, f"nginx {_nginx_version(exe)}", child)


def _start_minimal(ctx: Context) -> Server:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "bench.minimal_proxy",
        "--port",
        str(port),
        "--upstream",
        f"http://127.0.0.1:{ctx.upstream_port}",
    ]
    child = ctx.procs.spawn("minimal", argv, env=ctx.procs.python_env(), cwd=_REPO)
    ready = wait_http_ok(child, port, "/health", timeout=30)
    return Server(port, child.pid, ready, "starlette + uvicorn + aiohttp", child)


def _start_floor(ctx: Context) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "bench.floor_proxy", "--port", str(port), "--upstream-port", str(ctx.upstream_port)]
    child = ctx.procs.spawn("python-floor", argv, env=ctx.procs.python_env(), cwd=_REPO)
    ready = wait_http_ok(child, port, "/health", timeout=30)
    return Server(port, child.pid, ready, "uvloop + httptools + orjson relay", child)


def modelway_config(ctx: Context, upstream_port: int | None = None) -> dict[str, object]:
    """modelway's defaults plus: a master key, the alias ``bench-model`` -> ``openai/bench-model`` at the upstream,
    and the ``openai`` provider pointed at the upstream so ``openai/bench-model`` works directly too."""
    base = f"http://127.0.0.1:{upstream_port or ctx.upstream_port}/v1"
    return {
        "server": {"host": "127.0.0.1", "master_key": ctx.master_key},
        "providers": {"openai": {"api_key": _UPSTREAM_KEY, "base_url": base}},
        "models": [
            {"name": MODEL, "deployments": [{"model": f"openai/{MODEL}", "api_base": base, "api_key": _UPSTREAM_KEY}]},
            {
                "name": COMPAT_MODEL,
                "deployments": [{"model": f"vllm/{MODEL}", "api_base": base, "api_key": _UPSTREAM_KEY}],
            },
        ],
    }


def _modelway_argv(baseline: Path | None = None) -> list[str]:
    exe = Path(sys.executable).parent / "modelway"
    if exe.exists() and baseline is None:
        return [str(exe)]
    return [sys.executable, "-c", "from modelway.cli import main; main()"]


def _python_env(ctx: Context, baseline: bool) -> dict[str, str]:
    env = ctx.procs.python_env()
    if baseline:
        assert ctx.baseline is not None
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ctx.baseline / "src"), env.get("PYTHONPATH")]))
    return env


def _modelway_version() -> str:
    try:
        from importlib.metadata import version

        return f"modelway {version('modelway')}"
    except Exception:
        return "modelway"


def start_modelway(
    ctx: Context,
    *,
    config: dict[str, object] | None = None,
    workers: int = 1,
    name: str = "modelway",
    timeout: float = 30.0,
    baseline: bool = False,
) -> Server:
    """``modelway serve -c <config> --port P --workers N``; ready when ``/health/readiness`` answers 200."""
    port = free_port()
    cfg = ctx.work / f"{name}.yaml"
    cfg.write_bytes(orjson.dumps(config or modelway_config(ctx), option=orjson.OPT_INDENT_2))  # JSON is YAML
    argv = [*_modelway_argv(ctx.baseline if baseline else None), "serve", "-c", str(cfg), "--port", str(port)]
    argv += ["--workers", str(workers)]
    child = ctx.procs.spawn(name, argv, env=_python_env(ctx, baseline), cwd=ctx.work)
    ready = wait_http_ok(child, port, "/health/readiness", timeout=timeout)
    label = _modelway_version() + (f", {workers} workers" if workers > 1 else "")
    if baseline:
        label += f" at {ctx.baseline}"
    return Server(port, child.pid, ready, label, child, {"Authorization": f"Bearer {ctx.master_key}"})


# the bench key's limits: checked on every request, far above what the load can reach
_BENCH_LIMITS = {
    "rpm": 2_000_000_000,
    "tpm": 2_000_000_000,
    "max_parallel": 100_000,
    "budget": 1e9,
    "budget_period": "month",
}


def _start_control_plane(ctx: Context, *, baseline: bool = False) -> Server:
    """modelway with the control plane on; the load sends a virtual key with rate limits and a budget."""
    name = "baseline-cp" if baseline else "modelway-cp"
    config = modelway_control_plane_config(ctx, name)
    cfg = ctx.work / f"{name}.yaml"
    cfg.write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
    secret = create_virtual_key(ctx, cfg, baseline=baseline, **_BENCH_LIMITS)
    server = start_modelway(ctx, config=config, name=name, baseline=baseline)
    server.headers = {"Authorization": f"Bearer {secret}"}
    return server


def _start_failover(ctx: Context, *, circuit: bool = True) -> Server:
    """modelway with one alias over three deployments, one of which (a second upstream) fails every other request."""
    _, bad_port = start_upstream(ctx.procs, name="upstream-failing", fail_every=2)
    good = f"http://127.0.0.1:{ctx.upstream_port}/v1"
    bad = f"http://127.0.0.1:{bad_port}/v1"
    deps = [
        {"model": f"openai/{MODEL}", "api_base": good, "api_key": _UPSTREAM_KEY},
        {"model": f"vllm/{MODEL}", "api_base": good, "api_key": _UPSTREAM_KEY},
        {"model": f"deepseek/{MODEL}", "api_base": bad, "api_key": _UPSTREAM_KEY},
    ]
    config = modelway_config(ctx)
    config["server"] = {**config["server"], "max_retries": 0}  # type: ignore[dict-item]
    config["routing"] = {"circuit": circuit, "max_attempts": 3}
    config["models"] = [{"name": MODEL, "deployments": deps}]
    return start_modelway(ctx, config=config, name=FAILOVER if circuit else FAILOVER_RETRY)


def _start_litellm(ctx: Context) -> Server:
    version = litellm_env.ensure_litellm(ctx.work / "litellm-pip.log")
    port = free_port()
    cfg = ctx.work / "litellm.yaml"
    base = f"http://127.0.0.1:{ctx.upstream_port}/v1"
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {"model": f"openai/{MODEL}", "api_base": base, "api_key": _UPSTREAM_KEY},
            }
        ],
        "general_settings": {"master_key": ctx.master_key},
    }
    cfg.write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "LITELLM_", "REDIS_"))}
    env |= {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"}
    argv = [
        str(litellm_env.litellm_exe()),
        "--config",
        str(cfg),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    child = ctx.procs.spawn("litellm", argv, env=env, cwd=ctx.work)
    headers = {"Authorization": f"Bearer {ctx.master_key}"}
    ready = wait_http_ok(child, port, "/health/readiness", timeout=180, interval=0.05, headers=headers)
    return Server(port, child.pid, ready, f"litellm {version}", child, headers)


def _start_portkey(ctx: Context) -> Server:
    """Portkey's gateway (``build/start-server.js --port=P --headless``) on the pinned Node 22, bound to 127.0.0.1;
    the load configures it per request with ``x-portkey-config``: provider ``openai`` at the fake upstream."""
    label = portkey_env.ensure_portkey(ctx.work / "portkey-npm.log")
    port = free_port()
    argv = [
        str(portkey_env.node_exe()),
        "--import",
        portkey_env.listen_preload().as_uri(),
        str(portkey_env.gateway_entry()),
        f"--port={port}",
        "--headless",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NODE_", "PORTKEY_", "REDIS_"))}
    child = ctx.procs.spawn(PORTKEY, argv, env=env, cwd=ctx.work)
    ready = wait_http_ok(child, port, "/", timeout=60)  # GET / answers 200 "AI Gateway says hey!"
    config = {"provider": "openai", "custom_host": f"http://127.0.0.1:{ctx.upstream_port}/v1", "api_key": _UPSTREAM_KEY}
    headers = {"x-portkey-config": orjson.dumps(config).decode()}
    return Server(port, child.pid, ready, label, child, headers)


_STARTERS: dict[str, Callable[[Context], Server]] = {
    "direct": _start_direct,
    "nginx": _start_nginx,
    "minimal": _start_minimal,
    "python-floor": _start_floor,
    "modelway": start_modelway,
    CONTROL_PLANE: _start_control_plane,
    FAILOVER: _start_failover,
    FAILOVER_RETRY: lambda ctx: _start_failover(ctx, circuit=False),
    BASELINE: lambda ctx: start_modelway(ctx, name="baseline", baseline=True),
    BASELINE_CP: lambda ctx: _start_control_plane(ctx, baseline=True),
    "litellm": _start_litellm,
    PORTKEY: _start_portkey,
}


def start_server(key: str, ctx: Context) -> Server:
    return _STARTERS[key](ctx)
