"""/v1/responses through a running gateway, with the official openai SDK's Responses API, for every kind of upstream:
Zhipu, DashScope, OpenAI itself (native), an OpenAI-compatible server (translated), Anthropic and DeepSeek."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from gw import RunningGateway
from test_responses_env import MODELS, REASONING, UPSTREAMS, check_stream, client, config

from modelway.testing import (
    AnthropicSimulator,
    BaseSimulator,
    DashScopeSimulator,
    DeepSeekSimulator,
    Fault,
    OpenAISimulator,
    Reply,
    ZhipuSimulator,
)

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def anthropic_sim() -> Iterator[AnthropicSimulator]:
    with AnthropicSimulator() as sim:
        yield sim


@pytest.fixture(scope="module")
def deepseek_sim() -> Iterator[DeepSeekSimulator]:
    with DeepSeekSimulator(keepalive=0) as sim:
        yield sim


@pytest.fixture(scope="module")
def sims(
    zhipu_sim: ZhipuSimulator,
    dashscope_sim: DashScopeSimulator,
    openai_sim: OpenAISimulator,
    anthropic_sim: AnthropicSimulator,
    deepseek_sim: DeepSeekSimulator,
) -> dict[str, BaseSimulator]:
    return {
        "zhipu_sim": zhipu_sim,
        "dashscope_sim": dashscope_sim,
        "openai_sim": openai_sim,
        "anthropic_sim": anthropic_sim,
        "deepseek_sim": deepseek_sim,
    }


@pytest.fixture(autouse=True)
def _clean(sims: dict[str, BaseSimulator]) -> None:
    for sim in sims.values():
        sim.clear()


@pytest.fixture(scope="module")
def rgw(
    start_gateway: Callable[[dict[str, Any]], RunningGateway],
    sims: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> RunningGateway:
    db: Path = tmp_path_factory.mktemp("responses") / "modelway.db"
    return start_gateway(
        config(
            db,
            sims["zhipu_sim"],
            sims["dashscope_sim"],
            sims["openai_sim"],
            sims["anthropic_sim"],
            sims["deepseek_sim"],
        )
    )


@pytest.fixture
def c(rgw: RunningGateway) -> Iterator[openai.OpenAI]:
    with client(rgw) as sdk:
        yield sdk


def sim_of(sims: dict[str, BaseSimulator], model: str) -> BaseSimulator:
    return sims[UPSTREAMS[model][0]]


def upstream(sims: dict[str, BaseSimulator], model: str) -> tuple[str, Any, str]:
    """The last request the model's upstream received: its path, its JSON, its body as text."""
    rec = sim_of(sims, model).last_request
    return rec.path, rec.json, rec.body.decode()


@pytest.mark.parametrize("model", MODELS)
def test_create_with_string_input(c: openai.OpenAI, sims: dict[str, BaseSimulator], model: str) -> None:
    r = c.responses.create(model=model, input="hello there")
    assert r.id.startswith("resp_") and r.object == "response"
    assert r.status == "completed" and r.model == model
    assert r.output_text == "You said: hello there"
    assert r.output[-1].type == "message" and r.output[-1].role == "assistant"
    assert r.usage is not None and r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens > 0
    path, body, _ = upstream(sims, model)
    assert path == UPSTREAMS[model][1]
    if model == "gpt":  # the caller's body, as OpenAI takes it, with the gateway keeping the state
        assert body["input"] == "hello there" and body["store"] is False and body["model"] == "gpt-4o-mini"


@pytest.mark.parametrize("model", MODELS)
def test_create_with_items(c: openai.OpenAI, sims: dict[str, BaseSimulator], model: str) -> None:
    items: list[Any] = [
        {"role": "developer", "content": "Answer briefly."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "first question"}]},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": [{"type": "input_text", "text": "second question"}]},
    ]
    r = c.responses.create(model=model, input=items, instructions="You are terse.", temperature=0.5)
    assert r.output_text == "You said: second question"
    assert r.instructions == "You are terse." and r.temperature == 0.5
    _, body, text = upstream(sims, model)
    order = ["You are terse.", "Answer briefly.", "first question", "first answer", "second question"]
    positions = [text.index(t) for t in order[model == "gpt" :]]  # (OpenAI gets instructions as a field)
    assert positions == sorted(positions), text
    if model in ("glm", "gpt-chat", "deepseek"):  # chat messages, as translated
        assert body["messages"][0] == {"role": "system", "content": "You are terse."}
        assert body["messages"][1] == {"role": "system", "content": "Answer briefly."}
        assert body["messages"][-1] == {"role": "user", "content": "second question"}
        assert body["temperature"] == 0.5
    if model == "gpt":
        assert body["input"] == items and body["instructions"] == "You are terse."


