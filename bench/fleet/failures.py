"""Replicas that go away under load: one SIGKILLed, then a rolling restart of all.

- **SIGKILL.** The whole process group of one replica (its supervisor and its workers) is killed at once in the
  middle of steady load. nginx sends what it could not connect there to the others (nothing was sent, so a POST
  is safe to retry); the requests that replica was answering fail, and only those. Every usage record is on disk
  (the usage journal, ``src/modelway/usage/journal.py``) before its answer completes, so the records of what the
  killed replica answered are in its journal; the restarted replica imports them at its start. The records of its
  requests in flight are lost at most: counted in :mod:`.records` against the client's failures.
- **Rolling restart.** Each replica in turn gets SIGTERM (at its supervisor, as ``docker stop`` and Kubernetes send
  it), must exit 0, is started again and must be ready before the next. Under steady load through nginx, no request
  may fail: the draining replica refuses new connections (nginx retries those elsewhere), serves what was already
  sent to it, and answers requests that arrive on connections nginx keeps alive with ``Connection: close``
  (``src/modelway/server/runner.py``).
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field

from .client import Answer, Client
from .rig import Fleet, Replica
from .store import records

__all__ = ["KillResult", "Restart", "RollingResult", "kill_phase", "rolling_phase", "stop_all"]


@dataclass
class KillResult:
    victim: str
    killed_at: float
    answers: list[Answer]
    dead_segments: list[str]  # the killed processes' journal segments, left on disk
    left_after_restart: list[str]  # of those, still there once the restarted replica is ready
    answered_by_victim: int  # its whole answers (200 or 429) before the kill
    stored_at_kill: int  # ... of which the store held a record right after the kill
    stored_after_restart: int  # ... once the restarted replica was ready
    restart_seconds: float
    routed_seconds: float  # from ready until nginx sent it a request again

    @property
    def failed(self) -> list[Answer]:
        return [a for a in self.answers if a.failed]

    def problems(self, fleet: Fleet) -> list[str]:
        out = []
        victim = next(r for r in fleet.replicas if r.name == self.victim)
        elsewhere = [a for a in self.failed if fleet.replica_of(a.upstream) is not victim]
        if elsewhere:
            out.append(f"{len(elsewhere)} requests failed at a surviving replica: "
                       f"{[(a.rid, a.upstream, a.status, a.error) for a in elsewhere[:3]]}")  # fmt: skip
        late = [a for a in self.failed if a.sent > self.killed_at + 0.5]
        if late:
            out.append(f"{len(late)} requests sent after the kill failed: {[(a.rid, a.upstream) for a in late[:3]]}")
        if not self.dead_segments:
            out.append("the killed replica left no journal")
        if self.left_after_restart:
            out.append(f"journal segments not imported by the restart: {self.left_after_restart}")
        if self.stored_after_restart != self.answered_by_victim:
            out.append(f"records of the killed replica's {self.answered_by_victim} answers once it restarted: "
                       f"{self.stored_after_restart}")  # fmt: skip
        return out


def kill_phase(
    fleet: Fleet,
    client: Client,
    keys: dict[str, str],
    *,
    victim: int = 1,
    before: float = 2.0,
    after: float = 2.0,
    concurrency: int = 12,
    rps: float = 120.0,
) -> KillResult:
    """Steady load; after ``before`` seconds SIGKILL replica ``victim``'s group; ``after`` seconds later restart it
    and wait until it is ready and nginx sends it requests again."""
    r = fleet.replicas[victim]
    bg = client.background("kill", keys, concurrency=concurrency, rps=rps)
    try:
        time.sleep(before)
        killed_at = time.time()
        r.kill()
        dead = [p.name for p in r.segments()]  # (all of the killed processes: the replica is down)
        time.sleep(after)
        mine = {
            a.rid for a in list(bg.answers) if a.complete and a.done < killed_at and fleet.replica_of(a.upstream) is r
        }
        stored_at_kill = len(mine & {rec.request_id for rec in records(fleet.store_url)})
        t0 = time.monotonic()
        r.start()
        r.wait_ready()
        took = time.monotonic() - t0
        left = [p.name for p in r.segments() if p.name in dead]
        stored_after = len(mine & {rec.request_id for rec in records(fleet.store_url)})
        routed = _routed_again(fleet, r, bg.answers, time.time(), 30.0)
    finally:
        answers = bg.stop()
    return KillResult(r.name, killed_at, answers, dead, left, len(mine), stored_at_kill, stored_after, took, routed)


@dataclass
class Restart:
    replica: str
    exit_status: int | None
    drain_seconds: float  # SIGTERM to exit
    ready_seconds: float  # start to every worker ready
    stragglers: int
    #: from ready until nginx sent it a request again (it takes a replica that refused connections out for
    #: fail_timeout); the next replica is stopped only then
    routed_seconds: float = 0.0


@dataclass
class RollingResult:
    answers: list[Answer]
    restarts: list[Restart] = field(default_factory=list)

    @property
    def failed(self) -> list[Answer]:
        return [a for a in self.answers if not a.ok]

    def problems(self) -> list[str]:
        out = []
        if self.failed:
            out.append(f"{len(self.failed)} of {len(self.answers)} requests failed during the rolling restart: "
                       f"{[(a.rid, a.upstream, a.status, a.code or a.error) for a in self.failed[:5]]}")  # fmt: skip
        for r in self.restarts:
            if r.exit_status != 0:
                out.append(f"{r.replica} exited with {r.exit_status} on SIGTERM")
            if r.stragglers:
                out.append(f"{r.replica}: {r.stragglers} processes outlived its supervisor")
        return out


def rolling_phase(
    fleet: Fleet,
    client: Client,
    keys: dict[str, str],
    *,
    concurrency: int = 8,
    rps: float = 80.0,
    settle: float = 1.0,
    rounds: int = 1,
) -> RollingResult:
    """Under steady load: each replica in turn SIGTERMed, waited for, started again and waited for (``rounds``
    times over)."""
    result = RollingResult([])
    bg = client.background("rolling", keys, concurrency=concurrency, rps=rps)
    try:
        time.sleep(settle)
        for r in fleet.replicas * rounds:
            before = r.stragglers
            rc, drained = r.terminate()
            r.start()
            ready = r.wait_ready()
            routed = _routed_again(fleet, r, bg.answers, time.time(), 30.0)
            result.restarts.append(Restart(r.name, rc, drained, ready, r.stragglers - before, routed))
        time.sleep(settle)
    finally:
        result.answers = bg.stop()
    return result


def _routed_again(fleet: Fleet, r: Replica, answers: list[Answer], since: float, timeout: float) -> float:
    """Seconds until a request sent after ``since`` was answered by ``r`` through nginx."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(a.sent >= since and a.ok and fleet.replica_of(a.upstream) is r for a in reversed(answers[-500:])):
            return time.time() - since
        time.sleep(0.05)
    raise RuntimeError(f"nginx sent {r.name} no request in {timeout} s after it was ready again")


def stop_all(fleet: Fleet) -> list[Restart]:
    """SIGTERM every replica at once (the end of the run): each must exit 0, having written its records."""
    t0 = time.monotonic()
    running = [r for r in fleet.replicas if r.alive()]
    for r in running:
        assert r.child is not None
        r.child.popen.send_signal(signal.SIGTERM)
    out = []
    for r in running:
        before = r.stragglers
        rc, took = r.terminate(signalled=t0)
        out.append(Restart(r.name, rc, took, 0.0, r.stragglers - before))
    return out
