"""The gateway's ASGI application: routing, gateway-key auth, request ids, error rendering, lifespan.

Plain ASGI (no framework) keeps the per-request cost low; uvicorn serves it (``modelway serve``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .. import tracing
from ..config import Config
from ..errors import GatewayShutdownError, ModelwayError, ServiceUnavailableError
from . import openai_api
from .admin_api import ADMIN_PREFIX, handle_admin
from .console import CONSOLE_PREFIX, serve_console
from .control import ControlPlane
from .cors import Cors
from .dialects import Dialect, anthropic, responses, serve
from .dialects.completions import CompletionsDialect
from .dialects.dbgpt import DBGPTDialect
from .dialects.openai_chat import ChatDialect
from .disconnect import ClientGone
from .errors import Forbidden, MethodNotAllowed, NotFound
from .exchange import CURRENT, Exchange
from .gateway import Gateway
from .http import Lifecycle, Receive, Request, Scope, Send, send_json
from .openapi import openapi_schema
from .rerank_api import rerank
from .ticket import outcome, settle_exchange

if TYPE_CHECKING:
    from ..testing.demo import DemoFleet

__all__ = ["GatewayApp", "create_app"]

log = logging.getLogger("modelway.server")

Handler = Callable[[Gateway, Request, Send], Awaitable[None]]

_CHAT = ChatDialect()
#: errors on routes without a dialect of their own are told in OpenAI's shape
_OPENAI: Dialect = _CHAT


class _InternalError(ModelwayError):
    """A bug of ours, told to the caller without details (they are in the log, with the request id)."""

    error_type = "internal_error"

    def __init__(self) -> None:
        super().__init__("internal error in the gateway")


_MESSAGES = anthropic.MessagesDialect()
_RESPONSES = responses.ResponsesDialect()


def _chat(dialect: Dialect) -> tuple[Handler | None, Dialect]:
    """A chat-like route: no handler of its own, the app calls ``dialects.serve`` with its dialect."""
    return None, dialect


#: (method, path) → handler, and the dialect its errors are told in
_ROUTES: dict[tuple[str, str], tuple[Handler | None, Dialect]] = {
    ("POST", "/v1/chat/completions"): _chat(_CHAT),
    ("POST", "/chat/completions"): _chat(_CHAT),
    ("POST", "/api/v2/chat/completions"): _chat(DBGPTDialect()),
    ("POST", "/v1/messages"): _chat(_MESSAGES),
    ("POST", "/v1/messages/count_tokens"): (anthropic.count_tokens, _MESSAGES),
    ("POST", "/v1/responses"): _chat(_RESPONSES),
    ("POST", "/v1/completions"): _chat(CompletionsDialect()),
    ("POST", "/completions"): _chat(CompletionsDialect()),
    ("POST", "/v1/rerank"): (rerank, _OPENAI),
    ("POST", "/rerank"): (rerank, _OPENAI),
    ("POST", "/v1/embeddings"): (openai_api.embeddings, _OPENAI),
    ("POST", "/embeddings"): (openai_api.embeddings, _OPENAI),
    ("GET", "/v1/models"): (openai_api.list_models, _OPENAI),
    ("GET", "/models"): (openai_api.list_models, _OPENAI),
}
_DIALECT_OF: dict[str, Dialect] = {path: dialect for (_, path), (_, dialect) in _ROUTES.items()}
#: the endpoint label of a request the gateway refuses before admitting it (bounded: a path no route has is
#: ``other``); admitted requests are labelled by their ticket
_ENDPOINT_OF: dict[str, str] = {
    **{path: dialect.endpoint for path, dialect in _DIALECT_OF.items()},
    **dict.fromkeys(("/v1/embeddings", "/embeddings"), "embeddings"),
    **dict.fromkeys(("/v1/rerank", "/rerank"), "rerank"),
    **dict.fromkeys(("/v1/models", "/models"), "models"),
}
#: routes whose answers are always counted by a ticket (or refused with an error the app sees)
_TICKETED = frozenset(
    path
    for (_, path), (handler, _) in _ROUTES.items()
    if handler not in (anthropic.count_tokens, openai_api.list_models)
)
_PUBLIC = frozenset({"/health/liveness", "/health/readiness", "/openapi.json", "/health"})
_METRICS = "/metrics"
#: seconds a shutdown waits for the last spans to be exported
_TRACES_FLUSH = 5.0
_MODEL_PREFIXES = ("/v1/models/", "/models/")


def _credentials(req: Request) -> bytes | None:
    """The caller's key as an ``Authorization`` header: that header, or ``Bearer`` + ``x-api-key`` (Anthropic's)."""
    got = req.headers.get(b"authorization")
    if got is None:
        api_key = req.headers.get(b"x-api-key")
        got = b"Bearer " + api_key if api_key else None
    return got


class GatewayApp:
    """ASGI app. ``startup`` hooks run in the lifespan (the demo simulators start there)."""

    def __init__(
        self,
        config: Config,
        *,
        env: dict[str, str] | None = None,
        on_startup: list[Callable[[GatewayApp], Awaitable[None]]] | None = None,
        on_shutdown: list[Callable[[GatewayApp], Awaitable[None]]] | None = None,
    ) -> None:
        self.config = config
        self.env = env
        self.gateway: Gateway | None = None
        self.ready = False
        self.on_startup = list(on_startup or [])
        self.on_shutdown = list(on_shutdown or [])
        #: the simulators behind demo deployments (a start-up hook of :mod:`.demo` starts them)
        self.demo: DemoFleet | None = None
        self._auth_required = bool(config.server.master_key) or config.control_plane
        #: draining once a shutdown began, aborting once its deadline passed (the server sets them)
        self.lifecycle = Lifecycle()
        self.cors = Cors(config.server.cors_origins) if config.server.cors_origins else None
        #: traces (``tracing:``, or the OTEL_EXPORTER_OTLP_* environment), from start-up
        self.tracing: tracing.Tracing | None = None
        #: CORS, the request log, bodies kept with the records or traces watch every exchange (set at start-up)
        self._observing = self.cors is not None

    def abort(self) -> None:
        """The shutdown deadline passed: requests still in flight are about to be cancelled; each one answers (or
        ends its stream) with 503 ``shutting_down`` and is recorded so."""
        self.lifecycle.aborting = True

    async def startup(self) -> None:
        for hook in self.on_startup:
            await hook(self)
        control = await ControlPlane.start(self.config, self.lifecycle)
        try:
            self.gateway = Gateway(self.config, self.env, control, demo=self.demo)
            await self.gateway.start()
            self.tracing = self._start_tracing()
        except BaseException:
            if self.gateway is not None:
                await self.gateway.aclose()  # (closes the control plane too)
            else:
                await control.aclose()
            raise
        self._observing = (
            self.cors is not None
            or control.request_log is not None
            or control.body_cap is not None
            or self.tracing is not None
        )
        # everything built so far lives as long as the process: move it out of the collector's way, so that full
        # collections stay short (they stall every request in flight)
        gc.collect()
        gc.freeze()
        self.ready = True

    def _start_tracing(self) -> tracing.Tracing | None:
        """A tracer when tracing is configured (an ImportError naming the extra when OpenTelemetry is missing; only
        a warning when the endpoint came from the environment alone)."""
        import os

        tc = self.config.tracing
        env = os.environ if self.env is None else self.env
        endpoint = tracing.traces_endpoint(tc, env)
        if endpoint is None:
            return None
        try:
            return tracing.Tracing(
                endpoint,
                service_name=tc.service_name or env.get("OTEL_SERVICE_NAME") or "modelway",
                headers=tc.headers,
                sample_ratio=tc.sample_ratio,
            )
        except ImportError as exc:
            if tc.enabled or tc.endpoint:
                raise
            log.warning("%s: OTEL_EXPORTER_OTLP_ENDPOINT is set, requests are not traced", exc)
            return None

    async def shutdown(self) -> None:
        self.ready = False
        if self.gateway is not None:
            await self.gateway.aclose()
        if self.tracing is not None:
            tracer, self.tracing = self.tracing, None
            self._observing = self.cors is not None  # (the control plane is closed: no request log either)
            try:  # exports what is left (a blocking HTTP request): bounded, a collector that is down must not
                await asyncio.wait_for(asyncio.to_thread(tracer.shutdown), _TRACES_FLUSH)  # hold the exit up
            except TimeoutError:
                log.warning("traces: the collector took over %gs, the spans left were dropped", _TRACES_FLUSH)
        for hook in self.on_shutdown:
            await hook(self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        # an HTTP request (served here, not in a method of its own: one coroutine less per request)
        req = Request(scope, receive, self.lifecycle)
        ex = Exchange(req)
        CURRENT.set(ex)
        try:
            if self._observing:
                await self._observed(req, ex, send)
            else:
                await self._serve(req, ex, send)
        finally:
            # a request no ticket counted: the gateway refused it itself (counted now), or answered it without the
            # control plane (a model list, the admin API, a probe: only logged and traced)
            if ex.ticket is None:
                gw = self.gateway
                if gw is not None and (self._observing or ex.code is not None):
                    counted = ex.code is not None or (ex.status is not None and ex.status >= 400)
                    settle_exchange(gw.control, ex, self._endpoint(req.path), counted=counted)
            if ex.span is not None and self.tracing is not None:
                self.tracing.end_request(ex.span, ex.restore, ex.status)
            # no cycle left for the collector: the ticket points back to its exchange, the context tokens to the
            # context that holds the exchange
            ex.ticket = ex.span = ex.restore = None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # reported to the server, which refuses to start
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def _authenticate(gw: Gateway, req: Request) -> None:
        req.caller = await gw.control.auth.authenticate(_credentials(req))

    @classmethod
    async def _identify(cls, gw: Gateway, req: Request) -> None:
        """The caller, if its key is good; else it stays anonymous (nothing is refused for the key here)."""
        if req.headers.get(b"authorization") or req.headers.get(b"x-api-key"):
            try:
                await cls._authenticate(gw, req)
            except ModelwayError:
                pass

    @staticmethod
    def _endpoint(path: str) -> str:
        label = _ENDPOINT_OF.get(path)
        if label is not None:
            return label
        if path.startswith(responses.RESOURCE_PREFIX):
            return "responses"
        if path.startswith(_MODEL_PREFIXES):
            return "models"
        if path.startswith(ADMIN_PREFIX):
            return "admin"
        return "other"

    async def _observed(self, req: Request, ex: Exchange, send: Send) -> None:
        """Serve a request with CORS, the request log, bodies kept or traces on."""
        extra = None
        cors = self.cors
        if cors is not None:
            origin = req.headers.get(b"origin")
            if origin is not None:
                extra = cors.headers(origin)
                if cors.is_preflight(req):
                    if extra is None:
                        exc = Forbidden(
                            f"the origin {origin.decode('latin-1')[:200]!r} may not call this gateway "
                            "(server.cors_origins)",
                            code="cors_origin_not_allowed",
                        )
                        await self._send_error(req, send, exc, _OPENAI, ex)
                    else:
                        ex.status = await cors.preflight(req, origin, send)
                    return
        gw = self.gateway
        if gw is not None and gw.control.body_cap is not None:
            req.keep_body = True
        if self.tracing is not None:
            path = req.path
            route = path if path in _ENDPOINT_OF or path in _PUBLIC else None
            ex.span, ex.restore = self.tracing.start_request(req.method, route, req.headers)
        if extra is not None or ex.span is not None or req.path not in _TICKETED:
            send = ex.watch(send, extra)  # (the status of an answer no ticket counts, CORS headers)
        await self._serve(req, ex, send)

    async def _serve(self, req: Request, ex: Exchange, send: Send) -> None:
        path = req.path
        # errors on a route (a wrong method too) are told in the route's dialect
        dialect = _DIALECT_OF.get(path, _OPENAI)
        try:
            if path in _PUBLIC:
                if req.method not in ("GET", "HEAD"):
                    raise MethodNotAllowed(req.method, path, "GET, HEAD")
                await self._public(req, send)
                return
            gw = self.gateway
            route = _ROUTES.get((req.method, path))
            if gw is None:
                raise ServiceUnavailableError("the gateway is starting")
            if gw.cluster is not None and (endpoint := gw.cluster.route(path)) is not None:
                await gw.cluster.handle(endpoint, req, send)  # workers send no key: the cluster's own guard
                return
            if route is not None:
                handler, chat = route
                got = _credentials(req)  # (_authenticate, without its coroutine for a key in memory)
                auth = gw.control.auth
                caller = auth.in_memory(got)  # (no coroutine for a key in memory)
                req.caller = caller if caller is not None else await auth.from_store(got)
                if handler is None:  # a chat-like route
                    await serve(chat, gw, req, send)
                else:
                    await handler(gw, req, send)
                return
            if path.startswith(responses.RESOURCE_PREFIX):
                dialect = _RESPONSES
                await self._authenticate(gw, req)
                await responses.resource(gw, req, send, path[len(responses.RESOURCE_PREFIX) :])
                return
            if path.startswith(_MODEL_PREFIXES):
                if req.method != "GET":
                    raise MethodNotAllowed(req.method, path, "GET")
                await self._authenticate(gw, req)
                await openai_api.retrieve_model(gw, req, send, path.split("/models/", 1)[1])
                return
            if path.startswith(ADMIN_PREFIX):
                await self._authenticate(gw, req)
                await handle_admin(gw, req, send)
                return
            if path == _METRICS:
                await self._metrics(gw, req, send)
                return
            if path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/"):
                await serve_console(req, send)  # (static files: the page signs in against the admin API)
                return
            # (who asked, when the key is good: a refused request of a known caller is recorded as theirs)
            await self._identify(gw, req)
            allowed = [m for m, p in _ROUTES if p == path]
            if allowed:
                raise MethodNotAllowed(req.method, path, ", ".join(allowed))
            raise NotFound(f"no route {req.method} {path}")
        except ModelwayError as exc:
            await self._send_error(req, send, exc, dialect, ex)
        except ClientGone:
            ex.failed(499, "client_gone", "ClientGone")
            log.debug("request %s: the client went away; its upstream work was cancelled", req.request_id)
        except asyncio.CancelledError:
            if not req.absorb_abort():
                ex.failed(499, "client_gone", "CancelledError")
                raise
            # ended at the shutdown deadline before its answer started: say so
            await self._send_error(req, send, GatewayShutdownError(), dialect, ex)
        except Exception as exc:
            # a bug of ours: log it with the request id, answer 500 in the route's dialect if nothing was sent yet
            log.exception("request %s: internal error on %s %s", req.request_id, req.method, path)
            ex.failed(500, "internal_error", type(exc).__name__)
            try:
                status, body, headers = dialect.error(_InternalError(), req.request_id)
                await send_json(send, status, body, request_id=req.request_id, headers=headers)
            except Exception:  # the response had already started: the server closes the connection
                log.debug("request %s: could not send the 500 answer", req.request_id)

    @staticmethod
    async def _send_error(
        req: Request, send: Send, exc: ModelwayError, dialect: Dialect, ex: Exchange | None = None
    ) -> None:
        status, body, headers = dialect.error(exc, req.request_id)
        if ex is not None:
            ex.failed(status, outcome(exc)[1], type(exc).__name__)
        try:
            await send_json(send, status, body, request_id=req.request_id, headers=headers)
        except RuntimeError:  # the response had started (uvicorn refuses a second start): the connection closes
            log.debug("request %s: could not send its error answer, the response had started", req.request_id)

    async def _metrics(self, gw: Gateway, req: Request, send: Send) -> None:
        if req.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(req.method, req.path, "GET, HEAD")
        metrics = gw.control.metrics
        if metrics is None:
            raise NotFound("metrics are off (metrics.enabled: false)")
        if not self.config.metrics.public:
            await self._authenticate(gw, req)
            if not req.caller.admin:
                raise Forbidden("/metrics needs the master key (metrics.public is false)", code="admin_only")
        body, content_type = metrics.render()
        if gw.cluster is not None:
            body += gw.cluster.gauge().encode()
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _public(self, req: Request, send: Send) -> None:
        path = req.path
        if path == "/openapi.json":
            await send_json(send, 200, openapi_schema(self._auth_required), request_id=req.request_id)
        elif path in ("/health/liveness", "/health"):
            await send_json(send, 200, {"status": "ok"}, request_id=req.request_id)
        else:
            await self._readiness(req, send)

    async def _readiness(self, req: Request, send: Send) -> None:
        """200 ``ready`` when requests can be served; 503 while ``starting``, ``draining`` (shutting down), or
        ``degraded`` (a service requests need does not answer: ``checks`` says which). Counts and settings only for
        the master key."""
        gw = self.gateway
        if not self.ready or gw is None:
            await send_json(send, 503, {"status": "starting"}, request_id=req.request_id)
            return
        if self.lifecycle.draining:
            await send_json(send, 503, {"status": "draining"}, request_id=req.request_id)
            return
        checks = await gw.control.health()
        ok = all(checks.values())
        body: dict[str, Any] = {"status": "ready" if ok else "degraded"}
        if checks:
            body["checks"] = {name: "ok" if up else "down" for name, up in checks.items()}
        if req.headers.get(b"authorization") or req.headers.get(b"x-api-key"):
            try:
                await self._authenticate(gw, req)
            except ModelwayError:
                pass  # a wrong or unusable key: the public answer
            if req.caller.admin:
                body.update(gw.describe())
        await send_json(send, 200 if ok else 503, body, request_id=req.request_id)


def create_app(config: Config | None = None, *, env: dict[str, str] | None = None, demo: bool = False) -> GatewayApp:
    """The gateway ASGI app for ``config`` (embedded defaults when ``None``); ``demo`` adds an alias per demo model
    (``demo/glm-4-flash``, ...). The simulators start with the app when ``demo`` is set or a deployment is a demo
    model."""
    cfg = config or Config()
    if demo or any(d.model.startswith("demo/") for m in cfg.models for d in m.deployments):
        from .demo import add_demo

        return add_demo(cfg, env=env, catalog=demo)
    return GatewayApp(cfg, env=env)
