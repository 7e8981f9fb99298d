"""The OpenAPI 3.1 description of the gateway's endpoints, served at ``/openapi.json``."""

from __future__ import annotations

from functools import cache
from typing import Any

__all__ = ["openapi_schema"]

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
                "request_id": {"type": "string"},
            },
        }
    },
}

_MESSAGE = {
    "type": "object",
    "required": ["role"],
    "anyOf": [{"required": ["content"]}, {"required": ["tool_calls"]}],
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": {},
        "tool_calls": {"type": "array", "minItems": 1, "items": {"type": "object"}},
        "tool_call_id": {"type": "string"},
    },
}

_CHAT_REQUEST = {
    "type": "object",
    "required": ["model", "messages"],
    "additionalProperties": True,
    "properties": {
        "model": {"type": "string", "minLength": 1, "description": "an alias from the config, or provider/model"},
        "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "max_tokens": {"type": "integer", "minimum": 1},
        "max_completion_tokens": {"type": "integer", "minimum": 1},
        "n": {"type": "integer", "minimum": 1},
        "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "seed": {"type": "integer"},
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "tools": {"type": "array", "items": {"type": "object"}},
        "tool_choice": {},
        "response_format": {"type": "object"},
        "user": {"type": "string"},
    },
}

_DBGPT_REQUEST = {
    "type": "object",
    "required": ["model", "messages"],
    "additionalProperties": True,
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "messages": {
            "oneOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "minItems": 1, "items": {"type": "string"}},
                {"type": "array", "minItems": 1, "items": _MESSAGE},
            ]
        },
        "stream": {"type": "boolean"},
        "incremental": {"type": "boolean"},
        "chat_mode": {"type": ["string", "null"], "enum": ["chat_normal", None]},
        "conv_uid": {"type": ["string", "null"]},
        "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
        "max_new_tokens": {"type": ["integer", "null"], "minimum": 1},
        "max_tokens": {"type": ["integer", "null"], "minimum": 1},
    },
}


_KEY_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "minLength": 1, "pattern": "^[^\\x00]*\\S[^\\x00]*$"},
    "models": {
        "type": ["array", "null"],
        "minItems": 1,
        "items": {"type": "string", "minLength": 1, "pattern": "^[^\\x00]*$"},
    },
    "rpm": {"type": ["integer", "null"], "minimum": 1, "maximum": 2**31 - 1},
    "tpm": {"type": ["integer", "null"], "minimum": 1, "maximum": 2**31 - 1},
    "max_parallel": {"type": ["integer", "null"], "minimum": 1, "maximum": 2**31 - 1},
    "budget": {"type": ["number", "null"], "minimum": 0},
    "budget_period": {"type": "string", "enum": ["total", "day", "month"]},
    "expires_at": {"type": ["number", "null"]},
    "expires_in": {"type": ["number", "null"], "exclusiveMinimum": 0},
    "metadata": {"type": ["object", "null"]},
}
_ONE_EXPIRY = {"required": ["expires_at", "expires_in"]}
_KEY_CREATE = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": _KEY_FIELDS,
    "not": _ONE_EXPIRY,
}
_KEY_UPDATE = {
    "type": "object",
    "minProperties": 1,
    "additionalProperties": False,
    "properties": _KEY_FIELDS,
    "not": _ONE_EXPIRY,
}
_KEY_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
_TIME = {"type": "number"}
_USAGE_QUERY = [
    {"name": "group_by", "in": "query", "schema": {"type": "string", "enum": ["key", "model", "deployment", "day"]}},
    {"name": "since", "in": "query", "schema": _TIME},
    {"name": "until", "in": "query", "schema": _TIME},
    {"name": "key_id", "in": "query", "schema": {"type": "string"}},
    {"name": "model", "in": "query", "schema": {"type": "string"}},
]
_RECORDS_QUERY = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}},
    {"name": "key_id", "in": "query", "schema": {"type": "string"}},
    {"name": "since", "in": "query", "schema": _TIME},
]


def _op(summary: str, body: dict[str, Any] | None = None, stream: bool = False) -> dict[str, Any]:
    ok: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    if stream:
        ok["text/event-stream"] = {"schema": {"type": "string"}}
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {"description": "OK", "content": ok},
            "default": {"description": "error", "content": {"application/json": {"schema": _ERROR}}},
        },
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def _created(op: dict[str, Any]) -> dict[str, Any]:
    responses = {"201": {**op["responses"].pop("200"), "description": "Created"}, **op["responses"]}
    return {**op, "responses": responses}


@cache
def openapi_schema(auth_required: bool = True) -> dict[str, Any]:
    """The schema; ``auth_required`` is whether this gateway has a master key (without one, no auth is asked)."""
    embed = {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": {"type": "string", "minLength": 1},
            "input": {
                "oneOf": [
                    {"type": "string", "minLength": 1},
                    {"type": "array", "minItems": 1, "items": {"type": "string"}},
                ]
            },
            "encoding_format": {"type": "string", "enum": ["float", "base64"]},
            "dimensions": {"type": "integer", "minimum": 1},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "modelway gateway", "version": "1"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}] if auth_required else [],
        "paths": {
            "/v1/chat/completions": {"post": _op("Chat completion (OpenAI)", _CHAT_REQUEST, stream=True)},
            "/v1/embeddings": {"post": _op("Embeddings (OpenAI)", embed)},
            "/v1/models": {"get": _op("List models")},
            "/v1/models/{model}": {
                "get": {
                    **_op("Retrieve a model"),
                    "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
                }
            },
            "/api/v2/chat/completions": {"post": _op("Chat completion (DB-GPT API v2)", _DBGPT_REQUEST, stream=True)},
            "/admin/keys": {
                "post": _created(_op("Create a virtual key (master key); the answer holds its secret", _KEY_CREATE)),
                "get": {
                    **_op("List virtual keys (master key)"),
                    "parameters": [{"name": "include_revoked", "in": "query", "schema": {"type": "boolean"}}],
                },
            },
            "/admin/keys/{id}": {
                "get": {**_op("A virtual key and its spend in the current budget period"), "parameters": _KEY_ID},
                "patch": {**_op("Change a virtual key", _KEY_UPDATE), "parameters": _KEY_ID},
                "delete": {**_op("Revoke a virtual key"), "parameters": _KEY_ID},
            },
            "/admin/usage": {"get": {**_op("Usage totals (master key)"), "parameters": _USAGE_QUERY}},
            "/admin/usage/records": {"get": {**_op("The newest usage records"), "parameters": _RECORDS_QUERY}},
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "security": [],
                    "responses": {
                        "200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
                    },
                }
            },
            "/health/liveness": {"get": {**_op("Liveness"), "security": []}},
            "/health/readiness": {"get": {**_op("Readiness"), "security": []}},
        },
    }
