"""Schemas of the admin API (keys, usage, run-time deployments and aliases) and of the health and OpenAPI endpoints."""

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

_NULL_NUMBER: Schema = {"type": ["number", "null"]}
_LATENCY: Schema = {
    "p50_ms": {**_NULL_NUMBER, "description": "median latency, from fixed-bucket histograms (null: no request)"},
    "p95_ms": _NULL_NUMBER,
    "ttft_p50_ms": {**_NULL_NUMBER, "description": "median time to first token of streams (null: none)"},
}
_USAGE_ROW = _obj(
    {
        "group": {
            "type": ["string", "null"],
            "description": "the key id (null: the master key or no auth), model, deployment ((none): refused before "
            "one was chosen), endpoint, day (YYYY-MM-DD) or hour (YYYY-MM-DDTHH:00Z)",
        },
        "key_name": {**_NULL_STRING, "description": "group_by=key only"},
        "requests": _INT,
        "errors": {"type": "integer", "description": "status 400 or more"},
        "prompt_tokens": _INT,
        "completion_tokens": _INT,
        "total_tokens": _INT,
        "cost": _NUMBER,
        **_LATENCY,
    },
    [*("group", "requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens", "cost"), *_LATENCY],
)
_RANGE: Schema = {
    "since": {"type": ["integer", "null"], "description": "the range read, at whole UTC hours (inclusive)"},
    "until": {"type": ["integer", "null"], "description": "exclusive"},
}
_USAGE_SUMMARY = _obj(
    {
        "object": {"const": "list"},
        "group_by": {"enum": list(GROUP_BY)},
        "currency": _STRING,
        **_RANGE,
        "data": {"type": "array", "items": _USAGE_ROW},
    },
    ["object", "group_by", "currency", "since", "until", "data"],
    description="most expensive first",
)
_POINT = _obj(
    {
        "t": {"type": "integer", "description": "the bucket's start, Unix seconds"},
        "requests": _INT,
        "errors": _INT,
        "total_tokens": _INT,
        "cost": _NUMBER,
        **_LATENCY,
    },
    ["t", "requests", "errors", "total_tokens", "cost", *_LATENCY],
)
_USAGE_SERIES = _obj(
    {
        "bucket": {"enum": ["hour", "day"]},
        "group_by": {"enum": ["key", "model", "deployment", "endpoint", None]},
        "currency": _STRING,
        "since": _INT,
        "until": _INT,
        "series": {
            "type": "array",
            "items": _obj(
                {
                    "group": {**_NULL_STRING, "description": "as in UsageSummary; (other): the rest summed"},
                    "key_name": {**_NULL_STRING, "description": "group_by=key only"},
                    "points": {"type": "array", "items": _POINT, "description": "every bucket, oldest first"},
                },
                ["group", "points"],
            ),
        },
    },
    ["bucket", "group_by", "since", "until", "series"],
)
_USAGE_RECORD = _obj(
    {
        "id": {"type": "integer", "description": "the row's id: pages go by it (before=)"},
        "ts": _NUMBER,
        "request_id": _STRING,
        "key_id": _NULL_STRING,
        "key_name": _NULL_STRING,
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
    ["id", "ts", "request_id", "key_id", "key_name", "model", "endpoint", "stream", "status", "record_id"],
)
_BODY: Schema = {
    "type": ["string", "null"],
    "description": "as request_log.bodies keeps it: cut at max_body_bytes, secrets masked (null: not kept; a "
    "stream's answer never is)",
}
_USAGE_RECORD_WITH_BODIES = _obj(
    {**_USAGE_RECORD["properties"], "request_body": _BODY, "response_body": _BODY},
    [*_USAGE_RECORD["required"], "request_body", "response_body"],
)
_RECORDS = _obj(
    {
        "object": {"const": "list"},
        "data": {"type": "array", "items": _ref("UsageRecord"), "description": "newest first"},
        "has_more": {"type": "boolean"},
        "next_before": {"type": ["integer", "null"], "description": "before= of the next page (null: no more)"},
    },
    ["object", "data", "has_more", "next_before"],
)
_DEPLOYMENT = _obj(
    {
        "model": _STRING,
        "deployment": _STRING,
        "provider": _STRING,
        "upstream_model": _STRING,
        "id": {"type": ["string", "null"], "description": "cfg_... or dep_... (null: a registered worker's)"},
        "source": {"enum": ["config", "api", "fastchat", "dbgpt"]},
        "changed": {"type": "boolean", "description": "a run-time change applies to it"},
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

# -- run-time deployments and aliases (modelway.store.deployments) --------------------------------------------------

_NUM = {"type": "number", "exclusiveMinimum": 0}
_DEPLOYMENT_FIELDS: Schema = {
    "model": {"type": "string", "description": "provider/model, e.g. openai/gpt-4o-mini"},
    "api_key": {"type": "string", "description": "stored as given, never shown again (prefer api_key_env)"},
    "api_key_env": {"type": "string", "description": "an environment variable each gateway reads the key from"},
    "api_base": {"type": "string", "description": "http(s) URL"},
    "base_url": {"type": "string", "description": "same as api_base"},
    "weight": _NUM,
    "timeout": _NUM,
    "params": {"type": "object"},
    "options": {"type": "object"},
    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
    "price": _obj({"input": {"type": "number", "minimum": 0}, "output": {"type": "number", "minimum": 0}}),
    "tier": {"type": "integer", "minimum": 0},
    "quota": _obj({k: {"type": ["integer", "null"], "minimum": 1} for k in ("max_concurrent", "rpm", "tpm")}),
    "disabled": {"type": "boolean"},
}
_MODEL_NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$"}
_DEPLOYMENT_CREATE = _obj(
    {"model_name": _MODEL_NAME, **_DEPLOYMENT_FIELDS},
    ["model_name", "model"],
    additionalProperties=False,
    description="the YAML's deployment fields (checked by the same parser), plus model_name and api_key_env",
)
_DEPLOYMENT_UPDATE = _obj(
    {"model_name": _MODEL_NAME, **{k: {"anyOf": [v, {"type": "null"}]} for k, v in _DEPLOYMENT_FIELDS.items()}},
    minProperties=1,
    additionalProperties=False,
    description="the fields to change; null: back to the config's value or the default",
)
_DEFINITION = _obj(
    {
        "id": _STRING,
        "model_name": _STRING,
        "source": {"enum": ["config", "api"]},
        "state": {"enum": ["active", "disabled", "removed"]},
        "changed": {"type": "boolean", "description": "a change in the store applies"},
        "updated_at": {"type": ["number", "null"]},
        "spec": {"type": "object", "description": "the YAML's fields; api_key and header values masked"},
    },
    ["id", "model_name", "source", "state", "changed", "updated_at", "spec"],
    description="a deployment as defined now: the YAML's with the store's change over it, or one added at run time",
)
_ALIAS_FIELDS: Schema = {
    "system_prompt": _NULL_STRING,
    "merge_system": {"type": "boolean"},
    "description": _NULL_STRING,
    "price": _obj({"input": {"type": "number", "minimum": 0}, "output": {"type": "number", "minimum": 0}}),
    "routing": {"type": "object", "description": "the YAML's routing: (strategy, max_attempts, fallbacks, ...)"},
}
_ALIAS_CREATE = _obj({"name": _MODEL_NAME, **_ALIAS_FIELDS}, ["name"], additionalProperties=False)
_ALIAS_UPDATE = _obj(
    {k: {"anyOf": [v, {"type": "null"}]} for k, v in _ALIAS_FIELDS.items()},
    minProperties=1,
    additionalProperties=False,
    description="the settings to change (routing is replaced as a whole); null: back to the config's or the default",
)
_ALIAS = _obj(
    {
        "name": _STRING,
        "source": {"enum": ["config", "api"]},
        "state": {"enum": ["active", "removed"]},
        "changed": {"type": "boolean"},
        "updated_at": {"type": ["number", "null"]},
        "spec": {"type": "object"},
        "deployments": {"type": "array", "items": _ref("DeploymentDefinition")},
    },
    ["name", "source", "state", "changed", "updated_at", "spec", "deployments"],
    description="a model callers ask for, with its deployments' definitions (removed ones too)",
)
_ALIASES = _obj({"object": {"const": "list"}, "data": {"type": "array", "items": _ref("Alias")}}, ["object", "data"])

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
    "UsageRecordWithBodies": _USAGE_RECORD_WITH_BODIES,
    "UsageRecords": _RECORDS,
    "UsageSeries": _USAGE_SERIES,
    "Deployment": _DEPLOYMENT,
    "DeploymentList": _DEPLOYMENTS,
    "DeploymentCreate": _DEPLOYMENT_CREATE,
    "DeploymentUpdate": _DEPLOYMENT_UPDATE,
    "DeploymentDefinition": _DEFINITION,
    "AliasCreate": _ALIAS_CREATE,
    "AliasUpdate": _ALIAS_UPDATE,
    "Alias": _ALIAS,
    "AliasList": _ALIASES,
    "Liveness": _LIVENESS,
    "Readiness": _READINESS,
    "OpenApi": _OPENAPI,
}
