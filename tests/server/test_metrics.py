"""The metrics' exposition, checked with the official Prometheus parser, and the sums over workers' snapshots."""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson
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


async def test_workers_sum_through_their_snapshots(tmp_path: Path) -> None:
    """Another worker's snapshot adds to every value; a stale one (a worker that died) keeps its counters but not its
    requests in flight, whatever process has its pid now."""
    other = Metrics(tmp_path)
    other.observe("glm", "chat", 200, 0.01, ttft=None, prompt_tokens=4, completion_tokens=6, cost=1.0)
    other.in_flight = 2
    snap = other._snapshot()
    (tmp_path / "live.json").write_bytes(orjson.dumps(snap))
    snap["in_flight"] = 5
    snap["pid"] = os.getpid()  # a dead worker whose pid is reused, by this very process
    (tmp_path / "dead.json").write_bytes(orjson.dumps(snap))
    old = time.time() - 60
    os.utime(tmp_path / "dead.json", (old, old))
    (tmp_path / "torn.json").write_bytes(b'{"pid": 1, "val')  # not a snapshot (yet): skipped, not an error

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
    mine = tmp_path / me._file
    assert orjson.loads(mine.read_bytes())["in_flight"] == 0  # close() wrote a last snapshot


def test_a_counter_never_goes_down_whichever_worker_answers(tmp_path: Path) -> None:
    a, b = Metrics(tmp_path), Metrics(tmp_path)
    for _ in range(5):
        a.observe("glm", "chat", 200, 0.01, ttft=None, prompt_tokens=0, completion_tokens=0, cost=0.0)
    key = k("modelway_requests_total", endpoint="chat", model="glm", status="200")
    via_a = samples(a)[key]
    a.observe("glm", "chat", 200, 0.01, ttft=None, prompt_tokens=0, completion_tokens=0, cost=0.0)  # not written yet
    via_b = samples(b)[key]
    assert via_a == 5 and via_b >= via_a


def test_counter_families_are_typed_as_counters() -> None:
    m = Metrics()
    m.observe("glm", "chat", 200, 0.01, ttft=None, prompt_tokens=1, completion_tokens=1, cost=0.0)
    families = {f.name: (f.type, len(f.samples)) for f in text_string_to_metric_families(m.render()[0].decode())}
    assert families["modelway_requests"] == ("counter", 1)
    assert families["modelway_tokens"] == ("counter", 2)
    assert not any(t == "unknown" for t, _ in families.values())
