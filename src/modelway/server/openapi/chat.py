"""Schemas of the OpenAI-compatible and DB-GPT chat, embeddings and models endpoints (:mod:`modelway.validate`)."""

from __future__ import annotations

from ...validate import MAX_JSON_DEPTH, REASONING_EFFORTS
from ._base import (
    _INT,
    _INT32,
    _INT64,
    _NULL_STRING,
    _NUMBER,
    _STRING,
    Schema,
    _nullable,
    _obj,
    _range,
    _ref,
)

__all__ = ["CHAT_COMPONENTS", "CHAT_PARAMS_SCHEMA", "DEPTH_NOTE"]

# -- errors ---------------------------------------------------------------------------------------------------------

_ERROR_DETAIL = _obj(
    {
        "message": _STRING,
        "type": _STRING,
        "param": {
            "type": ["string", "null"],
            "description": "the field at fault, by its path (messages[2].content), when there is one",
        },
        "code": _NULL_STRING,
        "request_id": _STRING,
    },
    ["message", "type", "param", "code"],
)
_ERROR = _obj(
    {"error": _ERROR_DETAIL},
    ["error"],
    description="The OpenAI error shape, used by every error answer of the gateway",
)
_STREAM_ERROR = _obj(
    {
        "error": {
            **_ERROR_DETAIL,
            "properties": {**_ERROR_DETAIL["properties"], "status": _INT},
            "required": [*_ERROR_DETAIL["required"], "status"],
        }
    },
    ["error"],
    description="the event that ends a stream which failed after it started; status is the HTTP status it stands for",
)

# -- chat messages (modelway.validate) ------------------------------------------------------------------------------

_FUNCTION_CALL = _obj(
    {"name": _STRING, "arguments": {"type": "string", "description": "the arguments as JSON text"}},
    ["name", "arguments"],
)
_TOOL_CALL = _obj(
    {"id": _NULL_STRING},
    anyOf=[
        _obj({"type": {"enum": ["function", None]}, "function": _ref("FunctionCall")}, ["function"]),
        _obj(
            {"type": {"const": "custom"}, "custom": _obj({"name": _STRING, "input": _STRING}, ["name", "input"])},
            ["type", "custom"],
        ),
    ],
    description="type 'function' (the default) with a function, or 'custom' with a custom object",
)
_CONTENT_PART = _obj(
    {"type": _STRING},
    ["type"],
    anyOf=[
        _obj({"type": {"const": "text"}, "text": _STRING}, ["text"]),
        _obj({"type": {"const": "image_url"}, "image_url": _obj({"url": _STRING}, ["url"])}, ["image_url"]),
        _obj({"type": {"type": "string", "not": {"enum": ["text", "image_url"]}}}),
    ],
    description="text and image_url parts are checked; other part types (input_audio, file, ...) pass as they are",
)
_CONTENT: Schema = {
    "anyOf": [_STRING, {"type": "array", "minItems": 1, "items": _ref("ContentPart")}],
    "description": "a string, or a non-empty array of content parts",
}
#: content that may be left out: null, absent, or an empty array
_NO_CONTENT: Schema = {"anyOf": [{"type": "null"}, {"type": "array", "maxItems": 0}]}
_MESSAGE = _obj(
    {
        "role": {"enum": ["system", "developer", "user", "assistant", "tool", "function"]},
        "content": {},
        "name": _NULL_STRING,
        "refusal": _NULL_STRING,
        "reasoning_content": _NULL_STRING,
        "tool_calls": _nullable({"type": "array", "items": _ref("ToolCall")}),
        "function_call": _nullable(_ref("FunctionCall")),
        "audio": {"type": ["object", "null"]},
    },
    ["role"],
    anyOf=[
        _obj({"role": {"enum": ["system", "developer", "user", "assistant"]}, "content": _CONTENT}, ["content"]),
        _obj(
            {"role": {"const": "assistant"}, "content": _NO_CONTENT},
            anyOf=[
                _obj({"tool_calls": {"type": "array", "minItems": 1}}, ["tool_calls"]),
                _obj({"function_call": {"type": "object"}}, ["function_call"]),
                _obj({"refusal": _STRING}, ["refusal"]),
                _obj({"audio": {"type": "object"}}, ["audio"]),
            ],
        ),
        _obj({"role": {"const": "tool"}, "content": _CONTENT, "tool_call_id": _STRING}, ["content", "tool_call_id"]),
        _obj({"role": {"const": "function"}, "content": _NULL_STRING, "name": _STRING}, ["content", "name"]),
    ],
    description=(
        "An OpenAI chat message. content may be null, absent or [] only in an assistant message with tool_calls, "
        "function_call, refusal or audio, and in a function message; tool messages need tool_call_id. Other keys "
        "are sent to the provider unchanged."
    ),
)

# -- chat parameters ------------------------------------------------------------------------------------------------

