"""The one failover loop: choose a deployment, admit it (circuit, quota), send, account, and on a failure that is the
deployment's fault move on; chat, streams (up to their first output), embeddings and rerank all go through it.

A :class:`Failover` serves one call on one model group; an :class:`Attempt` is one upstream request of it, and
holds what the request took (its place in flight, its quota slot, its circuit probe) until it is finished, exactly
once: answered (a stream: ended), failed, or cancelled.

Which deployment comes next:

- those out of rotation (disabled), that cannot work as configured (``unavailable``: no key), whose circuit is
  open, or that asked to wait (``Retry-After``) are skipped (a model none of whose deployments can work as configured
  raises :class:`~modelway.errors.DeploymentUnavailableError`);
  without circuit breakers (the default policy) a deployment cooling down after a failure is tried last, as before;
- the strategy orders the rest; deployments not tried yet in this call come first;
- a deployment at its quota is skipped; when every usable one is, the call waits in the model's queue;
- without ``max_attempts`` (the default policy) each deployment is retried in place as the router's
  :class:`~modelway.retry.RetryPolicy` says, then the next one is tried; a deployment is cooled down (no circuit
  breakers) and reported to ``on_failure`` only when the call gives it up, not when its retry in place mends it;
  with ``max_attempts``, each attempt goes to another deployment while there is one, then round again after the
  retry policy's backoff, ``max_attempts`` in all;
- a retry in place or a backoff longer than the model's time budget left is not slept: the deployment (or the
  call, with the last error) is given up at once;
- when every deployment asked to wait, the call waits for the soonest if that is within the retry policy's
  ``max_retry_after`` and the model's time budget, else gets 429 with ``Retry-After``.

A bad request (the 400 family: content filter, context length) is raised at once: every deployment would refuse it
(the model's fallback lists may still send it elsewhere: :class:`~modelway.router.Router`).

With shared router state (``Router.shared``, :mod:`modelway.router.shared`), admission asks the shared backend
(circuit and quota across processes, one round trip) when the deployment has a circuit or a quota, and every
attempt's place in flight, verdict and release are reported to it; when the backend is unavailable, or there is
none, admission is this process's own, as without it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from ..errors import (
    AllDeploymentsFailedError,
    BadRequestError,
    DeploymentUnavailableError,
    ModelwayError,
    ProviderError,
    ProviderTimeoutError,
    RoutingError,
    StreamError,
)
from .attempt import Attempt
from .hedge import hedge_delay, race
from .quotas import DeploymentsBusyError

if TYPE_CHECKING:
    from .deployments import Deployment, ModelGroup
    from .router import Router

__all__ = ["Attempt", "CallState", "Failover", "Trace", "note"]

T = TypeVar("T")

log = logging.getLogger("modelway.router")


class Trace(Protocol):
    """What the router tells its caller about one request: the deployment tried last (the one that answered, when
    the call succeeded). The server's usage record and metrics read it.

    A trace may also declare ``attempts`` (every upstream request the call made, retries and fallbacks included)
    and ``fallback`` (the model fallen back to, or ``None``): the router sets them when the trace has them."""

    deployment: Deployment | None


def note(trace: object | None, name: str, value: object) -> None:
    """Set ``trace.name`` if the trace declares it (an optional attribute of :class:`Trace`)."""
    if trace is not None and (hasattr(type(trace), name) or hasattr(trace, name)):
        setattr(trace, name, value)


class CallState:
    """What one call carries across its model and its fallbacks (it starts by noting ``fallback`` ``None``)."""

    __slots__ = ("attempts", "counts", "trace")

    def __init__(self, trace: Trace | None) -> None:
        self.trace = trace
        self.attempts = 0
        #: whether the trace has ``attempts`` to set (as :func:`note` decides, once a call)
        self.counts = False
        if trace is not None:
            kind = type(trace)
            declares = _DECLARES.get(kind)
            if declares is None:
                declares = (hasattr(kind, "attempts"), hasattr(kind, "fallback"))
                if len(_DECLARES) < 256:  # (classes, not instances: a few)
                    _DECLARES[kind] = declares
            self.counts = declares[0] or hasattr(trace, "attempts")
            if declares[1] or hasattr(trace, "fallback"):
                trace.fallback = None  # type: ignore[attr-defined]

    def started(self, dep: Deployment) -> None:
        self.attempts += 1
        trace = self.trace
        if trace is not None:
            trace.deployment = dep
            if self.counts:
                trace.attempts = self.attempts  # type: ignore[attr-defined]


#: whether a trace class declares ``attempts`` and ``fallback`` (asked once a class; a trace whose class does not is
#: asked itself, once a call: :func:`note` asks at every attempt)
_DECLARES: dict[type, tuple[bool, bool]] = {}


class Failover(Generic[T]):
    """One call's attempts at one model group."""

    __slots__ = (
        "_prompt",
        "_prompt_estimate",
        "_token_estimate",
        "_tokens",
        "attempts",
        "call",
        "deadline",
        "discard",
        "eligible",
        "errors",
        "group",
        "last",
        "pending",
        "round",
        "rounds",
        "router",
        "spent",
        "state",
        "stream",
        "tried",
    )

    def __init__(
        self,
        router: Router,
        group: ModelGroup,
        state: CallState,
        call: Callable[[Deployment, float | None], Awaitable[T]],
        stream: bool = False,
        tokens: Callable[[], int] = lambda: 0,
        prompt_tokens: Callable[[], int] | None = None,
        eligible: Callable[[Deployment], bool] | None = None,
        discard: Callable[[T], Awaitable[None]] | None = None,
    ) -> None:
        self.router = router
        self.group = group
        self.state = state
        self.call = call
        self.stream = stream
        self._tokens = tokens
        self._token_estimate: int | None = None
        self._prompt = prompt_tokens
        self._prompt_estimate: int | None = None
        self.eligible = eligible
        self.discard = discard
        self.errors: list[ModelwayError] = []
        self.tried: dict[Deployment, int] = {}
        #: deployments this call does not try again (a failure that retrying would not mend)
        self.spent: set[Deployment] = set()
        self.attempts = 0
        self.rounds = 0
        #: deployments tried in the current round (``max_attempts``: each once a round)
        self.round: set[Deployment] = set()
        self.last: tuple[Deployment, ModelwayError] | None = None
        #: deployments that failed and may be retried in place: cooled down and reported when given up
        self.pending: dict[Deployment, ModelwayError] = {}
        budget = group.policy.timeout
        self.deadline = None if budget is None else router.clock() + budget

    # -- the loop ---------------------------------------------------------------------------------
    async def run(self) -> tuple[T, Attempt]:
        """The first answer (a stream: its first output) and its attempt, which the caller must finish."""
        hedge = self.group.policy.hedge
        try:
            first = self._first()
            while True:
                if first is None:
                    att = await self._next()
                elif isinstance(first, Attempt):
                    att = first
                else:  # every candidate is at its quota: the model's queue
                    att = self._begin(await self._queue(*first))
                first = None
                try:
                    if hedge is not None:
                        delay = hedge_delay(hedge, att.dep, stream=self.stream)
                        if delay is not None:
                            value, att = await race(self, att, delay)
                            break
                    value = await self.attempt(att)
                    break
                except BadRequestError:
                    raise
                except ModelwayError:
                    continue  # counted by attempt(): next
        except Exception:
            self._let_go_all()  # the call gave up: the deployments it still meant to retry in place too
            raise
        if self.pending:
            self.pending.pop(att.dep, None)  # mended by its retry in place
            self._let_go_all()
        trace = self.state.trace
        if trace is not None:
            trace.deployment = att.dep  # the winner (a hedge may have started another since)
        return value, att

    async def attempt(self, att: Attempt) -> T:
        """Send one attempt; a failure is counted (and re-raised), a cancellation gives everything back."""
        timeout = self._timeout(att)
        try:
            value = await self.call(att.dep, timeout)
        except BadRequestError:
            att.abandoned(0)  # the request's fault, not the deployment's
            raise
        except ModelwayError as exc:
            self.errors.append(exc)
            self.last = (att.dep, exc)
            wait = exc.retry_after if isinstance(exc, ProviderError) else None
            if not self._retryable(exc) or (wait is not None and wait > self.router.retry.max_retry_after):
                self.spent.add(att.dep)  # retrying would not mend it, or not soon enough
            if att.budgeted and isinstance(exc, ProviderTimeoutError):
                att.abandoned()  # our own budget ran out, not the deployment's patience
            else:  # without max_attempts the deployment may be retried in place: given up (cooled down) later
                att.failed(exc, defer=self.group.policy.max_attempts is None)
            raise
        except BaseException:
            att.abandoned()
            raise
        try:
            att.succeeded()
        except BaseException:  # a strategy's own observe raised: give everything back, the error goes on
            att.finish()
            if self.discard is not None:
                await _quietly(self.discard(value))
            raise
        return value

    # -- a deployment given up --------------------------------------------------------------------
    def fault(self, dep: Deployment, exc: ModelwayError) -> None:
        """``dep`` failed and this call gives it up: without circuit breakers cool it down (as long as the
        provider asked, else the router's cooldown); tell ``on_failure``."""
        router = self.router
        if self.group.policy.circuit is None:
            retry_after = exc.retry_after if isinstance(exc, ProviderError) else None
            dep.cool_down(retry_after or router.cooldown, router.clock())
        if router.on_failure is not None:
            try:
                router.on_failure(dep, exc)
            except Exception:  # a metrics hook must not change the call's outcome
                log.exception("the router's on_failure hook raised")

    def _let_go(self, dep: Deployment) -> None:
        """No retry in place of ``dep`` in this call after all: its deferred failure counts now."""
        exc = self.pending.pop(dep, None)
        if exc is not None:
            self.fault(dep, exc)

    def _let_go_all(self, keep: Deployment | None = None) -> None:
        for dep in [d for d in self.pending if d is not keep]:
            self._let_go(dep)

    # -- choosing ---------------------------------------------------------------------------------
    def _first(self) -> Attempt | tuple[list[Deployment], float] | None:
        """:meth:`_next` for the call's first attempt when that takes no await (no shared state to ask, no one in
        the model's queue, no time budget to check): the attempt, or the candidates and how long until one has room
        under its quota (for :meth:`_queue`); ``None``: :meth:`_next` decides."""
        group = self.group
        if self.router.shared is not None or group.queue.waiting or self.deadline is not None:
            return None
        now = self.router.clock()
        deps = group.deployments
        if len(deps) == 1 and self.eligible is None:  # one deployment: its own checks, nothing to order
            dep = deps[0]
            circuit = group.policy.circuit
            if (
                dep.quota is None
                and dep.in_rotation
                and dep.cooldown_until <= now
                and (circuit is None or dep.circuit.available(now))
            ):
                probe = dep.circuit.admit(now) if circuit is not None else False
                if probe is not None:  # (it is, after available(): as :meth:`_admit_here` without quota or lease)
                    return self._begin(Attempt(self, dep, probe, None, None, circuit))
        candidates, _ = self._candidates(now)  # (the first attempt: no round to start again)
        if not candidates:
            return None  # (nothing was ordered: _next finds the same, and waits or gives up)
        att, hint = self._take_here(candidates, now)
        if att is not None:
            return self._begin(att)
        return candidates, hint

    async def _next(self) -> Attempt:
        """Admit the next attempt, waiting for a deployment when that is allowed; raise when none is left."""
        policy = self.group.policy
        while True:
            if policy.max_attempts is not None and self.attempts >= policy.max_attempts:
                raise self._give_up()
            left = None if self.deadline is None else self.deadline - self.router.clock()
            if left is not None and left <= 0:
                raise self._give_up(timed_out=True)
            again = self._again(left) if self.last is not None else None
            if again is not None:
                dep, wait = again
                await self._sleep(wait)
                att = await self._admit(dep) if self._room(dep) else None
                if isinstance(att, Attempt):
                    return self._begin(att)
                self._let_go(dep)
            candidates, round_again = self._candidates(self.router.clock())
            if round_again and self.errors:  # every deployment was tried: back off before the next round
                wait = self.router.retry.wait(self.errors[-1], self.rounds)
                left = self._left()
                if left is not None and wait >= left:
                    raise self._give_up()  # the budget ends first: no doomed request after a useless wait
                await self._sleep(wait)
                self.rounds += 1
                self.round = set()
                candidates, _ = self._candidates(self.router.clock())
            if candidates:
                hint: float | None = None
                if self.router.shared is None and not self.group.queue.waiting:  # the common case, without awaiting
                    att, hint = self._take_here(candidates, self.router.clock())
                    if att is not None:
                        return self._begin(att)
                return self._begin(await self._queue(candidates, hint))
            await self._wait_for_any()

    def _again(self, left: float | None) -> tuple[Deployment, float] | None:
        """The same deployment again, and the wait first: the default policy's retries in place (not when the wait
        would outlast the time budget left: the deployment is given up)."""
        if self.last is None:
            return None
        dep, exc = self.last
        self.last = None
        self._let_go_all(keep=dep)  # (a hedge's other failure: only the last one is retried in place)
        if self.group.policy.max_attempts is not None:
            return None
        n = self.tried.get(dep, 1) - 1
        wait = 0.0
        retry = self.router.retry
        if not (dep.disabled or dep in self.spent) and retry.should_retry(exc, n):
            wait = retry.wait(exc, n)
            if left is None or wait < left:
                return dep, wait
        self.spent.add(dep)
        self._let_go(dep)
        return None

    def _candidates(self, now: float) -> tuple[list[Deployment], bool]:
        """Deployments that may take the next attempt now, in order (quotas aside), and whether they are a new
        round (every usable deployment was tried in this call already)."""
        policy = self.group.policy
        eligible, spent = self.eligible, self.spent
        hard = policy.circuit is not None  # open circuits and Retry-After are hard
        ready: list[Deployment] = []
        cooling: list[Deployment] = []  # without circuit breakers a cooling deployment is still tried, last
        for d in self.group.deployments:
            if not d.in_rotation or d in spent or (eligible is not None and not eligible(d)):
                continue
            if d.cooldown_until > now:
                if not hard:
                    cooling.append(d)
            elif not hard or d.circuit.available(now):
                ready.append(d)
        if len(cooling) > 1:
            cooling.sort(key=_cooldown_until)
        if policy.max_attempts is None:  # every deployment once (retries in place are :meth:`_again`'s)
            tried = self.tried
            if tried:
                ready = [d for d in ready if d not in tried]
                cooling = [d for d in cooling if d not in tried]
            return self._order(ready) + cooling if cooling else self._order(ready), False
        done = self.round
        fresh = [d for d in ready if d not in done]
        late = [d for d in cooling if d not in done]
        if fresh or late:
            return self._order(fresh) + late, False
        # every usable deployment was tried in this round: the next round (failures that cannot mend are spent)
        return self._order(ready) + cooling, bool(ready or cooling)

    def _order(self, deps: list[Deployment]) -> list[Deployment]:
        return self.group.strategy.order(deps, stream=self.stream) if len(deps) > 1 else deps

    async def _queue(self, candidates: list[Deployment], hint: float | None = None) -> Attempt:
        """Admit the first candidate under its quota, else wait in the model's queue (``hint``: the candidates were
        tried already, with no one waiting, and this is how long until one may have room)."""
        clock = self.router.clock
        queue = self.group.queue
        if hint is None and not queue:  # no one waits: the first candidate with room now, if any, without queueing
            att, hint = await self._take(candidates, clock())
            if att is not None:
                return att

        async def take() -> tuple[object | None, float]:
            now = clock()
            return await self._take(self._candidates(now)[0], now)

        policy = self.group.policy
        left = self._left()
        wait = policy.queue_wait if left is None else max(0.0, min(policy.queue_wait, left))
        waited = self.router.on_queue_wait
        since = clock() if waited is not None else 0.0
        try:
            got = await queue.wait_for(take, depth=policy.queue_depth, timeout=wait, clock=clock, hint=hint)
        finally:
            if waited is not None:
                try:
                    waited(self.group, clock() - since)
                except Exception:  # a metrics hook must not change the call's outcome
                    log.exception("the router's on_queue_wait hook raised")
        assert isinstance(got, Attempt)
        return got

    def _take_here(self, deps: list[Deployment], now: float) -> tuple[Attempt | None, float]:
        """:meth:`_take` without shared state."""
        soonest = math.inf
        for dep in deps:
            wait = self._room_in(dep, now)
            if wait == 0:
                att = self._admit_here(dep, now)
                if isinstance(att, Attempt):
                    return att, 0.0
                wait = att
            soonest = min(soonest, wait)
        return None, soonest

    async def _take(self, deps: list[Deployment], now: float) -> tuple[Attempt | None, float]:
        """Admit the first of ``deps`` with room; else ``None`` and how long until one may have."""
        soonest = math.inf
        for dep in deps:
            wait = self._room_in(dep, now)
            if wait == 0:
                att = await self._admit(dep)
                if isinstance(att, Attempt):
                    return att, 0.0
                wait = att
            soonest = min(soonest, wait)
        return None, soonest

    def _room_in(self, dep: Deployment, now: float) -> float:
        """0 when ``dep`` has room under its quota for this call now, else how long until it may."""
        if dep.quota is None:
            return 0.0
        return dep.usage.wait(dep.quota, now, self._estimate() if dep.quota.tpm is not None else 0)

    def _room(self, dep: Deployment) -> bool:
        return self._room_in(dep, self.router.clock()) == 0

    async def admit_now(self) -> Attempt | None:
        """An attempt at another deployment that can take one right now, without waiting (a hedge)."""
        policy = self.group.policy
        if policy.max_attempts is not None and self.attempts >= policy.max_attempts:
            return None
        now = self.router.clock()
        for dep in self._candidates(now)[0]:
            if dep in self.round or dep.cooling(now):
                continue
            if self._room_in(dep, now) == 0:
                att = await self._admit(dep)
                if isinstance(att, Attempt):
                    return self._begin(att)
        return None

    async def _admit(self, dep: Deployment) -> Attempt | float:
        """Take ``dep``'s circuit pass and quota slot, if it has them to give; else how long until it may have
        (``0``: its circuit refused)."""
        circuit, shared = self.group.policy.circuit, self.router.shared
        if shared is not None and shared.needs_admission(dep, circuit):
            quota = dep.quota
            tokens = self._estimate() if quota is not None and quota.tpm is not None else 0
            timeout = dep.timeout or self.router.timeout or 600.0
            got = await shared.admit(dep, circuit, tokens, timeout + 5.0)
            if got is not None:  # the shared state decided (else it is unavailable: this process's view decides)
                if not got.admitted:
                    return got.wait
                limited = quota is not None and quota.limited
                slot = dep.usage.take(self.router.clock(), tokens, self.group.queue.notify) if limited else None
                return Attempt(self, dep, got.probe, slot, got.lease, circuit)
        return self._admit_here(dep, self.router.clock())

    def _admit_here(self, dep: Deployment, now: float) -> Attempt | float:
        """:meth:`_admit` by this process's own view (no shared state, or none to ask for ``dep`` now)."""
        circuit, shared = self.group.policy.circuit, self.router.shared
        probe = dep.circuit.admit(now) if circuit is not None else False
        if probe is None:
            return 0.0
        slot = None
        quota = dep.quota
        if quota is not None and quota.limited:
            tokens = self._estimate() if quota.tpm is not None else 0
            slot = dep.usage.take(now, tokens, self.group.queue.notify)
        lease = shared.started(dep) if shared is not None else None
        return Attempt(self, dep, probe, slot, lease, circuit)

    def _begin(self, att: Attempt) -> Attempt:
        self.attempts += 1
        self.tried[att.dep] = self.tried.get(att.dep, 0) + 1
        self.round.add(att.dep)
        self.state.started(att.dep)
        return att

    async def _wait_for_any(self) -> None:
        """No deployment can take an attempt now: wait for the one that asked to wait the shortest, or give up."""
        now = self.router.clock()
        deps = [d for d in self.group.deployments if d.in_rotation and d not in self.spent]
        if self.eligible is not None:
            deps = [d for d in deps if self.eligible(d)]
        waiting = [d for d in deps if d.cooling(now) and d.circuit.available(now)]
        if not waiting:
            raise self._give_up()
        wait = min(d.cooldown_until for d in waiting) - now
        left = self._left()
        if wait > self.router.retry.max_retry_after or (left is not None and wait > left):
            if self.errors:
                raise self._give_up()
            raise DeploymentsBusyError(
                f"every deployment of {self.group.name!r} asked to wait (Retry-After)", retry_after=wait
            )
        await self._sleep(wait)

    # -- helpers ----------------------------------------------------------------------------------
    def _estimate(self) -> int:
        if self._token_estimate is None:
            self._token_estimate = self._tokens()
        return self._token_estimate

    def prompt_estimate(self) -> int:
        """The prompt's tokens (what a provider may bill for a request it read but did not answer)."""
        if self._prompt is None:
            return self._estimate()
        if self._prompt_estimate is None:
            self._prompt_estimate = self._prompt()
        return self._prompt_estimate

    def _left(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.router.clock()

    def _timeout(self, att: Attempt) -> float | None:
        own = att.dep.timeout or self.router.timeout
        if self.deadline is None:
            return own
        left = self.deadline - self.router.clock()
        if own is None or left < own:
            att.budgeted = True
            return max(left, 0.001)
        return own

    async def _sleep(self, seconds: float) -> None:
        left = self._left()
        if left is not None:
            seconds = min(seconds, max(left, 0.0))
        if seconds > 0:
            await asyncio.sleep(seconds)

    @staticmethod
    def _retryable(exc: ModelwayError) -> bool:
        """Whether the same deployment may be tried again in this call (an empty stream counts: it may answer)."""
        return exc.retryable or isinstance(exc, StreamError)

    def _give_up(self, *, timed_out: bool = False) -> ModelwayError:
        errors, name = self.errors, self.group.name
        if timed_out and not errors:
            return ProviderTimeoutError(f"no deployment of {name!r} answered within the model's time budget")
        if not errors:
            broken = [d for d in self.group.deployments if not d.disabled]
            if broken and all(d.unavailable is not None for d in broken):
                reasons = "; ".join(dict.fromkeys(f"{d.address}: {d.unavailable}" for d in broken))
                return DeploymentUnavailableError(f"no deployment of {name!r} can work as configured ({reasons})")
            return RoutingError(f"no deployment of {name!r} is available now (circuits open or out of rotation)")
        if len(errors) == 1:
            return errors[0]
        return AllDeploymentsFailedError(
            f"all {len(errors)} deployments of {name!r} failed; last: {errors[-1]}", errors
        )


def _cooldown_until(dep: Deployment) -> float:
    return dep.cooldown_until


async def _quietly(closing: Awaitable[None]) -> None:
    try:
        await closing
    except Exception:  # closing what is thrown away must not hide the error being raised
        log.debug("closing a discarded answer failed", exc_info=True)
