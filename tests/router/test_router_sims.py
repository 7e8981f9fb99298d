"""The router end to end over OpenAI simulators in fault modes: failover, Retry-After, bad requests, stream deadlines
and cut streams, circuits and their single probe, account failures, fallbacks, hedging."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from routerkit import Clock, Trace, chat, group, make_router, sim_dep

from modelway.errors import BadRequestError, ContentFilterError, ProviderError
from modelway.router import CircuitSettings, HedgeSettings, Router, RoutingPolicy
from modelway.testing import Fault, OpenAISimulator
from modelway.transport import Transport
from modelway.types import EmbeddingRequest

Sims = tuple[OpenAISimulator, OpenAISimulator, OpenAISimulator]
STREAMS = [pytest.param(False, id="json"), pytest.param(True, id="stream")]
CIRCUIT = CircuitSettings(failures=1, cooldown=10, account_cooldown=60)


async def ask(router: Router, stream: bool, model: str = "m", trace: Trace | None = None) -> str:
    """The answer's text, streamed or whole."""
    if not stream:
        return (await router.complete(model, chat(), trace)).choices[0].message.content or ""
    text = []
    async for batch in router.stream(model, chat(stream=True), trace):
        text += [c.choices[0].delta.content or "" for c in batch if c.choices]
    return "".join(text)


def two(
    sims: Sims,
    transport: Transport,
    policy: RoutingPolicy,
    *,
    clock: Clock | None = None,
    timeout: float = 5.0,
    retries: int = 0,
) -> Router:
    """Model ``m`` over sims a (tier 0, weight 1000) and b (tier 1, weight 0.001)."""
    a, b, _ = sims
    deps = [sim_dep(a, "a", weight=1000, tier=0), sim_dep(b, "b", weight=0.001, tier=1)]
    return make_router([group("m", deps, policy)], transport, clock=clock, timeout=timeout, retries=retries)


