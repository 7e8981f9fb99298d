"""Schemas of the admin API (keys, usage) and of the health and OpenAPI endpoints."""

from __future__ import annotations

from ...usage.records import ENDPOINTS, GROUP_BY
from ...validate import MAX_JSON_DEPTH
from ._base import (
    _INT,
    _INT32,
    _NULL_STRING,
    _NUMBER,
    _STRING,
    Schema,
    _obj,
    _ref,
)

__all__ = ["ADMIN_COMPONENTS"]

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
        "group_by": {"enum": list(GROUP_BY)},
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
        "endpoint": {"enum": list(ENDPOINTS)},
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
        "attempts": {"type": "integer", "description": "upstream requests the router made (retries, failovers)"},
        "fallback": {"type": ["string", "null"], "description": "the model fallen back to"},
    },
    ["ts", "request_id", "key_id", "model", "endpoint", "stream", "status"],
)
_RECORDS = _obj(
    {"object": {"const": "list"}, "data": {"type": "array", "items": _ref("UsageRecord")}}, ["object", "data"]
)
_DEPLOYMENT = _obj(
    {
        "model": _STRING,
        "deployment": _STRING,
        "provider": _STRING,
        "upstream_model": _STRING,
        "source": {"enum": ["config", "fastchat", "dbgpt"]},
        "address": _NULL_STRING,
        "strategy": _STRING,
        "weight": _NUMBER,
        "tier": _INT,
        "disabled": {"type": "boolean"},
        "cooling": {"type": "boolean"},
        "circuit": _obj({"state": {"enum": ["closed", "open", "half_open"]}}, ["state"]),
        "quota": {"type": ["object", "null"]},
    },
    ["model", "deployment", "provider", "upstream_model", "source", "circuit"],
    description="one deployment as the router sees it: circuit, in flight, latency averages, recent errors, quota",
)
_DEPLOYMENTS = _obj(
    {"object": {"const": "list"}, "data": {"type": "array", "items": _ref("Deployment")}}, ["object", "data"]
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


ADMIN_COMPONENTS: Schema = {
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
    "Deployment": _DEPLOYMENT,
    "DeploymentList": _DEPLOYMENTS,
    "Liveness": _LIVENESS,
    "Readiness": _READINESS,
    "OpenApi": _OPENAPI,
}
