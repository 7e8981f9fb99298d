"""One connection to a provider, and the answer it is reading (:class:`Conn`, an ``asyncio.Protocol`` fed to
httptools' response parser).

The request goes in one write (a body over :data:`BIG_BODY` in slices, under the transport's write flow control).
The answer's head is bounded (:data:`MAX_HEAD` bytes, :data:`MAX_HEAD_LINES` lines), and so is what comes between
two pieces of its body (chunk framing, trailers: :data:`MAX_HEAD` bytes past one network read); 1xx answers are
skipped; the body is read by Content-Length, chunks or until close, and reading from the socket pauses while more
than :data:`HIGH_WATER` bytes wait unread (a slow consumer does not make the gateway buffer a provider's stream).
A connection goes back to the pool only when its answer was read to its end, nothing followed it, and the server
keeps it alive.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

import httptools

from ..transport import reason
from .failures import BadAnswer, ConnectionLost
from .request import Key

if TYPE_CHECKING:
    from .pool import Pool

__all__ = ["BIG_BODY", "HIGH_WATER", "MAX_HEAD", "MAX_HEAD_LINES", "Conn"]

#: bounds of an answer's head (its bytes, its header lines), and of what comes between two pieces of its body
MAX_HEAD = 64 * 1024
MAX_HEAD_LINES = 128
#: unread answer bytes past which reading from the socket pauses
HIGH_WATER = 256 * 1024
#: request bodies larger than this are written in slices of this size, waiting while the transport's buffer is full
BIG_BODY = 256 * 1024

# where a connection is in its exchange
IDLE, HEAD, BODY, DONE = 0, 1, 2, 3


class Conn(asyncio.Protocol):
    """One connection, and the answer it is reading (as :class:`~modelway.transport.Body`)."""

    __slots__ = (
        "alive",
        "buf",
        "buffered",
        "close_delimited",
        "deadline",
        "exc",
        "fed",
        "head_only",
        "headers",
        "keep_alive",
        "key",
        "lines",
        "loop",
        "parser",
        "phase",
        "pool",
        "read_paused",
        "reused",
        "since",
        "size",
        "status",
        "transport",
        "waiter",
        "write_paused",
        "written",
    )

    def __init__(self, pool: Pool, key: Key) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.key = key
        self.transport: asyncio.Transport = cast(asyncio.Transport, None)
        self.parser = httptools.HttpResponseParser(self)
        self.alive = False  # counted in the pool (from the moment it connected until it closes)
        self.reused = False
        self.phase = IDLE
        self.since = 0.0
        self.status = 0
        self.headers: dict[str, str] = {}
        # fed: bytes given to the parser since the head began or the body's last piece (bounded by MAX_HEAD)
        self.lines = self.fed = self.size = self.buffered = 0
        self.buf: list[bytes] = []
        self.exc: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        #: when the exchange in flight times out (the pool's deadlines watch it), or None
        self.deadline: float | None = None
        self.keep_alive = self.written = self.head_only = self.close_delimited = False
        self.read_paused = self.write_paused = False

    # -- the request -------------------------------------------------------------------------------------
    async def exchange(self, head: bytes, body: bytes | None, deadline: float | None, head_only: bool) -> None:
        """Send the request; return when the answer's head has arrived (1xx answers skipped)."""
        if not self.usable:
            # (closed between the pool handing it over and now: nothing was sent, so it is sent again)
            raise ConnectionLost("the connection was closed", stale=True, unsent=True)
        self.phase = HEAD
        self.status = self.lines = self.fed = self.size = 0
        self.headers = {}
        self.exc = None
        self.keep_alive = self.written = False
        self.head_only = head_only
        if deadline is not None:
            self.pool.watch(self, deadline)
        if body is None:
            self.transport.write(head)
            self.written = True
        elif len(body) <= BIG_BODY:
            self.transport.write(head + body)
            self.written = True
        else:
            self.transport.write(head)
            await self._write_big(body)
        while self.phase == HEAD:
            if self.exc is not None:
                raise self.exc
            waiter = self.waiter = self.loop.create_future()
            await waiter

    async def _write_big(self, body: bytes) -> None:
        view = memoryview(body)
        write = self.transport.write
        for i in range(0, len(body), BIG_BODY):
            write(view[i : i + BIG_BODY])
            while self.write_paused or self.exc is not None:
                if self.exc is not None:
                    raise self.exc
                if self.phase != HEAD:
                    return  # the answer came before the request ended: stop (the connection is not reused)
                waiter = self.waiter = self.loop.create_future()
                await waiter
            if self.phase != HEAD:
                return
        self.written = True

    @property
    def usable(self) -> bool:
        """Open, and not being closed: a request may be written."""
        return self.alive and not self.transport.is_closing()

    def disarm(self) -> None:
        """The head arrived: no more deadline (a stream's gaps are the idle watch's)."""
        self.deadline = None  # (the pool's deadlines entry is dropped when met)

    def expire(self) -> None:
        """The exchange's deadline passed (called by the pool)."""
        self.deadline = None
        if self.phase in (HEAD, BODY):
            self._fail(TimeoutError())
            self.close()

    # -- the answer, as a Body ---------------------------------------------------------------------------
    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    async def read_some(self) -> bytes:
        buf = self.buf
        while not buf:
            if self.phase == DONE:
                return b""
            if self.exc is not None:
                raise self.exc
            if self.phase != BODY:
                raise ConnectionLost("the answer was already read")
            waiter = self.waiter = self.loop.create_future()
            await waiter
        return self.take()

    def take(self) -> bytes:
        """What arrived of the body and was not read yet (reading from the socket resumes if it was paused)."""
        buf = self.buf
        if not buf:
            return b""
        data = buf[0] if len(buf) == 1 else b"".join(buf)
        buf.clear()
        self.buffered = 0
        if self.read_paused:
            self.read_paused = False
            if self.alive:
                self.transport.resume_reading()
        return data

    def at_eof(self) -> bool:
        return self.phase == DONE and not self.buf

    def release(self) -> None:
        """Back to the pool if the answer was read to its end and the server keeps the connection, else closed."""
        if not self.alive or self.phase == IDLE:
            return
        if self.phase != DONE or self.buf or not self.keep_alive or self.exc is not None:
            self.close()
            return
        self.deadline = None  # (disarmed)
        self.phase = IDLE
        self.reused = True
        self.pool.put(self)

    def close(self, grant: bool = True) -> None:
        """Close the connection now; a pending read fails."""
        self.disarm()
        if self.alive:
            self.alive = False
            self.pool.forget(self, grant)
            self.transport.abort()
        if self.phase in (HEAD, BODY):
            self._fail(ConnectionLost("the connection was closed"))

    def _fail(self, exc: BaseException) -> None:
        if self.exc is None:
            self.exc = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _bad(self, message: str) -> None:
        self._fail(BadAnswer(message))
        self.close()

    # -- asyncio.Protocol --------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's transports do not derive from it)

    def data_received(self, data: bytes) -> None:
        phase = self.phase
        if phase != HEAD and phase != BODY:
            # bytes when no answer is due (while idle, or past the answer's end): the connection is not usable
            self.keep_alive = False
            if phase == IDLE:
                self.close()
            return
        self.fed += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._bad("the provider switched to another protocol")
        except httptools.HttpParserError as exc:
            if self.exc is not None:  # (a bound broken in a callback: already failed)
                return
            if self.phase == DONE:
                self.keep_alive = False  # garbage after a whole answer: the answer stands, the connection goes
                return
            self._bad(str(exc) or type(exc).__name__)
        else:
            if self.buf:
                if self.buffered > HIGH_WATER and not self.read_paused and self.alive:
                    self.read_paused = True  # until the reader takes what is here
                    self.transport.pause_reading()
                waiter = self.waiter  # (self._wake(), inlined: once per network read of a stream)
                if waiter is not None:
                    self.waiter = None
                    if not waiter.done():
                        waiter.set_result(None)
            if self.fed > MAX_HEAD and self.exc is None:
                # (httptools gathers a header or trailer line whole before it calls back: bound it by the bytes
                # of the network reads since the one that held the body's last piece)
                if self.phase == HEAD:
                    self._bad(f"the answer's head is larger than {MAX_HEAD} bytes")
                elif self.phase == BODY:
                    self._bad(f"the answer's chunk framing or trailers are larger than {MAX_HEAD} bytes")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.alive:
            self.alive = False
            self.pool.forget(self)
        self.disarm()
        phase = self.phase
        if phase == BODY and self.close_delimited and exc is None and self.exc is None:
            self.phase = DONE  # a body without a length ends when the connection does
            self.keep_alive = False
            self._wake()
        elif phase == HEAD:
            why = reason(exc) if exc is not None else "the connection was closed before an answer"
            # a pooled connection closed (FIN) before any byte of the answer: the server had closed it while
            # idle, the request crossing its FIN. A reset is not taken for that: a server that reads a request
            # and resets has seen it, and it is not sent twice
            self._fail(ConnectionLost(why, stale=self.reused and self.fed == 0 and exc is None))
        elif phase == BODY:
            why = reason(exc) if exc is not None else "the connection was closed before the end of the body"
            self._fail(ConnectionLost(why))

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake()

    # -- httptools callbacks -----------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.phase != HEAD:
            self.keep_alive = False  # another answer begins after this one: nothing was asked for it

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.phase != HEAD:
            return  # (trailers: bounded by their bytes, in data_received)
        lines = self.lines = self.lines + 1
        size = self.size = self.size + len(name) + len(value)
        if lines > MAX_HEAD_LINES or size > MAX_HEAD:
            if lines > MAX_HEAD_LINES:
                self._bad(f"the answer has more than {MAX_HEAD_LINES} header lines")
                raise BadAnswer("too many header lines")
            self._bad(f"the answer's head is larger than {MAX_HEAD} bytes")
            raise BadAnswer("head too large")
        try:
            text = value.decode()  # (without an error handler: several times faster, and the same for UTF-8)
        except UnicodeDecodeError:
            text = value.decode("utf-8", "surrogateescape")
        self.headers[name.decode("latin-1").lower()] = text

    def on_headers_complete(self) -> None:
        if self.phase != HEAD:
            return
        status = self.parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            self.headers = {}
            self.lines = self.size = 0
            return
        self.status = status
        self.phase = BODY
        self.fed = 0
        headers = self.headers
        self.close_delimited = (
            "content-length" not in headers
            and "chunked" not in headers.get("transfer-encoding", "").lower()
            and status not in (204, 304)
        )
        if self.head_only:
            # the answer to HEAD has no body, whatever its Content-Length says; the parser does not know that, so
            # the connection is not reused (keep_alive stays False)
            self.phase = DONE
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.phase == BODY:  # (the reader is woken once per network read: in data_received)
            self.buf.append(body)
            self.buffered += len(body)
            self.fed = 0

    def on_message_complete(self) -> None:
        if self.phase != BODY:
            return
        self.keep_alive = self.written and self.parser.should_keep_alive()
        self.phase = DONE
        self._wake()
