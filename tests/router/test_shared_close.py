"""A process that stops gracefully leaves nothing in the shared router state for the others to wait out: closing
:class:`RedisRouterState` sends what was queued (a release fired just before), gives back the places in flight of
requests still running and the circuit's probe pass they hold, and sends nothing after (no new connection).

A process that dies holds its places until their lease expires (``test_shared.py``); these tests are about the
other way out, a rolling restart's. Each runs two routers over one throwaway Redis, as two processes would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from uuid import uuid4

import pytest
import redis
from routerkit import dep, group, make_router

from modelway.errors import UpstreamServerError
from modelway.router import CircuitSettings, Deployment, Quota, Router, RoutingPolicy
from modelway.router.shared import deployment_key
from modelway.router.shared_redis import RedisRouterState

CIRCUIT = CircuitSettings(failures=1, error_rate=1.0, min_requests=100, cooldown=0.2, max_cooldown=5)


Make = Callable[[list[Deployment], RoutingPolicy], tuple[Router, RedisRouterState]]


@pytest.fixture
async def routers(redis_url: str) -> AsyncIterator[Make]:
    """``make(deployments, policy)``: a router of model ``m`` with shared state under this test's own prefix
    (a lease long enough that nothing expires during a test: what is gone was given back)."""
    prefix = f"mwtest:{uuid4().hex}:"
    states: list[RedisRouterState] = []

    def make(deps: list[Deployment], policy: RoutingPolicy) -> tuple[Router, RedisRouterState]:
        state = RedisRouterState(redis_url, prefix=prefix, sync_interval=0.05, lease=60.0)
        states.append(state)
        router = make_router([group("m", deps, policy)])
        router.shared = state
        state.bind(router)
        return router, state

    yield make
    for s in states:
        await s.aclose()
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


def leases(url: str, state: RedisRouterState, d: Deployment) -> int:
    """The places in flight Redis holds for ``d``, of every process."""
    with redis.Redis.from_url(url) as client:
        return int(client.zcard(f"{state.prefix}{{{deployment_key(d)}}}:i"))


def connections(url: str) -> int:
    with redis.Redis.from_url(url) as client:
        return len(client.client_list())


async def until(check: Callable[[], bool], seconds: float = 2.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    assert check()


class Held:
    """An upstream call that waits for ``gate`` (then fails if ``fail``)."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.fail = False

    async def __call__(self, d: Deployment, timeout: float | None) -> str:
        await self.gate.wait()
        if self.fail:
            raise UpstreamServerError("boom", status_code=500)
        return d.model


async def serve(router: Router, call: Callable[[Deployment, float | None], object]) -> str:
    value, att = await router.route("m", None, lambda g: call)  # type: ignore[arg-type,return-value]
    att.finish(None)
    return str(value)


async def test_closing_gives_back_the_places_of_requests_still_in_flight(redis_url: str, routers: Make) -> None:
    # x: nothing to check (the place is tracked without waiting); y: a quota (admitted by a script)
    x, y = dep("x"), dep("y", quota=Quota(max_concurrent=10))
    a, state = routers([x, y], RoutingPolicy(strategy="least_busy"))
    b, _ = routers([dep("x"), dep("y", quota=Quota(max_concurrent=10))], RoutingPolicy(strategy="least_busy"))
    held = Held()
    calls = [asyncio.create_task(serve(a, held)) for _ in range(4)]
    await until(lambda: leases(redis_url, state, x) + leases(redis_url, state, y) == 4)
    assert leases(redis_url, state, x) and leases(redis_url, state, y)  # (least busy: both have some)
    await until(lambda: sum(d.stats.in_flight for d in b.group("m").deployments) == 4)  # b sees a's four

    before = connections(redis_url)
    await state.aclose()  # a stops with its requests still running (a shutdown deadline, a router closed early)
    assert (leases(redis_url, state, x), leases(redis_url, state, y)) == (0, 0)  # at once, not after the lease
    await until(lambda: sum(d.stats.in_flight for d in b.group("m").deployments) == 0)

    held.gate.set()  # the requests end after the close: nothing more is sent, no connection is opened again
    assert sorted(set(await asyncio.gather(*calls))) == ["x", "y"]
    await asyncio.sleep(0.1)
    assert connections(redis_url) == before - 1  # a's connection closed, none opened since
    assert not state.needs_admission(y, None) and state.started(x) is None  # a's router routes on its own view


async def test_a_release_fired_just_before_closing_is_sent(redis_url: str, routers: Make) -> None:
    x = dep("x")
    a, state = routers([x], RoutingPolicy())
    held = Held()
    call = asyncio.create_task(serve(a, held))
    await until(lambda: leases(redis_url, state, x) == 1)
    held.gate.set()
    await call  # its release was fired (not sent yet) ...
    await state.aclose()  # ... and the close, in the same step, sends it
    assert leases(redis_url, state, x) == 0


async def test_closing_during_a_probe_lets_another_process_probe_at_once(redis_url: str, routers: Make) -> None:
    policy = RoutingPolicy(circuit=CIRCUIT, timeout=30.0)
    x = dep("x")
    a, state = routers([x], policy)
    b, _ = routers([dep("x")], policy)
    failing = Held()
    failing.fail = True
    failing.gate.set()
    with pytest.raises(UpstreamServerError):
        await serve(a, failing)  # one failure opens x's circuit, for both
    await asyncio.sleep(CIRCUIT.cooldown + 0.05)
    probe = Held()
    call = asyncio.create_task(serve(a, probe))  # a's request is the half-open probe (its pass: the 30 s budget)
    await until(lambda: leases(redis_url, state, x) == 1)
    bx = b.group("m").deployments[0]
    await until(lambda: bx.circuit.state.value == "half_open")
    await state.aclose()  # a stops during its probe: the pass is given back with the place
    await until(lambda: bx.circuit.available(b.clock()))  # (b's view, synced: not in 35 s, when a's pass expires)
    answering = Held()
    answering.gate.set()
    assert await serve(b, answering) == "x"  # b probes, and its answer closes the circuit
    await until(lambda: bx.circuit.state.value == "closed")
    probe.gate.set()
    await call
