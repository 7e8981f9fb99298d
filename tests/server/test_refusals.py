"""Requests the gateway refuses itself, before any ticket admits them (bad JSON, a field out of range, no route, a
wrong method, a body too large, a wrong key, a key that may not): each is counted in ``modelway_requests_total``
under a bounded endpoint label (``other`` for a path no route has, never the path) and has its usage record, with
the key when it was known."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest
from gw import MASTER_KEY, RunningGateway
from prometheus_client.parser import text_string_to_metric_families

from modelway.testing import OpenAISimulator

LEAKY = "/v1/sk-this-path-is-a-secret/whatever"


@pytest.fixture(scope="module")
def refusing(
    start_gateway: Callable[[dict[str, Any]], RunningGateway],
    openai_sim: OpenAISimulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> RunningGateway:
    tmp = tmp_path_factory.mktemp("refusals")
    dep = {"model": "openai/gpt-4o-mini", "api_key": openai_sim.api_key, "api_base": openai_sim.base_url}
    return start_gateway(
        {
            "server": {"master_key": MASTER_KEY, "max_retries": 0, "max_body_bytes": 2048},
            "store": {"url": f"sqlite:///{tmp / 'gw.db'}"},
            "usage": {"flush_interval": 0.05, "spill_path": str(tmp / "spill.jsonl")},
            "models": [{"name": "gpt", "deployments": [dep]}],
        }
    )


async def send(
    gw: RunningGateway, method: str, path: str, *, key: str = MASTER_KEY, body: Any = None, raw: bytes | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
    async with aiohttp.ClientSession() as s, s.request(method, gw.url + path, data=data, headers=headers) as r:
        payload = await r.read()
        return r.status, orjson.loads(payload) if payload else None


def requests_total(text: str) -> dict[tuple[str, str, str], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "modelway_requests_total":
                out[(s.labels["model"], s.labels["endpoint"], s.labels["status"])] = s.value
    return out


async def test_refusals_are_counted_and_recorded(refusing: RunningGateway) -> None:
    gw = refusing
    status, made = await send(gw, "POST", "/admin/keys", body={"name": "limited"})
    assert status == 201
    virtual, key_id = made["key"], made["id"]
    chat = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}

    expected = [
        (await send(gw, "POST", "/v1/chat/completions", raw=b"{nope"), 400, "chat"),
        (await send(gw, "POST", "/v1/chat/completions", body={"model": "gpt"}), 400, "chat"),
        (await send(gw, "POST", "/v1/chat/completions", body={**chat, "pad": "x" * 4096}), 413, "chat"),
        (await send(gw, "GET", "/v1/chat/completions"), 405, "chat"),
        (await send(gw, "POST", LEAKY, body=chat), 404, "other"),
        (await send(gw, "POST", "/v1/embeddings", key="mw-not-a-key-at-all-000000"), 401, "embeddings"),
        (await send(gw, "GET", "/admin/keys", key=virtual), 403, "admin"),
        (await send(gw, "GET", "/v1/models/nothing-like-it"), 404, "models"),
        (await send(gw, "POST", "/v1/chat/completion", key="", body=chat), 404, "other"),  # no key at all
    ]
    for (got, _), want, _ in expected:
        assert got == want

    async with aiohttp.ClientSession() as s, s.get(gw.url + "/metrics") as r:
        text = await r.text()
    counts = requests_total(text)
    for status, endpoint in [(400, "chat"), (413, "chat"), (405, "chat"), (404, "other"), (401, "embeddings"),
                             (403, "admin"), (404, "models")]:  # fmt: skip
        assert counts[("(unknown)", endpoint, str(status))] >= 1, (status, endpoint, counts)
    assert counts[("(unknown)", "chat", "400")] == 2
    assert "sk-this-path" not in text and "whatever" not in text  # a path is never a label

    records: list[dict[str, Any]] = []
    for _ in range(100):  # the ledger writes in batches
        status, page = await send(gw, "GET", "/admin/usage/records?limit=100")
        records = [r for r in page["data"] if r["model"] == "(unknown)"]
        if len(records) >= len(expected) - 2:  # (the refusals of callers without a good key are not recorded)
            break
        await asyncio.sleep(0.05)
    by_status = sorted((r["status"], r["endpoint"], r["error"]) for r in records)
    assert by_status == sorted(
        [
            (400, "chat", "invalid_json"),
            (400, "chat", "invalid_request_error"),
            (413, "chat", "request_too_large"),
            (405, "chat", "method_not_allowed"),
            (404, "other", "not_found"),
            (403, "admin", "admin_only"),
            (404, "models", "model_not_found"),
        ]
    ), by_status
    forbidden = next(r for r in records if r["status"] == 403)
    assert forbidden["key_id"] == key_id  # the key was known: its record says so
    assert counts[("(unknown)", "other", "404")] == 2  # counted, the keyless one too, and recorded only once:
    assert sum(r["status"] == 404 and r["endpoint"] == "other" for r in records) == 1  # anyone can send 404s
    assert all(r["deployment"] is None and r["total_tokens"] == 0 for r in records)


async def test_an_admitted_request_is_counted_once(refusing: RunningGateway, openai_sim: OpenAISimulator) -> None:
    """A request the control plane refused (its ticket counted it) is not counted a second time by the app."""
    gw = refusing
    status, made = await send(gw, "POST", "/admin/keys", body={"name": "only-other", "models": ["other-model"]})
    assert status == 201
    async with aiohttp.ClientSession() as s, s.get(gw.url + "/metrics") as r:
        before = requests_total(await r.text())
    status, _ = await send(
        gw, "POST", "/v1/chat/completions", key=made["key"], body={"model": "gpt", "messages": [{"role": "user",
                                                                                                  "content": "x"}]}
    )  # fmt: skip
    assert status == 403
    async with aiohttp.ClientSession() as s, s.get(gw.url + "/metrics") as r:
        after = requests_total(await r.text())
    changed = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    assert changed == {("gpt", "chat", "403"): 1}


def test_every_refusal_label_is_a_known_endpoint() -> None:
    from modelway.server.app import GatewayApp
    from modelway.usage.records import ENDPOINTS

    for path in ("/v1/chat/completions", "/v1/responses/abc", "/v1/models/x", "/admin/keys", "/x/y", "/metrics"):
        assert GatewayApp._endpoint(path) in ENDPOINTS
