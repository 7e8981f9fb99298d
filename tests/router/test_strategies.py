"""Selection strategies: the distribution of the weighted one, and the preferences of the others, over many
requests through the router's failover loop (fake calls, a clock the calls move: no I/O, no timing)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

import pytest
from routerkit import Clock, dep, group, make_router

from modelway.config import Price
from modelway.errors import UpstreamServerError
from modelway.router import CircuitSettings, Deployment, ModelGroup, Router, RoutingPolicy
from modelway.router.strategies import STRATEGIES, Outcome, make_strategy, register_strategy, weighted_shuffle

Call = Callable[[Deployment, float | None], Awaitable[str]]


async def serve(router: Router, model: str = "m", call: Call | None = None) -> str:
    """One request through the failover loop; the answer is the name of the deployment that gave it."""

    async def answer(d: Deployment, timeout: float | None) -> str:
        return d.model

    value, att = await router.route(model, None, lambda g: call or answer)
    att.finish()
    return value


def test_weighted_order_follows_the_weights() -> None:
    rng = random.Random(7)
    a, b, c = dep("a", weight=6), dep("b", weight=3), dep("c", weight=1)
    n = 20_000
    first = Counter(weighted_shuffle([a, b, c], rng)[0].model for _ in range(n))
    for name, share in (("a", 0.6), ("b", 0.3), ("c", 0.1)):
        assert abs(first[name] / n - share) < 0.02, first


async def test_weighted_routing_spreads_requests_by_weight() -> None:
    router = make_router([group("m", [dep("a", weight=3), dep("b", weight=1)], seed=3)])
    n = 4000
    got = Counter([await serve(router) for _ in range(n)])
    assert abs(got["a"] / n - 0.75) < 0.03, got


async def test_least_busy_prefers_the_idle_deployment() -> None:
    a, b = dep("a"), dep("b")
    router = make_router([group("m", [a, b], RoutingPolicy(strategy="least_busy"))])
    gate = asyncio.Event()

    async def held(d: Deployment, timeout: float | None) -> str:
        await gate.wait()
        return d.model

    busy = [asyncio.create_task(serve(router, call=held)) for _ in range(6)]
    await asyncio.sleep(0)
    assert (a.stats.in_flight, b.stats.in_flight) == (3, 3)  # spread evenly while they pile up
    gate.set()
    await asyncio.gather(*busy)
    gate.clear()
    a_busy = [asyncio.create_task(serve(router, call=held)) for _ in range(1)]
    await asyncio.sleep(0)
    assert sum(d.stats.in_flight for d in (a, b)) == 1
    idle = "b" if a.stats.in_flight else "a"
    got = Counter([await serve(router) for _ in range(200)])
    assert got == {idle: 200}
    gate.set()
    await asyncio.gather(*a_busy)


async def test_latency_prefers_the_fast_deployment() -> None:
    clock = Clock()
    fast, slow = dep("fast"), dep("slow")
    latency = {"fast": 0.05, "slow": 0.5}
    router = make_router([group("m", [slow, fast], RoutingPolicy(strategy="latency"), seed=5)], clock=clock)

    async def timed(d: Deployment, timeout: float | None) -> str:
        clock.advance(latency[d.model])
        return d.model

    got = Counter([await serve(router, call=timed) for _ in range(1000)])
    assert got["slow"] >= 1  # measured (and measured again now and then)
    assert got["fast"] / 1000 > 0.9, got
    assert fast.stats.total == pytest.approx(0.05, abs=0.01) and slow.stats.total == pytest.approx(0.5, abs=0.01)


def test_latency_tries_unmeasured_deployments_first() -> None:
    measured, new = dep("measured"), dep("new")
    measured.stats.observe_total(0.01)
    strategy = make_strategy(RoutingPolicy(strategy="latency"), random.Random(1))
    firsts = Counter(strategy.order([measured, new], stream=False)[0].model for _ in range(1000))
    assert firsts["new"] > 900
    new.stats.observe_ttft(0.2)  # streams are ranked by time to first output, and "new" has one now
    measured.stats.observe_ttft(0.1)
    firsts = Counter(strategy.order([measured, new], stream=True)[0].model for _ in range(1000))
    assert firsts["measured"] > 900


async def test_cost_prefers_the_cheap_deployment_and_puts_unpriced_ones_last() -> None:
    dear = dep("dear", price=Price(10.0, 30.0))
    cheap = dep("cheap", price=Price(1.0, 2.0))
    unknown = dep("unknown")
    policy = RoutingPolicy(strategy="cost")
    router = make_router([group("m", [unknown, dear, cheap], policy)])
    got = Counter([await serve(router) for _ in range(300)])
    assert got == {"cheap": 300}
    order = make_strategy(policy, random.Random(2)).order([unknown, dear, cheap], stream=False)
    assert [d.model for d in order] == ["cheap", "dear", "unknown"]


def test_cost_weighs_prompt_and_completion_prices_for_the_typical_request() -> None:
    long_prompt = RoutingPolicy(strategy="cost", typical_prompt_tokens=10_000, typical_completion_tokens=10)
    long_answer = RoutingPolicy(strategy="cost", typical_prompt_tokens=10, typical_completion_tokens=10_000)
    cheap_in = dep("cheap_in", price=Price(1.0, 50.0))
    cheap_out = dep("cheap_out", price=Price(5.0, 5.0))
    rng = random.Random(0)
    assert make_strategy(long_prompt, rng).order([cheap_out, cheap_in], stream=False)[0] is cheap_in
    assert make_strategy(long_answer, rng).order([cheap_in, cheap_out], stream=False)[0] is cheap_out


async def test_priority_uses_a_lower_tier_only_when_every_higher_one_is_unavailable() -> None:
    clock = Clock()
    a, b = dep("a", tier=0, weight=1), dep("b", tier=0, weight=1)
    backup = dep("backup", tier=1, weight=100)
    policy = RoutingPolicy(strategy="priority", circuit=CircuitSettings(failures=1, cooldown=30))
    router = make_router([group("m", [backup, a, b], policy, seed=4)], clock=clock)
    got = Counter([await serve(router) for _ in range(400)])
    assert got["backup"] == 0 and abs(got["a"] - got["b"]) < 80, got  # weighted within the tier

    async def a_fails(d: Deployment, timeout: float | None) -> str:
        if d is a:
            raise UpstreamServerError("down", status_code=503)
        return d.model

    policy_run = [await serve(router, call=a_fails) for _ in range(50)]
    assert set(policy_run) == {"b"}  # a's circuit opened at its first failure: b takes everything
    b.disabled = True  # b taken out of rotation by an operator: only now is tier 1 used
    assert {await serve(router) for _ in range(20)} == {"backup"}
    b.disabled = False
    assert {await serve(router) for _ in range(20)} == {"b"}


def test_strategies_are_registered_by_name_and_unknown_names_fail() -> None:
    assert set(STRATEGIES) >= {"weighted", "least_busy", "latency", "cost", "priority"}
    with pytest.raises(ValueError, match="unknown routing strategy 'fastest'"):
        ModelGroup("m", [dep("a")], policy=RoutingPolicy(strategy="fastest"))

    class Reverse:
        def __init__(self, policy: RoutingPolicy, rng: random.Random) -> None:
            self.seen: list[bool] = []

        def order(self, deps: Sequence[Deployment], *, stream: bool) -> list[Deployment]:
            return sorted(deps, key=lambda d: d.model, reverse=True)

        def observe(self, d: Deployment, outcome: Outcome) -> None:
            self.seen.append(True)

    register_strategy("reverse", Reverse)
    try:
        g = ModelGroup("m", [dep("a"), dep("b")], policy=RoutingPolicy(strategy="reverse"))
        assert [d.model for d in g.order()] == ["b", "a"]
    finally:
        del STRATEGIES["reverse"]
