"""A key's limits across the fleet: each replica's workers check them in one Redis (``src/modelway/limits/redis.py``:
one Lua script checks and counts each request), so the fleet counts as one gateway.

- **rpm**: requests per calendar minute (UTC). ``rpm`` N, M > N requests in one minute, through nginx to every
  replica: exactly N answered 200, the other M - N 429 ``rate_limit_exceeded`` in the OpenAI error format, with
  ``Retry-After``.
- **budget**: the spend counter is checked before a request (refused once spend >= budget) and the request's cost
  added after it ended (:mod:`modelway.limits.base`), so a key may overshoot by requests in flight when the budget
  is reached. With ``max_parallel`` P (counted in the same script), at most P - 1 others are in flight at an
  admission, so with every request costing c, the requests admitted number n with
  ceil(budget / c) <= n <= ceil(budget / c) + P - 1 (the lower bound: clients go on until refused for the
  budget). The Redis counter, the stored records' costs and n * c must agree exactly (c is a binary fraction).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass, field

from .client import Answer, Client, admin
from .rig import COST, Fleet
from .store import redis_spend, wait_records

__all__ = ["BudgetResult", "RpmResult", "budget_phase", "rpm_phase"]

#: a burst needs this many seconds left in the current minute, else it waits for the next one
MINUTE_MARGIN = 8.0


def _key(fleet: Fleet, name: str, **limits: object) -> tuple[str, str]:
    """A virtual key made through the first replica's admin API: (id, secret)."""
    status, made = admin(fleet.replicas[0].url, "POST", "/admin/keys", {"name": name, **limits})
    if status != 201:
        raise RuntimeError(f"POST /admin/keys: {status} {made}")
    return made["id"], made["key"]


def _by_replica(fleet: Fleet, answers: list[Answer], ok_only: bool = True) -> dict[str, int]:
    out: Counter[str] = Counter()
    for a in answers:
        if a.ok or not ok_only:
            r = fleet.replica_of(a.upstream)
            out[r.name if r is not None else "?"] += 1
    return dict(sorted(out.items()))


