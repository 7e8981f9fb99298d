"""What shared router state costs per request: the router alone (a fake upstream that answers at once), in one
process, with the state in process and in Redis. ``python -m bench.router_shared [--redis URL] [-n N]``.

Rows: ``plain`` (weighted, no circuit, no quota: nothing to check, the in-flight count is reported without waiting),
``checked`` (circuit breaker and a quota: admission waits for one Redis round trip). For each, the state in process
(``off``) and in Redis (``on``): per-request latency, one request at a time (mean, p50, p99) and the throughput of
64 concurrent callers. The numbers are reported, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from uuid import uuid4

from modelway.providers import PROVIDERS
from modelway.providers.base import ProviderSettings
from modelway.retry import RetryPolicy
from modelway.router import CircuitSettings, Deployment, ModelGroup, Quota, Router, RoutingPolicy
from modelway.router.shared_redis import RedisRouterState
from modelway.transport import Transport

REDIS_URL = os.environ.get("MODELWAY_BENCH_REDIS", "redis://127.0.0.1:6379/15")


def _router(checked: bool, shared: RedisRouterState | None) -> Router:
    deps = [
        Deployment(
            PROVIDERS["openai"](ProviderSettings(api_key=f"k{i}", base_url="http://127.0.0.1:9/v1")),
            "m",
            quota=Quota(max_concurrent=1000, rpm=10_000_000, tpm=10**12) if checked else None,
        )
        for i in range(3)
    ]
    policy = RoutingPolicy(circuit=CircuitSettings() if checked else None)
    return Router(
        {"m": ModelGroup("m", deps, policy=policy)},
        transport=Transport(),
        retry=RetryPolicy(0),
        timeout=10,
        shared=shared,
    )


async def _answer(dep: Deployment, timeout: float | None) -> str:
    return dep.model


async def _one(router: Router) -> None:
    value, att = await router.route("m", None, lambda g: _answer, tokens=lambda: 100)
    att.finish(120)


async def _measure(router: Router, n: int) -> tuple[float, float, float, float]:
    for _ in range(200):  # warm up (connection, scripts loaded)
        await _one(router)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await _one(router)
        times.append(time.perf_counter() - t0)
    await asyncio.sleep(0.05)  # let the reports sent without waiting drain
    times.sort()
    t0 = time.perf_counter()
    for _ in range(max(1, n // 64)):
        await asyncio.gather(*(_one(router) for _ in range(64)))
    rate = max(1, n // 64) * 64 / (time.perf_counter() - t0)
    return statistics.fmean(times) * 1e6, times[len(times) // 2] * 1e6, times[int(len(times) * 0.99)] * 1e6, rate


async def run(url: str, n: int) -> None:
    print(f"{'row':8} {'state':6} {'mean µs':>9} {'p50 µs':>9} {'p99 µs':>9} {'req/s @64':>10}")
    for checked in (False, True):
        for on in (False, True):
            shared = RedisRouterState(url, prefix=f"mwbench:{uuid4().hex}:") if on else None
            router = _router(checked, shared)
            try:
                mean, p50, p99, rate = await _measure(router, n)
            finally:
                await router.aclose()
                await router.transport.aclose()
            row = "checked" if checked else "plain"
            print(f"{row:8} {'redis' if on else 'local':6} {mean:9.1f} {p50:9.1f} {p99:9.1f} {rate:10.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", default=REDIS_URL)
    parser.add_argument("-n", type=int, default=5000)
    args = parser.parse_args()
    asyncio.run(run(args.redis, args.n))


if __name__ == "__main__":
    main()
