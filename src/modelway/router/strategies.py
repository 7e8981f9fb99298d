"""Selection strategies: in which order to try a model's usable deployments.

A strategy only orders: the router has already left out the deployments that cannot take the request now
(disabled, circuit open, asked to wait), and walks the order, skipping those at their quota and those that failed.
Each strategy is a small class behind :class:`Strategy`, registered by name in :data:`STRATEGIES`:

``weighted``
    weighted random (the default): a deployment of weight 3 comes first three times as often as one of weight 1.
``least_busy``
    fewest requests in flight first (ties: weighted random).
``latency``
    lowest moving average first: of the time to first output for streams, of the whole time for other requests.
    Deployments not measured yet come first (so they are measured); now and then (``explore``) a random one does,
    so that a deployment measured slow once is measured again.
``cost``
    cheapest first, for a request of the policy's typical size (``typical_prompt_tokens`` and
    ``typical_completion_tokens``) at the deployment's price; unpriced deployments last (their cost is unknown).
``priority``
    by tier (``Deployment.tier``, 0 first), weighted random within a tier: a tier is tried only after every
    deployment of the tiers before it is unavailable or failed.

The router keeps the observations strategies read (:class:`~modelway.router.stats.DeploymentStats` on each
deployment) and tells the strategy of every outcome too (:meth:`Strategy.observe`), for strategies of one's own.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .policy import RoutingPolicy

if TYPE_CHECKING:
    from .deployments import Deployment

__all__ = [
    "STRATEGIES",
    "CostStrategy",
    "LatencyStrategy",
    "LeastBusyStrategy",
    "Outcome",
    "PriorityStrategy",
    "Strategy",
    "WeightedStrategy",
    "make_strategy",
    "observes",
    "register_strategy",
    "weighted_shuffle",
]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt's end, as told to :meth:`Strategy.observe`."""

    ok: bool
    stream: bool
    #: seconds to the first output (streams) or to the whole answer; ``None`` for a failure
    seconds: float | None


class Strategy(Protocol):
    def order(self, deps: Sequence[Deployment], *, stream: bool) -> list[Deployment]:
        """``deps`` (every one usable now) in the order to try them."""
        ...

    def observe(self, dep: Deployment, outcome: Outcome) -> None:
        """An attempt at ``dep`` ended (the router has already counted it in ``dep.stats``)."""
        ...


StrategyFactory = Callable[[RoutingPolicy, random.Random], Strategy]

#: strategy name → factory
STRATEGIES: dict[str, StrategyFactory] = {}


def register_strategy(name: str, factory: StrategyFactory) -> None:
    """Make ``name`` usable as a policy's ``strategy``."""
    STRATEGIES[name] = factory


def make_strategy(policy: RoutingPolicy, rng: random.Random | None = None) -> Strategy:
    factory = STRATEGIES.get(policy.strategy)
    if factory is None:
        known = ", ".join(sorted(STRATEGIES))
        raise ValueError(f"unknown routing strategy {policy.strategy!r} (known: {known})")
    return factory(policy, rng or random.Random())


def weighted_shuffle(deps: Sequence[Deployment], rng: random.Random) -> list[Deployment]:
    """Weighted sampling without replacement (Efraimidis-Spirakis keys); weight 0 or less comes last."""
    if len(deps) <= 1:
        return list(deps)
    rand = rng.random
    return sorted(deps, key=lambda d: rand() ** (1.0 / d.weight) if d.weight > 0 else -1.0, reverse=True)


class _Base:
    def __init__(self, policy: RoutingPolicy, rng: random.Random) -> None:
        self.policy = policy
        self.rng = rng

    def observe(self, dep: Deployment, outcome: Outcome) -> None:
        return None

    def _ranked(self, deps: Sequence[Deployment], key: Callable[[Deployment], float]) -> list[Deployment]:
        """By ``key`` ascending, ties in weighted random order."""
        return sorted(weighted_shuffle(deps, self.rng), key=key)  # sorted() is stable: ties keep the shuffle


def observes(strategy: Strategy) -> bool:
    """Whether ``strategy`` does something with outcomes (the built-in ones do not: the router's own
    :class:`~modelway.router.stats.DeploymentStats` are what they read), so the router may skip telling it."""
    return getattr(type(strategy), "observe", None) is not _Base.observe


class WeightedStrategy(_Base):
    def order(self, deps: Sequence[Deployment], *, stream: bool) -> list[Deployment]:
        return weighted_shuffle(deps, self.rng)


class LeastBusyStrategy(_Base):
    def order(self, deps: Sequence[Deployment], *, stream: bool) -> list[Deployment]:
        return self._ranked(deps, lambda d: d.stats.in_flight)


class LatencyStrategy(_Base):
    #: the share of requests that try a random deployment first, to measure it again
    explore = 0.05

    def order(self, deps: Sequence[Deployment], *, stream: bool) -> list[Deployment]:
        if len(deps) > 1 and self.rng.random() < self.explore:
            return weighted_shuffle(deps, self.rng)

        def latency(d: Deployment) -> float:
            s = d.stats.ttft if stream else d.stats.total
            return -1.0 if s is None else s  # unmeasured first

        return self._ranked(deps, latency)


class CostStrategy(_Base):
    def order(self, deps: Sequence[Deployment], *, stream: bool) -> list[Deployment]:
        p, c = self.policy.typical_prompt_tokens, self.policy.typical_completion_tokens
        return self._ranked(deps, lambda d: math.inf if d.price is None else d.price.cost(p, c))


class PriorityStrategy(_Base):
    def order(self, deps: Sequence[Deployment], *, stream: bool) -> list[Deployment]:
        return self._ranked(deps, lambda d: d.tier)


register_strategy("weighted", WeightedStrategy)
register_strategy("least_busy", LeastBusyStrategy)
register_strategy("latency", LatencyStrategy)
register_strategy("cost", CostStrategy)
register_strategy("priority", PriorityStrategy)
