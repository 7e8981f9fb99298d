"""``POST /v1/messages`` driven by the official anthropic SDK, over Zhipu, DashScope, OpenAI and Anthropic upstreams
(the simulators)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import orjson
import pytest
from gw import MASTER_KEY, RunningGateway, gateway_config

from modelway.testing import AnthropicSimulator, DashScopeSimulator, Fault, OpenAISimulator, Reply, ZhipuSimulator

ALL = ["glm", "qwen", "gpt", "claude"]
WEATHER: Any = {
    "name": "get_weather",
    "description": "Weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def anthropic_sim() -> Iterator[AnthropicSimulator]:
    with AnthropicSimulator() as sim:
        yield sim


@pytest.fixture(autouse=True)
def _clean_anthropic(request: pytest.FixtureRequest) -> None:
    if "anthropic_sim" in request.fixturenames:
        request.getfixturevalue("anthropic_sim").clear()


def with_claude(cfg: dict[str, Any], sim: AnthropicSimulator) -> dict[str, Any]:
    dep = {"model": "anthropic/claude-haiku-4-5", "api_key": sim.api_key, "api_base": sim.base_url}
    cfg["models"].append({"name": "claude", "deployments": [dep]})
    return cfg


@pytest.fixture(scope="module")
def gw(
    start_gateway: Callable[[dict[str, Any]], RunningGateway],
    zhipu_sim: ZhipuSimulator,
    dashscope_sim: DashScopeSimulator,
    openai_sim: OpenAISimulator,
    anthropic_sim: AnthropicSimulator,
) -> RunningGateway:
    return start_gateway(with_claude(gateway_config(zhipu_sim, dashscope_sim, openai_sim), anthropic_sim))


@pytest.fixture
def sims(
    zhipu_sim: ZhipuSimulator,
    dashscope_sim: DashScopeSimulator,
    openai_sim: OpenAISimulator,
    anthropic_sim: AnthropicSimulator,
) -> dict[str, Any]:
    return {"glm": zhipu_sim, "qwen": dashscope_sim, "gpt": openai_sim, "claude": anthropic_sim}


def sdk(gw: RunningGateway, key: str = MASTER_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=key, base_url=gw.url, max_retries=0)


def hi(text: str = "你好") -> list[Any]:
    return [{"role": "user", "content": text}]


class TestMessages:
    @pytest.mark.parametrize("model", ALL)
    def test_non_stream(self, gw: RunningGateway, model: str) -> None:
        with sdk(gw) as c:
            msg = c.messages.create(model=model, max_tokens=64, messages=hi())
        assert msg.type == "message" and msg.role == "assistant" and msg.id.startswith("msg_")
        assert msg.model == model
        assert [b.type for b in msg.content] == ["text"] and msg.content[0].text == "You said: 你好"  # type: ignore[union-attr]
        assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
        assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0

    @pytest.mark.parametrize("model", ALL)
    def test_stream_accumulates(self, gw: RunningGateway, model: str) -> None:
        with sdk(gw) as c, c.messages.stream(model=model, max_tokens=64, messages=hi("stream 流")) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
        assert text == "You said: stream 流"
        assert final.model == model and final.stop_reason == "end_turn"
        assert [b.type for b in final.content] == ["text"]
        assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0

    async def test_async_create_and_stream(self, gw: RunningGateway) -> None:
        async with anthropic.AsyncAnthropic(api_key=MASTER_KEY, base_url=gw.url, max_retries=0) as c:
            msg = await c.messages.create(model="qwen", max_tokens=32, messages=hi("a"))
            assert msg.content[0].text == "You said: a"  # type: ignore[union-attr]
            async with c.messages.stream(model="glm", max_tokens=32, messages=hi("b")) as s:
                final = await s.get_final_message()
        assert final.content[0].text == "You said: b"  # type: ignore[union-attr]

    def test_usage_with_cached_tokens_is_not_counted_twice(self, gw: RunningGateway, zhipu_sim: ZhipuSimulator) -> None:
        zhipu_sim.push(Reply("ok", usage=(100, 5)))
        with sdk(gw) as c:
            msg = c.messages.create(model="glm", max_tokens=16, messages=hi())
        assert (msg.usage.input_tokens, msg.usage.output_tokens) == (100, 5)
        assert msg.usage.cache_read_input_tokens == 0

    def test_params_are_translated(self, gw: RunningGateway, openai_sim: OpenAISimulator) -> None:
        with sdk(gw) as c:
            c.messages.create(
                model="gpt",
                max_tokens=77,
                system=[{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
                messages=[
                    {"role": "user", "content": "q1"},
                    {"role": "assistant", "content": "a1"},
                    {"role": "system", "content": "mid-conversation rule"},
                    {"role": "user", "content": [{"type": "text", "text": "q2"}]},
                ],
                stop_sequences=["END"],
                metadata={"user_id": "u-1"},
                extra_body={"temperature": 0.5, "top_p": 0.9, "top_k": 5},  # older SDKs' named arguments
            )
        body = openai_sim.requests[-1].json
        assert body["messages"] == [
            {"role": "system", "content": "be brief\n\nmid-conversation rule"},
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2"},
        ]
        assert body["max_tokens"] == 77 and body["temperature"] == 0.5 and body["top_p"] == 0.9
        assert body["top_k"] == 5 and body["stop"] == ["END"] and body["user"] == "u-1"
        assert body["model"] == "gpt-4o-mini"


class TestTools:
    @pytest.mark.parametrize("model", ALL)
    def test_tool_use_and_tool_result_turn(self, gw: RunningGateway, model: str, sims: dict[str, Any]) -> None:
        sim = sims[model]
        sim.push(Reply(tool_calls=[{"name": "get_weather", "arguments": '{"city": "杭州"}'}]))
        messages: list[Any] = hi("天气?")
        with sdk(gw) as c:
            with c.messages.stream(model=model, max_tokens=64, messages=messages, tools=[WEATHER]) as s:
                first = s.get_final_message()
            assert first.stop_reason == "tool_use"
            [use] = [b for b in first.content if b.type == "tool_use"]
            assert use.name == "get_weather" and use.input == {"city": "杭州"} and use.id
            sim.push(Reply("晴"))
            result = {"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 25°C"}
            messages += [
                {"role": "assistant", "content": first.content},
                {"role": "user", "content": [result, {"type": "text", "text": "so?"}]},
            ]
            second = c.messages.create(model=model, max_tokens=64, messages=messages, tools=[WEATHER])
        assert second.content[0].text == "晴"  # type: ignore[union-attr]
        sent = sim.requests[-1].json
        if model == "claude":  # natively: the caller's blocks as they were
            assert sent["messages"][2]["content"][0] == result
        elif model == "gpt":
            assert sent["messages"][1]["tool_calls"][0]["id"] == use.id
            assert sent["messages"][2:] == [
                {"role": "tool", "tool_call_id": use.id, "content": "sunny, 25°C"},
                {"role": "user", "content": "so?"},
            ]

    def test_tool_choice_and_parallel(self, gw: RunningGateway, openai_sim: OpenAISimulator) -> None:
        with sdk(gw) as c:
            c.messages.create(
                model="gpt",
                max_tokens=16,
                messages=hi(),
                tools=[WEATHER],
                tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
            )
        body = openai_sim.requests[-1].json
        assert body["tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather of a city",
                    "parameters": WEATHER["input_schema"],
                },
            }
        ]
        assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
        assert body["parallel_tool_calls"] is False


class TestThinking:
    def test_reasoning_becomes_thinking_and_goes_back(self, gw: RunningGateway, zhipu_sim: ZhipuSimulator) -> None:
        zhipu_sim.push(Reply(reasoning="Let me look it up.", tool_calls=[{"name": "get_weather", "arguments": "{}"}]))
        messages: list[Any] = hi("weather")
        with sdk(gw) as c:
            with c.messages.stream(
                model="glm",
                max_tokens=4096,
                messages=messages,
                tools=[WEATHER],
                thinking={"type": "enabled", "budget_tokens": 2048},
            ) as s:
                first = s.get_final_message()
            assert [b.type for b in first.content] == ["thinking", "tool_use"]
            thinking = first.content[0]
            assert thinking.type == "thinking" and thinking.thinking == "Let me look it up." and thinking.signature
            assert zhipu_sim.requests[-1].json["thinking"] == {"type": "enabled"}  # reasoning_effort "low"
            tool_use = first.content[1]
            assert tool_use.type == "tool_use"
            messages += [
                {"role": "assistant", "content": first.content},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "rain"}]},
            ]
            c.messages.create(model="glm", max_tokens=64, messages=messages, tools=[WEATHER])
        sent = zhipu_sim.requests[-1].json["messages"]
        assert sent[1]["role"] == "assistant" and sent[1]["reasoning_content"] == "Let me look it up."
        assert sent[2] == {"role": "tool", "tool_call_id": tool_use.id, "content": "rain"}

    def test_disabled_thinking_is_reasoning_effort_none(self, gw: RunningGateway, zhipu_sim: ZhipuSimulator) -> None:
        with sdk(gw) as c:
            c.messages.create(model="glm", max_tokens=16, messages=hi(), thinking={"type": "disabled"})
        assert zhipu_sim.requests[-1].json["thinking"] == {"type": "disabled"}

    def test_non_stream_thinking_block(self, gw: RunningGateway, zhipu_sim: ZhipuSimulator) -> None:
        zhipu_sim.push(Reply("42", reasoning="6 times 7"))
        with sdk(gw) as c:
            msg = c.messages.create(model="glm", max_tokens=64, messages=hi())
        assert [b.type for b in msg.content] == ["thinking", "text"]
        assert msg.content[0].thinking == "6 times 7" and msg.content[0].signature  # type: ignore[union-attr]


class TestErrors:
    def test_missing_max_tokens_is_a_bad_request(self, gw: RunningGateway) -> None:
        r = httpx.post(
            gw.url + "/v1/messages",
            headers={"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01"},
            json={"model": "glm", "messages": hi()},
        )
        assert r.status_code == 400
        body = r.json()
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        assert "max_tokens" in body["error"]["message"] and body["request_id"] == r.headers["x-request-id"]

    def test_sdk_exception_classes(self, gw: RunningGateway) -> None:
        with sdk(gw) as c:
            with pytest.raises(anthropic.BadRequestError, match="unknown field"):
                c.messages.create(model="glm", max_tokens=8, messages=hi(), extra_body={"frobnicate": 1})
            with pytest.raises(anthropic.NotFoundError, match="not_found_error"):
                c.messages.create(model="nope", max_tokens=8, messages=hi())
            server_tool: Any = {"type": "web_search_20250305", "name": "web_search"}
            with pytest.raises(anthropic.BadRequestError, match="server tool"):
                c.messages.create(model="glm", max_tokens=8, messages=hi(), tools=[server_tool])
        with sdk(gw, key="sk-wrong") as c, pytest.raises(anthropic.AuthenticationError, match="authentication_error"):
            c.messages.create(model="glm", max_tokens=8, messages=hi())

    def test_a_wrong_method_is_told_in_anthropic_s_shape(self, gw: RunningGateway) -> None:
        r = httpx.get(gw.url + "/v1/messages", headers={"x-api-key": MASTER_KEY})
        assert r.status_code == 405 and r.headers["allow"] == "POST"
        assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"

    def test_bearer_auth_works_too(self, gw: RunningGateway) -> None:
        r = httpx.post(
            gw.url + "/v1/messages",
            headers={"Authorization": f"Bearer {MASTER_KEY}", "anthropic-version": "2099-01-01"},
            json={"model": "glm", "max_tokens": 8, "messages": hi()},
        )
        assert r.status_code == 200 and r.json()["type"] == "message"

    @pytest.mark.parametrize("model", ["glm", "claude"])
    def test_upstream_429_is_a_rate_limit_error(self, gw: RunningGateway, model: str, sims: dict[str, Any]) -> None:
        sims[model].push(Fault.http(429, retry_after=7))
        with sdk(gw) as c, pytest.raises(anthropic.RateLimitError) as info:
            c.messages.create(model=model, max_tokens=8, messages=hi())
        assert info.value.response.headers["retry-after"] == "7"
        assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]

    @pytest.mark.parametrize("model", ["glm", "claude"])
    def test_mid_stream_error_raises_in_the_sdk(self, gw: RunningGateway, model: str, sims: dict[str, Any]) -> None:
        sims[model].push(Fault.error_frame(after_chunks=5, reply=Reply("a long enough answer", chunk_size=2)))
        got: list[str] = []
        with (
            sdk(gw) as c,
            pytest.raises(anthropic.APIStatusError) as info,
            c.messages.stream(model=model, max_tokens=64, messages=hi()) as s,
        ):
            got.extend(s.text_stream)
        assert got and info.value.response.status_code == 200  # the stream had started: an error event ended it
        body: Any = info.value.body
        assert body["type"] == "error"
        # Anthropic's own type passes through (Claude Code retries an overloaded_error); Zhipu's is told by status
        assert body["error"]["type"] == ("overloaded_error" if model == "claude" else "api_error")


class TestCountTokens:
    @pytest.mark.parametrize("model", ALL)
    def test_count_tokens(self, gw: RunningGateway, model: str) -> None:
        with sdk(gw) as c:
            small = c.messages.count_tokens(model=model, messages=hi("hello there"))
            bigger = c.messages.count_tokens(
                model=model, system="You are a weather bot.", messages=hi("hello there"), tools=[WEATHER]
            )
        assert 0 < small.input_tokens < bigger.input_tokens

    def test_count_tokens_errors(self, gw: RunningGateway) -> None:
        with sdk(gw) as c:
            with pytest.raises(anthropic.NotFoundError):
                c.messages.count_tokens(model="nope", messages=hi())
            with pytest.raises(anthropic.BadRequestError, match=r"messages\[0\].role"):
                c.messages.count_tokens(model="glm", messages=[{"role": "robot", "content": "x"}])  # type: ignore[misc,list-item]
        with sdk(gw, key="sk-wrong") as c, pytest.raises(anthropic.AuthenticationError):
            c.messages.count_tokens(model="glm", messages=hi())


def frames(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if block.strip():
            event, data = block.split("\n", 1)
            out.append((event.removeprefix("event: "), orjson.loads(data.removeprefix("data: "))))
    return out


class TestPassthrough:
    BODY: Any = {
        "model": "claude",
        "max_tokens": 300,
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}
        ],
        "top_k": 3,
        "metadata": {"user_id": "u-9"},
        "context_management": {"edits": []},
        "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 1}, WEATHER],
    }

    def post(self, gw: RunningGateway, body: dict[str, Any]) -> httpx.Response:
        headers = {"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01", "anthropic-beta": "context-x-2025"}
        return httpx.post(gw.url + "/v1/messages", headers=headers, json=body)

    def test_body_reaches_anthropic_unchanged(self, gw: RunningGateway, anthropic_sim: AnthropicSimulator) -> None:
        r = self.post(gw, self.BODY)
        assert r.status_code == 200, r.text
        rec = anthropic_sim.requests[-1]
        assert rec.json == {**self.BODY, "model": "claude-haiku-4-5"}
        assert rec.headers["anthropic-beta"] == "context-x-2025"
        answer = r.json()
        assert answer["model"] == "claude" and answer["id"].startswith("msg_01")

    def test_stream_frames_are_anthropic_s_own(self, gw: RunningGateway, anthropic_sim: AnthropicSimulator) -> None:
        reply = Reply("fine thanks", reasoning="short", tool_calls=[{"name": "get_weather", "arguments": "{}"}])
        anthropic_sim.push(reply, reply)
        direct = httpx.post(
            anthropic_sim.base_url + "/v1/messages",
            headers={"x-api-key": anthropic_sim.api_key},
            json={**self.BODY, "model": "claude-haiku-4-5", "stream": True},
        )
        r = self.post(gw, {**self.BODY, "stream": True})
        assert r.status_code == 200 and anthropic_sim.requests[-1].json["stream"] is True
        ours, theirs = frames(r.content), frames(direct.content)
        assert [e for e, _ in ours] == [e for e, _ in theirs]
        assert ours[0][1]["message"]["model"] == "claude"
        assert ours[0][1]["message"]["id"] != theirs[0][1]["message"]["id"]  # two answers, each its own
        sig = [d for e, d in ours if d.get("delta", {}).get("type") == "signature_delta"]
        assert sig and sig[0]["delta"]["signature"].startswith("sig_")  # Anthropic's, not one of ours
        for (_, a), (_, b) in zip(ours[1:], theirs[1:], strict=True):
            if a.get("content_block", {}).get("type") == "tool_use":
                a["content_block"]["id"] = b["content_block"]["id"]
            if a.get("delta", {}).get("type") == "signature_delta":
                a["delta"]["signature"] = b["delta"]["signature"]
            assert a == b

    def test_our_thinking_signatures_are_not_sent_to_anthropic(
        self, gw: RunningGateway, zhipu_sim: ZhipuSimulator, anthropic_sim: AnthropicSimulator
    ) -> None:
        zhipu_sim.push(Reply("4", reasoning="2+2"))
        with sdk(gw) as c:
            first = c.messages.create(model="glm", max_tokens=64, messages=hi("2+2?"))
            history: list[Any] = [*hi("2+2?"), {"role": "assistant", "content": first.content}, *hi("and 3+3?")]
            c.messages.create(model="claude", max_tokens=64, messages=history)
        sent = anthropic_sim.requests[-1].json["messages"]
        assert [b["type"] for b in sent[1]["content"]] == ["text"]


@pytest.fixture(scope="module")
def cp(
    start_gateway: Callable[[dict[str, Any]], RunningGateway],
    openai_sim: OpenAISimulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> RunningGateway:
    """A gateway with a control plane: a SQLite store of keys and usage, the in-process limiter."""
    db = tmp_path_factory.mktemp("messages-cp") / "modelway.db"
    dep = {"model": "openai/gpt-4o-mini", "api_key": openai_sim.api_key, "api_base": openai_sim.base_url}
    return start_gateway(
        {
            "server": {"master_key": MASTER_KEY, "max_retries": 0},
            "store": {"url": f"sqlite:///{db}"},
            "usage": {"flush_interval": 0.05, "spill_path": str(Path(db).parent / "spill.jsonl")},
            "models": [{"name": "gpt", "deployments": [dep]}, {"name": "other", "deployments": [dep]}],
        }
    )


def admin(gw: RunningGateway, method: str, path: str, body: Any = None) -> Any:
    r = httpx.request(method, gw.url + path, json=body, headers={"Authorization": f"Bearer {MASTER_KEY}"})
    assert r.status_code < 300, r.text
    return r.json()


def test_virtual_key_limits_and_usage_records(cp: RunningGateway, openai_sim: OpenAISimulator) -> None:
    key = admin(cp, "POST", "/admin/keys", {"name": "claude-code", "rpm": 2, "models": ["gpt"]})
    if 60 - time.time() % 60 < 10:  # keep the requests in one calendar minute (the limiter's window)
        time.sleep(60 - time.time() % 60 + 0.1)
    openai_sim.push(Reply("one", usage=(11, 7)), Reply("two", usage=(5, 3)))
    with sdk(cp, key["key"]) as c:
        assert c.messages.create(model="gpt", max_tokens=8, messages=hi()).usage.input_tokens == 11
        for _ in range(3):  # counting tokens consumes no limit
            assert c.messages.count_tokens(model="gpt", messages=hi()).input_tokens > 0
        with c.messages.stream(model="gpt", max_tokens=8, messages=hi()) as s:
            assert s.get_final_message().usage.output_tokens == 3
        with pytest.raises(anthropic.RateLimitError) as info:
            c.messages.create(model="gpt", max_tokens=8, messages=hi())
        assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
        assert 1 <= int(info.value.response.headers["retry-after"]) <= 60
        with pytest.raises(anthropic.PermissionDeniedError, match="permission_error"):
            c.messages.count_tokens(model="other", messages=hi())
    deadline = time.monotonic() + 5
    while True:
        records = admin(cp, "GET", f"/admin/usage/records?key_id={key['id']}")["data"]
        if len(records) >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert {r["endpoint"] for r in records} == {"messages"}
    answered = sorted((r["stream"], r["prompt_tokens"], r["completion_tokens"]) for r in records if r["status"] == 200)
    assert answered == [(False, 11, 7), (True, 5, 3)]
    # the 429 (its ticket), and the 403 of count_tokens the gateway refused itself (recorded since issue 13)
    assert sorted(r["status"] for r in records if r["status"] != 200) == [403, 429]


def test_abandoned_stream_gives_back_its_place(cp: RunningGateway, openai_sim: OpenAISimulator) -> None:
    """A key with max_parallel=1 gets its place back when the client leaves a /v1/messages stream half-way."""
    key = admin(cp, "POST", "/admin/keys", {"name": "one-at-a-time", "max_parallel": 1, "models": ["gpt"]})
    openai_sim.push(Reply("a long answer that takes its time to arrive", chunk_size=2, chunk_delay=0.1))
    with sdk(cp, key["key"]) as c:
        with c.messages.stream(model="gpt", max_tokens=64, messages=hi()) as s:
            for event in s:
                if event.type == "content_block_delta":
                    break  # the client goes away mid-stream
        deadline = time.monotonic() + 5
        while True:
            try:
                msg = c.messages.create(model="gpt", max_tokens=8, messages=hi("again"))
                break
            except anthropic.RateLimitError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    assert msg.content[0].text == "You said: again"  # type: ignore[union-attr]
    deadline = time.monotonic() + 5
    while True:
        records = admin(cp, "GET", f"/admin/usage/records?key_id={key['id']}")["data"]
        if len(records) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert {r["endpoint"] for r in records} == {"messages"}
    assert sorted(r["status"] for r in records) == [200, 499]
