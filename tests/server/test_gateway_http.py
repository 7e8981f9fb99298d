"""Raw HTTP behaviour of the gateway: error statuses and bodies, limits, routing, failover, system prompts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from gw import MASTER_KEY, RunningGateway

import modelway
from modelway.testing import Fault, OpenAISimulator, ZhipuSimulator

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


async def post(
    gw: RunningGateway, path: str, body: bytes | dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    h = {**AUTH, "Content-Type": "application/json", **(headers or {})}
    async with aiohttp.ClientSession() as s:
        kw: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"json": body}
        async with s.post(gw.url + path, headers=h, **kw) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.json(content_type=None)


def chat(model: str = "gpt", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


class TestErrors:
    async def test_invalid_json_is_400(self, gateway: RunningGateway) -> None:
        status, _, body = await post(gateway, "/v1/chat/completions", b"{not json")
        assert status == 400 and body["error"]["code"] == "invalid_json"
        assert set(body["error"]) >= {"message", "type", "param", "code"}

    async def test_missing_field_names_it(self, gateway: RunningGateway) -> None:
        status, _, body = await post(gateway, "/v1/chat/completions", {"model": "gpt"})
        assert status == 400 and body["error"]["param"] == "messages"
        status, _, body = await post(gateway, "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]})
        assert status == 400 and body["error"]["param"] == "model"
        status, _, body = await post(gateway, "/v1/chat/completions", chat(messages=[{"role": "bot", "content": "x"}]))
        assert status == 400 and body["error"]["param"] == "messages[0].role"

    @pytest.mark.parametrize(
        ("path", "body", "param"),
        [
            (
                "/v1/chat/completions",
                {"model": "gpt", "stream": True, "stream_options": "x", "messages": [{"role": "user", "content": "x"}]},
                "stream_options",
            ),
            (
                "/v1/chat/completions",
                {"model": "gpt", "messages": [{"role": ["user"], "content": "x"}]},
                "messages[0].role",
            ),
            (
                "/v1/chat/completions",
                {"model": "gpt", "tools": ["f"], "messages": [{"role": "user", "content": "x"}]},
                "tools",
            ),
            ("/api/v2/chat/completions", {"model": "gpt", "messages": "x", "stream": "false"}, "stream"),
        ],
    )
    async def test_malformed_fields_are_400_not_500(
        self, gateway: RunningGateway, path: str, body: dict[str, Any], param: str
    ) -> None:
        status, _, resp = await post(gateway, path, body)
        assert status == 400 and resp["error"]["param"] == param

    async def test_embeddings_on_a_chat_only_provider_is_400(
        self, start_gateway: Callable[[dict[str, Any]], RunningGateway]
    ) -> None:
        gw = start_gateway(one_model("kimi", "moonshot/moonshot-v1-8k", "sk-x", "http://127.0.0.1:9/v1"))
        status, _, body = await post(gw, "/v1/embeddings", {"model": "kimi", "input": "x"})
        assert status == 400 and body["error"]["code"] == "embeddings_not_supported"

    async def test_body_over_limit_is_413(
        self, start_gateway: Callable[[dict[str, Any]], RunningGateway], openai_sim: OpenAISimulator
    ) -> None:
        gw = start_gateway(
            one_model("gpt", "openai/m", openai_sim.api_key, openai_sim.base_url, server={"max_body_bytes": 1000})
        )
        status, _, body = await post(
            gw, "/v1/chat/completions", chat(messages=[{"role": "user", "content": "x" * 2000}])
        )
        assert status == 413 and body["error"]["code"] == "request_too_large"
        assert openai_sim.requests == []

    async def test_upstream_timeout_is_504(
        self,
        gateway: RunningGateway,
        zhipu_sim: ZhipuSimulator,
        start_gateway: Callable[[dict[str, Any]], RunningGateway],
    ) -> None:
        gw = start_gateway(
            one_model(
                "slow", "zhipu/glm-4", zhipu_sim.api_key, zhipu_sim.base_url, server={"max_retries": 0}, timeout=0.2
            )
        )
        zhipu_sim.push(Fault.slow_first_byte(1.0))
        status, headers, body = await post(gw, "/v1/chat/completions", chat("slow"))
        assert status == 504 and body["error"]["type"] == "timeout_error"
        assert body["error"]["request_id"] == headers["x-request-id"]

    async def test_unknown_route_and_method(self, gateway: RunningGateway) -> None:
        status, _, body = await post(gateway, "/v1/nothing", chat())
        assert status == 404 and body["error"]["code"] == "not_found"
        async with aiohttp.ClientSession() as s:
            async with s.get(gateway.url + "/v1/chat/completions", headers=AUTH) as r:
                assert r.status == 405 and r.headers["Allow"] == "POST"
            async with s.post(gateway.url + "/health/liveness") as r:
                assert r.status == 405 and r.headers["Allow"] == "GET, HEAD"

    async def test_stream_error_before_first_chunk_is_a_plain_http_error(
        self, gateway: RunningGateway, openai_sim: OpenAISimulator
    ) -> None:
        openai_sim.push(Fault.http(429, retry_after=2))
        status, headers, body = await post(gateway, "/v1/chat/completions", chat(stream=True))
        assert status == 429 and headers["retry-after"] == "2" and body["error"]["code"] == "rate_limit_exceeded"

    async def test_upstream_auth_failure_is_not_the_callers_401(
        self, gateway: RunningGateway, openai_sim: OpenAISimulator
    ) -> None:
        openai_sim.push(Fault.http(401))
        status, _, body = await post(gateway, "/v1/chat/completions", chat())
        assert status == 502 and body["error"]["code"] == "upstream_authentication_failed"

    async def test_health_and_openapi_need_no_key(self, gateway: RunningGateway) -> None:
        async with aiohttp.ClientSession() as s:
            for path in ("/health/liveness", "/health/readiness"):
                async with s.get(gateway.url + path) as r:
                    assert r.status == 200 and (await r.json())["status"] in ("ok", "ready")
            async with s.get(gateway.url + "/openapi.json") as r:
                spec = await r.json()
        assert spec["openapi"].startswith("3.") and "/v1/chat/completions" in spec["paths"]
        assert spec["security"] == [{"bearer": []}, {"apiKey": []}]  # this gateway has a master key
        assert "/api/v2/chat/completions" in spec["paths"]


@pytest.fixture
def two_sims() -> Iterator[tuple[OpenAISimulator, OpenAISimulator]]:
    with OpenAISimulator() as a, OpenAISimulator() as b:
        yield a, b


def one_model(
    name: str, model: str, api_key: str, api_base: str, *, server: dict[str, Any] | None = None, **deployment: Any
) -> dict[str, Any]:
    """A gateway config with one model ``name`` over one deployment."""
    dep = {"model": model, "api_key": api_key, "api_base": api_base, **deployment}
    return {"server": server or {}, "models": [{"name": name, "deployments": [dep]}]}


def preferring_a(a: OpenAISimulator, b: OpenAISimulator, *, b_key: str | None = None, **server: Any) -> dict[str, Any]:
    """Model ``m`` over deployment a (weight 1000: nearly always first) and b (weight 0.001)."""
    deps = [
        {"model": "openai/a", "api_key": a.api_key, "api_base": a.base_url, "weight": 1000},
        {"model": "openai/b", "api_key": b_key or b.api_key, "api_base": b.base_url, "weight": 0.001},
    ]
    return {"server": {"max_retries": 0, **server}, "models": [{"name": "m", "deployments": deps}]}


class TestRouting:
    async def test_failover_to_next_deployment(
        self,
        start_gateway: Callable[[dict[str, Any]], RunningGateway],
        two_sims: tuple[OpenAISimulator, OpenAISimulator],
    ) -> None:
        a, b = two_sims
        gw = start_gateway(preferring_a(a, b))
        a.push(Fault.http(503))
        status, _, body = await post(gw, "/v1/chat/completions", chat("m"))
        assert status == 200 and body["choices"][0]["message"]["content"] == "You said: hi"
        assert len(a.requests) == 1 and len(b.requests) == 1 and b.requests[0].json["model"] == "b"
        # the failed deployment cools down: the next request goes to b although a weighs far more
        status, _, _ = await post(gw, "/v1/chat/completions", chat("m"))
        assert status == 200 and len(a.requests) == 1 and len(b.requests) == 2

    async def test_stream_fails_over_before_first_chunk(
        self,
        start_gateway: Callable[[dict[str, Any]], RunningGateway],
        two_sims: tuple[OpenAISimulator, OpenAISimulator],
    ) -> None:
        a, b = two_sims
        gw = start_gateway(preferring_a(a, b, cooldown=0))
        a.push(Fault.http(429))
        async with modelway.AsyncClient(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0) as client:
            stream = await client.chat("m", "hi", stream=True)
            text = "".join([c.content or "" async for c in stream])
        assert text == "You said: hi" and len(a.requests) == 1 and len(b.requests) == 1

    async def test_all_deployments_failing_is_an_error_not_an_empty_stream(
        self,
        start_gateway: Callable[[dict[str, Any]], RunningGateway],
        two_sims: tuple[OpenAISimulator, OpenAISimulator],
    ) -> None:
        a, b = two_sims
        gw = start_gateway(preferring_a(a, b, b_key="sk-wrong-key"))
        a.push(Fault.http(429))
        # a is rate limited, b refuses the key: the last failure decides the status
        async with (
            aiohttp.ClientSession() as s,
            s.post(gw.url + "/v1/chat/completions", headers=AUTH, json=chat("m", stream=True)) as r,
        ):
            assert r.status == 502
            body = await r.json()
        assert body["error"]["code"] == "upstream_authentication_failed"
        assert "all 2 deployments" in body["error"]["message"]

    async def test_bad_request_does_not_fail_over(
        self,
        start_gateway: Callable[[dict[str, Any]], RunningGateway],
        two_sims: tuple[OpenAISimulator, OpenAISimulator],
    ) -> None:
        a, b = two_sims
        gw = start_gateway(preferring_a(a, b))
        a.push(Fault.http(400, code="context_length_exceeded"))
        status, _, body = await post(gw, "/v1/chat/completions", chat("m"))
        assert status == 400 and body["error"]["type"] == "context_length_exceeded"
        assert len(b.requests) == 0

    async def test_system_prompt_and_merge(
        self, start_gateway: Callable[[dict[str, Any]], RunningGateway], openai_sim: OpenAISimulator
    ) -> None:
        dep = {"model": "openai/m", "api_key": openai_sim.api_key, "api_base": openai_sim.base_url}
        gw = start_gateway(
            {
                "models": [
                    {"name": "with-prompt", "system_prompt": "Be brief.", "deployments": [dep]},
                    {
                        "name": "no-system-role",
                        "system_prompt": "Be brief.",
                        "merge_system": True,
                        "deployments": [dep],
                    },
                ]
            }
        )
        await post(gw, "/v1/chat/completions", chat("with-prompt"))
        assert openai_sim.requests[-1].json["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ]
        await post(
            gw,
            "/v1/chat/completions",
            {
                "model": "with-prompt",
                "messages": [{"role": "system", "content": "mine"}, {"role": "user", "content": "hi"}],
            },
        )
        assert openai_sim.requests[-1].json["messages"][0] == {"role": "system", "content": "mine"}
        await post(gw, "/v1/chat/completions", chat("no-system-role"))
        assert openai_sim.requests[-1].json["messages"] == [{"role": "user", "content": "Be brief.\n\nhi"}]

    async def test_deployment_params_are_defaults(
        self, start_gateway: Callable[[dict[str, Any]], RunningGateway], openai_sim: OpenAISimulator
    ) -> None:
        gw = start_gateway(
            one_model("m", "openai/m", openai_sim.api_key, openai_sim.base_url, params={"temperature": 0.2, "top_k": 5})
        )
        await post(gw, "/v1/chat/completions", chat("m"))
        assert openai_sim.requests[-1].json["temperature"] == 0.2 and openai_sim.requests[-1].json["top_k"] == 5
        await post(gw, "/v1/chat/completions", chat("m", temperature=0))
        assert openai_sim.requests[-1].json["temperature"] == 0

    async def test_direct_provider_model_with_env_keys(
        self, start_gateway: Callable[[dict[str, Any]], RunningGateway], zhipu_sim: ZhipuSimulator
    ) -> None:
        from gw import RunningGateway as RG

        from modelway.config import parse_config
        from modelway.server import create_app

        env = {"ZHIPUAI_API_KEY": zhipu_sim.api_key, "ZHIPUAI_BASE_URL": zhipu_sim.base_url}
        gw = RG(create_app(parse_config({}, env=env), env=env)).start()
        try:
            status, _, body = await post(gw, "/v1/chat/completions", chat("zhipu/glm-4-flash"))
            assert status == 200 and body["model"] == "zhipu/glm-4-flash"
            status, _, body = await post(gw, "/v1/chat/completions", chat("dashscope/qwen-plus"))
            assert status == 404  # no DashScope key: not served
        finally:
            gw.stop()

    async def test_a_direct_model_name_with_control_characters_is_no_model(self, zhipu_sim: ZhipuSimulator) -> None:
        # it used to reach the provider and then fail as a 500: the name went out in x-modelway-deployment
        from gw import RunningGateway as RG

        from modelway.config import parse_config
        from modelway.server import create_app

        env = {"ZHIPUAI_API_KEY": zhipu_sim.api_key, "ZHIPUAI_BASE_URL": zhipu_sim.base_url}
        gw = RG(create_app(parse_config({}, env=env), env=env)).start()
        try:
            calls = len(zhipu_sim.requests)
            for model in ("zhipu/glm-4-flash\r\nX-Injected: 1", "zhipu/glm\x00", "zhipu/glm\x7f"):
                status, headers, body = await post(gw, "/v1/chat/completions", chat(model))
                assert status == 404 and body["error"]["code"] == "model_not_found", (model, body)
                assert "x-injected" not in headers
            assert len(zhipu_sim.requests) == calls  # the provider was not asked
            status, headers, _ = await post(gw, "/v1/chat/completions", chat("zhipu/glm-四"))
            assert status == 200 and headers["x-modelway-deployment"] == "zhipu/glm-四"
        finally:
            gw.stop()


class TestLibraryAgainstGateway:
    async def test_async_client_in_gateway_mode(self, gateway: RunningGateway) -> None:
        async with modelway.AsyncClient(base_url=gateway.base_url, api_key=MASTER_KEY) as client:
            r = await client.chat("glm", "over the gateway", temperature=0)
            s = await client.chat("qwen", "流", stream=True, stream_options={"include_usage": True})
            chunks = [c async for c in s]
            e = await client.embed("embed", ["a", "b"])
            models = await client.models()
        assert r.content == "You said: over the gateway"
        assert "".join(c.content or "" for c in chunks) == "You said: 流" and chunks[-1].usage is not None
        assert len(e.data) == 2 and "glm" in [m.id for m in models]

    def test_sync_client_errors_in_gateway_mode(self, gateway: RunningGateway) -> None:
        with (
            modelway.Client(base_url=gateway.base_url, api_key="wrong", max_retries=0) as client,
            pytest.raises(modelway.ProviderError) as ei,
        ):
            client.chat("glm", "x")
        assert ei.value.status_code == 401


class TestInternalErrors:
    async def test_a_bug_is_a_logged_500_in_openai_shape(
        self,
        start_gateway: Callable[[dict[str, Any]], RunningGateway],
        openai_sim: OpenAISimulator,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        gw = start_gateway(one_model("m", "openai/m", openai_sim.api_key, openai_sim.base_url))
        assert gw.app.gateway is not None

        async def broken(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("a bug")

        monkeypatch.setattr(gw.app.gateway.router, "complete", broken)
        status, headers, body = await post(gw, "/v1/chat/completions", chat("m"))
        assert status == 500 and body["error"]["type"] == "internal_error"
        assert body["error"]["request_id"] == headers["x-request-id"]
        assert any("a bug" in (r.exc_text or "") or "internal error" in r.getMessage() for r in caplog.records)
