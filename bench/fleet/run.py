"""One run of the fleet test (:func:`run_fleet`): the fleet, then each phase in turn, then the records.

1. the fleet starts (:mod:`.rig`); three keys without limits carry the steady load ("several keys");
2. optionally, sizing (:mod:`.sizing`): steady non-stream load, then steady streams, CPU measured;
3. under mixed load over those keys: an rpm limit and a budget (:mod:`.limits`), a key created and revoked
   (:mod:`.control`);
4. a deployment disabled under load (:mod:`.control`);
5. one replica SIGKILLed under load and restarted (:mod:`.failures`);
6. a rolling restart under load (:mod:`.failures`);
7. every replica SIGTERMed (each must exit 0), then every request matched with its usage record (:mod:`.records`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .client import Answer, Client, admin
from .control import DeploymentResult, KeyResult, deployment_phase, key_phase
from .failures import KillResult, Restart, RollingResult, kill_phase, rolling_phase, stop_all
from .limits import BudgetResult, RpmResult, budget_phase, rpm_phase
from .records import Accounting, account
from .rig import Fleet, FleetOptions
from .sizing import Steady, idle_cpu, steady_phase

__all__ = ["FleetRun", "RunOptions", "run_fleet"]


@dataclass
class RunOptions:
    fleet: FleetOptions
    #: the steady load of every phase (requests per second, clients)
    rps: float = 80.0
    concurrency: int = 8
    #: seconds of each sizing load (0: no sizing), at this rate and concurrency
    sizing_seconds: float = 0.0
    sizing_rps: float = 300.0
    sizing_concurrency: int = 48
    rpm: int = 20
    rpm_sent: int = 30
    budget: float = 0.5
    max_parallel: int = 2
    #: seconds of load before and after the SIGKILL
    kill_before: float = 2.0
    kill_after: float = 2.0
    #: rolling restarts, one after the other (each replica once per round)
    rounds: int = 1
    command: str = ""


@dataclass
class FleetRun:
    opts: RunOptions
    started: float = 0.0  # seconds to start the fleet
    sizing: list[Steady] = field(default_factory=list)
    mixed: list[Answer] = field(default_factory=list)  # the steady load under the limits and keys phases
    rpm: RpmResult | None = None
    budget: BudgetResult | None = None
    keys: KeyResult | None = None
    deployments: DeploymentResult | None = None
    kill: KillResult | None = None
    rolling: RollingResult | None = None
    stopped: list[Restart] = field(default_factory=list)
    records: Accounting | None = None
    seconds: float = 0.0
    fleet: Fleet | None = None

    def problems(self) -> list[str]:
        out: list[str] = []
        for s in self.sizing:
            out += s.problems()
        failed = [a for a in self.mixed if not a.ok]
        if failed:
            out.append(f"{len(failed)} requests of the mixed load failed: {[(a.rid, a.error) for a in failed[:3]]}")
        for part in (self.rpm, self.budget, self.keys, self.deployments, self.rolling, self.records):
            if part is not None:
                out += part.problems()
        if self.kill is not None and self.fleet is not None:
            out += self.kill.problems(self.fleet)
        for stop in self.stopped:
            if stop.exit_status != 0 or stop.stragglers:
                out.append(f"{stop.replica} at the end: exit status {stop.exit_status}, {stop.stragglers} left")
        return out


def run_fleet(opts: RunOptions, say: Callable[[str], None] = lambda msg: None) -> FleetRun:
    """Every phase on one fleet; the fleet is stopped and its database dropped at the end, whatever happens."""
    run = FleetRun(opts)
    t0 = time.monotonic()
    with Fleet(opts.fleet, say=say) as fleet:
        run.fleet = fleet
        run.started = time.monotonic() - t0
        keys = {}
        for i in range(3):
            status, made = admin(fleet.replicas[0].url, "POST", "/admin/keys", {"name": f"fleet-load-{i}"})
            if status != 201:
                raise RuntimeError(f"POST /admin/keys: {status} {made}")
            keys[f"load-{i}"] = made["key"]
        with Client(fleet.lb_url) as client:
            if opts.sizing_seconds > 0:
                idle = idle_cpu(fleet)
                loads = [("non-stream", 0.0, opts.sizing_rps / 2), ("non-stream", 0.0, opts.sizing_rps),
                         ("stream", 1.0, opts.sizing_rps / 2)]  # fmt: skip
                for kind, share, rps in loads:
                    say(f"sizing: {kind}, {opts.sizing_seconds:g} s at {rps:g} requests/s")
                    steady = steady_phase(fleet, client, keys, label=f"{kind} at {rps:g}/s", stream_share=share,
                                          seconds=opts.sizing_seconds, rps=rps, concurrency=opts.sizing_concurrency,
                                          idle=idle)  # fmt: skip
                    run.sizing.append(steady)
            say("limits and keys, under mixed load")
            bg = client.background("mixed", keys, concurrency=opts.concurrency, rps=opts.rps)
            try:
                run.rpm = rpm_phase(fleet, client, rpm=opts.rpm, sent=opts.rpm_sent)
                run.budget = budget_phase(fleet, client, budget=opts.budget, max_parallel=opts.max_parallel)
                run.keys = key_phase(fleet, client)
            finally:
                run.mixed = bg.stop()
            say("a deployment disabled")
            run.deployments = deployment_phase(fleet, client, keys, concurrency=opts.concurrency, rps=opts.rps)
            say("SIGKILL of one replica")
            run.kill = kill_phase(fleet, client, keys, before=opts.kill_before, after=opts.kill_after,
                                  concurrency=opts.concurrency + 4, rps=opts.rps * 1.5)  # fmt: skip
            say("rolling restart")
            run.rolling = rolling_phase(fleet, client, keys, concurrency=opts.concurrency, rps=opts.rps,
                                        rounds=opts.rounds)  # fmt: skip
            say("SIGTERM to every replica; the records")
            run.stopped = stop_all(fleet)
            run.records = account(fleet, client.answers, run.kill.victim)
    run.seconds = time.monotonic() - t0
    return run
