"""Regression tests for the reliability defects found by trying the gateway as an attacker and an unlucky operator
would: a finish that failed half-way, unbounded metric series, keyless local providers open by default, 500s
while the store is down, upstream addresses and keys in callers' messages, models outside a key's list, a
readiness check that said too much and too little, and JSON answers to stream requests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from gw import RunningGateway
from sqlalchemy.exc import OperationalError
from test_control_plane import call, chat, cp_config, new_key

from modelway.config import parse_config
from modelway.errors import UnknownModelError
from modelway.server.gateway import Gateway
from modelway.testing import Fault, OpenAISimulator, Reply


@pytest.fixture(scope="module")
def rel(
    start_gateway: Callable[[dict[str, Any]], RunningGateway],
    openai_sim: OpenAISimulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningGateway]:
    db = tmp_path_factory.mktemp("rel") / "modelway.db"
    yield start_gateway(cp_config(openai_sim, db))


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


async def test_a_fault_while_finishing_a_request_still_frees_its_place_and_records_it(
    rel: RunningGateway, openai_sim: OpenAISimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Estimating a cut stream's usage raised (a message shape the estimator did not expect): the ticket's finish
    stopped half-way, so the key's max_parallel slot stayed taken and nothing was recorded."""
    import modelway.server.ticket as ticket_module

    def broken(messages: Any) -> tuple[int, int]:
        raise TypeError("an estimator bug")

    monkeypatch.setattr(ticket_module, "prompt_chars", broken)
    secret, key_id = await new_key(rel, max_parallel=1)
    openai_sim.push(Reply("x " * 200, chunk_size=1, chunk_delay=0.02))
    async with aiohttp.ClientSession() as s:
        r = await s.post(
            rel.url + "/v1/chat/completions", json=chat(stream=True), headers={"Authorization": f"Bearer {secret}"}
        )
        await r.content.readline()
        r.close()  # the caller hangs up: the ticket estimates the usage, which raises
    for _ in range(100):
        status, _, _ = await call(rel, "POST", "/v1/chat/completions", chat(), key=secret)
        if status == 200:
            break
        await asyncio.sleep(0.02)
    assert status == 200  # the slot came back
    await asyncio.sleep(0.2)  # the ledger flushes every 0.05 s
    _, _, records = await call(rel, "GET", f"/admin/usage/records?key_id={key_id}")
    assert sorted((r["status"], r["estimated"]) for r in records["data"]) == [(200, False), (499, False)]


async def test_failed_attempts_at_made_up_deployments_do_not_grow_the_metric_series(
    rel: RunningGateway, openai_sim: OpenAISimulator
) -> None:
    openai_sim.push(*[Fault.http(500) for _ in range(60)])
    for i in range(60):
        status, _, _ = await call(rel, "POST", "/v1/chat/completions", chat(f"openai/nonsense-{i}"))
        assert status == 502
    _, _, text = await call(rel, "GET", "/metrics")
    failures = [line for line in text.splitlines() if line.startswith("modelway_deployment_failures_total{")]
    assert failures and not any("nonsense" in line for line in failures)
    assert any('deployment="openai/(other)"' in line for line in failures)


class TestDirectAddressing:
    def test_keyless_local_providers_are_not_served_unless_the_operator_configured_them(self) -> None:
        aliases_only = {"models": [{"name": "m", "deployments": [{"model": "openai/x", "api_key": "k"}]}]}
        gw = Gateway(parse_config(aliases_only, env={}), env={})
        for model in ("ollama/llama3", "vllm/qwen", "openai/gpt-4o"):
            with pytest.raises(UnknownModelError):
                gw.router.group(model)
        assert [m.id for m in gw.models()] == ["m"]

    @pytest.mark.parametrize(
        ("config", "env"),
        [
            ({"providers": {"ollama": {"base_url": "http://10.0.0.5:11434/v1"}}}, {}),
            ({}, {"OLLAMA_BASE_URL": "http://10.0.0.5:11434/v1"}),
        ],
    )
    def test_a_configured_local_provider_is_served(self, config: dict[str, Any], env: dict[str, str]) -> None:
        gw = Gateway(parse_config(config, env={}), env=env)
        assert gw.router.group("ollama/llama3").deployments[0].address == "ollama/llama3"


