"""The in-process limiter: plain dicts and ints, exact for one worker process.

It runs on every request, so it stays cheap: no locks (one event loop, and :meth:`MemoryLimiter.acquire` never
awaits between its checks and its counts), one ``[window, requests, tokens]`` list per subject that is reset when
its minute changes, and the budget period's bounds cached until the period ends. Only what a key's limits check is
counted (requests and tokens with rpm or tpm, places in flight with max_parallel). Spend is counted whenever the
period's counter exists, budget or not, and only then: the counter is created by :meth:`MemoryLimiter.seed_spend`
from the ledger (see :mod:`.base`), and a budget check without it raises :class:`SpendNotSeeded`.
"""

from __future__ import annotations

import math
import time

from .base import Limiter, LimitExceededError, Limits, Permit, SpendNotSeeded, minute_window, period_window

__all__ = ["MemoryLimiter"]


class MemoryLimiter(Limiter):
    """Counts in this process's memory; each worker process counts alone (use the Redis limiter for several)."""

    def __init__(self) -> None:
        #: subject -> [minute window start, requests, tokens]
        self._minutes: dict[str, list[int]] = {}
        #: subject -> requests in flight (no entry: none)
        self._inflight: dict[str, int] = {}
        #: (subject, period, period start) -> spend (no entry: not seeded)
        self._spend: dict[tuple[str, str, int], float] = {}
        #: period -> (start, end) of the period seen last
        self._periods: dict[str, tuple[int, float]] = {}
        self._seq = 0

    async def acquire(self, subject: str, limits: Limits, *, now: float | None = None) -> Permit:
        if now is None:
            now = time.time()
        window = minute_window(now)
        self._seq += 1
        rpm, tpm, max_parallel, budget = limits.rpm, limits.tpm, limits.max_parallel, limits.budget
        inflight = 0
        if max_parallel is not None:
            inflight = self._inflight.get(subject, 0)
            if inflight >= max_parallel:
                raise max_parallel_exceeded(subject, max_parallel)
        minute: list[int] | None = None
        req = tok = 0
        if rpm is not None or tpm is not None:
            minute = self._minutes.get(subject)
            if minute is None or window > minute[0]:
                minute = self._minutes[subject] = [window, 0, 0]
            else:
                window = minute[0]  # the clock went back: keep counting in the newest window
            _, req, tok = minute
            if rpm is not None and req >= rpm:
                raise rate_exceeded(subject, "rpm", rpm, window, now)
            if tpm is not None and tok >= tpm:
                raise rate_exceeded(subject, "tpm", tpm, window, now)
        if budget is not None:
            period = limits.budget_period
            start, end = self._period(period, now)
            spent = self._spend.get((subject, period, start))
            if spent is None:
                raise SpendNotSeeded(subject, period, start)
            if spent >= budget:
                raise budget_exceeded(subject, period, budget, spent, end, now)
        # every check passed: count (nothing awaited since the checks)
        if max_parallel is not None:
            self._inflight[subject] = inflight + 1
        if minute is not None:
            minute[1] = req + 1
        return Permit(
            subject,
            limits,
            str(self._seq),
            window,
            None if rpm is None else rpm - req - 1,
            None if tpm is None else tpm - tok,
            window + 60 - now,
        )

    async def release(self, permit: Permit, *, tokens: int = 0, cost: float = 0.0, now: float | None = None) -> None:
        if permit.released:
            return
        permit.released = True
        limits = permit.limits
        subject = permit.subject
        if limits.max_parallel is not None:
            inflight = self._inflight.get(subject, 0) - 1
            if inflight > 0:
                self._inflight[subject] = inflight
            else:
                self._inflight.pop(subject, None)
        if not tokens and not cost:
            return
        if now is None:
            now = time.time()
        if tokens and limits.tpm is not None:
            window = minute_window(now)
            minute = self._minutes.get(subject)
            if minute is None or window > minute[0]:
                self._minutes[subject] = [window, 0, tokens]
            else:
                minute[2] += tokens
        if cost:
            period = limits.budget_period
            key = (subject, period, self._period(period, now)[0])
            spent = self._spend.get(key)
            if spent is not None:  # not seeded: the ledger has it, the seed will read it
                self._spend[key] = spent + cost

    async def seed_spend(self, subject: str, period: str, amount: float, *, now: float | None = None) -> None:
        key = (subject, period, self._period(period, time.time() if now is None else now)[0])
        self._spend.setdefault(key, float(amount))

    async def spent(self, subject: str, period: str, *, now: float | None = None) -> float:
        return self._spend.get((subject, period, self._period(period, time.time() if now is None else now)[0]), 0.0)

    def _period(self, period: str, now: float) -> tuple[int, float | None]:
        """:func:`period_window`, cached: the calendar arithmetic costs more than the rest of an acquire."""
        if period == "total":
            return 0, None
        cached = self._periods.get(period)
        if cached is not None and cached[0] <= now < cached[1]:
            return cached
        start, end = period_window(period, now)
        assert end is not None
        if cached is not None and start > cached[0]:
            # a new period began: forget the spend of the ones before it
            self._spend = {k: v for k, v in self._spend.items() if k[1] != period or k[2] >= start}
        self._periods[period] = (start, end)
        return start, end


def _seconds(seconds: float) -> float:
    """Whole seconds to wait, at least one: retrying earlier than the reset would be refused again."""
    return float(max(1, math.ceil(seconds)))


def _amount(value: float) -> str:
    return f"{value:.10g}"


def max_parallel_exceeded(subject: str, limit: int) -> LimitExceededError:
    return LimitExceededError(
        f"key {subject} reached its limit of {limit} requests in flight at once; "
        "try again when one of them has finished",
        code="max_parallel_exceeded",
        limit="max_parallel",
        retry_after=1.0,
    )


def rate_exceeded(subject: str, limit: str, value: int, window: int, now: float) -> LimitExceededError:
    """rpm or tpm reached: retry when the minute window ends."""
    retry_after = _seconds(window + 60 - now)
    unit = "requests" if limit == "rpm" else "tokens"
    return LimitExceededError(
        f"key {subject} reached its limit of {value} {unit} per minute; try again in {retry_after:.0f} s",
        code="rate_limit_exceeded",
        limit=limit,
        retry_after=retry_after,
    )


def budget_exceeded(
    subject: str, period: str, budget: float, spent: float, end: float | None, now: float
) -> LimitExceededError:
    """The period's spend reached the budget: retry when the period ends (never, for a ``total`` budget)."""
    if end is None:
        retry_after = None
        what, when = "total budget", "it does not reset; raise the budget to continue"
    else:
        retry_after = _seconds(end - now)
        if period == "day":
            what, when = "daily budget", "it resets at midnight UTC"
        else:
            what, when = "monthly budget", "it resets on the 1st of the month at midnight UTC"
        when += f"; try again in {retry_after:.0f} s"
    return LimitExceededError(
        f"key {subject} reached its {what} of {_amount(budget)} (spent {_amount(spent)}); {when}",
        code="budget_exceeded",
        limit="budget",
        retry_after=retry_after,
    )
