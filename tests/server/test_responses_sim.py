"""The OpenAI simulator's ``/v1/responses``, checked by the official openai SDK talking to it directly, and the
adapter's native Responses path (request, answer, event stream) against it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import openai
import orjson
import pytest

from modelway.calls import complete_once, stream_once
from modelway.errors import ContextLengthError, RateLimitError
from modelway.providers import get_adapter_class
from modelway.providers.base import ProviderSettings
from modelway.providers.openai_compat import OpenAICompatAdapter
from modelway.providers.openai_responses import API, native
from modelway.testing import Fault, OpenAISimulator, Reply
from modelway.transport import Transport
from modelway.types import ChatRequest, NativeBody


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    t = Transport()
    try:
        yield t
    finally:
        await t.aclose()


@pytest.fixture(scope="module")
def sim() -> Iterator[OpenAISimulator]:
    with OpenAISimulator() as s:
        yield s


@pytest.fixture
def sdk(sim: OpenAISimulator) -> Iterator[openai.OpenAI]:
    sim.clear()
    with openai.OpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0) as c:
        yield c


def test_sdk_reads_the_simulators_response(sdk: openai.OpenAI, sim: OpenAISimulator) -> None:
    sim.push(Reply(text="fine", reasoning="hm", tool_calls=[{"name": "f", "arguments": {"a": 1}}]))
    r = sdk.responses.create(
        model="gpt-4o-mini", input="hi", tools=[{"type": "function", "name": "f", "parameters": {}}]
    )
    assert [item.type for item in r.output] == ["reasoning", "message", "function_call"]
    assert r.output_text == "fine" and r.status == "completed"
    assert r.usage is not None and r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert sim.last_request.path == "/v1/responses"


def test_sdk_accumulates_the_simulators_stream(sdk: openai.OpenAI, sim: OpenAISimulator) -> None:
    sim.push(Reply(text="streamed words", reasoning="why", tool_calls=[{"name": "f", "arguments": "{}"}], chunk_size=3))
    with sdk.responses.stream(model="gpt-4o-mini", input=[{"role": "user", "content": "go"}]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert final.output_text == "streamed words"
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call"]
    seqs = [e.sequence_number for e in events]
    assert seqs == list(range(len(seqs)))
    assert events[-1].type == "response.completed"


def test_simulator_refuses_what_openai_refuses(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="tools"):
        sdk.responses.create(
            model="gpt-4o-mini",
            input="hi",
            tools=[{"type": "function", "function": {"name": "f"}}],  # type: ignore[list-item]
        )
    with pytest.raises(openai.BadRequestError, match="Unknown parameter"):
        sdk.responses.create(model="gpt-4o-mini", input="hi", extra_body={"messages": []})
    with pytest.raises(openai.BadRequestError, match="not found"):
        sdk.responses.create(model="gpt-4o-mini", input="hi", previous_response_id="resp_x")


def test_simulator_stream_failure_and_length(sdk: openai.OpenAI, sim: OpenAISimulator) -> None:
    sim.push(Fault.error_frame(3, code="server_error", message="broke"), Reply(text="cut", finish_reason="length"))
    events = list(sdk.responses.create(model="gpt-4o-mini", input="hi", stream=True))
    assert [e.type for e in events][-1] == "response.failed"
    assert events[-1].response.error.message == "broke"  # type: ignore[union-attr]
    r = sdk.responses.create(model="gpt-4o-mini", input="hi")
    assert r.status == "incomplete" and r.incomplete_details is not None
    assert r.incomplete_details.reason == "max_output_tokens"


def adapter(sim: OpenAISimulator, provider: str = "openai") -> OpenAICompatAdapter:
    a = get_adapter_class(provider)(ProviderSettings(api_key=sim.api_key, base_url=sim.base_url))
    assert isinstance(a, OpenAICompatAdapter)
    return a


def request(stream: bool) -> ChatRequest:
    body = {"model": "alias", "input": "hello", "store": False, "stream": stream, "tools": [{"type": "web_search"}]}
    return ChatRequest("gpt-4o-mini", [{"role": "user", "content": "hello"}], stream, native=NativeBody(API, body))


def test_only_openai_itself_gets_the_native_request(sim: OpenAISimulator) -> None:
    assert native(adapter(sim), request(False))
    assert not native(adapter(sim, "vllm"), request(False))
    assert not native(adapter(sim), ChatRequest("m", [{"role": "user", "content": "x"}]))
    http = adapter(sim).chat_request(request(True))
    assert http.url.endswith("/responses")
    sent = orjson.loads(http.body or b"")
    assert sent["model"] == "gpt-4o-mini" and sent["stream"] is True and sent["tools"] == [{"type": "web_search"}]
    assert adapter(sim, "vllm").chat_request(request(False)).url.endswith("/chat/completions")


async def test_native_answer_parsed_with_its_body(sim: OpenAISimulator, transport: Transport) -> None:
    sim.clear()
    sim.push(Reply(text="hey", reasoning="r", tool_calls=[{"id": "call_9", "name": "f", "arguments": '{"a":1}'}]))
    resp = await complete_once(transport, adapter(sim), request(False), timeout=10)
    m = resp.choices[0].message
    assert m.content == "hey" and m.reasoning_content == "r"
    assert (
        m.tool_calls is not None and m.tool_calls[0].id == "call_9" and m.tool_calls[0].function.arguments == '{"a":1}'
    )
    assert resp.choices[0].finish_reason == "tool_calls"
    assert resp.raw is not None and resp.raw["object"] == "response" and resp.id == resp.raw["id"]
    assert resp.usage is not None and resp.usage.total_tokens == resp.raw["usage"]["total_tokens"]


async def test_native_stream_parsed_into_chunks_with_their_frames(sim: OpenAISimulator, transport: Transport) -> None:
    sim.clear()
    sim.push(
        Reply(
            text="abcdef", reasoning="rr", tool_calls=[{"id": "call_1", "name": "f", "arguments": "{}"}], chunk_size=2
        )
    )
    chunks = [c async for batch in stream_once(transport, adapter(sim), request(True), timeout=10) for c in batch]
    assert all(c.raw is not None and c.raw.startswith(b"event: response.") for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasoning = "".join(c.choices[0].delta.reasoning_content or "" for c in chunks if c.choices)
    calls = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or ()]
    assert text == "abcdef" and reasoning == "rr"
    assert calls[0].id == "call_1" and calls[0].name == "f" and "".join(t.arguments or "" for t in calls) == "{}"
    last = chunks[-1]
    assert last.choices[0].finish_reason == "tool_calls" and last.usage is not None and last.usage.total_tokens > 0


@pytest.mark.parametrize(
    ("code", "error"), [("rate_limit_exceeded", RateLimitError), ("context_length_exceeded", ContextLengthError)]
)
async def test_native_stream_failure_raises_its_typed_error(
    sim: OpenAISimulator, transport: Transport, code: str, error: type[Exception]
) -> None:
    sim.clear()
    sim.push(Fault.error_frame(5, code=code, message="no"))
    with pytest.raises(error):
        async for _ in stream_once(transport, adapter(sim), request(True), timeout=10):
            pass
