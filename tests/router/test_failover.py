"""The failover loop with fake calls (no I/O): which deployment each attempt goes to, what is retried, Retry-After,
the time budget, and the trace."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from routerkit import Clock, Trace, dep, group, make_router

from modelway.errors import (
    AllDeploymentsFailedError,
    BadRequestError,
    ModelwayError,
    NotFoundError,
    ProviderTimeoutError,
    RateLimitError,
    RoutingError,
    UpstreamServerError,
)
from modelway.router import CircuitSettings, Deployment, DeploymentsBusyError, Router, RoutingPolicy
from modelway.router import Trace as RouterTrace

Call = Callable[[Deployment, float | None], Awaitable[str]]


class Upstreams:
    """Fake calls: each deployment's scripted failures (by name), then answers; every attempt logged."""

    def __init__(self, **script: list[ModelwayError]) -> None:
        self.script = {k: list(v) for k, v in script.items()}
        self.log: list[str] = []
        self.always: dict[str, ModelwayError] = {}

    async def __call__(self, d: Deployment, timeout: float | None) -> str:
        self.log.append(d.model)
        await asyncio.sleep(0)
        if d.model in self.always:
            raise self.always[d.model]
        pending = self.script.get(d.model)
        if pending:
            raise pending.pop(0)
        return d.model


async def serve(router: Router, call: Call, model: str = "m", trace: RouterTrace | None = None) -> str:
    value, att = await router.route(model, trace, lambda g: call)
    att.finish()
    return value


def boom() -> UpstreamServerError:
    return UpstreamServerError("boom", status_code=500)


SPREAD = RoutingPolicy(max_attempts=3, circuit=CircuitSettings(failures=100))


async def test_each_attempt_goes_to_another_deployment_while_there_is_one() -> None:
    ups = Upstreams()
    ups.always = {"a": boom(), "b": boom(), "c": boom()}
    router = make_router([group("m", [dep("a"), dep("b"), dep("c")], SPREAD)])
    trace = Trace()
    with pytest.raises(AllDeploymentsFailedError) as e:
        await serve(router, ups, trace=trace)
    assert sorted(ups.log) == ["a", "b", "c"] and len(e.value.attempts) == 3 and trace.attempts == 3


async def test_rounds_go_on_until_max_attempts_with_backoff() -> None:
    ups = Upstreams(a=[boom(), boom()], b=[boom(), boom()])
    policy = RoutingPolicy(max_attempts=5, circuit=CircuitSettings(failures=100))
    router = make_router([group("m", [dep("a"), dep("b")], policy)])
    trace = Trace()
    assert await serve(router, ups, trace=trace) in ("a", "b")
    assert len(ups.log) == 5 and trace.attempts == 5
    assert sorted(ups.log[:2]) == ["a", "b"] and sorted(ups.log[2:4]) == ["a", "b"]  # a round, then another


async def test_a_failing_deployment_is_skipped_and_the_answer_still_arrives() -> None:
    ups = Upstreams()
    ups.always = {"a": boom()}
    router = make_router([group("m", [dep("a", weight=1000), dep("b", weight=0.001)], SPREAD)])
    trace = Trace()
    assert await serve(router, ups, trace=trace) == "b"
    assert trace.deployment is not None and trace.deployment.model == "b" and trace.attempts == 2


async def test_the_default_policy_retries_in_place_then_fails_over() -> None:
    ups = Upstreams(a=[boom(), boom()])
    a, b = dep("a", weight=1000), dep("b", weight=0.001)
    router = make_router([group("m", [a, b])], retries=1)
    assert await serve(router, ups) == "b"
    assert ups.log == ["a", "a", "b"]
    assert a.cooling(time.monotonic())  # the router's fixed cooldown, as before circuit breakers


@pytest.mark.parametrize("policy", [RoutingPolicy(), SPREAD], ids=["default", "spread"])
async def test_a_bad_request_is_raised_at_once(policy: RoutingPolicy) -> None:
    ups = Upstreams(a=[BadRequestError("no", status_code=400)])
    a, b = dep("a", weight=1000), dep("b", weight=0.001)
    router = make_router([group("m", [a, b], policy)], retries=2)
    with pytest.raises(BadRequestError):
        await serve(router, ups)
    assert ups.log == ["a"]
    assert a.stats.failures == 0 and a.circuit.consecutive == 0 and not a.cooling(time.monotonic())
    assert a.stats.in_flight == 0


async def test_a_deployment_that_cannot_mend_is_not_tried_again_in_the_call() -> None:
    ups = Upstreams()
    ups.always = {"a": NotFoundError("no such model", status_code=404), "b": boom()}
    router = make_router([group("m", [dep("a"), dep("b")], RoutingPolicy(max_attempts=6))])
    with pytest.raises(AllDeploymentsFailedError):
        await serve(router, ups)
    assert ups.log.count("a") == 1 and ups.log.count("b") == 5


