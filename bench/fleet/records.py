"""The usage records of a whole run, matched with what the clients got, by request id, once every replica has
stopped (SIGTERM: each writes what it holds before it exits).

Expected: one record for every whole answer of the gateway (200, and the 429s it refused itself: a refusal is a
record too), with the answer's status; none twice; none for a request id the clients never sent. A request that
failed (the replica answering it was killed) may have a record (it was settled before the kill) or not: those
without are the records lost, which may only be requests in flight at the replica that was killed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .client import Answer
from .rig import Fleet
from .store import records

__all__ = ["Accounting", "account"]


@dataclass
class Accounting:
    sent: int
    expected: int  # whole answers of the gateway: each must have its record
    stored: int  # records of requests the clients sent
    missing: list[str] = field(default_factory=list)  # expected, no record
    wrong: list[str] = field(default_factory=list)  # a record with another status than the answer
    twice: list[str] = field(default_factory=list)  # request ids stored more than once
    strangers: list[str] = field(default_factory=list)  # records of request ids nobody sent
    failed: int = 0  # requests without a whole answer
    failed_recorded: int = 0  # ... whose record exists all the same (settled just before the kill)
    lost_elsewhere: list[str] = field(default_factory=list)  # failed and unrecorded, not at the killed replica
    by_replica: dict[str, Counter[str]] = field(default_factory=dict)  # replica -> outcome -> answers

    @property
    def lost(self) -> int:
        return self.failed - self.failed_recorded

    def problems(self) -> list[str]:
        out = []
        for what, ids in (
            ("answered requests without a record", self.missing),
            ("records with another status than the answer", self.wrong),
            ("request ids stored more than once", self.twice),
            ("records of requests never sent", self.strangers),
            ("failed requests without a record, not at the killed replica", self.lost_elsewhere),
        ):
            if ids:
                out.append(f"{len(ids)} {what}: {ids[:5]}")
        return out


def account(fleet: Fleet, answers: list[Answer], killed: str | None) -> Accounting:
    """Match ``answers`` (every request of the run) with the store's records; ``killed``: the replica SIGKILLed."""
    stored: dict[str, list[int]] = {}
    for rec in records(fleet.store_url):
        stored.setdefault(rec.request_id, []).append(rec.status)
    sent = {a.rid: a for a in answers}
    acc = Accounting(len(sent), 0, sum(len(v) for k, v in stored.items() if k in sent))
    for rid, statuses in stored.items():
        if rid not in sent:
            acc.strangers.append(rid)
        elif len(statuses) > 1:
            acc.twice.append(rid)
    for rid, a in sent.items():
        r = fleet.replica_of(a.upstream)
        name = r.name if r is not None else "(none)"
        outcome = "failed" if a.failed else str(a.status)
        acc.by_replica.setdefault(name, Counter())[outcome] += 1
        got = stored.get(rid)
        if not a.failed:
            acc.expected += 1
            if got is None:
                acc.missing.append(rid)
            elif got[0] != a.status:
                acc.wrong.append(f"{rid}: answered {a.status}, recorded {got}")
            continue
        acc.failed += 1
        if got is not None:
            acc.failed_recorded += 1
        elif name != killed:
            acc.lost_elsewhere.append(f"{rid} ({name}: {a.status} {a.error})")
    return acc
