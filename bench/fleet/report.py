"""The fleet run as a markdown report: what was sent and answered where, the limits, propagation times, the kill,
the restarts, the records, sizing, and the verdict."""

from __future__ import annotations

import os
import platform
from collections import Counter
from pathlib import Path

from .client import Answer
from .control import RUNTIME_POLL
from .rig import Fleet
from .run import FleetRun

__all__ = ["render_markdown"]


def _secs(x: float | None) -> str:
    return "never" if x is None else f"{x:.2f} s"


def _replica_split(fleet: Fleet, answers: list[Answer]) -> str:
    """``r0 200/429/failed``, per replica."""
    per: dict[str, Counter[str]] = {}
    for a in answers:
        r = fleet.replica_of(a.upstream)
        name = r.name if r is not None else "none"
        per.setdefault(name, Counter())["failed" if a.failed else str(a.status)] += 1
    return ", ".join(
        f"{name} {c['200']}/{c['429']}" + (f"/{c['failed']} failed" if c["failed"] else "")
        for name, c in sorted(per.items())
    )


def _phase_row(fleet: Fleet, name: str, answers: list[Answer]) -> str:
    ok = sum(a.ok for a in answers)
    refused = sum(a.complete and a.status == 429 for a in answers)
    failed = sum(a.failed for a in answers)
    return f"| {name} | {len(answers)} | {ok} | {refused} | {failed} | {_replica_split(fleet, answers)} |"


def _machine() -> str:
    model = ""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores ({model or platform.machine()}), Python {platform.python_version()}"


