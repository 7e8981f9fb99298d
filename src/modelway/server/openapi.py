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
            "/health/liveness": {"get": {**_op("Liveness"), "security": []}},
            "/health/readiness": {"get": {**_op("Readiness"), "security": []}},
        },
    }
