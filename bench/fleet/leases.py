"""Where a fleet's shared in-flight counts go once the load stops: ``python -m bench.fleet.leases``.

A fleet of ``modelway serve --workers 2`` replicas (:mod:`.rig`, on deploy/modelway-fleet.yaml: least busy routing,
circuits, requests in flight counted across processes through Redis) on a throwaway Redis of its own, two upstreams
answering after ``--latency`` seconds (streams: 5 chunks ``--chunk-delay`` apart). Each step runs mixed load sent
to the replicas directly, then stops it and polls, with no load, every replica's ``GET /admin/deployments`` (each
of its workers) and the leases Redis holds, for ``--poll`` seconds (by default the lease, 30 s, and 5 more):

- ``cuts``: whole answers and streams, streams the client hangs up on after their first bytes, requests the client
  gives up on before the answer, and a key with ``max_parallel: 2`` sent more than that (429s);
- ``sigterm``: the same load; replica r0 is stopped by SIGTERM in the middle of it (requests in flight drain, or
  are ended at ``--shutdown-timeout``), then started again;
- ``sigkill``: the same load; replica r1's process group is SIGKILLed in the middle of it, then started again.

It prints, for each step, the views and leases at the first poll, when the last lease left Redis and when the last
view showed a count. A lease that outlives its step's poll is a leak; one of a SIGKILLed process lasts until its
lease expires (:mod:`modelway.router.shared_redis`), one of a process that stopped gracefully not at all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
import redis

from .cli import DEFAULT_PG_URL
from .client import admin
from .rig import MASTER, MODEL, Fleet, FleetOptions

__all__ = ["main"]

LEASE = 30.0
KINDS = ("plain", "stream", "cut-stream", "cut-wait", "limited")


class _Fleet(Fleet):
    """The fleet with this tool's shutdown timeout, and hedged requests when asked."""

    shutdown_timeout = 5.0
    hedge: float | None = None

    def _gateway_config(self) -> dict[str, Any]:
        config = super()._gateway_config()
        config["server"]["shutdown_timeout"] = self.shutdown_timeout
        if self.hedge is not None:
            config["routing"]["hedge"] = {"after": self.hedge}
        return config


