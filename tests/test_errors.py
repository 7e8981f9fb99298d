from __future__ import annotations

import builtins
from datetime import UTC

import pytest

import modelway
from modelway import errors


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, errors.BadRequestError),
        (401, errors.AuthenticationError),
        (402, errors.PermissionDeniedError),
        (403, errors.PermissionDeniedError),
        (404, errors.NotFoundError),
        (408, errors.ProviderTimeoutError),
        (418, errors.BadRequestError),
        (422, errors.BadRequestError),
        (429, errors.RateLimitError),
        (500, errors.UpstreamServerError),
        (503, errors.UpstreamServerError),
        (529, errors.UpstreamServerError),
    ],
)
def test_error_for_status(status: int, cls: type[errors.ProviderError]) -> None:
    assert errors.error_for_status(status) is cls


def test_retryable_flags() -> None:
    assert errors.RateLimitError.retryable
    assert errors.UpstreamServerError.retryable
    assert errors.ProviderTimeoutError.retryable
    assert errors.ProviderConnectionError.retryable
    for cls in (errors.BadRequestError, errors.AuthenticationError, errors.ContentFilterError, errors.StreamError):
        assert not cls.retryable


def test_provider_error_carries_fields_and_formats() -> None:
    e = errors.RateLimitError(
        "slow down", provider="zhipu", status_code=429, code="1302", request_id="r1", retry_after=2.0
    )
    assert (e.provider, e.status_code, e.code, e.request_id, e.retry_after) == ("zhipu", 429, "1302", "r1", 2.0)
    assert str(e) == "[zhipu 429 1302] slow down (request id r1)"
    assert isinstance(e, modelway.ModelwayError)


def test_timeout_and_connection_errors_are_also_builtin_ones() -> None:
    assert issubclass(errors.ProviderTimeoutError, builtins.TimeoutError)
    assert issubclass(errors.ProviderConnectionError, builtins.ConnectionError)


def test_public_all_is_sorted_and_complete() -> None:
    assert modelway.__all__ == sorted(modelway.__all__)
    for name in modelway.__all__:
        assert hasattr(modelway, name), name
    assert errors.__all__ == sorted(errors.__all__)


def test_parse_retry_after_forms() -> None:
    from datetime import datetime, timedelta
    from email.utils import format_datetime

    from modelway.providers.base import parse_retry_after

    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "junk", "retry-after": "2"}) == 2.0
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    wait = parse_retry_after({"retry-after": soon})
    assert wait is not None and 25 <= wait <= 31
    assert parse_retry_after({"retry-after": "not a date"}) is None
    assert parse_retry_after({}) is None
