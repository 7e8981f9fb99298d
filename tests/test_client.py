"""modelway.Client / AsyncClient end to end against each provider's simulator: non-stream, stream, tools,
errors and faults, and regression tests for the seed code's bugs (shared/reference/dbgpt.md §4)."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import modelway
from modelway import errors
from modelway.testing import (
    AnthropicSimulator,
    BaseSimulator,
    DashScopeCompatibleSimulator,
    DashScopeSimulator,
    DeepSeekSimulator,
    Fault,
    MoonshotSimulator,
    OpenAISimulator,
    Reply,
    ZhipuSimulator,
)

# provider id, simulator class, model
CASES = [
    ("zhipu", ZhipuSimulator, "glm-4-flash"),
    ("dashscope", DashScopeSimulator, "qwen-plus"),
    ("openai", OpenAISimulator, "gpt-4o-mini"),
    ("deepseek", DeepSeekSimulator, "deepseek-chat"),
    ("moonshot", MoonshotSimulator, "moonshot-v1-8k"),
    ("dashscope-compatible", DashScopeCompatibleSimulator, "qwen-plus"),
    ("anthropic", AnthropicSimulator, "claude-haiku-4-5"),
]
IDS = [c[0] for c in CASES]


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, BaseSimulator, str]]:
    provider, cls, model = request.param
    with cls() as sim:
        yield provider, sim, model


@pytest.fixture
def case(served: tuple[str, BaseSimulator, str]) -> Iterator[tuple[BaseSimulator, modelway.Client, str]]:
    provider, sim, model = served
    sim.clear()
    with modelway.Client(
        providers={provider: {"api_key": sim.api_key, "base_url": sim.base_url}}, max_retries=0, timeout=5
    ) as client:
        yield sim, client, f"{provider}/{model}"


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


class TestEveryProvider:
    def test_non_stream(self, case: tuple[BaseSimulator, modelway.Client, str]) -> None:
        sim, client, model = case
        r = client.chat(model, "你好，世界")
        assert r.content == "You said: 你好，世界"
        assert r.choices[0].finish_reason == "stop"
        assert r.usage is not None and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0

    def test_stream(self, case: tuple[BaseSimulator, modelway.Client, str]) -> None:
        sim, client, model = case
        sim.push(Reply("流式输出，一个一个字", chunk_size=2))
        chunks = list(client.chat(model, "hi", stream=True))
        assert "".join(c.content or "" for c in chunks) == "流式输出，一个一个字"
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        usages = [c.usage for c in chunks if c.usage is not None]
        assert len(usages) == 1 and chunks[-1].usage is usages[0] and usages[0].completion_tokens > 0

    def test_params_reach_the_provider(self, case: tuple[BaseSimulator, modelway.Client, str]) -> None:
        sim, client, model = case
        client.chat(
            model,
            [{"role": "system", "content": "简短回答"}, {"role": "user", "content": "hi"}],
            temperature=0.3,
            top_p=0.5,
            max_tokens=33,
            stop=["\n\n"],
            seed=7,
        )
        body = sim.requests[-1].json
        if isinstance(sim, AnthropicSimulator):  # Messages API: top-level system, stop_sequences, no seed
            assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.3, 0.5, 33)
            assert body["stop_sequences"] == ["\n\n"] and body["system"] == "简短回答" and "seed" not in body
            return
        p = body.get("parameters", body)  # DashScope native nests them
        msgs = body["input"]["messages"] if "input" in body else body["messages"]
        assert (p["temperature"], p["top_p"], p["max_tokens"], p["stop"], p["seed"]) == (0.3, 0.5, 33, ["\n\n"], 7)
        assert msgs[0] == {"role": "system", "content": "简短回答"}

    def test_tools_non_stream(self, case: tuple[BaseSimulator, modelway.Client, str]) -> None:
        sim, client, model = case
        sim.push(Reply(tool_calls=[{"name": "get_weather", "arguments": '{"city": "杭州"}'}]))
        r = client.chat(model, "杭州天气", tools=TOOLS, tool_choice="auto")
        calls = r.choices[0].message.tool_calls
        assert (
            calls
            and calls[0].function.name == "get_weather"
            and json.loads(calls[0].function.arguments) == {"city": "杭州"}
        )
        assert calls[0].id and r.choices[0].finish_reason == "tool_calls"
        body = sim.requests[-1].json
        if isinstance(sim, AnthropicSimulator):
            fn = TOOLS[0]["function"]
            assert body["tools"] == [
                {"name": fn["name"], "description": fn["description"], "input_schema": fn["parameters"]}
            ]
        else:
            assert body.get("parameters", body)["tools"] == TOOLS

    def test_tools_stream(self, case: tuple[BaseSimulator, modelway.Client, str]) -> None:
        sim, client, model = case
        sim.push(Reply(tool_calls=[{"name": "get_weather", "arguments": '{"city": "北京", "unit": "c"}'}]))
        chunks = list(client.chat(model, "北京天气", tools=TOOLS, stream=True))
        frags = [t for c in chunks if c.choices for t in (c.choices[0].delta.tool_calls or [])]
        assert frags[0].id and frags[0].name == "get_weather"
        assert "".join(f.arguments or "" for f in frags) == '{"city": "北京", "unit": "c"}'
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"

    @pytest.mark.parametrize(
        ("status", "cls"),
        [
            (401, errors.AuthenticationError),
            (429, errors.RateLimitError),
            (500, errors.UpstreamServerError),
            (400, errors.BadRequestError),
        ],
    )
    def test_http_errors(
        self, case: tuple[BaseSimulator, modelway.Client, str], status: int, cls: type[errors.ProviderError]
    ) -> None:
        sim, client, model = case
        sim.push(Fault.http(status, retry_after=3 if status == 429 else None))
        with pytest.raises(cls) as ei:
            client.chat(model, "hi")
        e = ei.value
        assert e.status_code == status and e.provider == model.split("/")[0] and e.code
        if status == 429:
            assert e.retry_after == 3

    def test_error_frame_mid_stream_raises_after_the_text_so_far(
        self, case: tuple[BaseSimulator, modelway.Client, str]
    ) -> None:
        sim, client, model = case
        # Anthropic opens with message_start, ping and content_block_start before any text
        after = 5 if isinstance(sim, AnthropicSimulator) else 2
        sim.push(Fault.error_frame(after_chunks=after, reply=Reply("abcdefghijklmnop", chunk_size=2)))
        got: list[str] = []
        with pytest.raises(errors.ProviderError) as ei:
            for c in client.chat(model, "hi", stream=True):
                got.append(c.content or "")
        assert "".join(got).startswith("ab") and ei.value.provider == model.split("/")[0]

    def test_cut_stream_raises(self, case: tuple[BaseSimulator, modelway.Client, str]) -> None:
        sim, client, model = case
        sim.push(Fault.cut_stream(after_chunks=2, reply=Reply("abcdefghijklmnop", chunk_size=2)))
        with pytest.raises(errors.StreamError):
            list(client.chat(model, "hi", stream=True))

    def test_malformed_json(self, case: tuple[BaseSimulator, modelway.Client, str]) -> None:
        sim, client, model = case
        sim.push(Fault.malformed_json())
        with pytest.raises(errors.StreamError, match="malformed"):
            client.chat(model, "hi")
        sim.push(Fault.malformed_json(after_chunks=1))
        with pytest.raises(errors.StreamError, match="malformed"):
            list(client.chat(model, "hi", stream=True))

    def test_slow_first_byte_times_out(self, case: tuple[BaseSimulator, modelway.Client, str]) -> None:
        sim, client, model = case
        sim.push(Fault.slow_first_byte(1.0))
        t0 = time.monotonic()
        with pytest.raises(errors.ProviderTimeoutError):
            client.chat(model, "hi", timeout=0.2)
        assert time.monotonic() - t0 < 0.9
        sim.push(Fault.slow_first_byte(1.0))
        with pytest.raises(errors.ProviderTimeoutError):
            list(client.chat(model, "hi", stream=True, timeout=0.2))


class TestRetries:
    def test_retry_honours_retry_after_then_succeeds(self) -> None:
        with (
            ZhipuSimulator() as sim,
            modelway.Client(
                providers={"zhipu": {"api_key": sim.api_key, "base_url": sim.base_url}}, max_retries=2
            ) as client,
        ):
            sim.push(Fault.http(429, retry_after=0.3), Fault.http(503))
            t0 = time.monotonic()
            r = client.chat("zhipu/glm-4-flash", "hi")
            assert r.content == "You said: hi" and len(sim.requests) == 3
            assert time.monotonic() - t0 >= 0.3

    def test_a_long_retry_after_is_not_waited_for(self) -> None:
        with (
            ZhipuSimulator() as sim,
            modelway.Client(
                providers={"zhipu": {"api_key": sim.api_key, "base_url": sim.base_url}}, max_retries=3
            ) as client,
        ):
            sim.push(Fault.http(429, retry_after=90))
            t0 = time.monotonic()
            with pytest.raises(errors.RateLimitError) as ei:
                client.chat("zhipu/glm-4-flash", "hi")
            assert time.monotonic() - t0 < 5 and len(sim.requests) == 1 and ei.value.retry_after == 90

    def test_stream_retried_before_first_chunk_only(self) -> None:
        with (
            OpenAISimulator() as sim,
            modelway.Client(
                providers={"openai": {"api_key": sim.api_key, "base_url": sim.base_url}}, max_retries=2
            ) as client,
        ):
            sim.push(Fault.http(500))
            assert "".join(c.content or "" for c in client.chat("openai/m", "x", stream=True)) == "You said: x"
            sim.push(Fault.error_frame(after_chunks=2, code="server_error"))
            with pytest.raises(errors.UpstreamServerError):
                list(client.chat("openai/m", "x", stream=True))
            assert len(sim.requests) == 3  # the mid-stream failure was not retried

    def test_non_retryable_errors_are_not_retried(self) -> None:
        with (
            ZhipuSimulator() as sim,
            modelway.Client(
                providers={"zhipu": {"api_key": sim.api_key, "base_url": sim.base_url}}, max_retries=3
            ) as client,
        ):
            sim.push(Fault.http(400, code="1301"))
            with pytest.raises(errors.ContentFilterError):
                client.chat("zhipu/glm-4-flash", "hi")
            assert len(sim.requests) == 1


def test_dashscope_error_frame_status_comes_from_its_http_status_line() -> None:
    with (
        DashScopeSimulator() as sim,
        modelway.Client(
            providers={"dashscope": {"api_key": sim.api_key, "base_url": sim.base_url}}, max_retries=0
        ) as client,
    ):
        sim.push(Fault.error_frame(after_chunks=2, code="Some.NewCode", message="slow down", status=429))
        with pytest.raises(errors.RateLimitError) as ei:
            list(client.chat("dashscope/qwen-plus", "hi", stream=True))
    assert ei.value.status_code == 429 and ei.value.code == "Some.NewCode"


class TestEmbeddings:
    @pytest.mark.parametrize(
        ("provider", "cls", "model"),
        [
            ("openai", OpenAISimulator, "text-embedding-3-small"),
            ("zhipu", ZhipuSimulator, "embedding-3"),
            ("dashscope", DashScopeSimulator, "text-embedding-v3"),
        ],
    )
    def test_embed(self, provider: str, cls: type[BaseSimulator], model: str) -> None:
        with (
            cls() as sim,
            modelway.Client(providers={provider: {"api_key": sim.api_key, "base_url": sim.base_url}}) as client,
        ):
            r = client.embed(f"{provider}/{model}", ["你好", "world"])
            one = client.embed(f"{provider}/{model}", "你好")
        assert [e.index for e in r.data] == [0, 1] and len(r.data[0].embedding) == 8
        assert r.data[0].embedding == pytest.approx(one.data[0].embedding)
        assert r.data[0].embedding != r.data[1].embedding
        assert r.usage is not None and r.usage.total_tokens > 0
        # what the README's example says: one vector per text, in the input's order
        assert r.vectors == [r.data[0].embedding, r.data[1].embedding] and one.vectors == [one.data[0].embedding]

    def test_vectors_follow_the_input_order_whatever_the_answer_order(self) -> None:
        from modelway.types import Embedding, EmbeddingResponse

        r = EmbeddingResponse([Embedding(1, [2.0]), Embedding(0, [1.0])], "m")
        assert r.vectors == [[1.0], [2.0]]


class TestSeedBugs:
    """Regression tests for the bugs of the seed code (shared/reference/dbgpt.md §4)."""

    def test_stream_errors_are_raised_not_swallowed(self) -> None:  # seed bug 1
        with (
            ZhipuSimulator() as sim,
            modelway.Client(
                providers={"zhipu": {"api_key": sim.api_key, "base_url": sim.base_url}}, max_retries=0
            ) as client,
        ):
            sim.push(Fault.http(401))
            with pytest.raises(errors.AuthenticationError):
                list(client.chat("zhipu/glm-4", "hi", stream=True))
            sim.push(Fault.http(400, code="1211", message="模型不存在"))
            with pytest.raises(errors.NotFoundError, match="模型不存在"):
                list(client.chat("zhipu/glm-4", "hi", stream=True))

    def test_none_and_missing_delta_content(self) -> None:  # seed bug 2
        with (
            ZhipuSimulator() as sim,
            modelway.Client(providers={"zhipu": {"api_key": sim.api_key, "base_url": sim.base_url}}) as client,
        ):
            sim.push(Reply("答案", reasoning="先想一想"))
            chunks = list(client.chat("zhipu/glm-4.5", "hi", stream=True))
        assert any(c.content is None for c in chunks)  # reasoning-only and usage-only chunks have no content
        assert "".join(c.content or "" for c in chunks) == "答案"
        assert "".join(c.choices[0].delta.reasoning_content or "" for c in chunks if c.choices) == "先想一想"

    @pytest.mark.parametrize(("provider", "cls"), [("zhipu", ZhipuSimulator), ("dashscope", DashScopeSimulator)])
    def test_temperature_top_p_max_tokens_not_dropped(self, provider: str, cls: type[BaseSimulator]) -> None:  # 3
        with (
            cls() as sim,
            modelway.Client(providers={provider: {"api_key": sim.api_key, "base_url": sim.base_url}}) as client,
        ):
            client.chat(f"{provider}/m", "hi", temperature=0, top_p=0.2, max_tokens=12)
            body = sim.requests[-1].json
        p: dict[str, Any] = body.get("parameters", body)
        assert p["max_tokens"] == 12 and p["top_p"] == 0.2
        if provider == "zhipu":  # Zhipu refuses 0: greedy decoding is do_sample=false, as its SDK sends it
            assert p["do_sample"] is False and p["temperature"] == 0.01
        else:
            assert p["temperature"] == 0

    def test_two_keys_for_one_provider_side_by_side(self) -> None:  # seed bug 5 (global SDK keys)
        with ZhipuSimulator(api_key="id1.secret-one") as a, ZhipuSimulator(api_key="id2.secret-two") as b:
            ca = modelway.Client(providers={"zhipu": {"api_key": a.api_key, "base_url": a.base_url, "auth": "jwt"}})
            cb = modelway.Client(providers={"zhipu": {"api_key": b.api_key, "base_url": b.base_url}})
            with ca, cb:
                for _ in range(2):
                    assert ca.chat("zhipu/glm-4", "a").content == "You said: a"
                    assert cb.chat("zhipu/glm-4", "b").content == "You said: b"
        assert {r.auth_kind for r in a.requests} == {"jwt"} and {r.auth_kind for r in b.requests} == {"key"}

    def test_jwt_token_is_cached_not_regenerated_per_call(self) -> None:  # seed bug 5 (token per call)
        with (
            ZhipuSimulator() as sim,
            modelway.Client(
                providers={"zhipu": {"api_key": sim.api_key, "base_url": sim.base_url, "auth": "jwt"}}
            ) as client,
        ):
            for _ in range(3):
                client.chat("zhipu/glm-4", "hi")
            client.embed("zhipu/embedding-3", "hi")
        tokens = {r.headers["authorization"] for r in sim.requests}
        assert len(tokens) == 1 and all(r.auth_kind == "jwt" for r in sim.requests)

    def test_unclosed_client_exits_cleanly(self) -> None:  # seed bug 7 (atexit + closed event loop)
        script = (
            "import modelway\n"
            "from modelway.testing import OpenAISimulator\n"
            "sim = OpenAISimulator().start()\n"
            "c = modelway.Client(providers={'openai': {'api_key': sim.api_key, 'base_url': sim.base_url}})\n"
            "print(c.chat('openai/m', 'bye').content)\n"
            "for _ in c.chat('openai/m', 'x', stream=True): break\n"  # an abandoned stream too
            "sim.stop()\n"  # the client is never closed
        )
        proc = subprocess.run([sys.executable, "-X", "dev", "-c", script], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "You said: bye\n"
        assert "Exception ignored" not in proc.stderr and "Event loop is closed" not in proc.stderr, proc.stderr
        assert "Unclosed" not in proc.stderr, proc.stderr

    @pytest.mark.parametrize(("provider", "cls"), [("zhipu", ZhipuSimulator), ("dashscope", DashScopeSimulator)])
    def test_the_requested_model_is_the_one_sent(self, provider: str, cls: type[BaseSimulator]) -> None:  # bug 11
        with (
            cls() as sim,
            modelway.Client(providers={provider: {"api_key": sim.api_key, "base_url": sim.base_url}}) as client,
        ):
            client.chat(f"{provider}/glm-4-plus-or-qwen-max", "hi")
            list(client.chat(f"{provider}/second-model", "hi", stream=True))
        assert [r.json["model"] for r in sim.requests] == ["glm-4-plus-or-qwen-max", "second-model"]

    def test_system_role_accepted_by_zhipu(self) -> None:  # seed bug 9
        with (
            ZhipuSimulator() as sim,
            modelway.Client(providers={"zhipu": {"api_key": sim.api_key, "base_url": sim.base_url}}) as client,
        ):
            r = client.chat(
                "zhipu/glm-4", [{"role": "system", "content": "你是助手"}, {"role": "user", "content": "hi"}]
            )
        assert r.content == "You said: hi"
        assert sim.requests[-1].json["messages"][0] == {"role": "system", "content": "你是助手"}


class TestLifecycle:
    def test_sync_client_leaves_no_thread_or_loop(self) -> None:
        before = threading.active_count()
        with OpenAISimulator() as sim:
            sim_threads = threading.active_count()
            client = modelway.Client(providers={"openai": {"api_key": sim.api_key, "base_url": sim.base_url}})
            list(client.chat("openai/m", "x", stream=True))
            client.chat("openai/m", "y")
            assert threading.active_count() == sim_threads
            loop = client._runner.loop
            client.close()
            assert loop.is_closed()
        assert threading.active_count() == before

    def test_abandoned_stream_closes_upstream(self) -> None:
        with (
            OpenAISimulator() as sim,
            modelway.Client(providers={"openai": {"api_key": sim.api_key, "base_url": sim.base_url}}) as client,
        ):
            sim.push(Reply("x" * 400, chunk_size=1, chunk_delay=0.01))
            it = client.chat("openai/m", "x", stream=True)
            next(it)
            it.close()  # type: ignore[attr-defined]
            assert client.chat("openai/m", "again").content == "You said: again"

    def test_sync_client_inside_a_running_loop(self) -> None:
        with (
            OpenAISimulator() as sim,
            modelway.Client(providers={"openai": {"api_key": sim.api_key, "base_url": sim.base_url}}) as client,
        ):

            async def inside() -> str | None:
                return client.chat("openai/m", "from a loop").content

            assert asyncio.run(inside()) == "You said: from a loop"

    async def test_async_client(self) -> None:
        with DashScopeSimulator() as sim:
            async with modelway.AsyncClient(
                providers={"dashscope": {"api_key": sim.api_key, "base_url": sim.base_url}}
            ) as client:
                r = await client.chat("dashscope/qwen-plus", "hi")
                s = await client.chat("dashscope/qwen-plus", "流", stream=True)
                text = "".join([c.content or "" async for c in s])
        assert r.content == "You said: hi" and text == "You said: 流"

    def test_keys_from_sdk_environment_variables(self) -> None:
        with (
            ZhipuSimulator() as sim,
            modelway.Client(env={"ZHIPUAI_API_KEY": sim.api_key, "ZHIPUAI_BASE_URL": sim.base_url}) as client,
        ):
            assert client.chat("zhipu/glm-4-flash", "env").content == "You said: env"
            assert any(m.id == "zhipu/glm-4-flash" for m in client.models())

    def test_missing_key_and_bad_model_are_clear(self) -> None:
        with modelway.Client(env={}) as client:
            with pytest.raises(errors.ConfigError, match="ZHIPUAI_API_KEY"):
                client.chat("zhipu/glm-4-flash", "hi")
            with pytest.raises(errors.UnknownModelError, match="provider/model"):
                client.chat("glm-4-flash", "hi")
            with pytest.raises(errors.UnknownModelError, match="unknown provider"):
                client.chat("nosuch/model", "hi")
            with pytest.raises(errors.InvalidRequestError):
                client.chat("zhipu/glm-4-flash", [])

    def test_gateway_mode_without_a_key_sends_none(self) -> None:
        """A gateway without a master key needs no key: none is sent, and no provider's variable is asked for."""
        with (
            OpenAISimulator(check_auth=False) as sim,
            modelway.Client(base_url=sim.base_url, env={"OPENAI_API_KEY": ""}) as client,
        ):
            assert client.chat("demo/glm-4-flash", "gw").content == "You said: gw"
            assert "authorization" not in sim.last_request.headers
            assert [m.id for m in client.models()]
            with pytest.raises(errors.NotFoundError):  # (the simulator has no /rerank: the request is what counts)
                client.rerank("demo/jina", "q", ["d"])
            assert sim.last_request.path.endswith("/rerank") and "authorization" not in sim.last_request.headers

    def test_gateway_mode_takes_modelway_api_key_from_the_environment(self) -> None:
        with OpenAISimulator(api_key="mw-env") as sim:
            with modelway.Client(base_url=sim.base_url, env={"MODELWAY_API_KEY": "mw-env"}) as client:
                assert client.chat("m", "hi").content == "You said: hi"
                assert sim.last_request.headers["authorization"] == "Bearer mw-env"
            with modelway.Client(base_url=sim.base_url, api_key="mw-given", env={"MODELWAY_API_KEY": "mw-env"}) as c:
                with pytest.raises(errors.AuthenticationError):  # the explicit key wins (and this one is wrong)
                    c.chat("m", "hi")
                assert sim.last_request.headers["authorization"] == "Bearer mw-given"

    def test_gateway_mode_sends_model_unchanged(self) -> None:
        with OpenAISimulator() as sim, modelway.Client(base_url=sim.base_url, api_key=sim.api_key) as client:
            assert client.chat("zhipu/glm-4-flash", "gw").content == "You said: gw"
            assert sim.requests[-1].json["model"] == "zhipu/glm-4-flash"
            assert [m.id for m in client.models()]


