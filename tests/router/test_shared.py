"""Router state shared through Redis: two routers (each with its own connection, as two processes would have) over
one throwaway Redis see the same circuits, the same quotas, each other's requests in flight and latencies.

The upstream calls are fakes that count what reaches each deployment (both routers' calls land in the same
counters, like one provider behind two gateway processes)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from uuid import uuid4

import pytest
import redis
from routerkit import dep, group, make_router

from modelway.errors import UpstreamServerError
from modelway.router import CircuitSettings, Deployment, DeploymentsBusyError, Quota, Router, RoutingPolicy
from modelway.router.shared import deployment_key
from modelway.router.shared_redis import RedisRouterState

Call = Callable[[Deployment, float | None], Awaitable[str]]
CIRCUIT = CircuitSettings(failures=2, error_rate=1.0, min_requests=100, cooldown=0.5, max_cooldown=5)


@dataclass
class Upstream:
    """What reached each deployment, from either router: calls, requests in flight now and at most."""

    calls: Counter[str] = field(default_factory=Counter)
    now: Counter[str] = field(default_factory=Counter)
    peak: Counter[str] = field(default_factory=Counter)
    failing: set[str] = field(default_factory=set)
    delay: float = 0.0

    async def __call__(self, d: Deployment, timeout: float | None) -> str:
        self.calls[d.model] += 1
        self.now[d.model] += 1
        self.peak[d.model] = max(self.peak[d.model], self.now[d.model])
        try:
            await asyncio.sleep(self.delay)
            if d.model in self.failing:
                raise UpstreamServerError("boom", status_code=500)
            return d.model
        finally:
            self.now[d.model] -= 1


Pair = Callable[..., tuple[Router, Router]]


@pytest.fixture
async def pair(redis_url: str) -> AsyncIterator[Pair]:
    """``pair(deployments, policy)``: two routers of one model over deployments of the same upstreams, sharing
    state under a prefix of this test's own."""
    prefix = f"mwtest:{uuid4().hex}:"
    states: list[RedisRouterState] = []

    def make(
        names: list[tuple[str, dict[str, object]]], policy: RoutingPolicy, **state_kw: float
    ) -> tuple[Router, Router]:
        routers = []
        for _ in range(2):
            state = RedisRouterState(redis_url, prefix=prefix, sync_interval=0.05, **state_kw)
            states.append(state)
            r = make_router([group("m", [dep(n, **kw) for n, kw in names], policy)])  # type: ignore[arg-type]
            r.shared = state
            state.bind(r)
            routers.append(r)
        return routers[0], routers[1]

    yield make
    for s in states:
        await s.aclose()
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


async def serve(router: Router, call: Call, tokens: int = 0) -> str:
    value, att = await router.route("m", None, lambda g: call, tokens=lambda: tokens)
    att.finish(None)
    return value


def state_of(router: Router, name: str) -> str:
    d = next(d for d in router.group("m").deployments if d.model == name)
    return str(d.circuit.state.value)


async def until(check: Callable[[], bool], seconds: float = 2.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    assert check()


async def test_one_router_opens_the_circuit_the_other_skips_it_and_one_probe_goes(pair: Pair) -> None:
    a, b = pair([("x", {"tier": 0}), ("y", {"tier": 1})], RoutingPolicy(strategy="priority", circuit=CIRCUIT))
    up = Upstream(failing={"x"})
    assert [await serve(a, up), await serve(a, up)] == ["y", "y"]  # x failed twice: its circuit opens for all
    assert up.calls["x"] == 2
    await until(lambda: state_of(a, "x") == "open")
    assert state_of(b, "x") == "closed" or state_of(b, "x") == "open"  # b has not asked yet, or synced already
    assert [await serve(b, up) for _ in range(5)] == ["y"] * 5
    assert up.calls["x"] == 2  # b never sent x a request
    await until(lambda: state_of(b, "x") == "open")

    await asyncio.sleep(CIRCUIT.cooldown + 0.05)  # the cooldown is over: one probe, across both routers
    up.failing.clear()
    up.delay = 0.2
    answers = await asyncio.gather(*(serve(r, up) for r in (a, b) for _ in range(10)))
    assert up.calls["x"] == 3 and Counter(answers) == {"x": 1, "y": 19}  # exactly one probe reached x
    await until(lambda: state_of(a, "x") == state_of(b, "x") == "closed")  # its success closed it for both
    up.delay = 0.0
    assert await serve(b, up) == "x"


async def test_a_failed_probe_reopens_it_for_both(pair: Pair) -> None:
    a, b = pair([("x", {"tier": 0}), ("y", {"tier": 1})], RoutingPolicy(strategy="priority", circuit=CIRCUIT))
    up = Upstream(failing={"x"})
    await serve(a, up)
    await serve(b, up)  # one failure each: two in a row across the routers open it
    await until(lambda: state_of(a, "x") == "open" and state_of(b, "x") == "open")
    await asyncio.sleep(CIRCUIT.cooldown + 0.05)
    assert await serve(b, up) == "y" and up.calls["x"] == 3  # b's probe failed
    a_view = next(d for d in a.group("m").deployments if d.model == "x").circuit
    await until(lambda: a_view.opened == 2)  # a's view, synced: opened again, with the cooldown doubled
    assert a_view.state.value == "open" and a_view.cooldown == CIRCUIT.cooldown * 2
    assert a_view.last_error == "UpstreamServerError"
    assert await serve(a, up) == "y" and up.calls["x"] == 3  # reopened for a too: no request


async def test_max_concurrent_holds_across_both_routers(pair: Pair) -> None:
    a, b = pair([("x", {"quota": Quota(max_concurrent=2)})], RoutingPolicy(queue_wait=10))
    up = Upstream(delay=0.02)
    answers = await asyncio.gather(*(serve(r, up) for r in (a, b) for _ in range(15)))
    assert answers == ["x"] * 30
    assert up.peak["x"] == 2  # never more than 2 in flight at the upstream, though each router alone allows 2
    state = a.shared
    assert isinstance(state, RedisRouterState)
    await until(lambda: not state._pending)  # the releases were sent
    await state.sync()
    snap = a.snapshot()[0]  # every slot came back, in Redis too
    assert snap["quota"]["max_concurrent"] == 2 and snap["quota"]["concurrent"] == 0 and snap["in_flight"] == 0


async def test_rpm_is_exact_across_both_routers(pair: Pair) -> None:
    a, b = pair([("x", {"quota": Quota(rpm=7)})], RoutingPolicy(queue_wait=0))
    up = Upstream()
    outcomes = await asyncio.gather(*(serve(r, up) for r in (a, b) for _ in range(10)), return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, DeploymentsBusyError)]
    assert outcomes.count("x") == 7 and up.calls["x"] == 7 and len(refused) == 13
    assert all(e.retry_after is not None and 55 <= e.retry_after <= 60 for e in refused)
    await a.shared.sync()  # type: ignore[union-attr]
    assert a.snapshot()[0]["quota"]["requests_last_minute"] == 7


