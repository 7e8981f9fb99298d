"""The gateway driven by the official openai SDK, with providers served by the simulators."""

from __future__ import annotations

import openai
import pytest
from gw import MASTER_KEY, RunningGateway

from modelway.testing import DashScopeSimulator, Fault, OpenAISimulator, Reply, ZhipuSimulator


def sdk(gw: RunningGateway, key: str = MASTER_KEY) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=gw.base_url, max_retries=0)


class TestChat:
    @pytest.mark.parametrize("model", ["glm", "qwen", "gpt"])
    def test_non_stream(self, gateway: RunningGateway, model: str) -> None:
        with sdk(gateway) as c:
            r = c.chat.completions.create(model=model, messages=[{"role": "user", "content": "你好"}])
        assert r.choices[0].message.content == "You said: 你好"
        assert r.model == model and r.choices[0].finish_reason == "stop"
        assert r.usage is not None and r.usage.total_tokens > 0

    @pytest.mark.parametrize("model", ["glm", "qwen", "gpt"])
    def test_stream_with_usage(self, gateway: RunningGateway, model: str) -> None:
        with sdk(gateway) as c:
            chunks = list(
                c.chat.completions.create(
                    model=model,
                    messages=[{"role": "user", "content": "流式 stream"}],
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert text == "You said: 流式 stream"
        assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
        assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"
        assert len({ch.id for ch in chunks}) == 1

    def test_stream_without_usage_has_none(self, gateway: RunningGateway) -> None:
        with sdk(gateway) as c:
            chunks = list(
                c.chat.completions.create(model="glm", messages=[{"role": "user", "content": "x"}], stream=True)
            )
        assert all(ch.usage is None for ch in chunks) and all(ch.choices for ch in chunks)

    def test_params_reach_the_provider(self, gateway: RunningGateway, openai_sim: OpenAISimulator) -> None:
        with sdk(gateway) as c:
            c.chat.completions.create(
                model="gpt",
                messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
                temperature=0,
                top_p=0,
                max_tokens=7,
                seed=3,
                stop=["\n"],
                n=1,
                response_format={"type": "json_object"},
                extra_body={"top_k": 4},
            )
        body = openai_sim.requests[-1].json
        assert body["temperature"] == 0 and body["top_p"] == 0 and body["max_tokens"] == 7 and body["seed"] == 3
        assert body["stop"] == ["\n"] and body["top_k"] == 4 and body["response_format"] == {"type": "json_object"}
        assert body["messages"][0] == {"role": "system", "content": "be brief"}
        assert body["model"] == "gpt-4o-mini"

    @pytest.mark.parametrize("model", ["glm", "gpt", "qwen"])
    def test_tool_calls_stream(
        self,
        gateway: RunningGateway,
        model: str,
        zhipu_sim: ZhipuSimulator,
        openai_sim: OpenAISimulator,
        dashscope_sim: DashScopeSimulator,
    ) -> None:
        sim = {"glm": zhipu_sim, "gpt": openai_sim, "qwen": dashscope_sim}[model]
        sim.push(Reply(tool_calls=[{"name": "get_weather", "arguments": '{"city": "杭州"}'}]))
        tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
        with sdk(gateway) as c:
            chunks = list(
                c.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "天气"}], tools=tools, stream=True
                )
            )
        frags = [t for ch in chunks if ch.choices for t in (ch.choices[0].delta.tool_calls or [])]
        assert frags[0].function is not None and frags[0].function.name == "get_weather" and frags[0].id
        assert "".join(f.function.arguments or "" for f in frags if f.function) == '{"city": "杭州"}'
        assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "tool_calls"

    def test_tool_calls_non_stream(self, gateway: RunningGateway, zhipu_sim: ZhipuSimulator) -> None:
        zhipu_sim.push(Reply(tool_calls=[{"name": "f", "arguments": '{"a": 1}'}]))
        with sdk(gateway) as c:
            r = c.chat.completions.create(
                model="glm",
                messages=[{"role": "user", "content": "x"}],
                tools=[{"type": "function", "function": {"name": "f"}}],
            )
        tc = r.choices[0].message.tool_calls
        assert tc and tc[0].function.name == "f" and tc[0].function.arguments == '{"a": 1}'
        assert r.choices[0].finish_reason == "tool_calls"


