"""What the router observed of one deployment: requests in flight, latency averages, recent errors.

The router updates these for every attempt whatever the model's strategy; strategies read them
(:mod:`modelway.router.strategies`), and :meth:`Router.snapshot <modelway.router.Router.snapshot>` shows them.
With shared router state (:mod:`modelway.router.shared`), ``in_flight`` adds the requests other processes have in
flight (``others``: as of the last sync with the shared state, at most ``sync_interval`` old, and including those of
a process that was killed until their lease expires) and the moving averages are merged with theirs now and then
(:meth:`DeploymentStats.merge`); the snapshot shows this process's own as ``in_flight_here``.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

__all__ = ["DeploymentStats"]

#: weight of the newest sample in the moving averages
ALPHA = 0.3
#: samples kept for percentiles (hedging's "p95"), of each kind: streams' first output, whole answers
SAMPLES = 200
#: errors counted as recent
RECENT = 60.0


class DeploymentStats:
    __slots__ = (
        "dirty",
        "errors",
        "failures",
        "local_in_flight",
        "others",
        "requests",
        "total",
        "total_samples",
        "ttft",
        "ttft_samples",
    )

    def __init__(self) -> None:
        #: requests in flight in this process, and in the other processes sharing the router state
        self.local_in_flight = 0
        self.others = 0
        #: a new latency sample since the last merge with the shared state
        self.dirty = False
        #: exponentially weighted moving averages, seconds: streams' time to first output, whole answers' time
        self.ttft: float | None = None
        self.total: float | None = None
        #: recent samples of each, for percentiles
        self.ttft_samples: deque[float] = deque(maxlen=SAMPLES)
        self.total_samples: deque[float] = deque(maxlen=SAMPLES)
        self.requests = 0
        self.failures = 0
        #: monotonic times of recent failures
        self.errors: deque[float] = deque(maxlen=1000)

    @property
    def in_flight(self) -> int:
        return self.local_in_flight + self.others

    def started(self) -> None:
        self.local_in_flight += 1
        self.requests += 1

    def ended(self) -> None:
        self.local_in_flight -= 1

    def observe_ttft(self, seconds: float) -> None:
        self.ttft = seconds if self.ttft is None else self.ttft + ALPHA * (seconds - self.ttft)
        self.ttft_samples.append(seconds)
        self.dirty = True

    def observe_total(self, seconds: float) -> None:
        self.total = seconds if self.total is None else self.total + ALPHA * (seconds - self.total)
        self.total_samples.append(seconds)
        self.dirty = True

    def observe(self, seconds: float, *, stream: bool) -> None:
        """A stream's time to first output, or a whole answer's time."""
        if stream:
            self.observe_ttft(seconds)
        else:
            self.observe_total(seconds)

    def merge(self, ttft: float | None, total: float | None) -> None:
        """Take the shared averages (the mean over the processes that measured the deployment lately); the next
        local samples move on from them."""
        if ttft is not None:
            self.ttft = ttft
        if total is not None:
            self.total = total

    def failed(self, now: float) -> None:
        self.failures += 1
        self.errors.append(now)

    def recent_errors(self, now: float) -> int:
        errors = self.errors
        while errors and errors[0] < now - RECENT:
            errors.popleft()
        return len(errors)

    def percentile(self, q: float, min_samples: int, *, stream: bool = True) -> float | None:
        """The ``q`` quantile (0-1) of the recent times to first output (``stream``) or of whole answers, with at
        least ``min_samples`` of them."""
        kept = self.ttft_samples if stream else self.total_samples
        if len(kept) < max(1, min_samples):
            return None
        samples = sorted(kept)
        return samples[min(len(samples) - 1, math.ceil(q * len(samples)) - 1)]

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "in_flight": self.in_flight,
            "in_flight_here": self.local_in_flight,
            "ewma_ttft": self.ttft,
            "ewma_total": self.total,
            "requests": self.requests,
            "failures": self.failures,
            "recent_errors": self.recent_errors(now),
        }
