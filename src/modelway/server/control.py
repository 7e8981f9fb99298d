"""The control plane on the path of every request: who calls, may they call this model now, and what it cost.

``begin`` runs before the request goes to the router: the key's model list, the model's price when the key has a
budget, then its limits (one ``acquire``). The :class:`~modelway.server.ticket.Ticket` it returns travels with
the request and is finished exactly once, however the request ends.

A key's spend counter is a cache of the ledger's sum for the current budget period: the limiter asks for it
(``SpendNotSeeded``) the first time a budgeted key calls in a period, and whenever the counter was lost (Redis
restarted); it is read from the store plus the records this worker has not written yet.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ..auth.authenticator import Authenticator, Caller
from ..auth.keys import ApiKey
from ..config import Config
from ..limits.base import (
    Limiter,
    LimiterUnavailableError,
    LimitExceededError,
    Limits,
    Permit,
    SpendNotSeeded,
    period_window,
)
from ..providers import PROVIDERS
from ..providers.base import ProviderSettings
from ..router import Deployment, ModelGroup
from .errors import Forbidden
from .http import Lifecycle
from .metrics import UNKNOWN_MODEL, Metrics
from .request_log import RequestLog
from .ticket import Ticket, key_name

if TYPE_CHECKING:
    from ..store.sql import SQLStore
    from ..usage.ledger import Ledger

__all__ = ["ControlPlane", "ModelNotAllowedError", "Ticket"]

log = logging.getLogger("modelway.server")


class ModelNotAllowedError(Forbidden):
    """A virtual key asked for a model outside its list, or for an unpriced model while it has a budget (403)."""


def _journal_dir(base: str | None, store: SQLStore) -> str | None:
    """The journal of this store's records: a directory per store under ``base``, so that a gateway never imports
    another one's orphaned records into its own store (named by the store's address, without its password)."""
    if base is None:
        return None
    tag = hashlib.sha256(store.url.encode()).hexdigest()[:12]
    return os.path.join(base, f"store-{tag}")


async def _probe(what: str, check: Coroutine[Any, Any, None]) -> bool:
    try:
        async with asyncio.timeout(2.0):
            await check
    except Exception as exc:
        log.warning("readiness: %s does not answer: %s", what, exc)
        return False
    return True


def _unavailable(what: str) -> LimiterUnavailableError:
    return LimiterUnavailableError(f"the gateway cannot check {what} right now; try again shortly")


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
        lifecycle: Lifecycle | None = None,
        request_log: RequestLog | None = None,
    ) -> None:
        self.config = config
        #: the app's life (a request cancelled while it shuts down is recorded as such)
        self.lifecycle = lifecycle or Lifecycle()
        self.auth = auth
        self.metrics = metrics
        self.store = store
        self.ledger = ledger
        self.limiter = limiter
        #: one line per request (``request_log.enabled``)
        self.request_log = request_log
        rl = config.request_log
        #: ``request_log.bodies``: the cap of the bodies kept, in the request log's lines and with the usage records
        #: (``None``: none is kept, and nothing is done per request for them)
        self.body_cap = rl.max_body_bytes if rl.bodies and (request_log is not None or ledger is not None) else None
        #: the model group a name resolves to (the gateway sets its router's); used for budgeted keys' prices
        self.resolve: Callable[[str], ModelGroup] | None = None
        self._background: set[asyncio.Future[None]] = set()
        self._health: tuple[float, dict[str, bool]] | None = None
        # metric labels are bounded: configured aliases, priced names and the providers' known models
        self._labels = {m.name for m in config.models} | set(config.prices)
        for cls in PROVIDERS.values():
            self._labels.update(info.id for info in cls(ProviderSettings()).models())
        #: the model names that are their own label (a ticket checks it inline before calling :meth:`label`)
        self.labels: frozenset[str] = frozenset(self._labels)
        self._deployments = {d.model for m in config.models for d in m.deployments} | self._labels

    @classmethod
    async def start(cls, config: Config, lifecycle: Lifecycle | None = None) -> ControlPlane:
        """Open the store, start the ledger and the key refresh, connect the limiter (as configured)."""
        store: SQLStore | None = None
        ledger: Ledger | None = None
        limiter: Limiter | None = None
        sc = config.store
        try:
            if sc.url is not None:
                from ..limits.memory import MemoryLimiter
                from ..store.sql import SQLStore
                from ..usage.ledger import Ledger

                store = SQLStore(sc.url)
                await store.open()
                u = config.usage
                ledger = Ledger(
                    store,
                    flush_interval=u.flush_interval,
                    batch_size=u.batch_size,
                    spill_path=u.spill_path,
                    journal_dir=_journal_dir(u.journal_path, store),
                    retention=u.retention_days * 86_400 or None,
                )
                await ledger.start()
                if sc.redis_url is not None:
                    from ..limits.redis import RedisLimiter

                    limiter = RedisLimiter(sc.redis_url)
                else:
                    limiter = MemoryLimiter()
            auth = Authenticator(config.server.master_key, store, refresh=sc.key_refresh)
            await auth.start()
        except BaseException:
            if ledger is not None:
                await ledger.aclose()
            if store is not None:
                await store.aclose()
            raise
        metrics = Metrics() if config.metrics.enabled else None
        if metrics is not None:
            await metrics.start()
        rl = config.request_log
        request_log = RequestLog(rl, secret_prefix=config.cluster.path_prefix) if rl.enabled else None
        return cls(
            config,
            auth,
            metrics=metrics,
            store=store,
            ledger=ledger,
            limiter=limiter,
            lifecycle=lifecycle,
            request_log=request_log,
        )

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
        if self.metrics is not None:
            await self.metrics.close()
        if self.request_log is not None:
            self.request_log.close()

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {"auth": self.auth.required, "metrics": self.metrics is not None}
        if self.store is not None:
            out["keys"] = self.auth.known
            out["limits"] = "redis" if self.config.store.redis_url else "memory"
        if self.ledger is not None:
            out["usage_pending"] = self.ledger.pending
        return out

    async def health(self) -> dict[str, bool]:
        """Whether each service requests depend on answers now: the store, and Redis for the limits (probed at most
        once a second, each within 2 s)."""
        now = time.monotonic()
        if self._health is not None and now - self._health[0] < 1.0:
            return self._health[1]
        checks: dict[str, bool] = {}
        if self.store is not None:
            checks["store"] = await _probe("the store", self.store.ping())
        if self.limiter is not None and self.config.store.redis_url is not None:
            checks["limits"] = await _probe("Redis", self.limiter.ping())
        self._health = (now, checks)
        return checks

    def label(self, model: str, dep: Deployment | None) -> str:
        """The ``model`` label of a metric: never an arbitrary name a caller made up."""
        if model in self._labels:
            return model
        if dep is not None:
            return f"{dep.adapter.name}/(other)"
        return UNKNOWN_MODEL

    def deployment_label(self, dep: Deployment) -> str:
        """The ``deployment`` label of a metric: a configured deployment or a known model, else
        ``provider/(other)`` (a name a caller chose for a direct call never becomes a series)."""
        address = dep.address
        return address if address in self._deployments else f"{dep.adapter.name}/(other)"

    # -- per request ------------------------------------------------------------------------------
    async def begin(self, request_id: str, caller: Caller, model: str, endpoint: str, stream: bool) -> Ticket:
        """Check the caller may call ``model`` now; the returned ticket must be finished (``finish``/``fail``)."""
        key = caller.key
        ticket = Ticket(self, request_id, caller.key_id, model, endpoint, stream)
        ticket.key_name = key_name(caller)
        limits = caller.limits
        try:
            if key is not None:
                self._check_model(key, limits, model)
                limiter = self.limiter
                if limits is not None and limiter is not None:
                    try:
                        ticket.permit = await limiter.acquire(key.id, limits)
                    except (SpendNotSeeded, LimiterUnavailableError) as first:
                        ticket.permit = await self._acquire(key, limits, first)
        except BaseException as exc:  # refused (limits, model list, price, unknown model) or cut short: recorded
            if isinstance(exc, LimitExceededError) and self.metrics is not None:
                self.metrics.count_limited(exc.limit)
            ticket.in_flight = False
            await ticket.fail(exc)
            raise
        if self.metrics is not None:
            self.metrics.in_flight += 1
        return ticket

    def _check_model(self, key: ApiKey, limits: Limits | None, model: str) -> None:
        if key.models is not None and model not in key.models:
            raise ModelNotAllowedError(
                f"the API key {key.prefix}… ({key.id}) may not call the model {model!r}; it may call: "
                + ", ".join(key.models),
                param="model",
                code="model_not_allowed",
            )
        if limits is not None and limits.budget is not None and self.resolve is not None:
            group = self.resolve(model)  # an unknown model raises its 404 here
            for d in group.deployments:  # (a loop: no generator per request)
                if d.price is None:
                    raise ModelNotAllowedError(
                        f"the model {model!r} has no price, and the API key {key.prefix}… ({key.id}) has a budget: "
                        "set a price for it in the gateway's config (models[].price or prices)",
                        param="model",
                        code="model_not_priced",
                    )

    async def _acquire(self, key: ApiKey, limits: Limits, first: SpendNotSeeded | LimiterUnavailableError) -> Permit:
        """The limiter's first ``acquire`` (in :meth:`begin`) raised ``first``: seed the key's spend and acquire
        again, or refuse."""
        limiter = self.limiter
        assert limiter is not None
        try:
            if isinstance(first, LimiterUnavailableError):
                raise first
            await self._seed(key, limits)
            return await limiter.acquire(key.id, limits)
        except SpendNotSeeded:  # seeded, and gone again at once: do not admit unchecked
            raise _unavailable("this key's budget") from None
        except LimiterUnavailableError as exc:
            # refused, never admitted unlimited; the caller is not told where our Redis is
            log.error("key %s refused: %s", key.id, exc)
            raise _unavailable("rate limits and budgets") from None

    async def _seed(self, key: ApiKey, limits: Limits) -> None:
        """Start this period's spend counter of ``key`` from the ledger: the store's sum plus this worker's
        records not written yet."""
        assert self.limiter is not None
        if self.store is None:
            await self.limiter.seed_spend(key.id, limits.budget_period, 0.0)
            return
        start, _ = period_window(limits.budget_period, time.time())
        try:
            if self.ledger is not None:
                spent = await self.ledger.spend(key.id, since=float(start))
            else:
                spent = await self.store.spend(key.id, since=float(start))
        except Exception as exc:  # no spend, no budget check: refuse rather than admit unchecked
            log.error("cannot read the spend of key %s from the store: %s", key.id, exc)
            raise _unavailable("this key's budget") from None
        await self.limiter.seed_spend(key.id, limits.budget_period, spent)

    def in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` on its own (it must not be cut by the cancellation of the task that started it)."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
