"""Rate limits and budgets of virtual keys: requests and tokens per minute, requests in flight, spend per period.

:class:`MemoryLimiter` counts in one process; ``modelway.limits.redis.RedisLimiter`` counts in Redis for any number
of workers and replicas (import it from its module: it is loaded only when a Redis URL is configured).
"""

from __future__ import annotations

from .base import (
    Limiter,
    LimiterUnavailableError,
    LimitExceededError,
    Limits,
    Permit,
    SpendNotSeeded,
    minute_window,
    period_window,
)
from .memory import MemoryLimiter

__all__ = [
    "LimitExceededError",
    "Limiter",
    "LimiterUnavailableError",
    "Limits",
    "MemoryLimiter",
    "Permit",
    "SpendNotSeeded",
    "minute_window",
    "period_window",
]
