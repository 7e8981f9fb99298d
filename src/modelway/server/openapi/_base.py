"""Building blocks of the OpenAPI description: schema helpers, the error answers, operations."""

from __future__ import annotations

from typing import Any

from ...usage.records import ENDPOINTS, GROUP_BY

__all__ = ["Schema"]

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


def _range(kind: str, lo: int | float, hi: int | float) -> Schema:
    return {"type": [kind, "null"], "minimum": lo, "maximum": hi}


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


def _error_responses(error: str = "Error") -> Schema:
    out: Schema = {
        code: {"description": text, "content": {_JSON: {"schema": _ref(error)}}} for code, text in _ERRORS.items()
    }
    out["default"] = {"description": "another error", "content": {_JSON: {"schema": _ref(error)}}}
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
    error: str = "Error",
) -> Schema:
    content: Schema = {_JSON: {"schema": _ref(answer)}} if answer else {_JSON: {"schema": {"type": "object"}}}
    if stream:
        content["text/event-stream"] = {"schema": _sse(stream)}
    op: Schema = {
        "operationId": op_id,
        "summary": summary,
        "responses": {status: {"description": "OK", "content": content}, **_error_responses(error)},
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


_RANGE_QUERY = [
    {"name": "since", "in": "query", "schema": _NUMBER, "description": "Unix seconds, inclusive"},
    {"name": "until", "in": "query", "schema": _NUMBER, "description": "Unix seconds, exclusive"},
    {"name": "key_id", "in": "query", "schema": _STRING},
    {"name": "model", "in": "query", "schema": _STRING},
]
_USAGE_QUERY = [
    {"name": "group_by", "in": "query", "schema": {"enum": list(GROUP_BY)}, "description": "default: model"},
    *_RANGE_QUERY,
    {"name": "format", "in": "query", "schema": {"enum": ["json", "csv"]}, "description": "default: json"},
]
_SERIES_QUERY = [
    {"name": "bucket", "in": "query", "schema": {"enum": ["hour", "day"]}, "description": "default: hour"},
    {"name": "group_by", "in": "query", "schema": {"enum": ["key", "model", "deployment", "endpoint"]}},
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 50},
        "description": "series shown (default 10), the most expensive; the rest summed as (other)",
    },
    *_RANGE_QUERY,
]
_RECORDS_QUERY = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}},
    {
        "name": "before",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": _INT64},
        "description": "a record's id: the records stored before it (the next page: next_before)",
    },
    *_RANGE_QUERY,
    {"name": "deployment", "in": "query", "schema": _STRING, "description": "(none): no deployment served it"},
    {"name": "endpoint", "in": "query", "schema": {"enum": list(ENDPOINTS)}},
    {
        "name": "status",
        "in": "query",
        "schema": {"type": "string", "pattern": "^[1-5]([0-9]{2}|xx)$"},
        "description": "an HTTP status (429) or a class (2xx, 4xx, 5xx)",
    },
]
_RECORD_ID = _path_param("record_id", "a usage record's record_id")
_KEY_ID = _path_param("id", "the key's id (key_...)")
_MODEL_ID = _path_param("model", "an alias, or provider/model")
