"""The fleet test's short form: ``bench.fleet`` with 3 replicas of 2 workers behind nginx on the suite's PostgreSQL
(a database of its own, dropped afterwards) and Redis, a short load at ~60 requests/s, no sizing.

One run (:func:`bench.fleet.run_fleet`) serves every test below; each checks one claim of the fleet (issue 14), with
the exact numbers the design allows. Skipped where nginx is not installed. The long form and its figures:
``python -m bench.fleet`` (BENCHMARKS.md, "Fleet").
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:  # `bench` is a directory of the repository, not an installed package
    sys.path.insert(0, _ROOT)

from bench.fleet import FleetRun, RunOptions, render_markdown, run_fleet  # noqa: E402
from bench.fleet.rig import COST, FleetOptions, nginx_path  # noqa: E402

pytestmark = [
    pytest.mark.fleet,
    pytest.mark.skipif(nginx_path() is None, reason="nginx is not installed (apt-get install nginx)"),
]

KEY_REFRESH = 2.0
RPM = 20


@pytest.fixture(scope="module")
def run(postgres_server: None, redis_server: None) -> FleetRun:
    from services import PG_URL, redis_url

    fleet = FleetOptions(PG_URL, redis_url(10), replicas=3, workers=2, key_refresh=KEY_REFRESH)
    opts = RunOptions(fleet, rps=60.0, concurrency=8, rpm=RPM, rpm_sent=30, budget=0.5, max_parallel=2,
                      kill_before=1.5, kill_after=1.0, command="tests/fleet/test_fleet.py")  # fmt: skip
    result = run_fleet(opts)
    print("\n" + render_markdown(result))
    return result


def test_the_mixed_load_is_served_by_every_replica(run: FleetRun) -> None:
    assert run.mixed and all(a.ok for a in run.mixed), [a for a in run.mixed if not a.ok][:3]
    assert run.fleet is not None
    assert {run.fleet.replica_of(a.upstream) for a in run.mixed} == set(run.fleet.replicas)
    assert {a.stream for a in run.mixed} == {True, False} and len({a.key for a in run.mixed}) == 3


def test_an_rpm_limit_holds_across_the_fleet(run: FleetRun) -> None:
    rpm = run.rpm
    assert rpm is not None
    assert rpm.problems() == []
    assert (rpm.ok, rpm.refused) == (RPM, rpm.sent - RPM)
    assert len(rpm.ok_by_replica) >= 2


def test_a_budget_holds_across_the_fleet(run: FleetRun) -> None:
    b = run.budget
    assert b is not None
    assert b.problems() == []
    # every request costs 0.0625; budget 0.5; max_parallel 2: 8 or 9 admitted, and spend counted exactly
    assert b.cost == COST == 0.0625 and (b.least, b.most) == (8, 9)
    assert 8 <= b.admitted <= 9
    assert b.redis_spend == b.stored_spend == b.admitted * COST
    assert b.refusals["budget_exceeded"] >= 1


def test_a_key_created_or_revoked_through_one_replica_reaches_all(run: FleetRun) -> None:
    k = run.keys
    assert k is not None
    assert k.problems() == []
    for name in k.created.workers:
        took = k.created.reached(name)
        assert took is not None and took < 1.5, (name, took)
    for name in k.revoked.workers:
        took = k.revoked.reached(name)
        assert took is not None and took <= KEY_REFRESH + 1.5, (name, took)
    assert sorted(k.revoked.workers) == ["r0", "r1", "r2"]


def test_a_deployment_disabled_through_one_replica_is_skipped_by_all(run: FleetRun) -> None:
    d = run.deployments
    assert d is not None
    assert d.problems() == []
    assert all(n > 0 for n in d.after.values()), d.after
    assert d.reenabled


def test_a_sigkilled_replica_loses_only_its_requests_in_flight(run: FleetRun) -> None:
    k, acc = run.kill, run.records
    assert k is not None and acc is not None and run.fleet is not None
    assert k.problems(run.fleet) == []
    # the journal: what the killed replica answered is all stored once it restarted
    assert k.dead_segments and not k.left_after_restart
    assert k.stored_after_restart == k.answered_by_victim > 0
    # the only failures of the whole run are the killed replica's requests in flight
    assert acc.failed == len(k.failed)
    assert not acc.lost_elsewhere


def test_a_rolling_restart_fails_no_request(run: FleetRun) -> None:
    r = run.rolling
    assert r is not None
    assert r.problems() == []
    assert [s.exit_status for s in r.restarts] == [0, 0, 0]
    assert len(r.answers) > 100 and not r.failed


def test_every_answered_request_has_its_usage_record(run: FleetRun) -> None:
    acc = run.records
    assert acc is not None
    assert acc.problems() == []
    assert acc.expected == acc.sent - acc.failed and acc.stored == acc.expected + acc.failed_recorded
    assert [s.exit_status for s in run.stopped] == [0, 0, 0]
    assert run.problems() == []