async def test_a_deployment_that_asked_to_wait_is_skipped_until_then() -> None:
    clock = Clock()
    ups = Upstreams(a=[RateLimitError("slow down", status_code=429, retry_after=30)])
    a, b = dep("a", weight=1000), dep("b", weight=0.001)
    router = make_router([group("m", [a, b], SPREAD)], clock=clock)
    assert await serve(router, ups) == "b"
    assert [await serve(router, ups) for _ in range(5)] == ["b"] * 5
    assert a.circuit.consecutive == 0  # a 429 that says when is not an outage
    clock.advance(30)
    assert await serve(router, ups) == "a"


async def test_a_short_retry_after_is_waited_for_when_every_deployment_asked() -> None:
    ups = Upstreams(a=[RateLimitError("slow down", status_code=429, retry_after=0.2)])
    router = make_router([group("m", [dep("a")], SPREAD)], max_retry_after=1.0)
    t0 = time.monotonic()
    assert await serve(router, ups) == "a"
    assert ups.log == ["a", "a"] and time.monotonic() - t0 >= 0.19


async def test_a_long_retry_after_is_the_callers_429() -> None:
    ups = Upstreams(a=[RateLimitError("slow down", status_code=429, retry_after=30)])
    router = make_router([group("m", [dep("a")], SPREAD)], max_retry_after=1.0)
    with pytest.raises(RateLimitError) as e:
        await serve(router, ups)
    assert e.value.retry_after == 30 and ups.log == ["a"]
    with pytest.raises(DeploymentsBusyError) as busy:  # the next call is not sent at all
        await serve(router, ups)
    assert busy.value.retry_after is not None and 29 < busy.value.retry_after <= 30 and ups.log == ["a"]


async def test_the_time_budget_bounds_every_attempt_and_wait() -> None:
    async def slow(d: Deployment, timeout: float | None) -> str:
        assert timeout is not None and timeout <= 0.3
        await asyncio.sleep(timeout)
        raise ProviderTimeoutError(f"nothing within {timeout}s")

    a, b = dep("a", timeout=10), dep("b", timeout=10)
    policy = RoutingPolicy(max_attempts=10, timeout=0.3, circuit=CircuitSettings(failures=1))
    router = make_router([group("m", [a, b], policy)])
    t0 = time.monotonic()
    with pytest.raises(ProviderTimeoutError):
        await serve(router, slow)
    assert time.monotonic() - t0 < 0.45
    # the budget ran out, not the deployment's patience: its circuit does not count it
    assert a.circuit.consecutive == 0 and b.circuit.consecutive == 0


async def test_open_circuits_everywhere_is_a_routing_error() -> None:
    ups = Upstreams()
    ups.always = {"a": boom()}
    router = make_router([group("m", [dep("a")], RoutingPolicy(circuit=CircuitSettings(failures=1)))])
    with pytest.raises(UpstreamServerError):
        await serve(router, ups)
    with pytest.raises(RoutingError, match="circuits open"):
        await serve(router, ups)
    assert ups.log == ["a"]


async def test_a_disabled_deployment_is_never_tried() -> None:
    ups = Upstreams()
    a, b = dep("a", weight=1000, disabled=True), dep("b", weight=0.001)
    router = make_router([group("m", [a, b], SPREAD)])
    assert {await serve(router, ups) for _ in range(20)} == {"b"}
    assert "a" not in ups.log


async def test_the_snapshot_shows_each_deployment() -> None:
    ups = Upstreams(a=[boom()])
    a, b = dep("a", weight=1000), dep("b", weight=0.001)
    router = make_router([group("m", [a, b], RoutingPolicy(circuit=CircuitSettings(failures=1)))])
    await serve(router, ups)
    snap = {s["upstream_model"]: s for s in router.snapshot()}
    assert snap["a"]["circuit"]["state"] == "open" and snap["a"]["recent_errors"] == 1
    assert snap["b"]["circuit"]["state"] == "closed" and snap["b"]["ewma_total"] is not None
    assert snap["b"]["in_flight"] == 0 and snap["a"]["quota"] is None


async def test_a_trace_without_the_optional_attributes_gets_only_the_deployment() -> None:
    class Slotted:
        __slots__ = ("deployment",)

        def __init__(self) -> None:
            self.deployment: Deployment | None = None

    ups = Upstreams(a=[boom()])
    router = make_router([group("m", [dep("a", weight=1000), dep("b", weight=0.001)], SPREAD)])
    trace = Slotted()
    assert await serve(router, ups, trace=trace) == "b"
    assert trace.deployment is not None and trace.deployment.model == "b"
