"""``python -m bench.observe_cost``: the gateway's own CPU per request, in process, with the request log, traces or
CORS on or off (and, run with another checkout's ``src`` first on ``PYTHONPATH``, the same rows for that code).

The app is driven through ASGI calls (one task per request, as a server makes), against the fast fake upstream
(:mod:`bench.upstream`) in its own process, so ``time.process_time()`` counts the gateway's work alone: routing,
the dialect, the router, the upstream client, the ticket, metrics, and what is being measured. Traces go to a local
collector stand-in that accepts and drops them (a real exporter thread, a real OTLP/HTTP export).

    python -m bench.observe_cost [--requests 4000] [--rows off,log,bodies,logbodies,trace,trace10,cors] [--cp]

(``trace10``: traces with ``sample_ratio: 0.1``; ``bodies``: ``request_log.bodies`` without the log lines, which with
``--cp`` keeps the bodies with the usage records; ``logbodies``: both.)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_RUNS = 7
_BODY = b'{"model":"gpt","messages":[{"role":"user","content":"hello there"}]}'
_STREAM = b'{"model":"gpt","stream":true,"messages":[{"role":"user","content":"hello there"}]}'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sink() -> str:
    """An OTLP/HTTP endpoint that takes every export and drops it."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


async def _one(app: Any, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    sent: list[dict[str, Any]] = []
    done = False

    async def receive() -> dict[str, Any]:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # (the disconnect watch waits here)
        return {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers}
    await asyncio.get_running_loop().create_task(app(scope, receive, send))
    status = sent[0]["status"]
    assert status == 200, sent
    return int(status)


async def _row(name: str, cfg: dict[str, Any], n: int, headers: list[tuple[bytes, bytes]]) -> dict[str, float]:
    from modelway.config import parse_config
    from modelway.server import create_app

    app = create_app(parse_config(cfg, env={}), env={})
    await app.startup()
    out: dict[str, float] = {}
    try:
        for label, body in (("chat", _BODY), ("stream", _STREAM)):
            for _ in range(200):  # warm-up: connections, caches
                await _one(app, body, headers)
            runs = []
            for _ in range(_RUNS):
                gc.collect()
                t = time.process_time()
                for _ in range(n):
                    await _one(app, body, headers)
                runs.append((time.process_time() - t) / n * 1e6)
            out[label] = min(runs)  # the least disturbed run: other processes only ever add to a run's CPU
    finally:
        await app.shutdown()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--rows", default="off,log,trace,cors")
    ap.add_argument("--cp", action="store_true", help="with the control plane (SQLite store, master key)")
    args = ap.parse_args()
    import modelway

    port = _free_port()
    upstream = subprocess.Popen([sys.executable, "-m", "bench.upstream", "--port", str(port)])
    tmp = Path(tempfile.mkdtemp(prefix="observe-cost-"))
    try:
        time.sleep(1.0)
        dep = {"model": "openai/bench-model", "api_key": "sk-bench", "api_base": f"http://127.0.0.1:{port}/v1"}
        base: dict[str, Any] = {"server": {"max_retries": 0}, "models": [{"name": "gpt", "deployments": [dep]}]}
        headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]
        if args.cp:
            base["server"]["master_key"] = "sk-master"
            base["store"] = {"url": f"sqlite:///{tmp / 'gw.db'}"}
            base["usage"] = {"spill_path": str(tmp / "spill.jsonl")}
            headers.append((b"authorization", b"Bearer sk-master"))
        rows = {
            "off": (base, headers),
            "log": ({**base, "request_log": {"enabled": True, "path": os.devnull}}, headers),
            # bodies kept (with --cp: with the usage records too), with and without the log lines
            "bodies": ({**base, "request_log": {"bodies": True}}, headers),
            "logbodies": ({**base, "request_log": {"enabled": True, "path": os.devnull, "bodies": True}}, headers),
            "trace": ({**base, "tracing": {"endpoint": _sink()}}, headers),
            "trace10": ({**base, "tracing": {"endpoint": _sink(), "sample_ratio": 0.1}}, headers),
            "cors": (
                {**base, "server": {**base["server"], "cors_origins": ["https://app.example"]}},
                [*headers, (b"origin", b"https://app.example")],
            ),
        }
        where = Path(modelway.__file__).parent
        print(f"modelway from {where}; {args.requests} requests x {_RUNS} runs per row (the least)")
        print("| row | CPU µs/request | CPU µs/stream |")
        print("|---|---|---|")
        for name in args.rows.split(","):
            cfg, h = rows[name]
            got = asyncio.run(_row(name, cfg, args.requests, h))
            print(f"| {name}{'+cp' if args.cp else ''} | {got['chat']:.1f} | {got['stream']:.1f} |", flush=True)
    finally:
        upstream.terminate()
        upstream.wait()


if __name__ == "__main__":
    main()
