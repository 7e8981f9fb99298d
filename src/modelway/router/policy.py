"""How one model is routed: a :class:`RoutingPolicy` per model group, with defaults equal to the router's behaviour
before policies existed (weighted random, every deployment once with the retry policy's retries in place, the
router's fixed cooldown after a failure, no fallbacks, no hedging, no queue wait beyond the quotas').

Per-deployment quotas are a :class:`Quota` on the :class:`~modelway.router.Deployment` (``quota=``), since they
protect one provider account, not one model.

The config (``routing:`` per model) produces these; they are plain frozen dataclasses so that the config layer,
the admin API and tests can build them without the router.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["CircuitSettings", "HedgeSettings", "Quota", "RoutingPolicy"]


@dataclass(frozen=True, slots=True)
class CircuitSettings:
    """When a deployment's circuit opens, and for how long (see :mod:`modelway.router.circuit`)."""

    #: consecutive failures that open the circuit
    failures: int = 5
    #: ... or this share of failed requests (0-1) ...
    error_rate: float = 0.5
    #: ... over at least this many requests ...
    min_requests: int = 10
    #: ... finished in the last ``window`` seconds
    window: float = 30.0
    #: seconds the circuit stays open before one probe is let through
    cooldown: float = 30.0
    #: a failed probe doubles the cooldown, up to this
    max_cooldown: float = 300.0
    #: seconds before the first probe after an account failure (refused key, no balance, exhausted quota)
    account_cooldown: float = 60.0

    def __post_init__(self) -> None:
        if self.failures < 1 or self.min_requests < 1:
            raise ValueError("circuit failures and min_requests must be >= 1")
        if not 0.0 < self.error_rate <= 1.0:
            raise ValueError("circuit error_rate must be in (0, 1]")
        for name in ("window", "cooldown", "max_cooldown", "account_cooldown"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"circuit {name} must be a finite number of seconds >= 0 (got {v!r})")
        if self.max_cooldown < self.cooldown:
            raise ValueError(
                f"circuit max_cooldown ({self.max_cooldown:g}) must be >= cooldown ({self.cooldown:g}): "
                "a failed probe doubles the cooldown up to it"
            )


@dataclass(frozen=True, slots=True)
class HedgeSettings:
    """Start the same request on a second deployment when the first has produced no output after ``after``
    seconds; the first to produce output wins and the other is cancelled (see :mod:`modelway.router.hedge`)."""

    #: seconds, or ``"p95"``: the 95th percentile of the first deployment's observed times (to the first output for
    #: a stream, to the whole answer for other requests)
    after: float | Literal["p95"] = "p95"
    #: with ``"p95"``: the samples needed before the percentile is trusted
    min_samples: int = 20
    #: with ``"p95"`` and too few samples: hedge after this many seconds (``None``: do not hedge yet)
    default: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.after, str):
            if self.after != "p95":
                raise ValueError('hedge after must be a number of seconds or "p95"')
        elif not math.isfinite(self.after) or self.after < 0:
            raise ValueError(f"hedge after must be a finite number of seconds >= 0 (got {self.after!r})")
        if self.default is not None and (not math.isfinite(self.default) or self.default < 0):
            raise ValueError(f"hedge default must be a finite number of seconds >= 0 or None (got {self.default!r})")
        if self.min_samples < 1:
            raise ValueError("hedge min_samples must be >= 1")


@dataclass(frozen=True, slots=True)
class Quota:
    """What one deployment (one provider account or endpoint) may take: ``None`` is unlimited."""

    #: requests in flight at once (a stream counts until it ends)
    max_concurrent: int | None = None
    #: requests admitted in any 60 seconds
    rpm: int | None = None
    #: tokens in any 60 seconds: estimated from the request's size at admission, corrected by the answer's usage
    tpm: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_concurrent", "rpm", "tpm"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"quota {name} must be >= 1 or None")

    @property
    def limited(self) -> bool:
        return self.max_concurrent is not None or self.rpm is not None or self.tpm is not None


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    """How the router serves one model. Every default is the behaviour of a model without a ``routing:`` section."""

    #: a name from :data:`modelway.router.strategies.STRATEGIES`
    strategy: str = "weighted"
    #: upstream requests for one call, over all deployments: each attempt goes to a deployment not tried yet while
    #: there is one, then round again (``None``: every deployment once, each retried in place as the router's
    #: :class:`~modelway.retry.RetryPolicy` says: the behaviour before policies)
    max_attempts: int | None = None
    #: seconds for the whole call, every attempt and wait included (streams: until their first output)
    timeout: float | None = None
    #: other models tried in order when every deployment of this one failed
    fallbacks: tuple[str, ...] = ()
    #: ... when the prompt is too long for this model (to models with a longer context)
    context_window_fallbacks: tuple[str, ...] = ()
    #: ... when this model's content filter refused the request
    content_filter_fallbacks: tuple[str, ...] = ()
    #: circuit breakers (``None``: the router's fixed cooldown after each failure, cooling deployments tried last)
    circuit: CircuitSettings | None = None
    #: hedged requests (``None``: off)
    hedge: HedgeSettings | None = None
    #: callers that may wait while every deployment is at its quota (beyond that: 429 at once)
    queue_depth: int = 100
    #: seconds a caller waits in that queue before a 429 with ``Retry-After``
    queue_wait: float = 10.0
    #: the ``cost`` strategy compares deployments' prices for a request of this size
    typical_prompt_tokens: int = 1000
    typical_completion_tokens: int = 250

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1 or None")
        if self.timeout is not None and (not math.isfinite(self.timeout) or self.timeout <= 0):
            raise ValueError(f"timeout must be a finite number of seconds > 0 or None (got {self.timeout!r})")
        if self.queue_depth < 0:
            raise ValueError("queue_depth must be >= 0")
        if not math.isfinite(self.queue_wait) or self.queue_wait < 0:
            raise ValueError(f"queue_wait must be a finite number of seconds >= 0 (got {self.queue_wait!r})")
