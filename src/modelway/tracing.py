"""OpenTelemetry traces: a span per gateway request and one per upstream request, exported over OTLP/HTTP.

Optional (``pip install 'modelway[otel]'``: the OpenTelemetry SDK and its OTLP/HTTP exporter) and off unless
configured (``tracing:`` in the config, or ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` in the environment). Off, this
module imports nothing of OpenTelemetry, and a request pays one check of :data:`ACTIVE` per upstream request (the
server checks its own setting once per request).

On, the gateway's request span (``SERVER``, named ``POST /v1/chat/completions``) continues the caller's W3C
``traceparent`` (and ``tracestate``) when it sent one, and each upstream request (:mod:`modelway.calls`: every
retry, failover and hedge is one) is a ``CLIENT`` span under it, named ``chat gpt-4o-mini``, whose own context
goes to the provider as ``traceparent``. Spans carry the GenAI semantic conventions: ``gen_ai.operation.name``,
``gen_ai.provider.name`` (and the older ``gen_ai.system``), ``gen_ai.request.model``, ``gen_ai.response.model``,
``gen_ai.usage.input_tokens`` / ``output_tokens``, ``gen_ai.response.finish_reasons``, ``error.type``,
``server.address`` / ``server.port``; and the gateway's own ``modelway.*`` (deployment, attempts, fallback, key id,
cost). No prompt or answer text, no header and no URL is recorded (a URL may hold a key).

Spans are batched and exported by a background thread (a bounded queue: spans beyond it are dropped, never the
request), and flushed when the gateway stops.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from .config import TracingConfig
    from .providers.base import HTTPRequest
    from .types import ChatCompletionChunk
    from .usage.records import UsageRecord

__all__ = [
    "ACTIVE",
    "Tracing",
    "request_done",
    "traces_endpoint",
    "upstream",
    "upstream_chunks",
    "upstream_done",
    "upstream_failed",
]

log = logging.getLogger("modelway.tracing")

#: tracers live in this process (0: nothing is traced; the one check on the request path)
ACTIVE = 0
_CURRENT: ContextVar[Tracing | None] = ContextVar("modelway_tracing", default=None)

#: the GenAI operation of each endpoint label
_OPERATION = {
    "chat": "chat",
    "messages": "chat",
    "responses": "chat",
    "dbgpt": "chat",
    "fastchat": "chat",
    "dbgpt-worker": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
    "rerank": "rerank",
}


def traces_endpoint(config: TracingConfig, env: Mapping[str, str]) -> str | None:
    """Where spans go: ``tracing.endpoint``, else the standard environment variables; ``None``: tracing is off
    (``tracing.enabled: false``, ``OTEL_SDK_DISABLED=true``, or no endpoint anywhere)."""
    if config.enabled is False or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    base = config.endpoint
    if base is None:
        own = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        if own:
            return own
        base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or None
    if base is None:
        return None
    return base if base.rstrip("/").endswith("/v1/traces") else base.rstrip("/") + "/v1/traces"


class Tracing:
    """One app's tracer: its provider, sampler, exporter and propagator. Making one imports OpenTelemetry (an
    :class:`ImportError` naming the extra when it is not installed)."""

    def __init__(
        self,
        endpoint: str | None,
        *,
        service_name: str = "modelway",
        headers: Mapping[str, str] | None = None,
        sample_ratio: float = 1.0,
        exporter: Any = None,
    ) -> None:
        try:
            from opentelemetry import context, trace
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

            if exporter is None:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                exporter = OTLPSpanExporter(endpoint=endpoint, headers=dict(headers) if headers else None, timeout=5)
        except ImportError as exc:
            raise ImportError(
                f"tracing needs OpenTelemetry: pip install 'modelway[otel]' ({exc.name} is missing)"
            ) from exc
        from . import __version__

        self._context = context
        self._trace = trace
        self._server = trace.SpanKind.SERVER
        self._client = trace.SpanKind.CLIENT
        self._error = trace.StatusCode.ERROR
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": service_name, "service.version": __version__}),
            sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
        )
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("modelway", __version__)
        self._propagator = TraceContextTextMapPropagator()
        global ACTIVE
        ACTIVE += 1
        self._open = True

    def shutdown(self) -> None:
        """Export what is left and stop (once)."""
        if not self._open:
            return
        self._open = False
        global ACTIVE
        ACTIVE -= 1
        self.provider.shutdown()

    # -- the gateway's request --------------------------------------------------------------------
    def start_request(self, method: str, route: str | None, headers: Mapping[bytes, bytes]) -> tuple[Any, Any]:
        """Start the request's span, under the caller's ``traceparent`` if it sent one, and make it the current
        one (and this tracer the current tracer) for the request's task; returns the span and what
        :meth:`end_request` needs to restore the context."""
        parent = None
        tp = headers.get(b"traceparent")
        if tp is not None:
            carrier = {"traceparent": tp.decode("latin-1")}
            ts = headers.get(b"tracestate")
            if ts is not None:
                carrier["tracestate"] = ts.decode("latin-1")
            parent = self._propagator.extract(carrier, context=self._context.Context())
        attributes: dict[str, Any] = {"http.request.method": method}
        if route is not None:
            attributes["http.route"] = route
        span = self.tracer.start_span(
            f"{method} {route}" if route else method, context=parent, kind=self._server, attributes=attributes
        )
        token = self._context.attach(self._trace.set_span_in_context(span, parent))
        return span, (token, _CURRENT.set(self))

    def end_request(self, span: Any, restore: Any, status: int | None) -> None:
        token, mine = restore
        try:
            if status is not None:
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(self._error)
            span.end()
        finally:
            _CURRENT.reset(mine)
            self._context.detach(token)

    # -- upstream requests ------------------------------------------------------------------------
    def start_upstream(self, operation: str, model: str | None, provider: str, http: HTTPRequest) -> Any:
        """A ``CLIENT`` span for one upstream request, under the current span; its ``traceparent`` is put in
        ``http``'s headers (a copy: the adapter's own headers are not changed). Under a request that is not
        recorded (not sampled) no span is made: the request's own context goes on, saying so."""
        parent = self._trace.get_current_span()
        if not parent.is_recording():
            carrier: dict[str, str] = {}
            self._propagator.inject(carrier)
            if carrier:
                http.headers = {**http.headers, **carrier}
            return None
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": provider,
            "gen_ai.system": provider,
            "http.request.method": http.method,
        }
        if model is not None:
            attributes["gen_ai.request.model"] = model
        try:
            url = urlsplit(http.url)
            if url.hostname:
                attributes["server.address"] = url.hostname
                attributes["server.port"] = url.port or (443 if url.scheme == "https" else 80)
        except ValueError:
            pass
        span = self.tracer.start_span(
            f"{operation} {model}" if model else operation, kind=self._client, attributes=attributes
        )
        carrier = {}
        self._propagator.inject(carrier, context=self._trace.set_span_in_context(span))
        if carrier:
            http.headers = {**http.headers, **carrier}
        return span


