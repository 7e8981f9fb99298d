"""A circuit breaker per deployment: closed → open → (one probe) → closed or open again.

- **Closed**: requests go. ``failures`` consecutive failures, or a share of failures of at least ``error_rate``
  over at least ``min_requests`` requests finished in the last ``window`` seconds, open it.
- **Open**: no request goes until ``cooldown`` seconds passed. Then exactly one request, the probe, is let through
  (the circuit is *half-open* while it runs: other requests still skip the deployment).
- The probe's result closes the circuit, or opens it again with the cooldown doubled (up to ``max_cooldown``).
  A probe that ends without a verdict (cancelled: a hedge lost, the caller left) lets the next request probe.
- An **account failure** (the provider refused the key, the account has no balance, a quota is exhausted) opens the
  circuit at once for ``account_cooldown``: time alone never closes it, a successful probe does.

What counts as a failure is decided by the router (the deployment's fault: not a bad request). Times are passed in
(``now``), so tests drive the clock. With shared router state (:mod:`modelway.router.shared`) the same steps run in
Redis for every process, and each process's breaker takes the shared state (:meth:`CircuitBreaker.adopt`); it
decides on its own only while the shared state is unreachable.
"""

from __future__ import annotations

from collections import deque
from enum import StrEnum
from typing import Any

from ..errors import AuthenticationError, ModelwayError, PermissionDeniedError, ProviderError
from .policy import CircuitSettings

__all__ = ["ACCOUNT_CODES", "CircuitBreaker", "CircuitState", "is_account_failure"]

#: providers' error codes saying the account (not the request) cannot be served: no balance, exhausted quota
ACCOUNT_CODES = frozenset(
    {
        "insufficient_quota",  # OpenAI and compatibles
        "exceeded_current_quota_error",
        "arrearage",  # DashScope
        "1113",  # Zhipu: arrears / no resource package (sent as HTTP 429)
        "billing_hard_limit_reached",
        "insufficient_balance",
    }
)


def is_account_failure(exc: ModelwayError) -> bool:
    """Whether ``exc`` says the deployment's account is refused (waiting a little will not help)."""
    if isinstance(exc, AuthenticationError | PermissionDeniedError):
        return True
    return isinstance(exc, ProviderError) and exc.code is not None and str(exc.code).lower() in ACCOUNT_CODES


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """The circuit of one deployment. Not thread-safe: one event loop owns it."""

    __slots__ = ("_outcomes", "account", "consecutive", "cooldown", "last_error", "open_until", "opened", "state")

    def __init__(self) -> None:
        self.state = CircuitState.CLOSED
        #: when an open circuit lets its probe through
        self.open_until = 0.0
        #: the current cooldown (doubles with each failed probe)
        self.cooldown = 0.0
        self.consecutive = 0
        #: opened by an account failure: only a successful probe closes it
        self.account = False
        #: times the circuit opened
        self.opened = 0
        self.last_error: str | None = None
        self._outcomes: deque[tuple[float, bool]] = deque()

    def available(self, now: float) -> bool:
        """Whether a request may go now (closed, or open with its cooldown over and no probe running). Does not
        take the probe: :meth:`admit` does."""
        if self.state is CircuitState.CLOSED:
            return True
        return self.state is CircuitState.OPEN and now >= self.open_until

    def admit(self, now: float) -> bool | None:
        """Let one request through: ``False`` an ordinary request, ``True`` the probe, ``None`` refused."""
        if self.state is CircuitState.CLOSED:
            return False
        if self.state is CircuitState.OPEN and now >= self.open_until:
            self.state = CircuitState.HALF_OPEN
            return True
        return None

    def success(self, now: float, settings: CircuitSettings, *, probe: bool) -> None:
        self.consecutive = 0
        if probe or self.state is not CircuitState.CLOSED:
            if probe:  # an ordinary request that started before the circuit opened does not close it
                self._close()
            return
        self._remember(now, True, settings)

    def failure(self, now: float, settings: CircuitSettings, exc: ModelwayError, *, probe: bool) -> None:
        self.last_error = type(exc).__name__
        self.consecutive += 1
        if is_account_failure(exc):
            if self.state is not CircuitState.OPEN or probe:
                self.account = True
                self._open(now, max(settings.account_cooldown, self.cooldown * 2 if probe else 0.0), settings)
            return
        if probe:
            self._open(now, self.cooldown * 2 if self.cooldown else settings.cooldown, settings)
            return
        if self.state is not CircuitState.CLOSED:
            return  # an ordinary request that started before the circuit opened: it is open already
        self._remember(now, False, settings)
        outcomes = self._outcomes
        failed = sum(1 for _, ok in outcomes if not ok)
        if self.consecutive >= settings.failures or (
            len(outcomes) >= settings.min_requests and failed >= settings.error_rate * len(outcomes)
        ):
            self._open(now, settings.cooldown, settings)

    def abandon(self, now: float, *, probe: bool) -> None:
        """A request ended without a verdict (cancelled): a probe lets the next request probe."""
        if probe and self.state is CircuitState.HALF_OPEN:
            self.state = CircuitState.OPEN
            self.open_until = now

    def adopt(
        self,
        state: CircuitState,
        opens_in: float,
        *,
        cooldown: float,
        consecutive: int,
        account: bool,
        opened: int,
        last_error: str | None,
        now: float,
    ) -> None:
        """Take the shared state (``opens_in``: seconds until an open circuit lets its probe through)."""
        if state is not self.state:
            self._outcomes.clear()
        self.state = state
        self.open_until = now + opens_in if state is CircuitState.OPEN else self.open_until
        self.cooldown = cooldown
        self.consecutive = consecutive
        self.account = account
        self.opened = opened
        self.last_error = last_error or self.last_error

    def recent(self, now: float, settings: CircuitSettings | None) -> tuple[int, int]:
        """(requests, failures) finished within the window."""
        if settings is not None:
            self._trim(now, settings)
        return len(self._outcomes), sum(1 for _, ok in self._outcomes if not ok)

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "consecutive_failures": self.consecutive,
            "opens_in": max(0.0, self.open_until - now) if self.state is CircuitState.OPEN else None,
            "account": self.account,
            "opened": self.opened,
            "last_error": self.last_error,
        }

    # -- inside -----------------------------------------------------------------------------------
    def _open(self, now: float, cooldown: float, settings: CircuitSettings) -> None:
        self.state = CircuitState.OPEN
        self.cooldown = min(cooldown, max(settings.max_cooldown, settings.account_cooldown if self.account else 0))
        self.open_until = now + self.cooldown
        self.opened += 1
        self._outcomes.clear()

    def _close(self) -> None:
        self.state = CircuitState.CLOSED
        self.account = False
        self.cooldown = 0.0
        self.consecutive = 0
        self._outcomes.clear()

    def _remember(self, now: float, ok: bool, settings: CircuitSettings) -> None:
        self._outcomes.append((now, ok))
        self._trim(now, settings)

    def _trim(self, now: float, settings: CircuitSettings) -> None:
        outcomes = self._outcomes
        horizon = now - settings.window
        while outcomes and outcomes[0][0] < horizon:
            outcomes.popleft()
        while len(outcomes) > 10_000:  # bounded whatever the traffic
            outcomes.popleft()