async def until(check: Callable[[], bool], seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


@pytest.mark.parametrize("stream", STREAMS)
async def test_a_failing_deployment_is_skipped_and_the_answer_arrives(
    sims: Sims, transport: Transport, stream: bool
) -> None:
    a, b, _ = sims
    router = two(sims, transport, RoutingPolicy(max_attempts=3, circuit=CIRCUIT))
    a.push(Fault.http(500))
    trace = Trace()
    assert await ask(router, stream, trace=trace) == "You said: hi"
    assert (len(a.requests), len(b.requests)) == (1, 1)
    assert trace.deployment is not None and trace.deployment.model == "b" and trace.attempts == 2
    assert await ask(router, stream) == "You said: hi"  # a's circuit is open: b again, a not tried
    assert (len(a.requests), len(b.requests)) == (1, 2)


async def test_embeddings_fail_over_too(sims: Sims, transport: Transport) -> None:
    a, b, _ = sims
    router = two(sims, transport, RoutingPolicy(max_attempts=3, circuit=CIRCUIT))
    a.push(Fault.http(503))
    resp = await router.embed("m", EmbeddingRequest(model="m", input=["x", "y"]))
    assert len(resp.data) == 2 and (len(a.requests), len(b.requests)) == (1, 1)


@pytest.mark.parametrize("stream", STREAMS)
async def test_a_retry_after_is_honoured(sims: Sims, transport: Transport, stream: bool) -> None:
    a, b, _ = sims
    only_a = make_router([group("m", [sim_dep(a, "a")], RoutingPolicy(max_attempts=3, circuit=CIRCUIT))], transport)
    a.push(Fault.http(429, retry_after=0.3))
    t0 = time.monotonic()
    assert await ask(only_a, stream) == "You said: hi"
    assert time.monotonic() - t0 >= 0.3 and len(a.requests) == 2  # waited as asked, then a again

    router = two(sims, transport, RoutingPolicy(max_attempts=3, circuit=CIRCUIT))
    a.push(Fault.http(429, retry_after=5))
    t0 = time.monotonic()
    assert await ask(router, stream) == "You said: hi"
    assert time.monotonic() - t0 < 1 and (len(a.requests), len(b.requests)) == (3, 1)
    assert await ask(router, stream) == "You said: hi"  # a asked for 5 s: skipped meanwhile
    assert (len(a.requests), len(b.requests)) == (3, 2)


@pytest.mark.parametrize("stream", STREAMS)
async def test_a_bad_request_is_not_retried(sims: Sims, transport: Transport, stream: bool) -> None:
    a, b, _ = sims
    router = two(sims, transport, RoutingPolicy(max_attempts=3, circuit=CIRCUIT), retries=2)
    a.push(Fault.http(400))
    with pytest.raises(BadRequestError):
        await ask(router, stream)
    assert (len(a.requests), len(b.requests)) == (1, 0)


async def test_a_stream_whose_first_output_never_comes_fails_over_within_its_deadline(
    sims: Sims, transport: Transport
) -> None:
    a, b, _ = sims
    router = two(sims, transport, RoutingPolicy(max_attempts=2, circuit=CIRCUIT), timeout=0.5)
    a.push(Fault.stall(after_chunks=1, seconds=None))  # the role-only chunk, then nothing
    t0 = time.monotonic()
    assert await ask(router, True) == "You said: hi"
    assert time.monotonic() - t0 < 1.0 and (len(a.requests), len(b.requests)) == (1, 1)
    assert await until(lambda: len(a.disconnects) == 1)  # its upstream connection was closed


async def test_a_stream_cut_after_its_first_output_ends_with_an_error(sims: Sims, transport: Transport) -> None:
    a, b, _ = sims
    router = two(sims, transport, RoutingPolicy(max_attempts=3, circuit=CIRCUIT))
    a.push(Fault.cut_stream(after_chunks=3))
    got = []
    with pytest.raises(ProviderError):
        async for batch in router.stream("m", chat(stream=True)):
            got += [c.choices[0].delta.content or "" for c in batch if c.choices]
    assert "".join(got).startswith("You") and (len(a.requests), len(b.requests)) == (1, 0)  # no failover
    dep_a = router.group("m").deployments[0]
    assert dep_a.stats.failures == 1 and dep_a.stats.in_flight == 0


async def test_an_open_circuit_lets_exactly_one_probe_through_then_closes(sims: Sims, transport: Transport) -> None:
    a, b, _ = sims
    clock = Clock()
    router = two(sims, transport, RoutingPolicy(strategy="priority", circuit=CIRCUIT), clock=clock)
    a.push(Fault.http(500))
    assert await ask(router, False) == "You said: hi"
    for _ in range(3):
        await ask(router, False)
    assert (len(a.requests), len(b.requests)) == (1, 4)  # open: a is not tried
    clock.advance(11)
    a.push(Fault.slow_first_byte(0.3))  # the probe takes a while; the others must not probe meanwhile
    answers = await asyncio.gather(*(ask(router, False) for _ in range(10)))
    assert answers == ["You said: hi"] * 10
    assert (len(a.requests), len(b.requests)) == (2, 13)  # exactly one of the ten reached a
    assert router.group("m").deployments[0].circuit.state == "closed"
    await ask(router, False)
    assert len(a.requests) == 3  # closed: a (tier 0) takes the traffic again


async def test_a_failed_probe_reopens_the_circuit_for_longer(sims: Sims, transport: Transport) -> None:
    a, b, _ = sims
    clock = Clock()
    router = two(sims, transport, RoutingPolicy(strategy="priority", circuit=CIRCUIT), clock=clock)
    a.push(Fault.http(500), Fault.http(502))
    await ask(router, False)
    clock.advance(11)
    await ask(router, False)  # the probe fails: open again, for 20 s
    assert len(a.requests) == 2
    clock.advance(11)
    await ask(router, False)
    assert len(a.requests) == 2  # still open
    clock.advance(10)
    await ask(router, False)
    assert len(a.requests) == 3 and router.group("m").deployments[0].circuit.state == "closed"


async def test_an_auth_failure_opens_the_circuit_until_a_probe_succeeds(sims: Sims, transport: Transport) -> None:
    a, b, _ = sims
    clock = Clock()
    policy = RoutingPolicy(strategy="priority", circuit=CircuitSettings(failures=5, cooldown=10, account_cooldown=60))
    router = two(sims, transport, policy, clock=clock)
    a.push(Fault.http(401))
    assert await ask(router, True) == "You said: hi"  # one refusal is enough
    clock.advance(30)  # longer than the ordinary cooldown
    await ask(router, True)
    assert (len(a.requests), len(b.requests)) == (1, 2)
    snap = {s["upstream_model"]: s for s in router.snapshot()}
    assert snap["a"]["circuit"]["state"] == "open" and snap["a"]["circuit"]["account"] is True
    clock.advance(31)
    await ask(router, True)  # the probe: the key works again
    assert len(a.requests) == 2 and router.group("m").deployments[0].circuit.state == "closed"


async def test_fallbacks_are_tried_in_order(sims: Sims, transport: Transport) -> None:
    a, b, c = sims
    policy = RoutingPolicy(max_attempts=1, fallbacks=("f1", "f2"))
    router = make_router(
        [group("m", [sim_dep(a, "a")], policy), group("f1", [sim_dep(b, "b")]), group("f2", [sim_dep(c, "c")])],
        transport,
    )
    a.push(Fault.http(500))
    b.push(Fault.http(503))
    trace = Trace()
    assert await ask(router, True, trace=trace) == "You said: hi"
    assert [len(s.requests) for s in sims] == [1, 1, 1]
    assert trace.fallback == "f2" and trace.attempts == 3 and trace.deployment is not None
    assert trace.deployment.model == "c" and c.last_request.json["model"] == "c"


async def test_a_prompt_too_long_falls_back_to_the_context_window_list(sims: Sims, transport: Transport) -> None:
    a, b, c = sims
    policy = RoutingPolicy(fallbacks=("other",), context_window_fallbacks=("long",))
    router = make_router(
        [group("m", [sim_dep(a, "a")], policy), group("long", [sim_dep(b, "b")]), group("other", [sim_dep(c, "c")])],
        transport,
    )
    a.push(Fault.http(400, code="context_length_exceeded", message="maximum context length is 8192 tokens"))
    trace = Trace()
    assert await ask(router, False, trace=trace) == "You said: hi"
    assert [len(s.requests) for s in sims] == [1, 1, 0] and trace.fallback == "long"


async def test_a_content_filter_refusal_falls_back_only_where_configured(sims: Sims, transport: Transport) -> None:
    a, b, c = sims
    lenient = RoutingPolicy(content_filter_fallbacks=("lenient",), fallbacks=("other",))
    router = make_router(
        [
            group("m", [sim_dep(a, "a")], lenient),
            group("strict", [sim_dep(a, "a")], RoutingPolicy(fallbacks=("other",))),
            group("lenient", [sim_dep(b, "b")]),
            group("other", [sim_dep(c, "c")]),
        ],
        transport,
    )
    a.push(Fault.http(400, code="content_filter"))
    trace = Trace()
    assert await ask(router, False, trace=trace) == "You said: hi"
    assert trace.fallback == "lenient" and [len(s.requests) for s in sims] == [1, 1, 0]
    a.push(Fault.http(400, code="content_filter"))
    with pytest.raises(ContentFilterError):  # the plain fallbacks are not for refusals
        await ask(router, False, model="strict")
    assert [len(s.requests) for s in sims] == [2, 1, 0]


@pytest.mark.parametrize("stream", STREAMS)
async def test_a_hedge_wins_over_a_slow_first_deployment_and_the_loser_is_cancelled(
    sims: Sims, transport: Transport, stream: bool
) -> None:
    a, b, _ = sims
    policy = RoutingPolicy(strategy="priority", hedge=HedgeSettings(after=0.2))
    router = two(sims, transport, policy, timeout=10)
    a.push(Fault.stall(after_chunks=1, seconds=None))  # headers (and for a stream its role chunk), then silence
    trace = Trace()
    t0 = time.monotonic()
    assert await ask(router, stream, trace=trace) == "You said: hi"
    assert 0.2 <= time.monotonic() - t0 < 2.0
    assert trace.deployment is not None and trace.deployment.model == "b" and trace.attempts == 2
    assert await until(lambda: len(a.disconnects) == 1)  # the loser's upstream request was closed
    deps = router.group("m").deployments
    assert [d.stats.in_flight for d in deps] == [0, 0] and deps[0].stats.failures == 0  # cancelled, not failed


async def test_a_hedge_on_p95_waits_for_enough_samples(sims: Sims, transport: Transport) -> None:
    a, b, _ = sims
    policy = RoutingPolicy(strategy="priority", hedge=HedgeSettings(after="p95", min_samples=5))
    router = two(sims, transport, policy)
    for _ in range(5):
        await ask(router, True)
    assert len(b.requests) == 0  # no hedge before the percentile is known (and a answers quickly)
    p95 = router.group("m").deployments[0].stats.percentile(0.95, 5)
    assert p95 is not None and p95 < 0.5
    a.push(Fault.stall(after_chunks=1, seconds=None))
    t0 = time.monotonic()
    assert await ask(router, True) == "You said: hi"
    assert time.monotonic() - t0 < 1.5 and len(b.requests) == 1
