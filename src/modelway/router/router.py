"""The router: serve a model from its deployments, as the model's :class:`~modelway.router.policy.RoutingPolicy`
says; glue over :mod:`modelway.calls`.

Every call goes through one failover loop (:mod:`modelway.router.failover`): the strategy's order, circuits,
quotas, retries that understand errors, hedging. When every deployment of a model failed, its fallback models are
tried in order (``fallbacks``; a prompt too long for the model: ``context_window_fallbacks``; a refusal of its
content filter: ``content_filter_fallbacks``). A stream fails over only until its first output (streams commit
late); a failure after that ends the stream with the error.

The trace tells the caller what happened: ``deployment`` (the one that answered), and when the trace declares them,
``attempts`` (upstream requests, retries, hedges and fallbacks included) and ``fallback`` (the model fallen back
to) — what the gateway sends as ``x-modelway-deployment``, ``x-modelway-attempts`` and ``x-modelway-fallback``.

Circuits, quotas, requests in flight and latency averages live in process, unless the router is given a shared
backend (``shared``: :class:`~modelway.router.shared_redis.RedisRouterState`), which every worker and replica using
the same Redis shares; it fails open (see :mod:`modelway.router.shared`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import fields, replace
from typing import Any, TypeVar

from .. import calls
from ..errors import (
    BadRequestError,
    ContentFilterError,
    ContextLengthError,
    InvalidRequestError,
    ModelwayError,
    ProviderError,
    UnknownModelError,
)
from ..rerank import RerankRequest, RerankResponse
from ..retry import RetryPolicy
from ..transport import Transport
from ..types import (
    CHAT_PARAMS,
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
)
from ..usage.estimate import estimate_tokens, prompt_chars
from .deployments import Deployment, ModelGroup
from .failover import Attempt, CallState, Failover, Trace, note
from .shared import SharedState

__all__ = ["Router", "Trace"]

T = TypeVar("T")
R = TypeVar("R")

#: the router retries by attempts of its own: each upstream request is made once
_ONCE = RetryPolicy(0)


class Router:
    def __init__(
        self,
        groups: dict[str, ModelGroup],
        *,
        transport: Transport,
        retry: RetryPolicy,
        timeout: float | None,
        cooldown: float = 5.0,
        direct: Callable[[str], ModelGroup | None] | None = None,
        on_failure: Callable[[Deployment, ModelwayError], None] | None = None,
        on_queue_wait: Callable[[ModelGroup, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedState | None = None,
    ) -> None:
        self.groups = groups
        self.transport = transport
        #: how long to wait between attempts (and whether to retry a deployment in place, for the default policy)
        self.retry = retry
        #: each attempt's timeout when its deployment has none
        self.timeout = timeout
        #: for models without circuit breakers: how long a failed deployment is tried last
        self.cooldown = cooldown
        self._direct = direct
        self._direct_cache: dict[str, ModelGroup] = {}
        #: told of every failed attempt (metrics count them per deployment)
        self.on_failure = on_failure
        #: told how long each call waited in a model's quota queue (admitted or refused)
        self.on_queue_wait = on_queue_wait
        #: monotonic seconds (tests drive it)
        self.clock = clock
        #: routing state shared with other processes (``None``: in process only)
        self.shared = shared
        if shared is not None:
            shared.bind(self)

    async def aclose(self) -> None:
        """Stop sharing routing state (the deployments' own views stay)."""
        if self.shared is not None:
            await self.shared.aclose()

    def group(self, model: str) -> ModelGroup:
        """The group serving ``model`` (an alias, or ``provider/model`` when direct addressing is allowed)."""
        g = self.groups.get(model) or self._direct_cache.get(model)
        if g is not None:
            return g
        if self._direct is not None:
            g = self._direct(model)
            if g is not None:
                if len(self._direct_cache) >= 4096:  # callers choose these names: keep the cache bounded
                    self._direct_cache.clear()
                self._direct_cache[model] = g
                return g
        raise UnknownModelError(f"the model {model!r} does not exist or is not served by this gateway")

    # -- the four calls ---------------------------------------------------------------------------
    async def complete(self, model: str, req: ChatRequest, trace: Trace | None = None) -> ChatCompletion:
        def call(group: ModelGroup) -> Callable[[Deployment, float | None], Awaitable[ChatCompletion]]:
            return lambda dep, timeout: calls.complete_once(
                self.transport, dep.adapter, self._request_for(dep, group, req), timeout=timeout
            )

        resp, att = await self.route(
            model, trace, call, tokens=lambda: _chat_tokens(req), prompt_tokens=lambda: _prompt_tokens(req)
        )
        usage = resp.usage
        att.finish(usage.total_tokens if usage is not None else None)
        return resp

    async def stream(
        self, model: str, req: ChatRequest, trace: Trace | None = None
    ) -> AsyncGenerator[list[ChatCompletionChunk], None]:
        """Batches of chunks from the first deployment that produced output; earlier failures fail over silently."""
        Opened = tuple[list[ChatCompletionChunk], AsyncGenerator[list[ChatCompletionChunk], None]]

        def call(group: ModelGroup) -> Callable[[Deployment, float | None], Awaitable[Opened]]:
            # the model's time budget (``timeout``, when it is shorter) bounds the wait for the first output only;
            # after the commit point the deployment's own timeout bounds the gaps of the stream
            return lambda dep, timeout: calls.open_stream(
                self.transport,
                dep.adapter,
                self._request_for(dep, group, req),
                timeout=dep.timeout or self.timeout,
                first_output=timeout,
            )

        async def discard(opened: Opened) -> None:
            await opened[1].aclose()

        (held, it), att = await self.route(
            model,
            trace,
            call,
            stream=True,
            tokens=lambda: _chat_tokens(req),
            prompt_tokens=lambda: _prompt_tokens(req),
            discard=discard,
        )
        tokens: int | None = None
        try:
            tokens = _usage_of(held, tokens)
            yield held
            async for batch in it:
                tokens = _usage_of(batch, tokens)
                yield batch
        except ProviderError as exc:  # after the commit point: no failover, but the deployment is at fault
            if not isinstance(exc, BadRequestError):
                att.failed(exc, tokens=tokens)  # (usage not reported yet: the admission estimate stays)
            raise
        finally:
            await it.aclose()  # also when the consumer stops early: the upstream closes now, not at GC
            att.finish(tokens)

    async def embed(self, model: str, req: EmbeddingRequest, trace: Trace | None = None) -> EmbeddingResponse:
        def call(group: ModelGroup) -> Callable[[Deployment, float | None], Awaitable[EmbeddingResponse]]:
            return lambda dep, timeout: calls.embed(
                self.transport, dep.adapter, replace(req, model=dep.model), timeout=timeout, retry=_ONCE
            )

        resp, att = await self.route(model, trace, call, tokens=lambda: _text_tokens(req.texts))
        att.finish(resp.usage.total_tokens if resp.usage is not None else None)
        return resp

    async def rerank(self, model: str, req: RerankRequest, trace: Trace | None = None) -> RerankResponse:
        """Rerank with failover, as :meth:`embed`. Deployments whose provider serves no rerank are skipped (they are
        not at fault, so they are not cooled down); a group with none of them is the request's fault (400)."""
        if not any(d.adapter.supports_rerank for d in self.group(model).deployments):
            raise InvalidRequestError(
                f"the model {model!r} is not a rerank model: no deployment of it serves rerank",
                param="model",
                code="rerank_not_supported",
            )

        def call(group: ModelGroup) -> Callable[[Deployment, float | None], Awaitable[RerankResponse]]:
            return lambda dep, timeout: calls.rerank(
                self.transport, dep.adapter, replace(req, model=dep.model), timeout=timeout, retry=_ONCE
            )

        resp, att = await self.route(
            model,
            trace,
            call,
            tokens=lambda: _text_tokens([req.query, *req.documents]),
            eligible=lambda d: d.adapter.supports_rerank,
        )
        usage = getattr(resp, "usage", None)
        att.finish(getattr(usage, "total_tokens", None))
        return resp

    # -- routing ----------------------------------------------------------------------------------
    def route(
        self,
        model: str,
        trace: Trace | None,
        call: Callable[[ModelGroup], Callable[[Deployment, float | None], Awaitable[T]]],
        *,
        stream: bool = False,
        tokens: Callable[[], int] = lambda: 0,
        prompt_tokens: Callable[[], int] | None = None,
        eligible: Callable[[Deployment], bool] | None = None,
        discard: Callable[[T], Awaitable[None]] | None = None,
    ) -> Awaitable[tuple[T, Attempt]]:
        """The model's failover loop, then its fallbacks: the first answer and its attempt, which the caller must
        finish (:meth:`Attempt.finish`, with the answer's tokens; a stream: when it ends).

        ``call(group)`` gives the function that sends one attempt (a deployment, its timeout); the four calls above
        are built on this, and so can any other kind of request. ``tokens``: the request's size for TPM quotas at
        admission; ``prompt_tokens``: its prompt's (what stays counted for an attempt cancelled before its answer;
        default: ``tokens``).

        Not a coroutine function (one coroutine less per call): a model without fallbacks returns its failover
        loop to await; an unknown model raises here."""
        group = self.groups.get(model) or self.group(model)
        state = CallState(trace)  # (notes fallback None)
        first = Failover(  # (positional: a class called with keywords is slower)
            self, group, state, call(group), stream, tokens, prompt_tokens, eligible, discard
        ).run()
        policy = group.policy
        if not (policy.fallbacks or policy.context_window_fallbacks or policy.content_filter_fallbacks):
            return first  # (fallbacks are the policy's when the call starts)
        return self._fall_back(group, state, first, call, stream, tokens, prompt_tokens, eligible, discard)

    async def _fall_back(
        self,
        group: ModelGroup,
        state: CallState,
        first: Awaitable[tuple[T, Attempt]],
        call: Callable[[ModelGroup], Callable[[Deployment, float | None], Awaitable[T]]],
        stream: bool,
        tokens: Callable[[], int],
        prompt_tokens: Callable[[], int] | None,
        eligible: Callable[[Deployment], bool] | None,
        discard: Callable[[T], Awaitable[None]] | None,
    ) -> tuple[T, Attempt]:
        """``first`` (the model's failover loop), then the model's fallbacks as the error says."""
        trace = state.trace
        try:
            return await first
        except ModelwayError as exc:
            chain = _fallbacks_for(group, exc)
            if not chain:
                raise
            error: ModelwayError = exc
        for name in chain:
            try:
                fallback = self.group(name)
            except UnknownModelError:
                continue  # a fallback that no longer exists (removed at run time): the next one
            if eligible is not None and not any(eligible(d) for d in fallback.deployments):
                continue
            note(trace, "fallback", name)
            try:
                return await Failover(
                    self, fallback, state, call(fallback), stream, tokens, prompt_tokens, eligible, discard
                ).run()
            except ModelwayError as exc:
                if isinstance(exc, BadRequestError) and type(exc) is not type(error):
                    raise  # the request's fault at the fallback too
                error = exc
        raise error

    @staticmethod
    def _request_for(dep: Deployment, group: ModelGroup, req: ChatRequest) -> ChatRequest:
        params, extra = req.params, req.extra
        if dep.params:
            params = dict(params)
            extra = dict(extra)
            for k, v in dep.params.items():
                target = params if k in CHAT_PARAMS else extra
                target.setdefault(k, v)  # the caller's own value wins
        messages = req.messages
        if group.system_prompt or group.merge_system:
            messages = group.prepare(messages)
        # ``replace`` without its generic machinery, and positional (a class called with keywords is slower):
        # :data:`_CHAT_FIELDS` makes sure no field is left behind or out of place
        return ChatRequest(dep.model, messages, req.stream, params, extra, req.native)

    # -- observability ----------------------------------------------------------------------------
    def snapshot(self) -> list[dict[str, Any]]:
        """Each deployment of each configured model as the router sees it now: circuit, in flight, latency
        averages, recent errors, quota usage (for ``GET /admin/deployments`` and metrics). Read-only."""
        now = self.clock()
        out = []
        for name, group in sorted(self.groups.items()):
            for dep in group.deployments:
                out.append(self.describe(name, group, dep, now))
        return out

    @staticmethod
    def describe(model: str, group: ModelGroup, dep: Deployment, now: float) -> dict[str, Any]:
        circuit = dep.circuit.snapshot(now) if group.policy.circuit is not None else {"state": "closed"}
        return {
            "model": model,
            "deployment": dep.address,
            "provider": dep.adapter.name,
            "upstream_model": dep.model,
            "strategy": group.policy.strategy,
            "weight": dep.weight,
            "tier": dep.tier,
            "disabled": dep.disabled,
            "cooling_for": max(0.0, dep.cooldown_until - now),
            "circuit": circuit,
            **dep.stats.snapshot(now),
            "quota": dep.usage.snapshot(dep.quota, now) if dep.quota is not None else None,
        }


def _fallbacks_for(group: ModelGroup, exc: ModelwayError) -> tuple[str, ...]:
    """The models to fall back to after ``exc`` ended the group's attempts."""
    policy = group.policy
    if isinstance(exc, ContextLengthError):
        return policy.context_window_fallbacks
    if isinstance(exc, ContentFilterError):
        return policy.content_filter_fallbacks
    if isinstance(exc, BadRequestError | InvalidRequestError):
        return ()  # the request's fault: any model would refuse it
    return policy.fallbacks


def _chat_tokens(req: ChatRequest) -> int:
    """A request's tokens as its deployment's TPM quota counts them at admission: the prompt, estimated from its
    text, and the completion it may ask for."""
    limit = req.params.get("max_completion_tokens") or req.params.get("max_tokens")
    return _prompt_tokens(req) + (limit if isinstance(limit, int) else 0)


def _prompt_tokens(req: ChatRequest) -> int:
    return estimate_tokens(*prompt_chars(req.messages))


#: the fields :meth:`Router._request_for` copies, in order (a field added to ChatRequest must be added there too)
_CHAT_FIELDS = ("model", "messages", "stream", "params", "extra", "native")
if tuple(f.name for f in fields(ChatRequest)) != _CHAT_FIELDS:  # pragma: no cover - a guard for whoever adds one
    raise ImportError(f"Router._request_for copies {_CHAT_FIELDS}: update it for the fields of ChatRequest")


def _text_tokens(texts: list[str]) -> int:
    ascii_chars = sum(len(t) for t in texts if t.isascii())
    other = sum(len(t) for t in texts if not t.isascii())
    return estimate_tokens(ascii_chars, other)


def _usage_of(batch: list[ChatCompletionChunk], tokens: int | None) -> int | None:
    for chunk in batch:
        if chunk.usage is not None:
            tokens = chunk.usage.total_tokens
    return tokens