@pytest.mark.parametrize("model", MODELS)
def test_stream_with_the_sdk_accumulator(c: openai.OpenAI, sims: dict[str, BaseSimulator], model: str) -> None:
    sim_of(sims, model).push(Reply(text="streamed answer, in pieces", chunk_size=3))
    with c.responses.stream(model=model, input="go") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "streamed answer, in pieces" and len(deltas) > 1
    assert final.output_text == "streamed answer, in pieces"
    assert final.status == "completed" and final.model == model
    assert final.usage is not None and final.usage.output_tokens > 0
    kept = c.responses.retrieve(final.id)  # kept before response.completed was sent
    assert kept.output_text == final.output_text and kept.id == final.id


@pytest.mark.parametrize("model", MODELS)
def test_stream_events_reasoning_text_and_two_tool_calls(
    c: openai.OpenAI, sims: dict[str, BaseSimulator], model: str
) -> None:
    calls = [
        {"name": "get_weather", "arguments": {"city": "Paris"}},
        {"name": "get_weather", "arguments": '{"city":"Rome"}'},
    ]
    reply = Reply(text="Checking both.", reasoning="two cities, two calls", tool_calls=calls, chunk_size=5)
    sim_of(sims, model).push(reply)
    events = list(c.responses.create(model=model, input="weather?", tools=[WEATHER], stream=True))
    final = check_stream(events)
    assert final.type == "response.completed"
    out = final.response.output
    kinds = [item.type for item in out]
    assert kinds == (["reasoning"] if model in REASONING else []) + ["message", "function_call", "function_call"]
    fcs = [item for item in out if item.type == "function_call"]
    assert [orjson.loads(f.arguments) for f in fcs] == [{"city": "Paris"}, {"city": "Rome"}]
    assert all(f.name == "get_weather" and f.call_id and f.status == "completed" for f in fcs)
    assert len({f.call_id for f in fcs}) == 2
    # Codex takes tool calls from output_item.done: the whole call is there
    done = [e.item for e in events if e.type == "response.output_item.done" and e.item.type == "function_call"]
    assert [(d.call_id, d.name, d.arguments) for d in done] == [(f.call_id, f.name, f.arguments) for f in fcs]
    if model in REASONING:
        summary = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
        assert summary == "two cities, two calls"
        assert out[0].summary[0].text == summary
        assert all(e.summary_index == 0 for e in events if e.type == "response.reasoning_summary_text.delta")


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_function_tools_across_two_turns(
    c: openai.OpenAI, sims: dict[str, BaseSimulator], model: str, stream: bool
) -> None:
    sim = sim_of(sims, model)
    sim.push(Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]), Reply(text="Sunny, 22 C."))
    question: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        with c.responses.stream(model=model, input=question, tools=[WEATHER]) as s:
            first = s.get_final_response()
    else:
        first = c.responses.create(model=model, input=question, tools=[WEATHER], tool_choice="auto")
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and orjson.loads(call.arguments) == {"city": "Paris"}
    result = {"type": "function_call_output", "call_id": call.call_id, "output": "22 degrees, sunny"}
    second = c.responses.create(
        model=model, input=[*question, call.model_dump(exclude_none=True), result], tools=[WEATHER]
    )
    assert second.output_text == "Sunny, 22 C."
    path, body, text = upstream(sims, model)
    assert text.count(call.call_id) >= 2, text  # the call and its result, tied by the id
    assert "22 degrees, sunny" in text
    if model in ("glm", "gpt-chat", "deepseek"):
        assistant, tool = body["messages"][-2:]
        assert assistant["role"] == "assistant" and assistant["tool_calls"][0]["id"] == call.call_id
        assert tool == {"role": "tool", "tool_call_id": call.call_id, "content": "22 degrees, sunny"}
        assert body["tools"][0] == {"type": "function", "function": {k: v for k, v in WEATHER.items() if k != "type"}}


