"""The lean client as :class:`~modelway.transport.Transport`'s backend: a request sent and its answer read
through the :class:`~modelway.h1.pool.Pool`, every failure mapped to our errors.

Timeouts: one deadline per request (the whole of :meth:`H1Backend.send`; a stream's wait for its head), watched by
the pool's one timer, never a timer per read; a stream's gaps between reads are the idle watch's
(:mod:`modelway.transport`). A request that meets a pooled connection the server had just closed (closed cleanly,
before any byte of the answer) is sent again, once, on a new connection: the server had closed it while idle, the
request crossing its FIN. (A server that reads a request whole and then closes cleanly without a byte of answer gets
it twice; the gateway's retries would send it again too.)
"""

from __future__ import annotations

import asyncio
from threading import get_ident

from ..errors import ConfigError, ModelwayError
from ..providers.base import HTTPRequest
from ..transport import (
    OTHER_LOOP,
    MapError,
    Response,
    StreamResponse,
    _IdleWatch,
    answer_too_large,
    read_capped,
    refuse_redirect,
)
from .conn import DONE, Conn
from .failures import BadURL, ConnectionLost, TransportFailure, map_failure
from .pool import Pool
from .request import Target, head

__all__ = ["H1Backend"]

#: URLs parsed and kept (more are not expected: one per deployment and route)
_MAX_TARGETS = 1024


class H1Backend:
    """The lean client: :class:`~modelway.transport.Transport`'s default backend."""

    failures: tuple[type[BaseException], ...] = (OSError, TransportFailure)  # (TimeoutError is an OSError)
    map: MapError = staticmethod(map_failure)

    def __init__(
        self, limit: int, limit_per_host: int, connect_timeout: float, max_answer_bytes: int, watch: _IdleWatch
    ) -> None:
        self.max_answer_bytes = max_answer_bytes
        self._limits = (limit, limit_per_host, connect_timeout)
        self._watch = watch
        self._pool: Pool | None = None
        self._targets: dict[str, Target] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    def _here(self) -> Pool:
        """The pool, on the caller's loop (made on first use); :class:`ConfigError` on another loop."""
        pool = self._pool
        # the pool's loop runs in this thread: it is the caller's (a thread runs one loop at a time). Cheaper than
        # asyncio.get_running_loop(), a getpid() system call on Python 3.11. ``pool.thread`` is where the loop ran
        # when last seen: it may since have stopped and gone on in another thread while this one runs another loop,
        # which asyncio's loops tell (``_thread_id``, the thread running them now); uvloop's do not
        ident = get_ident()
        if (
            pool is not None
            and pool.thread == ident
            and pool.loop.is_running()
            and not pool.closed
            and getattr(pool.loop, "_thread_id", ident) == ident
        ):
            return pool
        loop = asyncio.get_running_loop()
        if pool is not None and not pool.closed:
            if pool.loop is not loop:
                raise ConfigError(OTHER_LOOP)
            pool.thread = get_ident()  # (the loop runs in another thread than before)
            return pool
        self.loop = loop
        pool = self._pool = Pool(loop, *self._limits)
        return pool

    def _target(self, url: str) -> Target:
        t = self._targets.get(url)
        if t is None:
            if len(self._targets) >= _MAX_TARGETS:
                self._targets.clear()
            t = self._targets[url] = Target(url)
        return t

    async def _open(self, req: HTTPRequest, timeout: float | None, whole: bool) -> Conn:
        """Send ``req``; the connection, once the answer's head arrived. Failures are our errors."""
        pool = self._here()
        t = self._targets.get(req.url)
        if t is None:
            try:
                t = self._target(req.url)
            except BadURL as exc:
                raise map_failure(exc, req.provider, reading=False) from None
        request_head = head(req, t)
        deadline = pool.loop.time() + timeout if timeout else None
        fresh = False
        while True:
            # (an idle connection taken here, without a coroutine for it: the common case)
            conn = None if fresh else pool.take(t.key)
            if conn is None:
                try:
                    conn = await pool.acquire(t, deadline, fresh)
                except ModelwayError:
                    raise
                except self.failures as exc:
                    raise map_failure(exc, req.provider, reading=False, timeout=timeout) from exc
            try:
                await conn.exchange(request_head, req.body, deadline, req.method == "HEAD")
            except BaseException as exc:
                conn.close()
                if isinstance(exc, ConnectionLost) and (exc.unsent or (exc.stale and not fresh)):
                    # a pooled connection the server had closed: once more, on a new one (again whenever nothing
                    # of the request was written)
                    fresh = True
                    continue
                if isinstance(exc, self.failures):
                    raise map_failure(exc, req.provider, reading=False, timeout=timeout) from exc
                raise
            if not whole:
                conn.disarm()
            return conn

    async def send(self, req: HTTPRequest, timeout: float | None) -> Response:
        conn = await self._open(req, timeout, True)
        try:
            if 300 <= conn.status < 400:
                refuse_redirect(conn, req.provider)
            if conn.phase == DONE and "content-encoding" not in conn.headers:
                # the whole answer came with its head (most do): taken as it is, without a read
                body = conn.take()
                if len(body) > self.max_answer_bytes:
                    conn.close()
                    raise answer_too_large(self.max_answer_bytes, req.provider)
            else:
                body = await read_capped(conn, self.max_answer_bytes, req.provider)
        except ModelwayError:
            raise
        except TimeoutError as exc:  # the whole exchange's time ran out
            raise map_failure(exc, req.provider, reading=False, timeout=timeout) from exc
        except self.failures as exc:  # the answer started, then broke
            raise map_failure(exc, req.provider, reading=True, timeout=timeout) from exc
        finally:
            conn.release()
        return Response(conn.status, conn.headers, body)

    async def stream(self, req: HTTPRequest, timeout: float | None) -> StreamResponse:
        conn = await self._open(req, timeout, False)
        if 300 <= conn.status < 400:
            refuse_redirect(conn, req.provider)
        return StreamResponse(conn, req.provider, timeout, self._watch, self, self.max_answer_bytes)

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None and not pool.closed:
            pool.close()
            await asyncio.sleep(0)  # (the transports' connection_lost run now, on this loop)

    @property
    def closed(self) -> bool:
        return self._pool is None or self._pool.closed

    def in_use(self) -> int:
        return 0 if self._pool is None else self._pool.in_use()
