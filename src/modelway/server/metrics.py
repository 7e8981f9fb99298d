"""Prometheus metrics of the gateway, served on ``/metrics`` in the Prometheus text format.

Counting is plain dict and list arithmetic on the request path (a few hundred nanoseconds per request; the
``prometheus_client`` objects it replaced cost about 9 µs: a lock and wrapper calls per value, eight values per
request). Each app has its own :class:`Metrics`, so two apps in one process count apart.

With ``modelway serve --workers N`` the CLI gives every worker a shared directory (``MODELWAY_METRICS_DIR``): each
worker writes a snapshot of its values there every half second and when it stops, and any worker's ``/metrics``
answers the sum of all the snapshots, its own written first (so the others' are at most half a second behind, and
a sum never goes down between two scrapes). Counters and histograms of a worker that has exited still count; its
requests in flight do not.

Label values are bounded: ``model`` is a configured model, a priced one or a provider's known model (else
``provider/(other)`` or ``(unknown)``), never an arbitrary name a caller sent; ``endpoint`` is one of
:data:`~modelway.usage.records.ENDPOINTS` (a request to no route is ``other``, never its path); keys are not labels
(the usage ledger has them).

Gauges read at scrape time (each deployment's circuit, requests waiting in a model's quota queue, the process's CPU,
memory, descriptors and garbage collections) come from :attr:`Metrics.gauges` and this process; with workers each
snapshot carries its worker's, and the answer gives the circuits' worst state over the live workers, the queues'
sum, and the process series of every live worker with a ``pid`` label.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import gc
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

try:
    import resource
except ImportError:  # (not on Windows: no CPU time, memory or descriptor series there)
    resource = None  # type: ignore[assignment]

__all__ = ["CONTENT_TYPE", "UNKNOWN_MODEL", "Metrics"]

log = logging.getLogger("modelway.server")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNKNOWN_MODEL = "(unknown)"
SNAPSHOT_INTERVAL = 0.5

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: ``modelway_deployment_circuit_state``'s values
CIRCUIT_STATES = {"closed": 0, "half_open": 1, "open": 2}

# name, type, help, label names (for counters the sample name gets ``_total``)
_FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "modelway_requests": (
        "counter",
        "Requests answered, by model, endpoint and HTTP status (499: the caller went away).",
        ("model", "endpoint", "status"),
    ),
    "modelway_request_duration_seconds": (
        "histogram",
        "Time from the request to the end of its answer (the whole stream, for streams).",
        ("model", "endpoint"),
    ),
    "modelway_time_to_first_token_seconds": (
        "histogram",
        "Streams: time from the request to the upstream's first output (sent on to the caller at once).",
        ("model",),
    ),
    "modelway_tokens": ("counter", "Tokens used, by model and kind (prompt, completion).", ("model", "kind")),
    "modelway_cost": ("counter", "Cost in the gateway's currency, by model.", ("model",)),
    "modelway_limit_rejections": (
        "counter",
        "Requests refused by a virtual key's limit (rpm, tpm, max_parallel, budget).",
        ("limit",),
    ),
    "modelway_deployment_failures": (
        "counter",
        "Failed attempts at a deployment (each one fails over or ends the request), by error type.",
        ("deployment", "error"),
    ),
    "modelway_retries": (
        "counter",
        "Upstream requests beyond a request's first one (retries in place, failovers, hedges), by model.",
        ("model",),
    ),
    "modelway_fallbacks": (
        "counter",
        "Requests the router served from a fallback model, by the model asked for and the fallback.",
        ("model", "fallback"),
    ),
    "modelway_queue_wait_seconds": (
        "histogram",
        "Time a request waited in its model's queue while every deployment was at its quota (admitted or refused).",
        ("model",),
    ),
    "modelway_requests_in_flight": ("gauge", "Requests being answered now.", ()),
}
_BUCKETS = {
    "modelway_request_duration_seconds": _LATENCY_BUCKETS,
    "modelway_time_to_first_token_seconds": _TTFT_BUCKETS,
    "modelway_queue_wait_seconds": _QUEUE_BUCKETS,
}

# gauges read at scrape time: name → (help, label names, how workers' values combine: "max" or "sum")
_GAUGES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "modelway_deployment_circuit_state": (
        "Each deployment's circuit breaker: 0 closed, 1 half-open (a probe runs), 2 open (worst over workers).",
        ("model", "deployment"),
        "max",
    ),
    "modelway_deployment_in_flight": ("Upstream requests in flight, by deployment.", ("model", "deployment"), "sum"),
    "modelway_queue_length": (
        "Requests waiting in the model's queue for a deployment under its quota.",
        ("model",),
        "sum",
    ),
}

# the process's own series (per live worker, with a ``pid`` label, when workers share a directory)
_PROCESS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "process_cpu_seconds_total": ("counter", "User and system CPU time spent, in seconds.", ()),
    "process_resident_memory_bytes": ("gauge", "Resident memory size in bytes.", ()),
    "process_virtual_memory_bytes": ("gauge", "Virtual memory size in bytes.", ()),
    "process_open_fds": ("gauge", "Open file descriptors.", ()),
    "process_max_fds": ("gauge", "The open-files limit (soft).", ()),
    "process_start_time_seconds": ("gauge", "When the process started, in seconds since the epoch.", ()),
    "python_gc_collections_total": ("counter", "Garbage collections, by generation.", ("generation",)),
    "python_gc_objects_collected_total": ("counter", "Objects collected by the GC, by generation.", ("generation",)),
    "python_gc_objects_uncollectable_total": (
        "counter",
        "Uncollectable objects found by the GC, by generation.",
        ("generation",),
    ),
}

#: what :attr:`Metrics.gauges` returns: gauge name → {label values: value}
Gauges = dict[str, dict[tuple[str, ...], float]]

# values: for counters {labels: number}; for histograms {labels: [count per bucket..., count above, sum]}
Values = dict[str, dict[tuple[str, ...], Any]]
#: what :meth:`Metrics.observe` keeps per (model, endpoint, status): the requests counter's key, the duration
#: histogram's counts, and the keys of the model's series (its own, prompt tokens, completion tokens)
_Series = tuple[tuple[str, str, str], list[Any], tuple[str], tuple[str, str], tuple[str, str]]


class Metrics:
    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        path = directory if directory is not None else os.environ.get("MODELWAY_METRICS_DIR")
        #: where the workers of one server share their snapshots (``None``: this process alone)
        self.directory = Path(path) if path else None
        self.in_flight = 0
        self._values: Values = {name: {} for name in _FAMILIES if name != "modelway_requests_in_flight"}
        self._requests: dict[tuple[str, ...], int] = self._values["modelway_requests"]
        self._tokens: dict[tuple[str, ...], int] = self._values["modelway_tokens"]
        #: (model, endpoint, status) → its keys and its duration histogram (bounded as the labels are)
        self._series: dict[tuple[str, str, int], _Series] = {}
        #: the scrape-time gauges of this worker (the gateway sets it: circuits, queues, upstream in flight)
        self.gauges: Callable[[], Gauges] | None = None
        self._started = _process_start()
        self._task: asyncio.Task[None] | None = None
        # this worker's snapshot file: the pid and a random part (a later process may get the same pid)
        self._file = f"{os.getpid()}-{secrets.token_hex(4)}.json"

    # -- counting (the request path) ----------------------------------------------------------------
    def observe(
        self,
        model: str,
        endpoint: str,
        status: int,
        seconds: float,
        ttft: float | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost: float = 0.0,
        attempts: int = 0,
        fallback: str | None = None,
    ) -> None:
        """One finished request (``attempts``: its upstream requests; ``fallback``: the model it fell back to, a
        label already)."""
        series = self._series.get((model, endpoint, status))
        if series is None:
            series = self._new_series(model, endpoint, status)
        requests_key, duration, model_key, prompt_key, completion_key = series
        self._requests[requests_key] += 1  # (made by _new_series)
        duration[_bisect(_LATENCY_BUCKETS, seconds)] += 1
        duration[-1] += seconds
        if ttft is not None:
            _hist(self._values["modelway_time_to_first_token_seconds"], model_key, _TTFT_BUCKETS, ttft)
        if prompt_tokens or completion_tokens:
            tokens = self._tokens
            tokens[prompt_key] = tokens.get(prompt_key, 0) + prompt_tokens
            tokens[completion_key] = tokens.get(completion_key, 0) + completion_tokens
        if cost:
            costs = self._values["modelway_cost"]
            costs[model_key] = costs.get(model_key, 0.0) + cost
        if attempts > 1:
            retries = self._values["modelway_retries"]
            retries[model_key] = retries.get(model_key, 0) + attempts - 1
        if fallback is not None:
            fallbacks = self._values["modelway_fallbacks"]
            fallbacks[(model, fallback)] = fallbacks.get((model, fallback), 0) + 1

    def _new_series(self, model: str, endpoint: str, status: int) -> _Series:
        """The keys of a (model, endpoint, status) seen for the first time, and its duration histogram (made here,
        so that :meth:`observe` adds to it without looking it up)."""
        durations = self._values["modelway_request_duration_seconds"]
        duration = durations.get((model, endpoint))
        if duration is None:
            duration = durations[(model, endpoint)] = [0] * (len(_LATENCY_BUCKETS) + 1) + [0.0]
        requests_key = (model, endpoint, str(status))
        self._requests.setdefault(requests_key, 0)
        series = (requests_key, duration, (model,), (model, "prompt"), (model, "completion"))
        self._series[(model, endpoint, status)] = series
        return series

    def observe_queue_wait(self, model: str, seconds: float) -> None:
        """A request left its model's quota queue after ``seconds`` (admitted, refused, or gone)."""
        _hist(self._values["modelway_queue_wait_seconds"], (model,), _QUEUE_BUCKETS, seconds)

    def count_limited(self, limit: str) -> None:
        counts = self._values["modelway_limit_rejections"]
        counts[(limit,)] = counts.get((limit,), 0) + 1

    def count_failure(self, deployment: str, error: str) -> None:
        counts = self._values["modelway_deployment_failures"]
        counts[(deployment, error)] = counts.get((deployment, error), 0) + 1

    # -- workers sharing a directory ----------------------------------------------------------------
    async def start(self) -> None:
        """With a shared directory: write this worker's snapshot there every half second."""
        if self.directory is not None:
            self._task = asyncio.get_running_loop().create_task(self._snapshots(), name="modelway-metrics")

    async def _snapshots(self) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_INTERVAL)
            try:
                self._write_snapshot()
            except OSError as exc:  # metrics must not take the gateway down; say why the sums are behind
                log.warning("could not write the metrics snapshot to %s: %s", self.directory, exc)

    def _snapshot(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "in_flight": self.in_flight,
            "values": _rows(self._values),
            "gauges": _rows(self._gauges()),
            "process": _rows(self._process()),
        }

    def _gauges(self) -> Gauges:
        if self.gauges is None:
            return {}
        try:
            return self.gauges()
        except Exception:  # a scrape must not fail for one gauge: the rest is still answered
            log.exception("could not read the gateway's gauges")
            return {}

    def _process(self) -> Gauges:
        """This process's CPU, memory, descriptors and collections (Linux's /proc where it helps)."""
        out: Gauges = {}
        if resource is None:
            return out
        ru = resource.getrusage(resource.RUSAGE_SELF)
        out["process_cpu_seconds_total"] = {(): ru.ru_utime + ru.ru_stime}
        rss, vms = _memory()
        if rss is not None:
            out["process_resident_memory_bytes"] = {(): float(rss)}
        if vms is not None:
            out["process_virtual_memory_bytes"] = {(): float(vms)}
        try:
            out["process_open_fds"] = {(): float(len(os.listdir("/proc/self/fd")))}
        except OSError:
            pass
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft != resource.RLIM_INFINITY:
            out["process_max_fds"] = {(): float(soft)}
        out["process_start_time_seconds"] = {(): self._started}
        stats = gc.get_stats()
        for name, field in (
            ("python_gc_collections_total", "collections"),
            ("python_gc_objects_collected_total", "collected"),
            ("python_gc_objects_uncollectable_total", "uncollectable"),
        ):
            out[name] = {(str(gen),): float(st[field]) for gen, st in enumerate(stats)}
        return out

    def _write_snapshot(self) -> None:
        assert self.directory is not None
        final = self.directory / self._file
        tmp = final.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(self._snapshot()))
        tmp.replace(final)  # atomic: a reader sees the old snapshot or the new one, never half of one

    async def close(self) -> None:
        """Stop the snapshots and write a last one (this worker's requests in flight no longer count)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.directory is not None:
            self.in_flight = 0
            try:
                self._write_snapshot()
            except OSError as exc:
                log.warning("could not write the last metrics snapshot to %s: %s", self.directory, exc)

    def _merged(self) -> tuple[Values, float, Gauges, dict[str, Gauges]]:
        """All workers' values, the requests in flight and the gauges of the live ones, and the process series of
        each live worker (by pid; ``""``: this process alone, no ``pid`` label).

        Counters are summed over the snapshot files only, this worker's written first: every file only grows, so
        the sum never goes down from one scrape to the next, whichever worker answers them (a decrease would read
        as a counter reset). Requests in flight count from this worker's live value and from snapshots fresh
        enough to be a live worker's (written within the last few intervals), so a crashed worker's, or one whose
        pid a new process reuses, stop counting.
        """
        if self.directory is None:
            return self._values, float(self.in_flight), self._gauges(), {"": self._process()}
        self._write_snapshot()
        merged: Values = {}
        in_flight = float(self.in_flight)
        gauges: Gauges = {}
        processes: dict[str, Gauges] = {}
        fresh_after = time.time() - 4 * SNAPSHOT_INTERVAL
        for path in self.directory.glob("*.json"):
            try:
                data = path.read_bytes()
                mtime = path.stat().st_mtime
                snap = orjson.loads(data)
            except (OSError, orjson.JSONDecodeError):
                continue  # gone, or not one of ours
            live = path.name == self._file or mtime >= fresh_after
            if path.name != self._file and live:
                in_flight += snap.get("in_flight", 0)
            if live:
                _combine(gauges, snap.get("gauges", {}))
                if "process" in snap:
                    processes[str(snap.get("pid", path.stem))] = {
                        name: {tuple(k): v for k, v in rows} for name, rows in snap["process"].items()
                    }
            for name, rows in snap.get("values", {}).items():
                series = merged.setdefault(name, {})
                for labels, val in rows:
                    key = tuple(labels)
                    if name in _BUCKETS:
                        mine = series.setdefault(key, [0] * len(val))
                        for i, x in enumerate(val):
                            mine[i] += x
                    else:
                        series[key] = series.get(key, 0) + val
        return merged, in_flight, gauges, processes

    # -- exposition ---------------------------------------------------------------------------------
    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        values, in_flight, gauges, processes = self._merged()
        out: list[str] = []
        for name, (kind, help_text, labels) in _FAMILIES.items():
            family = name + "_total" if kind == "counter" else name
            out.append(f"# HELP {family} {help_text}")
            out.append(f"# TYPE {family} {kind}")
            if kind == "gauge":
                out.append(f"{name} {in_flight!r}")
            elif kind == "counter":
                for key, val in sorted(values.get(name, {}).items()):
                    out.append(f"{name}_total{_labels(labels, key)} {float(val)!r}")
            else:
                buckets = _BUCKETS[name]
                for key, counts in sorted(values.get(name, {}).items()):
                    running = 0
                    for bound, n in zip(buckets, counts, strict=False):
                        running += n
                        out.append(f"{name}_bucket{_labels(labels, key, le=repr(bound))} {float(running)!r}")
                    total = running + counts[len(buckets)]
                    out.append(f"{name}_bucket{_labels(labels, key, le='+Inf')} {float(total)!r}")
                    out.append(f"{name}_count{_labels(labels, key)} {float(total)!r}")
                    out.append(f"{name}_sum{_labels(labels, key)} {float(counts[-1])!r}")
        for name, (help_text, labels, _) in _GAUGES.items():
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} gauge")
            for key, val in sorted(gauges.get(name, {}).items()):
                out.append(f"{name}{_labels(labels, key)} {float(val)!r}")
        for name, (kind, help_text, labels) in _PROCESS.items():
            rows = [
                (pid, key, val) for pid, proc in sorted(processes.items()) for key, val in proc.get(name, {}).items()
            ]
            if not rows:
                continue
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            for pid, key, val in rows:
                extra = {"pid": pid} if pid else {}
                out.append(f"{name}{_labels(labels, tuple(key), **extra)} {float(val)!r}")
        return ("\n".join(out) + "\n").encode(), CONTENT_TYPE


def _rows(values: dict[str, dict[tuple[str, ...], Any]]) -> dict[str, list[list[Any]]]:
    """Series as JSON can carry them: ``[[label values], value]`` per series."""
    return {name: [[list(k), val] for k, val in series.items()] for name, series in values.items()}


def _combine(into: Gauges, rows: dict[str, list[Any]]) -> None:
    """Add one worker's gauges: the worst circuit state, the sum of the rest."""
    for name, series in rows.items():
        spec = _GAUGES.get(name)
        if spec is None:
            continue
        mine = into.setdefault(name, {})
        for labels, val in series:
            key = tuple(labels)
            old = mine.get(key)
            mine[key] = val if old is None else (max(old, val) if spec[2] == "max" else old + val)


def _memory() -> tuple[int | None, int | None]:
    """Resident and virtual memory in bytes, from /proc/self/statm (else the peak RSS, where there is no /proc)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            parts = f.read().split()
        page = os.sysconf("SC_PAGE_SIZE")
        return int(parts[1]) * page, int(parts[0]) * page
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, None


def _process_start() -> float:
    """When this process started (Unix seconds): from /proc, else the time metrics were set up."""
    try:
        with open("/proc/self/stat", "rb") as f:
            ticks = int(f.read().rsplit(b")", 1)[1].split()[19])
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


_bisect = bisect.bisect_left


def _hist(series: dict[tuple[str, ...], Any], key: tuple[str, ...], buckets: tuple[float, ...], value: float) -> None:
    counts = series.get(key)
    if counts is None:
        counts = series[key] = [0] * (len(buckets) + 1) + [0.0]
    counts[_bisect(buckets, value)] += 1
    counts[-1] += value


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: tuple[str, ...], values: tuple[str, ...], **extra: str) -> str:
    pairs = sorted([*zip(names, values, strict=True), *extra.items()])
    if not pairs:
        return ""
    return "{" + ",".join(f'{n}="{_escape(v)}"' for n, v in pairs) + "}"
