"""Schemathesis over every operation of ``/openapi.json``, against a running gateway: bad input never gets a 5xx.

The gateway has the master key, a SQLite store (so the admin API works) and simulators upstream, so requests the
schema calls valid get real answers. Schemathesis runs its three phases on each operation: the schema's examples,
its coverage cases (boundary values, every required field missing, wrong types, undeclared methods and media types)
and hypothesis-driven fuzzing, each in positive and negative mode. Every answer must be:

* no 5xx (``not_a_server_error``), and no traceback in the gateway's log (a crash behind a 4xx or a stream);
* in the schema: status, media type, body (``response_schema_conformance``: every error is the OpenAI error shape);
* for a stream, server-sent events of JSON, none of them a server error;
* refused without the key where the schema asks for one (``ignored_auth``).

The schema fuzzed is the one served (``test_the_fuzzed_schema_is_the_served_one``) with two narrowings that let
valid requests reach something real: ``model`` is one of the gateway's models (or one it does not serve), and a key
``id`` one of the keys the fixture stored.

Short by default (derandomized, a few dozen examples an operation, well under a minute). The long form, by hand::

    MODELWAY_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/server/test_api_fuzz.py -p no:cacheprovider

``MODELWAY_FUZZ_SEED=<int>`` draws other examples (randomized from that seed instead of derandomized);
``MODELWAY_FUZZ_LOG=<file>`` appends one JSON line per case (operation, phase, mode, status, body).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import schemathesis
from gw import MASTER_KEY, RunningGateway, gateway_config
from hypothesis import HealthCheck, seed, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

from modelway.auth.keys import hash_secret, new_key
from modelway.server.openapi import openapi_schema
from modelway.testing import DashScopeSimulator, OpenAISimulator, ZhipuSimulator

EXAMPLES = int(os.environ.get("MODELWAY_FUZZ_EXAMPLES", "20"))
SEED = os.environ.get("MODELWAY_FUZZ_SEED")
LOG = os.environ.get("MODELWAY_FUZZ_LOG")
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}

#: the models of ``gw.gateway_config`` (and a direct provider/model), and one the gateway does not serve
CHAT_MODELS = ["gpt", "glm", "qwen", "openai/gpt-4o-mini", "no-such-model"]
EMBED_MODELS = ["embed", "openai/text-embedding-3-small", "gpt", "no-such-model"]
RERANK_MODELS = ["rerank", "dashscope/gte-rerank-v2", "gpt", "no-such-model"]
#: keys the fixture stores before the gateway starts, so that the key routes find something (and one that is not)
KEY_IDS = ["key_fuzz000000total", "key_fuzz0000000day", "key_fuzz00000month", "key_missing"]

#: the simulator computes every vector it is asked for, however long; OpenAI refuses more than the model has (3072 at
#: most), and the gateway forwards ``dimensions`` as it is: larger values are lowered to this before they are sent
SIM_MAX_DIMENSIONS = 3072

#: reproducible (derandomized unless a seed is given, no example database) and without per-example deadlines (the
#: gateway answers over the network, CI machines stall)
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=SEED is None,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


def _narrowed(spec: dict[str, Any]) -> dict[str, Any]:
    """The served schema, with ``model`` and key ``id`` drawn from what this gateway has (see the module doc)."""
    spec = copy.deepcopy(spec)
    schemas = spec["components"]["schemas"]
    for name in (
        "ChatCompletionRequest",
        "DbgptChatRequest",
        "CompletionRequest",
        "ResponseRequest",
        "MessagesRequest",
        "CountTokensRequest",
    ):
        schemas[name]["properties"]["model"] = {"enum": CHAT_MODELS}
    schemas["RerankRequest"]["properties"]["model"] = {"enum": RERANK_MODELS}
    schemas["EmbeddingRequest"]["properties"]["model"] = {"enum": EMBED_MODELS}
    for path, ops in spec["paths"].items():
        for op in ops.values():
            for p in op.get("parameters", []):
                if p["in"] == "path" and p["name"] == "model":
                    p["schema"] = {"enum": CHAT_MODELS + EMBED_MODELS[:2]}
                elif p["in"] == "path" and p["name"] == "id" and path.startswith("/admin/keys/"):
                    p["schema"] = {"enum": KEY_IDS}
    return spec


schema = schemathesis.openapi.from_dict(_narrowed(openapi_schema(True)))


# -- the gateway ----------------------------------------------------------------------------------------------------


async def _store_keys(url: str) -> None:
    from modelway.store.sql import SQLStore

    store = SQLStore(url)
    await store.open()
    try:
        for key_id, period in zip(KEY_IDS, ("total", "day", "month"), strict=False):
            secret, key = new_key(f"fuzz {period}", budget=100.0, budget_period=period, models=["gpt", "embed"])
            await store.insert_key(replace(key, id=key_id, key_hash=hash_secret(secret)))
    finally:
        await store.aclose()


@pytest.fixture(scope="module")
def fuzz_gateway(
    start_gateway: Callable[[dict[str, Any]], RunningGateway],
    zhipu_sim: ZhipuSimulator,
    dashscope_sim: DashScopeSimulator,
    openai_sim: OpenAISimulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> RunningGateway:
    d: Path = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{d / 'modelway.db'}"
    asyncio.run(_store_keys(url))
    # a simulator that stalls shows as a 504 (a failure) within the test's patience, not as a hang
    cfg = gateway_config(zhipu_sim, dashscope_sim, openai_sim, body_timeout=5.0, header_timeout=5.0, timeout=20.0)
    cfg["store"] = {"url": url}
    cfg["usage"] = {"spill_path": str(d / "spill.jsonl"), "flush_interval": 0.05}
    cfg["providers"] = {
        "openai": {"api_key": openai_sim.api_key, "base_url": openai_sim.base_url},
        "dashscope": {"api_key": dashscope_sim.api_key, "base_url": dashscope_sim.base_url},
    }
    rerank = {"model": "dashscope/gte-rerank-v2", "api_key": dashscope_sim.api_key, "api_base": dashscope_sim.base_url}
    cfg["models"].append({"name": "rerank", "deployments": [rerank]})
    return start_gateway(cfg)


class _Tracebacks(logging.Handler):
    """Collects the log records that carry an exception: the gateway crashed somewhere, whatever it answered."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.levelno >= logging.ERROR:
            self.records.append(record)


