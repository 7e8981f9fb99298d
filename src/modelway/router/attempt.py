"""One upstream request of a call (:class:`Attempt`): what it holds from admission to its end, and its verdict.

An attempt holds its place in flight, its quota slot (and its place in the shared state), and, when its circuit let
it through half-open, the circuit's probe. It gives them back exactly once however it ends: answered (a stream:
ended), failed, cancelled; even when a strategy's own ``observe`` raises (the error then reaches the caller, but
nothing is kept).

What an ended attempt leaves in its deployment's TPM window: the answer's usage when it is known, nothing for a
failure (the provider refused the request), the prompt's estimate for one cancelled or cut by the model's time
budget (the provider may have read the prompt), the admission estimate for a stream cut after its first output
with no usage reported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ModelwayError, ProviderError, RateLimitError
from .strategies import Outcome

if TYPE_CHECKING:
    from .deployments import Deployment
    from .failover import Failover
    from .policy import CircuitSettings
    from .quotas import Slot

__all__ = ["Attempt"]


class Attempt:
    """One upstream request at one deployment, from admission to its end."""

    __slots__ = ("budgeted", "circuit", "dep", "done", "failover", "lease", "probe", "slot", "started")

    def __init__(
        self,
        failover: Failover[Any],
        dep: Deployment,
        probe: bool,
        slot: Slot | None,
        lease: str | None = None,
        circuit: CircuitSettings | None = None,
    ) -> None:
        self.failover = failover
        self.dep = dep
        #: the circuit's half-open probe (until its verdict is given)
        self.probe = probe
        self.slot = slot
        #: the attempt's place in the shared state (``None``: not shared)
        self.lease = lease
        #: the model's circuit settings when the attempt was admitted (a probe's verdict is given by them)
        self.circuit = circuit
        self.done = False
        #: the attempt's timeout is the model's remaining time budget (shorter than the deployment's own)
        self.budgeted = False
        self.started = failover.router.clock()
        dep.stats.started()

    def _settings(self) -> CircuitSettings | None:
        """The circuit settings a verdict is given by: the model's now; a probe's verdict is given whatever the
        policy became since (else the circuit would stay half-open)."""
        settings = self.failover.group.policy.circuit
        return self.circuit if settings is None and self.probe else settings

    def succeeded(self) -> None:
        """The whole answer, or a stream's first output, arrived (the attempt goes on until :meth:`finish`)."""
        f = self.failover
        now = f.router.clock()
        seconds = now - self.started
        if f.stream:
            self.dep.stats.observe_ttft(seconds)
        else:
            self.dep.stats.observe_total(seconds)
        settings = self._settings()
        if settings is not None:
            self.dep.circuit.success(now, settings, probe=self.probe)
            if f.router.shared is not None:
                f.router.shared.outcome(self.dep, settings, probe=self.probe, lease=self.lease, error=None)
        self.probe = False  # the verdict is given: a stream cut after this is an ordinary failure
        observer = f.group.observer
        if observer is not None:
            observer.observe(self.dep, Outcome(True, f.stream, seconds))

    def failed(self, exc: ModelwayError, *, tokens: int | None = 0, defer: bool = False) -> None:
        """The deployment's fault (any error but a bad request): count it, and keep away from the deployment.

        ``tokens``: what stays in the TPM window (``0``: refused, nothing billed; ``None``: the admission
        estimate). ``defer``: the deployment may still be retried in place in this call: its cooldown and
        ``on_failure`` wait until the call gives it up (:meth:`Failover.let_go`)."""
        f = self.failover
        router, dep = f.router, self.dep
        try:
            now = router.clock()
            dep.stats.failed(now)
            retry_after = exc.retry_after if isinstance(exc, ProviderError) else None
            settings = self._settings()
            if settings is not None:
                if retry_after:
                    dep.cool_down(retry_after, now)
                if not (retry_after and not self.probe and isinstance(exc, RateLimitError)):  # no outage: a 429
                    dep.circuit.failure(now, settings, exc, probe=self.probe)  # saying when
                    if router.shared is not None:
                        router.shared.outcome(dep, settings, probe=self.probe, lease=self.lease, error=exc)
            self.probe = False
            if defer:
                f.pending[dep] = exc
            else:
                f.fault(dep, exc)
            observer = f.group.observer
            if observer is not None:
                observer.observe(dep, Outcome(False, f.stream, None))
        finally:
            self.finish(tokens)

    def abandoned(self, tokens: int | None = None) -> None:
        """Ended without a verdict (cancelled, stopped by the model's own time budget, or refused as a bad request:
        ``tokens=0``); what stays in the TPM window is the prompt's estimate unless ``tokens`` says."""
        if self.done:
            return
        f = self.failover
        try:
            self.dep.circuit.abandon(f.router.clock(), probe=self.probe)
            if f.router.shared is not None:
                f.router.shared.abandoned(self.dep, self.lease, probe=self.probe)
        finally:
            if tokens is None and (self.slot is not None or self.lease is not None):
                tokens = f.prompt_estimate()
            self.finish(tokens)

    def lost(self) -> None:
        """Cancelled as a hedge's loser: it took at least this long, which the latency averages learn when it is
        more than they say (so a deployment that turned slow stops being preferred)."""
        f = self.failover
        seconds = f.router.clock() - self.started
        stats = self.dep.stats
        average = stats.ttft if f.stream else stats.total
        if average is None or seconds > average:
            stats.observe(seconds, stream=f.stream)
        self.abandoned()

    def finish(self, tokens: int | None = None) -> None:
        """Give back the place in flight and the quota slot (``tokens``: the answer's usage, for the TPM window;
        ``None``: keep the admission estimate)."""
        if self.done:
            return
        self.done = True
        self.dep.stats.ended()
        slot = self.slot
        if slot is not None:
            if tokens is not None:
                slot.settle(tokens)
            slot.release()
        if self.lease is not None:
            shared = self.failover.router.shared
            if shared is not None:
                shared.release(self.dep, self.lease, tokens)
