"""Representative faults through the official ``openai`` SDK, as an application would meet them: failover is
invisible, an error before the stream is the SDK's typed exception, an error after it is raised where it happened
(after the text that arrived), and a stream never just stops short of its end."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import openai
import pytest
from fault_harness import COMMIT, DEADLINE, FAULTY_TEXT, HEALTHY_TEXT, MASTER_KEY, SENT, openai_events, sse_body
from fault_rig import Rig
from openai.types.chat import ChatCompletionMessageParam

from modelway.testing import Fault

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def sdk(rig: Rig) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=rig.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=5) as client:
        yield client


@dataclass
class Streamed:
    text: str
    error: openai.APIError | None
    elapsed: float


async def stream(sdk: openai.AsyncOpenAI, model: str) -> Streamed:
    """The text of a stream, and the error that ended it (``None``: it ended cleanly)."""
    start, text = time.monotonic(), []
    try:
        chunks = await sdk.chat.completions.create(model=model, messages=USER, stream=True)
        async for chunk in chunks:
            if chunk.choices:
                text.append(chunk.choices[0].delta.content or "")
    except openai.APIError as exc:
        return Streamed("".join(text), exc, time.monotonic() - start)
    return Streamed("".join(text), None, time.monotonic() - start)


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Fault.http(500), id="5xx"),
        pytest.param(Fault.reset(), id="reset"),
        pytest.param(Fault.slow_first_byte(5), id="timeout"),
    ],
)
async def test_failover_is_invisible(rig: Rig, sdk: openai.AsyncOpenAI, fault: Fault) -> None:
    rig.faulty.push(fault)
    start = time.monotonic()
    answer = await sdk.chat.completions.create(model="sim-2", messages=USER)
    assert answer.choices[0].message.content == HEALTHY_TEXT and time.monotonic() - start < DEADLINE
    rig.faulty.push(fault)
    got = await stream(sdk, "sim-2")
    assert (got.text, got.error) == (HEALTHY_TEXT, None) and got.elapsed < DEADLINE
    assert len(rig.faulty.requests) == len(rig.healthy.requests) == 2


async def test_failover_for_embeddings(rig: Rig, sdk: openai.AsyncOpenAI) -> None:
    rig.faulty.push(Fault.http(503))
    answer = await sdk.embeddings.create(model="sim-2", input=["hi"])
    assert len(answer.data) == 1 and len(answer.data[0].embedding) == 8
    assert len(rig.faulty.requests) == len(rig.healthy.requests) == 1


async def test_rate_limit_is_the_sdks_rate_limit_error(rig: Rig, sdk: openai.AsyncOpenAI) -> None:
    rig.faulty.push(Fault.http(429, retry_after=3), Fault.http(429, retry_after=3), Fault.http(429))
    with pytest.raises(openai.RateLimitError) as caught:
        await sdk.chat.completions.create(model="sim-1", messages=USER)
    with pytest.raises(openai.RateLimitError) as in_stream:
        await stream_or_raise(sdk, "sim-1")
    with pytest.raises(openai.RateLimitError) as embedding:
        await sdk.embeddings.create(model="sim-1", input=["hi"])
    for exc in (caught.value, in_stream.value):
        assert (exc.status_code, exc.code, exc.type) == (429, "rate_limit_exceeded", "rate_limit_error")
        assert exc.response.headers["retry-after"] == "3"
    assert embedding.value.code == "rate_limit_exceeded" and "retry-after" not in embedding.value.response.headers


async def stream_or_raise(sdk: openai.AsyncOpenAI, model: str) -> str:
    got = await stream(sdk, model)
    if got.error is not None:
        raise got.error
    return got.text


@pytest.mark.parametrize(
    ("model", "fault", "status", "type_", "code"),
    [
        pytest.param("sim-1", Fault.http(503), 502, "upstream_error", "server_error", id="5xx"),
        pytest.param("sim-1", Fault.slow_first_byte(5), 504, "timeout_error", None, id="timeout"),
        pytest.param("dead-1", None, 502, "connection_error", None, id="refused"),
        pytest.param("sim-1", Fault.content_type("text/html"), 502, "stream_error", None, id="html-200"),
        pytest.param(
            "sim-2",
            Fault.error_frame(after_chunks=1, code="content_filter"),
            400,
            "content_filter",
            "content_filter",
            id="content-filter-no-failover",
        ),
    ],
)
async def test_errors_before_the_stream_are_status_errors(
    rig: Rig, sdk: openai.AsyncOpenAI, model: str, fault: Fault | None, status: int, type_: str, code: str | None
) -> None:
    exceptions: list[openai.APIStatusError] = []
    for streaming in (False, True):
        if fault is not None:
            rig.faulty.push(fault)
        start = time.monotonic()
        with pytest.raises(openai.APIStatusError) as caught:
            if streaming:
                await stream_or_raise(sdk, model)
            else:
                await sdk.chat.completions.create(model=model, messages=USER)
        assert time.monotonic() - start < DEADLINE
        exceptions.append(caught.value)
    for exc in exceptions:
        assert (exc.status_code, exc.type, exc.code) == (status, type_, code), exc
        assert (exc.status_code >= 500) == isinstance(exc, openai.InternalServerError)
    assert rig.healthy.requests == []


@pytest.mark.parametrize(
    ("fault", "type_", "code"),
    [
        pytest.param(Fault.error_frame(after_chunks=COMMIT), "upstream_error", "server_error", id="error-frame"),
        pytest.param(Fault.cut_stream(after_chunks=COMMIT), "stream_error", None, id="cut"),
        pytest.param(Fault.malformed_json(after_chunks=COMMIT), "stream_error", None, id="malformed"),
        pytest.param(Fault.stall(after_chunks=COMMIT), "timeout_error", None, id="stall"),
        pytest.param(sse_body(openai_events()), "stream_error", None, id="clean-end-without-done"),
    ],
)
async def test_errors_after_the_stream_started_raise_where_they_happened(
    rig: Rig, sdk: openai.AsyncOpenAI, fault: Fault, type_: str, code: str | None
) -> None:
    rig.faulty.push(fault)
    got = await stream(sdk, "sim-2")  # committed: no failover any more
    assert got.text == SENT and got.elapsed < DEADLINE
    assert got.error is not None and not isinstance(got.error, openai.APIStatusError), got
    assert (got.error.type, got.error.code) == (type_, code) and got.error.message
    assert rig.healthy.requests == []


async def test_a_json_answer_to_a_stream_request_is_a_stream(rig: Rig, sdk: openai.AsyncOpenAI) -> None:
    rig.faulty.push(Fault.json_for_stream())
    got = await stream(sdk, "sim-1")
    assert (got.text, got.error) == (FAULTY_TEXT, None)
