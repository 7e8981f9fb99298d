"""Upstream clients side by side, each driven by the same asyncio (uvloop) driver against ``bench.upstream``.

``python -m bench.stacks_clients --kind aiohttp --port 9100 --n 20000 --conc 32 [--stream]`` prints one JSON line:
the client's CPU per request (``time.process_time``, so every thread of the process counts: pyreqwest's tokio
runtime too) and its wall-clock rate, over ``n`` requests after a warm-up. One process per measurement, so one
client's threads or caches never touch another's numbers.

Kinds:

* ``aiohttp``: one ``ClientSession`` configured as :mod:`modelway.transport` configures its own (connector limits,
  no auto-decompression, headers), the body read with ``content.readany()`` as the transport reads it;
* ``transport``: :class:`modelway.transport.Transport` itself (aiohttp plus the transport's own wrapping);
* ``pyreqwest``: pyreqwest's async ``Client`` (redirects and decompression off, as the transport has them);
  ``pyreqwest-mt`` the same on pyreqwest's multi-threaded runtime;
* ``raw``: :class:`RawClient`, an asyncio ``Protocol`` with ``httptools.HttpResponseParser`` keeping connections
  alive in a pool: the floor for a Python client (no timeouts, no limits, no redirects, no errors mapped).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httptools
import orjson

from .payloads import chat_body

__all__ = ["KINDS", "RawClient", "drive", "main"]

KINDS = ("aiohttp", "transport", "pyreqwest", "pyreqwest-mt", "raw")
_PATH = "/v1/chat/completions"
_HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench-upstream"}


# -- the floor: a raw httptools keep-alive client ------------------------------------------------------------------
class _Conn(asyncio.Protocol):
    """One keep-alive connection; one response at a time. Body pieces gather in ``chunks``; ``waiter`` wakes the
    reader once per read that brought body bytes or the end."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: Any = None
        self.chunks: list[bytes] = []
        self.waiter: asyncio.Future[None] | None = None
        self.done = self.lost = self.keep_alive = False
        self.status = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.done = True
        self._wake()

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done() and (self.chunks or self.done):
            w.set_result(None)

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()  # (read here: after the message it is reset)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.done = True


class RawClient:
    """POST to one host over a pool of keep-alive connections (a connection per request in flight)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[_Conn] = []
        self.loop = asyncio.get_running_loop()

    def _head(self, path: str, length: int, headers: dict[str, str]) -> bytes:
        lines = [f"POST {path} HTTP/1.1", f"host: {self.host}:{self.port}", f"content-length: {length}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def stream(self, path: str, body: bytes, headers: dict[str, str]) -> AsyncIterator[bytes]:
        conn = self.idle.pop() if self.idle else (await self.loop.create_connection(_Conn, self.host, self.port))[1]
        conn.done = False
        conn.transport.write(self._head(path, len(body), headers) + body)
        try:
            while True:
                if conn.chunks:
                    chunks, conn.chunks = conn.chunks, []
                    for c in chunks:
                        yield c
                elif conn.done:
                    break
                else:
                    conn.waiter = self.loop.create_future()
                    await conn.waiter
                    conn.waiter = None
        finally:
            if conn.done and not conn.lost and conn.keep_alive:
                self.idle.append(conn)
            else:
                conn.transport.close()

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        return b"".join([c async for c in self.stream(path, body, headers)])

    def close(self) -> None:
        for c in self.idle:
            c.transport.close()
        self.idle.clear()


# -- the driver ------------------------------------------------------------------------------------------------------
One = Callable[[], Awaitable[int]]


async def _make(kind: str, base: str, host: str, port: int, stream: bool) -> tuple[One, Callable[[], Awaitable[None]]]:
    """``one()``: a request read to its end (the bytes it brought), and the client's close."""
    body = chat_body(stream=stream)
    url = base + _PATH
    if kind == "aiohttp":
        import aiohttp

        connector = aiohttp.TCPConnector(limit=4096, limit_per_host=0, ttl_dns_cache=300, enable_cleanup_closed=False)
        session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
            headers={"User-Agent": "modelway", "Accept-Encoding": "gzip, deflate"},
        )
        timeout = aiohttp.ClientTimeout(total=None if stream else 600.0, sock_connect=10.0)

        async def one_aiohttp() -> int:
            async with session.request(
                "POST", url, headers=_HEADERS, data=body, timeout=timeout, allow_redirects=False
            ) as resp:
                n = 0
                while data := await resp.content.readany():
                    n += len(data)
                return n

        return one_aiohttp, session.close
    if kind == "transport":
        from modelway.providers.base import HTTPRequest
        from modelway.transport import Transport

        transport = Transport()
        req = HTTPRequest("POST", url, dict(_HEADERS), body, "openai")

        async def one_transport() -> int:
            if not stream:
                return len((await transport.send(req, timeout=600.0)).body)
            n = 0
            async with await transport.stream(req, timeout=600.0) as resp:
                async for data in resp.iter_bytes():
                    n += len(data)
            return n

        return one_transport, transport.aclose
    if kind in ("pyreqwest", "pyreqwest-mt"):
        from pyreqwest.client import ClientBuilder

        builder = ClientBuilder().follow_redirects(False).gzip(False).brotli(False).zstd(False).deflate(False)
        builder = builder.user_agent("modelway").runtime_multithreaded(kind == "pyreqwest-mt")
        client = builder.build()

        async def one_pyreqwest() -> int:
            rb = client.post(url).headers(_HEADERS).body_bytes(body)
            if not stream:
                resp = await rb.build().send()
                return len(await resp.bytes())
            n = 0
            async with rb.build_streamed() as resp:
                reader = resp.body_reader
                while (data := await reader.read_chunk()) is not None:
                    n += len(data)
            return n

        return one_pyreqwest, client.close
    if kind == "raw":
        raw = RawClient(host, port)

        async def one_raw() -> int:
            n = 0
            async for data in raw.stream(_PATH, body, _HEADERS):
                n += len(data)
            return n

        async def close_raw() -> None:
            raw.close()

        return one_raw, close_raw
    raise ValueError(f"unknown client {kind!r}: one of {', '.join(KINDS)}")


async def drive(kind: str, port: int, n: int, conc: int, stream: bool, host: str = "127.0.0.1") -> dict[str, Any]:
    one, close = await _make(kind, f"http://{host}:{port}", host, port, stream)
    sizes: set[int] = set()

    async def worker(k: int) -> None:
        for _ in range(k):
            sizes.add(await one())

    per = max(1, n // conc)
    await asyncio.gather(*(worker(max(1, 500 // conc)) for _ in range(conc)))  # warm-up: connections, caches
    t0, w0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(per) for _ in range(conc)))
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    await close()
    total = per * conc
    return {
        "kind": kind,
        "conc": conc,
        "stream": stream,
        "requests": total,
        "cpu_us": cpu / total * 1e6,
        "rps": total / wall,
        "sizes": sorted(sizes),  # every answer read whole: one size (the upstream's answers are canned)
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.stacks_clients", description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", choices=KINDS, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--conc", type=int, default=32)
    ap.add_argument("--stream", action="store_true")
    args = ap.parse_args(argv)
    import uvloop

    result = uvloop.run(drive(args.kind, args.port, args.n, args.conc, args.stream))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