_TOOL_FUNCTION = _obj({"name": _STRING, "parameters": {"type": ["object", "null"]}}, ["name"])
_TOOL = _obj(
    {"type": _NULL_STRING},
    anyOf=[
        _obj({"type": {"const": "function"}, "function": _TOOL_FUNCTION}, ["type", "function"]),
        _obj({"type": {"type": "null"}, "function": _TOOL_FUNCTION}, ["function"]),
        # a provider's own tool shape ({"name", "input_schema"} for Anthropic)
        {**_obj({"type": {"type": "null"}, "name": _STRING}, ["name"]), "not": {"required": ["function"]}},
        _obj({"type": {"type": "string", "not": {"const": "function"}}}, ["type"]),
    ],
)
_TOOL_CHOICE: Schema = {
    "anyOf": [
        {"type": "string", "description": "auto, none or required"},
        _obj({"type": {"type": "string", "not": {"const": "function"}}}, ["type"]),
        _obj({"type": {"const": "function"}, "function": _obj({"name": _STRING}, ["name"])}, ["type", "function"]),
        {"type": "null"},
    ]
}


#: the OpenAI parameters the gateway knows (``types.CHAT_PARAMS``); integer ones accept integral floats (16.0)
_CHAT_PARAMS: Schema = {
    "temperature": _range("number", 0, 2),
    "top_p": _range("number", 0, 1),
    "presence_penalty": _range("number", -2, 2),
    "frequency_penalty": _range("number", -2, 2),
    "max_tokens": _range("integer", 1, _INT32),
    "max_completion_tokens": _range("integer", 1, _INT32),
    "n": _range("integer", 1, 128),
    "seed": _range("integer", -(2**63), _INT64),
    "top_logprobs": _range("integer", 0, 20),
    "stop": {"anyOf": [_STRING, {"type": "array", "items": _STRING}, {"type": "null"}]},
    "tools": _nullable({"type": "array", "items": _ref("Tool")}),
    "tool_choice": _TOOL_CHOICE,
    "stream_options": _nullable(_obj({"include_usage": {"type": ["boolean", "null"]}})),
    "response_format": {"type": ["object", "null"]},
    "logit_bias": {"type": ["object", "null"]},
    "logprobs": {"type": ["boolean", "null"]},
    "parallel_tool_calls": {"type": ["boolean", "null"]},
    "user": {"type": ["string", "null"]},
    "reasoning_effort": {
        "enum": [*REASONING_EFFORTS, None],
        "description": "sent to each provider in its own terms (thinking on/off, an effort); none: no thinking",
    },
}

_DEPTH_NOTE = (
    f"JSON nested more than {MAX_JSON_DEPTH} levels deep (the body is level 1) is refused with 400; other keys are "
    "sent to the provider unchanged."
)

_CHAT_REQUEST = _obj(
    {
        "model": {"type": "string", "minLength": 1, "description": "an alias from the config, or provider/model"},
        "messages": {
            "anyOf": [
                {"type": "string", "minLength": 1, "description": "one user message"},
                {"type": "array", "minItems": 1, "items": _ref("ChatMessage")},
            ]
        },
        "stream": {"type": ["boolean", "null"]},
        **_CHAT_PARAMS,
    },
    ["model", "messages"],
    additionalProperties=True,
    description="An OpenAI chat completion request. " + _DEPTH_NOTE,
)

_DBGPT_REQUEST = _obj(
    {
        "model": {"type": "string", "minLength": 1},
        "messages": {
            "anyOf": [
                {"type": "string", "minLength": 1, "description": "one user message"},
                {
                    "type": "array",
                    "minItems": 1,
                    "items": _STRING,
                    "description": "DB-GPT <= 0.6: alternate turns, the last one the user's",
                },
                {"type": "array", "minItems": 1, "items": _ref("ChatMessage")},
            ]
        },
        "stream": {"type": ["boolean", "null"]},
        "incremental": {"type": ["boolean", "null"]},
        "chat_mode": {"enum": ["chat_normal", None]},
        "conv_uid": {"type": ["string", "null"]},
        "temperature": _CHAT_PARAMS["temperature"],
        "top_p": _CHAT_PARAMS["top_p"],
        "presence_penalty": _CHAT_PARAMS["presence_penalty"],
        "frequency_penalty": _CHAT_PARAMS["frequency_penalty"],
        "max_new_tokens": _CHAT_PARAMS["max_tokens"],
        "max_tokens": {**_CHAT_PARAMS["max_tokens"], "description": "ignored when max_new_tokens is set"},
        "stop": _CHAT_PARAMS["stop"],
        "seed": _CHAT_PARAMS["seed"],
        "user": _CHAT_PARAMS["user"],
    },
    ["model", "messages"],
    additionalProperties=True,
    description="DB-GPT API v2 chat (plain model chat: chat_mode null or chat_normal). Other keys are ignored.",
)

_EMBED_REQUEST = _obj(
    {
        "model": {"type": "string", "minLength": 1},
        "input": {
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "minItems": 1, "items": _STRING},
            ]
        },
        "encoding_format": {"enum": ["float", "base64", None]},
        "dimensions": {"type": "integer", "minimum": 1, "maximum": _INT32, "description": "sent to the provider"},
        "user": {"type": "string", "description": "sent to the provider"},
    },
    ["model", "input"],
    additionalProperties=True,
    description="An OpenAI embeddings request. " + _DEPTH_NOTE,
)

