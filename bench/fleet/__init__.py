"""``python -m bench.fleet``: the fleet test. N ``modelway serve --workers W`` replicas (3 x 2 by default) behind
nginx on one PostgreSQL database and one Redis, as ``docker-compose.yaml`` runs them, all on this machine; under mixed
load (streams and not, several keys, concurrent aiohttp clients through nginx) it shows that the fleet behaves as one
gateway:

1. a key's rpm limit and budget hold across the fleet exactly (:mod:`.limits`);
2. a key created through one replica works on all at once, and one revoked through one is refused by all within
   ``store.key_refresh``, measured per replica (:mod:`.control`);
3. a deployment disabled through one replica is skipped by all within the run-time poll (:mod:`.control`);
4. one replica SIGKILLed mid-load (its whole process group) loses no usage record of a request a surviving replica
   answered, and at most the records of its own requests in flight, counted; its journal's records arrive when it
   restarts (:mod:`.failures`, :mod:`.records`);
5. a rolling restart (SIGTERM each replica in turn, exit 0, start again, ready, routed by nginx again, next) under
   steady load fails no request (:mod:`.failures`);

and measures what a request costs a replica in CPU, for sizing (:mod:`.sizing`). It prints a markdown report
(:mod:`.report`) and exits 1 when a check fails. The short form runs in the test suite: tests/fleet/test_fleet.py.
Processes: :mod:`.rig` (every child in its own process group, all stopped at the end); the upstreams:
:mod:`.upstream`; the clients: :mod:`.client`. Where the shared in-flight counts go once the load stops (cut
streams, SIGTERM, SIGKILL): ``python -m bench.fleet.leases`` (:mod:`.leases`).
"""

from .report import render_markdown
from .run import FleetRun, RunOptions, run_fleet

__all__ = ["FleetRun", "RunOptions", "render_markdown", "run_fleet"]
