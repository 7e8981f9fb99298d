"""One model request being answered: the primitives that replies and faults are played with.

An :class:`Exchange` knows the request, whether it asked for a stream, how the provider renders a reply
(``render``: the non-stream body; ``render_stream``: the stream events) and the reply to play. It opens
responses with the right default headers (the reply's own ``headers`` win, compared case-insensitively),
writes while noticing a client that went away (one disconnect recorded in the simulator's ``disconnects``,
whether the headers, a write or a stall found it gone), stalls, drops and resets connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import CIMultiDict

from ._common import RID, Stream
from .script import Reply

if TYPE_CHECKING:
    from ._server import BaseSimulator

try:  # Linux: bytes in the kernel send queue not yet acknowledged
    import fcntl
    import termios

    _OUTQ: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):  # pragma: no cover - not Linux
    _OUTQ = None

__all__ = ["JSON", "Exchange"]

JSON = "application/json"
#: how often a stall checks whether the client is still there
_POLL = 0.02
#: how long a reset waits for the bytes already written to reach the client
_FLUSH_TIMEOUT = 1.0


@dataclass(slots=True)
class Exchange:
    sim: BaseSimulator
    request: web.Request
    stream: bool
    render: Callable[[Reply], bytes]
    render_stream: Callable[[Reply], Stream]
    #: bytes sent before the body or the first event (DeepSeek's keep-alives)
    prelude: bytes
    #: what to answer: the reply itself, or the fault's reply (or the simulator's default)
    reply: Reply
    #: the client went away (its disconnect is recorded): nothing more is written
    client_left: bool = False

    @property
    def rid(self) -> str:
        return self.request[RID]

    def body(self, reply: Reply | None = None) -> bytes:
        """The non-stream answer, prelude included."""
        return self.prelude + self.render(reply or self.reply)

    def events(self, reply: Reply | None = None) -> Stream:
        return self.render_stream(reply or self.reply)

    # ------------------------------------------------------------------ responses

    def headers(self, content_type: str | None = None, extra: Mapping[str, str] | None = None) -> CIMultiDict[str]:
        """Default headers for this answer, then ``extra``, then the reply's own ``headers`` (which win)."""
        stream = content_type is None and self.stream
        headers: CIMultiDict[str] = CIMultiDict()
        headers["Content-Type"] = content_type or (self.sim.sse_content_type if stream else JSON)
        if stream:
            headers["Cache-Control"] = "no-cache"
        headers.update(extra or {})
        headers.update(self.reply.headers or {})
        return headers

    def respond(self, body: bytes, *, content_type: str | None = None, status: int = 200) -> web.Response:
        """A whole answer at once (``content_type`` defaults to JSON, whatever the request asked for)."""
        return web.Response(status=status, body=body, headers=self.headers(content_type or JSON))

    async def open(
        self,
        *,
        content_type: str | None = None,
        length: int | None = None,
        headers: Mapping[str, str] | None = None,
        close: bool = False,
    ) -> web.StreamResponse:
        """Send the status line and headers of a 200 answer written piece by piece (chunked unless
        ``length`` is given). ``content_type`` defaults to SSE for a stream request, else JSON. ``close``:
        close the connection once the body has ended. When the client already went away, a disconnect is
        recorded and the response is returned all the same: the writes that follow do nothing and return False
        (and aiohttp, finishing the response, finds the connection gone)."""
        resp = web.StreamResponse(headers=self.headers(content_type, headers))
        if length is not None:
            resp.content_length = length
        if close:
            resp.force_close()
        try:
            await resp.prepare(self.request)
        except ConnectionError:  # the client left before the headers went out
            self._left()
        return resp

    async def write(self, resp: web.StreamResponse, data: bytes) -> bool:
        """Write ``data``; False (and a disconnect recorded) when the client went away."""
        if self.client_left:
            return False
        if not data:
            return True
        try:
            await resp.write(data)
        except ConnectionError:
            self._left()
            return False
        return True

    async def write_all(self, resp: web.StreamResponse, pieces: Iterable[bytes]) -> bool:
        for piece in pieces:
            if not await self.write(resp, piece):
                return False
        return True

    async def send_events(self, resp: web.StreamResponse, events: Iterable[bytes]) -> bool:
        """Stream events, ``reply.chunk_delay`` apart; False when the client went away."""
        for i, event in enumerate(events):
            if i and self.reply.chunk_delay:
                await asyncio.sleep(self.reply.chunk_delay)
            if not await self.write(resp, event):
                return False
        return True

    async def open_stream(self, after_chunks: int | None = None) -> tuple[web.StreamResponse, Stream, int, bool]:
        """Open the stream, send the prelude and the first ``after_chunks`` events (all when None).
        Returns the response, the rendered stream, how many events went out, and whether the client is
        still there."""
        rendered = self.events()
        sent = rendered.events if after_chunks is None else rendered.events[:after_chunks]
        resp = await self.open()
        ok = await self.write(resp, self.prelude) and await self.send_events(resp, sent)
        return resp, rendered, len(sent), ok

    # ------------------------------------------------------------------ the connection

    def gone(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()

    def _left(self) -> None:
        """The client went away: record its disconnect, once per answer."""
        if not self.client_left:
            self.client_left = True
            self.sim.disconnects.append(time.monotonic())

    async def stall(self, resp: web.StreamResponse, seconds: float | None, every: float | None, beat: bytes) -> bool:
        """Send nothing but ``beat`` every ``every`` seconds (never when None) for ``seconds`` (until the
        client goes away when None). False (and a disconnect recorded) when the client went away."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = None if seconds is None else start + seconds
        next_beat = None if every is None else start + every
        while True:
            now = loop.time()
            if deadline is not None and now >= deadline:
                return True
            if self.client_left or self.gone():
                self._left()
                return False
            if next_beat is not None and now >= next_beat:
                if not await self.write(resp, beat):
                    return False
                next_beat += every or 0.0
                continue
            wake = min(t for t in (deadline, next_beat, now + _POLL) if t is not None)
            await asyncio.sleep(wake - now)

    def drop(self) -> None:
        """Close the connection without ending the HTTP body (buffered bytes are still flushed)."""
        if self.request.transport is not None:
            self.request.transport.close()

    async def reset(self) -> None:
        """Reset the connection (RST, not FIN) once the bytes written so far have reached the client."""
        transport = self.request.transport
        if transport is None:
            return
        sock: Any = transport.get_extra_info("socket")
        await _flushed(transport, sock)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()


async def _flushed(transport: asyncio.BaseTransport, sock: Any) -> None:
    """Wait (up to :data:`_FLUSH_TIMEOUT`) until the transport's buffer and the kernel's send queue are
    empty, so that a reset does not discard what was sent before it."""
    if not isinstance(transport, asyncio.WriteTransport):
        return
    deadline = time.monotonic() + _FLUSH_TIMEOUT
    while time.monotonic() < deadline:
        if transport.get_write_buffer_size() == 0 and _unsent(sock) == 0:
            return
        await asyncio.sleep(0.001)


def _unsent(sock: Any) -> int:
    if sock is None or _OUTQ is None:
        return 0
    try:
        raw = fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return 0
    return int(struct.unpack("i", raw)[0])
