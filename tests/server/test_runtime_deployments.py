"""Deployments and aliases changed at run time through the admin API, on running gateways with simulators upstream:
two gateways share one SQLite store and each sees the other's changes within seconds; a request in flight keeps its
deployment; bad input is a 400 naming the field; keys never come back. A worker-registered deployment stays beside
the store's changes (the cluster's registry in process)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from gw import MASTER_KEY, RunningGateway

from modelway.cluster.registry import WorkerInfo
from modelway.config import parse_config
from modelway.server import create_app
from modelway.server.gateway import Gateway
from modelway.store import SQLStore
from modelway.store.deployments import RuntimeChanges
from modelway.testing import Fault, OpenAISimulator

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
KEY_VAR = "SIM_OPENAI_KEY"
#: every gateway polls the store once a second (here: every POLL seconds): a change shows within this
PATIENCE = 5.0
#: the gateways' poll of the store's run-time changes here (1 s by default): what is checked is that the other
#: gateway takes a change at its next poll, not how long the default interval is
POLL = 0.2


def _config(sim: OpenAISimulator, d: Path, name: str) -> dict[str, Any]:
    return {
        "server": {"master_key": MASTER_KEY, "max_retries": 0},
        "store": {"url": f"sqlite:///{d / 'modelway.db'}"},
        "usage": {"spill_path": str(d / f"spill-{name}.jsonl"), "flush_interval": 0.05},
        "models": [
            {
                "name": "gpt",
                "deployments": [{"model": "openai/gpt-4o-mini", "api_key": sim.api_key, "api_base": sim.base_url}],
            }
        ],
    }


@pytest.fixture(scope="module")
def pair(openai_sim: OpenAISimulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RunningGateway]]:
    d = tmp_path_factory.mktemp("runtime")
    env = {KEY_VAR: openai_sim.api_key}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Gateway, "runtime_poll", POLL)
        gws = [
            RunningGateway(create_app(parse_config(_config(openai_sim, d, n), env={}), env=env)).start() for n in "ab"
        ]
        yield gws
        for g in gws:
            g.stop()


def admin(gw: RunningGateway, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.request(method, gw.url + path, json=body, headers=AUTH, timeout=10)


def add(gw: RunningGateway, sim: OpenAISimulator, model_name: str, **more: Any) -> dict[str, Any]:
    """Add an openai/gpt-4o deployment on the simulator, its key read from the gateway's environment."""
    body = {"model_name": model_name, "model": "openai/gpt-4o", "api_base": sim.base_url, "api_key_env": KEY_VAR}
    r = admin(gw, "POST", "/admin/deployments", {**body, **more})
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


