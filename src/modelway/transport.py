"""The one shared async HTTP transport, and the mapping of transport failures to our errors.

Everything that touches the network goes through :class:`Transport`: one connection pool per client (or per gateway
process), shared by every provider and every key. Adapters never do I/O. Two backends sit behind it: a lean
HTTP/1.1 client on asyncio protocols and httptools (:mod:`modelway.h1`, the default), and aiohttp
(:mod:`modelway.transport_aiohttp`), chosen with ``Transport(backend=...)`` or the ``MODELWAY_TRANSPORT``
environment variable (``h1`` or ``aiohttp``); without httptools installed it is aiohttp.

Answers are bounded: a whole answer (a JSON body, an error body, or everything a stream sends) may not decode to
more than ``max_answer_bytes``; past it the attempt fails with :class:`~modelway.errors.StreamError` and the
connection is closed. The size counted is the decoded one: compressed answers are decoded here, never more at once
than the bytes still allowed (:mod:`modelway.inflate`), so a gzip bomb is stopped at the cap, not after it has
filled memory.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Coroutine, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from .errors import (
    ConfigError,
    ModelwayError,
    ProviderError,
    ProviderTimeoutError,
    StreamError,
)
from .inflate import InflateError, Inflater
from .providers.base import HTTPRequest
from .sse import DEFAULT_MAX_EVENT_BYTES

__all__ = ["BACKENDS", "DEFAULT_MAX_ANSWER_BYTES", "Response", "StreamResponse", "Transport"]

#: the largest decoded answer accepted from a provider by default (a whole JSON body, or a whole stream)
DEFAULT_MAX_ANSWER_BYTES = 64 * 1024 * 1024
#: the HTTP clients :class:`Transport` can use
BACKENDS = ("h1", "aiohttp")
#: the User-Agent sent upstream unless a request has its own
USER_AGENT = "modelway"

OTHER_LOOP = (
    "this client's connections belong to another event loop (a client was used under one asyncio.run() "
    "and then under another): create the AsyncClient inside the loop that uses it, e.g. "
    "`async with modelway.AsyncClient() as client:` in your main coroutine"
)


class MapError(Protocol):
    def __call__(
        self, exc: BaseException, provider: str, *, reading: bool, timeout: float | None = None
    ) -> ProviderError: ...


@dataclass(slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


class Body(Protocol):
    """An answer whose head has arrived, as a backend hands it out: its body is read with ``read_some()``."""

    status: int
    headers: dict[str, str]  # lower-cased names

    @property
    def content_length(self) -> int | None: ...

    def read_some(self) -> Awaitable[bytes]:
        """What arrived of the body (waiting for some if nothing did); ``b""`` at its end."""
        ...

    def at_eof(self) -> bool: ...

    def release(self) -> None:
        """Done with the answer: the connection goes back to the pool if the body was read to its end, else it
        is closed."""

    def close(self) -> None:
        """Close the connection now (a pending ``read_some()`` fails)."""


class Backend(Protocol):
    loop: asyncio.AbstractEventLoop | None
    failures: tuple[type[BaseException], ...]
    map: MapError

    async def send(self, req: HTTPRequest, timeout: float | None) -> Response: ...

    async def stream(self, req: HTTPRequest, timeout: float | None) -> StreamResponse: ...

    async def aclose(self) -> None: ...

    @property
    def closed(self) -> bool: ...

    def in_use(self) -> int: ...


class _IdleWatch:
    """One periodic sweep over every open stream's read gap, instead of a timer re-armed on every read (which
    aiohttp's ``sock_read`` timeout does: a measurable cost at thousands of events per second)."""

    __slots__ = ("streams", "task", "tick")

    def __init__(self) -> None:
        self.streams: set[StreamResponse] = set()
        self.task: asyncio.Task[None] | None = None
        self.tick = 1.0

    def add(self, stream: StreamResponse, idle: float, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Watch ``stream``'s gaps (``loop``: the running one, when the caller knows it)."""
        self.streams.add(stream)
        tick = max(0.02, idle / 4)  # a stalled stream is noticed within idle * 1.25
        running = self.task is not None and not self.task.done()
        if running and tick >= self.tick:
            return
        if running:
            assert self.task is not None
            self.task.cancel()  # it sleeps for the old, longer tick: start again at the new one
        self.tick = min(self.tick, tick) if running else tick
        self.task = (loop or asyncio.get_running_loop()).create_task(self._sweep())

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while self.streams:
            await asyncio.sleep(self.tick)
            now = loop.time()
            # only a reader waiting on an empty buffer counts: a slow consumer is not a silent provider
            for stream in [s for s in self.streams if s.waiting and now - s.last > s.idle]:
                stream.expire()

    async def aclose(self) -> None:
        task, self.task = self.task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])  # let it finish here, not be destroyed pending with its loop


