"""Changes made through one replica, seen by all: virtual keys and deployments, both kept in PostgreSQL.

- **Keys.** A worker holds the active keys in memory, reloads them every ``store.key_refresh`` seconds and looks a
  key it does not know up in the store (``src/modelway/auth/authenticator.py``). So a key created through one
  replica works on every worker at once, and a key revoked through one is refused by every worker within
  ``key_refresh``. Measured per worker: ``GET /v1/models`` with the key on new connections to each replica (the
  request id a worker makes begins with its own prefix, which tells the two workers of a replica apart) until every
  worker answered as expected, and none answered otherwise afterwards.
- **Deployments.** A deployment disabled through one replica's admin API is stored, and every worker polls the
  store's version every :attr:`modelway.server.gateway.Gateway.runtime_poll` seconds (1 s). Measured under load
  through nginx: per replica, the last request sent after the change that was still routed to the deployment
  (``x-modelway-deployment``), and when its upstream got its last call.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from modelway.server.gateway import Gateway

from .client import Answer, Client, Probe, admin
from .rig import Fleet, Replica

__all__ = ["DeploymentResult", "KeyResult", "deployment_phase", "key_phase"]

#: scheduling, a store query and the probes' own spacing, on a busy 2-core machine
SLACK = 1.5
RUNTIME_POLL = Gateway.runtime_poll


@dataclass
class Watch:
    """Probes of every worker of every replica until each answered ``want``."""

    since: float  # the change was in the store (its admin call answered)
    want: int
    probes: dict[str, list[Probe]] = field(default_factory=dict)  # replica name -> probes
    workers: dict[str, set[str]] = field(default_factory=dict)

    def reached(self, replica: str) -> float | None:
        """Seconds from ``since`` until the last of the replica's workers first answered ``want`` (None: never)."""
        firsts = []
        for w in self.workers[replica]:
            at = [p.at for p in self.probes[replica] if p.worker == w and p.status == self.want]
            if not at:
                return None
            firsts.append(min(at))
        return max(0.0, max(firsts) - self.since)

    def relapses(self, replica: str) -> list[Probe]:
        """Probes that answered otherwise after their worker had answered ``want``."""
        out = []
        first: dict[str, float] = {}
        for p in self.probes[replica]:
            if p.status == self.want:
                first.setdefault(p.worker, p.at)
            elif p.worker in first:
                out.append(p)
        return out


async def _watch(client: Client, replicas: list[Replica], secret: str, want: int, timeout: float, w: Watch) -> None:
    async def one(r: Replica) -> None:
        got = w.probes[r.name] = []
        w.workers[r.name] = set(r.workers)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = await client.probe(r.url, secret)
            got.append(p)
            if w.reached(r.name) is not None and len(got) >= 4:
                return
            await asyncio.sleep(0.01)

    await asyncio.gather(*(one(r) for r in replicas))


@dataclass
class KeyResult:
    key_refresh: float
    creator: str
    revoker: str
    created: Watch
    revoked: Watch
    chat: Answer  # a request through nginx with the new key

    def problems(self) -> list[str]:
        out = []
        for what, w, bound in (("created", self.created, SLACK), ("revoked", self.revoked, self.key_refresh + SLACK)):
            for name in w.workers:
                took = w.reached(name)
                if took is None:
                    out.append(f"a key {what} is not seen by every worker of {name}: {w.probes[name][-3:]}")
                elif took > bound:
                    out.append(f"a key {what}: {name} took {took:.2f} s (bound {bound:.1f} s)")
                if w.relapses(name):
                    out.append(f"a key {what}: {name} answered otherwise again: {w.relapses(name)[:3]}")
        if not self.chat.ok:
            out.append(f"the new key through nginx: {self.chat.status} {self.chat.code or self.chat.error}")
        codes = {p.code for probes in self.revoked.probes.values() for p in probes if p.status == 401}
        if codes != {"revoked_api_key"}:
            out.append(f"the revoked key was refused with {codes}, not revoked_api_key")
        return out


def key_phase(fleet: Fleet, client: Client, *, creator: int = 0, revoker: int = 1) -> KeyResult:
    """Create a key through replica ``creator``, watch every worker take it; revoke it through ``revoker``, watch
    every worker refuse it."""
    status, made = admin(fleet.replicas[creator].url, "POST", "/admin/keys", {"name": "fleet-propagation"})
    if status != 201:
        raise RuntimeError(f"POST /admin/keys: {status} {made}")
    created = Watch(time.time(), 200)
    client.run(_watch(client, fleet.replicas, made["key"], 200, 10.0, created))
    chat = client.run(client.chat(made["key"], "propagation", "keys", stream=False))
    status, gone = admin(fleet.replicas[revoker].url, "DELETE", f"/admin/keys/{made['id']}")
    if status != 200:
        raise RuntimeError(f"DELETE /admin/keys: {status} {gone}")
    revoked = Watch(time.time(), 401)
    timeout = fleet.opts.key_refresh + 10.0
    client.run(_watch(client, fleet.replicas, made["key"], 401, timeout, revoked))
    return KeyResult(fleet.opts.key_refresh, fleet.replicas[creator].name, fleet.replicas[revoker].name, created,
                     revoked, chat)  # fmt: skip


