"""The Responses stream state machine over scripted chunk sequences, event by event (no network)."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from modelway.errors import (
    AllDeploymentsFailedError,
    ContextLengthError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UpstreamServerError,
)
from modelway.server.dialects.responses_items import ResponseContext
from modelway.server.dialects.responses_stream import ResponsesStream, failure
from modelway.store.responses import MemoryResponseStore, StoredResponse
from modelway.types import ChatCompletionChunk, ChunkChoice, Delta, ToolCallDelta, Usage

NOW = int(time.time())


def chunk(
    content: str | None = None,
    *,
    reasoning: str | None = None,
    calls: list[ToolCallDelta] | None = None,
    finish: str | None = None,
    usage: Usage | None = None,
    raw: bytes | None = None,
) -> ChatCompletionChunk:
    choices = [ChunkChoice(0, Delta(content, None, reasoning, calls), finish)]
    return ChatCompletionChunk("chatcmpl-1", 1, "up", choices, usage, "test", raw=raw)


def frames(data: bytes) -> list[dict[str, Any]]:
    """Parse SSE bytes: every frame is ``event: <type>\\ndata: <json>\\n\\n`` and names its own type."""
    out = []
    for frame in data.split(b"\n\n"):
        if not frame:
            continue
        head, data_line = frame.split(b"\n")
        assert head.startswith(b"event: ") and data_line.startswith(b"data: "), frame
        event = orjson.loads(data_line[6:])
        assert event["type"] == head[7:].decode()
        out.append(event)
    return out


class Recorder(MemoryResponseStore):
    """A store noting each write (a test checks it happens before the final event is rendered)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    async def _put(self, rec: StoredResponse, data: bytes) -> None:
        self.writes.append(rec.id)
        await super()._put(rec, data)


