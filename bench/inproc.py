"""The gateway's own CPU per request, in process and by layer: no sockets, no other process, no scheduler noise.

``python -m bench.inproc [-n 20000] [--rounds 3] [--cp] [--stream] [--profile FILE]``

The app (:func:`modelway.server.app.create_app`) serves ``POST /v1/chat/completions`` called straight through ASGI
(the same scope the lean protocol builds, its disconnect extension included), and the upstream is a stub backend
under the real :class:`~modelway.transport.Transport` that answers the bench upstream's canned completion at once.
So the numbers are the Python work of the gateway itself: what ``python -m bench`` measures minus the server
protocol, the upstream client and the system calls. Each layer is also timed alone, from the inside out:

- ``transport.send``: the stub (the floor of this harness);
- ``calls.complete_once``: build the upstream request, send it, parse the answer into typed objects;
- ``control.begin + finish``: admission and settlement (with ``--cp``: the virtual key's limits, budget, the ledger);
- ``router (+ ticket)``: begin, the router's choice and failover loop around ``complete_once``, finish (for
  streams, the ticket's ``track`` too);
- ``dialect.parse``: the caller's JSON validated into the internal request;
- ``app (whole request)``: everything ``GatewayApp`` does for one request.

``--stream`` asks for streams instead (``stream_options.include_usage``): the stub answers the bench upstream's
20-event stream, its bytes in 3 reads as under load, and every layer that calls the upstream streams it to its end.

``--cp`` turns the control plane on as the ``modelway+cp`` row does (a SQLite store, a virtual key with rpm, tpm,
max_parallel and a budget, a priced model, the usage ledger and metrics). ``--profile FILE`` writes a cProfile of
the whole-request loop (cProfile inflates every call; read it for counts and shares). CPU is
``time.process_time()`` of this process (all its threads), the median over ``--rounds`` interleaved rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from .payloads import MODEL, chat_body
from .upstream import _completion

__all__ = ["main"]

_UPSTREAM_KEY = "sk-bench-upstream"
_MASTER = "sk-bench-inproc-master"


def _answer_body() -> bytes:
    raw = _completion()
    return raw.split(b"\r\n\r\n", 1)[1] if raw.startswith(b"HTTP/") else raw


class _StubBody:
    """The bench stream's bytes, as a backend's answer hands them out (``transport.Body``)."""

    status = 200
    headers = {"content-type": "text/event-stream"}
    content_length = None

    def __init__(self) -> None:
        self.parts = iter(_STREAM_READS)

    async def read_some(self) -> bytes:
        return next(self.parts, b"")

    def at_eof(self) -> bool:
        return False

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


#: the bench stream in 3 reads (``bench.inproc_stream.pieces``)
_STREAM_READS: list[bytes] = []


class _StubBackend:
    """A :class:`~modelway.transport.Transport` backend that answers every request with the canned completion, or
    every stream with the bench stream."""

    closed = False
    loop = None
    failures: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, watch: Any) -> None:
        from modelway.h1.failures import map_failure
        from modelway.transport import Response

        from .inproc_stream import pieces

        self._answer = Response(200, {"content-type": "application/json"}, _answer_body())
        self._watch = watch
        self.map = map_failure
        _STREAM_READS[:] = pieces(3)

    async def send(self, req: Any, timeout: float | None) -> Any:
        return self._answer

    async def stream(self, req: Any, timeout: float | None) -> Any:
        from modelway.transport import StreamResponse

        return StreamResponse(_StubBody(), req.provider, timeout, self._watch, self)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        pass

    def in_use(self) -> int:
        return 0


class _Cycle:
    """What the lean protocol puts in the scope for the disconnect watch (nothing disconnects here)."""

    def on_disconnect(self, callback: Callable[[], None] | None) -> None:
        pass


def _config(work: Path, cp: bool) -> dict[str, Any]:
    deployment = {"model": f"openai/{MODEL}", "api_base": "http://127.0.0.1:9/v1", "api_key": _UPSTREAM_KEY}
    model: dict[str, Any] = {"name": MODEL, "deployments": [deployment]}
    config: dict[str, Any] = {"server": {"master_key": _MASTER}, "models": [model]}
    if cp:
        model["price"] = {"input": 0.15, "output": 0.6}
        config["store"] = {"url": f"sqlite:///{work / 'inproc.db'}"}
        config["usage"] = {"spill_path": str(work / "spill.jsonl")}
    return config


async def _virtual_key(config: Any) -> str:
    """A key with the bench's limits (far above what the loop reaches), stored as ``modelway keys create`` does."""
    from modelway.auth.keys import new_key
    from modelway.store.sql import SQLStore

    assert config.store.url is not None
    secret, key = new_key(
        "bench", rpm=2_000_000_000, tpm=2_000_000_000, max_parallel=100_000, budget=1e9, budget_period="month"
    )
    store = SQLStore(config.store.url)
    await store.open()
    try:
        await store.insert_key(key)
    finally:
        await store.aclose()
    return secret


async def _cpu_per_call(make: Callable[[], Awaitable[object]], n: int) -> float:
    for _ in range(min(n, 2000)):  # warm-up
        await make()
    t0 = time.process_time()
    for _ in range(n):
        await make()
    return (time.process_time() - t0) / n * 1e6


async def _drain(batches: Any) -> None:
    try:
        async for _ in batches:
            pass
    finally:
        await batches.aclose()


