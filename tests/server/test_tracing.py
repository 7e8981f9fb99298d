"""OpenTelemetry traces through a running gateway, exported over OTLP/HTTP to a local collector stand-in that decodes
the protobuf: the request span continues the caller's ``traceparent``, each upstream request is a child span whose
context reaches the provider, GenAI attributes, error status, streams, failover; and with tracing off nothing of
OpenTelemetry is even imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from gw import MASTER_KEY, RunningGateway
from otlp_collector import Collector, Span

from modelway import tracing
from modelway.config import TracingConfig, parse_config
from modelway.testing import Fault, OpenAISimulator, Reply

TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with Collector() as c:
        yield c


@pytest.fixture(scope="module")
def traced(
    start_gateway: Callable[[dict[str, Any]], RunningGateway], openai_sim: OpenAISimulator, collector: Collector
) -> RunningGateway:
    dep = {"model": "openai/gpt-4o-mini", "api_key": openai_sim.api_key, "api_base": openai_sim.base_url}
    return start_gateway(
        {
            "server": {"master_key": MASTER_KEY, "max_retries": 0},
            "tracing": {"endpoint": collector.endpoint, "service_name": "gw-under-test"},
            "models": [
                {"name": "gpt", "price": {"input": 1, "output": 1}, "deployments": [dep]},
                {
                    "name": "pair",
                    "routing": {"strategy": "priority"},
                    "deployments": [
                        {**dep, "model": "openai/first", "tier": 0},
                        {**dep, "model": "openai/second", "tier": 1},
                    ],
                },  # fmt: skip
            ],
        }
    )


async def chat(gw: RunningGateway, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    h = {"Authorization": f"Bearer {MASTER_KEY}", **(headers or {})}
    async with aiohttp.ClientSession() as s, s.post(gw.url + "/v1/chat/completions", json=body, headers=h) as r:
        return r.status, await r.read()


def spans(gw: RunningGateway, collector: Collector, count: int) -> list[Span]:
    """Flush the gateway's exporter until ``count`` spans arrived (a request's span ends once its answer is out)."""
    assert gw.app.tracing is not None
    got: list[Span] = []
    deadline = time.monotonic() + 10
    while len(got) < count and time.monotonic() < deadline:
        gw.app.tracing.provider.force_flush()
        got += collector.take()
        time.sleep(0.02)
    assert len(got) == count, [s.name for s in got]
    return got


def server_and_clients(got: list[Span]) -> tuple[Span, list[Span]]:
    (server,) = [s for s in got if s.kind == "SERVER"]
    return server, [s for s in got if s.kind == "CLIENT"]


async def test_a_request_continues_the_callers_trace_and_passes_it_on(
    traced: RunningGateway, collector: Collector, openai_sim: OpenAISimulator
) -> None:
    openai_sim.push(Reply(text="hi", usage=(11, 4)))
    body = {"model": "gpt", "messages": [{"role": "user", "content": "secret prompt text"}]}
    status, _ = await chat(traced, body, {"traceparent": f"00-{TRACE}-{CALLER_SPAN}-01", "tracestate": "k=v"})
    assert status == 200
    server, (client,) = server_and_clients(spans(traced, collector, 2))

    assert server.name == "POST /v1/chat/completions" and server.trace_id == TRACE
    assert server.parent_id == CALLER_SPAN  # the caller's span is the parent
    assert server.resource["service.name"] == "gw-under-test"
    a = server.attributes
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "gpt"
    assert a["gen_ai.provider.name"] == "openai" and a["gen_ai.system"] == "openai"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (11, 4)
    assert a["http.response.status_code"] == 200 and a["http.route"] == "/v1/chat/completions"
    assert a["modelway.deployment"] == "openai/gpt-4o-mini" and a["modelway.attempts"] == 1
    assert server.status == "UNSET" and "error.type" not in a

    assert client.name == "chat gpt-4o-mini" and client.trace_id == TRACE and client.parent_id == server.span_id
    c = client.attributes
    assert c["gen_ai.request.model"] == "gpt-4o-mini" and c["gen_ai.response.model"] == "gpt-4o-mini"
    assert c["gen_ai.response.finish_reasons"] == ["stop"] and c["gen_ai.usage.input_tokens"] == 11
    assert c["server.address"] == "127.0.0.1" and c["server.port"] == openai_sim.port
    assert c["http.response.status_code"] == 200

    # the provider got the upstream span's context, in the caller's trace, with the caller's tracestate dropped
    # for ours (the gateway's span is the provider's parent)
    sent = openai_sim.last_request.headers["traceparent"]
    assert sent == f"00-{TRACE}-{client.span_id}-01"
    everything = json.dumps([s.attributes for s in (server, client)])
    assert (
        "secret prompt text" not in everything
        and MASTER_KEY not in everything
        and openai_sim.api_key not in (everything)
    )


async def test_a_stream_and_a_new_trace(
    traced: RunningGateway, collector: Collector, openai_sim: OpenAISimulator
) -> None:
    openai_sim.push(Reply(text="one two three", usage=(3, 5), finish_reason="length"))
    body = {"model": "gpt", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "x"}]}  # fmt: skip
    status, raw = await chat(traced, body)
    assert status == 200 and b"[DONE]" in raw
    server, (client,) = server_and_clients(spans(traced, collector, 2))
    assert server.parent_id is None and client.parent_id == server.span_id and client.trace_id == server.trace_id
    assert server.attributes["modelway.ttft_ms"] > 0
    assert (server.attributes["gen_ai.usage.input_tokens"], server.attributes["gen_ai.usage.output_tokens"]) == (3, 5)
    assert client.attributes["gen_ai.response.finish_reasons"] == ["length"]
    assert client.attributes["gen_ai.usage.output_tokens"] == 5
    assert openai_sim.last_request.headers["traceparent"].split("-")[1] == server.trace_id


async def test_errors_set_the_status_and_error_type(
    traced: RunningGateway, collector: Collector, openai_sim: OpenAISimulator
) -> None:
    openai_sim.push(Fault.http(500))
    status, _ = await chat(traced, {"model": "gpt", "messages": [{"role": "user", "content": "x"}]})
    assert status >= 500
    server, (client,) = server_and_clients(spans(traced, collector, 2))
    assert client.status == "ERROR" and client.attributes["error.type"] == "UpstreamServerError"
    assert client.attributes["http.response.status_code"] == 500
    assert server.status == "ERROR" and server.attributes["http.response.status_code"] == status
    assert server.attributes["error.type"] == "UpstreamServerError"


async def test_each_failover_attempt_is_a_child_span(
    traced: RunningGateway, collector: Collector, openai_sim: OpenAISimulator
) -> None:
    openai_sim.push(Fault.http(503), Reply(text="second answers"))
    status, _ = await chat(traced, {"model": "pair", "messages": [{"role": "user", "content": "x"}]})
    assert status == 200
    server, clients = server_and_clients(spans(traced, collector, 3))
    assert sorted(c.name for c in clients) == ["chat first", "chat second"]
    assert all(c.parent_id == server.span_id for c in clients)
    first = next(c for c in clients if c.name == "chat first")
    second = next(c for c in clients if c.name == "chat second")
    assert first.status == "ERROR" and second.status == "UNSET"
    assert server.attributes["modelway.attempts"] == 2 and server.attributes["modelway.deployment"] == "openai/second"
    sent = [r.headers["traceparent"].split("-")[1:3] for r in openai_sim.requests]  # (trace id, parent id)
    assert sent == [[server.trace_id, first.span_id], [server.trace_id, second.span_id]]


async def test_refusals_are_traced_too(traced: RunningGateway, collector: Collector) -> None:
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    async with (
        aiohttp.ClientSession() as s,
        s.post(traced.url + "/v1/chat/completions", data=b"{no", headers=headers) as r,
    ):
        assert r.status == 400
    (server,) = spans(traced, collector, 1)
    assert server.attributes["error.type"] == "InvalidRequestError" and server.status == "UNSET"  # 4xx: the caller's
    assert server.attributes["http.response.status_code"] == 400


async def test_a_request_not_sampled_exports_nothing_and_still_passes_its_trace_on(
    start_gateway: Callable[[dict[str, Any]], RunningGateway], openai_sim: OpenAISimulator, collector: Collector
) -> None:
    dep = {"model": "openai/gpt-4o-mini", "api_key": openai_sim.api_key, "api_base": openai_sim.base_url}
    gw = start_gateway(
        {
            "server": {"master_key": MASTER_KEY, "max_retries": 0},
            "tracing": {"endpoint": collector.endpoint, "sample_ratio": 0.0},
            "models": [{"name": "gpt", "deployments": [dep]}],
        }
    )
    openai_sim.push(Reply(text="a"), Reply(text="b"))
    body = {"model": "gpt", "messages": [{"role": "user", "content": "x"}]}
    assert (await chat(gw, body, {"traceparent": f"00-{TRACE}-{CALLER_SPAN}-00"}))[0] == 200
    _, trace, _, flags = openai_sim.last_request.headers["traceparent"].split("-")
    assert (trace, flags) == (TRACE, "00")  # the caller's trace, not sampled, goes on to the provider
    # a caller that samples its trace is recorded whatever the ratio (the parent decides)
    assert (await chat(gw, body, {"traceparent": f"00-{TRACE}-{CALLER_SPAN}-01"}))[0] == 200
    server, (client,) = server_and_clients(spans(gw, collector, 2))
    assert server.parent_id == CALLER_SPAN and client.parent_id == server.span_id


def test_the_endpoint_comes_from_the_config_or_the_standard_environment() -> None:
    on = TracingConfig()
    assert tracing.traces_endpoint(on, {}) is None
    assert tracing.traces_endpoint(on, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) == "http://c:4318/v1/traces"
    assert tracing.traces_endpoint(on, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/x"}) == "http://c/x"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}
    assert tracing.traces_endpoint(on, env) is None
    assert tracing.traces_endpoint(TracingConfig(enabled=False), {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}) is None
    cfg = parse_config({"tracing": {"endpoint": "http://collector:4318/"}}).tracing
    assert tracing.traces_endpoint(cfg, {}) == "http://collector:4318/v1/traces"


def test_the_config_section_is_checked() -> None:
    from modelway.config import ConfigError

    cfg = parse_config({"tracing": {"enabled": True, "sample_ratio": 0.25, "headers": {"x-key": "k"}}}).tracing
    assert cfg.enabled and cfg.sample_ratio == 0.25 and cfg.headers == {"x-key": "k"}
    for bad, field in (({"sample_ratio": 2}, "sample_ratio"), ({"endpoint": "collector:4318"}, "endpoint"),
                       ({"enabled": "yes"}, "enabled"), ({"exporter": "zipkin"}, "unknown field")):  # fmt: skip
        with pytest.raises(ConfigError, match=field):
            parse_config({"tracing": bad})


def test_off_nothing_of_opentelemetry_is_imported() -> None:
    """A gateway without tracing serves requests without importing OpenTelemetry (and with ACTIVE at 0)."""
    code = """
import asyncio, sys
from modelway.config import parse_config
from modelway.server import create_app
from modelway import tracing

async def main():
    app = create_app(parse_config({"server": {"cors_origins": ["*"]}}, env={}), env={})
    await app.startup()
    sent = []
    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}
    async def send(msg):
        sent.append(msg)
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [
        (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]}
    await app(scope, receive, send)
    await app.shutdown()
    assert sent[0]["status"] == 400, sent
    print(tracing.ACTIVE, sorted(m for m in sys.modules if m.startswith("opentelemetry")))

asyncio.run(main())
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELWAY_"))}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-2] == "0 []", out.stdout


def test_a_configured_tracer_without_the_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def no_sdk(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("opentelemetry.sdk"):
            raise ImportError(name, name="opentelemetry.sdk")
        return real(name, *args, **kwargs)

    live = tracing.ACTIVE
    monkeypatch.setattr(builtins, "__import__", no_sdk)
    with pytest.raises(ImportError, match=r"modelway\[otel\]"):
        tracing.Tracing("http://127.0.0.1:9/v1/traces")
    assert live == tracing.ACTIVE  # a tracer that failed is not counted as live