def chat(gw: RunningGateway, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(gw.base_url + "/chat/completions", json=body, headers=AUTH, timeout=30)


def within(seconds: float, check: Callable[[], bool]) -> float:
    """Seconds until ``check()`` held (fails after ``seconds``)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > seconds:
            pytest.fail(f"not seen within {seconds} s")
        time.sleep(0.05)
    return time.monotonic() - start


def listed(gw: RunningGateway) -> dict[str | None, dict[str, Any]]:
    data = admin(gw, "GET", "/admin/deployments").json()["data"]
    return {d["id"]: d for d in data}


def test_add_disable_enable_remove_reach_both_gateways(pair: list[RunningGateway], openai_sim: OpenAISimulator) -> None:
    one, two = pair
    assert chat(two, "fresh").status_code == 404
    dep = add(one, openai_sim, "fresh")
    assert dep["source"] == "api" and dep["state"] == "active" and dep["id"].startswith("dep_")
    # the gateway that took the change serves it at once; the other within its next poll
    first = chat(one, "fresh")
    assert first.status_code == 200 and first.headers["x-modelway-deployment"] == "openai/gpt-4o"
    assert within(PATIENCE, lambda: chat(two, "fresh").status_code == 200) < 3.0
    seen = listed(two)[dep["id"]]
    assert seen["source"] == "api" and seen["model"] == "fresh" and seen["disabled"] is False

    assert admin(one, "POST", f"/admin/deployments/{dep['id']}/disable").json()["state"] == "disabled"
    within(PATIENCE, lambda: chat(two, "fresh").status_code != 200)
    refused = chat(two, "fresh")
    assert refused.status_code == 503 and "out of rotation" in refused.json()["error"]["message"]
    assert listed(two)[dep["id"]]["disabled"] is True

    assert admin(two, "POST", f"/admin/deployments/{dep['id']}/enable").json()["state"] == "active"
    within(PATIENCE, lambda: chat(one, "fresh").status_code == 200)

    assert admin(two, "DELETE", f"/admin/deployments/{dep['id']}").status_code == 200
    within(PATIENCE, lambda: chat(one, "fresh").status_code == 404)
    assert dep["id"] not in listed(one)
    assert admin(one, "GET", f"/admin/deployments/{dep['id']}").status_code == 404


def test_a_configured_deployment_is_disabled_removed_and_reset(
    pair: list[RunningGateway], openai_sim: OpenAISimulator
) -> None:
    one, two = pair
    config_id = next(i for i, d in listed(one).items() if d["model"] == "gpt")
    assert listed(one)[config_id]["source"] == "config" and config_id.startswith("cfg_")
    other = add(one, openai_sim, "gpt")
    try:
        assert admin(two, "POST", f"/admin/deployments/{config_id}/disable").status_code == 200

        def only_the_new_one() -> bool:
            return all(chat(one, "gpt").headers.get("x-modelway-deployment") == "openai/gpt-4o" for _ in range(6))

        within(PATIENCE, only_the_new_one)
        assert listed(one)[config_id]["changed"] is True

        # removed: out of the router's view, its definition says so; reset: back as the YAML says
        assert admin(one, "DELETE", f"/admin/deployments/{config_id}").json()["state"] == "removed"
        within(PATIENCE, lambda: config_id not in listed(two))
        assert admin(two, "GET", f"/admin/deployments/{config_id}").json()["state"] == "removed"
        reset = admin(two, "POST", f"/admin/deployments/{config_id}/reset").json()
        assert reset["state"] == "active" and reset["changed"] is False
        within(PATIENCE, lambda: config_id in listed(one) and listed(one)[config_id]["disabled"] is False)
    finally:
        admin(one, "DELETE", f"/admin/deployments/{other['id']}")


def test_an_alias_change_reaches_the_other_gateway(pair: list[RunningGateway], openai_sim: OpenAISimulator) -> None:
    one, two = pair
    r = admin(one, "PATCH", "/admin/aliases/gpt", {"routing": {"strategy": "priority", "max_attempts": 2}})
    assert r.status_code == 200, r.text
    try:
        within(PATIENCE, lambda: all(d["strategy"] == "priority" for d in listed(two).values() if d["model"] == "gpt"))
        assert r.json()["source"] == "config" and r.json()["changed"] is True
    finally:
        assert admin(one, "POST", "/admin/aliases/gpt/reset").json()["changed"] is False
    within(PATIENCE, lambda: all(d["strategy"] == "weighted" for d in listed(two).values() if d["model"] == "gpt"))

    # a new model with its routing, then its deployment; removing the model takes its deployments out
    assert admin(two, "POST", "/admin/aliases", {"name": "team", "routing": {"strategy": "latency"}}).status_code == 201
    dep = add(two, openai_sim, "team")
    within(PATIENCE, lambda: chat(one, "team").status_code == 200)
    assert listed(one)[dep["id"]]["strategy"] == "latency"
    assert admin(one, "DELETE", "/admin/aliases/team").json()["state"] == "removed"
    within(PATIENCE, lambda: chat(two, "team").status_code == 404)


def test_a_request_in_flight_keeps_its_deployment(pair: list[RunningGateway], openai_sim: OpenAISimulator) -> None:
    one, _ = pair
    dep = add(one, openai_sim, "slow")
    openai_sim.push(Fault.slow_first_byte(1.5))
    answers: list[httpx.Response] = []
    t = threading.Thread(target=lambda: answers.append(chat(one, "slow")))
    t.start()
    within(PATIENCE, lambda: len(openai_sim.requests) >= 1)  # the request reached the upstream
    assert admin(one, "DELETE", f"/admin/deployments/{dep['id']}").status_code == 200
    assert chat(one, "slow").status_code == 404  # removed for new requests at once on this gateway ...
    t.join(10)
    assert answers and answers[0].status_code == 200  # ... while the one in flight finished where it was
    assert answers[0].headers["x-modelway-deployment"] == "openai/gpt-4o"


def test_bad_input_is_a_400_naming_the_field(pair: list[RunningGateway]) -> None:
    one, _ = pair
    cases = [
        ("POST", "/admin/deployments", {"model_name": "x", "model": "openai/gpt-4o", "weight": -1}, "weight"),
        ("POST", "/admin/deployments", {"model_name": "x", "model": "nowhere/gpt"}, "model"),
        ("POST", "/admin/deployments", {"model": "openai/gpt-4o"}, "model_name"),
        ("POST", "/admin/deployments", {"model_name": "x", "model": "openai/gpt-4o", "colour": 1}, "colour"),
        ("POST", "/admin/deployments", {"model_name": "x", "model": "openai/gpt-4o", "api_key_env": "NOT_SET_HERE"},
         "api_key_env"),
        ("PATCH", "/admin/aliases/gpt", {"routing": {"strategy": "fastest"}}, "routing.strategy"),
        ("PATCH", "/admin/aliases/gpt", {"routing": {"circuit": {"failures": 0}}}, "routing.circuit"),
        ("POST", "/admin/aliases", {"name": "y", "merge_system": "yes"}, "merge_system"),
    ]  # fmt: skip
    for method, path, body, param in cases:
        r = admin(one, method, path, body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["param"] == param, r.text
    assert admin(one, "PATCH", "/admin/deployments/dep_nope", {"weight": 2}).status_code == 404
    assert admin(one, "POST", "/admin/aliases", {"name": "gpt"}).status_code == 409
    assert admin(one, "PUT", "/admin/deployments").status_code == 405
    assert admin(one, "GET", "/admin/deployments/x/explode").status_code == 404
    assert httpx.post(one.url + "/admin/deployments", json={}, timeout=10).status_code == 401


def test_keys_given_to_the_api_never_come_back(pair: list[RunningGateway], openai_sim: OpenAISimulator) -> None:
    one, two = pair
    secret = openai_sim.api_key  # the simulator checks it: the stored key is the one used
    dep = add(one, openai_sim, "keyed", api_key=secret, api_key_env=None)
    try:
        assert dep["spec"]["api_key"] in ("****", "****" + secret[-4:])
        for gw in pair:
            for path in ("/admin/deployments", "/admin/aliases", f"/admin/deployments/{dep['id']}"):
                text = admin(gw, "GET", path).text
                assert secret not in text, path
        within(PATIENCE, lambda: chat(two, "keyed").status_code == 200)
    finally:
        admin(one, "DELETE", f"/admin/deployments/{dep['id']}")


async def test_a_registered_worker_stays_beside_the_stores_changes(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'mw.db'}"},
            "cluster": {"controller": True},
            "models": [{"name": "chat", "deployments": [{"model": "openai/gpt-4o-mini", "api_key": "sk-x"}]}],
        },
        env={},
    )
    gw = Gateway(cfg, env={})
    store = SQLStore(cfg.store.url or "")
    await store.open()
    try:
        assert gw.cluster is not None
        gw.runtime = changes = RuntimeChanges(store, cfg, {})
        worker = WorkerInfo("w1", "dbgpt", "http://127.0.0.1:9", ("chat",))
        gw.cluster._apply([worker])
        assert [d.adapter.name for d in gw.router.groups["chat"].deployments] == ["openai", "dbgpt-worker"]
        config_dep = gw.router.groups["chat"].deployments[0]

        added = await changes.add_deployment({"model_name": "chat", "model": "deepseek/deepseek-chat", "api_key": "k"})
        await changes.set_disabled(gw.source_of[config_dep][0], True)
        assert await gw.sync_runtime()
        deps = gw.router.groups["chat"].deployments
        assert [d.adapter.name for d in deps] == ["openai", "deepseek", "dbgpt-worker"]
        # the configured deployment is the same object (its statistics and circuit kept), now disabled
        assert deps[0] is config_dep and config_dep.disabled
        sources = {e["deployment"]: e["source"] for e in gw.deployments()}
        assert sources == {
            "openai/gpt-4o-mini": "config",
            "deepseek/deepseek-chat": "api",
            "dbgpt-worker/chat": "dbgpt",
        }
        assert not await gw.sync_runtime()  # nothing changed: one row read, nothing applied

        # the worker's own sync keeps the store's deployments; removing the model leaves the worker serving it
        gw.cluster._apply([worker])
        assert [d.adapter.name for d in gw.router.groups["chat"].deployments] == ["openai", "deepseek", "dbgpt-worker"]
        await changes.remove_alias("chat")
        await gw.sync_runtime()
        assert [d.adapter.name for d in gw.router.groups["chat"].deployments] == ["dbgpt-worker"]
        await changes.remove_deployment(added.id)
    finally:
        await store.aclose()
        await gw.aclose()


def test_the_router_view_keeps_its_fields(pair: list[RunningGateway]) -> None:
    entry = next(iter(listed(pair[0]).values()))
    for name in ("model", "deployment", "provider", "upstream_model", "source", "circuit", "address", "cooling"):
        assert name in entry
    assert orjson.loads(orjson.dumps(entry))["id"].startswith("cfg_")
