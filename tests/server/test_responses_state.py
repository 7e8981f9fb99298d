"""/v1/responses: kept responses (retrieve, delete, input_items), their scoping by key, ``store: false``, the
zero-config gateway's in-memory store, and the requests refused (each naming its field)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import openai
import pytest
from gw import MASTER_KEY, RunningGateway
from test_responses_env import client, new_key

from modelway.config import parse_config
from modelway.errors import ConfigError
from modelway.server.dialects.responses_items import input_items, replay, to_messages, with_ids
from modelway.testing import OpenAISimulator, Reply, ZhipuSimulator


@pytest.fixture(scope="module")
def sgw(
    start_gateway: Callable[[dict[str, Any]], RunningGateway],
    zhipu_sim: ZhipuSimulator,
    openai_sim: OpenAISimulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> RunningGateway:
    db = tmp_path_factory.mktemp("responses-state") / "modelway.db"
    dep = {"api_key": zhipu_sim.api_key, "api_base": zhipu_sim.base_url}
    gpt = {"api_key": openai_sim.api_key, "api_base": openai_sim.base_url}
    return start_gateway(
        {
            "server": {"master_key": MASTER_KEY, "max_retries": 0},
            "store": {"url": f"sqlite:///{db}", "key_refresh": 3600},
            "usage": {"flush_interval": 0.05, "spill_path": str(db.parent / "spill.jsonl")},
            "models": [
                {"name": "glm", "deployments": [{"model": "zhipu/glm-4-flash", **dep}]},
                {"name": "gpt", "deployments": [{"model": "openai/gpt-4o-mini", **gpt}]},
                # a group with OpenAI and another provider: the request must be translatable
                {
                    "name": "mixed",
                    "deployments": [{"model": "openai/gpt-4o-mini", **gpt}, {"model": "zhipu/glm-4", **dep}],
                },
            ],
        }
    )


@pytest.fixture
def c(sgw: RunningGateway) -> Iterator[openai.OpenAI]:
    with client(sgw) as sdk:
        yield sdk


async def raw(gw: RunningGateway, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    async with aiohttp.ClientSession() as s, s.request(method, gw.url + path, json=body, headers=headers) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.json(content_type=None)


ITEMS: list[Any] = [
    {"role": "system", "content": "be kind"},
    {"role": "user", "content": "one"},
    {"role": "assistant", "content": "two"},
    {"role": "user", "content": [{"type": "input_text", "text": "three"}]},
]


@pytest.mark.parametrize("model", ["glm", "gpt"])
def test_retrieve_input_items_and_delete(c: openai.OpenAI, model: str) -> None:
    made = c.responses.create(model=model, input=ITEMS, metadata={"ticket": "42"})
    got = c.responses.retrieve(made.id)
    assert got.model_dump() == made.model_dump()
    assert got.metadata == {"ticket": "42"} and got.store is True

    page = c.responses.input_items.list(made.id)  # newest first by default
    texts = [item.content[0].text for item in page.data]  # type: ignore[union-attr]
    assert texts == ["three", "two", "one", "be kind"]
    assert all(item.id for item in page.data) and page.has_more is False
    assert page.first_id == page.data[0].id and page.last_id == page.data[-1].id

    first = c.responses.input_items.list(made.id, limit=2, order="asc")
    assert [item.content[0].text for item in first.data] == ["be kind", "one"]  # type: ignore[union-attr]
    assert first.has_more is True
    rest = c.responses.input_items.list(made.id, limit=2, order="asc", after=first.data[-1].id)
    assert [item.content[0].text for item in rest.data] == ["two", "three"]  # type: ignore[union-attr]
    assert rest.has_more is False
    # the SDK's pager follows the cursor
    assert len(list(c.responses.input_items.list(made.id, limit=1, order="asc"))) == 4

    c.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError) as info:
        c.responses.create(model=model, input="again", previous_response_id=made.id)
    assert info.value.body["param"] == "previous_response_id"  # type: ignore[index]


async def test_delete_answer_and_paging_arguments(sgw: RunningGateway) -> None:
    status, _, made = await raw(sgw, "POST", "/v1/responses", {"model": "glm", "input": "hi"})
    assert status == 200
    rid = made["id"]
    for query, param in [("limit=0", "limit"), ("limit=101", "limit"), ("order=up", "order"), ("after=nope", "after")]:
        status, _, body = await raw(sgw, "GET", f"/v1/responses/{rid}/input_items?{query}")
        assert status == 400 and body["error"]["param"] == param, (query, body)
    status, headers, body = await raw(sgw, "PUT", f"/v1/responses/{rid}")
    assert status == 405 and headers["allow"] == "GET, DELETE", body
    status, headers, _ = await raw(sgw, "POST", f"/v1/responses/{rid}/input_items")
    assert status == 405 and headers["allow"] == "GET"
    status, _, _ = await raw(sgw, "GET", f"/v1/responses/{rid}/other")
    assert status == 404
    status, _, body = await raw(sgw, "DELETE", f"/v1/responses/{rid}")
    assert status == 200 and body == {"id": rid, "object": "response.deleted", "deleted": True}


async def test_another_key_sees_nothing(sgw: RunningGateway) -> None:
    key = await new_key(sgw)
    with client(sgw) as master, client(sgw, key) as other:
        mine = await asyncio.to_thread(master.responses.create, model="glm", input="secret")
        theirs = await asyncio.to_thread(other.responses.create, model="glm", input="their own")
        for sdk, rid in ((other, mine.id), (master, theirs.id)):
            with pytest.raises(openai.NotFoundError):
                await asyncio.to_thread(sdk.responses.retrieve, rid)
            with pytest.raises(openai.NotFoundError):
                await asyncio.to_thread(sdk.responses.input_items.list, rid)
            with pytest.raises(openai.NotFoundError):
                await asyncio.to_thread(sdk.responses.create, model="glm", input="x", previous_response_id=rid)
            with pytest.raises(openai.NotFoundError):
                await asyncio.to_thread(sdk.responses.delete, rid)
        got = await asyncio.to_thread(other.responses.retrieve, theirs.id)
        assert got.output_text == "You said: their own"
        follow = await asyncio.to_thread(
            other.responses.create, model="glm", input="more", previous_response_id=theirs.id
        )
        assert follow.output_text == "You said: more"


def test_store_false_keeps_nothing(c: openai.OpenAI) -> None:
    made = c.responses.create(model="glm", input="forget me", store=False)
    assert made.store is False
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.create(model="glm", input="x", previous_response_id=made.id)


def test_the_zero_config_gateway_keeps_responses_in_memory(
    gateway: RunningGateway, zhipu_sim: ZhipuSimulator, openai_sim: OpenAISimulator
) -> None:
    with client(gateway) as sdk:
        for model in ("glm", "gpt"):
            first = sdk.responses.create(model=model, input="remember 7")
            with sdk.responses.stream(model=model, input="what number?", previous_response_id=first.id) as s:
                second = s.get_final_response()
            assert sdk.responses.retrieve(second.id).output_text == second.output_text
            sim = zhipu_sim if model == "glm" else openai_sim
            text = sim.last_request.body.decode()
            assert text.index("remember 7") < text.index("You said: remember 7") < text.index("what number?")


def test_built_in_tools_go_to_openai_only(c: openai.OpenAI, openai_sim: OpenAISimulator) -> None:
    tools: Any = [{"type": "web_search_preview"}]
    made = c.responses.create(model="gpt", input="news?", tools=tools, include=["web_search_call.action.sources"])
    assert made.output_text == "You said: news?"
    sent = openai_sim.last_request.json
    assert sent["tools"] == tools and sent["include"] == ["web_search_call.action.sources"]
    others: Any = [{"type": "file_search", "vector_store_ids": ["vs_1"]}]
    for model in ("glm", "mixed"):
        with pytest.raises(openai.BadRequestError) as info:
            c.responses.create(model=model, input="news?", tools=others)
        assert info.value.body["param"] == "tools[0].type"  # type: ignore[index]
        assert "built-in" in info.value.body["message"]  # type: ignore[index]
    # a hosted web search (Codex CLI sends one by default): a chat model answers without it
    assert c.responses.create(model="glm", input="news?", tools=tools).output_text == "You said: news?"


def test_mixed_group_gets_the_translation_or_the_body(
    c: openai.OpenAI, openai_sim: OpenAISimulator, zhipu_sim: ZhipuSimulator
) -> None:
    made = c.responses.create(model="mixed", input="either way")
    assert made.output_text == "You said: either way"
    paths = [r.path for r in openai_sim.requests] + [r.path for r in zhipu_sim.requests]
    assert paths in (["/v1/responses"], ["/api/paas/v4/chat/completions"])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "glm", "input": "x", "frobnicate": 1}, "frobnicate"),
        ({"model": "glm", "input": "x", "messages": []}, "messages"),
        ({"model": "glm"}, "input"),
        ({"model": "glm", "input": 3}, "input"),
        ({"model": "glm", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"model": "glm", "input": [{"type": "message", "role": "user", "content": 5}]}, "input[0].content"),
        ({"model": "glm", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
        ({"model": "glm", "input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        (
            {"model": "glm", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0].image_url",
        ),
        ({"model": "glm", "input": "x", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"model": "glm", "input": "x", "tools": [{"type": "file_search"}]}, "tools[0].type"),
        ({"model": "glm", "input": "x", "tool_choice": {"type": "function"}}, "tool_choice.name"),
        (
            {"model": "glm", "input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}},
            "text.format.schema",
        ),
        ({"model": "glm", "input": "x", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"model": "glm", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "glm", "input": "x", "temperature": 9}, "temperature"),
        ({"model": "glm", "input": "x", "reasoning": "high"}, "reasoning"),
        ({"model": "glm", "input": "x", "store": "yes"}, "store"),
        ({"model": "glm", "input": "x", "background": True}, "background"),
        ({"model": "glm", "input": "x", "conversation": "conv_1"}, "conversation"),
        ({"model": "glm", "input": "x", "prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"model": "glm", "input": "x", "truncation": "sometimes"}, "truncation"),
        ({"model": "glm", "input": "x", "metadata": "m"}, "metadata"),
        ({"input": "x"}, "model"),
    ],
)
async def test_bad_requests_name_the_field(sgw: RunningGateway, body: dict[str, Any], param: str) -> None:
    status, _, answer = await raw(sgw, "POST", "/v1/responses", body)
    assert status == 400, answer
    assert answer["error"]["param"] == param, answer
    assert answer["error"]["type"] == "invalid_request_error"


async def test_unknown_previous_response_and_model(sgw: RunningGateway) -> None:
    status, _, answer = await raw(
        sgw, "POST", "/v1/responses", {"model": "glm", "input": "x", "previous_response_id": "resp_nope"}
    )
    assert status == 404 and answer["error"]["param"] == "previous_response_id"
    status, _, answer = await raw(sgw, "POST", "/v1/responses", {"model": "nope", "input": "x"})
    assert status == 404 and answer["error"]["code"] == "model_not_found"


def test_reasoning_effort_and_options_reach_the_upstream(c: openai.OpenAI, zhipu_sim: ZhipuSimulator) -> None:
    zhipu_sim.push(Reply(text="ok"))
    made = c.responses.create(
        model="glm",
        input="think",
        reasoning={"effort": "high"},
        max_output_tokens=50,
        top_p=0.5,
        user="u-1",
        parallel_tool_calls=False,
        truncation="auto",
        include=["reasoning.encrypted_content"],
    )
    assert made.reasoning is not None and made.reasoning.effort == "high"
    assert made.max_output_tokens == 50 and made.top_p == 0.5 and made.parallel_tool_calls is False
    sent = zhipu_sim.last_request.json
    assert sent["max_tokens"] == 50 and sent["top_p"] == 0.5
    assert "include" not in sent and "truncation" not in sent and "reasoning" not in sent


def test_the_responses_config_section() -> None:
    cfg = parse_config({"responses": {"retention_days": 7, "max_stored_bytes": 1000, "memory_max_items": 5}}, env={})
    assert (cfg.responses.retention_days, cfg.responses.max_stored_bytes, cfg.responses.memory_max_items) == (
        7,
        1000,
        5,
    )
    assert parse_config({}, env={}).responses.retention_days == 30
    for section, field in [({"retention_days": 0}, "retention_days"), ({"max_stored_bytes": 1.5}, "max_stored_bytes")]:
        with pytest.raises(ConfigError, match=f"responses.{field}"):
            parse_config({"responses": section}, env={})
    with pytest.raises(ConfigError, match="responses: unknown field 'ttl'"):
        parse_config({"responses": {"ttl": 1}}, env={})


def test_items_to_messages_merge_calls_and_carry_reasoning() -> None:
    items = input_items(
        [
            {"role": "user", "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "think"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "calling"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "g", "arguments": '{"x":1}'},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
            {"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}]},
        ],
        native_ok=False,
    )
    assert to_messages(items) == [
        {"role": "user", "content": "a\nb"},
        {
            "role": "assistant",
            "content": "calling",
            "reasoning_content": "think",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "g", "arguments": '{"x":1}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}]},
    ]
    kept = with_ids(items)
    assert all(item["id"] for item in kept) and kept[1]["id"] == "rs_1"
    # what OpenAI gets back with store false: no stored ids, no reasoning it cannot resolve
    again = replay(kept)
    assert [item["type"] for item in again] == ["message", "message", "function_call", "function_call"] + [
        "function_call_output"
    ] * 2 + ["message"]
    assert again[1] == {"type": "message", "role": "assistant", "content": "calling"}
    assert all("id" not in item for item in again)


def test_replay_keeps_the_namespace_of_a_call() -> None:
    call = {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "c1",
        "name": "spawn_agent",
        "namespace": "ns",
        "arguments": "{}",
    }
    assert replay([call]) == [{k: v for k, v in call.items() if k != "id"}]