def context(keeper: MemoryResponseStore | None = None) -> ResponseContext:
    echo = {"instructions": None, "tools": [], "store": keeper is not None, "metadata": {}}
    items = [{"type": "message", "id": "msg_in", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]
    return ResponseContext("resp_test", NOW, "my-model", echo, items, keeper=keeper)


async def render(stream: ResponsesStream, chunks: list[ChatCompletionChunk]) -> list[dict[str, Any]]:
    data = stream.start() + b"".join(stream.chunk(c) for c in chunks) + await stream.end()
    return frames(data)


async def test_reasoning_then_text_then_two_tool_calls_event_by_event() -> None:
    keeper = Recorder()
    usage = Usage(10, 20, 30, {"cached_tokens": 4}, {"reasoning_tokens": 6})
    chunks = [
        chunk(reasoning="Think"),
        chunk(reasoning="ing."),
        chunk("Hel"),
        chunk("lo"),
        chunk(calls=[ToolCallDelta(0, "call_a", "get", '{"x"')]),
        chunk(calls=[ToolCallDelta(0, None, None, ":1}")]),
        chunk(calls=[ToolCallDelta(1, "call_b", "put", "")]),
        chunk(calls=[ToolCallDelta(1, None, None, "{}")]),
        chunk(finish="tool_calls", usage=usage),
    ]
    stream = ResponsesStream(context(keeper))
    events = await render(stream, chunks)
    got = [(e["type"], e.get("output_index"), e.get("delta") or e.get("text") or e.get("arguments")) for e in events]
    assert got == [
        ("response.created", None, None),
        ("response.in_progress", None, None),
        ("response.output_item.added", 0, None),
        ("response.reasoning_summary_part.added", 0, None),
        ("response.reasoning_summary_text.delta", 0, "Think"),
        ("response.reasoning_summary_text.delta", 0, "ing."),
        ("response.output_item.added", 1, None),
        ("response.content_part.added", 1, None),
        ("response.output_text.delta", 1, "Hel"),
        ("response.output_text.delta", 1, "lo"),
        ("response.output_item.added", 2, None),
        ("response.function_call_arguments.delta", 2, '{"x"'),
        ("response.function_call_arguments.delta", 2, ":1}"),
        ("response.output_item.added", 3, None),
        ("response.function_call_arguments.delta", 3, "{}"),
        ("response.reasoning_summary_text.done", 0, "Thinking."),
        ("response.reasoning_summary_part.done", 0, None),
        ("response.output_item.done", 0, None),
        ("response.output_text.done", 1, "Hello"),
        ("response.content_part.done", 1, None),
        ("response.output_item.done", 1, None),
        ("response.function_call_arguments.done", 2, '{"x":1}'),
        ("response.output_item.done", 2, None),
        ("response.function_call_arguments.done", 3, "{}"),
        ("response.output_item.done", 3, None),
        ("response.completed", None, None),
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    created, in_progress = events[0]["response"], events[1]["response"]
    for snap in (created, in_progress):
        assert snap["id"] == "resp_test" and snap["status"] == "in_progress" and snap["output"] == []
        assert snap["model"] == "my-model" and snap["created_at"] == NOW
    # every item event names the item announced at its index
    ids = {e["output_index"]: e["item"]["id"] for e in events if e["type"] == "response.output_item.added"}
    assert [ids[i][:3] for i in range(4)] == ["rs_", "msg", "fc_", "fc_"]
    for e in events:
        if "item_id" in e:
            assert e["item_id"] == ids[e["output_index"]]
    added = [e["item"] for e in events if e["type"] == "response.output_item.added"]
    assert added[0] == {"type": "reasoning", "id": ids[0], "summary": []}
    assert added[1] == {"type": "message", "id": ids[1], "role": "assistant", "status": "in_progress", "content": []}
    assert added[2]["call_id"] == "call_a" and added[2]["name"] == "get" and added[2]["arguments"] == ""
    assert added[2]["status"] == "in_progress"
    parts = [e for e in events if e["type"] in ("response.content_part.added", "response.reasoning_summary_part.added")]
    assert parts[0]["summary_index"] == 0 and parts[0]["part"] == {"type": "summary_text", "text": ""}
    assert parts[1]["content_index"] == 0
    assert parts[1]["part"] == {"type": "output_text", "text": "", "annotations": []}
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert done == [
        {"type": "reasoning", "id": ids[0], "summary": [{"type": "summary_text", "text": "Thinking."}]},
        {
            "type": "message",
            "id": ids[1],
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Hello", "annotations": []}],
        },
        {
            "type": "function_call",
            "id": ids[2],
            "call_id": "call_a",
            "name": "get",
            "arguments": '{"x":1}',
            "status": "completed",
        },
        {
            "type": "function_call",
            "id": ids[3],
            "call_id": "call_b",
            "name": "put",
            "arguments": "{}",
            "status": "completed",
        },
    ]
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["output"] == done and final["error"] is None
    assert final["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 4},
        "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 6},
        "total_tokens": 30,
    }
    # kept before the caller heard response.completed, with the request's input and the output
    assert keeper.writes == ["resp_test"]
    kept = await keeper.get("resp_test", None)
    assert kept is not None and kept.output == done and kept.input[0]["id"] == "msg_in" and kept.body == final


async def test_tool_calls_keyed_by_id_when_indexes_collide() -> None:
    chunks = [
        chunk(calls=[ToolCallDelta(0, "call_1", "a", '{"n":1}')]),
        chunk(calls=[ToolCallDelta(0, "call_2", "b", '{"n":')]),
        chunk(calls=[ToolCallDelta(0, None, None, "2}")]),  # no id: the call last seen at index 0
        chunk(calls=[ToolCallDelta(0, "call_1", None, "")]),  # an id seen before: that call
        chunk(finish="tool_calls"),
    ]
    events = await render(ResponsesStream(context()), chunks)
    calls = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [(c["call_id"], c["name"], c["arguments"]) for c in calls] == [
        ("call_1", "a", '{"n":1}'),
        ("call_2", "b", '{"n":2}'),
    ]
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.added"] == [0, 1]


async def test_tool_call_without_ids_gets_one_and_keeps_it() -> None:
    chunks = [
        chunk(calls=[ToolCallDelta(0, None, "f", "{")]),
        chunk(calls=[ToolCallDelta(0, "late_id", None, "}")]),  # the provider's id arrives late: same call
        chunk(finish="tool_calls"),
    ]
    events = await render(ResponsesStream(context()), chunks)
    added = [e["item"] for e in events if e["type"] == "response.output_item.added"]
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert len(added) == len(done) == 1
    assert added[0]["call_id"].startswith("call_") and done[0]["call_id"] == added[0]["call_id"]
    assert done[0]["arguments"] == "{}"


async def test_an_empty_answer_is_one_empty_message() -> None:
    events = await render(ResponsesStream(context()), [chunk(finish="stop")])
    types = [e["type"] for e in events]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == ""


async def test_no_chunk_at_all_still_starts_and_completes() -> None:
    stream = ResponsesStream(context())
    events = frames(stream.start() + await stream.end())
    assert [e["type"] for e in events][:2] == ["response.created", "response.in_progress"]
    assert events[-1]["type"] == "response.completed"


async def test_length_is_response_incomplete() -> None:
    events = await render(ResponsesStream(context()), [chunk("cut"), chunk(finish="length", usage=Usage(1, 2, 3))])
    final = events[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["status"] == "incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["response"]["output"][0]["status"] == "incomplete"


async def test_a_failure_after_the_start_is_response_failed() -> None:
    stream = ResponsesStream(context())
    head = stream.start() + stream.chunk(chunk("par"))
    exc = UpstreamServerError("boom", provider="zhipu", status_code=500)
    events = frames(head + stream.error(exc, "req-1"))
    final = events[-1]
    assert final["type"] == "response.failed"
    assert final["sequence_number"] == events[-2]["sequence_number"] + 1
    assert final["response"]["status"] == "failed"
    assert final["response"]["error"]["code"] == "server_error" and "boom" in final["response"]["error"]["message"]
    assert final["response"]["output"][0]["content"][0]["text"] == "par"


def test_a_failure_before_any_chunk_starts_the_stream_first() -> None:
    stream = ResponsesStream(context())
    events = frames(stream.error(UpstreamServerError("down"), None))
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "response.failed"]


@pytest.mark.parametrize(
    ("exc", "code", "says"),
    [
        (ContextLengthError("too long", provider="p"), "context_length_exceeded", "too long"),
        (PermissionDeniedError("no money", provider="p", code="insufficient_quota"), "insufficient_quota", "no money"),
        (RateLimitError("slow down", provider="p", retry_after=2.2), "rate_limit_exceeded", "try again in 3s"),
        (RateLimitError("slow down", provider="p"), "rate_limit_exceeded", "slow down"),
        (UpstreamServerError("oops", provider="p"), "server_error", "oops"),
        (ServiceUnavailableError("store down"), "server_error", "store down"),
        (
            AllDeploymentsFailedError("all failed", [UpstreamServerError("a"), ContextLengthError("b")]),
            "context_length_exceeded",
            "all 2 deployments failed",
        ),
    ],
)
def test_failure_codes_as_codex_reads_them(exc: Exception, code: str, says: str) -> None:
    err = failure(exc)  # type: ignore[arg-type]
    assert err["code"] == code
    assert says in err["message"]


async def test_a_store_outage_at_the_end_is_a_failure_not_a_completion() -> None:
    class Down(MemoryResponseStore):
        async def _put(self, rec: StoredResponse, data: bytes) -> None:
            raise ServiceUnavailableError("the response store is down")

    stream = ResponsesStream(context(Down()))
    stream.start()
    stream.chunk(chunk("x"))
    with pytest.raises(ServiceUnavailableError):
        await stream.end()  # (the server renders it with stream.error: response.failed)
    failed = frames(stream.error(ServiceUnavailableError("the response store is down"), None))
    assert failed[-1]["type"] == "response.failed"


async def test_too_large_to_keep_is_answered_with_store_false() -> None:
    keeper = MemoryResponseStore(max_bytes=200)
    events = await render(ResponsesStream(context(keeper)), [chunk("x" * 500), chunk(finish="stop")])
    assert events[-1]["response"]["store"] is False
    assert await keeper.get("resp_test", None) is None


def native_frame(kind: str, seq: int, **fields: Any) -> bytes:
    return (
        b"event: "
        + kind.encode()
        + b"\ndata: "
        + orjson.dumps({"type": kind, "sequence_number": seq, **fields})
        + b"\n\n"
    )


async def test_native_frames_pass_with_the_model_renamed_and_the_end_held_until_kept() -> None:
    keeper = Recorder()
    ctx = context(keeper)
    ctx.previous_id = "resp_before"
    up = {"id": "resp_openai", "created_at": NOW + 1, "model": "gpt-4o-mini-2024", "status": "in_progress"}
    up |= {"output": [], "store": False, "previous_response_id": None}
    item = {"type": "message", "id": "msg_up", "role": "assistant", "status": "completed", "content": []}
    done = {**up, "status": "completed", "output": [item]}
    raw = [
        native_frame("response.created", 0, response=up),
        native_frame("response.output_text.delta", 1, item_id="msg_up", output_index=0, content_index=0, delta="Hi"),
        native_frame("response.output_item.done", 2, output_index=0, item=item),
        native_frame("response.completed", 3, response=done),
    ]
    stream = ResponsesStream(ctx)
    out = stream.start()
    assert out == b""  # the upstream's own response.created comes first
    parts = [stream.chunk(chunk("Hi" if i == 1 else None, raw=r)) for i, r in enumerate(raw)]
    assert parts[1] == raw[1] and parts[2] == raw[2]  # verbatim
    assert parts[3] == b""  # held
    created = frames(parts[0])[0]["response"]
    assert created["model"] == "my-model" and created["id"] == "resp_openai"
    assert created["previous_response_id"] == "resp_before" and created["store"] is True
    end = frames(await stream.end())
    assert keeper.writes == ["resp_openai"]
    assert end[0]["type"] == "response.completed" and end[0]["sequence_number"] == 3
    assert end[0]["response"]["model"] == "my-model" and end[0]["response"]["output"] == [item]
    kept = await keeper.get("resp_openai", None)
    assert kept is not None and kept.previous_id == "resp_before" and kept.output == [item]
    failed = frames(stream.error(UpstreamServerError("late", code="server_error"), None))
    assert failed[-1]["sequence_number"] > 3


def accumulate(events: list[dict[str, Any]]) -> Any:
    """The official SDK's accumulator (``client.responses.stream(...).get_final_response()``) over ``events``."""
    from openai import omit
    from openai._models import construct_type_unchecked
    from openai.lib.streaming.responses._responses import ResponseStreamState
    from openai.types.responses import ResponseStreamEvent

    state: Any = ResponseStreamState(input_tools=omit, text_format=omit)
    for e in events:
        state.handle_event(construct_type_unchecked(type_=ResponseStreamEvent, value=e))  # type: ignore[arg-type]
    return state._completed_response


def sdk_context() -> ResponseContext:
    ctx = context()
    ctx.echo |= {"tool_choice": "auto", "parallel_tool_calls": True}
    return ctx


@pytest.mark.parametrize(
    "pieces",
    [
        pytest.param(  # no ids, every call at index 0, each whole in one chunk
            [ToolCallDelta(0, None, "f", '{"a":1}'), ToolCallDelta(0, None, "g", '{"b":2}')], id="no-ids-one-index"
        ),
        pytest.param(  # the same id given to two calls
            [ToolCallDelta(0, "call_1", "f", '{"a":1}'), ToolCallDelta(1, "call_1", "g", '{"b":2}')], id="same-id"
        ),
        pytest.param(
            [ToolCallDelta(0, "call_1", "f", '{"a":1}'), ToolCallDelta(0, "call_1", "g", '{"b":2}')],
            id="same-id-same-index",
        ),
    ],
)
async def test_two_calls_sharing_an_index_or_an_id_stay_two_calls(pieces: list[ToolCallDelta]) -> None:
    chunks = [chunk(calls=[p]) for p in pieces] + [chunk(finish="tool_calls", usage=Usage(1, 2, 3))]
    events = await render(ResponsesStream(sdk_context()), chunks)
    final = accumulate(events)  # (it tells function calls apart by call_id: they must differ)
    calls = [(o.name, o.arguments) for o in final.output]
    assert calls == [("f", '{"a":1}'), ("g", '{"b":2}')]
    assert len({o.call_id for o in final.output}) == 2
    assert final.output[0].call_id == (pieces[0].id or final.output[0].call_id)


async def test_an_empty_id_on_every_piece_is_no_id() -> None:
    chunks = [
        chunk(calls=[ToolCallDelta(0, "call_a", "f", "")]),
        chunk(calls=[ToolCallDelta(0, "", None, '{"x"')]),  # ("id": "" on each piece, as some servers send)
        chunk(calls=[ToolCallDelta(0, "", "", ":1}")]),
        chunk(calls=[ToolCallDelta(0, "call_a", "f", "")]),  # (the name repeated, nothing more)
        chunk(finish="tool_calls"),
    ]
    final = accumulate(await render(ResponsesStream(sdk_context()), chunks))
    assert [(o.call_id, o.name, o.arguments) for o in final.output] == [("call_a", "f", '{"x":1}')]


async def test_a_function_named_on_every_piece_is_one_call() -> None:
    chunks = [chunk(calls=[ToolCallDelta(0, "a", "f", p)]) for p in ('{"x"', ":1", "}", "")]
    final = accumulate(await render(ResponsesStream(sdk_context()), [*chunks, chunk(finish="tool_calls")]))
    assert [(o.call_id, o.name, o.arguments) for o in final.output] == [("a", "f", '{"x":1}')]


def test_a_whole_answer_with_a_repeated_call_id_gets_unique_ones() -> None:
    from modelway.server.dialects.responses_items import completion_output
    from modelway.types import ChatCompletion, ChatMessage, Choice, FunctionCall, ToolCall

    calls = [ToolCall("call_1", FunctionCall("f", "{}")), ToolCall("call_1", FunctionCall("g", "{}"))]
    resp = ChatCompletion("c", 1, "m", [Choice(0, ChatMessage(content=None, tool_calls=calls), "tool_calls")])
    output, _ = completion_output(resp)
    ids = [o["call_id"] for o in output if o["type"] == "function_call"]
    assert ids[0] == "call_1" and len(set(ids)) == 2
