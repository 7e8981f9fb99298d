"""Retries and cool-downs under faults, on a gateway of its own (``max_retries: 1``, ``cooldown: 5``) over the same
upstreams: a short ``Retry-After`` is waited for, a long one is not (the caller gets it, or the gateway fails over
and keeps away for as long as the provider asked), a stream is retried only until its first output, and retries
stay within their bounds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fault_harness import (
    COMMIT,
    DEADLINE,
    OPENAI_CHAT,
    TIMEOUT,
    Answered,
    Broken,
    Failed,
    Outcome,
    Seen,
    check,
    http_client,
    post,
)
from fault_rig import Rig, RunningGateway, rig_config

from modelway.testing import Fault

#: two timeouts and a back-off (0.5 s at most) fit in it
RETRY_DEADLINE = 2 * TIMEOUT * 1.25 + 0.5 + 0.5
STREAMS = [pytest.param(False, id="json"), pytest.param(True, id="stream")]


@pytest.fixture(scope="module")
def retrying(
    start_gateway: Callable[[dict[str, Any]], RunningGateway], rig: Rig, tmp_path_factory: pytest.TempPathFactory
) -> RunningGateway:
    data = tmp_path_factory.mktemp("faults-retries")
    dead = f"http://127.0.0.1:{rig.dead}/v1"
    cfg = rig_config(rig.faulty.base_url, rig.healthy.base_url, rig.raw.base_url, dead, data, max_retries=1, cooldown=5)
    return start_gateway(cfg)


@pytest.fixture(autouse=True)
def _uncooled(retrying: RunningGateway) -> Iterator[None]:
    retrying.uncool()
    yield
    retrying.uncool()


async def ask(gateway: RunningGateway, model: str, stream: bool, deadline: float = RETRY_DEADLINE) -> Seen:
    async with http_client() as client:
        return await post(client, gateway.url + OPENAI_CHAT.path, OPENAI_CHAT.request(model, stream), deadline=deadline)


def expect(seen: Seen, outcome: Outcome, stream: bool, rig: Rig, *, faulty: int, healthy: int = 0) -> None:
    check(seen, outcome, OPENAI_CHAT, stream, rig.secrets, deadline=RETRY_DEADLINE)
    assert (len(rig.faulty.requests), len(rig.healthy.requests)) == (faulty, healthy), seen.describe()


@pytest.mark.parametrize("stream", STREAMS)
async def test_a_short_retry_after_is_waited_for(retrying: RunningGateway, rig: Rig, stream: bool) -> None:
    rig.faulty.push(Fault.http(429, retry_after=0.3))
    seen = await ask(retrying, "sim-1", stream)
    expect(seen, Answered("faulty"), stream, rig, faulty=2)
    assert seen.elapsed >= 0.3, seen.describe()


@pytest.mark.parametrize("stream", STREAMS)
async def test_a_long_retry_after_goes_back_to_the_caller(retrying: RunningGateway, rig: Rig, stream: bool) -> None:
    rig.faulty.push(Fault.http(429, retry_after=5))
    seen = await ask(retrying, "sim-1", stream)
    expect(seen, Failed(429, "rate_limit_error", "rate_limit_exceeded", retry_after="5"), stream, rig, faulty=1)
    assert seen.elapsed < 0.5, seen.describe()  # not waited for


@pytest.mark.parametrize("stream", STREAMS)
async def test_a_long_retry_after_fails_over_and_keeps_away(retrying: RunningGateway, rig: Rig, stream: bool) -> None:
    rig.faulty.push(Fault.http(429, retry_after=5))
    seen = await ask(retrying, "sim-2", stream)
    expect(seen, Answered("healthy"), stream, rig, faulty=1, healthy=1)
    assert seen.elapsed < 0.5, seen.describe()
    seen = await ask(retrying, "sim-2", stream)  # the faulty deployment cools down for the 5 s it was asked
    expect(seen, Answered("healthy"), stream, rig, faulty=1, healthy=2)


@pytest.mark.parametrize("stream", STREAMS)
async def test_server_errors_are_retried_once_then_fail_over(retrying: RunningGateway, rig: Rig, stream: bool) -> None:
    rig.faulty.push(Fault.http(500), Fault.http(503))
    seen = await ask(retrying, "sim-2", stream)
    expect(seen, Answered("healthy"), stream, rig, faulty=2, healthy=1)
    seen = await ask(retrying, "sim-2", stream)  # cooling down (cooldown: 5)
    expect(seen, Answered("healthy"), stream, rig, faulty=2, healthy=2)


async def test_without_cooldown_the_failed_deployment_comes_first_again(rig: Rig) -> None:
    rig.faulty.push(Fault.http(500))
    for expected_faulty in (1, 2):  # the rig's gateway has cooldown: 0
        async with http_client() as client:
            seen = await post(client, rig.url + OPENAI_CHAT.path, OPENAI_CHAT.request("sim-2", False))
        want = Answered("healthy") if expected_faulty == 1 else Answered("faulty")
        expect(seen, want, False, rig, faulty=expected_faulty, healthy=1)


async def test_a_stream_is_retried_only_before_its_first_output(retrying: RunningGateway, rig: Rig) -> None:
    rig.faulty.push(Fault.error_frame(after_chunks=1))
    seen = await ask(retrying, "sim-1", True)
    expect(seen, Answered("faulty"), True, rig, faulty=2)
    rig.faulty.clear()
    rig.faulty.push(Fault.error_frame(after_chunks=COMMIT))
    seen = await ask(retrying, "sim-2", True)
    expect(seen, Broken(502, "upstream_error", "server_error"), True, rig, faulty=1)


@pytest.mark.parametrize("stream", STREAMS)
async def test_timeouts_are_retried_within_their_bounds(retrying: RunningGateway, rig: Rig, stream: bool) -> None:
    rig.faulty.push(Fault.slow_first_byte(5), Fault.slow_first_byte(5))
    seen = await ask(retrying, "sim-1", stream)
    expect(seen, Failed(504, "timeout_error", None), stream, rig, faulty=2)
    assert seen.elapsed >= 2 * TIMEOUT, seen.describe()


@pytest.mark.parametrize("stream", STREAMS)
async def test_a_bad_request_is_neither_retried_nor_failed_over(
    retrying: RunningGateway, rig: Rig, stream: bool
) -> None:
    rig.faulty.push(Fault.http(400))
    seen = await ask(retrying, "sim-2", stream, deadline=DEADLINE)
    expect(seen, Failed(400, "invalid_request_error", "invalid_request_error"), stream, rig, faulty=1)
