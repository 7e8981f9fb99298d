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

from ._base import (
    _KEY_ID,
    _MODEL_ID,
    _RECORD_ID,
    _RECORDS_QUERY,
    _SERIES_QUERY,
    _STRING,
    _USAGE_QUERY,
    Schema,
    _error_responses,
    _head,
    _op,
    _path_param,
    _readiness,
)
from .admin import ADMIN_COMPONENTS
from .chat import CHAT_COMPONENTS
from .dialects import DIALECT_COMPONENTS
from .messages import MESSAGES_COMPONENTS
from .responses import INPUT_ITEMS_QUERY, RESPONSE_ID, RESPONSES_COMPONENTS

__all__ = ["openapi_schema"]

_DEP_ID = _path_param("id", "the deployment's id: cfg_... (configured) or dep_... (added at run time)")
_ALIAS_NAME = _path_param("name", "the model's name")

_COMPONENTS: Schema = {
    **CHAT_COMPONENTS,
    **DIALECT_COMPONENTS,
    **RESPONSES_COMPONENTS,
    **MESSAGES_COMPONENTS,
    **ADMIN_COMPONENTS,
}


def _chat(op_id: str, summary: str) -> Schema:
    return _op(op_id, summary, "ChatCompletion", body="ChatCompletionRequest", stream="ChatCompletionChunk")


def _completion(op_id: str, summary: str) -> Schema:
    return _op(op_id, summary, "Completion", body="CompletionRequest", stream="CompletionChunk")


def _embed(op_id: str, summary: str) -> Schema:
    return _op(op_id, summary, "Embeddings", body="EmbeddingRequest")


def _models(op_id: str, summary: str) -> Schema:
    return _op(op_id, summary, "ModelList")


def _model(op_id: str, summary: str) -> Schema:
    return _op(op_id, summary, "Model", parameters=_MODEL_ID)


def _usage_totals() -> Schema:
    op = _op("usage", "Usage totals (master key)", "UsageSummary", parameters=_USAGE_QUERY)
    op["responses"]["200"]["content"]["text/csv"] = {
        "schema": {"type": "string", "description": "format=csv: a header line, then a line per row"}
    }
    return op


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
            "/v1/completions": {"post": _completion("completion", "Text completion (legacy OpenAI), any chat model")},
            "/completions": {"post": _completion("completionAlias", "Text completion (alias of /v1/...)")},
            "/v1/messages": {
                "post": _op(
                    "createMessage",
                    "Create a message (Anthropic Messages API), any model; errors in Anthropic's shape",
                    "Message",
                    body="MessagesRequest",
                    stream="MessageStreamEvent",
                    error="AnthropicError",
                )
            },
            "/v1/messages/count_tokens": {
                "post": _op(
                    "countMessageTokens",
                    "Estimate a Messages request's input tokens",
                    "InputTokens",
                    body="CountTokensRequest",
                    error="AnthropicError",
                )
            },
            "/v1/responses": {
                "post": _op(
                    "createResponse",
                    "Create a response (OpenAI Responses API), any model",
                    "Response",
                    body="ResponseRequest",
                    stream="ResponseStreamEvent",
                )
            },
            "/v1/responses/{id}": {
                "get": _op(
                    "getResponse", "A stored response (made with the same key)", "Response", parameters=RESPONSE_ID
                ),
                "delete": _op("deleteResponse", "Delete a stored response", "ResponseDeleted", parameters=RESPONSE_ID),
            },
            "/v1/responses/{id}/input_items": {
                "get": _op(
                    "listResponseInputItems",
                    "A stored response's input items",
                    "ResponseItemList",
                    parameters=RESPONSE_ID + INPUT_ITEMS_QUERY,
                )
            },
            "/v1/rerank": {
                "post": _op("rerank", "Rerank documents by relevance to a query", "Rerank", body="RerankRequest")
            },
            "/rerank": {"post": _op("rerankAlias", "Rerank (alias of /v1/...)", "Rerank", body="RerankRequest")},
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
                    parameters=[
                        {"name": "include_revoked", "in": "query", "schema": {"type": "boolean"}},
                        {
                            "name": "with_spend",
                            "in": "query",
                            "schema": {"type": "boolean"},
                            "description": "each key with spend, period_start and period_end (as KeyWithSpend)",
                        },
                    ],
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
            "/admin/deployments": {
                "get": _op(
                    "listDeployments", "Every deployment and the router's view of it (master key)", "DeploymentList"
                ),
                "post": _op(
                    "addDeployment",
                    "Add a deployment at run time (persisted; every gateway applies it within seconds)",
                    "DeploymentDefinition",
                    body="DeploymentCreate",
                    status="201",
                ),
            },
            "/admin/deployments/{id}": {
                "get": _op("getDeployment", "A deployment's definition", "DeploymentDefinition", parameters=_DEP_ID),
                "patch": _op(
                    "updateDeployment",
                    "Change a deployment (a configured one: over the YAML's fields)",
                    "DeploymentDefinition",
                    body="DeploymentUpdate",
                    parameters=_DEP_ID,
                ),
                "delete": _op(
                    "removeDeployment",
                    "Remove a deployment (a configured one is hidden until reset)",
                    "DeploymentDefinition",
                    parameters=_DEP_ID,
                ),
            },
            **{
                f"/admin/deployments/{{id}}/{action}": {
                    "post": _op(f"{action}Deployment", summary, "DeploymentDefinition", parameters=_DEP_ID)
                }
                for action, summary in (
                    ("disable", "Take a deployment out of rotation (requests in flight finish)"),
                    ("enable", "Put a deployment back in rotation"),
                    ("reset", "Drop the run-time changes of a configured deployment: back to the YAML"),
                )
            },
            "/admin/aliases": {
                "get": _op("listAliases", "Every model with its deployments' definitions", "AliasList"),
                "post": _op("addAlias", "Add a model at run time", "Alias", body="AliasCreate", status="201"),
            },
            "/admin/aliases/{name}": {
                "get": _op("getAlias", "A model and its deployments' definitions", "Alias", parameters=_ALIAS_NAME),
                "patch": _op(
                    "updateAlias", "Change a model's settings", "Alias", body="AliasUpdate", parameters=_ALIAS_NAME
                ),
                "delete": _op("removeAlias", "Remove a model with its deployments", "Alias", parameters=_ALIAS_NAME),
            },
            "/admin/aliases/{name}/reset": {
                "post": _op(
                    "resetAlias", "Drop the run-time changes of a model's settings", "Alias", parameters=_ALIAS_NAME
                )
            },
            "/admin/usage": {"get": _usage_totals()},
            "/admin/usage/series": {
                "get": _op("usageSeries", "Usage per hour or day, for charts", "UsageSeries", parameters=_SERIES_QUERY)
            },
            "/admin/usage/records": {
                "get": _op("usageRecords", "The newest usage records", "UsageRecords", parameters=_RECORDS_QUERY)
            },
            "/admin/usage/records/{record_id}": {
                "get": _op(
                    "usageRecord", "One usage record, with its bodies", "UsageRecordWithBodies", parameters=_RECORD_ID
                )
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
