"""CPU per streamed chat answer in process: the bench upstream's 20-event stream, from bytes to the caller's bytes.

``python -m bench.inproc_stream [-n 3000] [--rounds 5] [--reads 3] [--golden FILE]``

(``--reads 0``: one read per event, as an idle gateway reads them.)

The path is the gateway's for an OpenAI chat stream relayed from an OpenAI-compatible upstream (the ``vllm``
adapter): :func:`modelway.calls.stream_once` over a stub transport whose body arrives in ``--reads`` pieces (as
under load, where several events come in one read) → the ticket's ``track`` → the streaming pump
(``server/streaming.py``) → the chat dialect's ``ChunkRenderer``, with ``stream_options.include_usage``. Layers are
also timed alone: the SSE decoder, decoder + stream parser (``calls._parse``), the renderer over the parsed chunks.
CPU is ``time.process_time()``; each figure is the median over ``--rounds`` rounds, in µs per stream.
``--golden FILE`` writes the rendered stream (``created`` fixed) to compare two trees byte for byte.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

from .upstream import _WORDS, STREAM_EVENTS

__all__ = ["main", "rendered_stream", "stream_bytes"]

MODEL = "bench-model"


def stream_bytes() -> bytes:
    """The stream's body as the upstream sends it (chunked encoding taken off): 20 events, then ``[DONE]``."""
    return b"".join(STREAM_EVENTS) + b"data: [DONE]\n\n"


def pieces(reads: int) -> list[bytes]:
    """The stream's bytes in ``reads`` reads of equal size (cut anywhere); 0: one read per event (an idle server)."""
    if reads == 0:
        return [*STREAM_EVENTS, b"data: [DONE]\n\n"]
    data = stream_bytes()
    step = -(-len(data) // reads)
    return [data[i : i + step] for i in range(0, len(data), step)]


class _Body:
    status = 200
    headers = {"content-type": "text/event-stream; charset=utf-8"}
    content_type = headers["content-type"]

    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        for p in self.parts:
            yield p

    async def read(self) -> bytes:
        return b"".join(self.parts)

    async def aclose(self) -> None:
        pass


class _Transport:
    max_event_bytes = 16 * 1024 * 1024

    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts

    async def stream(self, http: Any, *, timeout: float | None = None) -> _Body:
        return _Body(self.parts)


def _setup() -> tuple[Any, Any]:
    from modelway.providers import get_adapter_class
    from modelway.providers.base import ProviderSettings
    from modelway.types import ChatRequest

    adapter = get_adapter_class("vllm")(ProviderSettings(api_key="sk-x", base_url="http://127.0.0.1:9100/v1"))
    req = ChatRequest(
        MODEL,
        [{"role": "user", "content": "hi"}],
        stream=True,
        params={"stream_options": {"include_usage": True}},
    )
    return adapter, req


def _plane() -> Any:
    return SimpleNamespace(
        metrics=None,
        ledger=None,
        request_log=None,
        body_cap=None,
        lifecycle=SimpleNamespace(aborting=False),
        limiter=None,
        label=lambda m, d: m,
    )


class _Req:
    request_id = "req-bench"

    def absorb_abort(self) -> bool:
        return False


async def _whole(parts: list[bytes], out: list[bytes] | None = None, created: int | None = None) -> None:
    """One stream through stream_once → ticket.track → the pump → ChunkRenderer."""
    from modelway.calls import stream_once
    from modelway.server.dialects.openai_chat import ChatDialect, ChunkRenderer
    from modelway.server.streaming import _pump
    from modelway.server.ticket import Ticket

    adapter, req = _SETUP
    ticket = Ticket(_PLANE, "req-bench", None, MODEL, "chat", True)
    render = ChunkRenderer(MODEL, True, "req-bench")
    if created is not None:
        render.created = created
    it = ticket.track(stream_once(_Transport(parts), adapter, req, timeout=60.0))

    async def send(msg: dict[str, Any]) -> None:
        if out is not None and msg["type"] == "http.response.body":
            out.append(msg["body"])

    try:
        await _pump(_Req(), send, it, ChatDialect(), render, None)  # type: ignore[arg-type]
    finally:
        await it.aclose()
    if out is not None:
        assert ticket.usage is not None and ticket.usage.total_tokens == 78, ticket.usage
        assert ticket.ascii_chars == len(" ".join(_WORDS[:17])) and ticket.other_chars == 0


_SETUP: Any = None
_PLANE: Any = None


def rendered_stream(reads: int = 3, created: int = 1700000000) -> bytes:
    """The bytes a caller gets for the bench stream (``created`` fixed, so two runs compare byte for byte)."""
    global _SETUP, _PLANE
    _SETUP, _PLANE = _setup(), _plane()
    out: list[bytes] = []
    asyncio.run(_whole(pieces(reads), out, created))
    return b"".join(out)


def _layers(parts: list[bytes]) -> dict[str, Callable[[], object]]:
    from modelway.calls import _parse
    from modelway.server.dialects.openai_chat import ChunkRenderer
    from modelway.sse import SSEDecoder

    adapter, req = _SETUP

    def decoder() -> object:
        d = SSEDecoder()
        for p in parts:
            d.feed(p)
        return d.flush()

    def parse() -> list[Any]:
        d = SSEDecoder()
        parser = adapter.stream_parser(req)
        out: list[Any] = []
        for p in parts:
            batch, err = _parse(parser, d.feed(p))
            out += batch
        batch, err = _parse(parser, d.flush())
        return out + batch + parser.close()

    chunks = parse()

    def render() -> object:
        r = ChunkRenderer(MODEL, True, "req-bench")
        return b"".join([r.chunk(c) for c in chunks])

    return {"sse decoder": decoder, "decoder + parser": parse, "renderer": render}


def _time_sync(fn: Callable[[], object], n: int) -> float:
    t = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t) / n * 1e6


async def _time_whole(parts: list[bytes], n: int) -> float:
    t = time.process_time()
    for _ in range(n):
        await _whole(parts)
    return (time.process_time() - t) / n * 1e6


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.inproc_stream", description=__doc__.split("\n")[0])
    p.add_argument("-n", type=int, default=3000, help="streams per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reads", type=int, default=3, help="network reads the stream's bytes arrive in (0: one per event)")
    p.add_argument("--golden", help="write the rendered stream to this file and stop")
    a = p.parse_args(argv)
    global _SETUP, _PLANE
    if a.golden:
        with open(a.golden, "wb") as f:
            f.write(rendered_stream(a.reads))
        return
    _SETUP, _PLANE = _setup(), _plane()
    parts = pieces(a.reads)
    layers = _layers(parts)
    results: dict[str, list[float]] = {k: [] for k in ["whole stream", *layers]}
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    for _ in range(a.rounds):
        results["whole stream"].append(runner(_time_whole(parts, a.n)))
        for name, fn in layers.items():
            results[name].append(_time_sync(fn, a.n))
    import modelway

    print(f"{modelway.__file__}  ({a.n} streams x {a.rounds} rounds, {len(parts)} reads)")
    for name, xs in results.items():
        print(f"  {name:18} {statistics.median(xs):8.1f} µs/stream   (rounds: {', '.join(f'{x:.1f}' for x in xs)})")


if __name__ == "__main__":
    main()
