"""Anthropic Messages requests → the internal chat request (no network)."""

from __future__ import annotations

from typing import Any

import pytest

from modelway.errors import InvalidRequestError
from modelway.server.dialects.anthropic_request import signature, translate, without_our_thinking
from modelway.validate import chat_request


def req(messages: list[Any], **fields: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 100, "messages": messages, **fields}


def messages_of(data: dict[str, Any], native: bool = False) -> list[dict[str, Any]]:
    t = translate(data, native=native)
    chat_request("m", t.messages, params=t.params, extra=t.extra)  # what the translation gives always validates
    return t.messages


def refused(data: dict[str, Any], native: bool = False) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        translate(data, native=native)
    return info.value


def test_system_texts_go_first_in_one_message() -> None:
    data = req(
        [
            {"role": "user", "content": "q1"},
            {"role": "system", "content": [{"type": "text", "text": "rule 2"}]},
            {"role": "assistant", "content": "a1"},
            {"role": "developer", "content": "rule 3"},
            {"role": "user", "content": "q2"},
        ],
        system=[
            {"type": "text", "text": "rule 1", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "1b"},
        ],
    )
    assert messages_of(data) == [
        {"role": "system", "content": "rule 1\n\n1b\n\nrule 2\n\nrule 3"},
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
    ]


def test_tool_results_come_before_the_user_text_of_their_turn() -> None:
    data = req(
        [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "need ", "signature": "sig_a"},
                    {"type": "redacted_thinking", "data": "xyz"},
                    {"type": "thinking", "thinking": "tools", "signature": signature("tools")},
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"city": "杭州"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "t", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "here:"},
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "is_error": True,
                        "content": [
                            {"type": "text", "text": "no clock"},
                            {"type": "image", "source": {"type": "url", "url": "https://x/err.png"}},
                        ],
                    },
                ],
            },
        ]
    )
    out = messages_of(data)
    assert out[1] == {
        "role": "assistant",
        "content": "Let me check.",
        "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "w", "arguments": '{"city":"杭州"}'}},
            {"id": "toolu_2", "type": "function", "function": {"name": "t", "arguments": "{}"}},
        ],
        "reasoning_content": "need tools",
    }
    assert out[2:] == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "[tool error] no clock"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "https://x/err.png"}},
                {"type": "text", "text": "here:"},
            ],
        },
    ]


def test_tool_use_only_assistant_has_no_content() -> None:
    data = req(
        [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]},
        ]
    )
    out = messages_of(data)
    assert out[1]["content"] is None and out[2] == {"role": "tool", "tool_call_id": "t1", "content": ""}
    assert len(out) == 3  # no empty user message after the tool result


def test_images_and_documents() -> None:
    data = req(
        [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}},
                    {"type": "document", "title": "Q3", "source": {"type": "content", "content": "report"}},
                    {
                        "type": "document",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"},
                    },
                    {"type": "text", "text": "summarise"},
                ],
            }
        ]
    )
    [user] = messages_of(data)
    assert user["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
        {"type": "text", "text": "notes"},
        {"type": "text", "text": "Q3\n\nreport"},
        {"type": "file", "file": {"filename": "document.pdf", "file_data": "data:application/pdf;base64,JVBER"}},
        {"type": "text", "text": "summarise"},
    ]


def test_several_text_blocks_become_one_string() -> None:
    data = req([{"role": "user", "content": [{"type": "text", "text": "<reminder>"}, {"type": "text", "text": "go"}]}])
    assert messages_of(data) == [{"role": "user", "content": "<reminder>\n\ngo"}]


