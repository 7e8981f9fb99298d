"""Retry decisions: which errors to retry, and how long to wait (Retry-After first, then capped backoff)."""

from __future__ import annotations

import random

from .errors import ModelwayError, ProviderError

__all__ = ["RetryPolicy"]


class RetryPolicy:
    """``max_retries`` extra attempts for retryable errors; waits honour the provider's Retry-After.

    The wait is the provider's ``retry_after`` when it gave one; a provider that asks for more than
    ``max_retry_after`` seconds is not retried at all (the error, with its ``retry_after``, goes to the caller, or the
    router fails over). Without one: exponential backoff from ``initial`` doubling up to ``max_wait``, with jitter
    (each wait is 75-100% of the nominal).
    """

    __slots__ = ("initial", "max_retries", "max_retry_after", "max_wait")

    def __init__(
        self, max_retries: int = 2, *, initial: float = 0.5, max_wait: float = 8.0, max_retry_after: float = 60.0
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.max_retries = max_retries
        self.initial = initial
        self.max_wait = max_wait
        self.max_retry_after = max_retry_after

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """``attempt`` counts from 0 (the first try)."""
        if attempt >= self.max_retries or not isinstance(error, ModelwayError) or not error.retryable:
            return False
        ra = error.retry_after if isinstance(error, ProviderError) else None
        return ra is None or ra <= self.max_retry_after

    def wait(self, error: BaseException, attempt: int) -> float:
        if isinstance(error, ProviderError) and error.retry_after is not None:
            return min(float(error.retry_after), self.max_retry_after)
        nominal = min(self.initial * 2.0**attempt, self.max_wait)
        return nominal * (0.75 + random.random() * 0.25)
