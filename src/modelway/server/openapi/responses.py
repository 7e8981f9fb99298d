"""Schemas of the OpenAI Responses API as the gateway serves it (:mod:`modelway.server.dialects.responses`).

The request lists every field the gateway takes (others are refused with 400); items and tools are described by
their shape's outline: the dialect checks them field by field and names the one at fault.
"""

from __future__ import annotations

from ...validate import REASONING_EFFORTS
from ._base import _INT, _NULL_STRING, _STRING, Schema, _obj, _range
from .chat import DEPTH_NOTE

__all__ = ["RESPONSES_COMPONENTS", "RESPONSE_ID", "INPUT_ITEMS_QUERY"]

_OBJECT: Schema = {"type": ["object", "null"]}
_ITEM = _obj(
    {"type": _STRING, "role": {"enum": ["user", "assistant", "system", "developer"]}},
    description="a message ({role, content}), function_call, function_call_output or reasoning item",
)

_RESPONSE_REQUEST = _obj(
    {
        "model": {"type": "string", "minLength": 1, "description": "an alias from the config, or provider/model"},
        "input": {"anyOf": [_STRING, {"type": "array", "items": _ITEM}]},
        "instructions": _NULL_STRING,
        "tools": {"type": ["array", "null"], "items": _obj({"type": _STRING, "name": _STRING})},
        "tool_choice": {"anyOf": [{"enum": ["auto", "none", "required"]}, {"type": "object"}, {"type": "null"}]},
        "text": _obj({"format": _obj({"type": {"enum": ["text", "json_object", "json_schema"]}})}),
        "max_output_tokens": _range("integer", 1, 2**31 - 1),
        "reasoning": _obj({"effort": {"enum": [*REASONING_EFFORTS, None]}, "summary": _NULL_STRING}),
        "temperature": _range("number", 0, 2),
        "top_p": _range("number", 0, 1),
        "parallel_tool_calls": {"type": ["boolean", "null"]},
        "user": _NULL_STRING,
        "metadata": _OBJECT,
        "stream": {"type": ["boolean", "null"]},
        "store": {"type": ["boolean", "null"], "description": "default true: kept in the gateway's response store"},
        "previous_response_id": _NULL_STRING,
        "truncation": {"enum": ["auto", "disabled", None]},
        "include": {"type": ["array", "null"], "items": _STRING},
        "stream_options": _OBJECT,
        "prompt_cache_key": _NULL_STRING,
        "prompt_cache_retention": _NULL_STRING,
        "safety_identifier": _NULL_STRING,
        "service_tier": _NULL_STRING,
        "top_logprobs": {"type": ["integer", "null"]},
        "max_tool_calls": {"type": ["integer", "null"]},
        "background": {"enum": [False, None]},
        "prompt": {"type": ["object", "null"], "description": "only for models served by OpenAI itself"},
    },
    ["model"],
    additionalProperties=False,
    description="An OpenAI Responses request, for every model (translated to chat where the upstream is not "
    "OpenAI). input is required unless previous_response_id is given. " + DEPTH_NOTE,
)

_USAGE = _obj(
    {
        "input_tokens": _INT,
        "output_tokens": _INT,
        "total_tokens": _INT,
        "input_tokens_details": _obj({"cached_tokens": _INT}),
        "output_tokens_details": _obj({"reasoning_tokens": _INT}),
    },
    ["input_tokens", "output_tokens", "total_tokens"],
)
_RESPONSE = _obj(
    {
        "id": _STRING,
        "object": {"const": "response"},
        "created_at": {"type": "number"},
        "status": {"enum": ["completed", "incomplete", "failed", "in_progress"]},
        "model": _STRING,
        "output": {"type": "array", "items": _obj({"type": _STRING}, ["type"])},
        "usage": {"anyOf": [_USAGE, {"type": "null"}]},
    },
    ["id", "object", "status", "model", "output"],
)
_STREAM_EVENT = _obj(
    {"type": _STRING, "sequence_number": _INT},
    ["type", "sequence_number"],
    description="one event of the Responses stream (event: <type>); it ends with response.completed, "
    "response.incomplete or response.failed",
)
_DELETED = _obj(
    {"id": _STRING, "object": {"const": "response.deleted"}, "deleted": {"const": True}},
    ["id", "object", "deleted"],
)
_ITEM_LIST = _obj(
    {
        "object": {"const": "list"},
        "data": {"type": "array", "items": _obj({"id": _STRING, "type": _STRING}, ["id", "type"])},
        "first_id": _NULL_STRING,
        "last_id": _NULL_STRING,
        "has_more": {"type": "boolean"},
    },
    ["object", "data", "has_more"],
)

RESPONSES_COMPONENTS: Schema = {
    "ResponseRequest": _RESPONSE_REQUEST,
    "Response": _RESPONSE,
    "ResponseStreamEvent": _STREAM_EVENT,
    "ResponseDeleted": _DELETED,
    "ResponseItemList": _ITEM_LIST,
}

RESPONSE_ID = [
    {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "a response's id (resp_...), made with the same key",
    }
]
INPUT_ITEMS_QUERY = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
    {"name": "order", "in": "query", "schema": {"enum": ["asc", "desc"]}},
    {"name": "after", "in": "query", "schema": _STRING},
]