class TestStoreDown:
    async def test_the_admin_api_answers_503(self, rel: RunningGateway, monkeypatch: pytest.MonkeyPatch) -> None:
        app_gw = rel.app.gateway
        assert app_gw is not None and app_gw.control.store is not None

        async def down(**kwargs: Any) -> Any:
            raise OperationalError("SELECT", {}, ConnectionRefusedError("connection refused"))

        monkeypatch.setattr(app_gw.control.store, "list_keys", down)
        status, _, body = await call(rel, "GET", "/admin/keys")
        assert status == 503 and body["error"]["type"] == "unavailable", body

    async def test_readiness_is_503_degraded_and_names_the_store(
        self, rel: RunningGateway, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        app_gw = rel.app.gateway
        assert app_gw is not None and app_gw.control.store is not None

        async def down() -> None:
            raise OSError("connection refused")

        monkeypatch.setattr(app_gw.control.store, "ping", down)
        monkeypatch.setattr(app_gw.control, "_health", None)
        async with aiohttp.ClientSession() as s, s.get(rel.url + "/health/readiness") as r:
            assert r.status == 503
            assert await r.json() == {"status": "degraded", "checks": {"store": "down"}}


class TestReadiness:
    async def test_callers_without_the_master_key_see_no_internals(self, rel: RunningGateway) -> None:
        async with aiohttp.ClientSession() as s, s.get(rel.url + "/health/readiness") as r:
            assert r.status == 200
            assert await r.json() == {"status": "ready", "checks": {"store": "ok"}}

    async def test_the_master_key_sees_the_counts(self, rel: RunningGateway) -> None:
        status, _, body = await call(rel, "GET", "/health/readiness")
        assert status == 200 and body["status"] == "ready" and "keys" in body and "usage_pending" in body

    async def test_a_draining_gateway_is_not_ready(self, rel: RunningGateway) -> None:
        rel.app.lifecycle.draining = True
        try:
            async with aiohttp.ClientSession() as s, s.get(rel.url + "/health/readiness") as r:
                assert r.status == 503 and (await r.json())["status"] == "draining"
        finally:
            rel.app.lifecycle.draining = False


class TestWhatCallersSee:
    async def test_a_connection_failure_does_not_show_the_upstream_address(
        self, start_gateway: Callable[[dict[str, Any]], RunningGateway]
    ) -> None:
        port = closed_port()
        dep = {"model": "openai/m", "api_key": "sk-secret-value-1234", "api_base": f"http://127.0.0.1:{port}/v1"}
        gw = start_gateway({"server": {"max_retries": 0}, "models": [{"name": "m", "deployments": [dep]}]})
        async with aiohttp.ClientSession() as s, s.post(gw.url + "/v1/chat/completions", json=chat("m")) as r:
            body = await r.json()
        assert r.status == 502
        message = body["error"]["message"]
        assert "connection refused" in message
        assert "127.0.0.1" not in message and str(port) not in message

    async def test_an_upstream_refusing_the_key_is_told_without_the_key(
        self, rel: RunningGateway, openai_sim: OpenAISimulator
    ) -> None:
        quoted = "Incorrect API key provided: sk-proj-****************************WXYZ. You can find your API key..."
        openai_sim.push(Fault.http(401, code="invalid_api_key", message=quoted))
        status, _, body = await call(rel, "POST", "/v1/chat/completions", chat())
        assert status == 502 and body["error"]["code"] == "upstream_authentication_failed"
        assert "WXYZ" not in body["error"]["message"] and "sk-proj" not in body["error"]["message"]

    async def test_key_like_text_in_other_upstream_errors_is_masked(
        self, rel: RunningGateway, openai_sim: OpenAISimulator
    ) -> None:
        openai_sim.push(Fault.http(400, message="bad request from key sk-abcdef123456 (****9876)"))
        status, _, body = await call(rel, "POST", "/v1/chat/completions", chat())
        assert status == 400
        assert "sk-abcdef123456" not in body["error"]["message"] and "9876" not in body["error"]["message"]

    async def test_a_model_outside_the_key_s_list_does_not_exist_for_it(self, rel: RunningGateway) -> None:
        secret, _ = await new_key(rel, models=["gpt"])
        assert (await call(rel, "GET", "/v1/models/gpt", key=secret))[0] == 200
        status, _, body = await call(rel, "GET", "/v1/models/free", key=secret)
        assert status == 404 and body["error"]["code"] == "model_not_found"


class TestJsonForAStream:
    async def test_a_whole_answer_becomes_a_stream(self, rel: RunningGateway, openai_sim: OpenAISimulator) -> None:
        openai_sim.push(Fault.json_for_stream(Reply("whole answer")))
        status, _, text = await call(rel, "POST", "/v1/chat/completions", chat(stream=True))
        assert status == 200 and '"content":"whole answer"' in text and text.rstrip().endswith("data: [DONE]")

    async def test_an_error_answered_with_200_keeps_its_message(
        self, rel: RunningGateway, openai_sim: OpenAISimulator
    ) -> None:
        body = '{"error": {"message": "your account balance is too low", "code": "insufficient_quota"}}'
        openai_sim.push(Fault.content_type("application/json", body))
        status, _, answer = await call(rel, "POST", "/v1/chat/completions", chat(stream=True))
        assert status >= 400 and "balance is too low" in answer["error"]["message"]
        assert "HTTP 200" not in answer["error"]["message"]


def test_the_gateway_s_journal_defaults_beside_the_spill_file(tmp_path: Path) -> None:
    cfg = parse_config({"usage": {"spill_path": str(tmp_path / "x" / "spill.jsonl")}}, env={})
    assert cfg.usage.journal_path == str(tmp_path / "x" / "modelway-usage-journal")
    assert parse_config({"usage": {"journal": False}}, env={}).usage.journal_path is None