def test_parameters() -> None:
    tools = [{"name": "f", "description": "does f", "input_schema": {"type": "object"}, "cache_control": {}}]
    data = req(
        [{"role": "user", "content": "x"}],
        temperature=0,
        top_p=0.5,
        top_k=40,
        stop_sequences=["\n\nHuman:"],
        metadata={"user_id": "u1"},
        tools=tools,
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        service_tier="auto",
        cache_control={"type": "ephemeral"},
    )
    t = translate(data, native=False)
    assert t.params == {
        "max_tokens": 100,
        "temperature": 0,
        "top_p": 0.5,
        "stop": ["\n\nHuman:"],
        "user": "u1",
        "tools": [
            {"type": "function", "function": {"name": "f", "description": "does f", "parameters": {"type": "object"}}}
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
    }
    assert t.extra == {"top_k": 40}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    t = translate(req([{"role": "user", "content": "x"}], tools=[{"name": "f"}], tool_choice=choice), native=False)
    assert t.params["tool_choice"] == expected and "parallel_tool_calls" not in t.params


def test_tool_choice_without_tools_is_not_sent() -> None:
    t = translate(req([{"role": "user", "content": "x"}], tool_choice={"type": "auto"}), native=False)
    assert "tool_choice" not in t.params


@pytest.mark.parametrize(
    ("thinking", "config", "effort"),
    [
        ({"type": "enabled", "budget_tokens": 1024}, None, "low"),
        ({"type": "enabled", "budget_tokens": 4095}, None, "low"),
        ({"type": "enabled", "budget_tokens": 4096}, None, "medium"),
        ({"type": "enabled", "budget_tokens": 16383}, None, "medium"),
        ({"type": "enabled", "budget_tokens": 16384}, {"effort": "low"}, "high"),
        ({"type": "disabled"}, None, "none"),
        ({"type": "adaptive"}, None, None),
        ({"type": "adaptive"}, {"effort": "max"}, "max"),
        (None, {"effort": "medium"}, "medium"),
    ],
)
def test_thinking_becomes_reasoning_effort(thinking: Any, config: Any, effort: str | None) -> None:
    fields = {k: v for k, v in (("thinking", thinking), ("output_config", config)) if v is not None}
    t = translate(req([{"role": "user", "content": "x"}], **fields), native=False)
    assert t.params.get("reasoning_effort") == effort
    chat_request("m", t.messages, params=t.params)  # every value is one the internal request takes


def test_output_format_becomes_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    t = translate(
        req([{"role": "user", "content": "x"}], output_config={"format": {"type": "json_schema", "schema": schema}}),
        native=False,
    )
    assert t.params["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }


@pytest.mark.parametrize(
    ("data", "param"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        (req([]), "messages"),
        (req([{"role": "user", "content": "x"}], frobnicate=1), "frobnicate"),
        (req([{"role": "robot", "content": "x"}]), "messages[0].role"),
        (req([{"role": "user", "content": 5}]), "messages[0].content"),
        (req([{"role": "user", "content": [{"type": "search_result", "source": "s"}]}]), "messages[0].content[0].type"),
        (req([{"role": "user", "content": [{"text": "no type"}]}]), "messages[0].content[0].type"),
        (req([{"role": "user", "content": [{"type": "text", "text": 3}]}]), "messages[0].content[0].text"),
        (
            req([{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]),
            "messages[0].content[0].source.type",
        ),
        (
            req([{"role": "user", "content": [{"type": "document", "source": {"type": "url", "url": "u"}}]}]),
            "messages[0].content[0].source.type",
        ),
        (
            req([{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": []}]}]),
            "messages[0].content[0].input",
        ),
        (req([{"role": "user", "content": [{"type": "tool_result"}]}]), "messages[0].content[0].tool_use_id"),
        (req([{"role": "user", "content": "x"}], system=[{"type": "image"}]), "system[0].type"),
        (
            req([{"role": "user", "content": "x"}], tools=[{"type": "web_search_20250305", "name": "w"}]),
            "tools[0].type",
        ),
        (req([{"role": "user", "content": "x"}], tools=[{"name": "f", "input_schema": "s"}]), "tools[0].input_schema"),
        (req([{"role": "user", "content": "x"}], tools=[{"name": "f"}], tool_choice={"type": "x"}), "tool_choice.type"),
        (req([{"role": "user", "content": "x"}], thinking={"type": "enabled"}), "thinking.budget_tokens"),
        (req([{"role": "user", "content": "x"}], mcp_servers=[{"url": "u"}]), "mcp_servers"),
        (req([{"role": "user", "content": "x"}], stop_sequences="x"), "stop_sequences"),
        (req([{"role": "user", "content": "x"}], metadata={"user_id": 5}), "metadata.user_id"),
        (req([{"role": "user", "content": "x"}], top_k=-1), "top_k"),
    ],
)
def test_refusals_name_the_field(data: dict[str, Any], param: str) -> None:
    exc = refused(data)
    assert exc.param == param and param in exc.message


def test_anthropic_only_things_pass_when_every_upstream_is_anthropic() -> None:
    data = req(
        [
            {
                "role": "user",
                "content": [
                    {"type": "search_result", "source": "s", "title": "t", "content": []},
                    {"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}},
                    {"type": "text", "text": "x"},
                ],
            }
        ],
        tools=[{"type": "web_search_20250305", "name": "web_search"}, {"name": "f"}],
        mcp_servers=[{"type": "url", "url": "https://mcp"}],
    )
    t = translate(data, native=True)
    assert t.messages == [{"role": "user", "content": "x"}]
    assert [tool["function"]["name"] for tool in t.params["tools"]] == ["f"]


def test_our_thinking_is_left_out_of_the_native_body() -> None:
    ours = {"type": "thinking", "thinking": "t", "signature": signature("t")}
    theirs = {"type": "thinking", "thinking": "u", "signature": "EqQBCkYIBxgCKkB"}
    data = req(
        [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": [ours, {"type": "text", "text": "b"}]},
            {"role": "user", "content": "c"},
            {"role": "assistant", "content": [ours]},
            {"role": "user", "content": "d"},
            {"role": "assistant", "content": [theirs, {"type": "text", "text": "e"}]},
            {"role": "user", "content": "f"},
        ]
    )
    out = without_our_thinking(data)
    assert out["messages"] == [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
        {"role": "user", "content": "c"},
        {"role": "user", "content": "d"},
        data["messages"][5],
        {"role": "user", "content": "f"},
    ]
    assert data["messages"][1]["content"][0] is ours  # the caller's body itself is not changed
    plain = req([{"role": "user", "content": "x"}])
    assert without_our_thinking(plain) is plain


def test_input_estimate_counts_messages_and_tools() -> None:
    base = translate(req([{"role": "user", "content": "x" * 400}]), native=False)
    assert base.input_estimate() == 100
    with_tools = translate(req([{"role": "user", "content": "x" * 400}], tools=[{"name": "f" * 40}]), native=False)
    assert with_tools.input_estimate() > 110


def test_tool_references_of_claude_code_s_tool_search_become_text() -> None:
    # Claude Code's ToolSearch answers with tool_reference blocks (the deferred tools it loaded); a chat model has
    # every tool's schema already (defer_loading is not sent), so it needs only to hear which were loaded
    data = req(
        [
            {"role": "user", "content": "use the calendar"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "ToolSearch", "input": {}}]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [
                            {"type": "tool_reference", "tool_name": "mcp__cal__list_events"},
                            {"type": "tool_reference", "tool_name": "mcp__cal__add_event"},
                        ],
                    }
                ],
            },
        ]
    )
    out = messages_of(data)
    assert out[2]["role"] == "tool" and out[2]["tool_call_id"] == "t1"
    assert "mcp__cal__list_events" in out[2]["content"] and "mcp__cal__add_event" in out[2]["content"]
    bad = req(
        [
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "tool_reference"}]}],
            }
        ]
    )
    assert refused(bad).param == "messages[0].content[0].content[0].tool_name"
