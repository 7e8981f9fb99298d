"""Demo models as the deployments of a config's aliases: their simulators start with the gateway, their fault options
(fail_every, fail_status, timeout_every, latency) make failover, Retry-After and fallbacks visible without a key."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from gw import MASTER_KEY, RunningGateway

from modelway.config import parse_config
from modelway.errors import ConfigError
from modelway.testing import Fault
from modelway.testing.demo import DemoFaults, DemoFleet

EXAMPLE = Path(__file__).resolve().parents[2] / "modelway.example.yaml"
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


def chat(gw: RunningGateway, model: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(gw.url + "/v1/chat/completions", json=body, headers=ADMIN, timeout=20)


@pytest.fixture(scope="module")
def demo_gateway(start_gateway: Callable[[dict[str, Any]], RunningGateway]) -> RunningGateway:
    tiers = {"strategy": "priority", "max_attempts": 3}
    return start_gateway(
        {
            "server": {"max_retries": 0, "master_key": MASTER_KEY},
            "models": [
                {
                    "name": "fails-over",
                    "routing": tiers,
                    "deployments": [
                        {"model": "demo/qwen-plus", "tier": 0, "options": {"fail_every": 1, "fail_status": 503}},
                        {"model": "demo/glm-4-flash", "tier": 1},
                    ],
                },
                {
                    "name": "rate-limited",
                    "routing": tiers,
                    "deployments": [
                        {"model": "demo/gpt-4o-mini", "tier": 0, "options": {"fail_every": 1, "fail_status": 429}},
                        {"model": "demo/deepseek-chat", "tier": 1},
                    ],
                },
                {
                    "name": "times-out",
                    "routing": tiers,
                    "deployments": [
                        {"model": "demo/moonshot-v1-8k", "tier": 0, "timeout": 0.5, "options": {"timeout_every": 1}},
                        {"model": "demo/claude-haiku-4-5", "tier": 1},
                    ],
                },
                {"name": "slow", "deployments": [{"model": "demo/glm-4-flash", "options": {"latency": 0.4}}]},
                {"name": "every-2nd", "deployments": [{"model": "demo/qwen-plus", "options": {"fail_every": 2}}]},
                {"name": "embed", "deployments": ["demo/embedding-3"]},
                {"name": "rank", "deployments": ["demo/gte-rerank-v2"]},
            ],
        }
    )


def test_a_failing_demo_deployment_fails_over(demo_gateway: RunningGateway) -> None:
    r = chat(demo_gateway, "fails-over")
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "You said: hi", r.text
    assert r.headers["x-modelway-deployment"] == "demo/glm-4-flash" and r.headers["x-modelway-attempts"] == "2"


def test_a_rate_limited_one_says_retry_after_and_the_next_serves(demo_gateway: RunningGateway) -> None:
    r = chat(demo_gateway, "rate-limited")
    assert r.status_code == 200 and r.headers["x-modelway-deployment"] == "demo/deepseek-chat", r.text
    r = httpx.get(demo_gateway.url + "/admin/deployments", headers=ADMIN).json()["data"]
    limited = next(d for d in r if d["model"] == "rate-limited" and d["deployment"] == "demo/gpt-4o-mini")
    assert 0 < limited["cooling_for"] <= 1.0  # its Retry-After: 1


def test_a_timing_out_one_is_given_up_after_its_timeout(demo_gateway: RunningGateway) -> None:
    started = time.monotonic()
    r = chat(demo_gateway, "times-out", stream=True)
    took = time.monotonic() - started
    assert r.status_code == 200 and r.headers["x-modelway-deployment"] == "demo/claude-haiku-4-5", r.text
    assert r.text.endswith("data: [DONE]\n\n") and r.headers["x-modelway-attempts"] == "2"
    assert 0.5 <= took < 5


def test_latency_delays_every_answer(demo_gateway: RunningGateway) -> None:
    started = time.monotonic()
    assert chat(demo_gateway, "slow").status_code == 200
    assert time.monotonic() - started >= 0.4


def test_fail_every_counts_the_requests_of_its_simulator(demo_gateway: RunningGateway) -> None:
    statuses = [chat(demo_gateway, "every-2nd").status_code for _ in range(4)]
    assert statuses[0::2] != statuses[1::2] and sorted(set(statuses)) == [200, 502], statuses


def test_embeddings_and_rerank_over_demo_deployments(demo_gateway: RunningGateway) -> None:
    r = httpx.post(demo_gateway.url + "/v1/embeddings", json={"model": "embed", "input": ["a", "b"]}, headers=ADMIN)
    assert r.status_code == 200 and len(r.json()["data"]) == 2, r.text
    body = {"model": "rank", "query": "gateway", "documents": ["a gateway", "pandas"], "top_n": 1}
    r = httpx.post(demo_gateway.url + "/v1/rerank", json=body, headers=ADMIN)
    assert r.status_code == 200 and r.json()["results"][0]["index"] == 0, r.text


def test_demo_deployments_are_checked_like_the_others() -> None:
    def bad(dep: dict[str, Any]) -> str:
        with pytest.raises(ConfigError) as caught:
            parse_config({"models": [{"name": "m", "deployments": [dep]}]}, env={})
        return str(caught.value)

    assert "models[0].deployments[0].model: 'demo/nope' is not a demo model" in bad({"model": "demo/nope"})
    assert bad({"model": "demo/glm-4-flash", "options": {"fail_evry": 2}}).startswith(
        "models[0].deployments[0].options.fail_evry: not a demo fault option"
    )
    assert "options.fail_status" in bad({"model": "demo/glm-4-flash", "options": {"fail_status": 200}})
    assert "options.latency" in bad({"model": "demo/glm-4-flash", "options": {"latency": -1}})
    assert "options.fail_every" in bad({"model": "demo/glm-4-flash", "options": {"fail_every": "3"}})
    assert ".api_base: a demo deployment" in bad({"model": "demo/glm-4-flash", "api_base": "http://x"})


def test_the_commented_example_of_the_example_config_is_valid() -> None:
    text = EXAMPLE.read_text()
    block = text[text.index("  # - name: demo-chat") :]
    uncommented = "\n".join(line.replace("# ", "", 1) for line in block.splitlines())
    config = parse_config(yaml.safe_load("models:\n" + uncommented), env={})
    assert [m.name for m in config.models] == ["demo-chat", "demo-backup"]
    assert config.models[0].deployments[0].options == {"fail_every": 3, "fail_status": 429}


class TestFaults:
    def test_every_nth_request(self) -> None:
        faults = DemoFaults.from_options({"fail_every": 3, "fail_status": 429})
        got = [faults(n) for n in range(1, 7)]
        assert [n for n, item in enumerate(got, 1) if item is not None] == [3, 6]
        assert isinstance(got[2], Fault) and got[2].kind == "http" and got[2].status == 429
        assert got[2].retry_after == 1  # a 429 says when to come back
        fault = DemoFaults.from_options({"fail_every": 1})(1)
        assert fault is not None and fault.status == 500 and fault.retry_after is None

    def test_timeouts_first_then_failures_then_latency(self) -> None:
        faults = DemoFaults.from_options({"fail_every": 2, "timeout_every": 3, "latency": 0.2})
        kinds = [getattr(faults(n), "kind", None) for n in range(1, 7)]
        assert kinds == ["slow_first_byte", "http", "stall", "http", "slow_first_byte", "stall"]
        assert DemoFaults()(1) is None

    async def test_a_fleet_shares_a_simulator_per_model_and_options(self) -> None:
        fleet = DemoFleet()
        await fleet.astart([("demo/glm-4-flash", None), ("demo/embedding-3", {}), ("demo/glm-4-flash", {"latency": 1})])
        try:
            a, model = fleet.adapter("demo/glm-4-flash")
            b, _ = fleet.adapter("demo/embedding-3")
            c, _ = fleet.adapter("demo/glm-4-flash", {"latency": 1})
            assert model == "glm-4-flash" and a.name == "demo" and a.base_url == b.base_url != c.base_url
            late, _ = fleet.adapter("demo/qwen-plus", {"fail_every": 2})  # not started: started now, in a thread
            assert late.base_url.startswith("http://127.0.0.1:")
        finally:
            await fleet.astop()


async def test_a_gateway_without_a_fleet_makes_its_own_and_stops_it() -> None:
    """A demo deployment added at run time to a gateway that started without one (its simulator runs in a thread)."""
    from modelway.server.gateway import Gateway

    gw = Gateway(parse_config({"models": [{"name": "m", "deployments": ["demo/glm-4-flash"]}]}, env={}), env={})
    assert gw.demo is not None
    sim = gw.demo.simulator("demo/glm-4-flash")
    assert sim.running
    await gw.aclose()
    assert not sim.running


def test_serve_demo_aliases_use_demo_deployments(start_gateway: Callable[[dict[str, Any]], RunningGateway]) -> None:
    from modelway.server import create_app

    gw = RunningGateway(create_app(parse_config({}, env={}), env={}, demo=True)).start()
    try:
        r = chat(gw, "demo/glm-4-flash")
        assert r.status_code == 200 and r.headers["x-modelway-deployment"] == "demo/glm-4-flash", r.text
    finally:
        gw.stop()
    # without --demo a config's demo deployments start their simulators, but the catalog's aliases are not added
    plain = start_gateway({"models": [{"name": "m", "deployments": ["demo/qwen-plus"]}]})
    assert chat(plain, "m").status_code == 200 and chat(plain, "demo/glm-4-flash").status_code == 404