@dataclass
class RpmResult:
    rpm: int
    sent: int
    key_id: str
    window: int  # the minute (Unix seconds of its start)
    answers: list[Answer]
    ok_by_replica: dict[str, int]
    refused_by_replica: dict[str, int]

    @property
    def ok(self) -> int:
        return sum(a.ok for a in self.answers)

    @property
    def refused(self) -> int:
        return sum(a.status == 429 and a.code == "rate_limit_exceeded" for a in self.answers)

    def problems(self) -> list[str]:
        out = []
        if any(int(a.sent) // 60 * 60 != self.window or int(a.done) // 60 * 60 != self.window for a in self.answers):
            out.append("the burst crossed a minute boundary")
        if self.ok != self.rpm:
            out.append(f"rpm {self.rpm}: {self.ok} of {self.sent} requests answered 200, not {self.rpm}")
        if self.refused != self.sent - self.rpm:
            out.append(f"rpm {self.rpm}: {self.refused} answered 429 rate_limit_exceeded, not {self.sent - self.rpm}")
        for a in self.answers:
            if a.status == 429 and (a.type != "rate_limit_error" or not a.retry_after):
                out.append(f"429 {a.rid}: type {a.type!r}, Retry-After {a.retry_after!r}")
            elif not a.ok and not (a.status == 429 and a.code == "rate_limit_exceeded"):
                out.append(f"{a.rid}: {a.status} {a.code or a.error}")
        if len(self.ok_by_replica) < 2:
            out.append(f"the 200s came from one replica only ({self.ok_by_replica}): nothing was shown across a fleet")
        return out


async def _burst(client: Client, secret: str, label: str, n: int, concurrency: int) -> list[Answer]:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Answer:
        async with gate:
            return await client.chat(secret, label, "rpm", stream=i % 2 == 1)

    return list(await asyncio.gather(*(one(i) for i in range(n))))


def rpm_phase(fleet: Fleet, client: Client, *, rpm: int = 20, sent: int = 30, concurrency: int = 6) -> RpmResult:
    """``sent`` requests (half of them streams) of a key with ``rpm``, ``concurrency`` at a time, in one minute."""
    if sent <= rpm:
        raise ValueError("send more requests than the rpm limit")
    key_id, secret = _key(fleet, "fleet-rpm", rpm=rpm)
    left = 60.0 - time.time() % 60.0
    if left < MINUTE_MARGIN:
        time.sleep(left + 0.2)
    window = int(time.time()) // 60 * 60
    answers = client.run(_burst(client, secret, "rpm", sent, concurrency))
    refused = [a for a in answers if a.status == 429]
    return RpmResult(rpm, sent, key_id, window, answers, _by_replica(fleet, answers),
                     _by_replica(fleet, refused, ok_only=False))  # fmt: skip


@dataclass
class BudgetResult:
    budget: float
    max_parallel: int
    cost: float  # of every request
    key_id: str
    answers: list[Answer]
    redis_spend: float
    stored_spend: float
    stored_ok: int  # 200 records of the key
    bad_records: list[str] = field(default_factory=list)
    ok_by_replica: dict[str, int] = field(default_factory=dict)

    @property
    def admitted(self) -> int:
        return sum(a.ok for a in self.answers)

    @property
    def least(self) -> int:
        return math.ceil(self.budget / self.cost)

    @property
    def most(self) -> int:
        return self.least + self.max_parallel - 1

    @property
    def refusals(self) -> Counter[str]:
        return Counter(a.code or "?" for a in self.answers if a.status == 429)

    @property
    def overshoot(self) -> float:
        return self.admitted * self.cost - self.budget

    def problems(self) -> list[str]:
        out = []
        n = self.admitted
        if not self.least <= n <= self.most:
            out.append(f"budget {self.budget} at {self.cost} a request, max_parallel {self.max_parallel}: {n} "
                       f"admitted, outside [{self.least}, {self.most}]")  # fmt: skip
        if self.redis_spend != n * self.cost:
            out.append(f"Redis spend {self.redis_spend!r} != {n} x {self.cost}")
        if self.stored_ok != n or self.stored_spend != n * self.cost:
            out.append(f"stored: {self.stored_ok} records of 200 costing {self.stored_spend!r}, not {n} x {self.cost}")
        out += self.bad_records
        if self.refusals["budget_exceeded"] == 0:
            out.append("no request was refused for the budget")
        for a in self.answers:
            if not a.ok and not (a.status == 429 and a.code in ("budget_exceeded", "max_parallel_exceeded")):
                out.append(f"{a.rid}: {a.status} {a.code or a.error}")
        if len(self.ok_by_replica) < 2:
            out.append(f"the 200s came from one replica only ({self.ok_by_replica})")
        return out


async def _spend_it(client: Client, secret: str, clients: int) -> list[Answer]:
    """``clients`` callers each sending requests (alternately streams) until the budget refuses one; a refusal for
    max_parallel is tried again."""
    answers: list[Answer] = []

    async def caller(c: int) -> None:
        for i in range(500):
            a = await client.chat(secret, "budget", "budget", stream=(i + c) % 2 == 1)
            answers.append(a)
            if a.status == 429 and a.code == "max_parallel_exceeded":
                await asyncio.sleep(0.01)
            elif not a.ok:
                return

    await asyncio.gather(*(caller(c) for c in range(clients)))
    return answers


def budget_phase(
    fleet: Fleet, client: Client, *, budget: float = 0.5, max_parallel: int = 2, clients: int = 5
) -> BudgetResult:
    """A key with ``budget`` and ``max_parallel``, spent by ``clients`` concurrent callers through nginx."""
    key_id, secret = _key(fleet, "fleet-budget", budget=budget, max_parallel=max_parallel)
    answers = client.run(_spend_it(client, secret, clients))
    records = wait_records(fleet.store_url, key_id, len(answers))
    ok = [r for r in records if r.status == 200]
    bad = [f"record {r.request_id}: cost {r.cost!r}, estimated {r.estimated}" for r in ok
           if r.cost != COST or r.estimated]  # fmt: skip
    stored = 0.0
    for r in ok:
        stored += r.cost
    return BudgetResult(budget, max_parallel, COST, key_id, answers, redis_spend(fleet.redis_url, key_id), stored,
                        len(ok), bad, _by_replica(fleet, answers))  # fmt: skip