def render_markdown(run: FleetRun) -> str:
    fleet = run.fleet
    assert fleet is not None
    o = run.opts.fleet
    out = [
        f"`{run.opts.command}`" if run.opts.command else "",
        "",
        f"{o.replicas} replicas x {o.workers} workers (`modelway serve`, deploy/modelway-fleet.yaml) behind nginx "
        f"(deploy/nginx/nginx.conf), one PostgreSQL database and one Redis; 2 upstream simulators; the client; all "
        f"on one machine: {_machine()}, shared by all of them. `store.key_refresh` {o.key_refresh:g} s, run-time "
        f"deployment poll {RUNTIME_POLL:g} s. Fleet started in {run.started:.1f} s; whole run {run.seconds:.0f} s.",
        "",
        "| phase | requests | 200 | 429 | failed | per replica (200/429) |",
        "|---|---|---|---|---|---|",
    ]
    phases = [("mixed load (limits, keys)", run.mixed)]
    if run.rpm is not None:
        phases.append((f"rpm {run.rpm.rpm} burst", run.rpm.answers))
    if run.budget is not None:
        phases.append((f"budget {run.budget.budget:g}", run.budget.answers))
    if run.deployments is not None:
        phases.append(("deployment disabled", run.deployments.answers))
    if run.kill is not None:
        phases.append((f"SIGKILL of {run.kill.victim}", run.kill.answers))
    if run.rolling is not None:
        phases.append(("rolling restart", run.rolling.answers))
    for s in run.sizing:
        phases.append((f"sizing, {s.label}", s.answers))
    out += [_phase_row(fleet, name, answers) for name, answers in phases]
    out.append("")
    if run.rpm is not None:
        r = run.rpm
        out.append(f"- **rpm {r.rpm}**, {r.sent} requests in one minute through nginx: {r.ok} answered 200 "
                   f"({r.ok_by_replica}), {r.refused} answered 429 `rate_limit_exceeded` with Retry-After "
                   f"({r.refused_by_replica}).")  # fmt: skip
    if run.budget is not None:
        b = run.budget
        out.append(f"- **budget {b.budget:g}**, {b.cost:g} a request, max_parallel {b.max_parallel}: {b.admitted} "
                   f"admitted (the design's bound: {b.least} to {b.most}), spend {b.redis_spend:g} in Redis and "
                   f"{b.stored_spend:g} in the stored records (overshoot {b.overshoot:g}); refusals "
                   f"{dict(b.refusals)}.")  # fmt: skip
    if run.keys is not None:
        k = run.keys
        made = ", ".join(f"{n} {_secs(k.created.reached(n))}" for n in sorted(k.created.workers))
        gone = ", ".join(f"{n} {_secs(k.revoked.reached(n))}" for n in sorted(k.revoked.workers))
        out.append(f"- **a key created** through {k.creator} worked on every worker of: {made}; **revoked** "
                   f"through {k.revoker}, refused by every worker of: {gone} (bound: key_refresh "
                   f"{k.key_refresh:g} s).")  # fmt: skip
    if run.deployments is not None:
        d = run.deployments
        lag = ", ".join(f"{n} {_secs(x)}" for n, x in sorted(d.lag.items()))
        out.append(f"- **a deployment disabled** through {d.via}: the last request sent to it, after the change, per "
                   f"replica: {lag}; its upstream's last call {d.last_call:.1f} s after; answered afterwards "
                   f"{d.after}; enabled again: {'calls resumed' if d.reenabled else 'no calls'}.")  # fmt: skip
    if run.kill is not None:
        k2 = run.kill
        victim = next(r for r in fleet.replicas if r.name == k2.victim)
        at_victim = sum(fleet.replica_of(a.upstream) is victim for a in k2.failed)
        out.append(f"- **SIGKILL of {k2.victim}** (supervisor and workers): {len(k2.failed)} requests failed, "
                   f"{at_victim} of them at {k2.victim} (in flight there); of its {k2.answered_by_victim} "
                   f"answers before the kill, {k2.stored_at_kill} were stored at the kill and "
                   f"{k2.stored_after_restart} once it restarted ({k2.restart_seconds:.1f} s to ready, "
                   f"{k2.routed_seconds:.1f} s more until nginx sent it requests again) and imported its journal "
                   f"({len(k2.dead_segments)} segments, {len(k2.left_after_restart)} left).")  # fmt: skip
    if run.rolling is not None:
        rr = run.rolling
        rounds = len(rr.restarts) // max(1, len(fleet.replicas))
        out.append(f"- **rolling restart** ({rounds} round{'s' * (rounds > 1)}, {len(rr.restarts)} restarts): "
                   f"{len(rr.answers)} requests, {len(rr.failed)} failed.")  # fmt: skip
        out += ["", "| replica | exit status | SIGTERM to exit | start to ready | ready to routed by nginx |",
                "|---|---|---|---|---|"]  # fmt: skip
        for restart in rr.restarts:
            out.append(f"| {restart.replica} | {restart.exit_status} | {restart.drain_seconds:.1f} s | "
                       f"{restart.ready_seconds:.1f} s | {restart.routed_seconds:.1f} s |")  # fmt: skip
    if run.records is not None:
        a = run.records
        exits = ", ".join(f"{s.replica} {s.exit_status}" for s in run.stopped)
        out += [
            "",
            "| records | |",
            "|---|---|",
            f"| requests sent | {a.sent} |",
            f"| whole answers (200, 429): records expected | {a.expected} |",
            f"| records stored | {a.stored} |",
            f"| answered without a record | {len(a.missing)} |",
            f"| stored twice | {len(a.twice)} |",
            f"| failed requests (in flight at the killed replica) | {a.failed} |",
            f"| ... whose record was stored all the same | {a.failed_recorded} |",
            f"| ... records lost | {a.lost} |",
            f"| exit status of each replica at the end | {exits} |",
        ]
    if run.sizing:
        out += ["", "| sizing load | requests/s | per replica | replicas' CPU (cores) | gateway CPU per request "
                "| one worker on one core, at least | nginx CPU per request |",
                "|---|---|---|---|---|---|---|"]  # fmt: skip
        for s in run.sizing:
            per = s.rps / max(1, len(s.cpu))
            nginx = 1000.0 * s.nginx_cpu / s.ok if s.ok else 0.0
            out.append(f"| {s.label} | {s.rps:.0f} | {per:.0f} | {s.cores:.2f} | {s.cpu_ms:.2f} ms | "
                       f"~{s.per_core:,.0f} requests/s | {nginx:.2f} ms |")  # fmt: skip
        out.append("")
        out.append(f"(Idle, the replicas used {run.sizing[0].idle:.3f} cores in all, subtracted above. The cost of a "
                   "request falls as the load rises: the last column but one is a floor.)")  # fmt: skip
    problems = run.problems()
    out += ["", "**Verdict: " + ("pass**" if not problems else "FAIL**")]
    out += [f"- {p}" for p in problems]
    return "\n".join(out).strip() + "\n"
