"""Prometheus metrics of the gateway, served on ``/metrics``.

Each app has its own registry (no global state: two apps in one process count apart). With ``modelway serve
--workers N`` the CLI points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the workers start;
prometheus_client then keeps every worker's values in memory-mapped files there, and any worker's ``/metrics``
answers the sum over all of them.

Label values are bounded: ``model`` is a configured model (or a ``provider/model`` the router resolved), never an
arbitrary name a caller sent (those count as ``(unknown)``); keys are not labels (the usage ledger has them).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_TTFB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
UNKNOWN_MODEL = "(unknown)"


class Metrics:
    def __init__(self) -> None:
        import prometheus_client as pc

        self._pc = pc
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        # in multiprocess mode the values live in files; the registry only renders what the collector reads
        self.registry = pc.CollectorRegistry(auto_describe=True)
        reg = None if self.multiprocess_dir else self.registry
        self.requests = pc.Counter(
            "modelway_requests",
            "Requests answered, by model, endpoint and HTTP status (499: the caller went away).",
            ["model", "endpoint", "status"],
            registry=reg,
        )
        self.duration = pc.Histogram(
            "modelway_request_duration_seconds",
            "Time from the request to the end of its answer (the whole stream, for streams).",
            ["model", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.ttft = pc.Histogram(
            "modelway_time_to_first_token_seconds",
            "Streams: time from the request to the upstream's first output (sent on to the caller at once).",
            ["model"],
            buckets=_TTFB_BUCKETS,
            registry=reg,
        )
        self.tokens = pc.Counter(
            "modelway_tokens", "Tokens used, by model and kind (prompt, completion).", ["model", "kind"], registry=reg
        )
        self.cost = pc.Counter("modelway_cost", "Cost in the gateway's currency, by model.", ["model"], registry=reg)
        self.in_flight = pc.Gauge(
            "modelway_requests_in_flight",
            "Requests being answered now.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.limited = pc.Counter(
            "modelway_limit_rejections",
            "Requests refused by a virtual key's limit (rpm, tpm, max_parallel, budget).",
            ["limit"],
            registry=reg,
        )
        self.failovers = pc.Counter(
            "modelway_deployment_failures",
            "Failed attempts at a deployment (each one fails over or ends the request), by error type.",
            ["deployment", "error"],
            registry=reg,
        )
        # children per label tuple: labels() takes a lock and builds a key on every call
        self._req: dict[tuple[str, str, int], Any] = {}
        self._dur: dict[tuple[str, str], Any] = {}
        self._ttft: dict[str, Any] = {}
        self._tok: dict[str, tuple[Any, Any, Any]] = {}

    def observe(
        self,
        model: str,
        endpoint: str,
        status: int,
        seconds: float,
        *,
        ttft: float | None,
        prompt_tokens: int,
        completion_tokens: int,
        cost: float,
    ) -> None:
        """One finished request."""
        key = (model, endpoint, status)
        c = self._req.get(key)
        if c is None:
            c = self._req[key] = self.requests.labels(model, endpoint, str(status))
        c.inc()
        dk = (model, endpoint)
        h = self._dur.get(dk)
        if h is None:
            h = self._dur[dk] = self.duration.labels(model, endpoint)
        h.observe(seconds)
        if ttft is not None:
            t = self._ttft.get(model)
            if t is None:
                t = self._ttft[model] = self.ttft.labels(model)
            t.observe(ttft)
        if prompt_tokens or completion_tokens or cost:
            tok = self._tok.get(model)
            if tok is None:
                tok = self._tok[model] = (
                    self.tokens.labels(model, "prompt"),
                    self.tokens.labels(model, "completion"),
                    self.cost.labels(model),
                )
            tok[0].inc(prompt_tokens)
            tok[1].inc(completion_tokens)
            if cost:
                tok[2].inc(cost)

    def close(self) -> None:
        """In multiprocess mode, drop this worker's live gauges (its requests in flight) from the sum."""
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        pc = self._pc
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            registry = pc.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
            return pc.generate_latest(registry), pc.CONTENT_TYPE_LATEST
        return pc.generate_latest(self.registry), pc.CONTENT_TYPE_LATEST
