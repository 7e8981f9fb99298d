"""Running the gateway under uvicorn: our HTTP protocol, and a shutdown that is bounded and exits 0.

uvicorn's own shutdown waits for requests in flight without a limit (one stream whose upstream sends only
keep-alive comments held a process for 45 s, until SIGKILL), and with one worker it re-raises the signal it
caught, so a clean ``SIGTERM`` shutdown exits with status -15. :class:`GatewayServer` instead, on ``SIGTERM`` or
``SIGINT``:

1. stops accepting connections: new ones are refused at once (a load balancer sends the request elsewhere, which is
   safe even for a POST, since no byte of it was sent), and the connections the kernel had already queued are
   taken and served; the app's readiness check answers 503 ``draining``;
2. lets requests and streams in flight finish, for up to ``server.shutdown_timeout`` seconds, and keeps serving
   requests that arrive on connections already open, each answered with ``Connection: close``; an idle
   connection (and one whose answer began before the shutdown, saying keep-alive) is left to its client, or to
   the keep-alive timeout (5 s), since closing it could race a request a load balancer is sending on it, which
   would fail without an answer (nginx closes its idle ones after 2 s: deploy/nginx/nginx.conf);
3. then ends what remains: streams with an error event in their own format, other requests with 503
   ``shutting_down``, each counted in the usage ledger as such (the app's :meth:`~.app.GatewayApp.abort`);
4. runs the app's shutdown, which writes every usage record to the store (or the spill file);
5. exits 0.

A second ``SIGINT`` skips the wait, as in uvicorn. With ``--workers N`` the parent process closes its own copy of the
listening socket the moment ``SIGTERM`` or ``SIGINT`` arrives (else the kernel would go on queueing connections that
no worker takes, and reset them when the parent exits: a request a load balancer had already sent on one would
fail), then sends each worker ``SIGTERM`` and waits for them; each worker shuts down as above.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Generator, Sequence
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import multiprocess

from ..config import Config
from ..errors import ConfigError
from .protocol import PROTOCOLS, HttpLimits

__all__ = ["GatewayServer", "ServeConfig", "raise_open_files", "run", "serve_config"]

log = logging.getLogger("modelway.server")

#: after the deadline, how long requests that were ended get to send their error and be counted; then their
#: connections are dropped (a shutdown takes at most shutdown_timeout + ABORT_GRACE + 1 s + the ledger's flush)
ABORT_GRACE = 3.0
#: at most this many connections waiting in the accept queue are taken at the shutdown (the queue is bounded by the
#: listen backlog anyway; this only guards against a flood that keeps it full)
_MAX_QUEUED = 4096


class ServeConfig(uvicorn.Config):
    """uvicorn's config plus the gateway's own bounds (pickled to every worker process with the rest)."""

    def __init__(
        self, app: Any, *, http_limits: HttpLimits, shutdown_timeout: float, http: str = "modelway", **kwargs: Any
    ) -> None:
        if http not in PROTOCOLS:
            raise ConfigError(f"server.http (or MODELWAY_HTTP): must be one of {', '.join(PROTOCOLS)}, not {http!r}")
        super().__init__(app, http=PROTOCOLS[http], **kwargs)
        self.http_limits = http_limits
        self.shutdown_timeout = shutdown_timeout


def serve_config(app: Any, config: Config, **kwargs: Any) -> ServeConfig:
    """The server config for ``app`` (an ASGI app, or an import string with ``factory=True``) with the bounds of
    the gateway's ``config``; ``kwargs`` go to uvicorn."""
    sc = config.server
    return ServeConfig(
        app,
        http_limits=HttpLimits(sc.max_header_bytes, sc.max_headers, sc.header_timeout, sc.body_timeout),
        shutdown_timeout=sc.shutdown_timeout,
        http=os.environ.get("MODELWAY_HTTP") or sc.http,
        backlog=sc.backlog,
        **kwargs,
    )