@pytest.mark.parametrize("model", MODELS)
def test_previous_response_id_carries_the_conversation(
    c: openai.OpenAI, sims: dict[str, BaseSimulator], model: str
) -> None:
    first = c.responses.create(model=model, input="my name is Ann", instructions="first instructions")
    second = c.responses.create(model=model, input="and I live in Oslo", previous_response_id=first.id)
    third = c.responses.create(model=model, input="who am I?", previous_response_id=second.id, stream=False)
    assert third.previous_response_id == second.id
    path, body, text = upstream(sims, model)
    order = ["my name is Ann", "You said: my name is Ann", "and I live in Oslo", "You said: and I live in", "who am I?"]
    positions = [text.index(t) for t in order]
    assert positions == sorted(positions), text
    assert "first instructions" not in text  # instructions are not carried over, as with OpenAI
    if model == "gpt":  # OpenAI gets the whole conversation, and nothing of the gateway's ids
        assert "previous_response_id" not in body and body["store"] is False
        assert [item["role"] for item in body["input"]] == ["user", "assistant", "user", "assistant", "user"]


def test_previous_response_id_with_only_the_tool_results(c: openai.OpenAI, sims: dict[str, BaseSimulator]) -> None:
    sim = sim_of(sims, "deepseek")
    sim.push(
        Reply(
            reasoning="I need the weather tool.", tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}]
        ),
        Reply(text="Cold."),
    )
    first = c.responses.create(model="deepseek", input="Weather in Oslo?", tools=[WEATHER])
    assert [item.type for item in first.output] == ["reasoning", "function_call"]
    call = first.output[1]
    result = {"type": "function_call_output", "call_id": call.call_id, "output": "-3 C"}
    second = c.responses.create(model="deepseek", input=[result], previous_response_id=first.id, tools=[WEATHER])
    assert second.output_text == "Cold."
    messages = upstream(sims, "deepseek")[1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    # DeepSeek's thinking mode needs the reasoning back on the assistant turn of a tool loop
    assert messages[1]["reasoning_content"] == "I need the weather tool."
    assert messages[1]["tool_calls"][0]["id"] == call.call_id and messages[2]["tool_call_id"] == call.call_id


@pytest.mark.parametrize("model", ["gpt-chat", "gpt", "glm"])
def test_json_schema_output(c: openai.OpenAI, sims: dict[str, BaseSimulator], model: str) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    fmt = {"type": "json_schema", "name": "place", "schema": schema, "strict": True}
    sim_of(sims, model).push(Reply(text='{"city": "Paris"}'))
    r = c.responses.create(model=model, input="where?", text={"format": fmt})
    assert orjson.loads(r.output_text) == {"city": "Paris"}
    assert r.text is not None and r.text.format.type == "json_schema"
    body = upstream(sims, model)[1]
    if model == "gpt":
        assert body["text"] == {"format": fmt}
    elif model == "gpt-chat":
        assert body["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "place", "schema": schema, "strict": True},
        }
    else:
        assert body["response_format"]["type"] in ("json_schema", "json_object")


@pytest.mark.parametrize("model", MODELS)
def test_length_is_incomplete(c: openai.OpenAI, sims: dict[str, BaseSimulator], model: str) -> None:
    sim = sim_of(sims, model)
    sim.push(Reply(text="cut sh", finish_reason="length"), Reply(text="cut sh", finish_reason="length"))
    r = c.responses.create(model=model, input="long story", max_output_tokens=3)
    assert r.status == "incomplete"
    assert r.incomplete_details is not None and r.incomplete_details.reason == "max_output_tokens"
    assert r.output_text == "cut sh" and r.max_output_tokens == 3
    events = list(c.responses.create(model=model, input="long story", max_output_tokens=3, stream=True))
    final = check_stream(events)
    assert final.type == "response.incomplete"
    assert final.response.status == "incomplete" and final.response.incomplete_details.reason == "max_output_tokens"


@pytest.mark.parametrize("model", MODELS)
def test_upstream_error_mid_stream_is_response_failed(
    c: openai.OpenAI, sims: dict[str, BaseSimulator], model: str
) -> None:
    # (after some text: a failure before any output is an HTTP error, and may fail over)
    sim_of(sims, model).push(Fault.error_frame(after_chunks=6, reply=Reply(text="partial answer text", chunk_size=2)))
    events = list(c.responses.create(model=model, input="go", stream=True))
    final = check_stream(events)
    assert final.type == "response.failed", [e.type for e in events]
    assert final.response.status == "failed"
    assert final.response.error is not None and final.response.error.code and final.response.error.message
    assert not any(e.type == "response.completed" for e in events)


def test_rate_limit_mid_stream_tells_the_wait(c: openai.OpenAI, sims: dict[str, BaseSimulator]) -> None:
    sims["openai_sim"].push(Fault.error_frame(after_chunks=3, code="rate_limit_exceeded", message="Slow down."))
    events = list(c.responses.create(model="gpt-chat", input="go", stream=True))
    final = check_stream(events)
    assert final.type == "response.failed"
    assert final.response.error.code == "rate_limit_exceeded"
    assert "Slow down" in final.response.error.message


def test_error_before_the_stream_is_an_http_error(c: openai.OpenAI, sims: dict[str, BaseSimulator]) -> None:
    sims["zhipu_sim"].push(Fault.http(429, retry_after=30))
    with pytest.raises(openai.RateLimitError) as info:
        list(c.responses.create(model="glm", input="go", stream=True))
    assert info.value.status_code == 429
    assert info.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]