async def _read_all(transport: Any, http: Any) -> None:
    s = await transport.stream(http, timeout=30)
    try:
        async for _ in s.iter_bytes():
            pass
    finally:
        await s.aclose()


async def run(n: int, rounds: int, cp: bool, profile: Path | None, stream: bool = False) -> dict[str, float]:
    from modelway import calls
    from modelway.config import parse_config
    from modelway.server.app import create_app
    from modelway.server.dialects.openai_chat import ChatDialect

    with tempfile.TemporaryDirectory(prefix="modelway-inproc-") as tmp:
        config = parse_config(_config(Path(tmp), cp), env={})
        secret = await _virtual_key(config) if cp else _MASTER
        app = create_app(config)
        await app.startup()
        try:
            gw = app.gateway
            assert gw is not None
            gw.transport._backend = _StubBackend(gw.transport._idle)  # type: ignore[assignment]
            body = chat_body(stream=stream)
            headers = [
                (b"host", b"127.0.0.1:8000"),
                (b"content-type", b"application/json"),
                (b"authorization", b"Bearer " + secret.encode()),
                (b"content-length", str(len(body)).encode()),
            ]
            extensions = {"modelway.disconnect": _Cycle()}
            statuses: list[int] = []

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])
                elif stream and not message.get("more_body") and not message["body"].endswith(b"data: [DONE]\n\n"):
                    statuses.append(-1)  # a stream that did not end as it should

            def scope() -> dict[str, Any]:
                return {
                    "type": "http",
                    "asgi": {"version": "3.0", "spec_version": "2.3"},
                    "http_version": "1.1",
                    "server": ("127.0.0.1", 8000),
                    "client": ("127.0.0.1", 50000),
                    "scheme": "http",
                    "method": "POST",
                    "root_path": "",
                    "path": "/v1/chat/completions",
                    "raw_path": b"/v1/chat/completions",
                    "query_string": b"",
                    "headers": headers,
                    "state": {},
                    "extensions": extensions,
                }

            dialect = ChatDialect()
            call = await dialect.parse(orjson.loads(body), None, gw)  # type: ignore[arg-type]
            creq = call.request
            deployment = gw.router.groups[MODEL].deployments[0]
            http = deployment.adapter.chat_request(creq)
            caller = await gw.control.auth.authenticate(b"Bearer " + secret.encode())
            transport = gw.transport

            async def begin_finish() -> None:
                ticket = await gw.control.begin("rid", caller, MODEL, "chat", stream)
                await ticket.finish(200, None)

            async def routed() -> None:
                ticket = await gw.control.begin("rid", caller, MODEL, "chat", stream)
                async with ticket:
                    if stream:
                        await _drain(ticket.track(gw.router.stream(MODEL, creq, ticket)))
                    else:
                        await gw.router.complete(MODEL, creq, ticket)

            upstream: dict[str, Callable[[], Awaitable[object]]] = {
                "transport.send (the stub)": lambda: transport.send(http, timeout=30),
                "calls.complete_once": lambda: calls.complete_once(transport, deployment.adapter, creq, timeout=30),
            }
            if stream:
                upstream = {
                    "transport.stream (the stub)": lambda: _read_all(transport, http),
                    "calls.stream_once": lambda: _drain(
                        calls.stream_once(transport, deployment.adapter, creq, timeout=30)
                    ),
                }
            layers: dict[str, Callable[[], Awaitable[object]]] = {
                **upstream,
                "control.begin + finish": begin_finish,
                "router (+ ticket)": routed,
                "dialect.parse": lambda: dialect.parse(orjson.loads(body), None, gw),  # type: ignore[arg-type]
                "app (whole request)": lambda: app(scope(), receive, send),  # type: ignore[arg-type]
            }
            runs: dict[str, list[float]] = {name: [] for name in layers}
            for _ in range(rounds):
                for name, make in layers.items():
                    runs[name].append(await _cpu_per_call(make, n))
            bad = [s for s in statuses if s != 200]
            if bad:
                raise SystemExit(f"the app answered {len(bad)} requests with {sorted(set(bad))} (-1: a stream cut)")
            if profile is not None:
                prof = cProfile.Profile()
                prof.enable()
                for _ in range(n):
                    await app(scope(), receive, send)  # type: ignore[arg-type]
                prof.disable()
                prof.dump_stats(str(profile))
        finally:
            await app.shutdown()
    return {name: statistics.median(values) for name, values in runs.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.inproc", description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=20_000, help="calls per layer per round (default 20000)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is shown (default 3)")
    ap.add_argument("--cp", action="store_true", help="the control plane on, as in the modelway+cp row")
    ap.add_argument("--stream", action="store_true", help="streams (the bench upstream's 20 events) instead")
    ap.add_argument("--profile", type=Path, help="also write a cProfile of the whole-request loop to this file")
    args = ap.parse_args(argv)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in modelway[server]
        results = asyncio.run(run(args.n, args.rounds, args.cp, args.profile, args.stream))
    else:
        results = uvloop.run(run(args.n, args.rounds, args.cp, args.profile, args.stream))
    label = "with the control plane" if args.cp else "without the control plane"
    if args.stream:
        label = f"streams, {label}"
    print(f"CPU µs per call, in process, {label} (median of {args.rounds} rounds of {args.n}):")
    for name, value in results.items():
        print(f"  {name:30s} {value:8.1f}")


if __name__ == "__main__":
    main()
