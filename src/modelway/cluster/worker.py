"""``modelway worker``: the gateway's app plus the FastChat and DB-GPT model-worker APIs, registered with their
controllers.

:class:`WorkerApp` is a :class:`~modelway.server.app.GatewayApp` (so the gateway's own routes, the control plane,
the router and the bounded shutdown are all there) that also answers the worker routes of
:mod:`.fastchat_worker` and :mod:`.dbgpt_worker`. Every generate and embeddings request on them goes through the
control plane like any other: a ticket, a usage record and metrics labelled ``fastchat`` or ``dbgpt-worker``, the
limits of the worker's key (``--key``) when one is given.

Its lifespan starts one :class:`~.membership.Membership` per controller once the gateway is ready. When the server
starts draining (SIGTERM), new worker requests are refused with the protocol's "overloaded" error, the worker
withdraws its models (FastChat: registered again with no models, so the controller stops sending it requests at
once; DB-GPT: deregistered), heartbeats stop, and what is in flight finishes within ``server.shutdown_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..auth.authenticator import ANONYMOUS, MASTER, Caller
from ..config import Config
from ..errors import GatewayShutdownError, ModelwayError, ServiceUnavailableError, UnknownModelError
from ..server.app import GatewayApp
from ..server.dialects import serve
from ..server.disconnect import ClientGone
from ..server.errors import MethodNotAllowed
from ..server.http import Receive, Request, Scope, Send
from .membership import Membership

if TYPE_CHECKING:
    from ..server.dialects.base import Dialect
    from ..server.gateway import Gateway

__all__ = ["ServedModel", "WorkerApp", "WorkerRoute", "WorkerSettings", "create_worker_app", "parse_models"]

log = logging.getLogger("modelway.cluster")

#: seconds the withdrawal from each controller may take at shutdown
LEAVE_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class ServedModel:
    """One model the worker announces: ``name`` to the controller, answered by the gateway model ``alias``."""

    name: str
    alias: str
    #: an embedding model (DB-GPT: registered as ``name@text2vec`` rather than ``name@llm``)
    embedding: bool = False


@dataclass(slots=True)
class WorkerSettings:
    #: how the controllers (and FastChat's API server) reach this worker: ``http://host:port``
    worker_address: str
    models: list[ServedModel]
    controller: str | None = None
    dbgpt_controller: str | None = None
    heartbeat_interval: float = 45.0
    #: requests served at once (more wait, and count in ``queue_length``); ``None``: no bound of its own
    concurrency: int | None = None
    #: what ``/model_details`` and ``model_metadata`` report (FastChat's API server checks prompts against it)
    context_length: int = 32768
    #: a virtual key (or the master key) whose limits and usage the worker's requests count against
    key: str | None = None
    by_name: dict[str, ServedModel] = field(init=False)

    def __post_init__(self) -> None:
        self.by_name = {m.name: m for m in self.models}

    def lookup(self, name: str, *, embedding: bool | None = None) -> ServedModel:
        """The served model announced as ``name`` (``embedding``: of that kind only); else 404 naming the served
        ones."""
        m = self.by_name.get(name)
        if m is None or (embedding is not None and m.embedding != embedding):
            names = [x.name for x in self.models if embedding is None or x.embedding == embedding]
            raise UnknownModelError(
                f"this worker does not serve the model {name!r}; it serves: {', '.join(names) or 'none'}"
            )
        return m

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]


WorkerHandler = Callable[["WorkerApp", "Gateway", Request, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class WorkerRoute:
    """A worker route: its handler, the dialect its errors are told in, and whether it is model work (counted in
    ``queue_length``, bounded by the concurrency)."""

    handler: WorkerHandler
    dialect: Dialect
    work: bool = False

    @classmethod
    def generate(cls, dialect: Dialect) -> WorkerRoute:
        """Model work served by the gateway's one chat path in ``dialect`` (a worker's generate endpoints)."""

        async def handler(app: WorkerApp, gw: Gateway, req: Request, send: Send) -> None:
            await serve(dialect, gw, req, send)

        return cls(handler, dialect, work=True)


class WorkerApp(GatewayApp):
    """The gateway's ASGI app with the worker routes, and the controllers' memberships in its lifespan."""

    def __init__(
        self,
        config: Config,
        settings: WorkerSettings,
        *,
        env: dict[str, str] | None = None,
        on_startup: list[Callable[[GatewayApp], Awaitable[None]]] | None = None,
        on_shutdown: list[Callable[[GatewayApp], Awaitable[None]]] | None = None,
    ) -> None:
        super().__init__(config, env=env, on_startup=on_startup, on_shutdown=on_shutdown)
        from . import dbgpt_worker, fastchat_worker

        self.settings = settings
        #: worker requests in flight, waiting ones included (FastChat's ``queue_length``)
        self.queue = 0
        #: the worker withdrew from its controllers (it is shutting down): it takes no new work
        self.leaving = False
        self._limit = asyncio.Semaphore(settings.concurrency) if settings.concurrency else None
        self.routes: dict[str, WorkerRoute] = {**fastchat_worker.routes(settings), **dbgpt_worker.routes(settings)}
        self.memberships: list[Membership] = []
        if settings.controller:
            self.memberships.append(fastchat_worker.membership(settings, lambda: self.queue))
        if settings.dbgpt_controller:
            self.memberships.append(dbgpt_worker.membership(settings, lambda: self.queue))
        self._tasks: list[asyncio.Task[None]] = []
        self._watch: asyncio.Task[None] | None = None
        self._left: asyncio.Future[None] | None = None

    # -- lifespan -------------------------------------------------------------------------------
    async def startup(self) -> None:
        await super().startup()
        gw = self.gateway
        assert gw is not None
        for m in self.settings.models:
            try:
                gw.router.group(m.alias)
            except ModelwayError as exc:
                log.warning("the model %s announced as %r cannot be served: %s", m.alias, m.name, exc)
        for ms in self.memberships:
            self._tasks.append(asyncio.create_task(ms.run(), name=f"membership {ms.url}"))
        self._watch = asyncio.create_task(self._watch_drain(), name="worker drain watch")
        log.info(
            "worker %s serves %s",
            self.settings.worker_address,
            ", ".join(f"{m.name} ({m.alias})" for m in self.settings.models),
        )

    async def shutdown(self) -> None:
        await self.leave()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await super().shutdown()

    async def _watch_drain(self) -> None:
        """Leave the controllers as soon as the server starts draining (not at the end of the drain)."""
        # the server sets a flag, not an event, when it starts draining: look at it a few times a second
        while not self.lifecycle.draining:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        await self.leave()

    async def leave(self) -> None:
        """Stop heartbeating and withdraw from every controller (once; later calls wait for the first)."""
        if self._left is not None:
            await asyncio.shield(self._left)
            return
        self._left = asyncio.get_running_loop().create_future()
        self.leaving = True
        try:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for ms in self.memberships:
                try:
                    async with asyncio.timeout(LEAVE_TIMEOUT):
                        await ms.leave()
                    log.info("withdrew from %s at %s", ms.kind, ms.url)
                except Exception as exc:
                    log.warning("could not withdraw from %s at %s: %s", ms.kind, ms.url, exc or type(exc).__name__)
                finally:
                    await ms.aclose()
        finally:
            self._left.set_result(None)

    # -- requests -------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = self.routes.get(scope["path"])
            if route is not None:
                await self._serve_worker(route, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _caller(self, gw: Gateway) -> Caller:
        auth = gw.control.auth
        if self.settings.key:
            return await auth.authenticate(b"Bearer " + self.settings.key.encode())
        # the worker protocols carry no credentials: the operator who started the worker is the caller
        return MASTER if auth.required else ANONYMOUS

    async def _serve_worker(self, route: WorkerRoute, scope: Scope, receive: Receive, send: Send) -> None:
        req = Request(scope, receive, self.lifecycle)
        try:
            if req.method != "POST":
                raise MethodNotAllowed(req.method, req.path, "POST")
            gw = self.gateway
            if gw is None or not self.ready:
                raise ServiceUnavailableError("the worker is starting")
            if route.work and (self.leaving or self.lifecycle.draining):
                raise ServiceUnavailableError("this worker is shutting down: send the request to another worker")
            req.caller = await self._caller(gw)
            if not route.work:
                await route.handler(self, gw, req, send)
                return
            self.queue += 1
            try:
                if self._limit is None:
                    await route.handler(self, gw, req, send)
                else:
                    async with self._limit:
                        await route.handler(self, gw, req, send)
            finally:
                self.queue -= 1
        except ModelwayError as exc:
            await self._send_error(req, send, exc, route.dialect)
        except ClientGone:
            log.debug("request %s: the client went away; its upstream work was cancelled", req.request_id)
        except asyncio.CancelledError:
            if not req.absorb_abort():
                raise
            await self._send_error(req, send, GatewayShutdownError(), route.dialect)
        except Exception:
            log.exception("request %s: internal error on %s %s", req.request_id, req.method, req.path)
            await self._send_error(req, send, ModelwayError("internal error in the worker"), route.dialect)


def parse_models(specs: tuple[str, ...] | list[str], *, embedding: bool = False) -> list[ServedModel]:
    """``ALIAS[=NAME]`` options → served models (NAME defaults to ALIAS); :class:`ValueError` names a bad one."""
    out: list[ServedModel] = []
    for spec in specs:
        alias, eq, name = spec.partition("=")
        alias, name = alias.strip(), (name.strip() if eq else alias.strip())
        if not alias or not name:
            raise ValueError(f"{spec!r}: expected ALIAS or ALIAS=NAME, e.g. glm=glm-4-flash")
        if "@" in name:
            raise ValueError(f"{spec!r}: a model name announced to a controller cannot contain '@'")
        out.append(ServedModel(name=name, alias=alias, embedding=embedding))
    return out


def create_worker_app(
    config: Config, settings: WorkerSettings, *, env: dict[str, str] | None = None, demo: bool = False
) -> WorkerApp:
    """The worker app for ``config`` and ``settings``; ``demo`` adds the simulated ``demo/...`` models (as
    ``modelway serve --demo`` does)."""
    from ..server.demo import uses_demo

    if demo or uses_demo(config):
        from ..server.demo import add_demo

        # a gateway app whose hooks start and stop the simulators (and add the demo aliases with ``demo``)
        hooks = add_demo(config, env=env, catalog=demo)
        return WorkerApp(config, settings, env=env, on_startup=hooks.on_startup, on_shutdown=hooks.on_shutdown)
    return WorkerApp(config, settings, env=env)
