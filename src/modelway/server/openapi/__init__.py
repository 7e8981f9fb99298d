"""The OpenAPI 3.1 description of the gateway's endpoints, served at ``/openapi.json``.

Every route the app serves is here (the unversioned OpenAI aliases too), and the request schemas say what the
server accepts: the chat schemas follow :mod:`modelway.validate` (a ``null`` parameter counts as absent there, so
every optional field may be ``null``), the key schemas :func:`modelway.auth.keys.key_fields`. Fields the gateway
forwards without looking at them (the embeddings' ``dimensions`` and ``user``) are described with OpenAI's types; the
provider judges them; other keys (a provider's own parameters) are allowed and forwarded. What JSON Schema cannot say
is told in the descriptions: nesting deeper than :data:`modelway.validate.MAX_JSON_DEPTH` levels is refused, and
bodies are limited to ``server.max_body_bytes``.

``tests/server/test_api_fuzz.py`` runs schemathesis over this schema against a running gateway.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ..validate import MAX_JSON_DEPTH

__all__ = ["openapi_schema"]

Schema = dict[str, Any]

#: the largest integers the gateway accepts, by kind (see ``validate._INT_RANGES`` and ``auth.keys``)
_INT32 = 2**31 - 1
_INT64 = 2**63 - 1


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    """``schema`` or ``null``: the gateway treats a ``null`` parameter as an absent one."""
    t = schema.get("type")
    if isinstance(t, str) and "enum" not in schema and "const" not in schema:
        return {**schema, "type": [t, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(properties: Schema, required: list[str] | None = None, **more: Any) -> Schema:
    out: Schema = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    out.update(more)
    return out


_STRING: Schema = {"type": "string"}
_NULL_STRING: Schema = {"type": ["string", "null"]}
_INT: Schema = {"type": "integer"}
_NUMBER: Schema = {"type": "number"}

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


def _range(kind: str, lo: int | float, hi: int | float) -> Schema:
    return {"type": [kind, "null"], "minimum": lo, "maximum": hi}


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

_KEY_PROPS: Schema = {
    "id": _STRING,
    "name": _STRING,
    "prefix": _STRING,
    "models": {"type": ["array", "null"], "items": _STRING},
    "rpm": {"type": ["integer", "null"]},
    "tpm": {"type": ["integer", "null"]},
    "max_parallel": {"type": ["integer", "null"]},
    "budget": {"type": ["number", "null"]},
    "budget_period": {"enum": ["total", "day", "month"]},
    "created_at": _NUMBER,
    "expires_at": {"type": ["number", "null"]},
    "revoked_at": {"type": ["number", "null"]},
    "metadata": {"type": "object"},
}
_KEY_REQUIRED = list(_KEY_PROPS)
_KEY = _obj(_KEY_PROPS, _KEY_REQUIRED)
_KEY_CREATED = _obj(
    {"key": {"type": "string", "description": "the secret, shown this once"}, **_KEY_PROPS}, ["key", *_KEY_REQUIRED]
)
_KEY_WITH_SPEND = _obj(
    {
        **_KEY_PROPS,
        "spend": {"type": "number", "description": "in the current budget period"},
        "period_start": _NUMBER,
        "period_end": {"type": ["number", "null"]},
    },
    [*_KEY_REQUIRED, "spend", "period_start", "period_end"],
)
_KEY_LIST = _obj({"object": {"const": "list"}, "data": {"type": "array", "items": _ref("Key")}}, ["object", "data"])
_KEY_REVOKED = _obj({"id": _STRING, "revoked_at": _NUMBER}, ["id", "revoked_at"])

_USAGE_SUMMARY = _obj(
    {
        "object": {"const": "list"},
        "group_by": {"enum": ["key", "model", "deployment", "day"]},
        "currency": _STRING,
        "data": {
            "type": "array",
            "items": _obj(
                {
                    "group": _NULL_STRING,
                    "requests": _INT,
                    "errors": _INT,
                    "prompt_tokens": _INT,
                    "completion_tokens": _INT,
                    "total_tokens": _INT,
                    "cost": _NUMBER,
                },
                ["group", "requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens", "cost"],
            ),
        },
    },
    ["object", "group_by", "currency", "data"],
)
_USAGE_RECORD = _obj(
    {
        "ts": _NUMBER,
        "request_id": _STRING,
        "key_id": _NULL_STRING,
        "model": _STRING,
        "deployment": _NULL_STRING,
        "endpoint": {"enum": ["chat", "embeddings", "dbgpt"]},
        "stream": {"type": "boolean"},
        "prompt_tokens": _INT,
        "completion_tokens": _INT,
        "total_tokens": _INT,
        "cost": _NUMBER,
        "status": _INT,
        "error": _NULL_STRING,
        "latency_ms": _NUMBER,
        "ttft_ms": {"type": ["number", "null"]},
        "estimated": {"type": "boolean"},
        "record_id": _NULL_STRING,
    },
    ["ts", "request_id", "key_id", "model", "endpoint", "stream", "status"],
)
_RECORDS = _obj(
    {"object": {"const": "list"}, "data": {"type": "array", "items": _ref("UsageRecord")}}, ["object", "data"]
)
_LIVENESS = _obj({"status": {"const": "ok"}}, ["status"])
_READINESS = _obj(
    {
        "status": {"enum": ["ready", "degraded", "starting", "draining"]},
        "checks": {"type": "object", "additionalProperties": {"enum": ["ok", "down"]}},
    },
    ["status"],
    description="with the master key, also the gateway's counts and settings",
)
_OPENAPI = _obj({"openapi": _STRING, "info": {"type": "object"}, "paths": {"type": "object"}}, ["openapi", "paths"])

# -- admin requests (modelway.auth.keys.key_fields) ----------------------------------------------------------------

_KEY_FIELDS: Schema = {
    "name": {
        "type": "string",
        "pattern": "^[^\\x00]*\\S[^\\x00]*$",
        "description": "a label; not blank, no NUL character",
    },
    "models": {
        "type": ["array", "null"],
        "minItems": 1,
        "items": {"type": "string", "minLength": 1, "pattern": "^[^\\x00]*$"},
        "description": "the models the key may call; null: every model",
    },
    "rpm": {"type": ["integer", "null"], "minimum": 1, "maximum": _INT32},
    "tpm": {"type": ["integer", "null"], "minimum": 1, "maximum": _INT32},
    "max_parallel": {"type": ["integer", "null"], "minimum": 1, "maximum": _INT32},
    "budget": {"type": ["number", "null"], "minimum": 0},
    "budget_period": {"enum": ["total", "day", "month"]},
    "expires_at": {"type": ["number", "null"], "description": "Unix seconds"},
    "expires_in": {"type": ["number", "null"], "exclusiveMinimum": 0, "description": "seconds from now"},
    "metadata": {
        "type": ["object", "null"],
        "description": f"free-form (the body nests at most {MAX_JSON_DEPTH} levels)",
    },
}
_ONE_EXPIRY = {"required": ["expires_at", "expires_in"]}
_KEY_CREATE = {**_obj(_KEY_FIELDS, ["name"], additionalProperties=False), "not": _ONE_EXPIRY}
_KEY_UPDATE = {
    **_obj(
        _KEY_FIELDS,
        minProperties=1,
        additionalProperties=False,
        description="the fields to change; null clears a limit",
    ),
    "not": _ONE_EXPIRY,
}

_COMPONENTS: Schema = {
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
    "KeyCreate": _KEY_CREATE,
    "KeyUpdate": _KEY_UPDATE,
    "Key": _KEY,
    "KeyCreated": _KEY_CREATED,
    "KeyWithSpend": _KEY_WITH_SPEND,
    "KeyList": _KEY_LIST,
    "KeyRevoked": _KEY_REVOKED,
    "UsageSummary": _USAGE_SUMMARY,
    "UsageRecord": _USAGE_RECORD,
    "UsageRecords": _RECORDS,
    "Liveness": _LIVENESS,
    "Readiness": _READINESS,
    "OpenApi": _OPENAPI,
}

# -- operations -----------------------------------------------------------------------------------------------------

#: the errors a caller may get, each in the OpenAI error shape
_ERRORS = {
    "400": "invalid request (the field at fault is in error.param)",
    "401": "missing or unknown key",
    "403": "the key may not do this",
    "404": "unknown model, key or route",
    "405": "method not allowed (see the Allow header)",
    "408": "the request's body did not arrive in time (server.body_timeout)",
    "413": "the body is larger than server.max_body_bytes",
    "429": "a rate limit or budget of the key, or of the provider",
    "502": "the provider failed",
    "503": "shutting down, or a service the gateway needs is down",
    "504": "the provider did not answer in time",
}
_JSON = "application/json"


def _error_responses() -> Schema:
    out: Schema = {
        code: {"description": text, "content": {_JSON: {"schema": _ref("Error")}}} for code, text in _ERRORS.items()
    }
    out["default"] = {"description": "another error", "content": {_JSON: {"schema": _ref("Error")}}}
    return out


def _sse(chunk: str) -> Schema:
    """One server-sent event of a stream (``stream: true``): a chunk, an error that ended the stream, or ``[DONE]``."""
    return _obj(
        {
            "data": {
                "anyOf": [
                    {"const": "[DONE]"},
                    {"contentMediaType": _JSON, "contentSchema": {"anyOf": [_ref(chunk), _ref("StreamError")]}},
                ]
            }
        },
        ["data"],
        description="server-sent events; the stream ends with data: [DONE]",
    )


def _op(
    op_id: str,
    summary: str,
    answer: str | None,
    *,
    body: str | None = None,
    stream: str | None = None,
    status: str = "200",
    parameters: list[Schema] | None = None,
    public: bool = False,
) -> Schema:
    content: Schema = {_JSON: {"schema": _ref(answer)}} if answer else {_JSON: {"schema": {"type": "object"}}}
    if stream:
        content["text/event-stream"] = {"schema": _sse(stream)}
    op: Schema = {
        "operationId": op_id,
        "summary": summary,
        "responses": {status: {"description": "OK", "content": content}, **_error_responses()},
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {_JSON: {"schema": _ref(body)}}}
    if parameters:
        op["parameters"] = parameters
    if public:
        op["security"] = []
    return op


def _head(op_id: str, summary: str, ok_status: str = "200", *, security: list[Schema] | None = None) -> Schema:
    op: Schema = {
        "operationId": op_id,
        "summary": summary,
        "responses": {ok_status: {"description": "the headers of the GET answer, no body"}},
    }
    if security is not None:
        op["security"] = security
    return op


def _readiness(security: list[Schema]) -> Schema:
    op = _op("readiness", "Readiness: 200 ready, else 503 with the reason", "Readiness")
    op["responses"]["503"] = {
        "description": "not ready: starting, draining (shutting down), or degraded (see checks)",
        "content": {_JSON: {"schema": _ref("Readiness")}},
    }
    op["security"] = security
    return op


def _path_param(name: str, description: str) -> list[Schema]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": description}]


_USAGE_QUERY = [
    {"name": "group_by", "in": "query", "schema": {"enum": ["key", "model", "deployment", "day"]}},
    {"name": "since", "in": "query", "schema": _NUMBER, "description": "Unix seconds, inclusive"},
    {"name": "until", "in": "query", "schema": _NUMBER, "description": "Unix seconds, exclusive"},
    {"name": "key_id", "in": "query", "schema": _STRING},
    {"name": "model", "in": "query", "schema": _STRING},
]
_RECORDS_QUERY = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}},
    {"name": "key_id", "in": "query", "schema": _STRING},
    {"name": "since", "in": "query", "schema": _NUMBER},
]
_KEY_ID = _path_param("id", "the key's id (key_...)")
_MODEL_ID = _path_param("model", "an alias, or provider/model")


def _chat(op_id: str, summary: str) -> Schema:
    return _op(op_id, summary, "ChatCompletion", body="ChatCompletionRequest", stream="ChatCompletionChunk")


def _embed(op_id: str, summary: str) -> Schema:
    return _op(op_id, summary, "Embeddings", body="EmbeddingRequest")


def _models(op_id: str, summary: str) -> Schema:
    return _op(op_id, summary, "ModelList")


def _model(op_id: str, summary: str) -> Schema:
    return _op(op_id, summary, "Model", parameters=_MODEL_ID)


@cache
def openapi_schema(auth_required: bool = True) -> dict[str, Any]:
    """The schema; ``auth_required`` is whether this gateway has a master key (without one, no auth is asked)."""
    keyed: list[Schema] = [{"bearer": []}, {"apiKey": []}] if auth_required else []
    #: a key is optional: readiness tells more, and /metrics needs one when metrics.public is false
    optional_key: list[Schema] = [{}, *keyed]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "modelway gateway",
            "version": "1",
            "description": (
                "An OpenAI-compatible LLM gateway. Errors are answered in the OpenAI shape "
                '{"error": {"message", "type", "param", "code"}}. Request bodies are limited to server.max_body_bytes '
                "(413), headers to server.max_header_bytes and server.max_headers (431)."
            ),
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "the master key or a virtual key"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
            "schemas": _COMPONENTS,
        },
        "security": keyed,
        "paths": {
            "/v1/chat/completions": {"post": _chat("chatCompletion", "Chat completion (OpenAI)")},
            "/chat/completions": {"post": _chat("chatCompletionAlias", "Chat completion (alias of /v1/...)")},
            "/v1/embeddings": {"post": _embed("embeddings", "Embeddings (OpenAI)")},
            "/embeddings": {"post": _embed("embeddingsAlias", "Embeddings (alias of /v1/...)")},
            "/v1/models": {"get": _models("listModels", "The models the caller may call")},
            "/models": {"get": _models("listModelsAlias", "The models the caller may call (alias of /v1/...)")},
            "/v1/models/{model}": {"get": _model("retrieveModel", "One model")},
            "/models/{model}": {"get": _model("retrieveModelAlias", "One model (alias of /v1/...)")},
            "/api/v2/chat/completions": {
                "post": _op(
                    "dbgptChatCompletion",
                    "Chat completion (DB-GPT API v2)",
                    "DbgptChatCompletion",
                    body="DbgptChatRequest",
                    stream="DbgptChatCompletionChunk",
                )
            },
            "/admin/keys": {
                "post": _op(
                    "createKey",
                    "Create a virtual key (master key); the answer holds its secret",
                    "KeyCreated",
                    body="KeyCreate",
                    status="201",
                ),
                "get": _op(
                    "listKeys",
                    "List virtual keys (master key)",
                    "KeyList",
                    parameters=[{"name": "include_revoked", "in": "query", "schema": {"type": "boolean"}}],
                ),
            },
            "/admin/keys/{id}": {
                "get": _op(
                    "getKey",
                    "A virtual key and its spend in the current budget period",
                    "KeyWithSpend",
                    parameters=_KEY_ID,
                ),
                "patch": _op("updateKey", "Change a virtual key", "Key", body="KeyUpdate", parameters=_KEY_ID),
                "delete": _op("revokeKey", "Revoke a virtual key", "KeyRevoked", parameters=_KEY_ID),
            },
            "/admin/usage": {"get": _op("usage", "Usage totals (master key)", "UsageSummary", parameters=_USAGE_QUERY)},
            "/admin/usage/records": {
                "get": _op("usageRecords", "The newest usage records", "UsageRecords", parameters=_RECORDS_QUERY)
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics (needs the master key when metrics.public is false)",
                    "security": optional_key,
                    "responses": {
                        "200": {"description": "OK", "content": {"text/plain": {"schema": _STRING}}},
                        **_error_responses(),
                    },
                },
                "head": _head("metricsHead", "Prometheus metrics: headers only", security=optional_key),
            },
            "/health/liveness": {
                "get": _op("liveness", "Liveness: the process answers", "Liveness", public=True),
                "head": _head("livenessHead", "Liveness: headers only", security=[]),
            },
            "/health": {
                "get": _op("health", "Liveness (alias of /health/liveness)", "Liveness", public=True),
                "head": _head("healthHead", "Liveness: headers only", security=[]),
            },
            "/health/readiness": {
                "get": _readiness(optional_key),
                "head": _head("readinessHead", "Readiness: headers only", security=optional_key),
            },
            "/openapi.json": {
                "get": _op("openapi", "This document", "OpenApi", public=True),
                "head": _head("openapiHead", "This document: headers only", security=[]),
            },
        },
    }