@dataclass
class Load:
    """``concurrency`` clients on a thread of their own, each sending one request of a random kind after another
    to one of ``targets`` (replica URLs, changed as replicas go) until :meth:`finish`."""

    targets: list[str]
    keys: dict[str, str]
    concurrency: int
    seed: int
    outcomes: dict[str, int] = field(default_factory=dict)
    _stop: bool = False

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="leases-load", daemon=True)
        self._thread.start()
        self._done = asyncio.run_coroutine_threadsafe(self._run(), self._loop)

    async def _run(self) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True)) as session:
            await asyncio.gather(*(self._client(session) for _ in range(self.concurrency)))

    async def _client(self, session: aiohttp.ClientSession) -> None:
        while not self._stop:
            if not self.targets:
                await asyncio.sleep(0.05)
                continue
            kind = self._rng.choice(KINDS)
            outcome = kind + ":" + await self._one(session, self._rng.choice(self.targets), kind)
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    async def _one(self, session: aiohttp.ClientSession, url: str, kind: str) -> str:
        stream = kind in ("stream", "cut-stream", "limited")
        body = {"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {self.keys['limited' if kind == 'limited' else 'load']}"}
        total = self._rng.uniform(0.05, 0.35) if kind == "cut-wait" else 60.0
        try:
            async with session.post(url + "/v1/chat/completions", json=body, headers=headers,
                                    timeout=aiohttp.ClientTimeout(total=total)) as r:  # fmt: skip
                if kind == "cut-stream" and r.status == 200:
                    await r.content.readany()  # the first bytes, then hang up
                    r.close()
                    return f"{r.status}:cut"
                await r.read()
                return str(r.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return type(exc).__name__

    def finish(self) -> dict[str, int]:
        """Stop sending; wait for the requests in flight; what each kind got."""
        self._stop = True
        self._done.result(90)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        return dict(sorted(self.outcomes.items()))


def views(fleet: Fleet) -> dict[str, dict[str, int]]:
    """``{"r0/<worker>": {"a": in_flight, "b": in_flight}}`` for each worker that answered (three tries a replica,
    each on a new connection, which either worker may take)."""
    out: dict[str, dict[str, int]] = {}
    for r in fleet.replicas:
        if not r.alive():
            continue
        for _ in range(3):
            headers = {"Authorization": f"Bearer {MASTER}", "Connection": "close"}
            request = urllib.request.Request(r.url + "/admin/deployments", headers=headers)
            with urllib.request.urlopen(request, timeout=5) as answer:
                listing = json.loads(answer.read())
                worker = answer.headers["x-request-id"][:12]
            out[f"{r.name}/{worker}"] = {_upstream(fleet, d["deployment"]): d["in_flight"] for d in listing["data"]}
    return out


def leases(client: redis.Redis, fleet: Fleet) -> dict[str, list[tuple[str, float]]]:
    """The leases Redis holds, per upstream: (process id:sequence, seconds until it expires)."""
    now = time.time()
    out: dict[str, list[tuple[str, float]]] = {}
    for key in client.scan_iter(match="mw:router:*:i"):
        address = key.decode().split("{", 1)[1].split("#", 1)[0]
        held = cast("list[tuple[bytes, float]]", client.zrange(key, 0, -1, withscores=True))
        if held:
            out[_upstream(fleet, address)] = [(m.decode(), round(s - now, 1)) for m, s in held]
    return out


def _upstream(fleet: Fleet, address: str) -> str:
    return next((name for name, dep in fleet.deployments.items() if dep == address), address)


@dataclass
class Poll:
    t: float
    views: dict[str, dict[str, int]]
    leases: dict[str, list[tuple[str, float]]]

    @property
    def counted(self) -> bool:
        return any(any(v.values()) for v in self.views.values())


def step(fleet: Fleet, client: redis.Redis, keys: dict[str, str], name: str, args: argparse.Namespace) -> None:
    targets = [r.url for r in fleet.replicas]
    load = Load(targets, keys, args.concurrency, seed=len(name))
    time.sleep(args.seconds / 2)
    signalled = time.monotonic()
    if name == "sigterm":
        r = fleet.replicas[0]
        targets.remove(r.url)
        status, took = r.terminate()
        print(f"{name}: {r.name} exited with {status} {took:.2f} s after SIGTERM", flush=True)
    elif name == "sigkill":
        r = fleet.replicas[1]
        targets.remove(r.url)
        r.kill()
        print(f"{name}: {r.name} SIGKILLed", flush=True)
    time.sleep(args.seconds / 2)
    outcomes = load.finish()
    t0 = time.monotonic()
    if name != "cuts":
        print(f"{name}: the load stopped {t0 - signalled:.1f} s after the signal", flush=True)
    polls: list[Poll] = []
    restarted = False
    while time.monotonic() - t0 < args.poll:
        polls.append(Poll(round(time.monotonic() - t0, 2), views(fleet), leases(client, fleet)))
        if not restarted and time.monotonic() - t0 > 3.0:  # (the first seconds polled closely, without waiting)
            restarted = True
            for r in fleet.replicas:
                if not r.alive():
                    r.start()
                    r.wait_ready()
        time.sleep(0.1 if time.monotonic() - t0 < 3.0 else 0.5)
    first = polls[0]
    held = [p.t for p in polls if p.leases]
    counted = [p.t for p in polls if p.counted]
    print(f"== {name}: the load got {outcomes}", flush=True)
    print(f"   at the first poll: leases in Redis {first.leases}; views {first.views}")
    last_held = f"t={held[-1]} s" if held else "none"
    last_counted = f"t={counted[-1]} s" if counted else "none"
    print(
        f"   the last poll with a lease in Redis: {last_held}; with a view counting a request: {last_counted} "
        f"(polled for {polls[-1].t} s)"
    )
    if polls[-1].leases or polls[-1].counted:
        print(f"   LEFT AT THE END: leases {polls[-1].leases}; views {polls[-1].views}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fleet.leases", description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default="cuts,sigterm,sigkill", help="of cuts, sigterm, sigkill (default all three)")
    ap.add_argument("--seconds", type=float, default=6.0, help="of load in each step (default 6)")
    ap.add_argument("--poll", type=float, default=LEASE + 5, help="seconds polled after each step (default 35)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--latency", type=float, default=0.3, help="the upstreams' (default 0.3)")
    ap.add_argument("--chunk-delay", type=float, default=0.1, help="the upstreams' (default 0.1)")
    ap.add_argument("--shutdown-timeout", type=float, default=5.0, help="server.shutdown_timeout (default 5)")
    ap.add_argument("--hedge", type=float, help="routing.hedge.after, seconds (default: no hedging)")
    ap.add_argument("--pg-url", default=DEFAULT_PG_URL)
    args = ap.parse_args(argv)
    steps = args.steps.split(",")
    if not set(steps) <= {"cuts", "sigterm", "sigkill"}:
        ap.error(f"unknown steps: {sorted(set(steps) - {'cuts', 'sigterm', 'sigkill'})}")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
    import throwaway

    server = throwaway.start_redis(throwaway.free_port())
    _Fleet.shutdown_timeout, _Fleet.hedge = args.shutdown_timeout, args.hedge
    opts = FleetOptions(args.pg_url, server.url, replicas=3, workers=2, latency=args.latency,
                        chunk_delay=args.chunk_delay)  # fmt: skip
    try:
        with _Fleet(opts, say=print) as fleet, redis.Redis.from_url(server.url) as client:
            keys = {}
            for label, limits in (("load", {}), ("limited", {"max_parallel": 2})):
                status, made = admin(fleet.replicas[0].url, "POST", "/admin/keys", {"name": label, **limits})
                if status != 201:
                    raise RuntimeError(f"POST /admin/keys: {status} {made}")
                keys[label] = made["key"]
            for name in steps:
                step(fleet, client, keys, name, args)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