class TestAsync:
    async def test_async_stream_and_non_stream(self, gateway: RunningGateway) -> None:
        async with openai.AsyncOpenAI(api_key=MASTER_KEY, base_url=gateway.base_url, max_retries=0) as c:
            r = await c.chat.completions.create(model="qwen", messages=[{"role": "user", "content": "a"}])
            assert r.choices[0].message.content == "You said: a"
            stream = await c.chat.completions.create(
                model="glm", messages=[{"role": "user", "content": "b"}], stream=True
            )
            text = "".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices])
        assert text == "You said: b"


class TestEmbeddingsAndModels:
    def test_embeddings_float_and_base64(self, gateway: RunningGateway) -> None:
        with sdk(gateway) as c:
            b64 = c.embeddings.create(model="embed", input=["你好", "world"])  # the SDK asks base64 by default
            flt = c.embeddings.create(model="embed", input=["你好", "world"], encoding_format="float")
        assert len(b64.data) == 2 and len(b64.data[0].embedding) == 8
        assert b64.data[0].embedding == pytest.approx(flt.data[0].embedding)
        assert b64.data[0].embedding != b64.data[1].embedding

    def test_models(self, gateway: RunningGateway) -> None:
        with sdk(gateway) as c:
            ids = [m.id for m in c.models.list()]
            one = c.models.retrieve("glm")
        assert ids[:4] == ["glm", "qwen", "gpt", "embed"]
        assert one.id == "glm"


class TestErrors:
    def test_wrong_and_missing_key(self, gateway: RunningGateway) -> None:
        with sdk(gateway, key="sk-wrong") as c, pytest.raises(openai.AuthenticationError) as ei:
            c.chat.completions.create(model="glm", messages=[{"role": "user", "content": "x"}])
        assert ei.value.code == "invalid_api_key"

    def test_unknown_model_is_404(self, gateway: RunningGateway) -> None:
        with sdk(gateway) as c, pytest.raises(openai.NotFoundError) as ei:
            c.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
        assert ei.value.code == "model_not_found"

    def test_bad_param_is_400_naming_the_field(self, gateway: RunningGateway) -> None:
        with sdk(gateway) as c, pytest.raises(openai.BadRequestError) as ei:
            c.chat.completions.create(model="glm", messages=[{"role": "user", "content": "x"}], temperature=5)
        assert ei.value.param == "temperature"

    def test_upstream_rate_limit_is_429_with_retry_after(
        self, gateway: RunningGateway, zhipu_sim: ZhipuSimulator
    ) -> None:
        zhipu_sim.push(Fault.http(429, retry_after=7))
        with sdk(gateway) as c, pytest.raises(openai.RateLimitError) as ei:
            c.chat.completions.create(model="glm", messages=[{"role": "user", "content": "x"}])
        assert ei.value.response.headers["retry-after"] == "7"
        assert ei.value.code == "rate_limit_exceeded"

    def test_upstream_content_filter_is_400_with_distinct_code(
        self, gateway: RunningGateway, zhipu_sim: ZhipuSimulator
    ) -> None:
        zhipu_sim.push(Fault.http(400, code="1301"))
        with sdk(gateway) as c, pytest.raises(openai.BadRequestError) as ei:
            c.chat.completions.create(model="glm", messages=[{"role": "user", "content": "x"}])
        assert ei.value.code == "content_filter"

    def test_upstream_failure_is_502(self, gateway: RunningGateway, dashscope_sim: DashScopeSimulator) -> None:
        dashscope_sim.push(Fault.http(500))
        with sdk(gateway) as c, pytest.raises(openai.InternalServerError) as ei:
            c.chat.completions.create(model="qwen", messages=[{"role": "user", "content": "x"}])
        assert ei.value.status_code == 502

    def test_error_mid_stream_raises_in_the_sdk(self, gateway: RunningGateway, openai_sim: OpenAISimulator) -> None:
        openai_sim.push(Fault.error_frame(after_chunks=2, code="server_error", message="boom"))
        with sdk(gateway) as c, pytest.raises(openai.APIError, match="boom"):
            for _ in c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}], stream=True):
                pass

    def test_request_id_is_returned(self, gateway: RunningGateway) -> None:
        with sdk(gateway) as c:
            raw = c.chat.completions.with_raw_response.create(
                model="glm", messages=[{"role": "user", "content": "x"}], extra_headers={"x-request-id": "abc-123"}
            )
        assert raw.headers["x-request-id"] == "abc-123"
