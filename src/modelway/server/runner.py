"""Running the gateway under uvicorn: our HTTP protocol, and a shutdown that is bounded and exits 0.

uvicorn's own shutdown waits for requests in flight without a limit (one stream whose upstream sends only
keep-alive comments held a process for 45 s, until SIGKILL), and with one worker it re-raises the signal it
caught, so a clean ``SIGTERM`` shutdown exits with status -15. :class:`GatewayServer` instead, on ``SIGTERM`` or
``SIGINT``:

1. stops accepting connections (new ones are refused at once), closes idle ones, and the app's readiness check
   answers 503 ``draining`` on connections still open;
2. lets requests and streams in flight finish, for up to ``server.shutdown_timeout`` seconds;
3. then ends what remains: streams with an error event in their own format, other requests with 503
   ``shutting_down``, each counted in the usage ledger as such (the app's :meth:`~.app.GatewayApp.abort`);
4. runs the app's shutdown, which writes every usage record to the store (or the spill file);
5. exits 0.

A second ``SIGINT`` skips the wait, as in uvicorn. With ``--workers N`` the parent process sends each worker
``SIGTERM`` and waits for them; each worker shuts down as above.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Generator
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
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        app = _gateway(self.config.loaded_app)
        if app is not None:
            app.lifecycle.draining = True
        for connection in list(self.server_state.connections):
            connection.shutdown()
        try:
            async with asyncio.timeout(self._deadline):
                await self._wait_tasks_to_complete()
        except TimeoutError:
            await self._abort(app)
        if not self.force_exit:
            await self.lifespan.shutdown()

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
            multiprocess.Multiprocess(config, sockets=[sock]).run()
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
