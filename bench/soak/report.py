"""The soak's report: a markdown table of every figure and the verdict (:func:`render_markdown`), and JSON."""

from __future__ import annotations

import dataclasses
import json

from .cases import FAULTS
from .result import TOLERANCES, SoakResult


def _n(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def _kinds(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items())


def render_markdown(res: SoakResult) -> str:
    verdict = "**PASS**" if res.passed else "**FAIL**"
    faults_total = sum(res.faults.values())
    fault_parts = ", ".join(f"{FAULTS[k][1]} {v:,}" for k, v in res.faults.items())
    slope = res.rss_slope_bytes_per_request
    lines = [
        f"### Soak: {res.requests:,} requests, concurrency {res.concurrency}, {res.db} store — {verdict}",
        "",
        f"Run {res.started}: `{res.command}` — {res.wall_s:.0f} s ({res.load_s:.0f} s of load). "
        f"Machine: {res.machine.get('cpu', '?')}, {res.machine.get('cores', '?')} cores. Seed {res.seed}; "
        f"the first {res.warmup:,} requests are the warm-up. CPU over the load (warm-up and quiet included): server "
        f"{res.server_cpu_s:.0f} s ({res.server_cpu_s / max(res.requests, 1) * 1000:.2f} ms a request), client and "
        f"simulators {res.harness_cpu_s:.0f} s.",
        "",
        "| requests | faults injected | ended correctly | hung | records lost | records duplicated | req/s |",
        "|---|---|---|---|---|---|---|",
        f"| {res.requests:,} | {faults_total:,} | {res.ended_correctly:,} | {res.hung} | {res.records_lost} | "
        f"{res.records_duplicated} | {res.requests_per_s:,.0f} |",
        "",
        "| RSS MB: start / after warm-up / peak / end | descriptors: start / after warm-up / peak / end "
        "(upstream keep-alive at end) | tasks: start / idle before / peak / idle after | RSS slope, 2nd half |",
        "|---|---|---|---|",
        f"| {res.rss_start_mb:.1f} / {res.rss_warm_mb:.1f} / {res.rss_peak_mb:.1f} / {res.rss_end_mb:.1f} | "
        f"{res.fds_start} / {res.fds_warm} / {res.fds_peak} / {res.fds_end} ({sum(res.fds_end_upstream.values())})"
        + (f"; {res.fds_drained} after {res.drain_s:.0f} s" if res.fds_drained is not None else "")
        + f" | {_n(res.tasks_start)} / {_n(res.tasks_idle_before)} / {_n(res.tasks_peak)} / "
        f"{_n(res.tasks_idle_after)} | " + ("—" if slope is None else f"{slope:+.1f} B/request") + " |",
        "",
        f"Faults injected by kind: {fault_parts}. Usage records: {res.records:,} "
        f"(statuses {', '.join(f'{k}: {v:,}' for k, v in res.record_statuses.items())}); cancelled before the "
        f"request was written (no record due): {res.cancelled_unsent} ({res.cancelled_unsent_recorded} recorded "
        f"all the same). Server: exit code {res.exit_code} after SIGTERM; {res.server_log_errors} ERROR lines, "
        f"{res.server_log_tracebacks} tracebacks in its log.",
        "",
        f"Descriptors but connections, idle after warm-up: {_kinds(res.fds_warm_kinds)}; at the end: "
        f"{_kinds(res.fds_end_kinds)}. Store connections after warm-up / at the end: {res.store_connections_warm} / "
        f"{res.store_connections_end}. Upstream keep-alive connections at the end: "
        f"{_kinds(res.fds_end_upstream) or 'none'}.",
        "",
        "| case | share | requests | stream | client must see | record | ended correctly | hung | wrong | "
        "p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in res.cases.items():
        sees = {
            "answer": "200, whole answer" + (", [DONE]" if c["stream"] else ""),
            "abandon": "200, first content (then hangs up)",
            "cancel": f"nothing in {c['cancel_after']:g} s (then hangs up)",
            "http_error": f"{c['status']} error body",
            "sse_error": "200, then an error event",
        }[c["expect"]]
        lines.append(
            f"| {name} | {c['share']:.2%} | {c['requests']:,} | {'yes' if c['stream'] else 'no'} | {sees} | "
            f"{c['record_status']} | {c['ok']:,} | {c['hung']} | {c['wrong']} | {c['p50_ms']:,.1f} | "
            f"{c['p99_ms']:,.1f} | {c['max_ms']:,.1f} |"
        )
    lines += ["", "| check | tolerance | measured | status |", "|---|---|---|---|"]
    for ch in res.checks:
        lines.append(f"| {ch.name} | {ch.tolerance} | {ch.measured} | {'met' if ch.ok else '**MISSED**'} |")
    if res.problems:
        lines += ["", f"Requests that did not end as expected (first {min(len(res.problems), 20)}):", ""]
        lines += [f"- `{p['request_id']}` ({p['case']}): {p['why']}" for p in res.problems[:20]]
    if res.server_log_excerpt:
        lines += ["", "Server log errors (first lines):", ""]
        lines += [f"    {line}" for line in res.server_log_excerpt[:10]]
    if res.notes:
        lines += ["", *[f"Note: {n}" for n in res.notes]]
    return "\n".join(lines) + "\n"


def to_json(res: SoakResult) -> str:
    body = dataclasses.asdict(res)
    body["passed"] = res.passed
    body["tolerances"] = TOLERANCES
    return json.dumps(body, indent=2, ensure_ascii=False)
