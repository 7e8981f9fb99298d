"""``python -m bench.metrics_render``: what counting a request and rendering ``/metrics`` cost, with the gateway's
hand-written exposition and with the same values rendered by a ``prometheus_client`` custom collector.

Counting is plain dicts either way (:meth:`Metrics.observe`); the question is only which renderer is cheaper for a
scrape. Prints microseconds per call for a gateway of 20 models (3 endpoints, 4 statuses each).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from modelway.server import metrics as mod
from modelway.server.metrics import Metrics


def _filled() -> Metrics:
    m = Metrics()
    for i in range(20):
        for endpoint in ("chat", "messages", "embeddings"):
            for status in (200, 400, 429, 502):
                m.observe(f"model-{i}", endpoint, status, 0.01 * i, ttft=0.02, prompt_tokens=10, completion_tokens=5,
                          cost=0.001, attempts=2, fallback=None)  # fmt: skip
        m.count_failure(f"provider/model-{i}", "RateLimitError")
        m.observe_queue_wait(f"model-{i}", 0.01)
    m.gauges = lambda: {
        "modelway_deployment_circuit_state": {(f"model-{i}", f"provider/model-{i}"): 0.0 for i in range(20)},
        "modelway_queue_length": {(f"model-{i}",): 0.0 for i in range(20)},
    }
    return m


class Collected:
    """The same values as a prometheus_client collector (what ``/metrics`` would render with generate_latest)."""

    def __init__(self, m: Metrics) -> None:
        self.m = m

    def collect(self) -> Iterator[Metric]:
        values, in_flight, gauges, processes = self.m._merged()
        for name, (kind, help_text, labels) in mod._FAMILIES.items():
            if kind == "gauge":
                g = GaugeMetricFamily(name, help_text)
                g.add_metric([], in_flight)
                yield g
            elif kind == "counter":
                c = CounterMetricFamily(name, help_text, labels=labels)
                for key, val in sorted(values.get(name, {}).items()):
                    c.add_metric(list(key), val)
                yield c
            else:
                buckets = mod._BUCKETS[name]
                h = HistogramMetricFamily(name, help_text, labels=labels)
                for key, counts in sorted(values.get(name, {}).items()):
                    running, out = 0, []
                    for bound, n in zip(buckets, counts, strict=False):
                        running += n
                        out.append((repr(bound), running))
                    out.append(("+Inf", running + counts[len(buckets)]))
                    h.add_metric(list(key), out, counts[-1])
                yield h
        for name, (help_text, labels, _) in mod._GAUGES.items():
            g = GaugeMetricFamily(name, help_text, labels=labels)
            for key, val in sorted(gauges.get(name, {}).items()):
                g.add_metric(list(key), val)
            yield g
        for name, (kind, help_text, labels) in mod._PROCESS.items():
            fam: Any = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, help_text, labels=labels)
            for proc in processes.values():
                for key, val in proc.get(name, {}).items():
                    fam.add_metric(list(key), val)
            yield fam


def _per_call(fn: Callable[[], object], n: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    m = _filled()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collected(m))  # type: ignore[arg-type]
    ours, theirs = m.render()[0], generate_latest(registry)
    print(f"exposition: hand-written {len(ours)} bytes, prometheus_client {len(theirs)} bytes")
    print(f"render, hand-written:                {_per_call(m.render, 300):8.1f} µs")
    print(f"render, prometheus_client collector: {_per_call(lambda: generate_latest(registry), 300):8.1f} µs")

    def count() -> None:
        m.observe("model-1", "chat", 200, 0.1, ttft=0.02, prompt_tokens=10, completion_tokens=5, cost=0.001,
                  attempts=1)  # fmt: skip

    print(f"count one request, plain dicts:      {_per_call(count, 100_000):8.2f} µs")
    reg = CollectorRegistry()
    c = Counter("req", "r", ["model", "endpoint", "status"], registry=reg)
    print(
        f"one prometheus_client Counter.inc:   {_per_call(lambda: c.labels('m', 'chat', '200').inc(), 100_000):8.2f} µs"
    )


if __name__ == "__main__":
    main()