def upstream(operation: str, model: str | None, provider: str, http: HTTPRequest) -> Any:
    """The span of one upstream request when the current request is traced, else ``None``."""
    t = _CURRENT.get()
    return t.start_upstream(operation, model, provider, http) if t is not None else None


class _StreamNotes:
    """What a traced stream showed of its answer: model, finish reasons, usage."""

    __slots__ = ("model", "reasons", "usage")

    def __init__(self) -> None:
        self.model: str | None = None
        self.reasons: list[str] = []
        self.usage: Any = None


def upstream_chunks(span: Any, notes: _StreamNotes | None, batch: list[ChatCompletionChunk]) -> _StreamNotes:
    """Note a traced stream's batch (its model, finish reasons, usage); the span is annotated when it ends."""
    if notes is None:
        notes = _StreamNotes()
    for chunk in batch:
        if chunk.model and notes.model is None:
            notes.model = chunk.model
        if chunk.usage is not None:
            notes.usage = chunk.usage
        for c in chunk.choices:
            if c.finish_reason is not None and len(notes.reasons) < 16:
                notes.reasons.append(str(c.finish_reason))
    return notes


def upstream_done(span: Any, answer: Any, status: int | None = None) -> None:
    """End an upstream span with what its answer says (a whole answer, or a stream's :class:`_StreamNotes`)."""
    try:
        attributes: dict[str, Any] = {}
        if status is not None:
            attributes["http.response.status_code"] = status
        model = getattr(answer, "model", None)
        if model:
            attributes["gen_ai.response.model"] = model
        usage = getattr(answer, "usage", None)
        if usage is not None:
            prompt = getattr(usage, "prompt_tokens", None)
            completion = getattr(usage, "completion_tokens", None)
            if isinstance(prompt, int):
                attributes["gen_ai.usage.input_tokens"] = prompt
            if isinstance(completion, int):
                attributes["gen_ai.usage.output_tokens"] = completion
        reasons = getattr(answer, "reasons", None)
        if reasons is None:
            choices = getattr(answer, "choices", None) or []
            reasons = [str(c.finish_reason) for c in choices if getattr(c, "finish_reason", None) is not None]
        if reasons:
            attributes["gen_ai.response.finish_reasons"] = reasons
        span.set_attributes(attributes)  # (one lock, not one per attribute)
    finally:
        span.end()


def upstream_failed(span: Any, exc: BaseException) -> None:
    """End an upstream span that failed (or was cancelled: a hedge that lost, a caller that left)."""
    from opentelemetry.trace import StatusCode

    try:
        name = type(exc).__name__
        if name in ("CancelledError", "GeneratorExit"):
            span.set_attribute("modelway.cancelled", True)
        else:
            span.set_attribute("error.type", name)
            status: int | None = getattr(exc, "status_code", None)
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            code = getattr(exc, "code", None)
            span.set_status(StatusCode.ERROR, f"{name}: {code}" if code else name)
    finally:
        span.end()


def request_done(span: Any, record: UsageRecord, error_type: str | None) -> None:
    """Put what the request came to on its span (the span ends when its answer is sent)."""
    attributes: dict[str, Any] = {
        "modelway.endpoint": record.endpoint,
        "modelway.request_id": record.request_id,
        "modelway.attempts": record.attempts,
    }
    operation = _OPERATION.get(record.endpoint)
    if operation is not None:
        attributes["gen_ai.operation.name"] = operation
    if record.model:
        attributes["gen_ai.request.model"] = record.model
    if record.deployment:
        provider = record.deployment.partition("/")[0]
        attributes["gen_ai.provider.name"] = provider
        attributes["gen_ai.system"] = provider
        attributes["modelway.deployment"] = record.deployment
    if record.prompt_tokens or record.completion_tokens:
        attributes["gen_ai.usage.input_tokens"] = record.prompt_tokens
        attributes["gen_ai.usage.output_tokens"] = record.completion_tokens
    if record.key_id:
        attributes["modelway.key_id"] = record.key_id
    if record.fallback:
        attributes["modelway.fallback"] = record.fallback
    if record.cost:
        attributes["modelway.cost"] = record.cost
    if record.ttft_ms is not None:
        attributes["modelway.ttft_ms"] = record.ttft_ms
    if record.estimated:
        attributes["modelway.usage_estimated"] = True
    if record.status >= 400:
        attributes["error.type"] = error_type or record.error or str(record.status)
        if record.error:
            attributes["modelway.error_code"] = record.error
    span.set_attributes(attributes)
