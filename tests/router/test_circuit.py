"""The circuit breaker on its own, with the clock passed in: when it opens, the single half-open probe, backoff,
and account failures that only a successful probe mends."""

from __future__ import annotations

import pytest

from modelway.errors import (
    AuthenticationError,
    PermissionDeniedError,
    RateLimitError,
    UpstreamServerError,
)
from modelway.router.circuit import CircuitBreaker, CircuitState, is_account_failure
from modelway.router.policy import CircuitSettings

S = CircuitSettings(failures=3, error_rate=0.5, min_requests=6, window=30, cooldown=10, max_cooldown=35)
BOOM = UpstreamServerError("boom", status_code=500)


def state(c: CircuitBreaker) -> CircuitState:
    """(Read through a call, so that the type checker does not narrow the attribute between two steps.)"""
    return c.state


def test_consecutive_failures_open_it() -> None:
    c = CircuitBreaker()
    for _ in range(2):
        c.failure(0.0, S, BOOM, probe=False)
    assert state(c) is CircuitState.CLOSED and c.available(0.0)
    c.failure(0.0, S, BOOM, probe=False)
    assert state(c) is CircuitState.OPEN
    assert not c.available(9.9) and c.admit(9.9) is None


def test_a_success_resets_the_consecutive_count() -> None:
    c = CircuitBreaker()
    for _ in range(6):
        c.success(0.0, S, probe=False)
    for _ in range(5):
        c.failure(0.0, S, BOOM, probe=False)
        for _ in range(3):
            c.success(0.0, S, probe=False)
    c.failure(0.0, S, BOOM, probe=False)
    c.failure(0.0, S, BOOM, probe=False)
    assert state(c) is CircuitState.CLOSED and c.recent(0.0, S) == (28, 7)  # never 3 in a row, below the rate
    c.failure(0.0, S, BOOM, probe=False)
    assert state(c) is CircuitState.OPEN  # the third in a row


def test_an_error_rate_over_the_window_opens_it() -> None:
    c = CircuitBreaker()
    for i in range(6):
        if i % 2:
            c.failure(float(i), S, BOOM, probe=False)
        else:
            c.success(float(i), S, probe=False)
    assert state(c) is CircuitState.OPEN  # 3 of 6 failed, never 3 in a row


def test_old_outcomes_leave_the_window() -> None:
    c = CircuitBreaker()
    for i in range(5):
        c.failure(float(i), S, BOOM, probe=False) if i % 2 else c.success(float(i), S, probe=False)
    assert c.recent(100.0, S) == (0, 0)
    c.failure(100.0, S, BOOM, probe=False)
    assert state(c) is CircuitState.CLOSED


def test_after_the_cooldown_exactly_one_probe_goes() -> None:
    c = CircuitBreaker()
    for _ in range(3):
        c.failure(0.0, S, BOOM, probe=False)
    assert c.admit(10.0) is True  # the probe
    assert state(c) is CircuitState.HALF_OPEN
    assert [c.admit(10.0 + i) for i in range(5)] == [None] * 5  # the others do not probe too
    assert not c.available(11.0)
    c.success(10.5, S, probe=True)
    assert state(c) is CircuitState.CLOSED and c.admit(10.5) is False


def test_a_failed_probe_reopens_it_with_a_longer_cooldown() -> None:
    c = CircuitBreaker()
    for _ in range(3):
        c.failure(0.0, S, BOOM, probe=False)
    assert c.admit(10.0) is True
    c.failure(10.0, S, BOOM, probe=True)
    assert state(c) is CircuitState.OPEN and c.cooldown == 20
    assert c.admit(29.9) is None and c.admit(30.0) is True
    c.failure(30.0, S, BOOM, probe=True)
    assert c.cooldown == 35  # doubled, capped at max_cooldown
    assert c.admit(64.9) is None and c.admit(65.0) is True


def test_a_cancelled_probe_lets_the_next_request_probe() -> None:
    c = CircuitBreaker()
    for _ in range(3):
        c.failure(0.0, S, BOOM, probe=False)
    assert c.admit(10.0) is True
    c.abandon(10.2, probe=True)
    assert state(c) is CircuitState.OPEN and c.admit(10.3) is True


def test_late_results_of_requests_sent_before_it_opened_do_not_decide() -> None:
    c = CircuitBreaker()
    for _ in range(3):
        c.failure(0.0, S, BOOM, probe=False)
    c.success(1.0, S, probe=False)  # started while closed, ended now
    assert state(c) is CircuitState.OPEN
    c.failure(2.0, S, BOOM, probe=False)
    assert c.open_until == 10.0  # not extended


@pytest.mark.parametrize(
    "exc",
    [
        AuthenticationError("bad key", status_code=401),
        PermissionDeniedError("arrears", status_code=403, code="Arrearage"),
        RateLimitError("no balance", status_code=429, code="1113"),
        RateLimitError("quota", status_code=429, code="insufficient_quota"),
    ],
)
def test_an_account_failure_opens_it_at_once_until_a_probe_succeeds(exc: Exception) -> None:
    assert isinstance(exc, AuthenticationError | PermissionDeniedError | RateLimitError)
    assert is_account_failure(exc)
    c = CircuitBreaker()
    c.failure(0.0, S, exc, probe=False)
    assert state(c) is CircuitState.OPEN and c.account
    assert c.admit(S.cooldown + 1) is None  # the plain cooldown is not enough
    assert c.admit(S.account_cooldown) is True  # a probe after the account cooldown
    c.failure(S.account_cooldown, S, exc, probe=True)
    assert state(c) is CircuitState.OPEN and c.account  # time alone never closes it
    assert c.admit(S.account_cooldown * 10) is True
    c.success(S.account_cooldown * 10, S, probe=True)
    assert state(c) is CircuitState.CLOSED and not c.account


def test_plain_rate_limits_and_server_errors_are_not_account_failures() -> None:
    assert not is_account_failure(RateLimitError("slow down", status_code=429, code="rate_limit_exceeded"))
    assert not is_account_failure(BOOM)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="error_rate"):
        CircuitSettings(error_rate=0)
    with pytest.raises(ValueError, match="failures"):
        CircuitSettings(failures=0)
