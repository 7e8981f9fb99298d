"""The router: pick a deployment for a model, retry it, fail over to the next; glue over :mod:`modelway.calls`.

Failover happens on errors that are the deployment's fault (rate limits, upstream failures, timeouts, connection
errors, a refused key, a model missing at that provider). Errors that are the request's fault (bad request,
content filter, context too long) are raised at once: another deployment would refuse them too.
A stream fails over only until its first chunk was produced (streams commit late).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import replace
from typing import Protocol

from .. import calls
from ..errors import (
    AllDeploymentsFailedError,
    BadRequestError,
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
from .deployments import Deployment, ModelGroup

__all__ = ["Router", "Trace"]


class Trace(Protocol):
    """What the router tells its caller about one request: the deployment tried last (the one that answered,
    when the call succeeded). The server's usage record and metrics read it."""

    deployment: Deployment | None


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
    ) -> None:
        self.groups = groups
        self.transport = transport
        self.retry = retry
        self.timeout = timeout
        self.cooldown = cooldown
        self._direct = direct
        self._direct_cache: dict[str, ModelGroup] = {}
        #: told of every failed attempt that fails over (metrics count them per deployment)
        self.on_failure = on_failure

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

    def _request_for(self, dep: Deployment, group: ModelGroup, req: ChatRequest) -> ChatRequest:
        params, extra = req.params, req.extra
        if dep.params:
            params = dict(params)
            extra = dict(extra)
            for k, v in dep.params.items():
                target = params if k in CHAT_PARAMS else extra
                target.setdefault(k, v)  # the caller's own value wins
        return replace(req, model=dep.model, messages=group.prepare(req.messages), params=params, extra=extra)

    def _failed(self, dep: Deployment, exc: ModelwayError, attempts: list[ModelwayError]) -> None:
        if isinstance(exc, BadRequestError):
            raise exc  # the request's fault: every deployment would refuse it
        attempts.append(exc)
        self._fault(dep, exc)

    def _fault(self, dep: Deployment, exc: ModelwayError) -> None:
        """The deployment's fault (rate limit, outage, refused key, missing model, a stream broken half-way): tell
        ``on_failure``, and skip it for a while: as long as the provider asked, else the configured cooldown."""
        if self.on_failure is not None:
            self.on_failure(dep, exc)
        wait = exc.retry_after if isinstance(exc, ProviderError) and exc.retry_after else self.cooldown
        dep.cool_down(wait)

    @staticmethod
    def _give_up(model: str, attempts: list[ModelwayError]) -> ModelwayError:
        if len(attempts) == 1:
            return attempts[0]
        return AllDeploymentsFailedError(
            f"all {len(attempts)} deployments of {model!r} failed; last: {attempts[-1]}", attempts
        )

    async def complete(self, model: str, req: ChatRequest, trace: Trace | None = None) -> ChatCompletion:
        group = self.group(model)
        attempts: list[ModelwayError] = []
        for dep in group.order():
            if trace is not None:
                trace.deployment = dep
            try:
                return await calls.complete(
                    self.transport,
                    dep.adapter,
                    self._request_for(dep, group, req),
                    timeout=dep.timeout or self.timeout,
                    retry=self.retry,
                )
            except ModelwayError as exc:
                self._failed(dep, exc, attempts)
        raise self._give_up(model, attempts)

    async def stream(
        self, model: str, req: ChatRequest, trace: Trace | None = None
    ) -> AsyncGenerator[list[ChatCompletionChunk], None]:
        """Batches of chunks from the first deployment that produced one; earlier failures fail over silently."""
        group = self.group(model)
        attempts: list[ModelwayError] = []
        for dep in group.order():
            if trace is not None:
                trace.deployment = dep
            it = calls.stream_batches(
                self.transport,
                dep.adapter,
                self._request_for(dep, group, req),
                timeout=dep.timeout or self.timeout,
                retry=self.retry,
            )
            try:
                first = await it.__anext__()
            except StopAsyncIteration:
                return
            except ModelwayError as exc:
                await it.aclose()
                self._failed(dep, exc, attempts)
                continue
            except BaseException:
                await it.aclose()
                raise
            try:
                yield first
                async for batch in it:
                    yield batch
            except ProviderError as exc:  # after the commit point: no failover, but the deployment is at fault
                if not isinstance(exc, BadRequestError):
                    self._fault(dep, exc)
                raise
            finally:
                await it.aclose()  # also when the consumer stops early: the upstream closes now, not at GC
            return
        raise self._give_up(model, attempts)

    async def embed(self, model: str, req: EmbeddingRequest, trace: Trace | None = None) -> EmbeddingResponse:
        group = self.group(model)
        attempts: list[ModelwayError] = []
        for dep in group.order():
            if trace is not None:
                trace.deployment = dep
            try:
                return await calls.embed(
                    self.transport,
                    dep.adapter,
                    replace(req, model=dep.model),
                    timeout=dep.timeout or self.timeout,
                    retry=self.retry,
                )
            except ModelwayError as exc:
                self._failed(dep, exc, attempts)
        raise self._give_up(model, attempts)

    async def rerank(self, model: str, req: RerankRequest, trace: Trace | None = None) -> RerankResponse:
        """Rerank with failover, as :meth:`embed`. Deployments whose provider serves no rerank are skipped (they are
        not at fault, so they are not cooled down); a group with none of them is the request's fault (400)."""
        group = self.group(model)
        deps = [d for d in group.order() if d.adapter.supports_rerank]
        if not deps:
            raise InvalidRequestError(
                f"the model {model!r} is not a rerank model: no deployment of it serves rerank",
                param="model",
                code="rerank_not_supported",
            )
        attempts: list[ModelwayError] = []
        for dep in deps:
            if trace is not None:
                trace.deployment = dep
            try:
                return await calls.rerank(
                    self.transport,
                    dep.adapter,
                    replace(req, model=dep.model),
                    timeout=dep.timeout or self.timeout,
                    retry=self.retry,
                )
            except ModelwayError as exc:
                self._failed(dep, exc, attempts)
        raise self._give_up(model, attempts)
