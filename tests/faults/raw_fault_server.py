"""A raw TCP "provider" for the faults the simulators cannot play: they speak HTTP properly, this one need not.

Each connection reads one HTTP request (head and ``Content-Length`` body), then plays the next queued
:data:`Behaviour` on the socket and closes it. Every answer that has a status line says ``Connection: close``, so
the gateway never gets a pooled connection this server is about to drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import orjson

__all__ = [
    "Behaviour",
    "RawFaultServer",
    "RawRequest",
    "broken_chunked",
    "close_at_once",
    "corrupt_gzip",
    "garbage",
    "headers_then_silence",
    "huge_header",
    "no_content",
    "redirect_elsewhere",
    "silent",
]


@dataclass(frozen=True, slots=True)
class RawRequest:
    head: bytes
    body: bytes

    @property
    def stream(self) -> bool:
        try:
            data = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return False
        return isinstance(data, dict) and data.get("stream") is True


Behaviour = Callable[[RawRequest, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _wait_for_close(reader: asyncio.StreamReader) -> None:
    """Send nothing more until the client goes away."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass


async def garbage(req: RawRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Not HTTP at all: an SSH banner (a deployment pointed at the wrong port)."""
    writer.write(b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n")
    await writer.drain()


async def close_at_once(req: RawRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the request, then close (FIN, not a reset) without a byte of answer."""


async def silent(req: RawRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept the request and never answer."""
    await _wait_for_close(reader)


async def headers_then_silence(req: RawRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A 200 status line and headers (a stream's, or a JSON body's with its length), then nothing."""
    if req.stream:
        head = b"Content-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    else:
        head = b"Content-Type: application/json\r\nContent-Length: 400\r\n"
    writer.write(b"HTTP/1.1 200 OK\r\n" + head + b"Connection: close\r\n\r\n")
    await writer.drain()
    await _wait_for_close(reader)


def broken_chunked(first: bytes, first_json: bytes) -> Behaviour:
    """A 200 chunked answer whose chunked encoding breaks after a first, valid chunk (``first`` for a stream,
    ``first_json`` for a JSON request): the next chunk-size line is not hexadecimal."""

    async def play(req: RawRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        media = b"text/event-stream" if req.stream else b"application/json"
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: "
            + media
            + b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        writer.write(_chunk(first if req.stream else first_json))
        await writer.drain()
        await asyncio.sleep(0.05)  # the first chunk is read on its own
        writer.write(b"zz-not-a-size\r\nwhatever\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)

    return play


async def huge_header(req: RawRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A response head far over any sane size (one 256 KiB header line)."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: " + b"a" * (256 * 1024) + b"\r\n")
    writer.write(b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
    await writer.drain()


async def no_content(req: RawRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """``204 No Content``: a success status with no answer at all."""
    writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
    await writer.drain()


async def corrupt_gzip(req: RawRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A 200 answer that says ``Content-Encoding: gzip`` and is not gzip."""
    media = b"text/event-stream" if req.stream else b"application/json"
    body = b"this is not gzip, whatever the header says"
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: " + media + b"\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()


async def redirect_elsewhere(req: RawRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """``307 Temporary Redirect`` to another origin (``localhost`` instead of ``127.0.0.1``: this same server, which
    counts the request if it is followed)."""
    port = writer.get_extra_info("sockname")[1]
    location = f"http://localhost:{port}/v1/elsewhere".encode()
    writer.write(
        b"HTTP/1.1 307 Temporary Redirect\r\nLocation: "
        + location
        + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()


async def _internal_error(req: RawRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    body = b'{"error": {"message": "raw fault server: nothing was queued", "type": "server_error"}}'
    writer.write(
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()


class RawFaultServer:
    """Serves from a daemon thread with its own event loop on an ephemeral loopback port."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Behaviour] = deque()
        self._requests: list[RawRequest] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[RawRequest]:
        with self._lock:
            return list(self._requests)

    def push(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self._queue.extend(behaviours)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._requests.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            req = RawRequest(head, await reader.readexactly(length))
            with self._lock:
                self._requests.append(req)
                behaviour = self._queue.popleft() if self._queue else _internal_error
            await behaviour(req, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def start(self) -> Self:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="RawFaultServer", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the raw fault server did not start")
        return self

    def stop(self) -> None:
        loop, server, thread = self._loop, self._server, self._thread
        if loop is None or server is None or thread is None:
            return

        async def shut() -> None:
            server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
