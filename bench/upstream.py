"""A fast fake OpenAI-compatible upstream: raw asyncio ``Protocol``, HTTP/1.1 keep-alive, canned bytes, uvloop.

``python -m bench.upstream --port 9100 [--chunk-delay-ms 100]``

- ``POST /v1/chat/completions``: a realistic ``chat.completion`` with usage; when the body contains
  ``"stream": true`` (a bytes search), a 20-event SSE stream instead (role, 17 content deltas, the finishing chunk,
  a ``choices: []`` usage chunk), then ``data: [DONE]``, in chunked transfer encoding, one write per event.
  Events are written one event-loop turn apart (or ``--chunk-delay-ms`` apart), so a proxy sees them as they come.
- ``GET /v1/models`` and ``GET /health``.

Requests are framed by ``Content-Length``; pipelined and partial reads are handled, and a pipelined request waits
until the stream before it ended. It must never be the bottleneck: direct throughput is measured in every run.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from typing import cast

import orjson

__all__ = ["STREAM_EVENTS", "UpstreamProtocol", "main", "serve"]

_MODEL = "bench-model"
_CREATED = int(time.time())
_ID = "chatcmpl-bench0123456789abcdefghijklmno"
_TEXT = (
    "Pooling reuses warm TCP and TLS connections, so each request skips the handshakes and the gateway adds "
    "little latency. Watch the time requests wait for a free connection."
)
_WORDS = _TEXT.split()
_PROMPT_TOKENS = 61
_MAX_HEAD = 65536


def _json_response(status: str, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 "
        + status.encode()
        + b"\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n"
        + extra
        + b"\r\n"
        + body
    )


def _completion() -> bytes:
    text = _TEXT
    body = {
        "id": _ID,
        "object": "chat.completion",
        "created": _CREATED,
        "model": _MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": _PROMPT_TOKENS,
            "completion_tokens": len(_WORDS),
            "total_tokens": _PROMPT_TOKENS + len(_WORDS),
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }
    return orjson.dumps(body)


def _chunk(delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
    return {
        "id": _ID,
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": _MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def _stream_events() -> list[bytes]:
    """20 SSE events: role, 17 content deltas, the finish, the usage chunk."""
    n_content = 17
    events = [_chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [_chunk({"content": ("" if i == 0 else " ") + _WORDS[i]}) for i in range(n_content)]
    events.append(_chunk({}, "stop"))
    usage = {"prompt_tokens": _PROMPT_TOKENS, "completion_tokens": n_content, "total_tokens": _PROMPT_TOKENS + 17}
    events.append({**_chunk({}), "choices": [], "usage": usage})
    return [b"data: " + orjson.dumps(e) + b"\n\n" for e in events]


def _http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


STREAM_EVENTS = _stream_events()
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
#: what one stream writes: the head with the first event, each further event, then [DONE] with the last chunk
_STREAM_WRITES = (
    [_STREAM_HEAD + _http_chunk(STREAM_EVENTS[0])]
    + [_http_chunk(e) for e in STREAM_EVENTS[1:]]
    + [_http_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"]
)
_COMPLETION = _json_response("200 OK", _completion())
_MODEL_INFO = {"id": _MODEL, "object": "model", "created": 0, "owned_by": "bench"}
_MODELS = _json_response("200 OK", orjson.dumps({"object": "list", "data": [_MODEL_INFO]}))
_HEALTH = _json_response("200 OK", b'{"status":"ok"}')
_NOT_FOUND = _json_response("404 Not Found", b'{"error":{"message":"not found","type":"invalid_request_error"}}')
_FAILURE = _json_response(
    "500 Internal Server Error", b'{"error":{"message":"the bench upstream failed on purpose","type":"server_error"}}'
)
_CHUNKED_BODY = _json_response(
    "411 Length Required",
    b'{"error":{"message":"send Content-Length","type":"invalid_request_error"}}',
    b"connection: close\r\n",
)
_STREAM_FLAGS = (b'"stream":true', b'"stream": true')


class UpstreamProtocol(asyncio.Protocol):
    """One client connection. ``chunk_delay`` spaces stream events (0: one event-loop turn apart); with
    ``fail_every`` n, every n-th chat request of the server answers 500."""

    __slots__ = ("transport", "buf", "busy", "chunk_delay", "loop", "closed", "failures")

    def __init__(self, chunk_delay: float, failures: _Failures | None = None) -> None:
        self.chunk_delay = chunk_delay
        self.failures = failures
        self.buf = bytearray()
        self.busy = False
        self.closed = False
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._process()

    def _process(self) -> None:
        buf = self.buf
        t = self.transport
        assert t is not None
        while not self.busy and not self.closed:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    t.close()
                return
            head = bytes(buf[:end]).lower()
            i = head.find(b"\r\ncontent-length:")
            if i >= 0:
                j = head.find(b"\r\n", i + 2)
                length = int(head[i + 17 : j if j >= 0 else len(head)])
            elif b"\r\ntransfer-encoding:" in head:
                t.write(_CHUNKED_BODY)
                t.close()
                return
            else:
                length = 0
            total = end + 4 + length
            if len(buf) < total:
                return
            body = bytes(buf[end + 4 : total])
            del buf[:total]
            self._respond(head, body)
            if b"\r\nconnection: close" in head and not self.busy:
                t.close()
                return

    def _respond(self, head: bytes, body: bytes) -> None:
        t = self.transport
        assert t is not None
        line_end = head.find(b"\r\n")
        method, _, rest = head[:line_end].partition(b" ")
        path = rest.partition(b" ")[0].partition(b"?")[0]
        if method == b"post" and path.endswith(b"/chat/completions"):
            if self.failures is not None and self.failures.fail():
                t.write(_FAILURE)
            elif any(flag in body for flag in _STREAM_FLAGS):
                self.busy = True
                self._stream(0, b"\r\nconnection: close" in head)
            else:
                t.write(_COMPLETION)
        elif method == b"get" and path.endswith(b"/models"):
            t.write(_MODELS)
        elif method == b"get" and path == b"/health":
            t.write(_HEALTH)
        else:
            t.write(_NOT_FOUND)

    def _stream(self, i: int, close: bool) -> None:
        t = self.transport
        if self.closed or t is None or t.is_closing():
            return
        t.write(_STREAM_WRITES[i])
        i += 1
        if i < len(_STREAM_WRITES):
            if self.chunk_delay > 0:
                self.loop.call_later(self.chunk_delay, self._stream, i, close)
            else:
                self.loop.call_soon(self._stream, i, close)
            return
        self.busy = False
        if close:
            t.close()
        elif self.buf:
            self._process()


class _Failures:
    """Every ``every``-th chat request of the whole server fails (deterministic: a failing deployment)."""

    __slots__ = ("every", "n")

    def __init__(self, every: int) -> None:
        self.every = every
        self.n = 0

    def fail(self) -> bool:
        self.n += 1
        return self.n % self.every == 0


async def serve(host: str, port: int, chunk_delay: float, fail_every: int = 0) -> None:
    loop = asyncio.get_running_loop()
    failures = _Failures(fail_every) if fail_every > 0 else None
    server = await loop.create_server(
        lambda: UpstreamProtocol(chunk_delay, failures), host, port, backlog=4096, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.upstream", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--chunk-delay-ms", type=float, default=0.0, help="gap between stream events (slow mode)")
    ap.add_argument("--fail-every", type=int, default=0, help="answer every N-th chat request with 500 (0: never)")
    args = ap.parse_args(argv)
    coro = serve(args.host, args.port, args.chunk_delay_ms / 1000.0, args.fail_every)
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


if __name__ == "__main__":
    main()
