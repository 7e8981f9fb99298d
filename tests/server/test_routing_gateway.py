"""The router's policy through the gateway: the answer says what happened (``x-modelway-deployment``,
``-attempts``, ``-fallback``), the usage record says it too, and ``/admin/deployments`` shows the router's view."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gw import MASTER_KEY, RunningGateway
from test_control_plane import call

from modelway.testing import Fault, OpenAISimulator, Reply, ZhipuSimulator


@pytest.fixture(scope="module")
def routed(
    start_gateway: Callable[[dict[str, Any]], RunningGateway],
    openai_sim: OpenAISimulator,
    zhipu_sim: ZhipuSimulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningGateway]:
    db: Path = tmp_path_factory.mktemp("routing") / "r.db"
    oa = {"model": "openai/gpt-4o-mini", "api_key": openai_sim.api_key, "api_base": openai_sim.base_url}
    zp = {"model": "zhipu/glm-4-flash", "api_key": zhipu_sim.api_key, "api_base": zhipu_sim.base_url}
    yield start_gateway(
        {
            "server": {"master_key": MASTER_KEY, "max_retries": 0},
            "store": {"url": f"sqlite:///{db}"},
            "usage": {"flush_interval": 0.05, "spill_path": str(db.parent / "spill.jsonl")},
            "routing": {"circuit": {"failures": 1, "cooldown": 60}, "max_attempts": 2},
            "models": [
                {"name": "main", "deployments": [oa], "routing": {"fallbacks": ["backup"]}},
                {"name": "backup", "deployments": [zp]},
                {
                    "name": "tiers",
                    "routing": {"strategy": "priority"},
                    "deployments": [{**oa, "tier": 0}, {**zp, "tier": 1}],
                },
            ],
        }
    )


async def test_a_fallback_is_told_in_headers_and_in_the_usage_record(
    routed: RunningGateway, openai_sim: OpenAISimulator, zhipu_sim: ZhipuSimulator
) -> None:
    openai_sim.push(Fault.http(500), Fault.http(500))
    zhipu_sim.push(Reply("from the backup"))
    body = {"model": "main", "messages": [{"role": "user", "content": "hi"}], "user": "fallback-case"}
    status, headers, answer = await call(routed, "POST", "/v1/chat/completions", body)
    assert status == 200 and answer["choices"][0]["message"]["content"] == "from the backup"
    assert headers["x-modelway-fallback"] == "backup"
    assert headers["x-modelway-deployment"] == "zhipu/glm-4-flash"
    attempts = int(headers["x-modelway-attempts"])
    assert attempts >= 2  # the failed main deployment, then the backup
    rid = headers["x-request-id"]
    for _ in range(100):
        _, _, records = await call(routed, "GET", "/admin/usage/records?limit=50")
        mine = [r for r in records["data"] if r["request_id"] == rid]
        if mine:
            break
        await asyncio.sleep(0.05)
    [rec] = mine
    assert (rec["fallback"], rec["attempts"], rec["deployment"]) == ("backup", attempts, "zhipu/glm-4-flash")


async def test_the_deployments_show_the_router_s_view(
    routed: RunningGateway, openai_sim: OpenAISimulator, zhipu_sim: ZhipuSimulator
) -> None:
    # one failure opens the circuit of the tier-0 deployment (failures: 1); tier 1 answers meanwhile
    openai_sim.push(Fault.http(503))
    zhipu_sim.push(Reply("tier one"))
    status, headers, answer = await call(
        routed, "POST", "/v1/chat/completions", {"model": "tiers", "messages": [{"role": "user", "content": "x"}]}
    )
    assert status == 200 and headers["x-modelway-deployment"] == "zhipu/glm-4-flash"
    status, _, deps = await call(routed, "GET", "/admin/deployments")
    assert status == 200
    tiers = {d["deployment"]: d for d in deps["data"] if d["model"] == "tiers"}
    assert tiers["openai/gpt-4o-mini"]["circuit"]["state"] == "open"
    assert tiers["openai/gpt-4o-mini"]["tier"] == 0 and tiers["zhipu/glm-4-flash"]["tier"] == 1
    assert tiers["zhipu/glm-4-flash"]["strategy"] == "priority"
