"""The control plane on the path of every request: who calls, may they call this model now, and what it cost.

``begin`` runs before the request goes to the router: the key's model list, then its limits (one ``acquire``).
The :class:`Ticket` it returns travels with the request (the router writes the deployment it used into it) and
is finished exactly once, however the request ends: answered, failed, or abandoned by its caller (status 499).
Finishing frees the key's place, adds tokens and cost to its limits, observes the metrics and hands a usage
record to the ledger, which writes it to the store later, in a batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ..auth.authenticator import Authenticator, Caller
from ..auth.keys import ApiKey
from ..config import Config
from ..errors import ModelwayError
from ..limits.base import Limiter, LimiterUnavailableError, LimitExceededError, Limits, Permit, period_window
from ..router import Deployment
from ..types import ChatCompletionChunk, Usage
from ..usage.records import UsageRecord
from .disconnect import ClientGone, watched
from .errors import Forbidden, error_payload
from .http import Request, Send
from .metrics import UNKNOWN_MODEL, Metrics
from .streaming import stream_sse

if TYPE_CHECKING:
    from ..store.sql import SQLStore
    from ..usage.ledger import Ledger

__all__ = ["ControlPlane", "ModelNotAllowedError", "Ticket"]

T = TypeVar("T")

log = logging.getLogger("modelway.server")


class ModelNotAllowedError(Forbidden):
    """A virtual key asked for a model outside its list (answered 403)."""


class ControlPlane:
    def __init__(
        self,
        config: Config,
        auth: Authenticator,
        *,
        metrics: Metrics | None = None,
        store: SQLStore | None = None,
        ledger: Ledger | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        self.config = config
        self.auth = auth
        self.metrics = metrics
        self.store = store
        self.ledger = ledger
        self.limiter = limiter
        self._seeded: set[tuple[str, int]] = set()
        self._background: set[asyncio.Future[None]] = set()

    @classmethod
    async def start(cls, config: Config) -> ControlPlane:
        """Open the store, start the ledger and the key refresh, connect the limiter (as configured)."""
        store: SQLStore | None = None
        ledger: Ledger | None = None
        limiter: Limiter | None = None
        sc = config.store
        if sc.url is not None:
            from ..limits.memory import MemoryLimiter
            from ..store.sql import SQLStore
            from ..usage.ledger import Ledger

            store = SQLStore(sc.url)
            await store.open()
            u = config.usage
            ledger = Ledger(store, flush_interval=u.flush_interval, batch_size=u.batch_size, spill_path=u.spill_path)
            await ledger.start()
            if sc.redis_url is not None:
                from ..limits.redis import RedisLimiter

                limiter = RedisLimiter(sc.redis_url)
            else:
                limiter = MemoryLimiter()
        auth = Authenticator(config.server.master_key, store, refresh=sc.key_refresh)
        await auth.start()
        metrics = Metrics() if config.metrics.enabled else None
        return cls(config, auth, metrics=metrics, store=store, ledger=ledger, limiter=limiter)

    async def aclose(self) -> None:
        """Stop the key refresh, flush the ledger (nothing is lost), close the limiter and the store."""
        await self.auth.aclose()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self.ledger is not None:
            await self.ledger.aclose()
        if self.limiter is not None:
            await self.limiter.aclose()
        if self.store is not None:
            await self.store.aclose()

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {"auth": self.auth.required, "metrics": self.metrics is not None}
        if self.store is not None:
            out["keys"] = self.auth.known
            out["limits"] = "redis" if self.config.store.redis_url else "memory"
        if self.ledger is not None:
            out["usage_pending"] = self.ledger.pending
        return out

    # -- per request ------------------------------------------------------------------------------
    async def begin(self, request_id: str, caller: Caller, model: str, endpoint: str, stream: bool) -> Ticket:
        """Check the caller may call ``model`` now; the returned ticket must be finished (``finish``/``fail``)."""
        key = caller.key
        if key is not None and key.models is not None and model not in key.models:
            raise ModelNotAllowedError(
                f"the API key {key.prefix}… ({key.id}) may not call the model {model!r}; it may call: "
                + ", ".join(key.models),
                param="model",
                code="model_not_allowed",
            )
        ticket = Ticket(self, request_id, caller.key_id, model, endpoint, stream)
        limits = caller.limits
        if key is not None and limits is not None and self.limiter is not None:
            if limits.budget is not None:
                await self._seed(key, limits)
            try:
                ticket.permit = await self.limiter.acquire(key.id, limits)
            except LimitExceededError as exc:
                if self.metrics is not None:
                    self.metrics.limited.labels(exc.limit).inc()
                ticket.in_flight = False
                await ticket.finish(exc.http_status, None, exc.code)
                raise
            except LimiterUnavailableError as exc:
                # refused, never admitted unlimited; the caller is not told where our Redis is
                log.error("request %s refused: %s", request_id, exc)
                ticket.in_flight = False
                await ticket.finish(503, None, "limiter_unavailable")
                raise LimiterUnavailableError(
                    "the gateway cannot check rate limits and budgets right now; try again shortly"
                ) from None
        if self.metrics is not None:
            self.metrics.in_flight.inc()
        return ticket

    async def _seed(self, key: ApiKey, limits: Limits) -> None:
        """Start this period's spend counter of ``key`` from the ledger, once per key and period per process."""
        start, _ = period_window(limits.budget_period, time.time())
        mark = (key.id, start)
        if mark in self._seeded or self.store is None or self.limiter is None:
            return
        try:
            if self.ledger is not None:
                await self.ledger.flush()  # this worker's records not yet written count too
            spent = await self.store.spend(key.id, since=float(start))
        except Exception as exc:  # no spend, no budget check: refuse rather than admit unchecked
            log.error("cannot read the spend of key %s from the store: %s", key.id, exc)
            raise LimiterUnavailableError(
                "the gateway cannot check this key's budget right now; try again shortly"
            ) from None
        await self.limiter.seed_spend(key.id, limits.budget_period, spent)
        self._seeded.add(mark)

    def in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` on its own (it must not be cut by the cancellation of the task that started it)."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _outcome(exc: BaseException) -> tuple[int, str | None]:
    if isinstance(exc, ModelwayError):
        status, body, _ = error_payload(exc, None)
        return status, body["error"]["code"] or body["error"]["type"]
    if isinstance(exc, ClientGone | asyncio.CancelledError | GeneratorExit):
        return 499, "client_gone"
    return 500, "internal_error"


class Ticket:
    """One admitted request; the router sets ``deployment`` (it is a :class:`~modelway.router.Trace`)."""

    __slots__ = (
        "plane",
        "request_id",
        "key_id",
        "model",
        "endpoint",
        "stream",
        "ts",
        "start",
        "permit",
        "deployment",
        "ttfb",
        "in_flight",
        "done",
    )

    def __init__(
        self, plane: ControlPlane, request_id: str, key_id: str | None, model: str, endpoint: str, stream: bool
    ) -> None:
        self.plane = plane
        self.request_id = request_id
        self.key_id = key_id
        self.model = model
        self.endpoint = endpoint
        self.stream = stream
        self.ts = time.time()
        self.start = time.perf_counter()
        self.permit: Permit | None = None
        self.deployment: Deployment | None = None
        self.ttfb: float | None = None
        self.in_flight = True
        self.done = False

    async def finish(self, status: int = 200, usage: Usage | None = None, error: str | None = None) -> None:
        """The request is over (once; later calls do nothing)."""
        if self.done:
            return
        self.done = True
        plane = self.plane
        elapsed = time.perf_counter() - self.start
        prompt = usage.prompt_tokens if usage is not None else 0
        completion = usage.completion_tokens if usage is not None else 0
        dep = self.deployment
        cost = dep.price.cost(prompt, completion) if dep is not None and dep.price is not None else 0.0
        m = plane.metrics
        if m is not None:
            if self.in_flight:
                m.in_flight.dec()
            m.observe(
                self.model if dep is not None else UNKNOWN_MODEL,
                self.endpoint,
                status,
                elapsed,
                ttfb=self.ttfb,
                prompt_tokens=prompt,
                completion_tokens=completion,
                cost=cost,
            )
        if plane.ledger is not None:
            plane.ledger.record(
                UsageRecord(
                    ts=self.ts,
                    request_id=self.request_id,
                    key_id=self.key_id,
                    model=self.model,
                    deployment=dep.address if dep is not None else None,
                    endpoint=self.endpoint,
                    stream=self.stream,
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    total_tokens=usage.total_tokens if usage is not None else 0,
                    cost=cost,
                    status=status,
                    error=error,
                    latency_ms=elapsed * 1000.0,
                    ttft_ms=self.ttfb * 1000.0 if self.ttfb is not None else None,
                )
            )
        permit = self.permit
        if permit is not None and plane.limiter is not None:
            tokens = usage.total_tokens if usage is not None else 0
            try:
                await plane.limiter.release(permit, tokens=tokens, cost=cost)
            except LimiterUnavailableError as exc:
                # the answer is already out; the place in flight expires on its own (parallel_ttl)
                log.error(
                    "request %s: could not count %d tokens and %g spent for key %s: %s",
                    self.request_id,
                    tokens,
                    cost,
                    self.key_id,
                    exc,
                )

    async def fail(self, exc: BaseException) -> None:
        """Finish with the status ``exc`` is answered with (499 when the caller went away)."""
        status, code = _outcome(exc)
        if isinstance(exc, asyncio.CancelledError):
            # this task is being cancelled: finish in a task of its own, so the limiter's release is not cut
            self.plane.in_background(self.finish(status, None, code))
            return
        await self.finish(status, None, code)

    async def track(
        self, batches: AsyncGenerator[list[ChatCompletionChunk], None]
    ) -> AsyncGenerator[list[ChatCompletionChunk], None]:
        """Pass a stream through, noting its first batch and its usage; finish when it ends, however it ends."""
        status: int = 499
        code: str | None = "client_gone"
        usage: Usage | None = None
        try:
            async for batch in batches:
                if self.ttfb is None:
                    self.ttfb = time.perf_counter() - self.start
                for chunk in batch:
                    if chunk.usage is not None:
                        usage = chunk.usage
                yield batch
            status, code = 200, None
        except BaseException as exc:
            status, code = _outcome(exc)
            raise
        finally:
            try:
                await batches.aclose()
            finally:
                await self.finish(status, usage, code)

    async def run(self, req: Request, call: Coroutine[Any, Any, T]) -> T:
        """Await ``call`` (cancelled if the caller goes away); a failure finishes the ticket and is raised."""
        try:
            return await watched(req, call)
        except BaseException as exc:
            await self.fail(exc)
            raise

    async def respond_stream(
        self,
        req: Request,
        send: Send,
        batches: AsyncGenerator[list[ChatCompletionChunk], None],
        render: Callable[[ChatCompletionChunk], bytes],
    ) -> None:
        """Send ``batches`` as SSE; the ticket finishes when the stream ends, fails, or its caller goes away."""
        try:
            await stream_sse(req, send, self.track(batches), render)
        finally:
            if not self.done:  # the stream never started (e.g. the caller left before it could)
                await self.finish(499, None, "client_gone")