# the scenario leaks by construction (the first loop ended without closing the client): aiohttp says so at GC
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_async_client_used_in_a_second_event_loop_says_what_to_do() -> None:
    def scenario(sim: OpenAISimulator) -> None:
        client = modelway.AsyncClient(providers={"openai": {"api_key": sim.api_key, "base_url": sim.base_url}})

        async def call() -> str | None:
            return (await client.chat("openai/m", "x")).content

        assert asyncio.run(call()) == "You said: x"
        with pytest.raises(errors.ConfigError, match="another event loop"):
            asyncio.run(call())

    with OpenAISimulator() as sim:
        scenario(sim)
    gc.collect()  # the leaked session is reported now, inside this test, where the warnings are expected


def test_a_gateway_gets_earlier_reasoning_back() -> None:
    """Through a gateway, a tool loop keeps the assistant's reasoning_content (the gateway hands it to thinking-mode
    providers, DeepSeek's answers 400 without it); the OpenAI provider itself never gets it."""
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "call the tool",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    with OpenAISimulator() as gateway:
        with modelway.Client(base_url=gateway.base_url, api_key=gateway.api_key) as c:
            c.chat("deepseek-via-gateway", messages)
        assert gateway.last_request.json["messages"][1]["reasoning_content"] == "call the tool"
        with modelway.Client(providers={"openai": {"api_key": gateway.api_key, "base_url": gateway.base_url}}) as c:
            c.chat("openai/gpt-4o-mini", messages)
        assert "reasoning_content" not in gateway.last_request.json["messages"][1]
