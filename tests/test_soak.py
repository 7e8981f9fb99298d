"""The soak test's short form: ``bench.soak`` with 1,500 requests instead of 50,000.

A real ``modelway serve`` (one worker, SQLite store) in front of OpenAI simulators, under the soak's mix at
concurrency 32: non-stream requests and streams, streams the client abandons, requests it cancels before any answer,
failovers past 429, 500, a reset and a stall, and errors the client must see (502, an error event mid-stream, a cut
stream). Every request must end as its case expects, none may hang, every request must have exactly one usage record
with the right status, and RSS, descriptors and the worker's tasks must come back when the load stops
(``bench.soak.TOLERANCES``). The long form and its figures: ``python -m bench.soak`` (BENCHMARKS.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:  # `bench` is a directory of the repository, not an installed package
    sys.path.insert(0, _ROOT)

from bench.soak import CASES, TOLERANCES, SoakOptions, SoakResult, render_markdown, run_soak  # noqa: E402

pytestmark = pytest.mark.slow

REQUESTS = 1500


@pytest.fixture(scope="module")
def soak() -> SoakResult:
    # drain=0: no waiting for the gateway's idle upstream keep-alive connections to close (15-30 s, aiohttp's
    # cleanup); the long form does, here the connections that could never be reused are checked instead
    return run_soak(
        SoakOptions(requests=REQUESTS, concurrency=32, db="sqlite", drain=0, say=lambda msg: None,
                    command="tests/test_soak.py")
    )  # fmt: skip


def _report(res: SoakResult) -> str:
    return "\n" + render_markdown(res)


def test_every_request_ends_as_its_case_expects_and_none_hangs(soak: SoakResult) -> None:
    assert soak.requests == REQUESTS
    assert soak.hung == 0, _report(soak)
    assert soak.ended_correctly == REQUESTS, _report(soak)
    assert sum(soak.faults.values()) > 0.1 * REQUESTS  # the faults were really met (each failover retries once)
    assert all(c["requests"] > 0 for c in soak.cases.values())


def test_every_request_has_exactly_one_usage_record_with_its_status(soak: SoakResult) -> None:
    assert soak.records_lost == 0, _report(soak)
    assert soak.records_duplicated == 0, _report(soak)
    assert soak.records_unknown == 0, _report(soak)
    assert soak.records_wrong_status == 0, _report(soak)
    assert soak.records_wrong_deployment == 0, _report(soak)
    assert soak.records == REQUESTS
    want: dict[str, int] = {}
    for case in CASES:  # abandoned and cancelled: 499; the errors: 502
        status = str(case.record_status)
        want[status] = want.get(status, 0) + soak.cases[case.name]["requests"]
    assert soak.record_statuses == want


def test_descriptors_and_idle_tasks_come_back(soak: SoakResult) -> None:
    assert soak.fds_end_downstream == 0, _report(soak)
    assert soak.fds_end_rest - soak.fds_warm_rest <= TOLERANCES["fd_growth"], _report(soak)
    assert soak.tasks_idle_before is not None and soak.tasks_idle_after is not None
    assert soak.tasks_idle_after - soak.tasks_idle_before <= TOLERANCES["task_growth"], _report(soak)
    failed = [c for c in soak.checks if not c.ok]
    assert not failed, _report(soak)


def test_rss_growth_is_within_the_tolerance(soak: SoakResult) -> None:
    assert soak.rss_end_mb - soak.rss_warm_mb <= TOLERANCES["rss_growth_mb"], _report(soak)


def test_the_server_exits_0_on_sigterm_after_flushing(soak: SoakResult) -> None:
    assert soak.exit_code == 0, _report(soak)
    assert soak.server_log_tracebacks == 0, _report(soak)
