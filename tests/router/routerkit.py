"""Helpers of the router's tests: deployments over simulators or fake calls, a clock the tests drive, a trace."""

from __future__ import annotations

import random
import time
from typing import Any

from modelway.providers import PROVIDERS
from modelway.providers.base import ProviderSettings
from modelway.retry import RetryPolicy
from modelway.router import Deployment, ModelGroup, Router, RoutingPolicy
from modelway.router.strategies import make_strategy
from modelway.testing import OpenAISimulator
from modelway.transport import Transport
from modelway.types import ChatRequest


class Clock:
    """Monotonic seconds that the test moves on (``advance``), on top of the real clock (waits still pass)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class Trace:
    """A trace with every optional attribute the router fills."""

    def __init__(self) -> None:
        self.deployment: Deployment | None = None
        self.attempts = 0
        self.fallback: str | None = None


def dep(name: str, **kw: Any) -> Deployment:
    """A deployment whose adapter is never called (for fake calls and strategy tests)."""
    return Deployment(PROVIDERS["openai"](ProviderSettings(api_key="k", base_url="http://127.0.0.1:9/v1")), name, **kw)


def sim_dep(sim: OpenAISimulator, name: str, **kw: Any) -> Deployment:
    return Deployment(PROVIDERS["openai"](ProviderSettings(api_key=sim.api_key, base_url=sim.base_url)), name, **kw)


def group(name: str, deps: list[Deployment], policy: RoutingPolicy | None = None, seed: int = 1) -> ModelGroup:
    g = ModelGroup(name, deps, policy=policy or RoutingPolicy())
    g.set_strategy(make_strategy(g.policy, random.Random(seed)))
    return g


def chat(text: str = "hi", stream: bool = False) -> ChatRequest:
    return ChatRequest(model="m", messages=[{"role": "user", "content": text}], stream=stream)


def make_router(
    groups: list[ModelGroup],
    transport: Transport | None = None,
    *,
    retries: int = 0,
    max_retry_after: float = 1.0,
    timeout: float | None = 5.0,
    clock: Clock | None = None,
    cooldown: float = 5.0,
) -> Router:
    return Router(
        {g.name: g for g in groups},
        transport=transport or Transport(),
        retry=RetryPolicy(retries, initial=0.01, max_wait=0.05, max_retry_after=max_retry_after),
        timeout=timeout,
        cooldown=cooldown,
        clock=clock or Clock(),
    )
