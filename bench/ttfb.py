"""Time to first byte of streams at concurrency 1, with a raw-socket asyncio client (wrk cannot measure it).

One keep-alive connection sends the streaming request again and again. For each stream it records the time until
the first byte of the first SSE event with output in it arrives — the first token a user would see; response
headers, and the opening events of the Anthropic and Responses streams (``message_start``, ``response.created``),
do not count — and the time until the stream ended (the chunked terminator). A stream that does not end as its API
ends a stream (``data: [DONE]``, ``message_stop``, ``response.completed``) or carries an error event is counted as
an error.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass

from .payloads import CHAT, Api

__all__ = ["TtfbResult", "measure_ttfb"]


@dataclass(slots=True)
class TtfbResult:
    streams: int
    ttfb_p50_ms: float
    ttfb_p99_ms: float
    total_p50_ms: float
    errors: int


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


class _BadResponse(Exception):
    pass


async def _one(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, api: Api
) -> tuple[float, float, bool]:
    """Send one request, read the whole response; (ttfb s, total s, keep-alive still usable)."""
    t0 = time.perf_counter()
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    lower = head.lower()
    first: float | None = None
    body = bytearray()
    if b"transfer-encoding: chunked" in lower:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            if first is None and api.first in data:
                first = time.perf_counter()
            body += data[:-2]
    else:
        i = lower.find(b"content-length:")
        n = int(lower[i + 15 : lower.find(b"\r\n", i)]) if i >= 0 else 0
        body += await reader.readexactly(n)
    end = time.perf_counter()
    if status != 200 or first is None or api.end not in body or api.error in body:
        raise _BadResponse(f"status {status}: {bytes(body[:200])!r}")
    return first - t0, end - t0, b"connection: close" not in lower


class _Client:
    """One keep-alive connection, reopened after an error or a ``connection: close``."""

    def __init__(self, port: int, request: bytes, api: Api) -> None:
        self.port = port
        self.request = request
        self.api = api
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def stream(self) -> tuple[float, float] | None:
        """(ttfb s, total s) of one stream, or None if it failed."""
        try:
            if self.conn is None:
                self.conn = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 20)
            first, whole, keep = await asyncio.wait_for(_one(*self.conn, self.request, self.api), 30)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, _BadResponse):
            self.close()
            await asyncio.sleep(0.01)
            return None
        if not keep:
            self.close()
        return first, whole

    def close(self) -> None:
        if self.conn is not None:
            self.conn[1].close()
            self.conn = None


async def _run(
    port: int,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
    seconds: float,
    max_streams: int,
    warmup: int,
    api: Api,
) -> TtfbResult:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    client = _Client(port, request, api)
    ttfb: list[float] = []
    total: list[float] = []
    errors = 0
    try:
        until = time.perf_counter() + min(1.0, seconds / 2)
        for _ in range(warmup):  # warm-up: at most ``warmup`` streams or about a second, not recorded
            await client.stream()
            if time.perf_counter() > until:
                break
        until = time.perf_counter() + seconds
        for _ in range(max_streams):
            got = await client.stream()
            if got is None:
                errors += 1
            else:
                ttfb.append(got[0])
                total.append(got[1])
            if time.perf_counter() > until:
                break
    finally:
        client.close()
    return TtfbResult(
        streams=len(ttfb),
        ttfb_p50_ms=statistics.median(ttfb) * 1000 if ttfb else float("nan"),
        ttfb_p99_ms=_pct(ttfb, 99) * 1000,
        total_p50_ms=statistics.median(total) * 1000 if total else float("nan"),
        errors=errors,
    )


def measure_ttfb(
    port: int,
    path: str,
    body: bytes,
    *,
    headers: Mapping[str, str],
    seconds: float,
    max_streams: int = 5000,
    warmup: int = 50,
    api: Api = CHAT,
) -> TtfbResult:
    """Sequential streams for about ``seconds`` (after ``warmup`` unrecorded ones), in a fresh uvloop loop."""
    coro = _run(port, path, body, headers, seconds, max_streams, warmup, api)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