# -- answers --------------------------------------------------------------------------------------------------------

_USAGE = _obj({"prompt_tokens": _INT, "completion_tokens": _INT, "total_tokens": _INT}, ["prompt_tokens"])
_CHAT_COMPLETION = _obj(
    {
        "id": _STRING,
        "object": {"const": "chat.completion"},
        "created": _INT,
        "model": _STRING,
        "choices": {
            "type": "array",
            "items": _obj(
                {
                    "index": _INT,
                    "message": _obj(
                        {
                            "role": _STRING,
                            "content": _NULL_STRING,
                            "tool_calls": {"type": "array", "items": {"type": "object"}},
                            "reasoning_content": _NULL_STRING,
                        },
                        ["role", "content"],
                    ),
                    "finish_reason": _NULL_STRING,
                },
                ["index", "message", "finish_reason"],
            ),
        },
        "usage": _ref("Usage"),
    },
    ["id", "object", "created", "model", "choices"],
)
_DBGPT_COMPLETION = _obj(
    {
        "id": _STRING,
        "object": {"const": "chat.completion"},
        "created": _INT,
        "model": _STRING,
        "choices": {
            "type": "array",
            "items": _obj(
                {
                    "index": _INT,
                    "message": _obj(
                        {"role": {"const": "assistant"}, "content": _STRING, "reasoning_content": _NULL_STRING},
                        ["role", "content"],
                    ),
                    "finish_reason": {"enum": ["stop", "length", None]},
                },
                ["index", "message", "finish_reason"],
            ),
        },
        "usage": _ref("Usage"),
    },
    ["id", "object", "created", "model", "choices", "usage"],
)
_CHUNK = _obj(
    {
        "id": _STRING,
        "object": {"const": "chat.completion.chunk"},
        "created": _INT,
        "model": _STRING,
        "choices": {
            "type": "array",
            "items": _obj(
                {"index": _INT, "delta": {"type": "object"}, "finish_reason": _NULL_STRING}, ["index", "delta"]
            ),
        },
        "usage": _nullable(_ref("Usage")),
    },
    ["id", "object", "created", "model", "choices"],
)
_DBGPT_CHUNK = _obj(
    {
        "id": _STRING,
        "created": _INT,
        "model": _STRING,
        "choices": {
            "type": "array",
            "minItems": 1,
            "items": _obj(
                {
                    "index": _INT,
                    "delta": _obj({"role": {"const": "assistant"}, "content": _STRING, "reasoning_content": _STRING}),
                    "finish_reason": {"enum": ["stop", "length", None]},
                },
                ["index", "delta", "finish_reason"],
            ),
        },
        "usage": _ref("Usage"),
    },
    ["id", "created", "model", "choices"],
)
_EMBEDDINGS = _obj(
    {
        "object": {"const": "list"},
        "data": {
            "type": "array",
            "items": _obj(
                {
                    "object": {"const": "embedding"},
                    "index": _INT,
                    "embedding": {
                        "anyOf": [
                            {"type": "array", "items": _NUMBER},
                            {"type": "string", "description": "little-endian float32, base64 (encoding_format)"},
                        ]
                    },
                },
                ["object", "index", "embedding"],
            ),
        },
        "model": _STRING,
        "usage": _obj({"prompt_tokens": _INT, "total_tokens": _INT}, ["prompt_tokens", "total_tokens"]),
    },
    ["object", "data", "model", "usage"],
)
_MODEL = _obj(
    {"id": _STRING, "object": {"const": "model"}, "created": _INT, "owned_by": _STRING},
    ["id", "object", "created", "owned_by"],
)
_MODEL_LIST = _obj({"object": {"const": "list"}, "data": {"type": "array", "items": _ref("Model")}}, ["object", "data"])


CHAT_COMPONENTS: Schema = {
    "Error": _ERROR,
    "ChatMessage": _MESSAGE,
    "ContentPart": _CONTENT_PART,
    "ToolCall": _TOOL_CALL,
    "FunctionCall": _FUNCTION_CALL,
    "Tool": _TOOL,
    "ChatCompletionRequest": _CHAT_REQUEST,
    "ChatCompletion": _CHAT_COMPLETION,
    "ChatCompletionChunk": _CHUNK,
    "StreamError": _STREAM_ERROR,
    "DbgptChatRequest": _DBGPT_REQUEST,
    "DbgptChatCompletion": _DBGPT_COMPLETION,
    "DbgptChatCompletionChunk": _DBGPT_CHUNK,
    "EmbeddingRequest": _EMBED_REQUEST,
    "Embeddings": _EMBEDDINGS,
    "Usage": _USAGE,
    "Model": _MODEL,
    "ModelList": _MODEL_LIST,
}

#: the chat parameters' schemas, for the other dialects' requests
CHAT_PARAMS_SCHEMA = _CHAT_PARAMS
DEPTH_NOTE = _DEPTH_NOTE
