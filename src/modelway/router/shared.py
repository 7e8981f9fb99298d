"""Router state shared by every worker and replica: the seam between the failover loop and a shared backend.

Without a backend (``Router(shared=None)``, the default) the router keeps everything in process, as it always did.
With one (:class:`~modelway.router.shared_redis.RedisRouterState`, when the gateway has ``store.redis_url``), these
are shared by all the processes that use the same Redis:

- **circuit states**: a failure seen by one process counts for all; an open circuit is skipped by all; after the
  cooldown exactly one request across all processes is the half-open probe, and its verdict closes or reopens the
  circuit for all;
- **per-deployment quotas** (``max_concurrent``, ``rpm``, ``tpm``): exact across processes, checked and taken in
  one atomic step;
- **requests in flight** per deployment (the ``least_busy`` strategy, ``GET /admin/deployments``);
- **latency averages** (moving averages of time to first output and total time): approximate, merged now and then.

Each process keeps its own view as well (the :class:`~modelway.router.CircuitBreaker`,
:class:`~modelway.router.quotas.QuotaUsage` and :class:`~modelway.router.stats.DeploymentStats` of each
deployment): the shared state overwrites it whenever the backend answers, and it is what the router uses while the
backend cannot be reached. **Routing state fails open**: a backend that is down, slow or refusing never fails a
request; the process routes on its own view (quotas then hold per process), says so once in the log, and goes back
to the shared state once the backend answers again.

A deployment's shared identity is its address (``provider/model``) and a stable id derived from its provider, base
URL, upstream model and credentials (:func:`deployment_key`): the same upstream configured in several processes is
one deployment, two deployments of one provider model with different keys are two.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..errors import ModelwayError
    from .deployments import Deployment
    from .policy import CircuitSettings
    from .router import Router

__all__ = ["Admission", "SharedState", "deployment_key"]


@dataclass(frozen=True, slots=True)
class Admission:
    """The backend's answer to an admission: admitted (as the probe or not, holding ``lease``), or refused with how
    long until the deployment may have room (``0``: refused by its circuit; ``inf``: when a request ends)."""

    admitted: bool
    probe: bool = False
    lease: str | None = None
    wait: float = 0.0


REFUSED_BY_CIRCUIT = Admission(False, wait=0.0)
REFUSED_UNTIL_RELEASE = Admission(False, wait=math.inf)


class SharedState(Protocol):
    """What the failover loop asks of a shared backend. Every method fails open: a backend that cannot answer makes
    :meth:`admit` return ``None`` (the caller uses its own view) and the reports do nothing."""

    def bind(self, router: Router) -> None:
        """Serve ``router`` (its deployments are the ones kept in sync)."""
        ...

    def needs_admission(self, dep: Deployment, circuit: CircuitSettings | None) -> bool:
        """Whether admitting a request at ``dep`` must wait for the backend (a circuit or a quota to check now)."""
        ...

    async def admit(
        self, dep: Deployment, circuit: CircuitSettings | None, tokens: int, lease: float
    ) -> Admission | None:
        """Check and take ``dep``'s circuit pass and quota slot in one step; ``None``: the backend is unavailable.
        ``lease``: seconds the request may run (a probe's pass and a slot of a process that died expire)."""
        ...

    def started(self, dep: Deployment) -> str | None:
        """A request started at ``dep`` without :meth:`admit` (nothing to check): count it in flight; its lease."""
        ...

    def outcome(
        self, dep: Deployment, settings: CircuitSettings, *, probe: bool, lease: str | None, error: ModelwayError | None
    ) -> None:
        """An attempt's verdict for ``dep``'s circuit (``error`` ``None``: a success)."""
        ...

    def abandoned(self, dep: Deployment, lease: str | None, *, probe: bool) -> None:
        """An attempt ended without a verdict: a probe lets the next request, of any process, probe."""
        ...

    def release(self, dep: Deployment, lease: str, tokens: int | None) -> None:
        """Give back the place in flight and quota slot of ``lease`` (``tokens``: the answer's usage, for TPM)."""
        ...

    async def aclose(self) -> None: ...


def deployment_key(dep: Deployment) -> str:
    """``address#id``: the deployment's address and 12 hex digits of a hash of its provider, base URL, upstream
    model and credentials (stable across processes and restarts; the key itself is not recoverable from it)."""
    adapter = dep.adapter
    ident = "\0".join((adapter.name, adapter.base_url, dep.model, adapter.api_key or ""))
    digest = hashlib.sha256(ident.encode()).hexdigest()[:12]
    address = dep.address.replace("{", "(").replace("}", ")")  # braces are Redis Cluster's hash tag
    return f"{address}#{digest}"