@pytest.mark.parametrize("model", ["glm", "deepseek", "gpt"])
def test_a_codex_style_turn(c: openai.OpenAI, sims: dict[str, BaseSimulator], model: str) -> None:
    """What Codex CLI sends (store false, its own history with reasoning and tool calls, include, cache key) and
    what it reads: tool calls from output_item.done, the id and integer usage on response.completed."""
    shell = {
        "type": "function",
        "name": "shell",
        "description": "run",
        "strict": False,
        "parameters": {"type": "object"},
    }
    history: list[Any] = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "use ls"}], "encrypted_content": "gAAA"},
        {"type": "function_call", "name": "shell", "arguments": '{"command":["ls"]}', "call_id": "call_ls"},
        {"type": "function_call_output", "call_id": "call_ls", "output": "a.txt\nb.txt"},
    ]
    sim_of(sims, model).push(Reply(text="Two files.", tool_calls=[{"name": "shell", "arguments": {"command": ["wc"]}}]))
    events = list(
        c.responses.create(
            model=model,
            instructions="You are a coding agent.",
            input=history,
            tools=[shell],  # type: ignore[list-item]
            tool_choice="auto",
            parallel_tool_calls=False,
            reasoning={"effort": "medium", "summary": "auto"},
            store=False,
            stream=True,
            include=["reasoning.encrypted_content"],
            prompt_cache_key="session-1",
            text={"verbosity": "medium"},
        )
    )
    final = check_stream(events)
    assert final.type == "response.completed" and final.response.id
    done = [e.item for e in events if e.type == "response.output_item.done"]
    call = next(item for item in done if item.type == "function_call")
    assert (call.name, orjson.loads(call.arguments)) == ("shell", {"command": ["wc"]}) and call.call_id
    _, body, text = upstream(sims, model)
    assert "a.txt" in text and text.count("call_ls") >= 2
    if model == "deepseek":
        assistant = body["messages"][2]
        assert assistant["reasoning_content"] == "use ls" and assistant["tool_calls"][0]["id"] == "call_ls"
    if model == "gpt":  # OpenAI gets Codex's items as they are, encrypted reasoning included
        assert body["input"] == history and body["prompt_cache_key"] == "session-1"
    with pytest.raises(openai.NotFoundError):  # store false: nothing kept
        c.responses.retrieve(final.response.id)
