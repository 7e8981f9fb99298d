"""Hypothesis strategies shared by the property tests: JSON values as orjson parses them, realistic OpenAI messages,
parameters and provider payloads, and mutations of those (one field somewhere replaced by garbage).

Realistic values are drawn often, so the accept paths of the validator and the adapters are exercised a lot, not
only their error paths.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: every property test runs with this: reproducible (derandomized, no example database), no per-example deadline
#: (CI machines stall), and example counts chosen so the whole property suite stays within ~20 s
SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- JSON values, exactly the kinds orjson.loads returns ----------------------------------------------------------

#: orjson parses integers from -2**63 to 2**64-1 as int (larger ones as float); floats are always finite
INTS = st.integers(-(2**63), 2**64 - 1) | st.sampled_from([0, 1, -1, 2**31, 2**63 - 1, 2**64 - 1, -(2**63)])
FLOATS = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 0.5, 1e300, 1.8446744073709552e19]
)
TEXT = st.text(max_size=12) | st.sampled_from(["", "null", "[DONE]", "{}", "你好", "function", "text", "stop", "0"])
SCALARS = st.none() | st.booleans() | INTS | FLOATS | TEXT
KEYS = st.text(max_size=6) | st.sampled_from(
    ["type", "text", "content", "role", "name", "function", "arguments", "id", "index", "code", "message", "error",
     "url", "image_url", "tool_calls", "choices", "delta", "usage", "input", "output"]
)  # fmt: skip


def json_values(max_leaves: int = 10) -> st.SearchStrategy[Any]:
    return st.recursive(
        SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
        max_leaves=max_leaves,
    )


JSON = json_values()
#: smaller JSON values, cheaper to draw: what noise puts in place of a valid value
GARBAGE = json_values(max_leaves=3)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[Any]) -> Any:
    """A value of ``base`` with one thing somewhere inside changed: a value replaced by garbage, a key dropped, or a
    known key added with a garbage value."""
    return draw(_mutate(draw(base)))


_FIELDS = [
    "role", "content", "tool_calls", "tool_call_id", "name", "function_call", "refusal", "reasoning_content", "audio",
    "type", "text", "image_url", "url", "function", "arguments", "id", "index", "choices", "message", "delta",
    "finish_reason", "usage", "output", "error", "code", "input", "parameters", "stop_reason",
]  # fmt: skip


#: how a mutation goes on at an object: mostly deeper, so that the garbage lands inside otherwise valid values
_HOW = st.sampled_from(["descend"] * 5 + ["add"] * 3 + ["drop", "replace"])


@st.composite
def _mutate(draw: st.DrawFn, value: Any) -> Any:
    if isinstance(value, dict) and value:
        how = draw(_HOW)
        key = draw(st.sampled_from(sorted(value)))
        if how == "descend":
            return {**value, key: draw(_mutate(value[key]))}
        if how == "drop":
            return {k: v for k, v in value.items() if k != key}
        if how == "add":  # a known field (or one already there) set to garbage
            return {**value, draw(st.sampled_from(_FIELDS) | st.just(key)): draw(JSON)}
    elif isinstance(value, list) and value and draw(st.integers(0, 9)) > 0:
        i = draw(st.integers(0, len(value) - 1))
        return [*value[:i], draw(_mutate(value[i])), *value[i + 1 :]]
    return draw(JSON)


# -- realistic OpenAI requests (all of these must be accepted) ----------------------------------------------------

WORDS = st.text(max_size=16) | st.sampled_from(["", "hello", "杭州天气怎么样?", '{"city": "北京"}', "a\nb", "🙂"])
IDS = st.sampled_from(["call_1", "call_abc", "toolu_01", ""]) | st.text(min_size=1, max_size=8)
ARGS = st.sampled_from(["{}", '{"city": "杭州"}', '{"a": [1, {"b": null}]}', "", "not json", "[1, 2]"]) | WORDS
TOOL_CALL = st.fixed_dictionaries(
    {"function": st.fixed_dictionaries({"name": WORDS, "arguments": ARGS})},
    optional={"id": IDS, "type": st.just("function")},
)


_NOISE = st.sampled_from([False] * 9 + [True])


def requests(noise: bool) -> tuple[st.SearchStrategy[list[dict[str, Any]]], st.SearchStrategy[dict[str, Any]]]:
    """(messages, params) strategies of the OpenAI shape. With ``noise``, any value, at any level, is now and then
    (1 in 10) garbage instead: that puts garbage where a validator must look, inside otherwise valid requests."""

    def n(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        # (one_of(s, s, ..., JSON) would not do: hypothesis merges the identical branches, making it 1 in 2)
        return _NOISE.flatmap(lambda bad: GARBAGE if bad else strategy) if noise else strategy

    words = n(WORDS)
    text_part = n(st.fixed_dictionaries({"type": n(st.just("text")), "text": words}))
    image_part = n(
        st.fixed_dictionaries(
            {
                "type": n(st.just("image_url")),
                "image_url": n(
                    st.fixed_dictionaries(
                        {
                            "url": n(
                                st.sampled_from(["https://example.com/cat.png", "data:image/png;base64,iVBORw0KG="])
                            )
                        },
                        optional={"detail": n(st.sampled_from(["auto", "low", "high"]))},
                    )
                ),
            }
        )
    )
    other_part = n(
        st.sampled_from(
            [
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                {"type": "file", "file": {"file_id": "file-1"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                {"type": "text", "text": "cached", "cache_control": {"type": "ephemeral"}},
            ]
        )
        | st.builds(lambda extra: {"type": "x_part", **extra}, st.dictionaries(KEYS, JSON, max_size=3))
    )
    user_content = n(words | st.lists(text_part | image_part | other_part, min_size=1, max_size=3))
    text_content = n(words | st.lists(text_part, min_size=1, max_size=2))

    function = n(
        st.fixed_dictionaries({"name": n(st.sampled_from(["get_weather", "search", ""]) | WORDS), "arguments": n(ARGS)})
    )
    ids = n(IDS)
    tool_call = n(
        st.fixed_dictionaries({"function": function}, optional={"id": ids, "type": n(st.just("function"))})
        | st.fixed_dictionaries(
            {"type": n(st.just("custom")), "custom": n(st.fixed_dictionaries({"name": words, "input": words}))},
            optional={"id": ids},
        )
    )
    tool_calls = n(st.lists(tool_call, min_size=1, max_size=3))
    extra_keys = st.dictionaries(
        st.sampled_from(["x_custom", "annotations", "metadata", "cache_control"]), JSON, max_size=1
    )

    def message(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
        return n(
            st.builds(lambda m, extra: {**extra, **m}, st.fixed_dictionaries(required, optional=optional), extra_keys)
        )

    name = {"name": n(st.none() | WORDS)}

    def role(*roles: str) -> st.SearchStrategy[Any]:
        return n(st.sampled_from(roles))

    one = st.one_of(
        message({"role": role("system", "developer"), "content": text_content}, name),
        message({"role": role("user"), "content": user_content}, name),
        message(
            {"role": role("assistant"), "content": n(words | st.lists(text_part, min_size=1, max_size=2))},
            {**name, "tool_calls": n(st.none() | tool_calls), "reasoning_content": n(st.none() | words),
             "refusal": n(st.none())},
        ),
        message(
            {"role": role("assistant"), "tool_calls": tool_calls},
            {"content": n(st.none() | st.just([]) | words), "reasoning_content": n(st.none() | words)},
        ),
        message({"role": role("assistant"), "content": n(st.none()), "refusal": words}, {}),
        message({"role": role("assistant"), "content": n(st.none()), "function_call": function}, {}),
        message({"role": role("tool"), "content": text_content, "tool_call_id": ids}, name),
        message({"role": role("function"), "name": words, "content": n(st.none() | words)}, {}),
    )  # fmt: skip
    messages = st.lists(one, min_size=1, max_size=5)

    tool = n(
        st.fixed_dictionaries(
            {"type": n(st.just("function")), "function": n(st.fixed_dictionaries({"name": words}, optional={
                "description": words,
                "parameters": n(st.just({"type": "object", "properties": {"city": {"type": "string"}}})),
                "strict": n(st.booleans()),
            }))}
        )
        | st.sampled_from(
            [
                {"type": "custom", "custom": {"name": "sql"}},
                {"name": "get_weather", "input_schema": {"type": "object"}},  # an Anthropic tool
                {"type": "web_search_20250305", "name": "web_search"},
            ]
        )
    )  # fmt: skip
    tool_choice = n(
        st.sampled_from(["auto", "none", "required"])
        | st.builds(lambda t, fn: {"type": t, "function": fn}, n(st.just("function")), n(st.builds(dict, name=words)))
        | st.just({"type": "any"})
    )
    values: dict[str, st.SearchStrategy[Any]] = {
        "temperature": st.floats(0, 2) | st.sampled_from([0, 1, 2]),
        "top_p": st.floats(0, 1),
        "presence_penalty": st.floats(-2, 2),
        "frequency_penalty": st.floats(-2, 2),
        "max_tokens": st.integers(1, 2**31 - 1) | st.sampled_from([16.0, 4096]),
        "max_completion_tokens": st.integers(1, 2**31 - 1),
        "n": st.integers(1, 128) | st.just(1),
        "seed": st.integers(-(2**63), 2**63 - 1),
        "top_logprobs": st.integers(0, 20),
        "logprobs": st.booleans(),
        "stop": words | st.lists(words, max_size=4),
        "tools": st.lists(tool, max_size=3),
        "tool_choice": tool_choice,
        "parallel_tool_calls": st.booleans(),
        "response_format": st.sampled_from([{"type": "json_object"}, {"type": "text"}]),
        "stream_options": st.builds(lambda b: {"include_usage": b}, n(st.booleans())),
        "user": words,
        "logit_bias": st.just({"50256": -100}),
        # provider extras: unknown to the validator, forwarded; some change what an adapter does
        "top_k": st.integers(1, 100),
        "enable_search": st.booleans(),
        "incremental_output": st.booleans(),
        "request_id": IDS,
        "do_sample": st.booleans(),
        "metadata": st.just({"user_id": "u"}),
        "result_format": st.sampled_from(["message", "text"]),
        "thinking": st.just({"type": "enabled", "budget_tokens": 1024}),
        "stream": st.booleans(),
    }
    params = st.fixed_dictionaries({}, optional={k: n(v) for k, v in values.items()})
    return messages, params


MESSAGES_VALID, PARAMS_VALID = requests(noise=False)
_NOISY_MESSAGES, _NOISY_PARAMS = requests(noise=True)

#: messages of every kind: valid, with garbage here and there, with one thing broken, garbage
MESSAGES_ANY = st.one_of(
    MESSAGES_VALID,
    _NOISY_MESSAGES,
    _NOISY_MESSAGES,
    mutated(MESSAGES_VALID),
    st.lists(st.dictionaries(st.sampled_from(_FIELDS[:9]), JSON, max_size=5), min_size=1, max_size=3),
    JSON,
)
#: parameters of every kind: realistic, with garbage here and there, one replaced by garbage, garbage
PARAMS_ANY = st.one_of(
    PARAMS_VALID,
    _NOISY_PARAMS,
    mutated(PARAMS_VALID).map(lambda p: p if isinstance(p, dict) else {"tools": p}),
    st.dictionaries(st.sampled_from(["tools", "tool_choice", "stop", "n", "max_tokens", "stream_options"]), JSON),
)

# -- provider payloads ----------------------------------------------------------------------------------------------

Families = dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any], st.SearchStrategy[Any]]]


def payload_families(noise: bool) -> Families:
    """Per adapter family: (a non-stream answer, an error body, a stream event payload), as decoded JSON. With
    ``noise``, any value at any level is now and then (1 in 10) garbage instead."""

    def n(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return _NOISE.flatmap(lambda bad: GARBAGE if bad else strategy) if noise else strategy

    def obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
        return n(
            st.fixed_dictionaries(
                {k: n(v) for k, v in required.items()}, optional={k: n(v) for k, v in (optional or {}).items()}
            )
        )

    def lists(strategy: st.SearchStrategy[Any], max_size: int = 2) -> st.SearchStrategy[Any]:
        return n(st.lists(strategy, max_size=max_size))

    tokens = st.integers(0, 10**6)
    finish = st.none() | st.sampled_from(["stop", "length", "tool_calls", "sensitive", "network_error", "null", ""])
    fn = obj({}, {"name": WORDS, "arguments": ARGS})
    tool_call = obj({"function": fn}, {"id": IDS, "type": st.just("function")})
    tool_delta = obj({"index": st.integers(0, 3)}, {"id": IDS, "type": st.just("function"), "function": fn})

    usage = obj(
        {"prompt_tokens": tokens, "completion_tokens": tokens},
        {"total_tokens": tokens, "prompt_tokens_details": obj({"cached_tokens": tokens})},
    )
    message = obj(
        {"role": st.just("assistant"), "content": st.none() | WORDS},
        {"tool_calls": lists(tool_call), "reasoning_content": WORDS},
    )
    completion = obj(
        {
            "id": IDS,
            "object": st.just("chat.completion"),
            "created": st.integers(0, 2**40),
            "model": WORDS,
            "choices": lists(obj({"index": st.integers(0, 3), "message": message, "finish_reason": finish})),
        },
        {"usage": usage, "request_id": IDS},
    )
    delta = obj({}, {"role": st.just("assistant"), "content": st.none() | WORDS, "reasoning_content": WORDS,
                     "tool_calls": lists(tool_delta)})  # fmt: skip
    chunk = obj(
        {
            "id": IDS,
            "created": st.integers(0, 2**40),
            "model": WORDS,
            "choices": lists(
                obj({"index": st.integers(0, 3), "delta": delta}, {"finish_reason": finish, "usage": usage})
            ),
        },
        {"usage": st.none() | usage},
    )
    codes = st.sampled_from(
        ["1301", "1113", "1261", "rate_limit_exceeded", "context_length_exceeded", "insufficient_quota"]
    )
    openai_error = obj(
        {
            "error": obj(
                {"message": WORDS}, {"code": st.none() | codes | INTS, "type": WORDS, "param": st.none() | WORDS}
            )
        },
        {"request_id": IDS},
    )

    ds_usage = obj({"input_tokens": tokens, "output_tokens": tokens}, {"total_tokens": tokens})
    ds_output = obj(
        {"choices": lists(obj({"message": message, "finish_reason": finish}, {"index": st.integers(0, 3)}))}
    )
    ds_output |= obj({"text": WORDS, "finish_reason": finish})
    ds_body = obj({"output": ds_output, "request_id": IDS}, {"usage": ds_usage})
    ds_codes = st.sampled_from(["Throttling.RateQuota", "InvalidParameter", "DataInspectionFailed", "Arrearage"])
    ds_error = obj({"code": ds_codes | WORDS, "message": WORDS}, {"request_id": IDS})

    an_usage = obj(
        {"input_tokens": tokens, "output_tokens": tokens},
        {"cache_read_input_tokens": tokens, "cache_creation_input_tokens": st.none() | tokens},
    )
    block = st.one_of(
        obj({"type": st.just("text"), "text": WORDS}),
        obj({"type": st.just("thinking"), "thinking": WORDS, "signature": st.just("sig")}),
        obj(
            {"type": st.just("tool_use"), "id": IDS, "name": WORDS, "input": st.dictionaries(KEYS, SCALARS, max_size=2)}
        ),
    )
    stop = st.none() | st.sampled_from(["end_turn", "max_tokens", "tool_use", "refusal", "other"])
    an_body = obj(
        {
            "id": IDS,
            "type": st.just("message"),
            "role": st.just("assistant"),
            "content": lists(block, 3),
            "stop_reason": stop,
            "usage": an_usage,
        }
    )
    an_types = st.sampled_from(["invalid_request_error", "overloaded_error", "rate_limit_error", "x"])
    an_error = obj(
        {"type": st.just("error"), "error": obj({"type": an_types | WORDS, "message": WORDS})}, {"request_id": IDS}
    )
    an_delta = st.one_of(
        obj({"type": st.just("text_delta"), "text": WORDS}),
        obj({"type": st.just("thinking_delta"), "thinking": WORDS}),
        obj({"type": st.just("input_json_delta"), "partial_json": ARGS}),
    )
    an_event = st.one_of(
        obj({"type": st.just("message_start"), "message": obj({"id": IDS, "usage": an_usage})}),
        obj({"type": st.just("content_block_start"), "index": st.integers(0, 3), "content_block": block}),
        obj({"type": st.just("content_block_delta"), "index": st.integers(0, 3), "delta": an_delta}),
        obj({"type": st.just("content_block_stop"), "index": st.integers(0, 3)}),
        obj({"type": st.just("message_delta"), "delta": obj({"stop_reason": stop}),
             "usage": obj({"output_tokens": st.integers(0, 100)})}),
        obj({"type": st.just("message_stop")}),
        obj({"type": st.just("ping")}),
        an_error,
    )  # fmt: skip
    return {
        "openai": (completion, openai_error, chunk),
        "dashscope": (ds_body, ds_error, ds_body),
        "anthropic": (an_body, an_error, an_event),
    }


#: realistic payloads, and payloads with garbage here and there
FAMILIES = payload_families(noise=False)
NOISY_FAMILIES = payload_families(noise=True)

RETRY_AFTER = st.sampled_from(
    ["1", "0.5", "-3", "abc", "", "inf", "nan", "1e999", "Wed, 21 Oct 2015 07:28:00 GMT",
     "Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 01 Jan 0001 00:00:00 +1400", "Mon, 32 Jan 2020 00:00:00 GMT"]
) | st.text(max_size=12)  # fmt: skip
HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "retry-after": RETRY_AFTER,
        "retry-after-ms": RETRY_AFTER,
        "x-request-id": st.text(max_size=8),
        "request-id": st.text(max_size=8),
    },
)