@dataclass
class DeploymentResult:
    via: str
    deployment: str  # the one disabled
    since: float  # the disable call answered
    answers: list[Answer]
    served: list[tuple[float, int]]  # (time, calls) of the disabled deployment's upstream
    #: per replica: seconds from the change to the last request sent to it that still went to the deployment
    #: (negative: the last one was sent before the change); None: none did after warm-up
    lag: dict[str, float | None]
    #: per replica: requests answered that were sent later than RUNTIME_POLL + SLACK after the change
    after: dict[str, int]
    reenabled: bool  # the upstream got calls again once the deployment was enabled

    @property
    def last_call(self) -> float:
        """Seconds from the change until the upstream's calls stopped growing (to the sampling's 0.1 s)."""
        last = self.served[0]
        for at, n in self.served:
            if n > last[1]:
                last = (at, n)
        return last[0] - self.since

    def problems(self) -> list[str]:
        out = []
        cutoff = self.since + RUNTIME_POLL + SLACK
        late = [a for a in self.answers if a.sent > cutoff and a.deployment == self.deployment]
        if late:
            out.append(f"{len(late)} requests sent over {RUNTIME_POLL + SLACK:.1f} s after the change went to "
                       f"{self.deployment}: {[(a.rid, a.upstream) for a in late[:3]]}")  # fmt: skip
        idle = [name for name, n in self.after.items() if n == 0]
        if idle:
            out.append(f"{idle} answered no request after the change: that they skip {self.deployment} is not shown")
        if self.last_call > RUNTIME_POLL + SLACK + 0.5:
            out.append(f"the upstream of {self.deployment} got calls {self.last_call:.2f} s after the change")
        failed = [a for a in self.answers if not a.ok]
        if failed:
            out.append(f"{len(failed)} requests failed: {[(a.rid, a.status, a.code or a.error) for a in failed[:3]]}")
        if not self.reenabled:
            out.append(f"{self.deployment} got no calls again once enabled")
        return out


def deployment_phase(
    fleet: Fleet, client: Client, keys: dict[str, str], *, via: int = 2, concurrency: int = 8, rps: float = 80.0
) -> DeploymentResult:
    """Under load through nginx, disable deployment ``b`` through replica ``via``; watch; enable it again."""
    dep = fleet.deployments["b"]
    status, listing = admin(fleet.replicas[via].url, "GET", "/admin/deployments")
    (entry,) = [d for d in listing["data"] if d["deployment"] == dep]
    bg = client.background("deployments", keys, concurrency=concurrency, rps=rps)
    try:
        _until_each_replica_used(fleet, bg.answers, dep, 10.0)
        status, body = admin(fleet.replicas[via].url, "POST", f"/admin/deployments/{entry['id']}/disable")
        if status != 200:
            raise RuntimeError(f"disable: {status} {body}")
        since = time.time()
        served = [(since, fleet.served("b"))]
        while time.time() < since + RUNTIME_POLL + SLACK + 1.5:
            time.sleep(0.1)
            served.append((time.time(), fleet.served("b")))
    finally:
        answers = bg.stop()
    status, body = admin(fleet.replicas[via].url, "POST", f"/admin/deployments/{entry['id']}/enable")
    if status != 200:
        raise RuntimeError(f"enable: {status} {body}")
    reenabled = _calls_again(fleet, client, keys, served[-1][1], RUNTIME_POLL + SLACK + 3.0)
    lag: dict[str, float | None] = {}
    after: dict[str, int] = {}
    for r in fleet.replicas:
        mine = [a for a in answers if fleet.replica_of(a.upstream) is r]
        sent = [a.sent for a in mine if a.deployment == dep]
        lag[r.name] = max(sent) - since if sent else None
        after[r.name] = sum(a.ok and a.sent > since + RUNTIME_POLL + SLACK for a in mine)
    return DeploymentResult(fleet.replicas[via].name, dep, since, answers, served, lag, after, reenabled)


def _until_each_replica_used(fleet: Fleet, answers: list[Answer], dep: str, timeout: float) -> None:
    """Until every replica has sent a request to ``dep`` (so the change has something to stop)."""
    deadline = time.monotonic() + timeout
    while True:
        used = {fleet.replica_of(a.upstream) for a in list(answers) if a.deployment == dep}
        if all(r in used for r in fleet.replicas):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"in {timeout} s, not every replica sent a request to {dep}")
        time.sleep(0.1)


def _calls_again(fleet: Fleet, client: Client, keys: dict[str, str], before: int, timeout: float) -> bool:
    bg = client.background("deployments", keys, concurrency=4, rps=40)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if fleet.served("b") > before:
                return True
            time.sleep(0.1)
        return False
    finally:
        bg.stop()
