"""The fleet's upstream: :class:`modelway.testing.OpenAISimulator` in a process of its own, counting the chat
requests it answered (``GET /stats``), so that the harness can tell which upstream a fleet still calls.

    python -m bench.fleet.upstream --port 9101 [--latency 0.05] [--chunk-delay 0.02]

Every chat request is answered alike (nothing is scripted): after ``--latency`` seconds, a completion of
:data:`TEXT` (a stream: :data:`CHUNKS` content events ``--chunk-delay`` apart) with the usage :data:`USAGE`
(prompt, completion tokens), streamed usage included when asked for. The fixed usage gives every request the same
cost, which makes a budget's bound exact. It runs on uvloop in its own process (not a thread of the harness: the
harness's client would share a GIL with it), stops on SIGTERM or SIGINT, and prints ``ready`` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web

from modelway.testing import Fault, OpenAISimulator, Reply

__all__ = ["API_KEY", "CHUNKS", "TEXT", "USAGE", "FleetUpstream", "main"]

API_KEY = "sk-fleet-upstream"
TEXT = "fleet replicas share one gateway state. "
#: content events of a stream (``chunk_size`` characters each)
CHUNK_SIZE = 8
CHUNKS = -(-len(TEXT) // CHUNK_SIZE)
#: (prompt tokens, completion tokens) of every answer
USAGE = (10, 20)


class FleetUpstream(OpenAISimulator):
    """The OpenAI simulator with ``GET /stats``: ``{"served": chat requests answered}`` (the key is needed)."""

    def _add_routes(self, app: web.Application) -> None:
        super()._add_routes(app)
        app.router.add_get("/stats", self._stats)

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"served": self.served})


def reply_script(latency: float, chunk_delay: float) -> Fault | Reply:
    """What every request gets."""
    reply = Reply(TEXT, chunk_size=CHUNK_SIZE, chunk_delay=chunk_delay, usage=USAGE)
    return Fault.slow_first_byte(latency, then=reply) if latency > 0 else reply


async def _serve(port: int, latency: float, chunk_delay: float) -> None:
    item = reply_script(latency, chunk_delay)
    sim = FleetUpstream(api_key=API_KEY, port=port, record=False, script=lambda n: item)
    await sim.astart()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    try:
        await stop.wait()
    finally:
        await sim.astop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fleet.upstream", description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--latency", type=float, default=0.05, help="seconds before each answer starts (default 0.05)")
    ap.add_argument("--chunk-delay", type=float, default=0.02, help="seconds between stream events (default 0.02)")
    args = ap.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(args.port, args.latency, args.chunk_delay))
    else:
        uvloop.run(_serve(args.port, args.latency, args.chunk_delay))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