class StreamResponse:
    """An open streaming response. Iterate ``iter_bytes()``; ``aclose()`` releases the connection at once.

    With a timeout, a gap between reads longer than it ends the stream with
    :class:`~modelway.errors.ProviderTimeoutError`."""

    __slots__ = (
        "_body",
        "_clock",
        "_failures",
        "_inflater",
        "_map",
        "_watch",
        "expired",
        "headers",
        "idle",
        "last",
        "max_bytes",
        "provider",
        "status",
        "waiting",
    )

    def __init__(
        self,
        body: Body,
        provider: str,
        timeout: float | None,
        watch: _IdleWatch,
        backend: Backend,
        max_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        self._inflater = _inflater(body, provider)
        self._body: Body | None = body
        self._failures = backend.failures
        self._map = backend.map
        self.max_bytes = max_bytes
        self.provider = provider
        self.status = body.status
        self.headers: Mapping[str, str] = body.headers
        self.expired = False
        self.waiting = False
        loop = backend.loop
        self._clock = loop.time if loop is not None else asyncio.get_running_loop().time
        self.last = self._clock()
        self.idle = timeout or 0.0
        self._watch = watch
        if timeout:
            watch.add(self, timeout, loop)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def expire(self) -> None:
        """The provider stopped sending: close the connection (a pending read fails, and says timeout)."""
        self.expired = True
        self._watch.streams.discard(self)
        body, self._body = self._body, None
        if body is not None:
            body.close()

    def _timed_out(self) -> ProviderTimeoutError:
        return ProviderTimeoutError(f"the provider stopped sending for {self.idle:g}s", provider=self.provider)

    async def read(self) -> bytes:
        """The whole (rest of the) body, at most ``max_bytes`` of it."""
        body = self._body
        if body is None:
            if self.expired:
                raise self._timed_out()
            return b""
        self.last = self._clock()
        self.waiting = True
        try:
            data = await read_capped(body, self.max_bytes, self.provider)
        except ModelwayError:
            raise
        except self._failures as exc:
            if self.expired:
                raise self._timed_out() from exc
            raise self._map(exc, self.provider, reading=True) from exc
        finally:
            self.waiting = False
        self._release()
        return data

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        body = self._body
        if body is None:
            if self.expired:
                raise self._timed_out()
            return
        read = body.read_some
        now = self._clock
        inflater = self._inflater
        left = self.max_bytes
        try:
            while True:
                self.last = now()
                self.waiting = True  # the idle clock runs only while we wait for the provider
                data = await read()
                self.waiting = False
                if not data:
                    if self.expired:
                        raise self._timed_out()
                    if inflater is not None:
                        _finish(inflater, self.provider)
                    self._release()  # the connection goes back to the pool now, not when the caller closes
                    return
                if inflater is not None:
                    for piece in _inflate(inflater, data, left, self.provider):
                        left -= len(piece)
                        if left < 0:
                            raise answer_too_large(self.max_bytes, self.provider)
                        yield piece
                    continue
                left -= len(data)
                if left < 0:
                    raise answer_too_large(self.max_bytes, self.provider)
                yield data
        except ModelwayError:
            raise
        except self._failures as exc:
            if self.expired:
                raise self._timed_out() from exc
            raise self._map(exc, self.provider, reading=True) from exc

    def _release(self) -> None:
        self._watch.streams.discard(self)
        body, self._body = self._body, None
        if body is not None:
            if body.at_eof():
                body.release()
            else:
                body.close()

    async def aclose(self) -> None:
        """Release the connection: back to the pool if the body was read to its end, else closed at once
        (an unfinished upstream stream must not go back to the pool half-read, and must stop now)."""
        self._release()

    def __del__(self) -> None:
        # dropped without aclose(): its connection must not stay lent out (aiohttp's responses do this too)
        body = getattr(self, "_body", None)
        if body is not None:
            self._body = None
            try:
                body.close()
            except Exception:  # (its loop may be closed by now)
                pass

    async def __aenter__(self) -> StreamResponse:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release()  # (what aclose() does, without a coroutine for it)


class Transport:
    """Pooled HTTP client. Create inside a running event loop, or let it create its pool lazily on first use.

    ``backend``: ``"h1"`` (the lean HTTP/1.1 client) or ``"aiohttp"``; when not given, the ``MODELWAY_TRANSPORT``
    environment variable says which (for A/B runs), else ``"h1"``."""

    def __init__(
        self,
        *,
        limit: int = 4096,
        limit_per_host: int = 0,
        connect_timeout: float = 10.0,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        backend: str | None = None,
    ) -> None:
        #: open connections at most (idle ones included)
        self.limit = limit
        #: the largest decoded answer accepted (a JSON body, or a whole stream), and the largest single SSE event
        self.max_answer_bytes = max_answer_bytes
        self.max_event_bytes = max_event_bytes
        self._idle = _IdleWatch()
        chosen = backend or os.environ.get("MODELWAY_TRANSPORT", "").strip().lower() or "h1"
        if chosen not in BACKENDS:
            raise ConfigError(f"the transport backend must be one of {', '.join(BACKENDS)}, not {chosen!r}")
        self._backend: Backend
        if chosen == "h1":
            try:
                from .h1 import H1Backend
            except ImportError as exc:  # httptools is installed with modelway[server]: without it, aiohttp
                if exc.name != "httptools":
                    raise
                chosen = "aiohttp"
            else:
                self._backend = H1Backend(limit, limit_per_host, connect_timeout, max_answer_bytes, self._idle)
        if chosen == "aiohttp":
            from .transport_aiohttp import AiohttpBackend

            self._backend = AiohttpBackend(limit, limit_per_host, connect_timeout, max_answer_bytes, self._idle)
        #: the HTTP client in use: ``"h1"`` or ``"aiohttp"``
        self.backend = chosen

    # (plain functions handing out the backend's coroutine: no coroutine of their own per request)
    def send(self, req: HTTPRequest, *, timeout: float | None = None) -> Coroutine[Any, Any, Response]:
        """Send a request and read the whole body (awaited)."""
        return self._backend.send(req, timeout)

    def stream(self, req: HTTPRequest, *, timeout: float | None = None) -> Coroutine[Any, Any, StreamResponse]:
        """Send a request and return once the response headers arrived (awaited); the caller must ``aclose()`` the
        answer."""
        return self._backend.stream(req, timeout)

    async def aclose(self) -> None:
        await self._idle.aclose()
        await self._backend.aclose()

    @property
    def closed(self) -> bool:
        return self._backend.closed

    def in_use(self) -> int:
        """How many connections are lent out to requests now (not idle in the pool)."""
        return self._backend.in_use()


def refuse_redirect(body: Body, provider: str) -> None:
    """A provider's redirect is not followed: the caller's prompt goes only where the operator configured."""
    if 300 <= body.status < 400:
        body.close()
        raise ProviderError(
            f"the provider answered with a redirect (HTTP {body.status}), which modelway does not follow: the "
            "deployment's URL must name the API itself",
            provider=provider,
            status_code=body.status,
        )


def answer_too_large(limit: int, provider: str) -> StreamError:
    return StreamError(f"the provider's answer is larger than the limit of {limit} bytes", provider=provider)


async def read_capped(body: Body, limit: int, provider: str) -> bytes:
    """The rest of ``body``, decoded; :class:`StreamError` (and the connection closed) past ``limit`` bytes."""
    declared = body.content_length
    if declared is not None and declared > limit and "content-encoding" not in body.headers:
        body.close()
        raise answer_too_large(limit, provider)
    inflater = _inflater(body, provider)
    read = body.read_some
    parts: list[bytes] = []
    left = limit
    while True:
        data = await read()
        if not data:
            break
        pieces = [data] if inflater is None else _inflate(inflater, data, left, provider)
        for piece in pieces:
            left -= len(piece)
            if left < 0:
                body.close()
                raise answer_too_large(limit, provider)
            parts.append(piece)
    if inflater is not None:
        _finish(inflater, provider)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _inflater(body: Body, provider: str) -> Inflater | None:
    """The decoder of ``body``'s Content-Encoding, or ``None`` for a body that is not encoded."""
    coding = body.headers.get("content-encoding")
    if not coding or coding.strip().lower() == "identity":
        return None
    try:
        return Inflater(coding)
    except InflateError as exc:
        body.close()
        raise StreamError(str(exc), provider=provider) from None


def _inflate(inflater: Inflater, data: bytes, left: int, provider: str) -> list[bytes]:
    try:
        return inflater.feed(data, left)
    except InflateError as exc:
        raise StreamError(str(exc), provider=provider) from None


def _finish(inflater: Inflater, provider: str) -> None:
    try:
        inflater.close()
    except InflateError as exc:
        raise StreamError(str(exc), provider=provider) from None


def timed_out(provider: str, *, reading: bool, timeout: float | None) -> ProviderTimeoutError:
    """Our error for a request whose time ran out (``reading``: after the answer's head had arrived)."""
    what = "stopped sending" if reading else "did not answer"
    limit = f" within {timeout:g}s" if timeout else ""
    return ProviderTimeoutError(f"the provider {what}{limit}", provider=provider)


def reason(exc: BaseException) -> str:
    """Why a connection failed, without the address: ``connection refused``, ``name or service not known``, ..."""
    import ssl  # (loaded with asyncio already)

    err = getattr(exc, "os_error", exc)
    if "certificate" in type(exc).__name__.lower() or isinstance(err, ssl.SSLCertVerificationError):
        return "the provider's TLS certificate was not accepted"
    if isinstance(err, ssl.SSLError):
        return f"the TLS handshake failed ({err.reason or type(err).__name__})"
    if isinstance(err, OSError):
        if isinstance(err.errno, int) and err.errno > 0:
            return os.strerror(err.errno).lower()  # (strerror may carry the address: "Connect call failed (...)")
        if isinstance(err, socket.gaierror) and err.strerror:
            return err.strerror.lower()
        if not isinstance(err, TimeoutError):
            return "the connection failed"  # (e.g. every address failed, each differently: the text names them)
    return type(exc).__name__
