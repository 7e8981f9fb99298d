"""The least CPU any Python gateway can spend per request: a byte relay on uvloop Protocols and httptools.

``python -m bench.floor_proxy --port 9300 --upstream-port 9100``

Not a gateway, a measuring stick (the ``python-floor`` row of ``python -m bench``): it parses the client's request
with httptools and its body with orjson (a gateway must at least read ``model`` and ``stream``), writes it to a
kept-alive upstream connection from a pool, parses the answer with httptools and relays it: a JSON body as one
``Content-Length`` response, a chunked stream chunk by chunk as it arrives. No routing, no validation, no typed
objects, no error handling beyond closing: each request is two parses and four socket operations, the work every
proxy written in Python does, with nothing on top. Whatever a real gateway does costs more than this.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections import deque
from typing import cast

import httptools
import orjson
import uvloop

__all__ = ["main"]

_JSON_HEAD = b"HTTP/1.1 %d OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
_HEALTH = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n{"status":"ok"}'


class Upstream(asyncio.Protocol):
    """One kept-alive connection to the upstream; relays one answer at a time to ``client``."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.client: Client | None = None
        self.chunked = False
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client is not None:
            self.client.close()
        self.pool.lost(self)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def send(self, client: Client, request: bytes) -> None:
        self.client, self.chunked, self.body = client, False, []
        assert self.transport is not None
        self.transport.write(request)

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"transfer-encoding" and value.lower() == b"chunked":
            self.chunked = True

    def on_headers_complete(self) -> None:
        if self.chunked and self.client is not None:
            self.client.write(_SSE_HEAD)

    def on_body(self, body: bytes) -> None:
        if self.chunked:
            if self.client is not None:
                self.client.write(b"%x\r\n%s\r\n" % (len(body), body))
        else:
            self.body.append(body)

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            if self.chunked:
                client.write(b"0\r\n\r\n")
            else:
                body = b"".join(self.body)
                client.write(_JSON_HEAD % (self.parser.get_status_code(), len(body)) + body)
            client.done()
        self.pool.release(self)


class Pool:
    """Idle upstream connections, reused last-in first-out; a new one is opened when none is idle."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: deque[Upstream] = deque()

    async def get(self) -> Upstream:
        if self.idle:
            return self.idle.pop()
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: Upstream(self), "127.0.0.1", self.port)
        return conn

    def release(self, conn: Upstream) -> None:
        self.idle.append(conn)

    def lost(self, conn: Upstream) -> None:
        if conn in self.idle:
            self.idle.remove(conn)


class Client(asyncio.Protocol):
    """One client connection: requests are parsed as they come and answered one at a time, in order."""

    def __init__(self, pool: Pool, upstream_host: bytes) -> None:
        self.pool = pool
        self.host = upstream_host
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.queue: deque[tuple[bytes, bytes]] = deque()
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.close()

    def on_url(self, url: bytes) -> None:
        self.url, self.body = url, []

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.queue.append((self.url, b"".join(self.body)))
        if not self.busy:
            self._next()

    def _next(self) -> None:
        if not self.queue:
            self.busy = False
            return
        self.busy = True
        url, body = self.queue.popleft()
        if url == b"/health":
            self.write(_HEALTH)
            self.done()
            return
        data = orjson.loads(body)  # a gateway must at least look at the model and whether it streams
        _ = data.get("model"), data.get("stream") is True
        request = b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
            url,
            self.host,
            len(body),
            body,
        )
        if self.pool.idle:  # the common case: no task, no await
            self.pool.idle.pop().send(self, request)
        else:
            asyncio.ensure_future(self._forward(request))

    async def _forward(self, request: bytes) -> None:
        conn = await self.pool.get()
        conn.send(self, request)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def done(self) -> None:
        self._next()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def serve(port: int, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()
    pool = Pool(upstream_port)
    host = b"127.0.0.1:%d" % upstream_port
    server = await loop.create_server(lambda: Client(pool, host), "127.0.0.1", port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.floor_proxy", description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream-port", type=int, required=True)
    args = ap.parse_args(argv)
    uvloop.run(serve(args.port, args.upstream_port))


if __name__ == "__main__":
    main()
