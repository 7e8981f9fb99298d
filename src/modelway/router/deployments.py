"""Deployments (one upstream with its own credentials) and model groups (a name clients call, over deployments)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..config import Price
from ..providers.base import Adapter
from ..types import Message
from .circuit import CircuitBreaker
from .messages import merge_system_messages, prepare_messages
from .policy import Quota, RoutingPolicy
from .quotas import AdmissionQueue, QuotaUsage
from .stats import DeploymentStats
from .strategies import Strategy, make_strategy, observes

__all__ = ["Deployment", "ModelGroup", "merge_system_messages"]


@dataclass(slots=True, eq=False)
class Deployment:
    """One upstream: an adapter instance (its own key and base URL), the provider's model name, and routing data.

    The router keeps what it observes of the deployment here (``stats``, ``circuit``, ``usage``), so it survives
    the deployment moving between groups (workers registering, run-time changes)."""

    adapter: Adapter
    model: str
    weight: float = 1.0
    timeout: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    #: what a million tokens cost here (``None``: not priced, the usage ledger records cost 0)
    price: Price | None = None
    #: until when (monotonic seconds) the deployment is cooling down: the provider asked to wait (``Retry-After``),
    #: or, for a model without circuit breakers, it failed a moment ago
    cooldown_until: float = 0.0
    #: the ``priority`` strategy's tier: 0 first; tier n+1 only when every deployment of tiers up to n is unavailable
    tier: int = 0
    #: what this upstream may take (``None``: unlimited)
    quota: Quota | None = None
    #: taken out of rotation by an operator: never tried, whatever its circuit says
    disabled: bool = False
    #: why it cannot work as configured (no key for its provider): never tried; ``None`` when it can
    unavailable: str | None = None
    stats: DeploymentStats = field(default_factory=DeploymentStats, repr=False)
    circuit: CircuitBreaker = field(default_factory=CircuitBreaker, repr=False)
    usage: QuotaUsage = field(default_factory=QuotaUsage, repr=False)
    #: ``provider/model`` and it as a header's value, made on first use (every answer sends it)
    _address: tuple[str, bytes] | None = field(default=None, init=False, repr=False)

    @property
    def address(self) -> str:
        return self.address_pair[0]

    @property
    def address_pair(self) -> tuple[str, bytes]:
        """:attr:`address`, and it encoded for the ``x-modelway-deployment`` header."""
        got = self._address
        if got is None:
            address = f"{self.adapter.name}/{self.model}"
            got = self._address = (address, address.encode("utf-8", "replace"))
        return got

    @property
    def in_rotation(self) -> bool:
        """Neither taken out by an operator nor unable to work: the router may try it."""
        return not self.disabled and self.unavailable is None

    def cooling(self, now: float) -> bool:
        return self.cooldown_until > now

    def cool_down(self, seconds: float, now: float | None = None) -> None:
        if seconds > 0:
            self.cooldown_until = max(self.cooldown_until, (time.monotonic() if now is None else now) + seconds)


@dataclass(slots=True, eq=False)
class ModelGroup:
    """A model name clients call, served by one or more deployments, routed as its ``policy`` says."""

    name: str
    deployments: list[Deployment]
    system_prompt: str | None = None
    merge_system: bool = False
    owned_by: str = "modelway"
    policy: RoutingPolicy = field(default_factory=RoutingPolicy)
    #: where callers wait while every deployment is at its quota
    queue: AdmissionQueue = field(default_factory=AdmissionQueue, init=False, repr=False)
    _strategy: Strategy | None = field(default=None, init=False, repr=False)
    _strategy_of: RoutingPolicy | None = field(default=None, init=False, repr=False)
    #: the strategy when it is told of outcomes (:func:`~modelway.router.strategies.observes`), else ``None``
    _observer: Strategy | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._use(make_strategy(self.policy))  # an unknown strategy name fails here, at start

    @property
    def strategy(self) -> Strategy:
        """The policy's strategy (built again when the policy is replaced)."""
        strategy = self._strategy
        if strategy is None or self._strategy_of is not self.policy:
            strategy = make_strategy(self.policy)
            self._use(strategy)
        return strategy

    @property
    def observer(self) -> Strategy | None:
        """:attr:`strategy` if it does something with outcomes, else ``None`` (the router need not tell it)."""
        if self._strategy is None or self._strategy_of is not self.policy:
            self._use(make_strategy(self.policy))
        return self._observer

    def set_strategy(self, strategy: Strategy) -> None:
        """Use ``strategy`` (an instance of one's own, or one with a seeded random source in tests)."""
        self._use(strategy)

    def _use(self, strategy: Strategy) -> None:
        self._strategy = strategy
        self._strategy_of = self.policy
        self._observer = strategy if observes(strategy) else None

    def order(self) -> list[Deployment]:
        """Deployments in the order to try them: the strategy's order of those in rotation and not cooling down,
        then the cooling ones (soonest ready first)."""
        now = time.monotonic()
        deps = [d for d in self.deployments if d.in_rotation]
        ready = [d for d in deps if not d.cooling(now)]
        cooling = sorted((d for d in deps if d.cooling(now)), key=lambda d: d.cooldown_until)
        return self.strategy.order(ready, stream=False) + cooling

    def prepare(self, messages: list[Message]) -> list[Message]:
        """Apply the group's default system prompt and, for models without a system role, merge system text
        into the first user message (see :mod:`modelway.router.messages`)."""
        return prepare_messages(messages, system_prompt=self.system_prompt, merge_system=self.merge_system)
