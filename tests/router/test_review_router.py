"""Review of the router (issue 11): defects found, each shown by a test that failed before its fix (they were kept
as strict xfails until the fixes; each now guards against the defect coming back).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from routerkit import Clock, Trace, chat, dep, group, make_router, sim_dep

from modelway.config import parse_config
from modelway.errors import (
    ConfigError,
    ModelwayError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    UpstreamServerError,
)
from modelway.router import (
    CircuitSettings,
    CircuitState,
    Deployment,
    HedgeSettings,
    Outcome,
    Quota,
    Router,
    RoutingPolicy,
)
from modelway.router.strategies import LatencyStrategy, WeightedStrategy
from modelway.testing import Fault, OpenAISimulator, Reply
from modelway.transport import Transport

Call = Callable[[Deployment, float | None], Awaitable[str]]


async def serve(
    router: Router, call: Call, model: str = "m", trace: Trace | None = None, *, tokens: int = 0, stream: bool = False
) -> str:
    value, att = await router.route(model, trace, lambda g: call, tokens=lambda: tokens, stream=stream)
    att.finish()
    return value


def boom() -> UpstreamServerError:
    return UpstreamServerError("boom", status_code=500)


# -- 1. the model's time budget outlives the commit point of a stream ---------------------------------------------


async def test_a_streams_time_budget_ends_at_its_first_output() -> None:
    """``RoutingPolicy.timeout`` is documented as "streams: until their first output", but the budgeted attempt
    timeout is handed to ``calls.open_stream``, which passes it to ``stream_once``/``Transport.stream`` as the idle
    gap of the whole stream. A healthy stream (deployment timeout 10 s) that pauses longer than what was left of
    the model's budget when its attempt began is cut after the commit point, and the deployment is blamed for it
    (failure counted, cooled down)."""
    with OpenAISimulator() as sim:
        transport = Transport()
        try:
            a = sim_dep(sim, "a", timeout=10)
            router = make_router([group("m", [a], RoutingPolicy(timeout=0.5))], transport, timeout=10)
            # role chunk and the first text chunk (the commit point) at once, then 0.8 s of silence, then the rest
            sim.push(Fault.stall(after_chunks=2, seconds=0.8, reply=Reply(text="abcdefgh", chunk_size=4)))
            text: list[str] = []
            error: BaseException | None = None
            try:
                async for batch in router.stream("m", chat(stream=True)):
                    text += [c.choices[0].delta.content or "" for c in batch if c.choices]
            except ProviderError as exc:
                error = exc
            assert error is None, f"the stream was cut after its first output: {error!r}"
            assert "".join(text) == "abcdefgh"
            assert a.stats.failures == 0
        finally:
            await transport.aclose()


# -- 2. hedging on "p95" reads the streams' time to first output for every kind of request -----------------------


def _sleeper(seconds: dict[str, float]) -> Call:
    async def call(d: Deployment, timeout: float | None) -> str:
        await asyncio.sleep(seconds[d.model])
        return d.model

    return call


async def test_p95_hedging_of_whole_answers_does_not_use_stream_first_output_times() -> None:
    """``hedge_delay`` reads ``stats.percentile`` of ``ttft_samples``, which only streams fill. A deployment that
    serves streams (first output in ~10 ms) and whole answers (~150 ms) hedges EVERY whole answer after ~10 ms:
    each non-stream call costs two upstream requests."""
    a, b = dep("a", tier=0), dep("b", tier=1)
    policy = RoutingPolicy(strategy="priority", hedge=HedgeSettings(after="p95", min_samples=5))
    router = make_router([group("m", [a, b], policy)])
    for _ in range(20):  # streams seen before: fast first output
        a.stats.observe_ttft(0.01)
    trace = Trace()
    assert await serve(router, _sleeper({"a": 0.15, "b": 0.15}), trace=trace) in ("a", "b")
    assert trace.attempts == 1, "a whole answer of ordinary length was hedged on the streams' first-output p95"


async def test_p95_hedging_learns_from_whole_answers() -> None:
    """Without streams, ``ttft_samples`` stays empty: ``after: p95`` never hedges non-stream requests (unless a
    fixed ``default`` is set, which is then used forever)."""
    a, b = dep("a", tier=0), dep("b", tier=1)
    policy = RoutingPolicy(strategy="priority", hedge=HedgeSettings(after="p95", min_samples=5))
    router = make_router([group("m", [a, b], policy)])
    times = {"a": 0.01, "b": 0.01}
    for _ in range(10):
        await serve(router, _sleeper(times))
    times["a"] = 2.0  # a is slow now: 200x its p95
    trace = Trace()
    t0 = time.monotonic()
    assert await serve(router, _sleeper(times), trace=trace) == "b"
    assert time.monotonic() - t0 < 1.0 and trace.attempts == 2


# -- 3. an exception in a strategy leaks the attempt's place in flight and quota slot -----------------------------


class Exploding(WeightedStrategy):
    def observe(self, dep: Deployment, outcome: Outcome) -> None:
        raise RuntimeError("a bug in a strategy of one's own")


@pytest.mark.parametrize("ok", [True, False], ids=["success", "failure"])
async def test_a_strategy_that_raises_does_not_leak_the_slot(ok: bool) -> None:
    """``Attempt.succeeded``/``failed`` call ``strategy.observe`` (a public seam: ``register_strategy``) and
    ``on_failure`` before ``finish()``, and ``Failover.attempt`` calls ``succeeded()`` after its try block, so an
    exception there loses the attempt: ``stats.in_flight`` and the quota slot are never given back (a stream's
    opened upstream is never closed either). With ``max_concurrent: 1`` the deployment is then at its quota
    forever: every later call gets 429."""
    a = dep("a", quota=Quota(max_concurrent=1))
    g = group("m", [a], RoutingPolicy(queue_wait=0.2))
    g.set_strategy(Exploding(g.policy, random.Random(1)))
    router = make_router([g])

    async def call(d: Deployment, timeout: float | None) -> str:
        if not ok:
            raise boom()
        return d.model

    with pytest.raises(Exception):  # noqa: B017 - whatever it raises, it must not keep the slot
        await serve(router, call)
    assert a.stats.in_flight == 0 and a.usage.concurrent == 0


# -- 4. a wait the remaining time budget cannot cover is slept anyway ----------------------------------------------


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param(RoutingPolicy(timeout=0.3), id="default-retry-in-place"),
        pytest.param(RoutingPolicy(timeout=0.3, max_attempts=3), id="max_attempts-round-backoff"),
    ],
)
async def test_a_retry_after_longer_than_the_budget_left_is_not_slept(policy: RoutingPolicy) -> None:
    """``_wait_for_any`` gives up at once when a ``Retry-After`` exceeds the time left, but the default policy's
    retry in place (``_again``) and the backoff between rounds sleep up to the deadline and then send one more
    upstream request with a 1 ms timeout: the call takes the whole budget, the provider gets a doomed request, and
    the caller gets a timeout instead of the 429 with its Retry-After."""
    seen: list[float | None] = []

    async def limited(d: Deployment, timeout: float | None) -> str:
        seen.append(timeout)
        if len(seen) == 1:
            raise RateLimitError("slow down", status_code=429, retry_after=0.9)
        if timeout is not None and timeout < 0.01:  # what a real upstream does with a 1 ms timeout
            raise ProviderTimeoutError(f"nothing within {timeout}s")
        return d.model

    router = make_router([group("m", [dep("a")], policy)], retries=2, max_retry_after=1.0)
    t0 = time.monotonic()
    with pytest.raises(ModelwayError) as e:
        await serve(router, limited)
    assert len(seen) == 1, f"a doomed attempt was sent after {time.monotonic() - t0:.2f}s with timeouts {seen}"
    assert time.monotonic() - t0 < 0.15
    assert isinstance(e.value, RateLimitError) and e.value.retry_after == 0.9


# -- 5. failed attempts keep their token estimate in the TPM window --------------------------------------------------


async def test_a_failed_attempt_does_not_hold_tokens_per_minute() -> None:
    """A slot's tokens are the admission estimate until ``settle``; a failed (or cancelled, or hedged-away) attempt
    is released without settling, so its estimate (prompt + max_tokens) stays in the deployment's TPM window for a
    minute although the provider refused it and billed nothing. A few fast 500s fill the TPM quota with phantom
    tokens and the recovered deployment answers 429 for up to a minute."""
    a = dep("a", quota=Quota(tpm=1000))
    router = make_router([group("m", [a], RoutingPolicy(queue_wait=0.1))])
    calls = 0

    async def flaky(d: Deployment, timeout: float | None) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise boom()
        return d.model

    with pytest.raises(UpstreamServerError):
        await serve(router, flaky, tokens=600)
    assert await serve(router, flaky, tokens=600) == "a"  # DeploymentsBusyError: 600 phantom + 600 > 1000


# -- 6. the default policy is not exactly the old behaviour -----------------------------------------------------------


async def test_the_default_policy_does_not_cool_a_deployment_whose_retry_in_place_succeeded() -> None:
    """Before the router (7ca9ba5), ``calls.complete`` retried a deployment in place and the router cooled it down
    only when every retry failed. Now ``Attempt.failed`` cools it down (and tells ``on_failure``: metrics) after
    each failed attempt, so one transient 500 mended by the retry in place still sends the deployment to the back
    of the order for ``server.cooldown`` seconds: traffic moves to the other deployments (weight ignored)."""
    failures: list[str] = []
    a, b = dep("a", weight=1000), dep("b", weight=0.001)
    router = make_router([group("m", [a, b])], retries=1)
    router.on_failure = lambda d, exc: failures.append(d.model)
    calls = 0

    async def once(d: Deployment, timeout: float | None) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise boom()
        return d.model

    assert await serve(router, once) == "a"  # mended in place
    assert not a.cooling(time.monotonic()) and failures == []
    assert await serve(router, once) == "a"


def state(d: Deployment) -> CircuitState:
    return d.circuit.state


# -- 7. a probe ended under another policy leaves the circuit half-open forever ----------------------------------


async def test_a_probe_ending_after_a_policy_change_does_not_stick_half_open() -> None:
    """``Attempt.succeeded``/``failed`` read ``group.policy.circuit`` when the attempt ENDS. If the model's policy
    is replaced while a probe runs (the run-time deployments API does ``g.policy = policy``) with one without
    circuit breakers, the probe's verdict is never given: the circuit stays HALF_OPEN. When circuits are turned on
    again, ``available()`` is False for good: the deployment is never tried again, no probe ever comes."""
    a, b = dep("a", weight=1000), dep("b", weight=0.001)
    with_circuit = RoutingPolicy(circuit=CircuitSettings(failures=1, cooldown=0.05))
    g = group("m", [a, b], with_circuit)
    clock = Clock()
    router = make_router([g], clock=clock)
    a.circuit.failure(clock(), with_circuit.circuit, boom(), probe=False)  # type: ignore[arg-type]
    assert state(a) is CircuitState.OPEN
    clock.advance(1)
    gate = asyncio.Event()

    async def held(d: Deployment, timeout: float | None) -> str:
        if d.model == "a":
            await gate.wait()
        return d.model

    probe = asyncio.create_task(serve(router, held))
    await asyncio.sleep(0.02)
    assert state(a) is CircuitState.HALF_OPEN
    g.policy = RoutingPolicy()  # an operator edits the model's routing while the probe runs
    gate.set()
    assert await probe == "a"
    g.policy = with_circuit  # ... and turns circuits back on
    assert state(a) is not CircuitState.HALF_OPEN
    assert {await serve(router, held) for _ in range(5)} == {"a"}


# -- 8. config: fallbacks named provider/model are not checked --------------------------------------------------------


@pytest.mark.parametrize(
    ("fallback", "server"),
    [
        pytest.param("openai/gpt-4o", {"allow_direct": False}, id="direct-calls-off"),
        pytest.param("opneai/gpt-4o", {}, id="unknown-provider"),
    ],
)
def test_a_fallback_that_can_never_be_served_is_a_config_error(fallback: str, server: dict[str, Any]) -> None:
    """``parse_config`` accepts any fallback name with a ``/`` in it. With ``server.allow_direct: false``, or a
    misspelt provider, ``Router.route`` finds no such group (``UnknownModelError``) and skips it silently: the
    configured fallback never happens and nothing says so."""
    models = [
        {"name": "a", "deployments": ["openai/x"], "routing": {"fallbacks": [fallback]}},
    ]
    with pytest.raises(ConfigError, match="fallbacks"):
        parse_config({"server": server, "models": models}, env={})


# -- 9. a hedge's loser is never measured: a deployment that turned slow keeps its fast average -------------------


async def test_a_slow_deployment_that_always_loses_the_hedge_stops_being_preferred() -> None:
    """The ``latency`` strategy (and the ``p95`` hedge delay) learn only from successes; a hedge's loser is
    cancelled (``Attempt.abandoned``) and nothing of its elapsed time is recorded. A deployment measured fast once
    that turns slow therefore keeps its fast average for ever: it stays first, every request waits the hedge delay
    and then pays a second upstream request."""
    a, b = dep("a"), dep("b")
    for _ in range(5):
        a.stats.observe_total(0.01)  # measured fast before
        b.stats.observe_total(0.02)
    g = group("m", [a, b], RoutingPolicy(strategy="latency", hedge=HedgeSettings(after=0.05)))
    strategy = g.strategy
    assert isinstance(strategy, LatencyStrategy)
    strategy.explore = 0.0
    router = make_router([g])
    hedged = 0
    for _ in range(6):
        trace = Trace()
        assert await serve(router, _sleeper({"a": 1.0, "b": 0.01}), trace=trace) == "b"
        hedged += trace.attempts - 1
    assert hedged <= 2, f"{hedged} of 6 requests went to the slow deployment first and were hedged"


# -- 10. config: a top-level fallback list is unusable ----------------------------------------------------------------


def test_top_level_fallbacks_do_not_make_the_fallback_fall_back_to_itself() -> None:
    """``routing:`` at the top is "defaults for every model", merged key by key, and the self-fallback check runs on
    the merged policy: ``routing: {fallbacks: [backup]}`` is refused with ``models[1].routing.fallbacks: a model
    cannot fall back to itself`` although models[1] has no ``routing:`` at all."""
    c = parse_config(
        {
            "routing": {"fallbacks": ["backup"]},
            "models": [
                {"name": "chat", "deployments": ["openai/x"]},
                {"name": "backup", "deployments": ["openai/y"]},
            ],
        },
        env={},
    )
    assert c.models[0].routing is not None and c.models[0].routing.fallbacks == ("backup",)


# -- reviewer's note: a committed probe stream cut mid-way ------------------------------------------------------------


async def test_a_probe_stream_cut_after_its_first_output_does_not_reopen_the_circuit() -> None:
    """The probe's verdict is given at the commit point (its first output: the deployment answers again); a cut
    later in that stream is an ordinary failure, counted towards ``failures``, not a failed probe that reopens the
    circuit with the cooldown doubled."""
    with OpenAISimulator() as sim:
        transport = Transport()
        try:
            a = sim_dep(sim, "a")
            settings = CircuitSettings(failures=3, cooldown=5)
            clock = Clock()
            router = make_router([group("m", [a], RoutingPolicy(circuit=settings))], transport, clock=clock)
            a.circuit.failure(clock(), settings, boom(), probe=False)
            a.circuit.failure(clock(), settings, boom(), probe=False)
            a.circuit.failure(clock(), settings, boom(), probe=False)
            assert state(a) is CircuitState.OPEN
            clock.advance(6)
            sim.push(Fault.cut_stream(after_chunks=3, reply=Reply(text="abcdefgh", chunk_size=2)))
            with pytest.raises(ProviderError):
                async for _ in router.stream("m", chat(stream=True)):
                    pass
            assert state(a) is CircuitState.CLOSED and a.circuit.consecutive == 1
            assert a.stats.in_flight == 0
        finally:
            await transport.aclose()
