"""What the operator sees of a fault, right after it: the request's usage record (admin API) and the Prometheus
metrics (``modelway_requests_total`` and ``modelway_deployment_failures_total``), for a representative set of
faults. (The fault table checks the usage record of every one of its cases, in one query at its end.)"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from fault_harness import (
    COMMIT,
    DIALECTS,
    Answered,
    Broken,
    Dialect,
    Failed,
    Outcome,
    check,
    check_record,
    http_client,
    post,
)
from fault_rig import Rig
from prometheus_client.parser import text_string_to_metric_families

from modelway.testing import Fault

Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]
CHAT, DBGPT, EMBEDDINGS = DIALECTS[:3]  # (the ledger cases: one dialect of each kind)
ENDPOINTS = {CHAT.name: "chat", DBGPT.name: "dbgpt", EMBEDDINGS.name: "embeddings"}


@dataclass(frozen=True)
class Case:
    id: str
    dialect: Dialect
    model: str
    stream: bool
    faults: tuple[Fault, ...]
    expect: Outcome
    #: ``modelway_deployment_failures_total`` increments of the faulty deployment, by error
    failures: dict[str, int] = field(default_factory=dict)
    xfail: str | None = None


CASES = (
    Case("failover-5xx", CHAT, "sim-2", False, (Fault.http(500),), Answered("healthy"), {"UpstreamServerError": 1}),
    Case(
        "rate-limited",
        DBGPT,
        "sim-1",
        True,
        (Fault.http(429, retry_after=3),),
        Failed(429, "rate_limit_error", "rate_limit_exceeded", retry_after="3"),
        {"RateLimitError": 1},
    ),
    Case(
        "refused",
        CHAT,
        "dead-1",
        True,
        (),
        Failed(502, "connection_error", None),
        {"ProviderConnectionError": 1},
    ),
    Case(
        "timeout-then-failover",
        CHAT,
        "sim-2",
        True,
        (Fault.slow_first_byte(5),),
        Answered("healthy"),
        {"ProviderTimeoutError": 1},
    ),
    Case(
        "content-filter-is-not-the-deployments-fault",
        CHAT,
        "sim-2",
        True,
        (Fault.error_frame(after_chunks=1, code="content_filter"),),
        Failed(400, "content_filter", "content_filter", fails_over=False),
    ),
    Case(
        "embeddings-oversized-then-failover",
        EMBEDDINGS,
        "sim-2",
        False,
        (Fault.oversized(2 << 20),),
        Answered("healthy"),
        {"StreamError": 1},
    ),
    Case(
        "broken-after-commit",
        CHAT,
        "sim-2",
        True,
        (Fault.error_frame(after_chunks=COMMIT),),
        Broken(502, "upstream_error", "server_error"),
        {"UpstreamServerError": 1},
    ),
    Case(
        "stalled-after-commit",
        DBGPT,
        "sim-1",
        True,
        (Fault.stall(after_chunks=COMMIT),),
        Broken(504, "timeout_error", None),
        {"ProviderTimeoutError": 1},
    ),
)


def parse(text: str) -> Metrics:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def delta(before: Metrics, after: Metrics, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else [])
        for c in CASES
    ],
)
async def test_the_operator_sees_the_fault(rig: Rig, case: Case) -> None:
    upstream = case.model.split("-")[0]
    rig.push(upstream, case.faults)
    async with http_client() as client:
        before = parse((await client.get(rig.url + "/metrics")).text)
        seen = await post(client, rig.url + case.dialect.path, case.dialect.request(case.model, case.stream))
        check(seen, case.expect, case.dialect, case.stream, rig.secrets)
        record = await rig.record(client, seen.request_id)
        after = parse((await client.get(rig.url + "/metrics")).text)
    check_record(record, case.expect, rig.deployment(upstream), rig.healthy_deployment)
    status = "200" if isinstance(case.expect, Answered) else str(case.expect.status)
    endpoint = ENDPOINTS[case.dialect.name]
    assert delta(before, after, "modelway_requests_total", model=case.model, endpoint=endpoint, status=status) == 1
    assert failures(before, after, rig.deployment(upstream)) == case.failures
    assert failures(before, after, rig.healthy_deployment) == {}


def failures(before: Metrics, after: Metrics, deployment: str) -> dict[str, int]:
    """``modelway_deployment_failures_total`` increments of ``deployment``, by error."""
    out = {}
    for name, labels in after:
        got = dict(labels)
        if name == "modelway_deployment_failures_total" and got["deployment"] == deployment:
            n = int(delta(before, after, name, **got))
            if n:
                out[got["error"]] = n
    return out
