"""The soak's options (:class:`SoakOptions`), its pass marks (:data:`TOLERANCES`) and its result
(:class:`SoakResult`, with its :class:`Check` list)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .probe import Sample

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

#: the pass marks of the verdict, and why these
TOLERANCES: dict[str, float] = {
    # RSS at the end (idle) minus RSS after warm-up (idle): 20 MB is 400 bytes a request over 50,000 requests, and
    # CPython's allocator keeps arenas, so some growth that is not a leak shows up; a leak of a request's objects
    # (a few KB) would be hundreds of MB
    "rss_growth_mb": 20.0,
    # descriptors at the end minus after warm-up, both idle, not counting pooled connections: idle upstream
    # keep-alive connections (how many depends on how many requests happened to overlap per upstream, not on how
    # many were made; separate checks: none left to an upstream whose answers cannot be reused, and a long run waits
    # for the idle ones to close) and the store's connections (separate check: at most its pool's size). What is
    # left (files, the journal, pipes, epoll, the listening socket) must come back exactly; 2 is slack for a file
    # being swapped at the moment of the sample (the journal rotates)
    "fd_growth": 2,
    # the worker's asyncio tasks when idle, at the end minus after warm-up: 2 allows for periodic tasks (the usage
    # ledger's flush, key refresh, metrics) that happen to be running at the sample
    "task_growth": 2,
}


@dataclass
class Check:
    name: str
    tolerance: str
    measured: str
    ok: bool


@dataclass
class SoakResult:
    command: str
    started: str
    machine: dict[str, str]
    db: str
    requests: int
    concurrency: int
    warmup: int
    seed: int
    wall_s: float = 0.0
    load_s: float = 0.0
    requests_per_s: float = 0.0
    #: CPU seconds over the warm-up and the load: the server's, and this process's (client and simulators)
    server_cpu_s: float = 0.0
    harness_cpu_s: float = 0.0
    ended_correctly: int = 0
    hung: int = 0
    wrong: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: int = 0
    records_lost: int = 0
    #: cancelled before the request was written (no record due), and how many of those have one all the same
    cancelled_unsent: int = 0
    cancelled_unsent_recorded: int = 0
    records_duplicated: int = 0
    records_unknown: int = 0
    records_wrong_status: int = 0
    records_wrong_deployment: int = 0
    record_statuses: dict[str, int] = field(default_factory=dict)
    rss_start_mb: float = 0.0
    rss_warm_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_slope_bytes_per_request: float | None = None
    fds_start: int = 0
    fds_warm: int = 0  # all descriptors, idle after warm-up
    fds_warm_rest: int = 0  # ... but pooled connections (upstream keep-alive, the store's)
    store_connections_warm: int = 0
    fds_peak: int = 0
    fds_end: int = 0
    fds_end_rest: int = 0
    store_connections_end: int = 0
    fds_end_upstream: dict[str, int] = field(default_factory=dict)
    fds_end_downstream: int = 0
    #: descriptors other than connections, by kind, idle after warm-up and at the end
    fds_warm_kinds: dict[str, int] = field(default_factory=dict)
    fds_end_kinds: dict[str, int] = field(default_factory=dict)
    fds_drained: int | None = None  # all descriptors once the idle upstream connections closed (``drain``)
    fds_drained_upstream: int | None = None
    drain_s: float | None = None
    tasks_start: int | None = None
    tasks_idle_before: int | None = None
    tasks_peak: int | None = None
    tasks_idle_after: int | None = None
    quiet_s: float = 0.0
    exit_code: int | None = None
    server_log_errors: int = 0
    server_log_tracebacks: int = 0
    server_log_excerpt: list[str] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)


@dataclass
class SoakOptions:
    requests: int = 50_000
    concurrency: int = 32
    db: Literal["sqlite", "postgres"] = "sqlite"
    pg_url: str = field(default_factory=lambda: os.environ.get("MODELWAY_BENCH_PG", DEFAULT_PG_URL))
    seed: int = 20261122
    #: warm-up requests (part of ``requests``); default 10%, at least 100, at most 5,000
    warmup: int | None = None
    #: seconds to wait, after the end sample, for the gateway's idle upstream connections to close (0: do not)
    drain: float = 45.0
    sample_interval: float = 1.0
    #: seconds to wait for quiet (usage flushed, tasks and descriptors back) after each phase
    quiet_timeout: float = 30.0
    keep: bool = False
    command: str = "python -m bench.soak"
    say: Callable[[str], None] = print
