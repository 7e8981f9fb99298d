"""Judging a run: the usage records and the server log checked, the figures summarized from the load and the
samples, and the checks against :data:`~bench.soak.result.TOLERANCES` that make the verdict."""

from __future__ import annotations

import statistics
from collections import Counter

from ..procs import Child
from .cases import CASES
from .load import Load
from .probe import MB, Sample
from .report import _kinds
from .result import TOLERANCES, Check, SoakResult


def _slope(samples: list[Sample], first_done: int) -> float | None:
    """Least-squares RSS growth in bytes per request over the samples taken after ``first_done`` requests."""
    pts = [(s.done, s.rss_mb * MB) for s in samples if s.phase == "load" and s.done >= first_done]
    if len(pts) < 5 or pts[-1][0] - pts[0][0] < 100:
        return None
    mx = statistics.fmean(p[0] for p in pts)
    my = statistics.fmean(p[1] for p in pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / den if den else None


def _scan_log(child: Child, res: SoakResult) -> None:
    try:
        lines = child.log.read_text(errors="replace").splitlines()
    except OSError:
        return
    for line in lines:
        if "Traceback (most recent call last)" in line:
            res.server_log_tracebacks += 1
        if " ERROR" in line or line.startswith("ERROR") or "CRITICAL" in line:
            res.server_log_errors += 1
            if len(res.server_log_excerpt) < 20:
                res.server_log_excerpt.append(line[:300])


def _check_records(res: SoakResult, load: Load, records: list[tuple[str, int, str | None]]) -> None:
    seen: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    for rid, status, deployment in records:
        seen[rid] += 1
        statuses[str(status)] += 1
        case = load.sent.get(rid)
        if case is None:
            res.records_unknown += 1
            continue
        if status != case.record_status:
            res.records_wrong_status += 1
            if len(res.problems) < 80:
                res.problems.append({"request_id": rid, "case": case.name, "why": f"record status {status}"})
        if deployment != case.deployment:
            res.records_wrong_deployment += 1
            if len(res.problems) < 80:
                res.problems.append({"request_id": rid, "case": case.name, "why": f"record deployment {deployment}"})
    res.records = len(records)
    res.records_lost = sum(1 for rid in load.sent if rid not in seen and rid not in load.unsent)
    res.cancelled_unsent = len(load.unsent)
    res.cancelled_unsent_recorded = sum(1 for rid in load.unsent if rid in seen)
    res.records_duplicated = sum(n - 1 for n in seen.values() if n > 1)
    res.record_statuses = dict(sorted(statuses.items()))
    if res.records_lost:
        lost = [rid for rid in load.sent if rid not in seen and rid not in load.unsent][:10]
        res.problems.extend({"request_id": r, "case": load.sent[r].name, "why": "no usage record"} for r in lost)


#: simulators whose connections the gateway can never reuse (the answer stalls until the gateway hangs up, is reset,
#: or is cut; abandoned streams and held-back answers are closed when their caller leaves): any left at the end is a
#: leak, or an upstream call that went on after its caller left
NEVER_POOLED = ("fo-stall", "fo-reset", "err-cut", "slow", "slow-first")
#: SQLAlchemy's default pool size: connections an idle store may keep open
STORE_POOL = 5


def _checks(res: SoakResult, drained: bool) -> list[Check]:
    t = TOLERANCES
    left = {k: v for k, v in res.fds_end_upstream.items() if k in NEVER_POOLED}
    tasks_ok = (
        res.tasks_idle_after is not None
        and res.tasks_idle_before is not None
        and res.tasks_idle_after - res.tasks_idle_before <= t["task_growth"]
    )
    out = [
        Check("requests ended as their case expects", "all", f"{res.ended_correctly:,} of {res.requests:,}",
              res.ended_correctly == res.requests),
        Check("hung requests", "0", str(res.hung), res.hung == 0),
        Check("usage records lost", "0", str(res.records_lost), res.records_lost == 0),
        Check("usage records duplicated", "0", str(res.records_duplicated), res.records_duplicated == 0),
        Check("usage records with the wrong status / deployment / an unknown request id", "0",
              f"{res.records_wrong_status} / {res.records_wrong_deployment} / {res.records_unknown}",
              not (res.records_wrong_status or res.records_wrong_deployment or res.records_unknown)),
        Check("RSS end − after warm-up (both idle)", f"≤ {t['rss_growth_mb']:g} MB",
              f"{res.rss_end_mb - res.rss_warm_mb:+.1f} MB", res.rss_end_mb - res.rss_warm_mb <= t["rss_growth_mb"]),
        Check("descriptors but pooled connections, end − after warm-up (both idle)", f"≤ {t['fd_growth']:g}",
              f"{res.fds_end_rest - res.fds_warm_rest:+d} ({res.fds_warm_rest} → {res.fds_end_rest})",
              res.fds_end_rest - res.fds_warm_rest <= t["fd_growth"]),
        Check("client connections the gateway still holds at the end", "0", str(res.fds_end_downstream),
              res.fds_end_downstream == 0),
        Check("upstream connections left that can never be reused (stall, reset, cut, abandoned, cancelled)", "0",
              _kinds(left) or "0", not left),
        Check("store connections at the end (idle)", f"≤ {STORE_POOL} (the pool's size)",
              f"{res.store_connections_end} (after warm-up {res.store_connections_warm})",
              res.store_connections_end <= STORE_POOL),
        Check("idle tasks end − after warm-up", f"≤ {t['task_growth']:g}",
              f"{_delta(res.tasks_idle_after, res.tasks_idle_before)} "
              f"({res.tasks_idle_before} → {res.tasks_idle_after})", tasks_ok),
        Check("server exit code after SIGTERM", "0", str(res.exit_code), res.exit_code == 0),
    ]  # fmt: skip
    if drained:
        out.append(
            Check("upstream connections once idle ones had time to close", "0",
                  f"{res.fds_drained_upstream} after {res.drain_s:.0f} s ({res.fds_drained} descriptors)",
                  res.fds_drained_upstream == 0)
        )  # fmt: skip
    return out


def _delta(a: int | None, b: int | None) -> str:
    return "—" if a is None or b is None else f"{a - b:+d}"


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summarize(res: SoakResult, load: Load) -> None:
    for case in CASES:
        st = load.stats[case.name]
        res.cases[case.name] = {
            "share": case.share,
            "model": case.model,
            "stream": case.stream,
            "expect": case.expect,
            "status": case.status,
            "record_status": case.record_status,
            "cancel_after": case.cancel_after,
            "requests": st.requests,
            "ok": st.ok,
            "hung": st.hung,
            "wrong": st.wrong,
            "p50_ms": round(_pct(st.latencies_ms, 0.50), 2),
            "p99_ms": round(_pct(st.latencies_ms, 0.99), 2),
            "max_ms": round(max(st.latencies_ms, default=0.0), 2),
        }
    res.ended_correctly = sum(st.ok for st in load.stats.values())
    res.hung = sum(st.hung for st in load.stats.values())
    res.wrong = sum(st.wrong for st in load.stats.values())
    res.problems = load.problems + res.problems
    res.requests_per_s = res.requests / res.load_s if res.load_s else 0.0
    loads = [s for s in res.samples if s.phase in ("warm-up", "load")]
    res.rss_peak_mb = max([s.rss_mb for s in res.samples] + [res.rss_end_mb])
    res.fds_peak = max([s.fds for s in res.samples] + [res.fds_end])
    tasks = [s.tasks for s in loads if s.tasks is not None]
    res.tasks_peak = max(tasks) if tasks else None
    res.rss_slope_bytes_per_request = _slope(res.samples, res.warmup + (res.requests - res.warmup) // 2)