def raise_open_files(config: Config, workers: int = 1) -> None:
    """Raise this process's soft limit of open files toward its hard limit, as far as the gateway can use: a
    client and a provider connection per request in flight, per worker (a soft limit of 1,024, common, would end
    in "too many open files" at ~500 streams). Says so when the hard limit is lower than that."""
    try:
        import resource
    except ImportError:  # (not on Windows)
        return
    want = (config.server.upstream_connections * 2 + 1024) * max(1, workers)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < cap:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (cap, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit from %d to %d: %s", soft, cap, exc)
    if cap < want:
        log.warning(
            "the open-files limit is %d (hard): fewer than the %d that server.upstream_connections=%d needs at its "
            "fullest; raise it (ulimit -n, LimitNOFILE=) or lower upstream_connections",
            cap,
            want,
            config.server.upstream_connections,
        )


def _gateway(app: Any) -> Any:
    """The GatewayApp inside uvicorn's wrappers (each keeps the next one as ``.app``), or ``None``."""
    for _ in range(8):
        if hasattr(app, "abort") and hasattr(app, "lifecycle"):
            return app
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


class GatewayServer(uvicorn.Server):
    """uvicorn's server with the shutdown described in the module docstring."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        log.info("shutting down: no new connections; requests in flight get %g s", self._deadline)
        # a copy of each listening socket outlives the servers' own: connections the kernel queued before the
        # servers stopped accepting are taken from it below, instead of being reset when it closes
        queued = _listening_copies(self.servers)
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        app = _gateway(self.config.loaded_app)
        if app is not None:
            app.lifecycle.draining = True
        for connection in list(self.server_state.connections):
            connection.shutdown()
        await self._take_queued(queued)
        try:
            async with asyncio.timeout(self._deadline):
                await self._wait_tasks_to_complete()
        except TimeoutError:
            await self._abort(app)
        if not self.force_exit:
            await self.lifespan.shutdown()

    async def _take_queued(self, listeners: list[socket.socket]) -> None:
        """Serve the connections waiting in ``listeners``' accept queues (each answered with ``Connection: close``),
        then close them: from then on the kernel refuses new connections, unless another process (a worker that
        has not stopped yet) still listens."""
        loop = asyncio.get_running_loop()
        protocol_class: Any = self.config.http_protocol_class  # (the protocols take uvicorn's arguments)
        factory = functools.partial(
            protocol_class,
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        taken = 0
        for listener in listeners:
            try:
                while taken < _MAX_QUEUED:
                    try:
                        conn, _ = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        break  # none waiting: closed below, without an await in between
                    taken += 1
                    conn.setblocking(False)
                    try:
                        _, protocol = await loop.connect_accepted_socket(factory, conn, ssl=self.config.ssl)
                    except OSError as exc:  # the client left while it waited
                        log.debug("a connection queued at the shutdown failed: %s", exc)
                        conn.close()
                        continue
                    protocol.shutdown()  # (ours and uvicorn's have it)
            except OSError as exc:
                log.warning("shutting down: could not take the connections queued on %s: %s", listener, exc)
            finally:
                listener.close()
        if taken:
            log.info("shutting down: served %d connections that were waiting to be accepted", taken)

    @property
    def _deadline(self) -> float:
        return float(getattr(self.config, "shutdown_timeout", 25.0))

    async def _abort(self, app: Any) -> None:
        tasks = [t for t in self.server_state.tasks if not t.done()]
        log.warning("shutdown deadline passed: ending %d requests still in flight", len(tasks))
        if app is not None:
            app.abort()
        for t in tasks:
            t.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=ABORT_GRACE)
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()  # (close() would wait for a slow reader to take what is buffered)
        if tasks and pending:
            # a request still writing to a client that does not read: its send returns now the connection is
            # gone; let it settle its usage record before the ledger closes
            await asyncio.wait(pending, timeout=1.0)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """uvicorn's signal handling, without raising the signal again once the shutdown is done: a clean
        shutdown on SIGTERM exits 0."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def _listening_copies(servers: Sequence[Any]) -> list[socket.socket]:
    """A duplicate of each listening socket of ``servers`` (asyncio's or uvloop's), non-blocking."""
    out = []
    for server in servers:
        for sock in getattr(server, "sockets", None) or ():
            try:
                copy = socket.socket(fileno=os.dup(sock.fileno()))
                copy.setblocking(False)
            except OSError as exc:
                log.warning("shutting down: cannot keep the listening socket %s: %s", sock, exc)
                continue
            out.append(copy)
    return out


class _Supervisor(multiprocess.Multiprocess):
    """uvicorn's supervisor of worker processes, which closes its copy of the listening sockets as soon as SIGTERM
    or SIGINT arrives (in the signal handler: the supervisor's loop looks at signals only every 0.5 s), and then
    no longer replaces a worker that dies (it could not hand it the sockets)."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self.closed = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._stop_signal)

    def _stop_signal(self, sig: int, frame: FrameType | None) -> None:
        if not self.closed:
            self.closed = True
            for sock in self.sockets:
                sock.close()
        self.signal_queue.append(sig)

    def keep_subprocess_alive(self) -> None:
        if not self.closed:
            super().keep_subprocess_alive()


class _Process(multiprocess.Process):
    """A worker process that runs a :class:`GatewayServer`."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = GatewayServer(config=self.config)
        return self._server


def run(config: ServeConfig) -> None:
    """Serve until SIGTERM/SIGINT (what ``uvicorn.run`` does, with :class:`GatewayServer` in every process)."""
    if config.workers > 1:
        sock = config.bind_socket()
        # the supervisor builds its worker processes from this module global: ours run a GatewayServer
        original = multiprocess.Process
        multiprocess.Process = _Process  # type: ignore[misc]
        try:
            _Supervisor(config, sockets=[sock]).run()
        finally:
            multiprocess.Process = original  # type: ignore[misc]
            sock.close()
        return
    server = GatewayServer(config)
    server.run()
    if config.uds and os.path.exists(config.uds):
        os.remove(config.uds)
    if not server.started:
        sys.exit(STARTUP_FAILURE)
