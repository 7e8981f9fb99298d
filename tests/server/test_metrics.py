"""The metrics' exposition, checked with the official Prometheus parser, and the sums over workers' snapshots."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelway.server.metrics import Metrics


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text, content_type = m.render()
    assert content_type.startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def k(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


@pytest.fixture
def dead() -> int:
    """The pid of a process that has exited."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_counters_histograms_and_the_gauge_parse_as_prometheus_text() -> None:
    m = Metrics()
    m.observe("glm", "chat", 200, 0.004, ttft=0.02, prompt_tokens=10, completion_tokens=5, cost=0.5)
    m.observe("glm", "chat", 200, 0.2, ttft=None, prompt_tokens=1, completion_tokens=2, cost=0.25)
    m.observe("glm", "chat", 502, 500.0, ttft=None, prompt_tokens=0, completion_tokens=0, cost=0.0)
    m.count_limited("rpm")
    m.count_failure('odd"name\\x', "RateLimitError")
    m.in_flight = 3
    got = samples(m)
    chat = {"endpoint": "chat", "model": "glm"}
    assert got[k("modelway_requests_total", **chat, status="200")] == 2
    assert got[k("modelway_requests_total", **chat, status="502")] == 1
    # cumulative buckets: 0.004 <= 0.005; 0.2 <= 0.25; 500 only in +Inf
    assert got[k("modelway_request_duration_seconds_bucket", **chat, le="0.005")] == 1
    assert got[k("modelway_request_duration_seconds_bucket", **chat, le="0.25")] == 2
    assert got[k("modelway_request_duration_seconds_bucket", **chat, le="300.0")] == 2
    assert got[k("modelway_request_duration_seconds_bucket", **chat, le="+Inf")] == 3
    assert got[k("modelway_request_duration_seconds_count", **chat)] == 3
    assert abs(got[k("modelway_request_duration_seconds_sum", **chat)] - 500.204) < 1e-9
    assert got[k("modelway_time_to_first_token_seconds_count", model="glm")] == 1
    assert got[k("modelway_tokens_total", kind="prompt", model="glm")] == 11
    assert got[k("modelway_cost_total", model="glm")] == 0.75
    assert got[k("modelway_limit_rejections_total", limit="rpm")] == 1
    assert got[k("modelway_deployment_failures_total", deployment='odd"name\\x', error="RateLimitError")] == 1
    assert got[k("modelway_requests_in_flight")] == 3


def test_a_value_on_a_bucket_bound_counts_in_that_bucket() -> None:
    m = Metrics()
    m.observe("m", "chat", 200, 0.5, ttft=None, prompt_tokens=0, completion_tokens=0, cost=0.0)
    got = samples(m)
    assert got[k("modelway_request_duration_seconds_bucket", endpoint="chat", model="m", le="0.25")] == 0
    assert got[k("modelway_request_duration_seconds_bucket", endpoint="chat", model="m", le="0.5")] == 1


async def test_workers_sum_through_their_snapshots(tmp_path: Path, dead: int) -> None:
    """Another live worker's snapshot adds to every value; a dead worker's counters stay, its in-flight does not."""
    other = Metrics(tmp_path)
    other.observe("glm", "chat", 200, 0.01, ttft=None, prompt_tokens=4, completion_tokens=6, cost=1.0)
    other.in_flight = 2
    snap = other._snapshot()
    snap["pid"] = os.getppid()  # a process that is alive
    (tmp_path / "live.json").write_bytes(orjson.dumps(snap))
    snap["pid"] = dead  # a process that has exited
    snap["in_flight"] = 5
    (tmp_path / "dead.json").write_bytes(orjson.dumps(snap))
    (tmp_path / "torn.json").write_bytes(b'{"pid": 1, "val')  # being replaced: skipped, not an error

    me = Metrics(tmp_path)
    await me.start()
    try:
        me.observe("glm", "chat", 200, 0.01, ttft=None, prompt_tokens=1, completion_tokens=1, cost=0.5)
        me.in_flight = 1
        got = samples(me)
    finally:
        await me.close()
    assert got[k("modelway_requests_total", endpoint="chat", model="glm", status="200")] == 3
    assert got[k("modelway_request_duration_seconds_count", endpoint="chat", model="glm")] == 3
    assert got[k("modelway_cost_total", model="glm")] == 2.5
    assert got[k("modelway_requests_in_flight")] == 3  # 1 here + 2 in the live worker; not the dead one's 5
    mine = orjson.loads((tmp_path / f"{os.getpid()}.json").read_bytes())
    assert mine["in_flight"] == 0  # close() wrote a last snapshot: nothing of this worker is in flight
