"""The chat dialect's stream frames, pinned: the renderer builds them from a pre-encoded envelope, and every frame
must stay the bytes ``orjson.dumps`` gives for the chunk's ``to_dict()`` as it always did (same keys, same order).
The bench upstream's stream, through the whole relay path (stream_once, the ticket, the pump), is pinned byte for
byte against a golden file; the ticket's character counts are pinned beside it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from bench.inproc_stream import rendered_stream

from modelway.server.dialects.openai_chat import ChunkRenderer
from modelway.server.ticket import Ticket
from modelway.types import ChatCompletionChunk, ChunkChoice, Delta, ToolCallDelta, Usage

GOLDEN = Path(__file__).parent / "golden" / "bench_chat_stream.sse"
CREATED = 1700000000


def reference(model: str, include_usage: bool, request_id: str, chunks: list[ChatCompletionChunk]) -> bytes:
    """The frames as the renderer made them before its envelope was pre-encoded: a dict per chunk, dumped."""
    out = b""
    rid: str | None = None
    for chunk in chunks:
        if rid is None:
            rid = chunk.id or f"chatcmpl-{request_id}"
        base = {"id": rid, "object": "chat.completion.chunk", "created": CREATED, "model": model}
        if chunk.choices:
            d: dict[str, Any] = {**base, "choices": [c.to_dict() for c in chunk.choices]}
            if include_usage:
                d["usage"] = None
            out += b"data: " + orjson.dumps(d) + b"\n\n"
        if chunk.usage is not None and include_usage:
            out += b"data: " + orjson.dumps({**base, "choices": [], "usage": chunk.usage.to_dict()}) + b"\n\n"
    return out


def render(model: str, include_usage: bool, request_id: str, chunks: list[ChatCompletionChunk]) -> bytes:
    r = ChunkRenderer(model, include_usage, request_id)
    r.created = CREATED
    return b"".join(r.chunk(c) for c in chunks)


def chunk(*choices: ChunkChoice, id: str = "chatcmpl-1", usage: Usage | None = None) -> ChatCompletionChunk:
    return ChatCompletionChunk(id, 1, "upstream-model", list(choices), usage, "vllm")


def text(t: str | None, index: Any = 0, finish: str | None = None, logprobs: Any = None) -> ChunkChoice:
    return ChunkChoice(index, Delta(t), finish, logprobs)


USAGE = Usage(10, 5, 15, {"cached_tokens": 3}, {"reasoning_tokens": 2})

STREAMS: dict[str, list[ChatCompletionChunk]] = {
    "text": [
        chunk(ChunkChoice(0, Delta("", "assistant"))),
        chunk(text("Hello")),
        chunk(text(' "quoted" \\ back\nslash\t\u2028 \x00 \x1f </script> 你好 🙂')),
        chunk(text(None, finish="stop")),
        chunk(id="", usage=USAGE),
    ],
    "empty delta, finish and usage in one chunk": [chunk(text(None, finish="length"), usage=Usage(1, 2, 3))],
    "no id from the upstream": [chunk(text("a"), id=""), chunk(text("b"), id="other")],
    "reasoning": [
        chunk(ChunkChoice(0, Delta(None, "assistant", "Let me think"))),
        chunk(ChunkChoice(0, Delta(None, None, "..."))),
        chunk(ChunkChoice(0, Delta("", None, ""))),
    ],
    "tool calls": [
        chunk(ChunkChoice(0, Delta(None, "assistant", None, [ToolCallDelta(0, "call_1", "get", "", "function")]))),
        chunk(ChunkChoice(0, Delta(None, None, None, [ToolCallDelta(0, None, None, '{"city":')]))),
        chunk(ChunkChoice(0, Delta(None, None, None, [ToolCallDelta(1, "call_2", "f", None, None)]))),
        chunk(ChunkChoice(0, Delta(None, None, None, [])), text(None, 1)),
        chunk(text(None, finish="tool_calls")),
    ],
    "n=2, other indices": [
        chunk(text("a", 0), text("b", 1)),
        chunk(text("c", 1, logprobs={"content": [{"token": "c", "logprob": -0.1}]})),
        chunk(text(None, 0, "stop"), text(None, 1, "length")),
    ],
    "odd values kept as they came": [
        chunk(text("x", "0")),
        chunk(text("y", True)),
        chunk(text("w", False), text("v", 0.0)),
        chunk(text("z", 7, "stop", logprobs=[])),
        chunk(ChunkChoice(0, Delta(None, None, None, None), None, {"content": None})),
    ],
}


@pytest.mark.parametrize("include_usage", [True, False])
@pytest.mark.parametrize("name", list(STREAMS))
def test_frames_are_the_dumped_dicts(name: str, include_usage: bool) -> None:
    chunks = STREAMS[name]
    for model in ("bench-model", 'a "model"/名前'):
        got = render(model, include_usage, "req-1", chunks)
        assert got == reference(model, include_usage, "req-1", chunks)
        for frame in got.split(b"\n\n")[:-1]:
            assert orjson.loads(frame.removeprefix(b"data: "))["object"] == "chat.completion.chunk"


def test_the_bench_stream_relayed_is_the_golden_bytes() -> None:
    """The bench upstream's 20 events (in 1, 3 and 7 reads, and one read per event) through stream_once, the
    ticket and the pump: the bytes the caller gets have not changed."""
    golden = GOLDEN.read_bytes()
    for reads in (1, 3, 7, 0):
        assert rendered_stream(reads, CREATED) == golden


def _plane() -> Any:
    return SimpleNamespace(
        metrics=None, ledger=None, request_log=None, body_cap=None, lifecycle=SimpleNamespace(aborting=False)
    )


async def test_the_ticket_counts_every_kind_of_text() -> None:
    """What an estimate is made from when the provider never reports usage: text, reasoning, tool names and
    arguments, split into ASCII and other characters; the last usage reported wins."""

    async def batches() -> Any:
        yield [chunk(ChunkChoice(0, Delta("", "assistant"))), chunk(text("Hello"), text("你好", 1))]
        yield [chunk(ChunkChoice(0, Delta(None, None, "hmm"))), chunk(ChunkChoice(0, Delta(None, None, "ß")))]
        yield [chunk(ChunkChoice(0, Delta("ab", None, "thinking…", [ToolCallDelta(0, "c", "get", '{"a":')])))]
        yield [chunk(ChunkChoice(0, Delta(None, None, None, [ToolCallDelta(0, None, None, "1}")])), usage=USAGE)]

    t = Ticket(_plane(), "req-1", None, "m", "chat", True)
    seen = [b async for b in t.track(batches())]
    assert len(seen) == 4 and t.ttft is not None
    assert t.ascii_chars == len("Hello") + len("hmm") + len("ab") + len("get") + len('{"a":') + len("1}")
    assert t.other_chars == len("你好") + len("ß") + len("thinking…")
    assert t.usage is USAGE