@pytest.fixture
def tracebacks() -> Iterator[_Tracebacks]:
    handler = _Tracebacks()
    loggers = [logging.getLogger(name) for name in ("modelway", "uvicorn.error", "asyncio")]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        yield handler
    finally:
        for lg in loggers:
            lg.removeHandler(handler)


# -- checks of our own ----------------------------------------------------------------------------------------------


@schemathesis.check
def sse_events_are_json_and_no_server_error(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """A stream's events are JSON (or ``[DONE]``), and none of them reports a server error (a crash mid-stream)."""
    if not response.headers.get("content-type", [""])[0].startswith("text/event-stream"):
        return None
    # SSE ends lines with CR, LF or CRLF only (str.splitlines would also split at U+0085 or U+2028 inside the JSON)
    for line in re.split(r"\r\n|\r|\n", response.text):
        if not line.startswith("data:"):
            assert line == "" or line.startswith((":", "event:")), f"not an SSE line: {line[:200]!r}"
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            continue
        event = orjson.loads(data)
        error = event.get("error") if isinstance(event, dict) else None
        if isinstance(event, dict) and isinstance(event.get("response"), dict):  # Responses: response.failed
            error = event["response"].get("error")
        if isinstance(error, dict):
            # OpenAI's frame says its status; Anthropic's and the Responses API's say a type or code
            server = error.get("type") in ("api_error", "internal_error") or error.get("code") == "server_error"
            assert int(error.get("status") or 0) < 500 and not server, f"the stream ended with a server error: {data}"
    return None


#: operations whose auth was confirmed: ``ignored_auth`` probes twice (without a key, with a wrong one) after every
#: success, which would double the run; once an operation is enough
_AUTH_CONFIRMED: set[str] = set()


@schemathesis.check
def auth_is_enforced_once(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """``ignored_auth``, on each operation's first success only."""
    label = case.operation.label
    if label in _AUTH_CONFIRMED or not 200 <= response.status_code < 300:
        return None
    result = ignored_auth(ctx, response, case)
    _AUTH_CONFIRMED.add(label)
    return result


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    auth_is_enforced_once,
    sse_events_are_json_and_no_server_error,
]


# -- the tests ------------------------------------------------------------------------------------------------------


def test_the_fuzzed_schema_is_the_served_one(fuzz_gateway: RunningGateway) -> None:
    served = httpx.get(fuzz_gateway.url + "/openapi.json", timeout=10).json()
    assert served == openapi_schema(True)
    # every route of the app is described (the unversioned aliases too), with each method it serves
    methods = {path: set(ops) for path, ops in served["paths"].items()}
    assert methods == {
        "/v1/chat/completions": {"post"},
        "/chat/completions": {"post"},
        "/v1/embeddings": {"post"},
        "/embeddings": {"post"},
        "/v1/models": {"get"},
        "/models": {"get"},
        "/v1/models/{model}": {"get"},
        "/models/{model}": {"get"},
        "/api/v2/chat/completions": {"post"},
        "/v1/completions": {"post"},
        "/completions": {"post"},
        "/v1/rerank": {"post"},
        "/rerank": {"post"},
        "/v1/messages": {"post"},
        "/v1/messages/count_tokens": {"post"},
        "/v1/responses": {"post"},
        "/v1/responses/{id}": {"get", "delete"},
        "/v1/responses/{id}/input_items": {"get"},
        "/admin/keys": {"get", "post"},
        "/admin/keys/{id}": {"get", "patch", "delete"},
        "/admin/deployments": {"get", "post"},
        "/admin/deployments/{id}": {"get", "patch", "delete"},
        "/admin/deployments/{id}/disable": {"post"},
        "/admin/deployments/{id}/enable": {"post"},
        "/admin/deployments/{id}/reset": {"post"},
        "/admin/aliases": {"get", "post"},
        "/admin/aliases/{name}": {"get", "patch", "delete"},
        "/admin/aliases/{name}/reset": {"post"},
        "/admin/usage": {"get"},
        "/admin/usage/series": {"get"},
        "/admin/usage/records": {"get"},
        "/admin/usage/records/{record_id}": {"get"},
        "/metrics": {"get", "head"},
        "/health": {"get", "head"},
        "/health/liveness": {"get", "head"},
        "/health/readiness": {"get", "head"},
        "/openapi.json": {"get", "head"},
    }


def test_the_schema_serves_every_route_of_the_app() -> None:
    from modelway.server import app

    spec = openapi_schema(True)["paths"]
    for method, path in app._ROUTES:
        assert method.lower() in spec.get(path, {}), (method, path)
    for path in (*app._PUBLIC, app._METRICS):
        assert {"get", "head"} <= set(spec[path]), path
    for prefix in app._MODEL_PREFIXES:
        assert "get" in spec[prefix + "{model}"]


def test_the_schema_states_the_validators_integer_ranges() -> None:
    from modelway.validate import _INT_RANGES

    chat_props = openapi_schema(True)["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    for name, (lo, hi) in _INT_RANGES.items():
        assert (chat_props[name]["minimum"], chat_props[name]["maximum"]) == (lo, hi), name


def test_the_schema_without_a_master_key_asks_for_none() -> None:
    assert openapi_schema(False)["security"] == []
    assert openapi_schema(True)["security"] == [{"bearer": []}, {"apiKey": []}]


def _tame(case: schemathesis.Case) -> None:
    """Take out of a case what the simulators cannot take (a vector of 2**31 dimensions)."""
    body = case.body
    if not isinstance(body, dict):
        return
    if case.path.endswith("/embeddings"):
        dim = body.get("dimensions")
        if isinstance(dim, int) and dim > SIM_MAX_DIMENSIONS:
            body["dimensions"] = SIM_MAX_DIMENSIONS


def _fuzz(test: Callable[..., None]) -> Callable[..., None]:
    test = FUZZ_SETTINGS(test)
    return seed(int(SEED))(test) if SEED is not None else test


def _record(case: schemathesis.Case, status: int) -> None:
    """One line per case in ``MODELWAY_FUZZ_LOG`` (when set): what was sent, in which mode, and the status."""
    if LOG is None:
        return
    meta = case.meta
    line = {
        "operation": case.operation.label,
        "phase": meta.phase.name.value if meta is not None else None,
        "mode": meta.generation.mode.value if meta is not None else None,
        "status": status,
        "body": json.dumps(case.body, default=repr)[:1000],
    }
    with open(LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


@schema.parametrize()
@_fuzz
def test_bad_input_never_gets_a_server_error(
    case: schemathesis.Case, fuzz_gateway: RunningGateway, tracebacks: _Tracebacks
) -> None:
    _tame(case)
    response = case.call(base_url=fuzz_gateway.url, headers=AUTH, timeout=30)
    _record(case, response.status_code)
    case.validate_response(response, checks=CHECKS, headers=AUTH)
    assert not tracebacks.records, "the gateway logged a traceback:\n" + "\n".join(
        logging.Formatter().format(r) for r in tracebacks.records
    )
