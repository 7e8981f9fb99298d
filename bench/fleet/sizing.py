"""Sizing from a steady load: what one request costs the replicas in CPU, so what a worker on one core can serve.

The load is kept modest (the machine is shared): instead of saturating the fleet, it runs at a fixed rate through
nginx and the CPU time of every replica's processes (supervisor and workers, from /proc) is read before and after,
less what the replicas use idle (key refresh, deployment poll, ledger, metrics: :func:`idle_cpu`). CPU milliseconds
per request give what one worker on one core can serve: 1000 / ms. That is a floor: the cost of a request falls as
the load rises (the event loop does more per wake-up; at 50 requests/s it was twice what it is at 450), so the
ceiling at saturation is higher (BENCHMARKS.md measures one process at saturation). Non-stream requests and
streams (:data:`bench.fleet.upstream.CHUNKS` content events each) are measured apart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..procs import cpu_seconds
from .client import Answer, Client
from .rig import Fleet

__all__ = ["Steady", "idle_cpu", "steady_phase"]


def _replica_cpu(fleet: Fleet) -> float:
    return sum(cpu_seconds(r.child.pid) for r in fleet.replicas if r.child is not None)


def idle_cpu(fleet: Fleet, seconds: float = 5.0) -> float:
    """CPU seconds per second the replicas use with no request."""
    before = _replica_cpu(fleet)
    t0 = time.monotonic()
    time.sleep(seconds)
    return (_replica_cpu(fleet) - before) / (time.monotonic() - t0)


@dataclass
class Steady:
    label: str
    seconds: float
    answers: list[Answer]
    #: CPU seconds of each replica's processes during the phase; of nginx and of the upstreams
    cpu: dict[str, float] = field(default_factory=dict)
    nginx_cpu: float = 0.0
    upstream_cpu: float = 0.0
    #: CPU seconds per second all replicas use idle (subtracted)
    idle: float = 0.0

    @property
    def ok(self) -> int:
        return sum(a.ok for a in self.answers)

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms(self) -> float:
        """Gateway CPU milliseconds per request (all replicas' processes over all requests, less their idle use)."""
        busy = sum(self.cpu.values()) - self.idle * self.seconds
        return 1000.0 * busy / self.ok if self.ok else 0.0

    @property
    def cores(self) -> float:
        """Cores the replicas used on average (idle use included)."""
        return sum(self.cpu.values()) / self.seconds if self.seconds else 0.0

    @property
    def per_core(self) -> float:
        """Requests per second one worker could serve on one core of this machine."""
        return 1000.0 / self.cpu_ms if self.cpu_ms else 0.0

    def problems(self) -> list[str]:
        failed = [a for a in self.answers if not a.ok]
        if not failed:
            return []
        return [f"{self.label}: {len(failed)} requests failed: {[(a.rid, a.status, a.error) for a in failed[:3]]}"]


def steady_phase(
    fleet: Fleet,
    client: Client,
    keys: dict[str, str],
    *,
    label: str,
    stream_share: float,
    seconds: float,
    rps: float,
    concurrency: int,
    idle: float = 0.0,
) -> Steady:
    """``seconds`` of load at ``rps`` (``stream_share`` of them streams); the CPU it took (``idle``: the replicas'
    CPU seconds per second without load, from :func:`idle_cpu`)."""

    def sample() -> tuple[dict[str, float], float, float]:
        replicas = {r.name: cpu_seconds(r.child.pid) for r in fleet.replicas if r.child is not None}
        nginx = cpu_seconds(fleet.nginx.pid) if fleet.nginx is not None else 0.0
        upstreams = sum(cpu_seconds(c.pid) for c in fleet.procs.children if c.name.startswith("upstream-"))
        return replicas, nginx, upstreams

    bg = client.background(f"steady-{label}", keys, concurrency=concurrency, rps=rps, stream_share=stream_share)
    time.sleep(1.0)  # warm: connections made, the pace reached
    before, n0, u0 = sample()
    t0 = time.monotonic()
    first = len(bg.answers)
    time.sleep(seconds)
    after, n1, u1 = sample()
    took = time.monotonic() - t0
    last = len(bg.answers)
    answers = bg.stop()
    result = Steady(label, took, answers[first:last], idle=idle)
    result.cpu = {name: after[name] - before[name] for name in after}
    result.nginx_cpu, result.upstream_cpu = n1 - n0, u1 - u0
    return result
