"""Rate limits and budgets of virtual keys: what a limiter checks, and the error a caller gets.

Limits count in fixed windows: requests and tokens per calendar minute (UTC), spend per budget period (the key's
whole life, a UTC day or a UTC month), and requests in flight. ``acquire`` checks every limit of a key and counts
the request in one step; ``release`` adds the tokens and cost the request used once it is over, and frees its
place in flight. Tokens are known only at the end, so a key may go over its ``tpm`` or budget by the request in
flight when the limit is reached; the next request is then refused. The in-process limiter is exact for one
worker; the Redis limiter is exact for any number of workers and replicas (one Lua script per check).
"""

from __future__ import annotations

import abc
import calendar
import time
from dataclasses import dataclass

from ..errors import InvalidRequestError, ServiceUnavailableError

__all__ = [
    "LimitExceededError",
    "Limiter",
    "LimiterUnavailableError",
    "Limits",
    "Permit",
    "SpendNotSeeded",
    "minute_window",
    "period_window",
]


@dataclass(slots=True, frozen=True)
class Limits:
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    budget: float | None = None
    #: ``total``, ``day`` or ``month``
    budget_period: str = "total"

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.rpm, self.tpm, self.max_parallel, self.budget))


@dataclass(slots=True)
class Permit:
    """A request admitted by :meth:`Limiter.acquire`; hand it back to :meth:`Limiter.release` exactly once."""

    subject: str
    limits: Limits
    #: an id for this request's place in flight
    token: str
    #: the minute window the request was counted in (Unix seconds of its start)
    window: int
    #: requests left in the window after this one (``None`` without an rpm limit), for rate-limit headers
    remaining_requests: int | None = None
    #: tokens left in the window before this request (``None`` without a tpm limit)
    remaining_tokens: int | None = None
    #: seconds until the window resets
    reset: float = 0.0
    released: bool = False


class LimitExceededError(InvalidRequestError):
    """A virtual key is over one of its limits (answered 429 with ``Retry-After``).

    ``code`` says which: ``rate_limit_exceeded`` (rpm, tpm), ``max_parallel_exceeded`` or ``budget_exceeded``.
    """

    http_status = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str, *, code: str, limit: str, retry_after: float | None) -> None:
        super().__init__(message, code=code)
        #: which limit: ``rpm``, ``tpm``, ``max_parallel`` or ``budget``
        self.limit = limit
        self.retry_after = retry_after


class LimiterUnavailableError(ServiceUnavailableError):
    """The limiter's store (Redis) cannot be reached or failed (answered 503): the request is refused rather than
    admitted unlimited. The message names the store (without its password) and the cause; the gateway logs it and
    tells its caller less."""


class SpendNotSeeded(Exception):
    """:meth:`Limiter.acquire` must check a budget, but the spend counter of ``subject`` for the period starting at
    ``period_start`` (Unix seconds; 0 for ``total``) does not exist. Nothing was counted. The caller reads the
    period's spend from the ledger, calls :meth:`Limiter.seed_spend` and acquires again.

    An internal signal between the limiter and the control plane, never answered to a client.
    """

    def __init__(self, subject: str, period: str, period_start: int) -> None:
        super().__init__(f"the {period} spend counter of key {subject} (period start {period_start}) is not seeded")
        self.subject = subject
        self.period = period
        self.period_start = period_start


def minute_window(now: float) -> int:
    """The start (Unix seconds) of the calendar minute holding ``now``."""
    return int(now) - int(now) % 60


def period_window(period: str, now: float) -> tuple[int, float | None]:
    """The start of the budget period holding ``now`` and its end (``None`` for ``total``), in Unix seconds."""
    if period == "total":
        return 0, None
    t = time.gmtime(now)
    if period == "day":
        start = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0))
        return start, start + 86400.0
    if period == "month":
        start = calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))
        year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
        return start, float(calendar.timegm((year, month, 1, 0, 0, 0)))
    raise ValueError(f"unknown budget period {period!r} (total, day, month)")


class Limiter(abc.ABC):
    """Counts requests, tokens, spend and requests in flight per subject (a virtual key's id)."""

    @abc.abstractmethod
    async def acquire(self, subject: str, limits: Limits, *, now: float | None = None) -> Permit:
        """Check every limit and count the request, atomically; raise :class:`LimitExceededError` if one is
        reached (nothing is counted then). Checks, in order: max_parallel, rpm, tpm, budget. With a budget, raise
        :class:`SpendNotSeeded` (nothing counted either) when the current period's spend counter does not exist:
        seed it with :meth:`seed_spend` and call again."""

    @abc.abstractmethod
    async def release(self, permit: Permit, *, tokens: int = 0, cost: float = 0.0, now: float | None = None) -> None:
        """The request is over: add its tokens to the current minute and its cost to the spend counter of the
        current budget period, and free its place in flight. The cost is added only if that counter exists (has
        been seeded), whether or not the key has a budget: spend never creates a counter, since a counter started
        from 0 would ignore the spend the ledger already holds. A second release of the same permit does nothing."""

    @abc.abstractmethod
    async def seed_spend(self, subject: str, period: str, amount: float, *, now: float | None = None) -> None:
        """Create the current period's spend counter of ``subject`` at ``amount`` (the ledger's sum for the
        period) unless it already exists, in which case nothing changes (another worker seeded it first, and
        releases since then are in it). Called when :meth:`acquire` raised :class:`SpendNotSeeded`."""

    @abc.abstractmethod
    async def spent(self, subject: str, period: str, *, now: float | None = None) -> float:
        """The spend counted in the current period: 0.0 when its counter does not exist (is not seeded)."""

    async def ping(self) -> None:  # noqa: B027 - optional hook
        """Raise :class:`LimiterUnavailableError` if the limiter's store cannot answer (in-process: never)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
