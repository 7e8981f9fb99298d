"""The metrics added for the router and the process: retries, fallbacks, quota-queue waits, each deployment's
circuit state and upstream requests in flight, the queue's length, the process's CPU, memory, descriptors and
garbage collections; their sums over workers; and the same through a running gateway."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from gw import MASTER_KEY, RunningGateway
from prometheus_client.parser import text_string_to_metric_families

from modelway.server.metrics import Metrics
from modelway.testing import Fault, OpenAISimulator, Reply

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def k(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def test_retries_fallbacks_and_queue_waits() -> None:
    m = Metrics()
    m.observe("glm", "chat", 200, 0.1, ttft=None, prompt_tokens=0, completion_tokens=0, cost=0, attempts=1)
    m.observe("glm", "chat", 200, 0.1, ttft=None, prompt_tokens=0, completion_tokens=0, cost=0, attempts=3)
    m.observe("glm", "chat", 200, 0.1, ttft=None, prompt_tokens=0, completion_tokens=0, cost=0, attempts=2,
              fallback="qwen")  # fmt: skip
    m.observe_queue_wait("glm", 0.003)
    m.observe_queue_wait("glm", 2.0)
    got = parse(m.render()[0].decode())
    assert got[k("modelway_retries_total", model="glm")] == 3  # 0 + 2 + 1 upstream requests beyond the first
    assert got[k("modelway_fallbacks_total", model="glm", fallback="qwen")] == 1
    assert got[k("modelway_queue_wait_seconds_bucket", model="glm", le="0.005")] == 1
    assert got[k("modelway_queue_wait_seconds_count", model="glm")] == 2


def test_gauges_and_process_series() -> None:
    m = Metrics()
    m.gauges = lambda: {
        "modelway_deployment_circuit_state": {("glm", "zhipu/glm-4"): 2.0},
        "modelway_queue_length": {("glm",): 3.0},
    }
    got = parse(m.render()[0].decode())
    assert got[k("modelway_deployment_circuit_state", model="glm", deployment="zhipu/glm-4")] == 2
    assert got[k("modelway_queue_length", model="glm")] == 3
    assert got[k("process_cpu_seconds_total")] > 0
    assert got[k("process_resident_memory_bytes")] > 1_000_000
    assert got[k("process_open_fds")] >= 3
    assert abs(got[k("process_start_time_seconds")] - time.time()) < 24 * 3600
    assert k("python_gc_collections_total", generation="2") in got

    def broken() -> Any:
        raise RuntimeError("a bug in a gauge")

    m.gauges = broken
    assert k("process_cpu_seconds_total") in parse(m.render()[0].decode())  # a scrape still answers


def test_workers_combine_gauges_and_keep_each_process(tmp_path: Path) -> None:
    a, b = Metrics(tmp_path), Metrics(tmp_path)
    a.gauges = lambda: {
        "modelway_deployment_circuit_state": {("glm", "d"): 0.0},
        "modelway_queue_length": {("glm",): 1.0},
        "modelway_deployment_in_flight": {("glm", "d"): 2.0},
    }
    b.gauges = lambda: {
        "modelway_deployment_circuit_state": {("glm", "d"): 2.0},
        "modelway_queue_length": {("glm",): 4.0},
        "modelway_deployment_in_flight": {("glm", "d"): 1.0},
    }
    b._write_snapshot()
    snap = orjson.loads((tmp_path / b._file).read_bytes())
    snap["pid"] = 999_999  # a dead worker's snapshot: its gauges and process series no longer count
    (tmp_path / "dead.json").write_bytes(orjson.dumps(snap))
    old = time.time() - 60
    os.utime(tmp_path / "dead.json", (old, old))
    got = parse(a.render()[0].decode())
    assert got[k("modelway_deployment_circuit_state", model="glm", deployment="d")] == 2  # the worst
    assert got[k("modelway_queue_length", model="glm")] == 5  # the sum
    assert got[k("modelway_deployment_in_flight", model="glm", deployment="d")] == 3
    pids = {dict(labels)["pid"] for name, labels in got if name == "process_cpu_seconds_total"}
    assert pids == {str(os.getpid())}  # both live workers are this process here: one pid; not the dead one's


# -- through a running gateway -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def routed(start_gateway: Callable[[dict[str, Any]], RunningGateway], openai_sim: OpenAISimulator) -> RunningGateway:
    dep = {"model": "openai/gpt-4o-mini", "api_key": openai_sim.api_key, "api_base": openai_sim.base_url}
    return start_gateway(
        {
            "server": {"master_key": MASTER_KEY, "max_retries": 0},
            "models": [
                {
                    "name": "fragile",
                    "routing": {"circuit": {"failures": 1, "cooldown": 60}, "fallbacks": ["sturdy"]},
                    "deployments": [{**dep, "model": "openai/fragile-model"}],
                },
                {"name": "sturdy", "deployments": [{**dep, "model": "openai/sturdy-model"}]},
                {
                    "name": "narrow",
                    "routing": {"queue_wait": 5},
                    "deployments": [{**dep, "model": "openai/narrow-model", "quota": {"max_concurrent": 1}}],
                },
            ],
        }
    )


async def chat(s: aiohttp.ClientSession, gw: RunningGateway, model: str) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": "x"}]}
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    async with s.post(gw.url + "/v1/chat/completions", json=body, headers=headers) as r:
        await r.read()
        return r.status


async def test_circuits_fallbacks_and_queues_through_the_gateway(
    routed: RunningGateway, openai_sim: OpenAISimulator
) -> None:
    openai_sim.push(Fault.http(500), Reply(text="from the fallback"))
    async with aiohttp.ClientSession() as s:
        assert await chat(s, routed, "fragile") == 200  # failed, circuit opened, fell back to sturdy
        # two at once on a deployment that takes one: the second waits in the queue
        slow = Reply(text="a b c d e f", usage=(1, 1))
        openai_sim.push(Fault.slow_first_byte(0.3, slow), Reply(text="second"))
        assert await asyncio.gather(chat(s, routed, "narrow"), chat(s, routed, "narrow")) == [200, 200]
        async with s.get(routed.url + "/metrics") as r:
            got = parse(await r.text())
    assert got[k("modelway_deployment_circuit_state", model="fragile", deployment="openai/fragile-model")] == 2
    assert got[k("modelway_deployment_circuit_state", model="sturdy", deployment="openai/sturdy-model")] == 0
    assert got[k("modelway_fallbacks_total", model="fragile", fallback="sturdy")] == 1
    assert got[k("modelway_retries_total", model="fragile")] == 1  # two upstream requests for one call
    assert got[k("modelway_queue_wait_seconds_count", model="narrow")] >= 1
    assert got[k("modelway_queue_wait_seconds_sum", model="narrow")] > 0.1
    assert got[k("modelway_queue_length", model="narrow")] == 0
    assert got[k("modelway_deployment_in_flight", model="narrow", deployment="openai/narrow-model")] == 0