async def test_tpm_counts_the_answers_usage_across_both_routers(pair: Pair) -> None:
    a, b = pair([("x", {"quota": Quota(tpm=100)})], RoutingPolicy(queue_wait=0))
    up = Upstream()
    value, att = await a.route("m", None, lambda g: up, tokens=lambda: 80)
    att.finish(10)  # estimated 80, used 10
    await until(lambda: not a.shared._pending)  # type: ignore[union-attr]
    assert await serve(b, up, tokens=80) == "x"  # 10 + 80 fit
    with pytest.raises(DeploymentsBusyError):
        await serve(a, up, tokens=20)  # 90 + 20 do not


async def test_requests_in_flight_and_latency_are_seen_by_the_other(pair: Pair) -> None:
    a, b = pair([("x", {}), ("y", {})], RoutingPolicy(strategy="least_busy"))
    gate = asyncio.Event()

    async def held(d: Deployment, timeout: float | None) -> str:
        await gate.wait()
        return d.model

    held_calls = [asyncio.create_task(serve(a, held)) for _ in range(4)]
    await until(lambda: sum(d.stats.local_in_flight for d in a.group("m").deployments) == 4)
    await until(lambda: sum(d.stats.in_flight for d in b.group("m").deployments) == 4)
    busy = {d.model: d.stats.in_flight for d in b.group("m").deployments}
    # the view tells the others' from its own
    assert [tuple(sum(d[k] for d in r.snapshot()) for k in ("in_flight", "in_flight_here")) for r in (a, b)] == [
        (4, 4),
        (4, 0),
    ]
    gate.set()
    await asyncio.gather(*held_calls)
    assert sum(busy.values()) == 4  # b sees a's requests in flight, per deployment

    up = Upstream(delay=0.05)
    await serve(a, up)
    answered = next(d for d in a.group("m").deployments if d.stats.total is not None)
    seen = next(d for d in b.group("m").deployments if d.model == answered.model)
    # b merged a's latest latency average (the only process that measured it)
    await until(lambda: answered.stats.total is not None and seen.stats.total == answered.stats.total)
    assert seen.stats.total is not None and seen.stats.total >= 0.05


async def test_a_dead_process_slots_expire(pair: Pair) -> None:
    a, b = pair([("x", {"quota": Quota(max_concurrent=1)})], RoutingPolicy(queue_wait=0), lease=0.3)
    gate = asyncio.Event()

    async def held(d: Deployment, timeout: float | None) -> str:
        await gate.wait()
        return d.model

    task = asyncio.create_task(serve(a, held))
    await until(lambda: a.group("m").deployments[0].stats.local_in_flight == 1)
    with pytest.raises(DeploymentsBusyError):
        await serve(b, Upstream())
    await asyncio.sleep(0.4)
    with pytest.raises(DeploymentsBusyError):  # a is alive: its sync extends the lease
        await serve(b, Upstream())
    # a "dies": its lease is no longer extended (not a close, which would give it back at once: test_shared_close)
    sync = a.shared._sync  # type: ignore[union-attr]
    assert sync is not None
    sync.cancel()
    await asyncio.sleep(0.4)
    assert await serve(b, Upstream()) == "x"
    gate.set()
    await task


def test_a_deployment_key_is_its_address_and_a_stable_id_of_its_upstream() -> None:
    k1, k2 = deployment_key(dep("gpt-4o")), deployment_key(dep("gpt-4o"))
    assert k1 == k2 and k1.startswith("openai/gpt-4o#") and len(k1.split("#")[1]) == 12
    other_key = dep("gpt-4o")
    other_key.adapter.api_key = "another"
    assert deployment_key(other_key) != k1  # another account: another deployment
    assert "{" not in deployment_key(dep("a{b}"))  # never a hash tag of its own
