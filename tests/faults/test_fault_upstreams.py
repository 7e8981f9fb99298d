"""Faults in the other upstream wire protocols the gateway speaks (Zhipu, DashScope native, Anthropic Messages):
each adapter reads its own error frames, stream ends and malformed events, and must turn them into the same
outcomes for the client as the OpenAI protocol does (see ``test_fault_table.py``). Through the OpenAI dialect;
one deployment, and two (the faulty one first, the healthy OpenAI simulator second)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fault_harness import (
    FAULTY_TEXT,
    MASTER_KEY,
    OPENAI_CHAT,
    TIMEOUT,
    Answered,
    Broken,
    Failed,
    Outcome,
    check,
    http_client,
    post,
    two_deployments,
)
from fault_rig import HEALTHY, HEALTHY_KEY, Rig, RunningGateway

from modelway.testing import AnthropicSimulator, BaseSimulator, DashScopeSimulator, Fault, Reply, ZhipuSimulator


@dataclass(frozen=True)
class Upstream:
    name: str
    cls: type[BaseSimulator]
    model: str
    #: stream events before the text "faulty a" has gone out, and before any output at all
    commit: int
    before: int
    #: what its error frame (``Fault.error_frame``) becomes, after and before the commit
    frame: Fault
    frame_broken: Broken
    frame_failed: Failed
    #: the provider's own error code of its HTTP 500 answer
    code_500: str


UPSTREAMS = (
    Upstream(
        "zhipu",
        ZhipuSimulator,
        "zhipu/glm-4-flash",
        2,
        0,
        Fault.error_frame(after_chunks=2),
        Broken(502, "upstream_error", "1234"),
        Failed(502, "upstream_error", "1234"),
        "500",
    ),
    Upstream(
        "dashscope",
        DashScopeSimulator,
        "dashscope/qwen-plus",
        2,
        0,
        Fault.error_frame(after_chunks=2, code="InternalError.Algo", status=500),
        Broken(502, "upstream_error", "InternalError.Algo"),
        Failed(502, "upstream_error", "InternalError.Algo"),
        "InternalError",
    ),
    Upstream(
        "anthropic",
        AnthropicSimulator,
        "anthropic/claude-haiku-4-5",
        5,
        3,
        Fault.error_frame(after_chunks=5),
        Broken(502, "upstream_error", "overloaded_error"),
        Failed(502, "upstream_error", "overloaded_error"),
        "api_error",
    ),
)


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, BaseSimulator]]:
    started = [u.cls(default_reply=Reply(FAULTY_TEXT)).start() for u in UPSTREAMS]
    try:
        yield {u.name: sim for u, sim in zip(UPSTREAMS, started, strict=True)}
    finally:
        for sim in started:
            sim.stop()


@pytest.fixture(scope="module")
def gateway(
    start_gateway: Callable[[dict[str, Any]], RunningGateway], rig: Rig, sims: dict[str, BaseSimulator]
) -> RunningGateway:
    good = {"model": HEALTHY, "api_key": HEALTHY_KEY, "api_base": rig.healthy.base_url, "timeout": 5}
    models = []
    for u in UPSTREAMS:
        sim = sims[u.name]
        bad = {"model": u.model, "api_key": sim.api_key, "api_base": sim.base_url}
        models.append({"name": f"{u.name}-1", "deployments": [bad]})
        models.append({"name": f"{u.name}-2", "deployments": [{**bad, "weight": 1000}, {**good, "weight": 0.001}]})
    server = {"master_key": MASTER_KEY, "timeout": TIMEOUT, "max_retries": 0, "cooldown": 0, "allow_direct": False}
    return start_gateway({"server": server, "models": models})


@pytest.fixture(autouse=True)
def _clean(sims: dict[str, BaseSimulator], gateway: RunningGateway) -> Iterator[None]:
    for sim in sims.values():
        sim.clear()
    gateway.uncool()
    yield
    gateway.uncool()


def _cases() -> Iterator[object]:
    for u in UPSTREAMS:
        table: list[tuple[str, bool, Fault, Outcome]] = [
            ("http-429", True, Fault.http(429), Failed(429, "rate_limit_error", "rate_limit_exceeded")),
            ("http-500", False, Fault.http(500), Failed(502, "upstream_error", u.code_500)),
            ("error-frame-mid-stream", True, u.frame, u.frame_broken),
            ("error-frame-first", True, _with(u.frame, u.before), u.frame_failed),
            ("cut-mid-stream", True, Fault.cut_stream(u.commit), Broken(502, "stream_error", None)),
            ("cut-before-output", True, Fault.cut_stream(u.before), Failed(502, "stream_error", None)),
            ("malformed-mid-stream", True, Fault.malformed_json(u.commit), Broken(502, "stream_error", None)),
            ("malformed-json", False, Fault.malformed_json(), Failed(502, "stream_error", None)),
            ("stall-mid-stream", True, Fault.stall(u.commit), Broken(504, "timeout_error", None)),
            ("json-for-stream", True, Fault.json_for_stream(), Answered("faulty")),
        ]
        for what, stream, fault, one in table:
            for deployments in (1, 2):
                expect = one if deployments == 1 else two_deployments(one)
                yield pytest.param(u, stream, fault, deployments, expect, id=f"{u.name}/{what}/{deployments}dep")


def _with(frame: Fault, after_chunks: int) -> Fault:
    return Fault(frame.kind, status=frame.status, code=frame.code, message=frame.message, after_chunks=after_chunks)


@pytest.mark.parametrize(("upstream", "stream", "fault", "deployments", "expect"), list(_cases()))
async def test_upstream_fault(
    gateway: RunningGateway,
    rig: Rig,
    sims: dict[str, BaseSimulator],
    upstream: Upstream,
    stream: bool,
    fault: Fault,
    deployments: int,
    expect: Outcome,
) -> None:
    sim = sims[upstream.name]
    sim.push(fault)
    async with http_client() as client:
        body = OPENAI_CHAT.request(f"{upstream.name}-{deployments}", stream)
        seen = await post(client, gateway.url + OPENAI_CHAT.path, body)
    secrets = (*rig.secrets, sim.api_key, f":{sim.port}")
    check(seen, expect, OPENAI_CHAT, stream, secrets)
    failed_over = isinstance(expect, Answered) and expect.by == "healthy"
    assert (len(sim.requests), len(rig.healthy.requests)) == (1, int(failed_over)), seen.describe()
